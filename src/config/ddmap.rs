//! `[ddmap]`: where the IET ddmap proc entries live.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::InvalidValue;

/// IET's ddmap proc directory.
pub const DEFAULT_PROC_DIR: &str = "/proc/net/iet/ddmap";

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct DdmapConfig {
    /// Directory holding one entry per "<target>.<lun>".
    pub proc_dir: PathBuf,
}

impl Default for DdmapConfig {
    fn default() -> Self {
        DdmapConfig { proc_dir: PathBuf::from(DEFAULT_PROC_DIR) }
    }
}

impl DdmapConfig {
    pub(crate) fn validate(&self) -> Result<(), InvalidValue> {
        if !self.proc_dir.is_absolute() {
            return Err(InvalidValue::new(
                "ddmap.proc_dir",
                format!("must be an absolute path, got {:?}", self.proc_dir),
            ));
        }
        Ok(())
    }
}
