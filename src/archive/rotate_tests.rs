//! Tables of rotation cases: boundaries, month clamping, ISO weeks across
//! new year, DST, time zones, twice-daily backups, a year of dailies.

use super::*;
use crate::archive::snapshot_time::{parse_time_zone, snapshot_name};

fn rule(name: &str, freq: Freq, duration: u32) -> Rule {
    Rule { name: name.into(), freq, duration }
}

fn sched(rules: Vec<Rule>, tz: &str) -> Schedule {
    Schedule { name: "S".into(), rules, keep_last: 1, tz: parse_time_zone(tz).unwrap() }
}

/// The seed's SNAP_ROTATE_A (chunk 3).
fn rotate_a() -> Schedule {
    sched(
        vec![
            rule("2MONTHS_DAILY_SHORT_TERM", Freq::Daily, 60),
            rule("4MONTHS_WEEKLY_MEDIUM_TERM", Freq::Weekly, 16),
            rule("6MONTHS_MONTHLY_LONG_TERM", Freq::Monthly, 6),
        ],
        "UTC",
    )
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn cands(names: &[&str]) -> Vec<Candidate> {
    names.iter().map(|n| Candidate::new(n)).collect()
}

/// (name, action, reason) of each decision.
fn run(names: &[&str], s: &Schedule, now: &str) -> Vec<(String, Action, String)> {
    plan(&cands(names), s, ts(now))
        .unwrap()
        .decisions
        .into_iter()
        .map(|d| (d.snapshot.to_string(), d.action, d.reason))
        .collect()
}

fn deleted(names: &[&str], s: &Schedule, now: &str) -> Vec<String> {
    run(names, s, now).into_iter().filter(|d| d.1 == Action::Delete).map(|d| d.0).collect()
}

#[test]
fn the_seeds_example_list_is_a_valid_rotation_output() {
    // Seed chunks 16 and 162: the 16 snapshots of one volume in TkZFS.
    let seed = [
        "2010-08-06_01:22:14",
        "2010-09-07_03:25:59",
        "2010-10-09_09:35:27",
        "2010-11-10_15:39:25",
        "2010-12-20_15:42:44",
        "2011-01-05_15:49:56",
        "2011-01-13_15:35:46",
        "2011-01-21_09:39:29",
        "2011-01-29_15:31:45",
        "2011-02-06_15:37:37",
        "2011-02-15_15:45:39",
        "2011-02-23_16:02:17",
        "2011-03-03_15:44:45",
        "2011-03-11_09:53:34",
        "2011-03-22_16:19:23",
        "2011-03-29_14:32:58",
    ];
    let d = run(&seed, &rotate_a(), "2011-03-29T23:00:00Z");
    assert!(d.iter().all(|x| x.1 == Action::Keep), "{d:#?}");
    let rules: Vec<&str> = d.iter().map(|x| x.2.as_str()).collect();
    assert_eq!(&rules[..2], ["6MONTHS_MONTHLY_LONG_TERM"; 2]);
    assert_eq!(&rules[2..8], ["4MONTHS_WEEKLY_MEDIUM_TERM"; 6]);
    assert_eq!(&rules[8..], ["2MONTHS_DAILY_SHORT_TERM"; 8]);
}

#[test]
fn refused_schedules() {
    let mut s = sched(vec![], "UTC");
    assert_eq!(plan(&[], &s, ts("2011-01-01T00:00:00Z")).unwrap_err(), PlanError::EmptySchedule("S".into()));
    s.rules = vec![rule("D", Freq::Daily, 0)];
    assert!(matches!(plan(&[], &s, ts("2011-01-01T00:00:00Z")), Err(PlanError::ZeroDuration { .. })));
    s.rules = vec![rule("D", Freq::Daily, MAX_DURATION + 1)];
    assert!(matches!(plan(&[], &s, ts("2011-01-01T00:00:00Z")), Err(PlanError::DurationTooLarge { .. })));
    s.rules = vec![rule("D", Freq::Daily, 1)];
    s.keep_last = 0;
    assert!(plan(&[], &s, ts("2011-01-01T00:00:00Z")).is_err());
    // The defensive check on a changed plan.
    let mut p = plan(
        &cands(&["2011-01-01_00:00:00"]),
        &sched(vec![rule("D", Freq::Daily, 1)], "UTC"),
        ts("2011-01-02T00:00:00Z"),
    )
    .unwrap();
    assert!(refuses_to_delete_all(&p, "S").is_ok());
    p.decisions[0].action = Action::Delete;
    assert!(matches!(refuses_to_delete_all(&p, "S"), Err(PlanError::WouldDeleteAll { count: 1, .. })));
}

#[test]
fn nothing_managed_means_nothing_to_do() {
    let d = run(&["before-upgrade", "manual"], &rotate_a(), "2011-03-29T00:00:00Z");
    assert!(d.iter().all(|x| x.1 == Action::Keep && x.2.starts_with("foreign")), "{d:?}");
    assert!(plan(&[], &rotate_a(), ts("2011-03-29T00:00:00Z")).unwrap().decisions.is_empty());
}

#[test]
fn a_snapshot_on_a_boundary_belongs_to_the_older_window() {
    let s = sched(vec![rule("D2", Freq::Daily, 2), rule("W1", Freq::Weekly, 1)], "UTC");
    let names = [
        "2011-03-19_12:00:00", // T-10d: older than the last window (T-9d)
        "2011-03-20_12:00:00", // T-9d exactly: the boundary of W1: older: deleted
        "2011-03-20_12:00:01", // inside W1, ISO week 11
        "2011-03-27_12:00:00", // T-2d exactly: W1, ISO week 12
        "2011-03-27_12:00:01", // inside D2 (Sunday, week 12)
        "2011-03-28_12:00:00", // T-1d
        "2011-03-29_12:00:00", // T
    ];
    let d = run(&names, &s, "2011-03-29T12:00:00Z");
    let got: Vec<(&str, Action, &str)> = d.iter().map(|x| (x.0.as_str(), x.1, x.2.as_str())).collect();
    assert_eq!(
        got,
        [
            ("2011-03-19_12:00:00", Action::Delete, "older than the last rule"),
            ("2011-03-20_12:00:00", Action::Delete, "older than the last rule"),
            ("2011-03-20_12:00:01", Action::Keep, "W1"),
            // Week 12 already has a snapshot D2 kept (03-27 12:00:01).
            ("2011-03-27_12:00:00", Action::Delete, "not kept by any rule"),
            ("2011-03-27_12:00:01", Action::Keep, "D2"),
            ("2011-03-28_12:00:00", Action::Keep, "D2"),
            ("2011-03-29_12:00:00", Action::Keep, "D2"),
        ]
    );
    let p = plan(&cands(&names), &s, ts("2011-03-29T12:00:00Z")).unwrap();
    assert_eq!(p.windows[0].from, Some(ts("2011-03-27T12:00:00Z")));
    assert_eq!(p.windows[1].from, Some(ts("2011-03-20T12:00:00Z")));
    // Deleted oldest first.
    let order: Vec<String> = p.deletions().iter().map(|d| d.snapshot.to_string()).collect();
    assert_eq!(order, ["2011-03-19_12:00:00", "2011-03-20_12:00:00", "2011-03-27_12:00:00"]);
}

#[test]
fn months_are_clamped() {
    // Aug 31 - 6 months = Feb 28 (not "Feb 31" = Mar 3).
    let s = sched(vec![rule("M6", Freq::Monthly, 6)], "UTC");
    let names = ["2011-02-28_12:00:00", "2011-02-28_12:00:01", "2011-03-02_00:00:00", "2011-08-31_12:00:00"];
    let d = run(&names, &s, "2011-09-01T00:00:00Z");
    assert_eq!(d.iter().map(|x| x.1).collect::<Vec<_>>(), [Action::Delete, Action::Keep, Action::Keep, Action::Keep]);
    // Consecutive windows clamp from the previous boundary: Mar 31 - 1 day
    // = Mar 30, minus 1 month = Feb 28 (2011).
    let s = sched(vec![rule("D1", Freq::Daily, 1), rule("M1", Freq::Monthly, 1)], "UTC");
    let p = plan(&cands(&["2011-03-31_00:00:00"]), &s, ts("2011-04-01T00:00:00Z")).unwrap();
    assert_eq!(p.windows[1].from, Some(ts("2011-02-28T00:00:00Z")));
    // Years: Feb 29 - 1 year = Feb 28.
    let s = sched(vec![rule("Y1", Freq::Yearly, 1)], "UTC");
    let p = plan(&cands(&["2012-02-29_00:00:00"]), &s, ts("2012-03-01T00:00:00Z")).unwrap();
    assert_eq!(p.windows[0].from, Some(ts("2011-02-28T00:00:00Z")));
}

#[test]
fn iso_weeks_across_new_year() {
    let s = sched(vec![rule("W", Freq::Weekly, 4)], "UTC");
    let names = [
        "2020-12-27_10:00:00", // Sunday, 2020-W52
        "2020-12-28_10:00:00", // Monday, 2020-W53
        "2021-01-03_10:00:00", // Sunday, still 2020-W53
        "2021-01-04_10:00:00", // Monday, 2021-W01
    ];
    let d = run(&names, &s, "2021-01-05T00:00:00Z");
    assert_eq!(d.iter().map(|x| x.1).collect::<Vec<_>>(), [Action::Keep, Action::Delete, Action::Keep, Action::Keep]);
    // 2018-12-31 (Monday) is in 2019-W01 with 2019-01-01.
    let d = deleted(&["2018-12-31_10:00:00", "2019-01-01_10:00:00"], &s, "2019-01-02T00:00:00Z");
    assert_eq!(d, ["2018-12-31_10:00:00"]);
}

#[test]
fn days_are_calendar_days_in_the_time_zone_across_dst() {
    // Europe/Zurich springs forward on 2021-03-28: three calendar days back
    // from 2021-03-29 00:30 are 71 hours, not 72.
    let s = sched(vec![rule("D3", Freq::Daily, 3)], "Europe/Zurich");
    let names = ["2021-03-26_00:30:00", "2021-03-26_00:30:01", "2021-03-29_00:30:00"];
    let d = run(&names, &s, "2021-03-29T12:00:00Z");
    assert_eq!(d.iter().map(|x| x.1).collect::<Vec<_>>(), [Action::Delete, Action::Keep, Action::Keep]);
    // The same names in UTC: three days are 72 hours, the same outcome in
    // civil terms.
    let s_utc = sched(vec![rule("D3", Freq::Daily, 3)], "UTC");
    let d = run(&names, &s_utc, "2021-03-29T12:00:00Z");
    assert_eq!(d[0].1, Action::Delete);
    // Hours are exact hours: three hours back from 03:30 CEST (01:30Z) is
    // 22:30Z, 23:30 CET the day before (the clock skipped 02:00-03:00).
    let h = sched(vec![rule("H3", Freq::Hourly, 3)], "Europe/Zurich");
    let names = ["2021-03-27_23:30:00", "2021-03-28_00:30:00", "2021-03-28_01:30:00", "2021-03-28_03:30:00"];
    let d = run(&names, &h, "2021-03-28T12:00:00Z");
    assert_eq!(d.iter().map(|x| x.1).collect::<Vec<_>>(), [Action::Delete, Action::Keep, Action::Keep, Action::Keep]);
}

#[test]
fn hourly_buckets_keep_both_hours_a_dst_end_repeats() {
    // 2021-10-31 in Zurich: 02:00-02:59 happens twice (CEST, then CET).
    // The two 02:30s are different hours, so different buckets.
    let tz = parse_time_zone("Europe/Zurich").unwrap();
    let cest = ts("2021-10-31T00:30:00Z").to_zoned(tz.clone());
    let cet = ts("2021-10-31T01:30:00Z").to_zoned(tz.clone());
    assert_eq!(cest.strftime("%H:%M").to_string(), cet.strftime("%H:%M").to_string());
    assert_ne!(Freq::Hourly.bucket(&cest), Freq::Hourly.bucket(&cet));
    assert_eq!(Freq::Daily.bucket(&cest), Freq::Daily.bucket(&cet));
    // Names read as the first of the two (compatible disambiguation).
    let h = Schedule { name: "H".into(), rules: vec![rule("H", Freq::Hourly, 6)], keep_last: 1, tz };
    let names = ["2021-10-31_01:45:00", "2021-10-31_02:15:00", "2021-10-31_02:45:00", "2021-10-31_03:15:00"];
    let d = run(&names, &h, "2021-10-31T12:00:00Z");
    assert_eq!(d.iter().map(|x| x.1).collect::<Vec<_>>(), [Action::Keep, Action::Delete, Action::Keep, Action::Keep]);
}

#[test]
fn names_are_read_in_the_schedules_time_zone() {
    let names = ["2011-03-29_23:00:00", "2011-03-30_00:30:00"];
    // In UTC both are past at 07:00Z; in Los Angeles the second is 07:30Z:
    // in the future, kept and warned about, and not the anchor.
    let utc = sched(vec![rule("D", Freq::Daily, 1)], "UTC");
    let d = run(&names, &utc, "2011-03-30T07:00:00Z");
    assert_eq!(d.iter().map(|x| x.1).collect::<Vec<_>>(), [Action::Keep, Action::Keep]);
    let p = plan(&cands(&names), &utc, ts("2011-03-30T07:00:00Z")).unwrap();
    assert_eq!(p.anchor, Some(ts("2011-03-30T00:30:00Z")));
    let la = sched(vec![rule("D", Freq::Daily, 1)], "America/Los_Angeles");
    let p = plan(&cands(&names), &la, ts("2011-03-30T07:00:00Z")).unwrap();
    assert_eq!(p.decisions[1].action, Action::Protect);
    assert_eq!(p.decisions[1].reason, "dated in the future");
    assert_eq!(p.decisions[0].action, Action::Keep);
    assert_eq!(p.anchor, Some(ts("2011-03-30T06:00:00Z")));
    assert_eq!(p.warnings.len(), 1);
}

#[test]
fn twice_daily_backups_keep_the_newest_of_each_day() {
    let s = sched(vec![rule("D7", Freq::Daily, 7)], "UTC");
    let mut names = Vec::new();
    for day in 1..=10 {
        for hour in ["03", "15"] {
            names.push(format!("2011-03-{day:02}_{hour}:00:00"));
        }
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let d = run(&refs, &s, "2011-03-10T20:00:00Z");
    let kept: Vec<&str> = d.iter().filter(|x| x.1 == Action::Keep).map(|x| x.0.as_str()).collect();
    // Window (03-03 15:00, 03-10 15:00]: the 03:00 of day 4..10 and 15:00 of
    // day 4..10 are in it; the newest per date is the 15:00 one.
    assert_eq!(kept, (4..=10).map(|d| format!("2011-03-{d:02}_15:00:00")).collect::<Vec<_>>());
}

#[test]
fn foreign_snapshots_are_never_deleted_nor_counted() {
    let s = sched(vec![rule("D1", Freq::Daily, 1)], "UTC");
    let d =
        run(&["before-upgrade", "2011-03-01_00:00:00", "2011-03-29_00:00:00", "zz-last"], &s, "2011-03-30T00:00:00Z");
    assert_eq!(d.iter().map(|x| x.1).collect::<Vec<_>>(), [Action::Keep, Action::Delete, Action::Keep, Action::Keep]);
}

#[test]
fn protections_and_keep_last_carry_their_reasons() {
    let mut s = sched(vec![rule("D1", Freq::Daily, 1)], "UTC");
    s.keep_last = 3;
    let mut c = cands(&[
        "2011-03-20_00:00:00",
        "2011-03-21_00:00:00",
        "2011-03-22_00:00:00",
        "2011-03-27_00:00:00",
        "2011-03-28_00:00:00",
        "2011-03-29_00:00:00",
    ]);
    c[1].protections.push("held by santools-copy-b".into());
    c[2].protections.push("has clones tank/x".into());
    let p = plan(&c, &s, ts("2011-03-30T00:00:00Z")).unwrap();
    let got: Vec<(Action, &str)> = p.decisions.iter().map(|d| (d.action, d.reason.as_str())).collect();
    assert_eq!(
        got,
        [
            (Action::Delete, "older than the last rule"),
            (Action::Protect, "held by santools-copy-b"),
            (Action::Protect, "has clones tank/x"),
            (Action::Protect, "keep_last (3 newest)"),
            (Action::Protect, "keep_last (3 newest)"),
            (Action::Keep, "D1"),
        ]
    );
    assert_eq!(p.decisions[5].set_rule.as_deref(), Some("D1"));
    // The rule is written only when it changes.
    c[5].current_rule = Some("D1".into());
    let p = plan(&c, &s, ts("2011-03-30T00:00:00Z")).unwrap();
    assert_eq!(p.decisions[5].set_rule, None);
}

#[test]
fn the_result_does_not_move_when_now_does() {
    // Backups stopped: history does not expire.
    let names: Vec<String> = (1..=28).map(|d| format!("2011-02-{d:02}_23:00:00")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let a = run(&refs, &rotate_a(), "2011-03-01T00:00:00Z");
    let b = run(&refs, &rotate_a(), "2013-01-01T00:00:00Z");
    assert_eq!(a, b);
    assert!(a.iter().all(|x| x.1 == Action::Keep));
}

fn year_of_dailies() -> Vec<String> {
    let start = ts("2010-03-30T23:00:00Z");
    (0..365).map(|d| snapshot_name(start + Span::new().hours(24 * d), &TimeZone::UTC).to_string()).collect()
}

/// Checks a rotated set against the schedule's promise: the daily window is
/// whole, weekly and monthly windows hold at most one snapshot per bucket.
fn check_invariants(kept: &[String], s: &Schedule, now: &str) {
    let refs: Vec<&str> = kept.iter().map(String::as_str).collect();
    let p = plan(&cands(&refs), s, ts(now)).unwrap();
    assert_eq!(p.count(Action::Delete), 0, "a second run deletes nothing");
    let zoned = |n: &str| managed_timestamp(n, &s.tz).unwrap().to_zoned(s.tz.clone());
    for (w, rule) in p.windows.iter().zip(&s.rules) {
        let members: Vec<Zoned> = kept
            .iter()
            .map(|n| zoned(n))
            .filter(|z| z.timestamp() <= w.to && w.from.map(|f| z.timestamp() > f).unwrap_or(true))
            .collect();
        let buckets: BTreeSet<_> = members.iter().filter_map(|z| rule.freq.bucket(z)).collect();
        assert_eq!(buckets.len(), members.len(), "{}: two snapshots in one bucket", rule.name);
    }
}

#[test]
fn a_year_of_dailies_rotated_once() {
    let names = year_of_dailies();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let s = rotate_a();
    let now = "2011-03-30T00:00:00Z";
    let p = plan(&cands(&refs), &s, ts(now)).unwrap();
    let by_rule = |r: &str| p.decisions.iter().filter(|d| d.action == Action::Keep && d.reason == r).count();
    assert_eq!(by_rule("2MONTHS_DAILY_SHORT_TERM"), 60);
    // 112 days back from 2011-01-28 23:00: ISO weeks 2010-W41 (partly)
    // .. 2011-W04, minus W04 which the daily window already covers.
    assert_eq!(by_rule("4MONTHS_WEEKLY_MEDIUM_TERM"), 16);
    // 2010-04-08 .. 2010-10-08: April .. October, minus October (a weekly
    // snapshot is in it).
    assert_eq!(by_rule("6MONTHS_MONTHLY_LONG_TERM"), 6);
    assert_eq!(p.count(Action::Delete), 365 - 82);
    let kept: Vec<String> =
        p.decisions.iter().filter(|d| d.action != Action::Delete).map(|d| d.snapshot.to_string()).collect();
    check_invariants(&kept, &s, now);
    // The monthly keeps are each month's last day (the newest in it).
    let monthly: Vec<String> = p
        .decisions
        .iter()
        .filter(|d| d.reason == "6MONTHS_MONTHLY_LONG_TERM")
        .map(|d| d.snapshot.as_str()[..10].to_string())
        .collect();
    assert_eq!(monthly, ["2010-04-30", "2010-05-31", "2010-06-30", "2010-07-31", "2010-08-31", "2010-09-30"]);
}

#[test]
fn a_year_of_dailies_rotated_after_every_backup() {
    let s = rotate_a();
    let mut kept: Vec<String> = Vec::new();
    let mut most = 0;
    for name in year_of_dailies() {
        kept.push(name.clone());
        let now = managed_timestamp(&name, &s.tz).unwrap() + Span::new().minutes(5);
        let refs: Vec<&str> = kept.iter().map(String::as_str).collect();
        let p = plan(&cands(&refs), &s, now).unwrap();
        kept = p.decisions.iter().filter(|d| d.action != Action::Delete).map(|d| d.snapshot.to_string()).collect();
        most = most.max(kept.len());
    }
    // Never more than the windows can hold (60 + 17 weeks + 7 months).
    assert!(most <= 84, "{most}");
    let now = "2011-03-30T00:00:00Z";
    check_invariants(&kept, &s, now);
    let refs: Vec<&str> = kept.iter().map(String::as_str).collect();
    let p = plan(&cands(&refs), &s, ts(now)).unwrap();
    let by_rule = |r: &str| p.decisions.iter().filter(|d| d.reason == r).count();
    assert_eq!(by_rule("2MONTHS_DAILY_SHORT_TERM"), 60);
    assert_eq!(by_rule("4MONTHS_WEEKLY_MEDIUM_TERM"), 16);
    assert_eq!(by_rule("6MONTHS_MONTHLY_LONG_TERM"), 6);
}

/// The picture in docs/archive.md ("a year of kept snapshots"): one row
/// per month, one column per day: D daily, W weekly, M monthly keep, P
/// protected, `.` deleted, blank no snapshot. Regenerate the doc from this if it changes.
fn year_picture() -> String {
    let names = year_of_dailies();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let p = plan(&cands(&refs), &rotate_a(), ts("2011-03-30T00:00:00Z")).unwrap();
    let mut rows: std::collections::BTreeMap<String, Vec<char>> = std::collections::BTreeMap::new();
    for d in &p.decisions {
        let n = d.snapshot.as_str();
        let row = rows.entry(n[..7].to_string()).or_insert_with(|| vec![' '; 31]);
        let day: usize = n[8..10].parse().unwrap();
        row[day - 1] = match (d.action, d.reason.as_str()) {
            (Action::Keep, "2MONTHS_DAILY_SHORT_TERM") => 'D',
            (Action::Keep, "4MONTHS_WEEKLY_MEDIUM_TERM") => 'W',
            (Action::Keep, "6MONTHS_MONTHLY_LONG_TERM") => 'M',
            (Action::Protect, _) => 'P',
            (Action::Delete, _) => '.',
            (Action::Keep, other) => panic!("unexpected rule {other}"),
        };
    }
    let mut s = String::from("         1234567890123456789012345678901\n");
    for (m, r) in rows {
        s.push_str(&format!("{m}  {}\n", r.iter().collect::<String>().trim_end()));
    }
    s
}

#[test]
fn the_year_picture_in_the_docs() {
    let want = include_str!("../../tests/fixtures/rotation/year-snap-rotate-a.txt");
    assert_eq!(year_picture(), want, "\n{}", year_picture());
}
