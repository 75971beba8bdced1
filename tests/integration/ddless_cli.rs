//! ddless end to end on temp files: every mode, the stats file, sparse
//! targets, size changes, and every bad input refused with nothing written.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::helpers::*;

fn copy_args<'a>(
    cmd: &'a mut std::process::Command,
    src: &Path,
    sums: &Path,
    tgt: &Path,
) -> &'a mut std::process::Command {
    cmd.arg("-s").arg(src).arg("-c").arg(sums).arg("-t").arg(tgt)
}

fn json(cmd: &mut std::process::Command) -> serde_json::Value {
    serde_json::from_str(&ok(cmd.arg("--json"))).expect("JSON report")
}

#[test]
fn copy_twice_second_run_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    let data = Rng(1).bytes(20 * SEG + 123);
    write(&src, &data);
    let r1 = json(copy_args(&mut tool("ddless"), &src, &sums, &tgt));
    assert_eq!(read(&tgt), data);
    assert_eq!(r1["segments_changed"], 21);
    assert_eq!(r1["bytes_written"], data.len() as u64);
    assert_eq!(r1["checksum_file_state"], "created");
    assert_eq!(read(&sums), reference_checksums(&data));
    let r2 = json(copy_args(&mut tool("ddless"), &src, &sums, &tgt));
    assert_eq!(r2["segments_changed"], 0);
    assert_eq!(r2["bytes_written"], 0);
    assert_eq!(r2["checksum_file_state"], "unchanged");
    let stats = String::from_utf8(read(&d.path().join("sums.stats"))).unwrap();
    assert!(stats.contains("segments_changed=0\n"), "{stats}");
    assert!(stats.contains(&format!("source_size={}\n", data.len())), "{stats}");
    assert!(stats.starts_with("format=ddless-stats-2\n"), "{stats}");
    assert!(stats.contains("bound_kind=file\n") && stats.contains(&format!("bound_size={}\n", data.len())), "{stats}");
}

#[test]
fn verbose_log_has_the_seed_lines() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    write(&src, &Rng(2).bytes(3 * SEG));
    let o = run(copy_args(&mut tool("ddless"), &src, &sums, &tgt).args(["-v", "-w", "1"]));
    assert!(o.status.success());
    let log = stderr(&o);
    for line in [
        "ddless => segment size 16384 bytes",
        "ddless => direct IO 0",
        "ddless => workers 1",
        "ddless => 8 MB read buffer",
        "ddless => source file size 49152 bytes (0.00 GB)",
        "ddless => source segments 3, remainder 0 bytes",
        "ddless => read buffers job 1",
        "ddless => new checksum file required",
        "ddless => checksum file size 24 bytes",
        "ddless => total buffers read 1",
        "ddless => found changed segments 3 (100.00%) of 3 segments",
        "ddless => wrote 49152 bytes (0.00 GB) to target",
        "ddless => processing time",
        "ddless => processing performance",
        "ddless => preparing stats file",
    ] {
        assert!(log.contains(line), "missing {line:?} in:\n{log}");
    }
    // Quiet by default, nothing on stdout.
    let o = run(copy_args(&mut tool("ddless"), &src, &sums, &tgt));
    assert!(o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn only_changed_segments_are_written() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    let mut rng = Rng(3);
    let mut data = rng.bytes(700 * SEG); // two read buffers
    write(&src, &data);
    ok(copy_args(&mut tool("ddless"), &src, &sums, &tgt));
    // Scribble on the target where the source does not change: ddless must
    // not notice (it trusts its checksums), proving it skipped those segments.
    let mut t = read(&tgt);
    t[5 * SEG] ^= 0xff;
    write(&tgt, &t);
    let mut changed = mutate_segments(&mut rng, &mut data, 7);
    changed.sort();
    changed.dedup();
    write(&src, &data);
    let r = json(copy_args(&mut tool("ddless"), &src, &sums, &tgt));
    assert_eq!(r["segments_changed"], changed.len() as u64);
    let t = read(&tgt);
    for s in 0..700 {
        let same = t[s * SEG..(s + 1) * SEG] == data[s * SEG..(s + 1) * SEG];
        assert_eq!(same, s != 5 || changed.contains(&5), "segment {s}");
    }
    assert_eq!(read(&sums), reference_checksums(&data));
}

