//! ddless with `iscsi://` sources and targets against real tgtd: every
//! mode with `-s` and `-t iscsi://`, 512- and 4096-byte blocks and sizes
//! that are no multiple of either, the portal's redirect, a LUN known by
//! identity whatever address names it, a connection killed and a target
//! stopped mid-copy, kill -9 during a write to a LUN, and records never
//! vouching for writes a reconnect may have lost.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::initiator_lab::*;

const ME: &str = "iqn.2024-01.test:ddless-a";
const T1: &str = "iqn.2024-01.test:ddlun";

fn dd() -> Command {
    dd_reconnecting_for(20)
}

fn dd_reconnecting_for(secs: u32) -> Command {
    let mut c = tool("ddless");
    c.args(["--initiator-name", ME, "--reconnect-timeout", &secs.to_string()]);
    c
}

fn json(cmd: &mut Command) -> serde_json::Value {
    serde_json::from_str(&ok(cmd.arg("--json"))).expect("JSON report")
}

/// The bytes tgtd exposes of a backing file: whole blocks.
fn exposed(file: &Path, bs: usize) -> Vec<u8> {
    let mut b = read(file);
    b.truncate(b.len() / bs * bs);
    b
}

/// Segments written by a copy whose source was `data` onto a LUN backed
/// by `backing`: the backing file's prefix is the source, the rest as it was.
fn assert_lun_holds(backing: &Path, data: &[u8], rest: &[u8], ctx: &str) {
    let now = read(backing);
    assert!(now[..data.len()] == *data, "{ctx}: the LUN does not hold the source");
    assert!(now[data.len()..] == rest[data.len()..], "{ctx}: bytes past the source changed");
}

fn copy(src: &str, sums: &Path, tgt: &str) -> Command {
    copy_with(dd(), src, sums, tgt)
}

fn copy_with(mut c: Command, src: &str, sums: &Path, tgt: &str) -> Command {
    c.args(["-s", src]).arg("-c").arg(sums).args(["-t", tgt]);
    c
}

