//! Regression tests for issue 6: the ways an adversarial pass made ddless
//! and ddmap lose data, grow without bound or mislead the operator. Each
//! test is named after what it guards; the item number is in its comment.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::ddless_loopdev::{loop_devices_usable, Loop};
use crate::helpers::*;

fn copy(src: &Path, sums: &Path, tgt: &Path) -> Command {
    let mut c = tool("ddless");
    c.arg("-s").arg(src).arg("-c").arg(sums).arg("-t").arg(tgt);
    c
}

fn json(cmd: &mut Command) -> serde_json::Value {
    serde_json::from_str(&ok(cmd.arg("--json"))).expect("JSON report")
}

/// Names and contents of every file in `dir` (to prove nothing changed).
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap_or_default()))
        .collect();
    v.sort();
    v
}

/// Item 1: the checksum path is the source under another spelling (./x,
/// a symlink, a hard link): refused, the source untouched, nothing created.
#[test]
fn checksum_path_is_source_by_another_name_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let vol = d.path().join("vol");
    write(&vol, &Rng(61).bytes(10 * SEG + 7));
    std::os::unix::fs::symlink("vol", d.path().join("link")).unwrap();
    std::fs::hard_link(&vol, d.path().join("hard")).unwrap();
    let before = snapshot(d.path());
    let dotted = d.path().join(".").join("vol");
    for alias in [dotted, d.path().join("link"), d.path().join("hard"), d.path().join("sub/../vol")] {
        std::fs::create_dir_all(d.path().join("sub")).unwrap();
        let before = {
            let mut b = before.clone();
            b.push(("sub".into(), Vec::new()));
            b.sort();
            b
        };
        // Copy mode and checksum-only mode.
        fails_with(&mut copy(&vol, &alias, &d.path().join("out")), &["source", "checksum file", "same file"]);
        fails_with(tool("ddless").arg("-s").arg(&vol).arg("-c").arg(&alias), &["same file"]);
        fails_with(tool("ddless").arg("--verify").arg("-s").arg(&vol).arg("-c").arg(&alias), &["same file"]);
        assert_eq!(snapshot(d.path()), before, "{alias:?}");
        std::fs::remove_dir(d.path().join("sub")).unwrap();
    }
}

/// Item 1: the checksum file, target and ddmap under other names.
#[test]
fn checksum_path_is_target_by_another_name_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (src, out) = (d.path().join("src"), d.path().join("out"));
    write(&src, &Rng(62).bytes(4 * SEG));
    // Not existing yet: the same planned file.
    fails_with(&mut copy(&src, &d.path().join("./out"), &out), &["checksum file", "target", "same file"]);
    assert!(!out.exists());
    // Existing.
    ok(&mut copy(&src, &d.path().join("sums"), &out));
    let before = snapshot(d.path());
    fails_with(&mut copy(&src, &d.path().join("./out"), &out), &["same file"]);
    fails_with(&mut copy(&src, &d.path().join("sums"), &d.path().join("./sums")), &["same file"]);
    // -m MAP -t MAP.
    let map = d.path().join("map");
    ok(tool("ddmap").args(["--from-extents", "-", "--size", &(4 * SEG).to_string(), "--name", "v", "-t"]).arg(&map));
    let before_map = snapshot(d.path());
    fails_with(copy(&src, &d.path().join("sums"), &map).arg("-m").arg(&map), &["ddmap", "target", "same file"]);
    assert_eq!(snapshot(d.path()), before_map);
    assert_eq!(before.len() + 2, before_map.len()); // map + map.lock
}