#[test]
fn dev_null_checksum_writes_everything() {
    let d = tempfile::tempdir().unwrap();
    let (src, tgt) = (d.path().join("src"), d.path().join("tgt"));
    let data = Rng(4).bytes(5 * SEG + 1);
    write(&src, &data);
    let o = run(tool("ddless").arg("-s").arg(&src).args(["-c", "/dev/null", "-v"]).arg("-t").arg(&tgt));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("skipping checksum computations"));
    assert_eq!(read(&tgt), data);
    let r = json(tool("ddless").arg("-s").arg(&src).args(["-c", "/dev/null"]).arg("-t").arg(&tgt));
    assert_eq!(r["segments_changed"], 6, "without checksums every segment is written");
    assert!(!d.path().join("null.stats").exists());
}

#[test]
fn checksum_only_and_verify() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums) = (d.path().join("src"), d.path().join("sums"));
    let mut data = Rng(5).bytes(40 * SEG + 77);
    write(&src, &data);
    ok(tool("ddless").arg("-s").arg(&src).arg("-c").arg(&sums));
    assert_eq!(read(&sums), reference_checksums(&data));
    let o = run(tool("ddless").arg("--verify").arg("-s").arg(&src).arg("-c").arg(&sums));
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("OK: 0 of 41 segments differ"), "{}", stdout(&o));
    data[3 * SEG + 5] ^= 1;
    data[4 * SEG] ^= 1;
    data[40 * SEG + 70] ^= 1;
    write(&src, &data);
    let o = run(tool("ddless").arg("--verify").arg("-s").arg(&src).arg("-c").arg(&sums));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("differ: segments 3-4 bytes 49152-81919"), "{out}");
    assert!(out.contains(&format!("differ: segments 40-40 bytes 655360-{}", 40 * SEG + 76)), "{out}");
    assert!(out.contains("MISMATCH: 3 of 41 segments differ"), "{out}");
    let o = run(tool("ddless").arg("--verify").arg("--json").arg("-s").arg(&src).arg("-c").arg(&sums));
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["segments_differing"], 3);
    assert_eq!(v["mismatches"][0]["first_segment"], 3);
    // Verify wrote nothing.
    assert_eq!(read(&sums), reference_checksums(&Rng(5).bytes(40 * SEG + 77)));
}

#[test]
fn regular_file_targets_stay_sparse() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    let mut data = vec![0u8; 64 << 20];
    Rng(6).fill(&mut data[..SEG]);
    Rng(7).fill(&mut data[(40 << 20)..(40 << 20) + 3 * SEG]);
    write(&src, &data);
    ok(copy_args(&mut tool("ddless"), &src, &sums, &tgt));
    assert_eq!(read(&tgt), data);
    let blocks = std::fs::metadata(&tgt).unwrap().blocks() * 512;
    assert!(blocks < (1 << 20), "target allocates {blocks} bytes for 64 KiB of data");
    // Zeroing data later punches it out again.
    data[(40 << 20)..(40 << 20) + 3 * SEG].fill(0);
    write(&src, &data);
    ok(copy_args(&mut tool("ddless"), &src, &sums, &tgt));
    assert_eq!(read(&tgt), data);
    assert_eq!(read(&sums), reference_checksums(&data));
}

