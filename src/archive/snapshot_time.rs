//! Managed snapshot names: `YYYY-MM-DD_HH:MM:SS` in the archive's time zone
//! (UTC by default). The name is for people; the exact moment is also kept
//! in the `<ns>:snap_time` property (seconds since the epoch), which stays
//! unambiguous when a local clock repeats an hour.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::names::SnapshotName;

/// The `strftime` pattern of managed snapshot names.
pub const PATTERN: &str = "%Y-%m-%d_%H:%M:%S";

/// A time zone from the configuration: `UTC`, `local` (the host's) or an
/// IANA name such as `Europe/Zurich`.
pub fn parse_time_zone(name: &str) -> Result<TimeZone, String> {
    match name {
        "UTC" | "utc" => Ok(TimeZone::UTC),
        "local" => TimeZone::try_system().map_err(|e| format!("cannot determine the host's time zone: {e}")),
        other => TimeZone::get(other).map_err(|e| format!("unknown time zone {other:?}: {e}")),
    }
}

/// The managed snapshot name for moment `at` in `tz`.
pub fn snapshot_name(at: Timestamp, tz: &TimeZone) -> SnapshotName {
    let text = at.to_zoned(tz.clone()).strftime(PATTERN).to_string();
    // The pattern only produces digits, '-', '_' and ':'.
    SnapshotName::new(&text).unwrap_or_else(|_| unreachable_name(&text))
}

#[cold]
fn unreachable_name(text: &str) -> SnapshotName {
    // Only reachable if the pattern above changes; keep a valid fallback.
    SnapshotName::new(&text.replace(|c: char| !c.is_ascii_alphanumeric(), "_"))
        .unwrap_or_else(|_| SnapshotName::new("snapshot").unwrap_or_else(|_| std::process::abort()))
}

/// The civil date and time a managed snapshot name stands for, or None for
/// a foreign name.
pub fn parse_managed(name: &str) -> Option<DateTime> {
    let b = name.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'_' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    if !digits.iter().all(|&i| b[i].is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| name[r].parse::<i16>().ok();
    let dt = DateTime::new(
        num(0..4)?,
        num(5..7)? as i8,
        num(8..10)? as i8,
        num(11..13)? as i8,
        num(14..16)? as i8,
        num(17..19)? as i8,
        0,
    )
    .ok()?;
    Some(dt)
}

/// The moment a managed name stands for in `tz` (the earlier one when the
/// local clock repeats an hour); None for a foreign name.
pub fn managed_timestamp(name: &str, tz: &TimeZone) -> Option<Timestamp> {
    let dt = parse_managed(name)?;
    tz.to_ambiguous_timestamp(dt).compatible().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_utc_and_zones() {
        let ts: Timestamp = "2011-03-29T23:00:01Z".parse().unwrap();
        assert_eq!(snapshot_name(ts, &TimeZone::UTC).as_str(), "2011-03-29_23:00:01");
        let ny = parse_time_zone("America/New_York").unwrap();
        assert_eq!(snapshot_name(ts, &ny).as_str(), "2011-03-29_19:00:01");
        assert_eq!(managed_timestamp("2011-03-29_19:00:01", &ny), Some(ts));
        assert_eq!(managed_timestamp("2011-03-29_23:00:01", &TimeZone::UTC), Some(ts));
    }

    #[test]
    fn foreign_and_malformed_names_are_not_managed() {
        for n in [
            "before-upgrade",
            "2011-03-29",
            "2011-03-29_23:00",
            "2011-13-29_23:00:01",
            "2011-02-30_00:00:00",
            "2011-03-29T23:00:01",
            "2011-03-29_23:00:0x",
            "+011-03-29_23:00:01",
        ] {
            assert_eq!(parse_managed(n), None, "{n}");
        }
        assert!(parse_time_zone("Mars/Olympus").is_err());
        assert!(parse_time_zone("UTC").is_ok());
    }
}