/// Item 5: `-t CHECKSUM.stats` / `-t CHECKSUM.lock` say what is wrong.
#[test]
fn target_named_as_stats_or_lock_file_is_refused_with_a_clear_message() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums) = (d.path().join("src"), d.path().join("sums"));
    write(&src, &Rng(63).bytes(3 * SEG));
    ok(&mut copy(&src, &sums, &d.path().join("tgt")));
    let before = snapshot(d.path());
    let e =
        fails_with(&mut copy(&src, &sums, &d.path().join("sums.stats")), &["stats file of checksum file", "same file"]);
    assert!(!e.contains("in use"), "{e}");
    let e =
        fails_with(&mut copy(&src, &sums, &d.path().join("sums.lock")), &["lock file of checksum file", "same file"]);
    assert!(!e.contains("in use"), "{e}");
    assert_eq!(snapshot(d.path()), before);
}

/// Item 2: a source written while ddless copies it never leaves a record
/// that the target lacks; once the source settles, a rerun makes the target
/// identical with every record true.
#[test]
fn source_changing_during_copy_never_leaves_a_record_the_target_lacks() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    let size = 24 << 20;
    write(&src, &Rng(64).bytes(size));
    ok(copy(&src, &sums, &tgt).arg("-q"));
    for round in 0..3u64 {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (stop, src) = (stop.clone(), src.clone());
            std::thread::spawn(move || {
                use std::os::unix::fs::FileExt;
                let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
                let mut rng = Rng(1000 + round);
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let seg = rng.below((size / SEG) as u64);
                    f.write_all_at(&rng.bytes(SEG / 2), seg * SEG as u64 + rng.below(SEG as u64 / 2)).unwrap();
                    n += 1;
                }
                n
            })
        };
        // Rate-capped so that the writer has time to race with the reads.
        let o = run(copy(&src, &sums, &tgt).args(["-w", "2", "-r", "60", "--checkpoint-mb", "4", "-q"]));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let writes = writer.join().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(writes > 10, "the writer did not race with the copy");
        // Every record describes the target's bytes exactly.
        let v = run(tool("ddless").arg("--verify").arg("-s").arg(&tgt).arg("-c").arg(&sums));
        assert_eq!(v.status.code(), Some(0), "round {round}: records lie about the target:\n{}", stdout(&v));
    }
    // Quiesced: one more run converges.
    ok(copy(&src, &sums, &tgt).arg("-q"));
    let data = read(&src);
    assert_eq!(read(&tgt), data);
    assert_eq!(read(&sums), reference_checksums(&data));
}

/// Items 3 and 4: a removed, truncated, replaced or recreated target is
/// rewritten (with a warning saying why), never trusted from old records.
#[test]
fn removed_truncated_or_replaced_target_is_rewritten_not_trusted() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    let data = Rng(65).bytes(61 * SEG + 1000);
    write(&src, &data);
    ok(&mut copy(&src, &sums, &tgt));
    type Damage = fn(&Path, &Path);
    let cases: [(&str, Damage, &str); 5] = [
        ("removed", |t, _| std::fs::remove_file(t).unwrap(), "did not exist"),
        (
            "truncated",
            |t, _| std::fs::OpenOptions::new().write(true).open(t).unwrap().set_len(500_000).unwrap(),
            "truncated",
        ),
        (
            "extended",
            |t, _| std::fs::OpenOptions::new().write(true).open(t).unwrap().set_len(5 << 20).unwrap(),
            "extended",
        ),
        (
            "replaced",
            |t, dir| {
                let other = dir.join("other");
                std::fs::write(&other, vec![0u8; std::fs::metadata(t).unwrap().len() as usize]).unwrap();
                std::fs::rename(&other, t).unwrap();
            },
            "replaced or recreated",
        ),
        (
            "recreated",
            |t, _| {
                let len = std::fs::metadata(t).unwrap().len() as usize;
                std::fs::remove_file(t).unwrap();
                std::thread::sleep(Duration::from_millis(5));
                std::fs::write(t, vec![7u8; len]).unwrap();
            },
            "replaced or recreated",
        ),
    ];
    for (name, damage, why) in cases {
        damage(&tgt, d.path());
        let o = run(copy(&src, &sums, &tgt).arg("--json"));
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains("warning") && stderr(&o).contains(why), "{name}: {}", stderr(&o));
        assert_eq!(read(&tgt), data, "{name}: the target is not the source after the rerun");
        let v = run(tool("ddless").arg("--verify").arg("-s").arg(&tgt).arg("-c").arg(&sums));
        assert_eq!(v.status.code(), Some(0), "{name}: {}", stdout(&v));
        // And the run after that trusts the target again: nothing written.
        let r = json(&mut copy(&src, &sums, &tgt));
        assert_eq!(r["segments_changed"], 0, "{name}");
    }
}