#[test]
fn source_growth_and_shrink_resize_checksums_and_target() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    let mut rng = Rng(8);
    let mut data = rng.bytes(10 * SEG + 100);
    write(&src, &data);
    ok(copy_args(&mut tool("ddless"), &src, &sums, &tgt));
    // Grow: the short last segment becomes full, plus new segments.
    data.extend(rng.bytes(5 * SEG));
    write(&src, &data);
    let o = run(copy_args(&mut tool("ddless"), &src, &sums, &tgt).arg("--json"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning: source size changed"), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["checksum_file_state"], "resized");
    assert_eq!(r["segments_changed"], 6, "old partial last segment + 5 new");
    assert_eq!(read(&tgt), data);
    assert_eq!(read(&sums), reference_checksums(&data));
    // Shrink.
    data.truncate(4 * SEG + 9);
    write(&src, &data);
    ok(copy_args(&mut tool("ddless"), &src, &sums, &tgt));
    assert_eq!(read(&tgt), data);
    assert_eq!(read(&sums), reference_checksums(&data));
}

#[test]
fn ddmap_limits_reads_to_flagged_segments() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt, map) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"), d.path().join("m"));
    let mut rng = Rng(9);
    let size = 600 * SEG;
    let mut data = rng.bytes(size);
    write(&src, &data);
    ok(copy_args(&mut tool("ddless"), &src, &sums, &tgt));
    let mut changed = mutate_segments(&mut rng, &mut data, 5);
    changed.sort();
    changed.dedup();
    write(&src, &data);
    let extents: String = changed.iter().map(|s| format!("{} {}\n", s * SEG, SEG)).collect();
    std::fs::write(d.path().join("ext"), extents).unwrap();
    ok(tool("ddmap")
        .arg("--from-extents")
        .arg(d.path().join("ext"))
        .args(["--size", &size.to_string(), "--name", "iqn.test:vol.0", "-t"])
        .arg(&map));
    let r = json(copy_args(&mut tool("ddless"), &src, &sums, &tgt).arg("-m").arg(&map));
    assert_eq!(r["segments_read"], changed.len() as u64);
    assert_eq!(r["segments_changed"], changed.len() as u64);
    assert_eq!(
        r["buffers_read"],
        changed.iter().map(|s| s / 512).collect::<std::collections::BTreeSet<_>>().len() as u64
    );
    assert_eq!(read(&tgt), data);
    assert_eq!(read(&sums), reference_checksums(&data));
}

#[test]
fn ddmap_with_no_checksums_yet_reads_everything() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt, map) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"), d.path().join("m"));
    let data = Rng(10).bytes(64 * SEG);
    write(&src, &data);
    ok(tool("ddmap").args(["--from-extents", "-", "--size", &(64 * SEG).to_string(), "--name", "x", "-t"]).arg(&map));
    let r = json(copy_args(&mut tool("ddless"), &src, &sums, &tgt).arg("-m").arg(&map));
    assert_eq!(r["segments_read"], 64, "an empty map must not hide data the target never got");
    assert_eq!(read(&tgt), data);
}

#[test]
fn read_test_zones_and_params() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    write(&src, &Rng(11).bytes(20 << 20));
    let out = ok(tool("ddless").arg("-s").arg(&src).arg("-v"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "3 buffers + summary:\n{out}");
    assert!(lines[0].ends_with(" MB/s") && lines[0].contains(" ms "), "{out}");
    assert!(lines[3].starts_with("read 20971520 bytes in 3 buffers"), "{out}");
    let out = ok(tool("ddless").arg("-z").arg("-s").arg(&src).args(["--zone-sample", "1"]));
    let rows: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(rows.len(), 100);
    let cols: Vec<&str> = rows[50].split(' ').collect();
    assert_eq!(cols.len(), 4);
    assert_eq!(cols[0], "50");
    assert_eq!(cols[1].parse::<u64>().unwrap() % SEG as u64, 0);
    let p: serde_json::Value = serde_json::from_str(&ok(tool("ddless").args(["-p", "--json"]))).unwrap();
    assert_eq!(p["segment_size"], 16384);
    assert_eq!(p["read_buffer_size"], 8 << 20);
    assert!(p["default_workers"].as_u64().unwrap() >= 1);
    assert!(ok(tool("ddless").arg("-p")).contains("segment size: 16384 bytes"));
}

