//! The archive with `iscsi://` LUNs, against real tgtd: a backup whose
//! source is a LUN (configured as a URL, with a ddmap, or named by a
//! command source's prepare output) equals the LUN; `restore -t iscsi://`
//! writes a snapshot onto a LUN (only with --overwrite-device, never onto a
//! smaller one) and an interrupted restore resumes.

use std::os::unix::process::ExitStatusExt;

use crate::archive_lab::*;
use crate::helpers::*;
use crate::initiator_lab::*;

const ME: &str = "iqn.2024-01.test:archive-host";
const T1: &str = "iqn.2024-01.test:archlun";
const VOL: &str = "lv_lun";

/// The `[initiator]` section the archive tools read.
fn initiator_toml() -> String {
    format!("\n[initiator]\nname = \"{ME}\"\nreconnect_timeout_sec = 20\n")
}

/// The report of the one volume a backup run names.
fn backup(a: &Archive, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let (code, r) = a.backup_json(args);
    assert_eq!(r.as_array().map(Vec::len), Some(1), "{r}");
    (code, r[0].clone())
}

fn backup_of_an_iscsi_source_equals_the_lun(b: Backend) {
    if !tgt_present() {
        return;
    }
    let Some(pool) = PoolLab::new(b) else { return };
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    // Not a multiple of the 16 KiB segment: the last one is partial.
    let size = (5 << 20) + 3 * 512;
    let lun = backing_file(d.path(), "lun.img", size, 301);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &lun, 512);
    let url = tgt.lun_url(T1, 1);
    let map = d.path().join("lun.ddmap");
    let volumes = format!(
        "[[archive.volumes]]\nname = \"{VOL}\"\npool = \"{{pool}}\"\nsource = \"{url}\"\n\n\
         [[archive.volumes]]\nname = \"lv_mapped\"\npool = \"{{pool}}\"\n\
         source = {{ kind = \"iscsi\", url = \"{url}\", ddmap = {map:?}, ddmap_state = \"CLEAN\" }}\n{}",
        initiator_toml()
    );
    write(&map, &ddmap_bytes(size as u64, &[]));
    let a = Archive::new(pool, &volumes);
    let vol = |v: &str| v.to_string();
    let av = |v: &str| format!("iscsi_{v}_bk");

    // The URL form: a full read equals the LUN.
    let (code, r) = backup(&a, &["-v", "-s", &vol(VOL)]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["read"], "full", "{r}");
    assert!(r["source"].as_str().unwrap().starts_with("iscsi://"), "{r}");
    assert!(image_of(&a.pool.image(&av(VOL))) == read(&lun), "the archive volume differs from the LUN");
    assert_eq!(a.pool.snapshots(&av(VOL)).len(), 1);
    // -i reads the LUN a second time and compares.
    let (code, r) = backup(&a, &["-i", "-s", &vol(VOL)]);
    assert_eq!((code, r["integrity"].as_str()), (Some(0), Some("ok")), "{r}");

    // With a ddmap: the first backup reads everything, the next only
    // what the map flags (an unflagged change is not read: proof that the
    // map steered the reads).
    let (code, r) = backup(&a, &["-s", &vol("lv_mapped")]);
    assert_eq!((code, r["read"].as_str()), (Some(0), Some("full")), "{r}");
    let mut data = read(&lun);
    let mut rng = Rng(302);
    let flagged = [3u64, 17, 320];
    for &s in &flagged {
        rng.fill(&mut data[s as usize * SEG..s as usize * SEG + 100]);
    }
    rng.fill(&mut data[40 * SEG..40 * SEG + 100]); // not flagged
    write(&lun, &data);
    write(&map, &ddmap_bytes(size as u64, &flagged));
    let (code, r) = backup(&a, &["-s", &vol("lv_mapped")]);
    assert_eq!((code, r["read"].as_str()), (Some(0), Some("map")), "{r}");
    assert_eq!(r["segments_read"], flagged.len() as u64, "{r}");
    let img = image_of(&a.pool.image(&av("lv_mapped")));
    for &s in &flagged {
        let (s, e) = (s as usize * SEG, (s as usize * SEG + SEG).min(size));
        assert!(img[s..e] == data[s..e], "flagged segment at {s} not copied");
    }
    assert!(img[40 * SEG..41 * SEG] != data[40 * SEG..41 * SEG], "an unflagged segment was read");

    // A command source naming the LUN by URL; its size must be the LUN's.
    let prep = |sz: usize| format!("{{\\\"url\\\": \\\"{url}\\\", \\\"size\\\": {sz}}}");
    let cmd_vol = |sz: usize| {
        format!(
            "[[archive.volumes]]\nname = \"lv_cmd\"\npool = \"{{pool}}\"\n\
             source = {{ kind = \"command\", prepare = [\"/bin/echo\", \"{}\"] }}\n{}",
            prep(sz),
            initiator_toml()
        )
    };
    a.write_config(&cmd_vol(size));
    let (code, r) = backup(&a, &["-s", &vol("lv_cmd")]);
    assert_eq!(code, Some(0), "{r}");
    assert!(image_of(&a.pool.image(&av("lv_cmd"))) == data, "the command source's backup differs from the LUN");
    a.write_config(&cmd_vol(size + 512));
    let (code, r) = backup(&a, &["-s", &vol("lv_cmd")]);
    assert_eq!(code, Some(2), "{r}");
    assert!(r["error"].as_str().unwrap().contains("bytes"), "{r}");

    // Bad URLs are configuration errors naming the key; an unknown LUN a
    // clear error; neither creates anything.
    a.write_config(&format!(
        "[[archive.volumes]]\nname = \"lv_bad\"\npool = \"{{pool}}\"\nsource = \"iscsi://u%sekrit@{}/{T1}\"\n{}",
        tgt.addr(),
        initiator_toml()
    ));
    let e = fails_with(a.tool("backup").args(["-a"]), &["archive.volumes[0].source.url", "LUN"]);
    assert!(!e.contains("sekrit"), "{e}");
    a.write_config(&format!(
        "[[archive.volumes]]\nname = \"lv_nolun\"\npool = \"{{pool}}\"\nsource = \"{}\"\n{}",
        tgt.lun_url(T1, 7),
        initiator_toml()
    ));
    let (code, r) = backup(&a, &["-a"]);
    assert_eq!(code, Some(2), "{r}");
    assert!(r["error"].as_str().unwrap().contains("no LUN 7"), "{r}");
    assert!(a.pool.snapshots(&av("lv_nolun")).is_empty());
}