/// A ddmap (in `dir`) flagging `segments` of a `size`-byte volume.
fn ddmap_of(dir: &Path, segments: &[usize], size: usize) -> PathBuf {
    let ext: String = segments.iter().map(|&s| format!("{} {}\n", s * SEG, SEG.min(size - s * SEG))).collect();
    std::fs::write(dir.join("ext"), ext).unwrap();
    let map = dir.join("map");
    ok(tool("ddmap")
        .arg("--from-extents")
        .arg(dir.join("ext"))
        .args(["--size", &size.to_string(), "--name", "vol", "-t"])
        .arg(&map));
    map
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Every segment whose record does not match `data` must be INVALID: a
/// valid record never vouches for bytes the target does not hold.
fn assert_records_never_lie(data: &[u8], sums: &Path, ctx: &str) {
    let Ok(records) = std::fs::read(sums) else { return };
    let good = reference_checksums(data);
    for (i, rec) in records.chunks(8).enumerate() {
        if rec == [0u8; 8] || rec.len() < 8 {
            continue;
        }
        assert_eq!(
            Some(rec),
            good.get(i * 8..i * 8 + 8),
            "{ctx}: the record of segment {i} vouches for bytes the target does not hold"
        );
    }
}

#[test]
fn ddless_reads_an_iscsi_source_in_every_mode() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    // 24 MiB + 3 blocks: no multiple of a segment, a ragged tail tgtd hides.
    let f = backing_file(d.path(), "src.img", (24 << 20) + 3 * 512 + 100, 31);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    let url = tgt.lun_url(T1, 1);
    let (sums, out) = (d.path().join("sums"), d.path().join("out.img"));
    let mut data = exposed(&f, 512);

    // Copy: everything the first time, nothing the second.
    let r = json(&mut copy(&url, &sums, p(&out)));
    assert_eq!(r["source"], format!("iscsi://{}/{T1}/1", tgt.addr()));
    assert_eq!(r["segments_changed"], r["segments"]);
    assert_eq!(r["source_size"], data.len() as u64);
    // A LUN is read in units smaller than a buffer; the report still counts buffers.
    assert_eq!((r["buffers_total"].as_u64(), r["buffers_read"].as_u64()), (Some(4), Some(4)), "{r}");
    // Its queue may add reader threads to -w; the report says how many ran.
    let threads = r["reader_threads"].as_u64().unwrap();
    assert!(threads >= r["workers"].as_u64().unwrap().min(4) && threads <= 8, "{r}");
    assert!(read(&out) == data && read(&sums) == reference_checksums(&data));
    assert_eq!(json(&mut copy(&url, &sums, p(&out)))["segments_changed"], 0);

    // The LUN changes (through its backing file): only those segments are written.
    let mut rng = Rng(32);
    let mut changed = mutate_segments(&mut rng, &mut data, 7);
    changed.sort();
    changed.dedup();
    std::fs::write(&f, [&data[..], &read(&f)[data.len()..]].concat()).unwrap();
    let r = json(&mut copy(&url, &sums, p(&out)));
    assert_eq!(r["segments_changed"], changed.len() as u64);
    assert!(read(&out) == data);

    // -m: only the flagged segments are read (one batch of commands per buffer).
    let again = mutate_segments(&mut rng, &mut data, 3);
    std::fs::write(&f, [&data[..], &read(&f)[data.len()..]].concat()).unwrap();
    let map = ddmap_of(d.path(), &again, data.len());
    let r = json(copy(&url, &sums, p(&out)).arg("-m").arg(&map));
    let distinct: std::collections::BTreeSet<_> = again.iter().collect();
    assert_eq!(r["segments_read"], distinct.len() as u64);
    assert!(read(&out) == data && read(&sums) == reference_checksums(&data));

    // Checksum only, bound to the LUN by identity.
    let sums2 = d.path().join("sums2");
    let r = json(dd().args(["-s", &url]).arg("-c").arg(&sums2));
    assert_eq!(read(&sums2), reference_checksums(&data));
    assert!(r["reader_threads"].as_u64().unwrap() >= 1 && r["workers"].as_u64().unwrap() >= 1, "{r}");
    let stats = std::fs::read_to_string(d.path().join("sums2.stats")).unwrap();
    assert!(stats.contains("bound_kind=lun\n") && stats.contains(&format!("bound_id={T1}/1/naa:")), "{stats}");

    // Verify: equal, then one segment differs.
    let o = ok(dd().args(["--verify", "-s", &url]).arg("-c").arg(&sums2));
    assert!(o.contains("OK: 0 of"), "{o}");
    let mut bytes = read(&f);
    bytes[5 * SEG + 17] ^= 0xff;
    std::fs::write(&f, &bytes).unwrap();
    let o = run(dd().args(["--verify", "-s", &url]).arg("-c").arg(&sums2));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("differ: segments 5-5"), "{}", stdout(&o));

    // Read test and speed zones.
    let o = ok(dd().args(["-s", &url, "-v"]));
    assert!(o.contains(&format!("read {} bytes in 4 buffers", data.len())), "{o}");
    let o = ok(dd().args(["-z", "-s", &url, "--zone-count", "4", "--zone-sample", "1"]));
    assert_eq!(o.lines().filter(|l| !l.starts_with('#')).count(), 4, "{o}");

    // -b: the checksum file describes the target.
    ok(&mut copy(&url, &sums, p(&out)));
    let o = run(copy(&url, &sums, p(&out)).arg("-b"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // A password on the command line is refused, and never repeated.
    let bad = format!("iscsi://alice%hunter2hunter2@{}/{T1}/1", tgt.addr());
    let e = fails_with(dd().args(["-s", &bad]).arg("-c").arg(d.path().join("never")), &["refused"]);
    assert!(!e.contains("hunter2"), "{e}");
    assert!(!d.path().join("never").exists());
    fails_with(dd().args(["-s", &format!("iscsi://{}/{T1}", tgt.addr()), "-v"]), &["names no LUN"]);
    // An error names the volume once, with its role.
    let e = fails_with(dd().args(["-s", &tgt.lun_url(T1, 9)]).arg("-c").arg(d.path().join("never")), &["has no LUN 9"]);
    assert_eq!(e.matches(&format!("{T1}/9")).count(), 1, "{e}");
    assert!(e.contains(&format!("source {}", tgt.lun_url(T1, 9))), "{e}");
    let e = fails_with(dd().args(["-s", &bad, "-t", "/dev/null"]), &["refused"]);
    assert_eq!(e.matches(&format!("{T1}/1")).count(), 1, "{e}");
}

/// -m on a LUN reads groups of buffers with all their flagged runs in
/// flight together (sparse_lun.rs): a map spanning several groups, one
/// buffer flagged whole, isolated segments far apart, the ragged last
/// segment; with 4096-byte blocks and three workers. Every flagged segment
/// arrives, nothing else is read, the records match.
#[test]
fn ddless_m_on_a_lun_reads_groups_of_buffers_exactly() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    // 300 MiB + 3 blocks: 38 buffers of 8 MiB (more than one group of 32),
    // the last segment 12 KiB.
    let f = backing_file(d.path(), "src.img", (300 << 20) + 3 * 4096, 41);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 4096);
    let url = tgt.lun_url(T1, 1);
    let (sums, out) = (d.path().join("sums"), d.path().join("out.img"));
    let mut data = exposed(&f, 4096);
    ok(copy(&url, &sums, p(&out)).arg("-q"));
    let segs = data.len().div_ceil(SEG);
    // Buffer 1 whole (512 segments), every 97th segment, the last one.
    let mut flagged: Vec<usize> = (512..1024).chain((0..segs).step_by(97)).chain([segs - 1]).collect();
    flagged.sort();
    flagged.dedup();
    let mut rng = Rng(42);
    for &s in &flagged {
        let end = ((s + 1) * SEG).min(data.len());
        rng.fill(&mut data[s * SEG..end]);
    }
    // A change outside the map: -m must not see it.
    let unflagged = 96 * SEG;
    data[unflagged] ^= 0x55;
    std::fs::write(&f, [&data[..], &read(&f)[data.len()..]].concat()).unwrap();
    let map = ddmap_of(d.path(), &flagged, data.len());
    let r = json(copy(&url, &sums, p(&out)).args(["-m"]).arg(&map).args(["-w", "3", "--queue-depth", "16"]));
    assert_eq!(r["segments_read"], flagged.len() as u64, "{r}");
    assert_eq!(r["segments_changed"], flagged.len() as u64, "{r}");
    let mut expect = data.clone();
    expect[unflagged] ^= 0x55;
    assert!(read(&out) == expect, "the flagged segments did not all arrive (or others did)");
    let got = read(&sums);
    let want = reference_checksums(&expect);
    assert!(got == want, "the records do not describe the target");
}

