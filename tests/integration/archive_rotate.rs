//! snaprotate on every backend: a year of daily snapshots rotated (and
//! rotated again: nothing more goes), holds and clones protect, the
//! checksum history of deleted snapshots is merged so the older ones stay
//! verifiable, refusals.

use std::time::Instant;

use santools::archive::names::{HoldTag, PropertyName, SnapshotName, VolumeName};
use santools::archive::snapshot_time::snapshot_name;

use crate::archive_lab::*;
use crate::helpers::*;

const MB: usize = 1 << 20;
const VOL: &str = "iscsi_lv_r_bk";

const SCHEDULES: &str = r#"
[snaprotate.schedules.SNAP_ROTATE_A]
rules = [ { name = "2MONTHS_DAILY_SHORT_TERM",   freq = "daily",   duration = 60 },
          { name = "4MONTHS_WEEKLY_MEDIUM_TERM", freq = "weekly",  duration = 16 },
          { name = "6MONTHS_MONTHLY_LONG_TERM",  freq = "monthly", duration = 6  } ]
keep_last = 1
timezone = "UTC"

[snaprotate.schedules.EMPTY]
rules = []
"#;

fn volume(name: &str, schedule: &str) -> String {
    format!("[[archive.volumes]]\nname = \"vg/{name}\"\npool = \"{{pool}}\"\nschedule = \"{schedule}\"\nsource = {{ kind = \"file\", path = \"{{dir}}/{name}.img\" }}\n")
}

fn setup(b: Backend, vols: &[(&str, &str)]) -> Option<Archive> {
    setup_sized(b, vols, MB)
}

fn setup_sized(b: Backend, vols: &[(&str, &str)], size: usize) -> Option<Archive> {
    let pool = PoolLab::new(b)?;
    let text: String = vols.iter().map(|(n, s)| volume(n, s)).collect::<String>() + SCHEDULES;
    let a = Archive::new(pool, &text);
    for (i, (n, _)) in vols.iter().enumerate() {
        write(&a.path(&format!("{n}.img")), &Rng(i as u64 + 1).bytes(size));
    }
    Some(a)
}

fn rotate_json(a: &Archive, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let o = run(a.tool("snaprotate").args(args).arg("--json"));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}\nstderr: {}", stdout(&o), stderr(&o)));
    (o.status.code(), v)
}

/// Creates a year of daily snapshots (23:00 UTC, the last one yesterday)
/// through the backend, with their snap_time property, as nightly backups
/// would have left them.
fn a_year_of_dailies(a: &Archive, vol: &str) -> Vec<String> {
    let store = a.store();
    let v = VolumeName::new(vol).unwrap();
    let key = PropertyName::new(&format!("{NS}:snap_time")).unwrap();
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let started = Instant::now();
    let days: Vec<(SnapshotName, jiff::Timestamp)> = (1..=365)
        .rev()
        .map(|back| {
            let day = today.checked_sub(jiff::Span::new().days(back)).unwrap();
            let at = day.at(23, 0, 0, 0).to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp();
            (snapshot_name(at, &jiff::tz::TimeZone::UTC), at)
        })
        .collect();
    // Four at a time on zfs-fuse (it overlaps the commands' latency);
    // btrfs and dir snapshot one volume one at a time, as backups do.
    let threads = if a.pool.backend == Backend::Zfs { 4 } else { 1 };
    std::thread::scope(|sc| {
        for part in days.chunks(days.len().div_ceil(threads)) {
            let (store, v, key) = (&store, &v, &key);
            sc.spawn(move || {
                for (name, at) in part {
                    store.create_snapshot(v, name, &[(key.clone(), at.as_second().to_string())]).unwrap();
                }
            });
        }
    });
    let names: Vec<String> = days.iter().map(|(n, _)| n.to_string()).collect();
    eprintln!("created 365 daily snapshots on {:?} in {:.1} s", a.pool.backend, started.elapsed().as_secs_f64());
    names
}