#[test]
fn seed_b_copies_nothing_and_exits_3_when_a_new_checksum_file_is_required() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    write(&src, &Rng(12).bytes(3 * SEG));
    let b = |c: &mut std::process::Command| run(copy_args(c, &src, &sums, &tgt).args(["-b", "-v"]));
    let o = b(&mut tool("ddless"));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("new checksum file required, exiting"), "{}", stderr(&o));
    assert!(!sums.exists() && !tgt.exists() && !d.path().join("sums.lock").exists(), "-b created files");
    ok(copy_args(&mut tool("ddless"), &src, &sums, &tgt));
    let o = b(&mut tool("ddless"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("checksum file will be used, exiting"), "{}", stderr(&o));
    // The source size changed: a new checksum file is required; nothing copied.
    write(&src, &Rng(13).bytes(5 * SEG));
    let before = read(&tgt);
    assert_eq!(b(&mut tool("ddless")).status.code(), Some(3));
    assert_eq!(read(&tgt), before);
}

#[test]
fn concurrent_run_on_same_checksum_file_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    write(&src, &Rng(13).bytes(SEG));
    // Hold the lock exactly as a running ddless does.
    let lock =
        std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(d.path().join("sums.lock")).unwrap();
    use std::os::fd::AsRawFd;
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    fails_with(copy_args(&mut tool("ddless"), &src, &sums, &tgt), &["in use by another ddless run", "sums.lock"]);
    assert!(!tgt.exists(), "refused run created the target");
    assert!(!sums.exists(), "refused run created the checksum file");
    fails_with(tool("ddless").arg("-s").arg(&src).arg("-c").arg(&sums), &["in use"]);
    drop(lock);
    ok(copy_args(&mut tool("ddless"), &src, &sums, &tgt));
}

