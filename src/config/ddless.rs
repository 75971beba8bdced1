//! `[ddless]`: defaults for ddless runs started without the matching flag.

use serde::Deserialize;

use crate::config::InvalidValue;

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct DdlessConfig {
    /// Worker threads (`-w`); default: one per CPU, at most 8.
    pub workers: Option<usize>,
    /// O_DIRECT reads (`-d`).
    pub direct_io: bool,
    /// Per-worker read cap in MB/s (`-r`); absent = unlimited.
    pub read_rate_mb_s: Option<u64>,
}

impl DdlessConfig {
    pub(crate) fn validate(&self) -> Result<(), InvalidValue> {
        if self.workers == Some(0) {
            return Err(InvalidValue::new("ddless.workers", "must be at least 1"));
        }
        if self.workers.is_some_and(|w| w > crate::ddless::MAX_WORKERS) {
            return Err(InvalidValue::new("ddless.workers", format!("must be at most {}", crate::ddless::MAX_WORKERS)));
        }
        if self.read_rate_mb_s == Some(0) {
            return Err(InvalidValue::new("ddless.read_rate_mb_s", "must be at least 1 (omit it for no limit)"));
        }
        Ok(())
    }
}