/// Backs up (all volumes) and waits until the clock has passed the
/// snapshot's name: two backups within one second get consecutive names,
/// which may lie a second ahead, and rotation treats a snapshot dated in
/// the future as such.
fn backup(a: &Archive) {
    ok(a.tool("backup").args(["-q", "-a"]));
    let newest = a.pool.snapshots(VOL).into_iter().chain(a.pool.snapshots("iscsi_lv_a_bk")).max().unwrap_or_default();
    let at = santools::archive::snapshot_time::managed_timestamp(&newest, &jiff::tz::TimeZone::UTC);
    while at.is_some_and(|t| jiff::Timestamp::now() <= t) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn decision<'a>(r: &'a serde_json::Value, snap: &str) -> &'a serde_json::Value {
    r["volumes"][0]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["snapshot"].as_str().unwrap().ends_with(&format!("@{snap}")))
        .unwrap_or_else(|| panic!("no decision for {snap}: {r}"))
}

fn a_year_of_daily_snapshots_is_rotated(b: Backend) {
    let Some(a) = setup_sized(b, &[("lv_r", "SNAP_ROTATE_A")], 64 << 10) else { return };
    ok(a.tool("backup").args(["-q", "-a"]));
    let newest = a.pool.snapshots(VOL)[0].clone();
    let year = a_year_of_dailies(&a, VOL);
    assert_eq!(a.pool.snapshots(VOL).len(), 366);

    // The dry run changes nothing and says what would go.
    let (code, plan) = rotate_json(&a, &["-a", "-n"]);
    assert_eq!(code, Some(0), "{plan}");
    let t = &plan["volumes"][0]["totals"];
    let (keep, delete) = (t["keep"].as_u64().unwrap(), t["delete"].as_u64().unwrap());
    // 60 dailies (the backup's own snapshot among them), 16 weeks, 6 months (± the edges).
    assert!((80..=84).contains(&keep), "{t}");
    assert_eq!(keep + delete + t["protect"].as_u64().unwrap(), 366);
    assert_eq!(a.pool.snapshots(VOL).len(), 366, "-n destroyed something");
    assert_eq!(decision(&plan, &newest)["action"], "keep");

    // A hold (a replication's base) and a clone protect what would go.
    let doomed: Vec<&str> =
        year.iter().map(String::as_str).filter(|s| decision(&plan, s)["action"] == "delete").collect();
    let store = a.store();
    let v = VolumeName::new(VOL).unwrap();
    store.hold(&v, &SnapshotName::new(doomed[0]).unwrap(), &HoldTag::new("santools-copy-host2").unwrap()).unwrap();
    store.clone_snapshot(&v, &SnapshotName::new(doomed[1]).unwrap(), &VolumeName::new("lv_r_clone").unwrap()).unwrap();
    let (_, plan) = rotate_json(&a, &["-a", "-n"]);
    assert_eq!(decision(&plan, doomed[0])["action"], "protect");
    assert!(decision(&plan, doomed[0])["reason"].as_str().unwrap().contains("held by santools-copy-host2"));
    assert!(decision(&plan, doomed[1])["reason"].as_str().unwrap().contains("has clones"), "{plan}");

    // The real run: text output, one line per snapshot plus the totals.
    let started = Instant::now();
    let out = ok(a.tool("snaprotate").args(["-s", VOL]));
    eprintln!("rotated 366 snapshots on {:?} in {:.1} s", b, started.elapsed().as_secs_f64());
    assert_eq!(out.lines().filter(|l| l.starts_with("delete ")).count() as u64, delete - 2, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with(&format!("keep {}/{VOL}@{newest} 2MONTHS_DAILY_SHORT_TERM", a.pool.name))),
        "{out}"
    );
    let left = a.pool.snapshots(VOL);
    assert_eq!(left.len() as u64, keep + 2);
    assert!(left.contains(&doomed[0].to_string()) && left.contains(&doomed[1].to_string()));
    // The keeping rule is recorded on the snapshot.
    let monthly = year.iter().find(|s| decision(&plan, s)["reason"] == "6MONTHS_MONTHLY_LONG_TERM").unwrap();
    assert_eq!(
        a.pool.snapshot_prop(VOL, monthly, &format!("{NS}:snaprotate_rule")).as_deref(),
        Some("6MONTHS_MONTHLY_LONG_TERM")
    );

    // A second run right after deletes nothing.
    let (code, again) = rotate_json(&a, &["-a"]);
    assert_eq!(code, Some(0), "{again}");
    assert_eq!(again["volumes"][0]["totals"]["delete"], 0, "{again}");
    // Released and un-cloned, they go on the next run.
    store.destroy_clone(&VolumeName::new("lv_r_clone").unwrap()).unwrap();
    assert!(store
        .release(&v, &SnapshotName::new(doomed[0]).unwrap(), &HoldTag::new("santools-copy-host2").unwrap())
        .unwrap());
    let (_, last) = rotate_json(&a, &["-a"]);
    assert_eq!(last["volumes"][0]["totals"]["deleted"], 2, "{last}");
    // The backup's snapshot still verifies.
    ok(a.tool("snapcheck").args(["-q", "-s", &format!("{}/{VOL}@{newest}", a.pool.name)]));
}