/// Item 3: shrink within the last segment, killed right after the target was
/// cut, then the source reverts: the rerun restores the last bytes.
#[test]
fn shrink_within_last_segment_then_kill_and_revert_restores_the_tail() {
    for fp in ["ddless.after-invalidate-plan", "ddless.before-target-resize", "ddless.after-target-resize"] {
        let d = tempfile::tempdir().unwrap();
        let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
        let orig = Rng(66).bytes(64 * SEG);
        write(&src, &orig);
        ok(copy(&src, &sums, &tgt).arg("-q"));
        std::fs::OpenOptions::new().write(true).open(&src).unwrap().set_len(orig.len() as u64 - 100).unwrap();
        let s = copy(&src, &sums, &tgt).arg("-q").env("SANTOOLS_FAILPOINT", fp).status().unwrap();
        assert!(!s.success(), "{fp}: the failpoint was not reached");
        write(&src, &orig);
        ok(copy(&src, &sums, &tgt).arg("-q"));
        assert_eq!(read(&tgt), orig, "{fp}: the last 100 bytes were not restored");
        assert_eq!(read(&sums), reference_checksums(&orig), "{fp}");
    }
}

/// Item 6: one bound on -w, checked before anything is allocated.
#[test]
fn workers_beyond_the_bound_are_refused_before_allocating() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    write(&src, &Rng(67).bytes(SEG));
    for w in ["99999999999", "100000", "1025"] {
        let t = Instant::now();
        fails_with(
            copy(&src, &d.path().join("s"), &d.path().join("t")).args(["-w", w]),
            &["--workers", "at most 1024"],
        );
        assert!(t.elapsed() < Duration::from_secs(20));
    }
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, "[ddless]\nworkers = 5000\n").unwrap();
    fails_with(copy(&src, &d.path().join("s"), &d.path().join("t")).arg("--config").arg(&cfg), &["ddless.workers"]);
    assert!(!d.path().join("t").exists() && !d.path().join("s").exists());
    // Many workers on a tiny source: fine, and no more threads than buffers.
    ok(copy(&src, &d.path().join("s"), &d.path().join("t")).args(["-w", "1024"]));
}