/// Every bad input: exit 2, a message naming the file and the problem, and
/// no file created or changed.
#[test]
fn bad_input_is_refused_and_nothing_is_written() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    write(&p("src"), &Rng(14).bytes(4 * SEG));
    let snapshot = || {
        let mut v: Vec<(String, usize, u32)> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                let content = std::fs::read(e.path()).unwrap_or_default();
                (e.file_name().to_string_lossy().into_owned(), content.len(), crc32fast::hash(&content))
            })
            .collect();
        v.sort();
        v
    };
    // Inputs that exist before each case.
    write(&p("odd_sums"), &[0u8; 13]);
    write(&p("small_sums"), &[0u8; 8]);
    let mut bad_map = vec![0u8; 24];
    bad_map[..8].copy_from_slice(b"ddmaq\0\0\0");
    write(&p("badmagic.map"), &bad_map);
    let mut good = b"ddmap\0\0\0".to_vec();
    good.extend(1u32.to_le_bytes());
    good.extend(0u32.to_le_bytes());
    good.extend(1u32.to_le_bytes());
    good.extend(0u32.to_le_bytes());
    write(&p("size.map"), &good); // 1 word = 512 KiB, source is 64 KiB: fits
    let mut v2 = good.clone();
    v2[8] = 2;
    write(&p("version.map"), &v2);
    write(&p("trunc.map"), &good[..22]);
    let mut wrong = good.clone();
    wrong[16..20].copy_from_slice(&2u32.to_le_bytes());
    wrong.extend(0u32.to_le_bytes());
    write(&p("wrongsize.map"), &wrong);
    let before = snapshot();

    let src = p("src");
    let cases: Vec<(Vec<std::ffi::OsString>, Vec<&str>)> = vec![
        (
            vec!["-s".into(), p("missing").into(), "-c".into(), p("s").into(), "-t".into(), p("t").into()],
            vec!["source", "missing", "No such file"],
        ),
        (
            vec!["-s".into(), d.path().into(), "-c".into(), p("s").into(), "-t".into(), p("t").into()],
            vec!["source", "directory"],
        ),
        (
            vec!["-s".into(), src.clone().into(), "-c".into(), p("odd_sums").into(), "-t".into(), p("t").into()],
            vec!["checksum file", "odd_sums", "not a multiple of 8"],
        ),
        (
            vec!["--verify".into(), "-s".into(), src.clone().into(), "-c".into(), p("small_sums").into()],
            vec!["small_sums", "holds 1 records", "4 segments"],
        ),
        (
            vec!["--verify".into(), "-s".into(), src.clone().into(), "-c".into(), p("odd_sums").into()],
            vec!["odd_sums", "not a multiple of 8"],
        ),
        (
            vec![
                "-s".into(),
                src.clone().into(),
                "-m".into(),
                p("badmagic.map").into(),
                "-c".into(),
                p("s").into(),
                "-t".into(),
                p("t").into(),
            ],
            vec!["badmagic.map", "bad magic"],
        ),
        (
            vec![
                "-s".into(),
                src.clone().into(),
                "-m".into(),
                p("version.map").into(),
                "-c".into(),
                p("s").into(),
                "-t".into(),
                p("t").into(),
            ],
            vec!["version.map", "unsupported version 2"],
        ),
        (
            vec![
                "-s".into(),
                src.clone().into(),
                "-m".into(),
                p("trunc.map").into(),
                "-c".into(),
                p("s").into(),
                "-t".into(),
                p("t").into(),
            ],
            vec!["trunc.map", "map_size"],
        ),
        (
            vec![
                "-s".into(),
                src.clone().into(),
                "-m".into(),
                p("wrongsize.map").into(),
                "-c".into(),
                p("s").into(),
                "-t".into(),
                p("t").into(),
            ],
            vec!["wrongsize.map", "map_size 2 words", "expected 1 words"],
        ),
        (
            vec![
                "-s".into(),
                src.clone().into(),
                "-m".into(),
                p("nomap").into(),
                "-c".into(),
                p("s").into(),
                "-t".into(),
                p("t").into(),
            ],
            vec!["nomap"],
        ),
        (
            vec![
                "-s".into(),
                src.clone().into(),
                "-w".into(),
                "0".into(),
                "-c".into(),
                p("s").into(),
                "-t".into(),
                p("t").into(),
            ],
            vec!["--workers", "at least 1"],
        ),
        (
            vec![
                "-s".into(),
                src.clone().into(),
                "-r".into(),
                "0".into(),
                "-c".into(),
                p("s").into(),
                "-t".into(),
                p("t").into(),
            ],
            vec!["--read-rate", "at least 1"],
        ),
        (vec!["-s".into(), src.clone().into(), "-w".into(), "two".into()], vec!["--workers", "not a whole number"]),
        (
            vec!["-s".into(), src.clone().into(), "-t".into(), p("t").into()],
            vec!["needs a checksum file", "-c /dev/null"],
        ),
        (
            vec![
                "--verify".into(),
                "-s".into(),
                src.clone().into(),
                "-t".into(),
                p("t").into(),
                "-c".into(),
                p("s").into(),
            ],
            vec!["cannot be used with"],
        ),
        (vec!["-z".into(), "-s".into(), src.clone().into(), "-c".into(), p("s").into()], vec!["cannot be used with"]),
        (
            vec!["-s".into(), src.clone().into(), "-m".into(), p("size.map").into(), "-c".into(), p("s").into()],
            vec!["-m/--ddmap only applies to a copy"],
        ),
        (vec!["--verify".into(), "-s".into(), src.clone().into()], vec!["--verify needs the checksum file"]),
        (vec!["-c".into(), p("s").into()], vec!["no source given"]),
        (
            vec!["-s".into(), src.clone().into(), "-c".into(), p("s").into(), "-t".into(), p("nodir/t").into()],
            vec!["nodir", "does not exist"],
        ),
        (
            vec!["-s".into(), src.clone().into(), "-c".into(), p("s").into(), "-t".into(), src.clone().into()],
            vec!["source", "target", "are the same file"],
        ),
        (
            vec!["-s".into(), src.clone().into(), "-c".into(), p("s").into(), "-t".into(), "/dev/null".into()],
            vec!["character device"],
        ),
        (
            vec!["-d".into(), "-s".into(), "/proc/version".into(), "-v".into()],
            vec!["/proc/version", "refuses O_DIRECT"],
        ),
        (vec!["--config".into(), p("nocfg.toml").into(), "-p".into()], vec!["nocfg.toml"]),
        (vec!["--frobnicate".into()], vec!["unexpected argument"]),
    ];
    for (args, needles) in cases {
        fails_with(tool("ddless").args(&args), &needles);
        assert_eq!(snapshot(), before, "ddless {args:?} changed files");
    }
}