/// Three backups within a day: the daily rule keeps the newest; a hold
/// keeps the first. The middle one goes, its history is merged into the
/// first one's, and the first still verifies.
fn deleted_snapshots_history_is_merged(b: Backend) {
    let Some(a) = setup(b, &[("lv_r", "SNAP_ROTATE_A")]) else { return };
    let mut data = Rng(5).bytes(MB);
    for round in 0..3u8 {
        data[round as usize * 20000] ^= 0xff;
        write(&a.path("lv_r.img"), &data);
        backup(&a);
    }
    let snaps = a.pool.snapshots(VOL);
    assert_eq!(snaps.len(), 3);
    let v = VolumeName::new(VOL).unwrap();
    a.store().hold(&v, &SnapshotName::new(&snaps[0]).unwrap(), &HoldTag::new("operator").unwrap()).unwrap();
    let (code, r) = rotate_json(&a, &["-a"]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(decision(&r, &snaps[1])["action"], "delete");
    assert_eq!(decision(&r, &snaps[1])["deleted"], true);
    assert_eq!(decision(&r, &snaps[0])["action"], "protect");
    assert_eq!(a.pool.snapshots(VOL), vec![snaps[0].clone(), snaps[2].clone()]);
    let hist = a.pool.ddless_dir().join("history").join("iscsi_lv_r");
    assert!(!hist.join(format!("{}.delta", snaps[1])).exists());
    for s in [&snaps[0], &snaps[2]] {
        ok(a.tool("snapcheck").args(["-q", "-s", &format!("{}/{VOL}@{s}", a.pool.name)]));
    }
    // Nothing left for snapcheck -o.
    let o = ok(a.tool("snapcheck").args(["-o"]));
    assert!(!o.contains("removed orphan"), "{o}");
}

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod on_zfs { $( #[test] fn $name() { super::$name(super::Backend::Zfs) } )* }
        mod on_btrfs { $( #[test] fn $name() { super::$name(super::Backend::Btrfs) } )* }
        mod on_dir { $( #[test] fn $name() { super::$name(super::Backend::Dir) } )* }
    };
}

on_every_backend!(a_year_of_daily_snapshots_is_rotated, deleted_snapshots_history_is_merged);

/// An unknown or refused schedule skips its volume (exit 2) and the other
/// volumes are rotated; a locked volume loses nothing.
#[test]
fn refused_schedules_and_locked_volumes() {
    let Some(a) = setup(Backend::Dir, &[("lv_a", "SNAP_ROTATE_A"), ("lv_b", "NO_SUCH"), ("lv_c", "EMPTY")]) else {
        return;
    };
    backup(&a);
    backup(&a);
    let (code, r) = rotate_json(&a, &["-a"]);
    assert_eq!(code, Some(2), "{r}");
    let by = |vol: &str| {
        r["volumes"].as_array().unwrap().iter().find(|v| v["volume"].as_str().unwrap().ends_with(vol)).unwrap().clone()
    };
    assert!(by("iscsi_lv_b_bk")["errors"][0].as_str().unwrap().contains("NO_SUCH"), "{r}");
    assert!(by("iscsi_lv_c_bk")["errors"][0].as_str().unwrap().contains("has no rules"), "{r}");
    assert_eq!(by("iscsi_lv_a_bk")["totals"]["deleted"], 1, "{r}");
    assert_eq!(a.pool.snapshots("iscsi_lv_b_bk").len(), 2);
    // A volume another run holds: nothing deleted, and the plan says why.
    backup(&a);
    let lock_dir = a.path("lock");
    let vref = santools::archive::names::VolumeRef::new(
        santools::archive::names::PoolName::new(&a.pool.name).unwrap(),
        VolumeName::new("iscsi_lv_a_bk").unwrap(),
    );
    let held =
        santools::archive::volume_lock::lock_volume(&lock_dir, &vref, "snapcheck", std::time::Duration::ZERO).unwrap();
    let out = run(a.tool("snaprotate").args(["-s", "lv_a"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("volume in use"), "{}", stdout(&out));
    assert_eq!(a.pool.snapshots("iscsi_lv_a_bk").len(), 2);
    drop(held);
    ok(a.tool("snaprotate").args(["-q", "-s", "lv_a"]));
    assert_eq!(a.pool.snapshots("iscsi_lv_a_bk").len(), 1);
    // Bad arguments.
    fails_with(a.tool("snaprotate").args(["-s", "dirpool/../x"]), &["error"]);
    fails_with(a.tool("snaprotate").args(["-a", "--now", "soon"]), &["--now"]);
    fails_with(&mut a.tool("snaprotate"), &["-a"]);
}

/// Creates managed snapshots with these names (and their snap_time)
/// through the backend, oldest first.
fn snapshots_named(a: &Archive, vol: &str, names: &[&str]) {
    let store = a.store();
    let v = VolumeName::new(vol).unwrap();
    let key = PropertyName::new(&format!("{NS}:snap_time")).unwrap();
    for n in names {
        let at = santools::archive::snapshot_time::managed_timestamp(n, &jiff::tz::TimeZone::UTC).unwrap();
        store
            .create_snapshot(&v, &SnapshotName::new(n).unwrap(), &[(key.clone(), at.as_second().to_string())])
            .unwrap();
    }
}

/// Seed chunks 16 and 162: the 16 snapshots of one volume, as a rotation
/// with SNAP_ROTATE_A left them. Rotated for real on zfs-fuse at
/// 2011-03-29, nothing goes; the dry run before it does not even label.
#[test]
fn the_seeds_example_list_rotated_at_2011_03_29_deletes_nothing() {
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
    let Some(a) = setup_sized(Backend::Zfs, &[("lv_r", "SNAP_ROTATE_A")], 64 << 10) else { return };
    // The volume, with its schedule, and today's snapshot (dated in the
    // future of --now: protected, never the anchor).
    ok(a.tool("backup").args(["-q", "-a"]));
    let today = a.pool.snapshots(VOL)[0].clone();
    snapshots_named(&a, VOL, &seed);
    let rule = |s: &str| a.pool.snapshot_prop(VOL, s, &format!("{NS}:snaprotate_rule"));
    let (code, plan) = rotate_json(&a, &["-a", "-n", "--now", "2011-03-29T23:00:00Z"]);
    assert_eq!(code, Some(0), "{plan}");
    assert_eq!(plan["volumes"][0]["totals"]["delete"], 0, "{plan}");
    assert!(seed.iter().all(|s| rule(s).is_none()), "-n labelled a snapshot");
    for _ in 0..2 {
        let (code, r) = rotate_json(&a, &["-a", "--now", "2011-03-29T23:00:00Z"]);
        assert_eq!(code, Some(0), "{r}");
        let t = &r["volumes"][0]["totals"];
        assert_eq!(
            (t["keep"].as_u64(), t["delete"].as_u64(), t["deleted"].as_u64()),
            (Some(16), Some(0), Some(0)),
            "{r}"
        );
        assert_eq!(decision(&r, &today)["reason"], "dated in the future", "{r}");
    }
    assert_eq!(a.pool.snapshots(VOL).len(), 17);
    assert_eq!(rule(seed[0]).as_deref(), Some("6MONTHS_MONTHLY_LONG_TERM"));
    assert_eq!(rule(seed[2]).as_deref(), Some("4MONTHS_WEEKLY_MEDIUM_TERM"));
    assert_eq!(rule(seed[15]).as_deref(), Some("2MONTHS_DAILY_SHORT_TERM"));
}

/// A destroy that fails (here: a zfs shim that fails for one snapshot) is
/// reported, the run goes on with the others and exits 2; the next run
/// finishes the job.
#[test]
fn a_failed_destroy_is_reported_the_run_goes_on_and_exits_2() {
    use std::os::unix::fs::PermissionsExt;
    let Some(a) = setup_sized(Backend::Zfs, &[("lv_r", "SNAP_ROTATE_A")], 64 << 10) else { return };
    // The volume, with its schedule, and today's snapshot (dated in the
    // future of --now: protected, never the anchor).
    ok(a.tool("backup").args(["-q", "-a"]));
    let today = a.pool.snapshots(VOL)[0].clone();
    // Three on one day: the two older ones go (the daily rule keeps the newest).
    let snaps = ["2011-03-29_01:00:00", "2011-03-29_02:00:00", "2011-03-29_03:00:00"];
    snapshots_named(&a, VOL, &snaps);
    let real = ["/usr/sbin/zfs", "/sbin/zfs", "/usr/bin/zfs"].into_iter().find(|p| std::path::Path::new(p).exists());
    let shim_dir = a.path("shim");
    std::fs::create_dir_all(&shim_dir).unwrap();
    let failing = format!("{}/{VOL}@{}", a.pool.name, snaps[0]);
    std::fs::write(
        shim_dir.join("zfs"),
        format!(
            "#!/bin/sh\nif [ \"$1\" = destroy ] && [ \"$2\" = '{failing}' ]; then echo \"cannot destroy '$2': I/O error\" >&2; exit 1; fi\nexec {} \"$@\"\n",
            real.unwrap()
        ),
    )
    .unwrap();
    std::fs::set_permissions(shim_dir.join("zfs"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", shim_dir.display(), std::env::var("PATH").unwrap_or_default());
    let o = run(a.tool("snaprotate").args(["-a", "--now", "2011-03-30T00:00:00Z"]).env("PATH", &path));
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("delete {failing} ")) && out.contains("FAILED: "), "{out}");
    assert!(out.contains("1 deleted, 1 FAILED"), "{out}");
    assert_eq!(a.pool.snapshots(VOL), vec![snaps[0].to_string(), snaps[2].to_string(), today]);
    // Without the shim the next run removes it, and a run after that nothing.
    let (code, r) = rotate_json(&a, &["-a", "--now", "2011-03-30T00:00:00Z"]);
    assert_eq!((code, r["volumes"][0]["totals"]["deleted"].as_u64()), (Some(0), Some(1)), "{r}");
    let (code, r) = rotate_json(&a, &["-a", "--now", "2011-03-30T00:00:00Z"]);
    assert_eq!((code, r["volumes"][0]["totals"]["delete"].as_u64()), (Some(0), Some(0)), "{r}");
}

/// `-n` writes nothing anywhere: not in the pool, the lock directory or
/// the log (every file's size and mtime compared).
#[test]
fn a_dry_run_changes_no_file() {
    let Some(a) = setup(Backend::Dir, &[("lv_r", "SNAP_ROTATE_A")]) else { return };
    backup(&a);
    backup(&a);
    fn tree(dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let m = e.metadata().unwrap();
            out.push(format!("{} {} {:?}", e.path().display(), m.len(), m.modified().unwrap()));
            if m.is_dir() {
                tree(&e.path(), out);
            }
        }
    }
    let snapshot = || {
        let mut v = Vec::new();
        tree(&a.path(""), &mut v);
        v.sort();
        v
    };
    let before = snapshot();
    let (code, plan) = rotate_json(&a, &["-a", "-n"]);
    assert_eq!(code, Some(0), "{plan}");
    assert_eq!(plan["volumes"][0]["totals"]["delete"], 1, "{plan}");
    assert_eq!(snapshot(), before, "snaprotate -n changed a file");
}
