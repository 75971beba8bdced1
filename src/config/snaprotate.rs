//! `[snaprotate]`: rotation schedules, the seed's shape (chunk 74):
//!
//! ```toml
//! [snaprotate.schedules.SNAP_ROTATE_A]
//! rules = [ { name = "2MONTHS_DAILY_SHORT_TERM",   freq = "daily",   duration = 60 },
//!           { name = "4MONTHS_WEEKLY_MEDIUM_TERM", freq = "weekly",  duration = 16 },
//!           { name = "6MONTHS_MONTHLY_LONG_TERM",  freq = "monthly", duration = 6  } ]
//! keep_last = 1
//! timezone = "UTC"
//! ```
//!
//! Only the shape is checked at load; a schedule that cannot be planned
//! with (no rules, a zero duration, an unknown freq) is refused by
//! `snaprotate` for the volumes that use it, so a bad schedule does not
//! stop the other tools.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SnaprotateConfig {
    #[serde(default)]
    pub schedules: BTreeMap<String, ScheduleConfig>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// The newest N managed snapshots are never deleted.
    #[serde(default = "one")]
    pub keep_last: u64,
    /// Time zone the snapshot names are read in [default: archive.timezone].
    pub timezone: Option<String>,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Written to `<ns>:snaprotate_rule` on the snapshots it keeps.
    pub name: String,
    /// hourly, daily, weekly, monthly, yearly or all.
    pub freq: String,
    /// How many of the unit the rule covers.
    pub duration: u64,
}
