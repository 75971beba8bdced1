//! Snapshot rotation: which snapshots a schedule keeps. Pure: no I/O, no
//! clock; the caller hands in the snapshots, the schedule, `now` and the
//! protections it found (holds, clones, a volume lock), and gets one
//! decision per snapshot back. The algorithm (docs/archive.md, "Rotation"):
//!
//! 1. Managed snapshots are those whose name parses as
//!    `YYYY-MM-DD_HH:MM:SS` in the schedule's time zone; others are
//!    foreign: never deleted, never counted.
//! 2. The anchor T is the newest managed snapshot not in the future (so
//!    history does not expire when backups stop). Future-dated snapshots
//!    are kept and warned about.
//! 3. Windows are consecutive, going back from T: rule 1 covers
//!    (T − d1, T], rule 2 the d2 units before that, and so on. Hours are
//!    exact hours; days, weeks (7 days), months (day clamped: Aug 31 − 6
//!    months = Feb 28) and years are calendar units in the time zone. A
//!    snapshot exactly on a boundary belongs to the older window.
//! 4. From the youngest window to the oldest, snapshots are bucketed by
//!    calendar hour, date, ISO week, month or year in the time zone; in
//!    every bucket no younger window has kept a snapshot in, the newest
//!    snapshot inside this window is kept (`all`: every snapshot).
//! 5. Everything else is deleted, oldest first, except the newest managed
//!    snapshot, the `keep_last` newest, and whatever the caller protects.
//! 6. An empty schedule, a zero duration and a plan that would delete every
//!    managed snapshot are refused.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};
use serde::Serialize;

use super::names::SnapshotName;
use super::snapshot_time::managed_timestamp;

/// Largest duration a rule may have (a typo must not overflow the calendar).
pub const MAX_DURATION: u32 = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Freq {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    /// Every snapshot of the window; the duration counts days.
    All,
}

impl FromStr for Freq {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "hourly" => Freq::Hourly,
            "daily" => Freq::Daily,
            "weekly" => Freq::Weekly,
            "monthly" => Freq::Monthly,
            "yearly" => Freq::Yearly,
            "all" => Freq::All,
            other => {
                return Err(format!("must be hourly, daily, weekly, monthly, yearly or all, got {other:?}"));
            }
        })
    }
}

impl fmt::Display for Freq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Freq::Hourly => "hourly",
            Freq::Daily => "daily",
            Freq::Weekly => "weekly",
            Freq::Monthly => "monthly",
            Freq::Yearly => "yearly",
            Freq::All => "all",
        })
    }
}

impl Freq {
    /// `n` of this rule's unit, as a span in the time zone's calendar.
    fn span(self, n: u32) -> Span {
        let n = i64::from(n);
        match self {
            Freq::Hourly => Span::new().hours(n),
            Freq::Daily | Freq::All => Span::new().days(n),
            Freq::Weekly => Span::new().days(7 * n),
            Freq::Monthly => Span::new().months(n),
            Freq::Yearly => Span::new().years(n),
        }
    }