/// Item 7: a "map" that is an endless device is refused after 20 bytes.
#[test]
fn ddmap_from_an_endless_device_is_refused_after_its_header() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    write(&src, &Rng(68).bytes(4 * SEG));
    let (o, rss) = run_measuring_rss(tool("ddmap").args(["-s", "/dev/zero", "-a"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad magic"), "{}", stderr(&o));
    assert!(rss < 64 << 10, "ddmap -a /dev/zero peaked at {rss} KiB");
    for flag in ["-b", "--stats"] {
        fails_with(tool("ddmap").args(["-s", "/dev/zero", flag]), &["bad magic"]);
    }
    let (o, rss) = run_measuring_rss(copy(&src, &d.path().join("s"), &d.path().join("t")).args(["-m", "/dev/zero"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad magic"), "{}", stderr(&o));
    assert!(rss < 96 << 10, "ddless -m /dev/zero peaked at {rss} KiB");
    // A header announcing 4G words over a short file: refused by length, nothing allocated.
    let mut huge = b"ddmap\0\0\0".to_vec();
    huge.extend([1, 0, 0, 0]);
    huge.extend(0u32.to_le_bytes());
    huge.extend(u32::MAX.to_le_bytes());
    huge.extend([0u8; 64]);
    write(&d.path().join("huge.map"), &huge);
    let (o, rss) = run_measuring_rss(tool("ddmap").arg("-s").arg(d.path().join("huge.map")).arg("-b"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("map_size 4294967295"), "{}", stderr(&o));
    assert!(rss < 64 << 10, "{rss} KiB");
    // Excess data after the announced words is refused.
    let mut long = b"ddmap\0\0\0".to_vec();
    long.extend([1, 0, 0, 0]);
    long.extend(0u32.to_le_bytes());
    long.extend(1u32.to_le_bytes());
    long.extend([0u8; 8]);
    write(&d.path().join("long.map"), &long);
    fails_with(tool("ddmap").arg("-s").arg(d.path().join("long.map")).arg("-a"), &["map_size 1 words", "found 8"]);
}

/// Item 8: sizes past the format's limit fail at once; building, merging
/// and dumping keep memory near one map.
#[test]
fn from_extents_sizes_beyond_the_format_are_refused_at_once() {
    let d = tempfile::tempdir().unwrap();
    let map = d.path().join("m");
    let t = Instant::now();
    let o = run(tool("ddmap").args(["--from-extents", "-", "--size", "2048T", "--name", "v", "-t"]).arg(&map));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("larger than a ddmap can describe"), "{}", stderr(&o));
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(!map.exists() && !d.path().join("m.lock").exists());
    // 16 TiB: a 128 MiB map, nearly all clear; memory stays far below it.
    let ext = d.path().join("ext");
    std::fs::write(&ext, "0 16384\n17592186044000 416\n").unwrap();
    let (o, rss) = run_measuring_rss(
        tool("ddmap").arg("--from-extents").arg(&ext).args(["--size", "16T", "--name", "v", "-t"]).arg(&map),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(rss < 64 << 10, "building a 128 MiB map peaked at {rss} KiB");
    assert_eq!(std::fs::metadata(&map).unwrap().len(), 20 + (128 << 20));
    assert!(std::fs::metadata(&map).unwrap().blocks() * 512 < 8 << 20, "the clear map is not sparse");
    let (o, rss) = run_measuring_rss(tool("ddmap").arg("-s").arg(&map).arg("-a"));
    assert!(o.status.success() && stdout(&o).contains("map_size: 33554432"), "{}", stdout(&o));
    assert!(rss < 64 << 10, "-a read the whole map: {rss} KiB");
    let (o, rss) = run_measuring_rss(tool("ddmap").arg("-s").arg(&map).arg("--stats"));
    assert!(o.status.success() && stdout(&o).starts_with("2 of"), "{}", stdout(&o));
    assert!(rss < 64 << 10, "--stats read the whole map: {rss} KiB");
    // Merging two 128 MiB maps: about one map in memory.
    let copy_of = d.path().join("m2");
    std::fs::copy(&map, &copy_of).unwrap();
    let (o, rss) = run_measuring_rss(tool("ddmap").arg("-s").arg(&map).arg("-t").arg(&copy_of));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(rss < 200 << 10, "merging 128 MiB maps peaked at {rss} KiB");
}

/// Item 9: a mapped copy's memory stays at the buffers in flight, not the
/// size of the source.
#[test]
fn mapped_copy_memory_stays_near_the_buffers_in_flight() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    // Before the fix a run held the whole source mapped: > 384 MiB here.
    let size = 384 << 20;
    write(&src, &Rng(69).bytes(size));
    for run_no in 0..2 {
        let (o, rss) = run_measuring_rss(copy(&src, &sums, &tgt).args(["-w", "2", "-q"]));
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(rss < 224 << 10, "run {run_no}: peak RSS {rss} KiB for a 384 MiB source");
    }
    let (o, rss) =
        run_measuring_rss(tool("ddless").arg("-s").arg(&src).arg("-c").arg(d.path().join("only")).args(["-w", "2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(rss < 224 << 10, "checksum only: peak RSS {rss} KiB");
}

/// Item 10: IET's map of a LUN not a multiple of 512 KiB has one word less;
/// it is accepted and the tail IET does not track is always read.
#[test]
fn iet_map_rounded_down_is_accepted_and_its_tail_always_read() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt, map) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"), d.path().join("m"));
    let size = 10_000_000usize;
    let mut data = Rng(70).bytes(size);
    write(&src, &data);
    ok(&mut copy(&src, &sums, &tgt));
    // IET: 610 segments >> 5 = 19 words, nothing flagged.
    let mut iet = b"ddmap\0\0\0".to_vec();
    iet.extend([1, 0, 0, 0]);
    iet.extend(0u32.to_le_bytes());
    iet.extend(19u32.to_le_bytes());
    iet.extend(vec![0u8; 19 * 4]);
    write(&map, &iet);
    data[size - 10] ^= 0xff; // segment 610, past the map
    data[609 * SEG] ^= 0xff; // segment 609, past the map
    write(&src, &data);
    let r = json(copy(&src, &sums, &tgt).arg("-m").arg(&map));
    assert_eq!(r["segments_read"], 3, "segments 608-610 are untracked and must be read");
    assert_eq!(read(&tgt), data);
    // A map of any other size is still refused, naming both accepted counts.
    iet[16..20].copy_from_slice(&18u32.to_le_bytes());
    iet.truncate(20 + 18 * 4);
    write(&map, &iet);
    fails_with(copy(&src, &sums, &tgt).arg("-m").arg(&map), &["map_size 18 words", "20 words (or IET's 19)"]);
}

/// Item 11: `-a` prints the seed's `ddmap suspended` line, from IET's
/// header byte, and a suspended map is read (not "unsupported version").
#[test]
fn ddmap_header_dump_prints_the_seed_suspended_line() {
    let d = tempfile::tempdir().unwrap();
    let map = d.path().join("m");
    let mut m = b"ddmap\0\0\0".to_vec();
    m.extend([1, 1, 0, 0]); // version 1, suspended 1
    m.extend(0x2a73u32.to_le_bytes());
    m.extend(2u32.to_le_bytes());
    m.extend(3u32.to_le_bytes());
    m.extend(0u32.to_le_bytes());
    write(&map, &m);
    let out = ok(tool("ddmap").arg("-s").arg(&map).arg("-a"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[2], "ddmap version: 1");
    assert_eq!(lines[3], "ddmap suspended: 1");
    assert_eq!(lines[4], "ddmap name_sum: 0x00002a73");
    let j: serde_json::Value =
        serde_json::from_str(&ok(tool("ddmap").arg("-s").arg(&map).args(["-a", "--json"]))).unwrap();
    assert_eq!(j["suspended"], 1);
}

/// Item 12: a typo in [portal] does not stop ddless or ddmap (a warning);
/// check-config still fails on it.
#[test]
fn typo_in_portal_section_does_not_stop_ddless_or_ddmap() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("santools.toml");
    std::fs::write(&cfg, "[ddless]\nworkers = 2\n\n[portal]\nlisten = [\"127.0.0.1:3260\"]\nstate_tme_sec = 5\n")
        .unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    write(&src, &Rng(71).bytes(2 * SEG));
    let o = run(copy(&src, &sums, &tgt).arg("--config").arg(&cfg).arg("--json"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning") && stderr(&o).contains("[portal]") && stderr(&o).contains("state_tme_sec"));
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["workers"], 2, "[ddless] is still applied");
    assert_eq!(r["reader_threads"], 1, "one buffer, one reader thread");
    let o = run(tool("ddmap")
        .args(["--from-extents", "-", "--size", "1M", "--name", "v", "-t"])
        .arg(d.path().join("m"))
        .arg("--config")
        .arg(&cfg));
    assert!(o.status.success(), "{}", stderr(&o));
    fails_with(tool("check-config").arg("--config").arg(&cfg), &["state_tme_sec"]);
    // A typo in the section a tool uses still stops it.
    std::fs::write(&cfg, "[ddless]\nworkerz = 2\n").unwrap();
    fails_with(copy(&src, &sums, &tgt).arg("--config").arg(&cfg), &["workerz"]);
}

/// Item 13: temporaries left by killed runs are removed by the next run;
/// one a live process holds is kept.
#[test]
fn stale_temp_files_of_killed_runs_are_removed() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    write(&src, &Rng(72).bytes(40 * SEG));
    ok(&mut copy(&src, &sums, &tgt));
    // kill -9 of checksum-only before its rename leaves a temp as big as the file.
    let s = tool("ddless")
        .arg("-s")
        .arg(&src)
        .arg("-c")
        .arg(&sums)
        .env("SANTOOLS_FAILPOINT", "atomic.before-rename")
        .status()
        .unwrap();
    assert!(!s.success());
    let temps = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp."))
            .collect()
    };
    // The checksum file's temp and the stats file's (written just before).
    assert_eq!(temps(d.path()).len(), 2, "{:?}", temps(d.path()));
    let live = d.path().join(".sums.tmp.1.7");
    let held = std::fs::File::create(&live).unwrap();
    use std::os::fd::AsRawFd;
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    std::fs::write(d.path().join(".sums.stats.tmp.99999.0"), b"dead").unwrap();
    std::fs::write(d.path().join(".other.tmp.99999.0"), b"not ours").unwrap();
    ok(&mut copy(&src, &sums, &tgt));
    let mut left = temps(d.path());
    left.sort();
    assert_eq!(left, vec![".other.tmp.99999.0".to_string(), ".sums.tmp.1.7".to_string()]);
    // ddmap merges clean up after themselves the same way.
    let map = d.path().join("m");
    ok(tool("ddmap").args(["--from-extents", "-", "--size", "1M", "--name", "v", "-t"]).arg(&map));
    std::fs::write(d.path().join(".m.tmp.424242.3"), b"dead").unwrap();
    ok(tool("ddmap").args(["--from-extents", "-", "--size", "1M", "--name", "v", "-t"]).arg(&map));
    assert!(!d.path().join(".m.tmp.424242.3").exists());
}

/// Item 14: a refused run creates nothing (no checksum file, no lock).
#[test]
fn refused_run_creates_nothing() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    write(&src, &Rng(73).bytes(2 * SEG));
    let before = snapshot(d.path());
    for t in ["newdir/", "newdir/t"] {
        fails_with(&mut copy(&src, &d.path().join("sums"), &d.path().join(t)), &["target", "newdir"]);
        assert_eq!(snapshot(d.path()), before, "-t {t}");
    }
    fails_with(&mut copy(&src, &d.path().join("nodir/sums"), &d.path().join("t")), &["nodir"]);
    assert_eq!(snapshot(d.path()), before);
    if !loop_devices_usable() {
        return;
    }
    let backing = d.path().join("ro.img");
    write(&backing, &vec![0u8; 1 << 20]);
    let before = snapshot(d.path());
    let ro = Loop::attach_with(&backing, None, true);
    fails_with(&mut copy(&src, &d.path().join("sums"), &ro.dev), &["not writable", "nothing was changed"]);
    assert_eq!(snapshot(d.path()), before, "a read-only device target left files behind");
}

/// Item 15: a larger target file is shrunk with a warning, and the report says so.
#[test]
fn larger_target_file_is_shrunk_with_a_warning() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    write(&src, &Rng(74).bytes(3 * SEG));
    write(&tgt, &vec![1u8; 10 * SEG]);
    let o = run(copy(&src, &sums, &tgt).arg("--json"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: target file") && stderr(&o).contains("larger than the source"),
        "{}",
        stderr(&o)
    );
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["target_shrunk"], true);
    assert_eq!(r["target_size_before"], 10 * SEG as u64);
    assert_eq!(read(&tgt), read(&src));
    let stats = std::fs::read_to_string(d.path().join("sums.stats")).unwrap();
    assert!(stats.contains(&format!("target_size_before={}\n", 10 * SEG)), "{stats}");
}

/// Item 16: messages name the tool, say each cause once, and mean something.
#[test]
fn messages_name_the_tool_and_say_each_cause_once() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    write(&src, &Rng(75).bytes(4 * SEG));
    // clap errors carry the tool prefix.
    let e = fails_with(tool("ddless").arg("--frobnicate"), &["ddless: error: unexpected argument"]);
    assert!(!e.starts_with("error:"), "{e}");
    fails_with(tool("ddmap").arg("--frobnicate"), &["ddmap: error: unexpected argument"]);
    // --verify -c DIR.
    let e = fails_with(tool("ddless").arg("--verify").arg("-s").arg(&src).arg("-c").arg(d.path()), &["is a directory"]);
    assert!(!e.contains("records"), "{e}");
    // --zone-count 0, and no header before a failure.
    fails_with(tool("ddless").args(["-z", "--zone-count", "0", "-s"]).arg(&src), &["--zone-count", "at least 1"]);
    let o = run(tool("ddless").arg("-z").arg("-s").arg(d.path().join("missing")));
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty(), "header printed before failing: {}", stdout(&o));
    // Zones of an empty source: an error, not rows of nothing; tiny: fewer zones.
    write(&d.path().join("empty"), b"");
    fails_with(tool("ddless").arg("-z").arg("-s").arg(d.path().join("empty")), &["empty"]);
    let rows = ok(tool("ddless").arg("-z").arg("-s").arg(&src));
    assert_eq!(rows.lines().filter(|l| !l.starts_with('#')).count(), 4);
    // Holes punched are not counted as data written.
    let mut z = vec![0u8; 8 * SEG];
    z[..100].fill(9);
    write(&src, &z);
    let r = json(&mut copy(&src, &sums, &tgt));
    assert_eq!(r["bytes_written"], SEG as u64);
    assert_eq!(r["bytes_punched"], 7 * SEG as u64);
    assert_eq!(r["segments_changed"], 8);
    // ddmap -b --json, --name ''.
    let map = d.path().join("m");
    ok(tool("ddmap").args(["--from-extents", "-", "--size", "1M", "--name", "v", "-t"]).arg(&map));
    let j: serde_json::Value =
        serde_json::from_str(&ok(tool("ddmap").arg("-s").arg(&map).args(["-b", "--json"]))).unwrap();
    assert_eq!(j["words"].as_array().unwrap().len(), 2);
    assert_eq!(j["map_size"], 2);
    fails_with(
        tool("ddmap").args(["--from-extents", "-", "--size", "1M", "--name", "", "-t"]).arg(d.path().join("m2")),
        &["--name", "empty"],
    );
    // Checksum-only through a symlink replaces the file it points to, keeping link and mode.
    let real = d.path().join("real.cks");
    ok(tool("ddless").arg("-s").arg(&src).arg("-c").arg(&real));
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = d.path().join("link.cks");
    std::os::unix::fs::symlink("real.cks", &link).unwrap();
    ok(tool("ddless").arg("-s").arg(&src).arg("-c").arg(&link));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::metadata(&real).unwrap().mode() & 0o7777, 0o640);
}

