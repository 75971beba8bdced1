//! The archive's acceptance suite, run on every backend: zfs image mode on
//! zfs-fuse, btrfs on a loop device, and plain directories.

use std::process::Command;

use crate::archive_lab::*;
use crate::helpers::*;

const MB: usize = 1 << 20;
const VOL: &str = "iscsi_lv_a_bk";

/// One volume `vg/lv_a` read from `{dir}/src.img` with the map `{dir}/src.ddmap` (CLEAN).
fn file_volume(with_map: bool) -> String {
    let map = if with_map { ", ddmap = \"{dir}/src.ddmap\", ddmap_state = \"CLEAN\"" } else { "" };
    format!("[[archive.volumes]]\nname = \"vg/lv_a\"\npool = \"{{pool}}\"\nschedule = \"SNAP_ROTATE_A\"\nsource = {{ kind = \"file\", path = \"{{dir}}/src.img\"{map} }}\n")
}

fn setup(backend: Backend, with_map: bool) -> Option<(Archive, Vec<u8>)> {
    let pool = PoolLab::new(backend)?;
    let a = Archive::new(pool, &file_volume(with_map));
    let data = Rng(backend as u64 + 7).bytes(4 * MB);
    write(&a.path("src.img"), &data);
    write(&a.path("src.ddmap"), &ddmap_bytes(data.len() as u64, &[]));
    Some((a, data))
}

fn restore_to(a: &Archive, snap: Option<&str>, name: &str) -> Vec<u8> {
    let t = a.path(name);
    let src = match snap {
        Some(s) => format!("{}/{VOL}@{s}", a.pool.name),
        None => format!("{}/{VOL}", a.pool.name),
    };
    ok(a.tool("restore").args(["-q", "-s", &src, "-t"]).arg(&t));
    image_of(&t)
}

fn first_backup_writes_everything_then_an_empty_map_reads_nothing(b: Backend) {
    let Some((a, data)) = setup(b, true) else { return };
    let (code, r) = a.backup_json(&["-a"]);
    assert_eq!(code, Some(0), "{r}");
    let r = &r[0];
    assert_eq!(r["read"], "full", "{r}");
    assert_eq!(r["segments_changed"], 256);
    assert_eq!(r["created_volume"], true);
    assert_eq!(image_of(&a.pool.image(VOL)), data);
    // Second night: an empty CLEAN map. Nothing read, nothing written, one more snapshot.
    let (code, r) = a.backup_json(&["-s", "lv_a"]);
    assert_eq!(code, Some(0), "{r}");
    let r = &r[0];
    assert_eq!(
        (r["read"].as_str(), r["segments_read"].as_u64(), r["bytes_written"].as_u64()),
        (Some("map"), Some(0), Some(0)),
        "{r}"
    );
    assert_eq!(a.pool.snapshots(VOL).len(), 2);
}