#[test]
fn config_file_supplies_defaults_and_bad_keys_are_named() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("santools.toml");
    std::fs::write(&cfg, "[ddless]\nworkers = 3\n").unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    write(&src, &Rng(15).bytes(SEG));
    let o = run(copy_args(&mut tool("ddless"), &src, &sums, &tgt).arg("--config").arg(&cfg).arg("-v"));
    assert!(stderr(&o).contains("ddless => workers 3"), "{}", stderr(&o));
    let o = run(copy_args(&mut tool("ddless"), &src, &sums, &tgt).arg("--config").arg(&cfg).args(["-v", "-w", "1"]));
    assert!(stderr(&o).contains("ddless => workers 1"), "flag overrides config");
    std::fs::write(&cfg, "[ddless]\nworkers = 0\n").unwrap();
    fails_with(tool("ddless").arg("--config").arg(&cfg).arg("-p"), &["santools.toml", "ddless.workers", "at least 1"]);
    std::fs::write(&cfg, "[ddless]\ndirect = true\n").unwrap();
    fails_with(tool("ddless").arg("--config").arg(&cfg).arg("-p"), &["santools.toml", "unknown field `direct`"]);
}

#[test]
fn help_lists_modes_and_flags() {
    let out = ok(tool("ddless").arg("--help"));
    for needle in [
        "Usage: ddless",
        "-s, --source",
        "-t, --target",
        "-c, --checksum",
        "-m, --ddmap",
        "-d, --direct",
        "-w, --workers",
        "-r, --read-rate",
        "--verify",
        "-z, --zones",
        "-p, --params",
        "--json",
        "-q, --quiet",
        "Exit codes",
    ] {
        assert!(out.contains(needle), "--help lacks {needle:?}:\n{out}");
    }
}

#[test]
fn progress_bar_only_on_a_terminal() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    write(&src, &Rng(16).bytes(48 << 20));
    // Not a terminal: nothing on stderr.
    let o = run(copy_args(&mut tool("ddless"), &src, &sums, &tgt).args(["-r", "100", "-w", "1"]));
    assert!(o.status.success() && o.stderr.is_empty(), "{}", stderr(&o));
    // A real pseudo-terminal through script(1): the bar is drawn.
    if !real_component("script (util-linux)", which("script").is_some(), "script(1) not installed") {
        return;
    }
    std::fs::remove_file(&sums).unwrap();
    let cmd = format!(
        "{} ddless -s {} -c {} -t {} -r 100 -w 1",
        bin().display(),
        src.display(),
        sums.display(),
        tgt.display()
    );
    let o = std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("ddless [") && text.contains("MiB/48.00 MiB"), "no progress bar on a terminal:\n{text}");
    assert!(!text.contains("0 B/0 B"), "empty frame drawn:\n{text}");
    let o = std::process::Command::new("script").args(["-qec", &format!("{cmd} -q"), "/dev/null"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("ddless ["), "-q must hide the bar");
}
