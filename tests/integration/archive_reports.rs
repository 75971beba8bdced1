//! zfs-df, zfs-list, zfs-zvols, zfs-customprop-set/-del and archive-status on
//! every backend.

use crate::archive_lab::*;
use crate::helpers::*;

const VOL: &str = "iscsi_lv_q_bk";

fn volume(name: &str, enabled: bool) -> String {
    format!("[[archive.volumes]]\nname = \"vg/{name}\"\npool = \"{{pool}}\"\nschedule = \"SNAP_ROTATE_A\"\nenabled = {enabled}\nsource = {{ kind = \"file\", path = \"{{dir}}/{name}.img\" }}\n")
}

fn json(a: &Archive, tool: &str, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let o = run(a.tool(tool).args(args).arg("--json"));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{tool}: bad JSON ({e}): {}\nstderr: {}", stdout(&o), stderr(&o)));
    (o.status.code(), v)
}

fn reports_work_on_every_backend(b: Backend) {
    let Some(pool) = PoolLab::new(b) else { return };
    let a = Archive::new(pool, &volume("lv_q", true));
    write(&a.path("lv_q.img"), &Rng(9).bytes(1 << 20));
    ok(a.tool("backup").args(["-q", "-a"]));
    ok(a.tool("backup").args(["-q", "-a"]));
    let snaps = a.pool.snapshots(VOL);
    let vol = format!("{}/{VOL}", a.pool.name);

    // Not verified yet: WARNING (never verified); Nagios exit code 1.
    let o = run(&mut a.tool("archive-status"));
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).starts_with("ARCHIVE WARNING - ") && stdout(&o).contains("never verified"), "{}", stdout(&o));
    ok(a.tool("snapcheck").args(["-q", "-s", &format!("{vol}@{}", snaps[1])]));
    let o = run(&mut a.tool("archive-status"));
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).starts_with("ARCHIVE OK - 1 volume(s)"), "{}", stdout(&o));
    assert!(stdout(&o).contains("| volumes=1 ok=1 warning=0 critical=0"), "{}", stdout(&o));

    // zfs-df: the seed's columns, human and exact.
    let text = ok(&mut a.tool("zfs-df"));
    assert!(text.starts_with("NAME"), "{text}");
    for col in ["VOLSIZE", "REFRESERV", "RATIO", "USEDDS", "USEDSNAP", "USEDREFRESERV", "USEDCHILD", "USED", "RESERV"] {
        assert!(text.lines().next().unwrap().contains(col), "{text}");
    }
    assert!(text.contains(&vol) && text.contains("1.00M"), "{text}");
    let (code, df) = json(&a, "zfs-df", &[]);
    assert_eq!(code, Some(0), "{df}");
    let row = &df["volumes"][0];
    assert_eq!(row["name"], vol.as_str());
    assert_eq!(row["volsize"], 1 << 20);
    assert!(row["used_by_dataset"].as_u64().unwrap() > 0, "{row}");
    assert!(row["used"].as_u64().is_some(), "{row}");
    if b != Backend::Zfs {
        assert!(row["reservation"].is_null() && row["compressratio"].is_null(), "{row}");
        assert!(ok(a.tool("zfs-df").arg("-p")).lines().nth(1).unwrap().contains(" - "));
    }

    // zfs-zvols: one line per volume.
    let (_, z) = json(&a, "zfs-zvols", &[]);
    let r = &z["volumes"][0];
    assert_eq!((r["snapshots"].as_u64(), r["last_snapcheck"].as_str()), (Some(2), Some("ok")), "{z}");
    assert_eq!(r["newest"], snaps[1].as_str());
    assert_eq!(r["schedule"], "SNAP_ROTATE_A");
    let text = ok(a.tool("zfs-zvols").arg("-v"));
    assert!(text.contains("SNAPCHECK") && text.contains("SCHEDULE") && text.contains("ok ("), "{text}");

    // customprop: set on the volume and a snapshot, seen by zfs-list, removed again.
    ok(a.tool("zfs-customprop-set").args([&vol, "note", "kept for audit"]));
    ok(a.tool("zfs-customprop-set").args([&format!("{vol}@{}", snaps[0]), &format!("{NS}:note"), "first"]));
    let (_, t) = json(&a, "zfs-list", &[]);
    let v = &t[0]["volumes"][0];
    assert_eq!(v["properties"][format!("{NS}:note")], "kept for audit", "{t}");
    assert_eq!(v["snapshots"][0]["properties"][format!("{NS}:note")], "first", "{t}");
    assert!(v["snapshots"][0]["properties"][format!("{NS}:snap_time")].is_string(), "{t}");
    let text = ok(&mut a.tool("zfs-list"));
    assert!(text.contains(&format!("@{}", snaps[0])) && text.contains("note=first"), "{text}");
    ok(a.tool("zfs-customprop-del").args([&format!("{vol}@{}", snaps[0]), "note"]));
    ok(a.tool("zfs-customprop-del").args([&vol, "note"]));
    let (_, t) = json(&a, "zfs-list", &[]);
    assert!(t[0]["volumes"][0]["properties"].get(format!("{NS}:note")).is_none(), "{t}");
    assert!(t[0]["volumes"][0]["snapshots"][0]["properties"].get(format!("{NS}:note")).is_none(), "{t}");
    // Refusals: another namespace, a bad key, a bad value, a bad object.
    fails_with(a.tool("zfs-customprop-set").args([&vol, "com.other:x", "1"]), &["namespace"]);
    fails_with(a.tool("zfs-customprop-set").args([&vol, "Bad Key", "1"]), &["property name"]);
    fails_with(a.tool("zfs-customprop-set").args([&vol, "k", "a\tb"]), &["property value"]);
    fails_with(a.tool("zfs-customprop-set").args(["x/../y", "k", "1"]), &["invalid"]);

    // A configured volume never backed up: CRITICAL.
    a.write_config(&(volume("lv_q", true) + &volume("lv_never", true)));
    let o = run(&mut a.tool("archive-status"));
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stdout(&o).contains("iscsi_lv_never_bk: no archive volume"), "{}", stdout(&o));
    let (code, s) = json(&a, "archive-status", &[]);
    assert_eq!((code, s["state"].as_str()), (Some(2), Some("CRITICAL")), "{s}");
}

mod on_zfs {
    #[test]
    fn reports_work_on_every_backend() {
        super::reports_work_on_every_backend(super::Backend::Zfs)
    }
}
mod on_btrfs {
    #[test]
    fn reports_work_on_every_backend() {
        super::reports_work_on_every_backend(super::Backend::Btrfs)
    }
}
mod on_dir {
    #[test]
    fn reports_work_on_every_backend() {
        super::reports_work_on_every_backend(super::Backend::Dir)
    }
}