fn a_map_with_k_flagged_segments_reads_exactly_k(b: Backend) {
    let Some((a, mut data)) = setup(b, true) else { return };
    ok(a.tool("backup").args(["-q", "-a"]));
    let mut rng = Rng(99);
    let changed: Vec<u64> = [3u64, 4, 100, 255].to_vec();
    for &s in &changed {
        rng.fill(&mut data[s as usize * SEG..(s as usize + 1) * SEG]);
    }
    // One more flagged segment that did not change: read, not written.
    let mut flagged = changed.clone();
    flagged.push(50);
    write(&a.path("src.img"), &data);
    write(&a.path("src.ddmap"), &ddmap_bytes(data.len() as u64, &flagged));
    let (code, r) = a.backup_json(&["-a"]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!((r[0]["segments_read"].as_u64(), r[0]["segments_changed"].as_u64()), (Some(5), Some(4)), "{r}");
    assert_eq!(r[0]["map_flagged_segments"], 5);
    assert_eq!(restore_to(&a, None, "r.img"), data);
    // The older snapshot still holds the old bytes.
    let snaps = a.pool.snapshots(VOL);
    assert_eq!(snaps.len(), 2);
    assert_ne!(restore_to(&a, Some(&snaps[0]), "r0.img"), data);
}

fn a_grown_source_writes_only_the_new_region(b: Backend) {
    let Some((a, mut data)) = setup(b, true) else { return };
    ok(a.tool("backup").args(["-q", "-a"]));
    let old = data.len();
    data.extend(Rng(5).bytes(MB + 1000));
    write(&a.path("src.img"), &data);
    // The map still has the old size (as IET's does until it is re-created).
    write(&a.path("src.ddmap"), &ddmap_bytes(old as u64, &[]));
    let (code, r) = a.backup_json(&["-a"]);
    assert_eq!(code, Some(0), "{r}");
    // The new region, plus the old last segment: ddless cannot tell from a
    // record count whether that one was short, so it rewrites it.
    let new_segments = (data.len() - old).div_ceil(SEG) as u64;
    let changed = r[0]["segments_changed"].as_u64().unwrap();
    assert!((new_segments..=new_segments + 1).contains(&changed), "{r}");
    assert!(r[0]["bytes_written"].as_u64().unwrap() <= (data.len() - old + SEG) as u64, "{r}");
    assert_eq!(r[0]["previous_size"].as_u64(), Some(old as u64));
    assert_eq!(image_of(&a.pool.image(VOL)), data);
    // A shrunk source is refused without --allow-shrink, and nothing changes.
    let before = a.pool.snapshots(VOL);
    write(&a.path("src.img"), &data[..old]);
    write(&a.path("src.ddmap"), &ddmap_bytes(old as u64, &[]));
    fails_with(a.tool("backup").args(["-q", "-a"]), &["shrank", "--allow-shrink"]);
    assert_eq!(a.pool.snapshots(VOL), before);
    assert_eq!(image_of(&a.pool.image(VOL)), data);
}

fn integrity_check_detects_a_corrupted_archive_volume(b: Backend) {
    let Some((a, data)) = setup(b, true) else { return };
    ok(a.tool("backup").args(["-q", "-a"]));
    let img = a.pool.image(VOL);
    let mut bytes = image_of(&img);
    bytes[5 * SEG + 17] ^= 0xff;
    write(&img, &bytes);
    let (code, r) = a.backup_json(&["-a", "-i"]);
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(r[0]["status"], "integrity-mismatch");
    assert_eq!(r[0]["integrity_mismatch"]["first"][0], 5);
    assert_eq!(a.pool.snapshots(VOL).len(), 1, "no snapshot after a mismatch");
    assert!(ok(a.tool("backup").arg("-l")).contains("DIRTY"));
    // The next backup reads everything (the map is empty) and repairs it.
    let (code, r) = a.backup_json(&["-a"]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!((r[0]["read"].as_str(), r[0]["segments_changed"].as_u64()), (Some("full"), Some(1)), "{r}");
    assert_eq!(image_of(&img), data);
    let (code, r) = a.backup_json(&["-a", "-i"]);
    assert_eq!((code, r[0]["integrity"].as_str(), r[0]["read"].as_str()), (Some(0), Some("ok"), Some("map")), "{r}");
}

fn names_properties_and_history_files(b: Backend) {
    let Some((a, _)) = setup(b, true) else { return };
    ok(a.tool("backup").args(["-q", "-a"]));
    ok(a.tool("backup").args(["-q", "-a"]));
    let snaps = a.pool.snapshots(VOL);
    assert_eq!(snaps.len(), 2);
    for s in &snaps {
        let bytes = s.as_bytes();
        assert!(s.len() == 19 && bytes[4] == b'-' && bytes[10] == b'_' && bytes[13] == b':', "{s}");
        let t: i64 = a.pool.snapshot_prop(VOL, s, &format!("{NS}:snap_time")).expect("snap_time").parse().unwrap();
        assert!(t > 1_700_000_000);
    }
    let dd = a.pool.ddless_dir();
    assert!(dd.join("iscsi_lv_a.ddless").is_file());
    assert!(dd.join("iscsi_lv_a.ddmap").is_file());
    assert!(dd.join("iscsi_lv_a.ddless.stats").is_file());
    let hist = dd.join("history/iscsi_lv_a");
    let head: serde_json::Value = serde_json::from_slice(&read(&hist.join("head.json"))).unwrap();
    assert_eq!(head["snapshot"], snaps[1].as_str());
    assert!(hist.join(format!("{}.delta", snaps[0])).is_file());
    // The log file has the seed's line format.
    let log = std::fs::read_to_string(a.path("log/backup.log")).unwrap();
    let line = log.lines().find(|l| l.contains(" copy> ddless -s ")).expect("copy line");
    assert_eq!(&line[4..5], "-");
    assert_eq!(&line[10..11], " ");
}

fn restore_equals_the_snapshot_and_refuses_an_existing_target(b: Backend) {
    let Some((a, data)) = setup(b, false) else { return };
    ok(a.tool("backup").args(["-q", "-a"]));
    let mut newer = data.clone();
    newer[..SEG].fill(7);
    write(&a.path("src.img"), &newer);
    ok(a.tool("backup").args(["-q", "-a"]));
    let snaps = a.pool.snapshots(VOL);
    assert_eq!(restore_to(&a, Some(&snaps[0]), "old.img"), data);
    assert_eq!(restore_to(&a, None, "new.img"), newer);
    // Never overwrites.
    write(&a.path("taken.img"), b"precious");
    fails_with(
        a.tool("restore").args(["-s", &format!("{}/{VOL}", a.pool.name), "-t"]).arg(a.path("taken.img")),
        &["exists"],
    );
    assert_eq!(read(&a.path("taken.img")), b"precious");
    // A missing snapshot, a malformed name.
    fails_with(
        a.tool("restore")
            .args(["-s", &format!("{}/{VOL}@1999-01-01_00:00:00", a.pool.name), "-t"])
            .arg(a.path("x.img")),
        &["does not exist"],
    );
    fails_with(a.tool("restore").args(["-s", "bad pool/x", "-t"]).arg(a.path("y.img")), &["invalid"]);
    assert!(!a.path("x.img").exists() && !a.path("y.img").exists());
}

fn snapcheck_finds_a_flipped_history_byte_and_removes_exactly_the_orphans(b: Backend) {
    let Some((a, mut data)) = setup(b, false) else { return };
    for night in 0..4u8 {
        data[night as usize * SEG] = night;
        write(&a.path("src.img"), &data);
        ok(a.tool("backup").args(["-q", "-a"]));
    }
    let snaps = a.pool.snapshots(VOL);
    assert_eq!(snaps.len(), 4);
    let o = ok(a.tool("snapcheck").args(["-d", "--count", "10"]));
    assert_eq!(o.matches("ok ").count(), 4, "{o}");
    for s in &snaps {
        let v = a.pool.snapshot_prop(VOL, s, &format!("{NS}:snapcheck")).expect("snapcheck recorded");
        assert!(v.ends_with(":ok"), "{v}");
    }
    // Orphans: destroy snapshot 2 behind santools' back; -o merges exactly its delta away.
    a.pool.destroy_snapshot(VOL, &snaps[2]);
    let o = ok(a.tool("snapcheck").arg("-o"));
    assert_eq!(o.matches("removed orphan").count(), 1, "{o}");
    assert!(o.contains(&format!("{}.delta", snaps[2])), "{o}");
    assert!(a.pool.ddless_dir().join("iscsi_lv_a.ddless").is_file(), "the live checksum file stays");
    assert_eq!(ok(a.tool("snapcheck").arg("-o")).matches("removed").count(), 0, "-o again removes nothing");
    // Snapshots 0 and 1 still verify through the merged chain.
    let o = ok(a.tool("snapcheck").args(["-d", "--count", "10"]));
    assert_eq!(o.matches("ok ").count(), 3, "{o}");
    // Snapshot 1 differs from the head (3) in segments 2 and 3; change the record of segment 2.
    let delta = a.pool.ddless_dir().join(format!("history/iscsi_lv_a/{}.delta", snaps[1]));
    let mut bytes = read(&delta);
    assert_eq!(bytes.len(), 164 + 2 * 16 + 4, "two entries after the merge");
    bytes[164 + 8] ^= 1;
    write(&delta, &bytes);
    let target = format!("{}/{VOL}@{}", a.pool.name, snaps[1]);
    let out = run(a.tool("snapcheck").args(["-s", &target]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("MISMATCH") && text.contains("first: 2"), "{text}");
    assert!(text.contains("damaged"), "the report says the history itself is damaged: {text}");
    assert_eq!(
        a.pool.snapshot_prop(VOL, &snaps[1], &format!("{NS}:snapcheck")).map(|v| v.ends_with(":mismatch")),
        Some(true)
    );
    // The other snapshots are unaffected.
    ok(a.tool("snapcheck").args(["-s", &format!("{}/{VOL}@{}", a.pool.name, snaps[3])]));
}

fn two_volumes_in_parallel_and_a_second_run_is_refused(b: Backend) {
    let Some(pool) = PoolLab::new(b) else { return };
    let vols = "[[archive.volumes]]\nname = \"lv_a\"\npool = \"{pool}\"\nsource = { kind = \"file\", path = \"{dir}/a.img\" }\n\
                [[archive.volumes]]\nname = \"lv_b\"\npool = \"{pool}\"\nsource = { kind = \"file\", path = \"{dir}/b.img\" }\n";
    let a = Archive::new(pool, vols);
    let (da, db) = (Rng(1).bytes(2 * MB), Rng(2).bytes(3 * MB + 5));
    write(&a.path("a.img"), &da);
    write(&a.path("b.img"), &db);
    let (code, r) = a.backup_json(&["-a", "--concurrent", "2"]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r.as_array().map(Vec::len), Some(2));
    assert_eq!(image_of(&a.pool.image("iscsi_lv_a_bk")), da);
    assert_eq!(image_of(&a.pool.image("iscsi_lv_b_bk")), db);
    // Hold lv_a's lock as another run would: refused with the holder named, nothing changes.
    let lock_dir = a.path("lock");
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(lock_dir.join(format!("{}@iscsi_lv_a_bk.lock", a.pool.name.replace('/', "%"))))
        .unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on an open descriptor.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let before = a.pool.snapshots("iscsi_lv_a_bk");
    let err = fails_with(a.tool("backup").args(["-s", "lv_a"]), &["locked by"]);
    assert!(err.contains("--wait"), "{err}");
    assert_eq!(a.pool.snapshots("iscsi_lv_a_bk"), before);
    // With --wait the run proceeds once the holder leaves.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        drop(lock);
    });
    ok(a.tool("backup").args(["-q", "-s", "lv_a", "--wait", "30"]));
    releaser.join().unwrap();
    assert_eq!(a.pool.snapshots("iscsi_lv_a_bk").len(), before.len() + 1);
}

fn bad_inputs_change_nothing(b: Backend) {
    let Some((a, data)) = setup(b, true) else { return };
    let nothing = |a: &Archive| {
        assert!(a.pool.snapshots(VOL).is_empty(), "a snapshot was taken");
        assert!(!a.pool.image(VOL).exists(), "the archive volume was created");
    };
    // Volume names with spaces, '@', '/..' are refused naming the key.
    for bad in ["lv a", "lv@a", "vg/..", "../lv", "-lv"] {
        a.write_config(&file_volume(true).replace("vg/lv_a", bad));
        fails_with(a.tool("backup").arg("-a"), &["archive.volumes[0].name"]);
    }
    // A missing pool.
    a.write_config(&file_volume(true).replace("pool = \"{pool}\"", "pool = \"nosuchpool\""));
    fails_with(a.tool("backup").arg("-a"), &["archive.volumes[0].pool"]);
    // A configured pool that does not exist on this host.
    let ghost = "[[archive.volumes]]\nname = \"lv_g\"\npool = \"ghost\"\nsource = { kind = \"file\", path = \"{dir}/src.img\" }\n[archive.pools.ghost]\nbackend = \"dir\"\npath = \"/nonexistent/santools-ghost-pool\"\n";
    a.write_config(ghost);
    fails_with(a.tool("backup").arg("-a"), &["does not exist"]);
    assert!(!std::path::Path::new("/nonexistent").exists());
    a.write_config(&file_volume(true));
    // A map that claims more than the source holds.
    write(&a.path("src.ddmap"), &ddmap_bytes(data.len() as u64 * 2, &[]));
    fails_with(a.tool("backup").arg("-a"), &["shorter than the map claims"]);
    nothing(&a);
    // Garbage instead of a map.
    write(&a.path("src.ddmap"), b"not a map at all, certainly");
    fails_with(a.tool("backup").arg("-a"), &["ddmap"]);
    nothing(&a);
    // A source that is missing.
    write(&a.path("src.ddmap"), &ddmap_bytes(data.len() as u64, &[]));
    std::fs::rename(a.path("src.img"), a.path("moved.img")).unwrap();
    fails_with(a.tool("backup").arg("-a"), &["src.img"]);
    nothing(&a);
    std::fs::rename(a.path("moved.img"), a.path("src.img")).unwrap();
    // Command sources: invalid JSON, a failing command.
    for (script, needle) in [
        ("echo '{not json'", "invalid JSON"),
        ("echo oops >&2; exit 3", "exit status 3"),
        ("echo '{\"path\":\"{dir}/src.img\",\"size\":5}'", "bytes"),
    ] {
        let s = a.path("prep.sh");
        write(&s, format!("#!/bin/sh\n{}\n", script.replace("{dir}", &a.dir.path().display().to_string())).as_bytes());
        Command::new("chmod").arg("+x").arg(&s).status().unwrap();
        a.write_config(&format!("[[archive.volumes]]\nname = \"lv_a\"\npool = \"{{pool}}\"\nsource = {{ kind = \"command\", prepare = [\"{}\", \"{{volume}}\"] }}\n", s.display()));
        fails_with(a.tool("backup").arg("-a"), &[needle]);
        nothing(&a);
    }
    // Garbage in a property santools reads is ignored, not fatal.
    a.write_config(&file_volume(true));
    ok(a.tool("backup").args(["-q", "-a"]));
    let snap = a.pool.snapshots(VOL)[0].clone();
    match b {
        Backend::Zfs => {
            ok(Command::new("zfs")
                .arg("set")
                .arg(format!("{NS}:snapcheck=garbage"))
                .arg(format!("{}/{VOL}@{snap}", a.pool.name)));
        }
        _ => {
            let p = a.pool.path.as_ref().unwrap().join(".snapshots").join(VOL).join(format!("{snap}.props.json"));
            write(&p, b"{ this is not json");
        }
    }
    let o = run(a.tool("snapcheck").args(["-d"]));
    assert!(!stderr(&o).contains("panicked"));
    assert_ne!(o.status.code(), Some(1), "{}", stdout(&o));
}

fn command_source_hears_how_each_backup_ended(b: Backend) {
    let Some(pool) = PoolLab::new(b) else { return };
    let a = Archive::new(pool, "");
    let data = Rng(3).bytes(2 * MB);
    write(&a.path("src.img"), &data);
    write(&a.path("src.ddmap"), &ddmap_bytes(data.len() as u64, &[]));
    let d = a.dir.path().display().to_string();
    let prep = a.path("prepare.sh");
    write(
        &prep,
        format!("#!/bin/sh\necho \"$1\" > {d}/prepared\nprintf '{{\"path\":\"{d}/src.img\",\"size\":{},\"ddmap\":\"{d}/src.ddmap\",\"ddmap_state\":\"CLEAN\",\"token\":\"t-42\"}}'\n", data.len()).as_bytes(),
    );
    let fin = a.path("finish.sh");
    write(&fin, format!("#!/bin/sh\ncat >> {d}/finished\necho >> {d}/finished\n").as_bytes());
    Command::new("chmod").arg("+x").arg(&prep).arg(&fin).status().unwrap();
    a.write_config(&format!(
        "[[archive.volumes]]\nname = \"vg9/lv_c\"\npool = \"{{pool}}\"\nsource = {{ kind = \"command\", prepare = [\"{}\", \"{{volume}}\"], finish = [\"{}\"] }}\n",
        prep.display(),
        fin.display()
    ));
    ok(a.tool("backup").args(["-q", "-a"]));
    assert_eq!(std::fs::read_to_string(a.path("prepared")).unwrap().trim(), "vg9/lv_c");
    let fins = std::fs::read_to_string(a.path("finished")).unwrap();
    let first: serde_json::Value = serde_json::from_str(fins.lines().next().unwrap()).unwrap();
    assert_eq!(first["status"], "success");
    assert_eq!(first["token"], "t-42");
    assert!(first["snapshot"].as_str().unwrap().starts_with(&format!("{}/iscsi_lv_c_bk@", a.pool.name)));
    // A failing backup (the archive volume was damaged, -i) is reported as failure.
    let img = a.pool.image("iscsi_lv_c_bk");
    let mut bytes = image_of(&img);
    bytes[0] ^= 1;
    write(&img, &bytes);
    let o = run(a.tool("backup").args(["-q", "-a", "-i"]));
    assert_eq!(o.status.code(), Some(1));
    let fins = std::fs::read_to_string(a.path("finished")).unwrap();
    let second: serde_json::Value = serde_json::from_str(fins.lines().nth(1).unwrap()).unwrap();
    assert_eq!(
        (second["status"].as_str(), second["integrity"].as_str()),
        (Some("failure"), Some("mismatch")),
        "{second}"
    );
}

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod on_zfs { $( #[test] fn $name() { super::$name(super::Backend::Zfs) } )* }
        mod on_btrfs { $( #[test] fn $name() { super::$name(super::Backend::Btrfs) } )* }
        mod on_dir { $( #[test] fn $name() { super::$name(super::Backend::Dir) } )* }
    };
}

on_every_backend!(
    first_backup_writes_everything_then_an_empty_map_reads_nothing,
    a_map_with_k_flagged_segments_reads_exactly_k,
    a_grown_source_writes_only_the_new_region,
    integrity_check_detects_a_corrupted_archive_volume,
    names_properties_and_history_files,
    restore_equals_the_snapshot_and_refuses_an_existing_target,
    snapcheck_finds_a_flipped_history_byte_and_removes_exactly_the_orphans,
    two_volumes_in_parallel_and_a_second_run_is_refused,
    bad_inputs_change_nothing,
    command_source_hears_how_each_backup_ended,
);

/// ddless-maint: a matching checksum file is ok; a damaged archive volume is
/// found (exit 1) and --repair rebuilds the file and marks the volume DIRTY,
/// so the next backup reads everything and repairs the data.
#[test]
fn ddless_maint_finds_and_repairs() {
    let Some((a, data)) = setup(Backend::Dir, true) else { return };
    ok(a.tool("backup").args(["-q", "-a"]));
    assert!(ok(&mut a.tool("ddless-maint")).contains("ok "));
    let img = a.pool.image(VOL);
    let mut bytes = image_of(&img);
    bytes[9 * SEG] ^= 0x55;
    write(&img, &bytes);
    let o = run(a.tool("ddless-maint").args(["-s", "lv_a"]));
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("MISMATCH") && stdout(&o).contains("first: 9"), "{}", stdout(&o));
    ok(a.tool("ddless-maint").args(["-s", "lv_a", "--repair", "-q"]));
    assert!(ok(&mut a.tool("ddless-maint")).contains("ok "));
    let (code, r) = a.backup_json(&["-a"]);
    assert_eq!(
        (code, r[0]["read"].as_str(), r[0]["segments_changed"].as_u64()),
        (Some(0), Some("full"), Some(1)),
        "{r}"
    );
    assert_eq!(image_of(&img), data);
    // Every snapshot still matches its history (the repair kept the newest one's).
    let o = ok(a.tool("snapcheck").args(["-d", "--count", "10"]));
    assert_eq!(o.matches("ok ").count(), 2, "{o}");
}

#[test]
fn garbage_in_the_configured_properties_is_refused() {
    let Some((a, _)) = setup(Backend::Dir, true) else { return };
    a.write_config(&file_volume(true).replace("SNAP_ROTATE_A", "A B\\tC"));
    fails_with(a.tool("backup").arg("-a"), &["archive.volumes[0].schedule"]);
    a.write_config(&format!("{}\n", file_volume(true)).replace("[[archive.volumes]]", "[[archive.volumes]]"));
    let text =
        std::fs::read_to_string(&a.config).unwrap().replace("namespace = \"edu.test\"", "namespace = \"Edu Test!\"");
    std::fs::write(&a.config, text).unwrap();
    fails_with(a.tool("backup").arg("-a"), &["archive.namespace"]);
    assert!(!a.pool.image(VOL).exists());
}

/// Restore onto a block device: refused without --overwrite-device, when too
/// small, and while mounted; else the device holds the snapshot's bytes.
#[test]
fn restore_onto_a_device_only_when_allowed_big_enough_and_unmounted() {
    if !is_root() || which("losetup").is_none() {
        real_component("loop devices", false, "needs root and losetup");
        return;
    }
    let Some((a, data)) = setup(Backend::Dir, false) else { return };
    ok(a.tool("backup").args(["-q", "-a"]));
    let attach = |file: &std::path::Path| -> String {
        let o = Command::new("losetup").args(["--find", "--show"]).arg(file).output().unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let (small, big) = (a.path("small.img"), a.path("big.img"));
    write(&small, &vec![0u8; data.len() / 2]);
    write(&big, &vec![0u8; data.len() + MB]);
    let (ds, db) = (attach(&small), attach(&big));
    let src = format!("{}/{VOL}", a.pool.name);
    let cleanup = |d: &str| {
        let _ = Command::new("losetup").arg("-d").arg(d).status();
    };
    fails_with(a.tool("restore").args(["-s", &src, "-t", &db]), &["--overwrite-device"]);
    fails_with(a.tool("restore").args(["-s", &src, "-t", &ds, "--overwrite-device"]), &["holds"]);
    // Mounted: a file system on the big device.
    let mounted = which("mkfs.ext4").is_some() && {
        let _ = Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&db).output();
        let m = a.path("mnt");
        std::fs::create_dir_all(&m).unwrap();
        Command::new("mount").arg(&db).arg(&m).status().map(|s| s.success()).unwrap_or(false)
    };
    if mounted {
        fails_with(a.tool("restore").args(["-s", &src, "-t", &db, "--overwrite-device"]), &["mounted"]);
        let _ = Command::new("umount").arg(a.path("mnt")).status();
    }
    let out = run(a.tool("restore").args(["-s", &src, "-t", &db, "--overwrite-device"]));
    let dev_bytes = std::fs::read(&db).unwrap_or_default();
    cleanup(&ds);
    cleanup(&db);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(dev_bytes[..data.len()] == data[..], "the device does not hold the snapshot");
}