    /// The bucket a moment falls in: the calendar hour (with the UTC offset,
    /// so the hour a DST change repeats is two buckets), date, ISO week,
    /// month or year. `All` has no buckets (None).
    fn bucket(self, z: &Zoned) -> Option<(i32, i32, i32, i32)> {
        let (y, m, d) = (i32::from(z.year()), i32::from(z.month()), i32::from(z.day()));
        Some(match self {
            Freq::Hourly => (y, m * 100 + d, i32::from(z.hour()), z.offset().seconds()),
            Freq::Daily => (y, m, d, 0),
            Freq::Weekly => {
                let w = z.date().iso_week_date();
                (i32::from(w.year()), i32::from(w.week()), 0, 0)
            }
            Freq::Monthly => (y, m, 0, 0),
            Freq::Yearly => (y, 0, 0, 0),
            Freq::All => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub name: String,
    pub freq: Freq,
    pub duration: u32,
}

#[derive(Clone, Debug)]
pub struct Schedule {
    pub name: String,
    pub rules: Vec<Rule>,
    /// The newest N managed snapshots are never deleted (at least 1).
    pub keep_last: usize,
    pub tz: TimeZone,
}

/// A snapshot as the planner sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub name: SnapshotName,
    /// Its `<ns>:snaprotate_rule` now.
    pub current_rule: Option<String>,
    /// Why it must not be deleted (held by X, has clones Y, volume locked
    /// by Z); empty when nothing protects it.
    pub protections: Vec<String>,
}

impl Candidate {
    pub fn new(name: &str) -> Self {
        Candidate {
            name: SnapshotName::new(name).unwrap_or_else(|e| panic!("{e}")),
            current_rule: None,
            protections: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Keep,
    Delete,
    Protect,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Keep => "keep",
            Action::Delete => "delete",
            Action::Protect => "protect",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub snapshot: SnapshotName,
    pub action: Action,
    /// The keeping rule's name, why it is protected, or why it goes.
    pub reason: String,
    /// The rule to record as `<ns>:snaprotate_rule` (only when it changes).
    pub set_rule: Option<String>,
    /// The moment a managed name stands for (None: foreign).
    #[serde(skip)]
    pub time: Option<Timestamp>,
}

/// One window of the plan: rule `rule` covers (from, to].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    pub rule: String,
    pub freq: Freq,
    /// None: the calendar ran out (the window reaches back to the start).
    #[serde(serialize_with = "ser_opt_ts")]
    pub from: Option<Timestamp>,
    #[serde(serialize_with = "ser_ts")]
    pub to: Timestamp,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    /// One per snapshot, in the order given (oldest first).
    pub decisions: Vec<Decision>,
    #[serde(serialize_with = "ser_opt_ts")]
    pub anchor: Option<Timestamp>,
    pub windows: Vec<Window>,
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn count(&self, a: Action) -> usize {
        self.decisions.iter().filter(|d| d.action == a).count()
    }

    /// The snapshots to delete, oldest first.
    pub fn deletions(&self) -> Vec<&Decision> {
        let mut d: Vec<&Decision> = self.decisions.iter().filter(|d| d.action == Action::Delete).collect();
        d.sort_by_key(|d| d.time);
        d
    }
}

fn ser_ts<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

fn ser_opt_ts<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.collect_str(t),
        None => s.serialize_none(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("schedule {0} has no rules")]
    EmptySchedule(String),
    #[error("schedule {schedule}: rule {rule} has a duration of 0")]
    ZeroDuration { schedule: String, rule: String },
    #[error("schedule {schedule}: rule {rule} has a duration above {MAX_DURATION}")]
    DurationTooLarge { schedule: String, rule: String },
    #[error("schedule {0}: keep_last must be at least 1")]
    KeepLastZero(String),
    #[error("schedule {schedule}: the plan would delete every managed snapshot ({count}); refused")]
    WouldDeleteAll { schedule: String, count: usize },
}

impl Schedule {
    /// Refuses a schedule that cannot be planned with.
    pub fn check(&self) -> Result<(), PlanError> {
        if self.rules.is_empty() {
            return Err(PlanError::EmptySchedule(self.name.clone()));
        }
        if self.keep_last == 0 {
            return Err(PlanError::KeepLastZero(self.name.clone()));
        }
        for r in &self.rules {
            if r.duration == 0 {
                return Err(PlanError::ZeroDuration { schedule: self.name.clone(), rule: r.name.clone() });
            }
            if r.duration > MAX_DURATION {
                return Err(PlanError::DurationTooLarge { schedule: self.name.clone(), rule: r.name.clone() });
            }
        }
        Ok(())
    }
}

struct Managed {
    idx: usize,
    time: Timestamp,
    zoned: Zoned,
}

/// Plans the rotation of one volume's snapshots (given oldest first).
pub fn plan(snapshots: &[Candidate], schedule: &Schedule, now: Timestamp) -> Result<Plan, PlanError> {
    schedule.check()?;
    let tz = &schedule.tz;
    let mut out = Plan::default();
    let mut managed: Vec<Managed> = Vec::new();
    let mut future: BTreeSet<usize> = BTreeSet::new();
    for (idx, c) in snapshots.iter().enumerate() {
        if let Some(time) = managed_timestamp(c.name.as_str(), tz) {
            if time > now {
                future.insert(idx);
                out.warnings.push(format!(
                    "snapshot {} is dated in the future (now is {}); kept, and not used as the anchor",
                    c.name,
                    now.to_zoned(tz.clone()).strftime("%Y-%m-%d_%H:%M:%S")
                ));
            }
            managed.push(Managed { idx, time, zoned: time.to_zoned(tz.clone()) });
        }
    }
    let anchor = managed.iter().filter(|m| !future.contains(&m.idx)).max_by_key(|m| (m.time, m.idx));
    out.anchor = anchor.map(|m| m.time);

    // idx -> keeping rule
    let mut kept: Vec<Option<usize>> = vec![None; snapshots.len()];
    if let Some(anchor) = anchor {
        let mut upper = Some(anchor.zoned.clone());
        for (ri, rule) in schedule.rules.iter().enumerate() {
            let Some(hi) = upper.clone() else { break };
            let lo = hi.checked_sub(rule.freq.span(rule.duration)).ok();
            out.windows.push(Window {
                rule: rule.name.clone(),
                freq: rule.freq,
                from: lo.as_ref().map(Zoned::timestamp),
                to: hi.timestamp(),
            });
            let in_window = |m: &&Managed| {
                !future.contains(&m.idx)
                    && m.time <= hi.timestamp()
                    && lo.as_ref().map(|lo| m.time > lo.timestamp()).unwrap_or(true)
            };
            let members: Vec<&Managed> = managed.iter().filter(in_window).collect();
            match rule.freq {
                Freq::All => {
                    for m in members {
                        kept[m.idx].get_or_insert(ri);
                    }
                }
                freq => {
                    // Buckets already holding a snapshot a younger window kept.
                    let taken: BTreeSet<_> = managed
                        .iter()
                        .filter(|m| kept[m.idx].is_some())
                        .filter_map(|m| freq.bucket(&m.zoned))
                        .collect();
                    let mut newest: std::collections::BTreeMap<_, &Managed> = std::collections::BTreeMap::new();
                    for m in members {
                        let Some(b) = freq.bucket(&m.zoned) else { continue };
                        if taken.contains(&b) {
                            continue;
                        }
                        let e = newest.entry(b).or_insert(m);
                        if (m.time, m.idx) > (e.time, e.idx) {
                            *e = m;
                        }
                    }
                    for m in newest.values() {
                        kept[m.idx] = Some(ri);
                    }
                }
            }
            upper = lo;
        }
    }

    // The keep_last newest managed snapshots (future ones included: they
    // are protected anyway).
    let mut by_age: Vec<&Managed> = managed.iter().collect();
    by_age.sort_by_key(|m| std::cmp::Reverse((m.time, m.idx)));
    let newest: BTreeSet<usize> = by_age.iter().take(schedule.keep_last).map(|m| m.idx).collect();
    let newest_one = by_age.first().map(|m| m.idx);

    let time_of = |idx: usize| managed.iter().find(|m| m.idx == idx).map(|m| m.time);
    for (idx, c) in snapshots.iter().enumerate() {
        let time = time_of(idx);
        let (action, reason, set_rule) = if time.is_none() {
            (Action::Keep, "foreign (not a managed snapshot name)".to_string(), None)
        } else if future.contains(&idx) {
            (Action::Protect, "dated in the future".to_string(), None)
        } else if let Some(ri) = kept[idx] {
            let name = &schedule.rules[ri].name;
            let set = (c.current_rule.as_deref() != Some(name.as_str())).then(|| name.clone());
            (Action::Keep, name.clone(), set)
        } else if Some(idx) == newest_one {
            (Action::Protect, "the newest snapshot".to_string(), None)
        } else if newest.contains(&idx) {
            (Action::Protect, format!("keep_last ({} newest)", schedule.keep_last), None)
        } else if !c.protections.is_empty() {
            (Action::Protect, c.protections.join("; "), None)
        } else {
            let why = if out.windows.last().and_then(|w| w.from).is_some_and(|from| time.is_some_and(|t| t <= from)) {
                "older than the last rule"
            } else {
                "not kept by any rule"
            };
            (Action::Delete, why.to_string(), None)
        };
        out.decisions.push(Decision { snapshot: c.name.clone(), action, reason, set_rule, time });
    }

    let survivors = out.decisions.iter().filter(|d| d.time.is_some() && d.action != Action::Delete).count();
    if !managed.is_empty() && survivors == 0 {
        return Err(PlanError::WouldDeleteAll { schedule: schedule.name.clone(), count: managed.len() });
    }
    Ok(out)
}

/// A defensive re-check for callers that change a plan (the executor turns
/// a failed destroy into a kept snapshot, never the other way round).
pub fn refuses_to_delete_all(plan: &Plan, schedule: &str) -> Result<(), PlanError> {
    let managed = plan.decisions.iter().filter(|d| d.time.is_some()).count();
    let survivors = plan.decisions.iter().filter(|d| d.time.is_some() && d.action != Action::Delete).count();
    if managed > 0 && survivors == 0 {
        return Err(PlanError::WouldDeleteAll { schedule: schedule.to_string(), count: managed });
    }
    Ok(())
}

#[cfg(test)]
#[path = "rotate_tests.rs"]
mod tests;