#[test]
fn ddless_writes_iscsi_targets_of_512_and_4096_byte_blocks_from_odd_sized_sources() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let b512 = backing_file(d.path(), "t512.img", 16 << 20, 41);
    let b4k = backing_file(d.path(), "t4k.img", 12 << 20, 42);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &b512, 512);
    tgt.lun(1, 2, &b4k, 4096);
    // No multiple of 512, 4096 or a segment: the last block is patched.
    let src = d.path().join("src.img");
    let mut data = Rng(43).bytes((9 << 20) + 7 * 512 + 100);
    write(&src, &data);
    for (lun, backing) in [(1u16, &b512), (2, &b4k)] {
        let ctx = format!("LUN {lun}");
        let url = tgt.lun_url(T1, lun);
        let before = read(backing);
        let sums = d.path().join(format!("sums{lun}"));
        let r = json(&mut copy(p(&src), &sums, &url));
        assert_eq!(r["target"], url);
        assert_eq!(r["segments_changed"], r["segments"], "{ctx}");
        assert_eq!(r["target_size_before"], before.len() as u64);
        assert_lun_holds(backing, &data, &before, &ctx);
        assert_eq!(read(&sums), reference_checksums(&data), "{ctx}");
        assert_eq!(json(&mut copy(p(&src), &sums, &url))["segments_changed"], 0, "{ctx}");
        // Changed segments, the short last one among them.
        let last = data.len() / SEG;
        let n = data.len();
        data[last * SEG..n].iter_mut().for_each(|b| *b = b.wrapping_add(1));
        data[SEG * 3] ^= 1;
        write(&src, &data);
        let r = json(&mut copy(p(&src), &sums, &url));
        assert_eq!(r["segments_changed"], 2, "{ctx}");
        assert_lun_holds(backing, &data, &before, &ctx);
        let o = run(copy(p(&src), &sums, &url).arg("-b"));
        assert_eq!(o.status.code(), Some(0), "{ctx}: {}", stderr(&o));
    }
    // LUN to LUN: the 4096-byte-block LUN (12 MiB) onto the 512 one (16 MiB).
    let before = read(&b512);
    let sums = d.path().join("sums-l2l");
    ok(&mut copy(&tgt.lun_url(T1, 2), &sums, &tgt.lun_url(T1, 1)));
    assert_lun_holds(&b512, &read(&b4k), &before, "LUN to LUN");
    // A target LUN smaller than the source is refused up front.
    let never = d.path().join("never");
    fails_with(
        &mut copy(&tgt.lun_url(T1, 1), &never, &tgt.lun_url(T1, 2)),
        &["smaller than the source", "nothing was changed"],
    );
    assert!(!never.exists() && !d.path().join("never.lock").exists());
    // One LUN as source and target (other addresses of it: the portal test).
    fails_with(&mut copy(&tgt.lun_url(T1, 1), &never, &tgt.lun_url(T1, 1)), &["same iSCSI LUN"]);
    // A write-protected LUN is refused before anything is created.
    tgt.tgtadm(&["--op", "update", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "--params", "readonly=1"]);
    fails_with(&mut copy(p(&src), &never, &tgt.lun_url(T1, 1)), &["write-protected", "nothing was changed"]);
    assert!(!never.exists());
}

