//! `archive-status`: Nagios-style monitoring of the archive (sanoid's
//! `--monitor-snapshots` is the model). Pure: the facts of each volume and
//! `now` in, one state per volume and one summary line out.

use serde::Serialize;

/// From `[archive.status]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub warn_age_hours: u64,
    pub crit_age_hours: u64,
    /// 0: no warning for an old (or missing) verification.
    pub snapcheck_warn_days: u64,
    pub snapcheck_crit_days: u64,
}

/// Nagios states, in order of severity; the exit code is the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Ok = 0,
    Warning = 1,
    Critical = 2,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
        }
    }
}

/// What is known about one archive volume.
#[derive(Clone, Debug, Default)]
pub struct VolumeFacts {
    /// `POOL/VOLUME`
    pub volume: String,
    /// Whether the archive volume exists at all.
    pub exists: bool,
    /// Creation (or `snap_time`) of the newest snapshot, seconds since the epoch.
    pub newest_snapshot: Option<i64>,
    pub snapshots: usize,
    /// The most recent `<ns>:snapcheck` of any of its snapshots: (epoch, result).
    pub last_snapcheck: Option<(i64, String)>,
    /// Snapshots whose recorded snapcheck result is `mismatch`.
    pub mismatches: Vec<String>,
    /// Why the facts could not be read (a failing pool).
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VolumeStatus {
    pub volume: String,
    pub state: State,
    /// Hours since the newest snapshot.
    pub newest_age_hours: Option<f64>,
    pub snapshots: usize,
    pub last_snapcheck: Option<String>,
    pub last_snapcheck_age_days: Option<f64>,
    pub problems: Vec<String>,
}

pub fn evaluate(f: &VolumeFacts, t: &Thresholds, now: i64) -> VolumeStatus {
    let mut state = State::Ok;
    let mut problems = Vec::new();
    let mut raise = |s: State, p: String, state: &mut State| {
        *state = (*state).max(s);
        problems.push(p);
    };
    let age = f.newest_snapshot.map(|t| (now - t) as f64 / 3600.0);
    if let Some(e) = &f.error {
        raise(State::Critical, e.clone(), &mut state);
    } else if !f.exists {
        raise(State::Critical, "no archive volume (never backed up)".into(), &mut state);
    } else {
        match age {
            None => raise(State::Critical, "no snapshot".into(), &mut state),
            Some(h) if h >= t.crit_age_hours as f64 => raise(
                State::Critical,
                format!("newest snapshot {h:.0}h old (critical at {}h)", t.crit_age_hours),
                &mut state,
            ),
            Some(h) if h >= t.warn_age_hours as f64 => raise(
                State::Warning,
                format!("newest snapshot {h:.0}h old (warning at {}h)", t.warn_age_hours),
                &mut state,
            ),
            Some(_) => {}
        }
        if !f.mismatches.is_empty() {
            raise(State::Critical, format!("snapcheck found a mismatch in {}", f.mismatches.join(", ")), &mut state);
        }
    }
    let check_age = f.last_snapcheck.as_ref().map(|(t, _)| (now - t) as f64 / 86400.0);
    if f.exists && f.snapshots > 0 && f.error.is_none() {
        let days = check_age.unwrap_or(f64::INFINITY);
        let what = match check_age {
            Some(d) => format!("last snapcheck {d:.0} days ago"),
            None => "never verified by snapcheck".to_string(),
        };
        if t.snapcheck_crit_days > 0 && days >= t.snapcheck_crit_days as f64 {
            raise(State::Critical, format!("{what} (critical at {} days)", t.snapcheck_crit_days), &mut state);
        } else if t.snapcheck_warn_days > 0 && days >= t.snapcheck_warn_days as f64 {
            raise(State::Warning, format!("{what} (warning at {} days)", t.snapcheck_warn_days), &mut state);
        }
    }
    VolumeStatus {
        volume: f.volume.clone(),
        state,
        newest_age_hours: age,
        snapshots: f.snapshots,
        last_snapcheck: f.last_snapcheck.as_ref().map(|(_, r)| r.clone()),
        last_snapcheck_age_days: check_age,
        problems,
    }
}

/// The one Nagios line: `ARCHIVE STATE - summary | perfdata`.
pub fn summary_line(all: &[VolumeStatus]) -> (State, String) {
    let worst = all.iter().map(|s| s.state).max().unwrap_or(State::Ok);
    let count = |s: State| all.iter().filter(|v| v.state == s).count();
    let mut parts: Vec<String> = all
        .iter()
        .filter(|v| v.state != State::Ok)
        .map(|v| format!("{}: {}", v.volume, v.problems.join(", ")))
        .collect();
    if parts.is_empty() {
        let oldest = all
            .iter()
            .filter_map(|v| v.newest_age_hours)
            .fold(None, |m: Option<f64>, h| Some(m.map_or(h, |m| m.max(h))));
        parts.push(match oldest {
            Some(h) => format!("{} volume(s), every newest snapshot at most {h:.0}h old", all.len()),
            None => format!("{} volume(s)", all.len()),
        });
    }
    let max_age = all.iter().filter_map(|v| v.newest_age_hours).fold(0.0f64, f64::max);
    let line = format!(
        "ARCHIVE {} - {} | volumes={} ok={} warning={} critical={} max_age_hours={max_age:.1}",
        worst.label(),
        parts.join("; "),
        all.len(),
        count(State::Ok),
        count(State::Warning),
        count(State::Critical)
    );
    (worst, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds =
        Thresholds { warn_age_hours: 26, crit_age_hours: 50, snapcheck_warn_days: 14, snapcheck_crit_days: 0 };
    const NOW: i64 = 1_301_443_200; // 2011-03-30 00:00 UTC

    fn fresh() -> VolumeFacts {
        VolumeFacts {
            volume: "tank/iscsi_lv_a_bk".into(),
            exists: true,
            newest_snapshot: Some(NOW - 3600),
            snapshots: 10,
            last_snapcheck: Some((NOW - 86400, "ok".into())),
            mismatches: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn states_by_table() {
        let cases: Vec<(VolumeFacts, State, &str)> = vec![
            (fresh(), State::Ok, ""),
            (VolumeFacts { newest_snapshot: Some(NOW - 27 * 3600), ..fresh() }, State::Warning, "27h old"),
            (VolumeFacts { newest_snapshot: Some(NOW - 50 * 3600), ..fresh() }, State::Critical, "50h old"),
            (
                VolumeFacts { newest_snapshot: None, snapshots: 0, last_snapcheck: None, ..fresh() },
                State::Critical,
                "no snapshot",
            ),
            (VolumeFacts { exists: false, newest_snapshot: None, ..fresh() }, State::Critical, "no archive volume"),
            (VolumeFacts { mismatches: vec!["@x".into()], ..fresh() }, State::Critical, "mismatch in @x"),
            (VolumeFacts { last_snapcheck: None, ..fresh() }, State::Warning, "never verified"),
            (
                VolumeFacts { last_snapcheck: Some((NOW - 15 * 86400, "ok".into())), ..fresh() },
                State::Warning,
                "15 days",
            ),
            (VolumeFacts { error: Some("pool gone".into()), ..fresh() }, State::Critical, "pool gone"),
        ];
        for (f, want, needle) in cases {
            let s = evaluate(&f, &T, NOW);
            assert_eq!(s.state, want, "{f:?}: {s:?}");
            assert!(s.problems.join(" ").contains(needle), "{needle}: {s:?}");
        }
        let off = Thresholds { snapcheck_warn_days: 0, ..T };
        assert_eq!(evaluate(&VolumeFacts { last_snapcheck: None, ..fresh() }, &off, NOW).state, State::Ok);
    }

    #[test]
    fn one_nagios_line_with_the_worst_state() {
        let ok = evaluate(&fresh(), &T, NOW);
        let late = evaluate(
            &VolumeFacts { volume: "tank/b_bk".into(), newest_snapshot: Some(NOW - 30 * 3600), ..fresh() },
            &T,
            NOW,
        );
        let (s, line) = summary_line(&[ok.clone(), late]);
        assert_eq!(s, State::Warning);
        assert!(line.starts_with("ARCHIVE WARNING - tank/b_bk: newest snapshot 30h old"), "{line}");
        assert!(line.contains("| volumes=2 ok=1 warning=1 critical=0"), "{line}");
        let (s, line) = summary_line(&[ok]);
        assert_eq!(s, State::Ok);
        assert!(line.starts_with("ARCHIVE OK - 1 volume(s)"), "{line}");
        assert_eq!(summary_line(&[]).0, State::Ok);
    }
}