/// `restore -t iscsi://`: refused without --overwrite-device and onto a
/// smaller LUN; killed at each step, a rerun resumes and the LUN holds the
/// snapshot (bytes past it untouched); a password on the command line is
/// refused.
fn restore_onto_an_iscsi_lun(b: Backend) {
    if !tgt_present() {
        return;
    }
    let Some(pool) = PoolLab::new(b) else { return };
    let d = tempfile::tempdir().unwrap();
    let size = (3 << 20) + 5 * 512;
    let src = backing_file(d.path(), "source.img", size, 311);
    let volumes = format!(
        "[[archive.volumes]]\nname = \"{VOL}\"\npool = \"{{pool}}\"\nsource = {{ kind = \"file\", path = {src:?} }}\n{}",
        initiator_toml()
    );
    let a = Archive::new(pool, &volumes);
    ok(a.tool("backup").args(["-q", "-a"]));
    let snap = format!("{}/iscsi_{VOL}_bk", a.pool.name);
    let data = read(&src);

    let tgt = Tgt::start(d.path(), "");
    tgt.target(1, T1, &[ME]);
    let big = backing_file(d.path(), "big.img", 4 << 20, 312);
    let small = backing_file(d.path(), "small.img", 2 << 20, 313);
    tgt.lun(1, 1, &big, 4096);
    tgt.lun(1, 2, &small, 512);
    let url = tgt.lun_url(T1, 1);
    let before = read(&big);
    let small_before = read(&small);

    let restore = || {
        let mut c = a.tool("restore");
        c.args(["-s", &snap, "-t", &url, "--overwrite-device"]);
        c
    };
    fails_with(a.tool("restore").args(["-s", &snap, "-t", &url]), &["--overwrite-device"]);
    fails_with(
        a.tool("restore").args(["-s", &snap, "-t", &tgt.lun_url(T1, 2), "--overwrite-device"]),
        &["holds 2097152 bytes", "snapshot"],
    );
    let pw = format!("iscsi://me%hunter2xy@{}/{T1}/1", tgt.addr());
    let e = fails_with(a.tool("restore").args(["-s", &snap, "-t", &pw, "--overwrite-device"]), &["refused"]);
    assert!(!e.contains("hunter2xy"), "{e}");
    assert!(read(&big) == before && read(&small) == small_before, "a refused restore wrote");

    let check = |ctx: &str| {
        let now = read(&big);
        assert!(now[..size] == data[..], "{ctx}: the LUN does not hold the snapshot");
        assert!(now[size..] == before[size..], "{ctx}: bytes past the snapshot changed");
    };
    for step in ["restore.after-claim", "ddless.after-target-sync", "restore.after-copy"] {
        write(&big, &before);
        let o = run(restore().arg("-q").env("SANTOOLS_FAILPOINT", step));
        assert_eq!(o.status.signal(), Some(9), "{step}: {}", stderr(&o));
        let o = run(&mut restore());
        assert_eq!(o.status.code(), Some(0), "{step}: {}{}", stdout(&o), stderr(&o));
        assert!(stdout(&o).contains("(resumed)"), "{step}: {}", stdout(&o));
        check(step);
    }
    // The restore's state lives in the state directory, keyed by the LUN's
    // identity, and is gone after a finished restore.
    let state = a.path("state").join("restore");
    let left: Vec<_> =
        std::fs::read_dir(&state).map(|r| r.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // A new restore (nothing to resume) onto the same LUN.
    let out = ok(restore().arg("--json"));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((r["resumed"].as_bool(), r["target"].as_str()), (Some(false), Some(url.as_str())), "{r}");
    check("again");
}

/// Finding (new-user pass): a restore onto a LUN that another ddless run
/// was writing was refused ("in use ...; nothing was changed") but left
/// its claim in state_dir/restore, so a later restore of any other
/// snapshot onto the LUN was refused too ("holds an unfinished restore").
#[test]
fn a_restore_refused_because_another_run_writes_the_lun_leaves_no_claim() {
    if !tgt_present() {
        return;
    }
    let Some(pool) = PoolLab::new(Backend::Dir) else { return };
    let d = tempfile::tempdir().unwrap();
    let size = 2 << 20;
    let src = backing_file(d.path(), "source.img", size, 321);
    let volumes = format!(
        "[[archive.volumes]]\nname = \"{VOL}\"\npool = \"{{pool}}\"\nsource = {{ kind = \"file\", path = {src:?} }}\n{}",
        initiator_toml()
    );
    let a = Archive::new(pool, &volumes);
    ok(a.tool("backup").args(["-q", "-a"]));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write(&src, &Rng(322).bytes(size));
    ok(a.tool("backup").args(["-q", "-a"]));
    let snaps = a.pool.snapshots(&format!("iscsi_{VOL}_bk"));
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    let snap = |i: usize| format!("{}/iscsi_{VOL}_bk@{}", a.pool.name, snaps[i]);

    let tgt = Tgt::start(d.path(), "");
    tgt.target(1, T1, &[ME]);
    let lun = backing_file(d.path(), "lun.img", 8 << 20, 323);
    tgt.lun(1, 1, &lun, 512);
    let url = tgt.lun_url(T1, 1);
    // Another run writes the LUN, slowly (1 MB/s): it holds the LUN's lock.
    let other = backing_file(d.path(), "other.img", 8 << 20, 324);
    let mut writer = tool("ddless")
        .args(["--initiator-name", ME, "-q", "-r", "1", "-w", "1", "-s"])
        .arg(&other)
        .args(["-t", &url, "-c"])
        .arg(d.path().join("other.ddless"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !d.path().join("other.ddless").exists() {
        assert!(t0.elapsed() < std::time::Duration::from_secs(60), "the writer never started");
        assert!(writer.try_wait().unwrap().is_none(), "the writer ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = run(a.tool("restore").args(["-s", &snap(0), "-t", &url, "--overwrite-device"]));
    let busy = writer.try_wait().unwrap().is_none();
    let _ = writer.kill();
    let _ = writer.wait();
    assert!(busy, "the writer ended before the restore tried: no overlap to test");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("in use by another ddless run"), "{}", stderr(&o));
    let state = a.path("state").join("restore");
    let left: Vec<_> =
        std::fs::read_dir(&state).map(|r| r.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "the refused restore left {left:?}");
    // The LUN is free now: a restore of the other snapshot is not refused.
    let o = run(a.tool("restore").args(["-s", &snap(1), "-t", &url, "--overwrite-device"]));
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(read(&lun)[..size] == read(&src)[..], "the LUN does not hold the second snapshot");
}

/// Finding (new-user pass): a mutual CHAP `target_password=` in a source
/// URL of the configuration was written whole to backup's log (mode 0644),
/// its --json report and stderr; a password holding '@' showed its tail,
/// one holding '/' its head ("invalid host \"bob%pa\""). No tgtd needed:
/// every run fails before or at the connection (port 1 on loopback).
#[test]
fn config_url_passwords_never_reach_the_log_the_report_or_stderr() {
    let Some(pool) = PoolLab::new(Backend::Dir) else { return };
    let dead = "127.0.0.1:1";
    let volumes = format!(
        "[[archive.volumes]]\nname = \"lv_mutual\"\npool = \"{{pool}}\"\n\
         source = \"iscsi://{dead}/{T1}/1?target_user=tgt&target_password=MUTUALxSECRET\"\n\n\
         [[archive.volumes]]\nname = \"lv_at\"\npool = \"{{pool}}\"\n\
         source = \"iscsi://bob%p@ssATxSECRET@{dead}/{T1}/1\"\n{}",
        initiator_toml()
    );
    let a = Archive::new(pool, &volumes);
    let o = run(a.tool("backup").args(["-v", "-a", "--json"]));
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    // The file holds passwords (in URLs, not [initiator]) and is mode
    // 0644: the documented warning must come (it only looked at [initiator]).
    std::fs::set_permissions(&a.config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let warned = run(a.tool("backup").arg("-a"));
    assert!(stderr(&warned).contains("readable by other users (mode 0644)"), "{}", stderr(&warned));
    let mut shown = format!("{}{}", stdout(&o), stderr(&o));
    for dir in ["log", "state"] {
        for e in walk(&a.path(dir)) {
            shown.push_str(&String::from_utf8_lossy(&std::fs::read(&e).unwrap_or_default()));
        }
    }
    assert!(shown.contains("target_password=***"), "{shown}");
    assert!(!shown.contains("SECRET"), "a password was shown:\n{shown}");

    // A target password holding '&': its tail reads as an unknown URL
    // argument, a configuration error that must not name it.
    a.write_config(&format!(
        "[[archive.volumes]]\nname = \"lv_amp\"\npool = \"{{pool}}\"\n\
         source = \"iscsi://bob%tw0xSECRET@{dead}/{T1}/1?target_user=t&target_password=a&AMPxSECRET\"\n{}",
        initiator_toml()
    ));
    let e = fails_with(a.tool("backup").arg("-a"), &["archive.volumes[0].source.url"]);
    assert!(!e.contains("SECRET"), "{e}");
    // A password holding '/' cuts the URL's authority: the refusal must
    // not show the part before the '/'.
    a.write_config(&format!(
        "[[archive.volumes]]\nname = \"lv_cut\"\npool = \"{{pool}}\"\n\
         source = \"iscsi://bob%pa/ssCUTxSECRET@{dead}/{T1}/1\"\n{}",
        initiator_toml()
    ));
    let e = fails_with(&mut a.tool("check-config"), &["archive.volumes[0].source.url", "may not hold '/'"]);
    assert!(!e.contains("bob%pa") && !e.contains("SECRET"), "{e}");
    // Finding (attack-final): an upper-case or mistyped key, a tail that
    // reads as a bad header_digest, or a password whose '@HOST' is missing
    // was quoted whole in the refusal.
    for (url, says) in [
        (format!("iscsi://{dead}/{T1}/1?TARGET_PASSWORD=UPxSECRET"), "unknown URL argument"),
        (format!("iscsi://{dead}/{T1}/1?target_pasword=TYPOxSECRET"), "unknown URL argument"),
        (format!("iscsi://{dead}/{T1}/1?target_password=a&header_digest=DIGxSECRET"), "target_password"),
        (format!("iscsi://bob%NOHOSTxSECRET:3260/{T1}/1"), "no '@' after it"),
    ] {
        a.write_config(&format!(
            "[[archive.volumes]]\nname = \"lv_k\"\npool = \"{{pool}}\"\nsource = \"{url}\"\n{}",
            initiator_toml()
        ));
        let e = fails_with(&mut a.tool("check-config"), &["archive.volumes[0].source.url", says]);
        assert!(!e.contains("SECRET"), "{url}: {e}");
    }
}

/// Every regular file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

macro_rules! on_backends {
    ($($name:ident),* $(,)?) => {
        mod on_dir { $( #[test] fn $name() { super::$name(super::Backend::Dir) } )* }
    };
}
on_backends!(backup_of_an_iscsi_source_equals_the_lun, restore_onto_an_iscsi_lun);

#[test]
fn backup_of_an_iscsi_source_equals_the_lun_on_zfs() {
    backup_of_an_iscsi_source_equals_the_lun(Backend::Zfs)
}