/// Item 16: the target lock holds per device, not per device node.
#[test]
fn target_lock_is_per_device_not_per_node() {
    if !loop_devices_usable() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    write(&src, &Rng(76).bytes(8 << 20));
    let backing = d.path().join("t.img");
    write(&backing, &vec![0u8; 8 << 20]);
    let lo = Loop::attach(&backing, None);
    let rdev = std::fs::metadata(&lo.dev).unwrap().rdev();
    let node: PathBuf = d.path().join("second-node");
    let st = Command::new("mknod")
        .arg(&node)
        .arg("b")
        .arg(libc::major(rdev).to_string())
        .arg(libc::minor(rdev).to_string())
        .status()
        .unwrap();
    assert!(st.success());
    // A slow run on the first node...
    let mut first = copy(&src, &d.path().join("a.cks"), &lo.dev).args(["-w", "1", "-r", "4", "-q"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let deadline = Instant::now() + Duration::from_secs(30);
    // ...keeps a run on the second node (another checksum file) out.
    let mut refused = false;
    while Instant::now() < deadline && first.try_wait().unwrap().is_none() {
        let o = run(&mut copy(&src, &d.path().join("b.cks"), &node));
        if o.status.code() == Some(2) && stderr(&o).contains("in use") {
            refused = true;
            break;
        }
        assert!(!o.status.success(), "two runs wrote the same device at once");
    }
    first.kill().ok();
    first.wait().ok();
    assert!(refused, "the second node's run was not refused");
}

/// Item 17: every tool of the registry gets a man page and completions.
#[test]
fn man_pages_and_completions_for_every_registered_tool() {
    let d = tempfile::tempdir().unwrap();
    let names: Vec<String> = ok(Command::new(bin()).arg("--list")).lines().map(str::to_string).collect();
    assert!(names.contains(&"ddless".to_string()) && names.len() >= 5, "{names:?}");
    let (man, comp, links) = (d.path().join("man8"), d.path().join("completions"), d.path().join("bin"));
    std::fs::create_dir(&links).unwrap();
    ok(Command::new(bin())
        .arg("install-links")
        .arg(&links)
        .arg("--man-dir")
        .arg(&man)
        .arg("--completion-dir")
        .arg(&comp)
        .args(["--shell", "bash,zsh,fish"]));
    for name in names.iter().map(String::as_str).chain(["santools"]) {
        let page =
            std::fs::read_to_string(man.join(format!("{name}.8"))).unwrap_or_else(|_| panic!("no man page for {name}"));
        assert!(page.starts_with(".ie") || page.contains(".TH"), "{name}");
        assert!(page.contains(&name.replace('-', "\\-")) || page.contains(name), "{name}");
        for file in [name.to_string(), format!("_{name}"), format!("{name}.fish")] {
            let script = std::fs::read_to_string(comp.join(&file)).unwrap_or_else(|_| panic!("no completion {file}"));
            assert!(script.contains("help") && script.contains(name), "{file}");
        }
    }
    // The builtins write the same.
    let out = ok(Command::new(bin()).arg("gen-man").arg(d.path().join("m2")));
    assert_eq!(out.lines().count(), names.len() + 1);
    let out = ok(Command::new(bin()).arg("gen-completions").args(["--shell", "bash"]).arg(d.path().join("c2")));
    assert_eq!(out.lines().count(), names.len() + 1);
    if which("bash").is_some() {
        let o = run(Command::new("bash").arg("-n").arg(d.path().join("c2/ddless")));
        assert!(o.status.success(), "{}", stderr(&o));
    }
}

/// The same class of mistake in the portal: a pid file (truncated at start)
/// that is the configuration file under another name is refused.
#[test]
fn portal_pid_file_that_is_the_configuration_by_another_name_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("santools.toml");
    let example = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/santools.toml")).unwrap();
    write(&cfg, &example);
    std::os::unix::fs::symlink("santools.toml", d.path().join("link")).unwrap();
    for alias in [d.path().join("./santools.toml"), d.path().join("link")] {
        fails_with(
            tool("iscsi-portal").arg("--config").arg(&cfg).arg("--pid-file").arg(&alias).arg("--check"),
            &["configuration", "pid file", "same file"],
        );
        assert_eq!(read(&cfg), example);
    }
}