#[test]
fn ddless_through_the_portal_redirect_knows_a_lun_by_identity_not_by_address() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let f1 = backing_file(d.path(), "a.img", 12 << 20, 51);
    let f2 = backing_file(d.path(), "b.img", 12 << 20, 52);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f1, 512);
    tgt.lun(1, 2, &f2, 512);
    let (portal, portal_addr) = crate::initiator::santools_portal_for(&tgt, d.path());
    let via_portal = |lun: u16| format!("iscsi://{portal_addr}/{T1}/{lun}");
    let sums = d.path().join("sums");
    // Source through the portal, target at the node's own address.
    let r = json(&mut copy(&via_portal(1), &sums, &tgt.lun_url(T1, 2)));
    assert_eq!(r["segments_changed"], r["segments"]);
    assert!(read(&f2) == read(&f1));
    assert!(portal.log().contains(&format!("redirect to {}", tgt.addr())), "{}", portal.log());
    // The same target reached through the portal: its records still hold.
    let r = json(&mut copy(&tgt.lun_url(T1, 1), &sums, &via_portal(2)));
    assert_eq!(r["segments_changed"], 0);
    assert_eq!(r["warnings"].as_array().unwrap().len(), 0, "{r}");
    // The portal and the node name one LUN: refused as source and target.
    let never = d.path().join("never");
    fails_with(&mut copy(&via_portal(1), &never, &tgt.lun_url(T1, 1)), &["same iSCSI LUN", "nothing was changed"]);
    assert!(!never.exists());
}

/// A tgtd in `dir` serving one LUN of `size` random bytes (512-byte
/// blocks) to ME: the target (stopped when dropped), its backing file, its URL.
fn one_lun(dir: &Path, size: usize, seed: u64) -> (Tgt, PathBuf, String) {
    let tgt = Tgt::start(dir, "");
    let f = backing_file(dir, "src.img", size, seed);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    let url = tgt.lun_url(T1, 1);
    (tgt, f, url)
}

