//! The ddmap state machine of the seed (chunks 101, 117, 138, 174) and the
//! read decision it drives.
//!
//! On a target node each LUN's map is in one of four states: UNKNOWN (never
//! shut down cleanly since tracking began), ACTIVE (tracking), CLEAN (dumped
//! at a clean shutdown), DIRTY (a start after an unclean stop: writes may be
//! missing from the map). Only ACTIVE and CLEAN maps may limit a read.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DdmapState {
    Unknown,
    Active,
    Clean,
    Dirty,
}

impl DdmapState {
    /// True when a map in this state lists every segment written since it
    /// was last cleared.
    pub fn is_trustworthy(self) -> bool {
        matches!(self, DdmapState::Active | DdmapState::Clean)
    }

    /// The state after a target node shuts down (seed chunk 174).
    pub fn on_shutdown(self) -> Self {
        match self {
            DdmapState::Active => DdmapState::Clean,
            DdmapState::Unknown => DdmapState::Dirty,
            s => s,
        }
    }

    /// The state after a target node starts (seed chunk 174).
    pub fn on_startup(self) -> Self {
        match self {
            DdmapState::Clean => DdmapState::Active,
            DdmapState::Active | DdmapState::Unknown => DdmapState::Dirty,
            DdmapState::Dirty => DdmapState::Dirty,
        }
    }
}

impl fmt::Display for DdmapState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DdmapState::Unknown => "UNKNOWN",
            DdmapState::Active => "ACTIVE",
            DdmapState::Clean => "CLEAN",
            DdmapState::Dirty => "DIRTY",
        })
    }
}

impl FromStr for DdmapState {
    type Err = String;
    /// Accepts `CLEAN` and the seed's state-file spelling `DDMAP_CLEAN`.
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let t = t.strip_prefix("DDMAP_").unwrap_or(t);
        match t.to_ascii_uppercase().as_str() {
            "UNKNOWN" => Ok(DdmapState::Unknown),
            "ACTIVE" => Ok(DdmapState::Active),
            "CLEAN" => Ok(DdmapState::Clean),
            "DIRTY" => Ok(DdmapState::Dirty),
            _ => Err(format!("{s:?} is not a ddmap state (UNKNOWN, ACTIVE, CLEAN or DIRTY)")),
        }
    }
}

/// How a backup reads its source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "read", rename_all = "snake_case")]
pub enum ReadPlan {
    /// Read every segment, with the reason.
    Full { reason: String },
    /// Read only the segments the map flags.
    Map,
}

/// The archive-side facts that force a full read regardless of the map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveFacts {
    /// No checksum file yet (first backup, or it was removed).
    pub no_checksum_file: bool,
    /// A previous integrity check (or repair) marked the volume DIRTY.
    pub marked_dirty: Option<String>,
}

/// Decides the read: only a trustworthy map on a volume the archive holds
/// a valid checksum file for may limit it.
pub fn read_plan(has_map: bool, state: Option<DdmapState>, facts: &ArchiveFacts) -> ReadPlan {
    if facts.no_checksum_file {
        return ReadPlan::Full { reason: "first backup (no checksum file)".into() };
    }
    if let Some(why) = &facts.marked_dirty {
        return ReadPlan::Full { reason: format!("the archive marked this volume DIRTY: {why}") };
    }
    if !has_map {
        return ReadPlan::Full { reason: "the source offers no ddmap".into() };
    }
    match state {
        None => ReadPlan::Full { reason: "the ddmap state is not known (UNKNOWN)".into() },
        Some(s) if !s.is_trustworthy() => ReadPlan::Full { reason: format!("the ddmap state is {s}") },
        Some(_) => ReadPlan::Map,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DdmapState::*;

    #[test]
    fn transitions_follow_the_seed() {
        let table = [
            // (state, after shutdown, after startup)
            (Active, Clean, Dirty),
            (Unknown, Dirty, Dirty),
            (Clean, Clean, Active),
            (Dirty, Dirty, Dirty),
        ];
        for (s, down, up) in table {
            assert_eq!(s.on_shutdown(), down, "{s} shutdown");
            assert_eq!(s.on_startup(), up, "{s} startup");
        }
    }

    #[test]
    fn parse_accepts_seed_spelling() {
        assert_eq!("DDMAP_CLEAN".parse::<DdmapState>(), Ok(Clean));
        assert_eq!("active\n".parse::<DdmapState>(), Ok(Active));
        assert!("SOMETIMES".parse::<DdmapState>().is_err());
    }

    #[test]
    fn read_plans() {
        let ok = ArchiveFacts::default();
        let table: [(bool, Option<DdmapState>, &ArchiveFacts, bool); 8] = [
            (true, Some(Clean), &ok, true),
            (true, Some(Active), &ok, true),
            (true, Some(Dirty), &ok, false),
            (true, Some(Unknown), &ok, false),
            (true, None, &ok, false),
            (false, Some(Clean), &ok, false),
            (true, Some(Clean), &ArchiveFacts { no_checksum_file: true, marked_dirty: None }, false),
            (true, Some(Clean), &ArchiveFacts { no_checksum_file: false, marked_dirty: Some("x".into()) }, false),
        ];
        for (has_map, state, facts, map) in table {
            let plan = read_plan(has_map, state, facts);
            assert_eq!(plan == ReadPlan::Map, map, "{has_map} {state:?} {facts:?}: {plan:?}");
        }
    }
}