#[test]
fn a_read_rate_cap_holds_for_a_lun_whatever_threads_read_it() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (_tgt, f, url) = one_lun(d.path(), 8 << 20, 41);
    // -w 1 at queue depth 32: ddless reads the LUN with more threads than
    // one (to keep 32 commands in flight); together they keep to -r 4.
    let t0 = Instant::now();
    let r = json(dd().args(["-w", "1", "-r", "4", "--queue-depth", "32", "-s", &url, "-c"]).arg(d.path().join("sums")));
    let took = t0.elapsed();
    assert_eq!(r["segments"], 512, "{r}");
    // 8 MiB at 4 MiB/s: 2 s (the last unit's wait included).
    assert!(took >= Duration::from_millis(1800), "8 MiB read in {took:?} with -w 1 -r 4");
    assert_eq!(read(&d.path().join("sums")), reference_checksums(&read(&f)));
}

#[test]
fn a_read_rate_cap_reads_no_more_at_once_from_a_lun_than_w_buffers() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (_tgt, _, url) = one_lun(d.path(), 64 << 20, 43);
    // Queue depth 64 x 512 KiB: 8 MiB units. Each reader thread reads its
    // unit before the cap makes it wait, so with threads added for the
    // queue -w 1 -r 1 read 40 MiB in its first second.
    let mut child = dd()
        .args(["-w", "1", "-r", "1", "--queue-depth", "64", "-s", &url, "-c"])
        .arg(d.path().join("sums"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    // Everything the process read, socket included.
    let io = std::fs::read_to_string(format!("/proc/{}/io", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let rchar: u64 = io.lines().find_map(|l| l.strip_prefix("rchar: ")).unwrap().trim().parse().unwrap();
    // One 8 MiB buffer at once, as for a file, plus 2.5 s at 1 MiB/s.
    assert!(rchar < 12 << 20, "-w 1 -r 1 read {} MiB in 2.5 s", rchar >> 20);
}

/// Starts a rate-capped copy (so it lasts long enough for faults to land
/// mid-run) and returns the child.
fn spawn_capped(cmd: &mut Command, mb_s: u32) -> std::process::Child {
    cmd.args(["-w", "2", "-r", &mb_s.to_string()]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

fn finish(child: std::process::Child) -> (Option<i32>, String) {
    let o = child.wait_with_output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Kills the target's connections every 150 ms while `child` runs.
fn kill_connections_while_running(tgt: &Tgt, child: &mut std::process::Child) -> usize {
    let mut killed = 0;
    std::thread::sleep(Duration::from_millis(300));
    while child.try_wait().unwrap().is_none() {
        killed += tgt.kill_connections(1);
        std::thread::sleep(Duration::from_millis(400));
    }
    killed
}

#[test]
fn ddless_survives_connections_killed_mid_copy_in_both_directions() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let f = backing_file(d.path(), "lun.img", 32 << 20, 61);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    let url = tgt.lun_url(T1, 1);
    // Source: LUN to file.
    let (sums, out) = (d.path().join("sums"), d.path().join("out.img"));
    let mut child = spawn_capped(&mut copy(&url, &sums, p(&out)), 12);
    let killed = kill_connections_while_running(&tgt, &mut child);
    let (code, err) = finish(child);
    assert_eq!(code, Some(0), "{err}");
    assert!(read(&out) == read(&f) && read(&sums) == reference_checksums(&read(&f)));
    assert!(killed == 0 || err.contains("reconnected to"), "killed {killed}: {err}");
    // Target: file to LUN (writes replayed or rewritten after each reconnect).
    let src = d.path().join("src.img");
    let data = Rng(62).bytes(32 << 20);
    write(&src, &data);
    let sums = d.path().join("sums-t");
    let mut child = spawn_capped(&mut copy(p(&src), &sums, &url), 12);
    let killed = kill_connections_while_running(&tgt, &mut child);
    let (code, err) = finish(child);
    assert_eq!(code, Some(0), "{err}");
    assert!(read(&f) == data, "the LUN differs from the source after reconnects");
    assert_eq!(read(&sums), reference_checksums(&data));
    assert!(killed == 0 || err.contains("reconnected to"), "killed {killed}: {err}");
}

#[test]
fn ddless_fails_clearly_when_the_target_stops_mid_copy_and_a_rerun_is_identical() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut tgt = Tgt::start(d.path(), "");
    let f = backing_file(d.path(), "lun.img", 32 << 20, 71);
    let setup = |t: &Tgt| {
        t.target(1, T1, &[ME]);
        t.lun(1, 1, &f, 512);
    };
    setup(&tgt);
    let url = tgt.lun_url(T1, 1);
    // Reading from it.
    let (sums, out) = (d.path().join("sums"), d.path().join("out.img"));
    let mut cmd = copy_with(dd_reconnecting_for(2), &url, &sums, p(&out));
    let child = spawn_capped(&mut cmd, 8);
    std::thread::sleep(Duration::from_millis(600));
    tgt.stop();
    let (code, err) = finish(child);
    if code != Some(0) {
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("not re-established within 2 s"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_records_never_lie(&read(&out), &sums, "source stopped");
    tgt.restart();
    setup(&tgt);
    ok(&mut copy(&url, &sums, p(&out)));
    assert!(read(&out) == read(&f) && read(&sums) == reference_checksums(&read(&f)));

    // Writing to it.
    let src = d.path().join("src.img");
    let data = Rng(72).bytes(32 << 20);
    write(&src, &data);
    let sums = d.path().join("sums-t");
    let mut cmd = copy_with(dd_reconnecting_for(2), p(&src), &sums, &url);
    let child = spawn_capped(&mut cmd, 8);
    std::thread::sleep(Duration::from_millis(600));
    tgt.stop();
    let (code, err) = finish(child);
    if code != Some(0) {
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("not re-established within 2 s"), "{err}");
    }
    assert_records_never_lie(&read(&f), &sums, "target stopped");
    tgt.restart();
    setup(&tgt);
    ok(&mut copy(p(&src), &sums, &url));
    assert!(read(&f) == data);
    assert_eq!(read(&sums), reference_checksums(&data));
}

/// Checksum-only and verify runs hash a LUN's data as each command
/// completes, in buffers the session lends (src/initiator/read_pool.rs):
/// right under killed connections, whatever the command size, and a run
/// cut off by a stopped target leaves the old checksum file as it was.
#[test]
fn checksums_of_a_lun_hashed_as_they_arrive_survive_faults_and_odd_command_sizes() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut tgt = Tgt::start(d.path(), "");
    let f = backing_file(d.path(), "lun.img", 32 << 20, 91);
    let setup = |t: &Tgt| {
        t.target(1, T1, &[ME]);
        t.lun(1, 1, &f, 512);
    };
    setup(&tgt);
    let url = tgt.lun_url(T1, 1);
    let sums = d.path().join("sums");

    // Commands of 24 KiB (segments split between commands: read into
    // buffers) and 48 KiB (three whole segments each: hashed on arrival).
    for kib in [24, 48] {
        let cfg = d.path().join(format!("cfg-{kib}.toml"));
        std::fs::write(&cfg, format!("[initiator]\nmax_transfer_kib = {kib}\n")).unwrap();
        let s = d.path().join(format!("sums-{kib}"));
        ok(dd().arg("--config").arg(&cfg).args(["--queue-depth", "3", "-s", &url, "-c"]).arg(&s));
        assert_eq!(read(&s), reference_checksums(&read(&f)), "{kib} KiB commands");
    }

    // Connections killed mid-run: reads are reissued into their lent
    // buffers, and only whole, GOOD ones are hashed.
    let mut child = spawn_capped(dd().args(["-s", &url, "-c"]).arg(&sums), 12);
    let killed = kill_connections_while_running(&tgt, &mut child);
    let (code, err) = finish(child);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(read(&sums), reference_checksums(&read(&f)));
    assert!(killed == 0 || err.contains("reconnected to"), "killed {killed}: {err}");
    let mut child = spawn_capped(dd().args(["--verify", "-s", &url, "-c"]).arg(&sums), 12);
    let killed = kill_connections_while_running(&tgt, &mut child);
    let (code, err) = finish(child);
    assert_eq!(code, Some(0), "verify under killed connections ({killed}): {err}");

    // The LUN changes, then its target stops mid-run: an error, and the
    // old checksum file is untouched (the new one is never committed).
    let before = read(&sums);
    write(&f, &Rng(92).bytes(32 << 20));
    let child = spawn_capped(dd_reconnecting_for(2).args(["-s", &url, "-c"]).arg(&sums), 8);
    std::thread::sleep(Duration::from_millis(600));
    tgt.stop();
    let (code, err) = finish(child);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not re-established within 2 s") && !err.contains("panicked"), "{err}");
    assert!(read(&sums) == before, "a failed checksum-only run changed the checksum file");
    tgt.restart();
    setup(&tgt);
    ok(dd().args(["-s", &url, "-c"]).arg(&sums));
    assert_eq!(read(&sums), reference_checksums(&read(&f)));
}

const FAILPOINTS: &[&str] = &[
    "ddless.after-invalidate-write",
    "ddless.after-invalidate-sync",
    "ddless.mid-pending-write",
    "ddless.before-target-sync",
    "ddless.after-target-sync",
    "ddless.mid-record-write",
    "ddless.before-final-sync",
];

#[test]
fn kill_9_during_an_iscsi_write_then_rerun_is_byte_identical() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let size = 12 << 20;
    let f = backing_file(d.path(), "lun.img", size, 81);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 4096);
    let url = tgt.lun_url(T1, 1);
    let (src, sums) = (d.path().join("src.img"), d.path().join("sums"));
    let small = |c: &mut Command| {
        c.args(["-w", "2", "--checkpoint-mb", "2", "--invalidate-batch-mb", "1", "-q"]);
    };
    let mut rng = Rng(82);
    let mut versions = vec![rng.bytes(size)];
    write(&src, &versions[0]);
    let mut first = copy(p(&src), &sums, &url);
    small(&mut first);
    ok(&mut first);
    // At each step of the commit protocol, then the revert case.
    for fp in FAILPOINTS {
        let mut new = versions[0].clone();
        mutate_segments(&mut rng, &mut new, 300);
        write(&src, &new);
        let mut c = copy(p(&src), &sums, &url);
        small(&mut c);
        let o = run(c.env("SANTOOLS_FAILPOINT", fp));
        assert!(!o.status.success(), "{fp}: the failpoint did not fire");
        assert_records_never_lie(&read(&f), &sums, fp);
        write(&src, &versions[0]);
        let mut c = copy(p(&src), &sums, &url);
        small(&mut c);
        ok(&mut c);
        assert!(read(&f) == versions[0], "{fp}: stale data on the LUN after the revert");
        assert_eq!(read(&sums), reference_checksums(&versions[0]), "{fp}");
    }
    // At random moments of rate-capped runs.
    let t = Instant::now();
    let mut c = copy(p(&src), &sums, &url);
    small(&mut c);
    ok(c.args(["-r", "30"]));
    let full = t.elapsed().max(Duration::from_millis(50));
    let mut killed = 0;
    for round in 0..12 {
        let mut data = versions.last().unwrap().clone();
        if round % 4 == 3 {
            data = versions[rng.below(versions.len() as u64) as usize].clone();
        } else {
            let n = 1 + rng.below(400) as usize;
            mutate_segments(&mut rng, &mut data, n);
        }
        write(&src, &data);
        versions.push(data);
        let mut c = copy(p(&src), &sums, &url);
        small(&mut c);
        let mut child = c.args(["-r", "30"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(full.mul_f64(rng.below(1000) as f64 / 1000.0));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
        assert_records_never_lie(&read(&f), &sums, &format!("round {round}"));
    }
    assert!(killed >= 4, "only {killed} of 12 runs were killed mid-way");
    let last = versions.last().unwrap();
    let mut c = copy(p(&src), &sums, &url);
    small(&mut c);
    ok(&mut c);
    assert!(read(&f) == *last, "the rerun after kills left the LUN different from the source");
    assert_eq!(read(&sums), reference_checksums(last));
}

/// In-process, as the archive tools call it: a copy onto a LUN whose
/// session cannot keep acknowledged writes for replay, with connections
/// dropped under it, must fail rather than record them; a rerun converges.
#[test]
fn a_copy_whose_acknowledged_writes_may_be_lost_records_none_of_them() {
    use santools::ddless::{copy as dd_copy, ChecksumMode, CommitTuning, CopyOptions, ReadOptions};
    use santools::initiator::{InitiatorOptions, IscsiUrl};
    use santools::volume::VolumeSpec;
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let f = backing_file(d.path(), "lun.img", 48 << 20, 91);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    let src = d.path().join("src.img");
    let data = Rng(92).bytes(48 << 20);
    write(&src, &data);
    let sums = d.path().join("sums");
    let spec = |journal: usize| {
        let mut o = InitiatorOptions::new(ME);
        o.reconnect_timeout = Duration::from_secs(20);
        o.write_journal_limit = journal;
        VolumeSpec::iscsi(IscsiUrl::parse_lun(&tgt.lun_url(T1, 1)).unwrap(), o).unwrap()
    };
    let opts = |target: VolumeSpec, rate: Option<u64>| CopyOptions {
        source: PathBuf::from(&src).into(),
        target,
        checksum: ChecksumMode::File(sums.clone()),
        ddmap: None,
        read: ReadOptions {
            direct_io: false,
            workers: std::num::NonZeroUsize::new(2).unwrap(),
            read_rate_mb_s: rate.and_then(std::num::NonZeroU64::new),
        },
        // One checkpoint at the end: writes go out buffer by buffer over
        // the run, and a dropped connection anywhere in it may lose them.
        tuning: CommitTuning::default(),
    };
    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (done, kills) = (Arc::clone(&done), Arc::clone(&kills));
        let control = tgt.control;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            while !done.load(Ordering::Relaxed) {
                let o = Command::new("tgtadm")
                    .args([
                        "-C",
                        &control.to_string(),
                        "--lld",
                        "iscsi",
                        "--op",
                        "show",
                        "--mode",
                        "conn",
                        "--tid",
                        "1",
                    ])
                    .output()
                    .unwrap();
                for sid in String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.trim().strip_prefix("Session: "))
                {
                    let _ = Command::new("tgtadm")
                        .args(["-C", &control.to_string(), "--lld", "iscsi", "--op", "delete", "--mode", "conn"])
                        .args(["--tid", "1", "--sid", sid.trim(), "--cid", "0"])
                        .output();
                    kills.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    // No room to keep acknowledged writes: a dropped connection may lose them.
    let r = dd_copy(&opts(spec(0), Some(12)), &santools::progress::NoProgress);
    done.store(true, Ordering::Relaxed);
    killer.join().unwrap();
    assert!(kills.load(Ordering::Relaxed) > 0, "no connection was killed");
    let e = format!("{:#}", r.expect_err("a copy whose writes may be lost must fail"));
    assert!(e.contains("may have lost them"), "{e}");
    assert_records_never_lie(&read(&f), &sums, "after the refused flush");
    // A normal session: the rerun rewrites what was not vouched for.
    let r = dd_copy(&opts(spec(64 << 20), None), &santools::progress::NoProgress).unwrap();
    assert!(r.segments_changed > 0);
    assert!(read(&f) == data);
    assert_eq!(read(&sums), reference_checksums(&data));
}
