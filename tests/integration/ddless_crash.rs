//! kill -9 tests: ddless is killed at random moments and at each step of
//! its commit protocol; afterwards every record must vouch only for data the
//! target holds (checked with `ddless --verify` against the target), and
//! rerunning the same command must make the target identical to the
//! source, including when the source went back to its old bytes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

const FAILPOINTS: &[&str] = &[
    "ddless.after-invalidate-write",
    "ddless.after-invalidate-sync",
    "ddless.mid-pending-write",
    "ddless.before-target-sync",
    "ddless.after-target-sync",
    "ddless.mid-record-write",
    "ddless.before-final-sync",
    "atomic.before-rename",
];

fn copy_cmd(src: &Path, sums: &Path, tgt: &Path) -> Command {
    let mut c = tool("ddless");
    c.arg("-s").arg(src).arg("-c").arg(sums).arg("-t").arg(tgt);
    // Small checkpoints and batches: many protocol steps per run.
    c.args(["-w", "2", "--checkpoint-mb", "4", "--invalidate-batch-mb", "2", "-q"]);
    c
}

/// Every segment whose record does not match the target must have an
/// INVALID record: a valid record never lies.
fn assert_records_never_lie(tgt: &Path, sums: &Path, ctx: &str) {
    if !sums.exists() || !tgt.exists() {
        return;
    }
    let len = std::fs::metadata(sums).unwrap().len();
    let tlen = std::fs::metadata(tgt).unwrap().len();
    if len % 8 != 0 || len / 8 != tlen.div_ceil(SEG as u64) {
        return; // resized state: the next run resizes again; checked by the rerun
    }
    let o = run(tool("ddless").arg("--verify").arg("--json").arg("-s").arg(tgt).arg("-c").arg(sums));
    assert!(o.status.code() == Some(0) || o.status.code() == Some(1), "{ctx}: verify failed: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    for m in v["mismatches"].as_array().unwrap() {
        let segs = m["last_segment"].as_u64().unwrap() - m["first_segment"].as_u64().unwrap() + 1;
        assert_eq!(
            m["invalid_records"].as_u64().unwrap(),
            segs,
            "{ctx}: a valid record vouches for data the target does not hold: {m}"
        );
    }
}

#[test]
fn kill_at_random_moments_then_rerun_converges() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    let mut rng = Rng(0xC0FFEE);
    let size = 32 << 20;
    let mut versions = vec![rng.bytes(size)];
    write(&src, &versions[0]);
    // The read-rate cap makes a run last ~0.4 s whatever the machine's
    // load, so kills spread over a run land at every stage of it.
    let capped = |c: &mut Command| {
        c.args(["-r", "40"]);
    };
    let mut first = copy_cmd(&src, &sums, &tgt);
    capped(&mut first);
    assert!(first.status().unwrap().success());
    // Calibrate on an unkilled run like the ones below.
    let t = Instant::now();
    let mut calib = copy_cmd(&src, &sums, &tgt);
    capped(&mut calib);
    assert!(calib.status().unwrap().success());
    let full = t.elapsed().max(Duration::from_millis(50));
    let mut killed = 0;
    for round in 0..40 {
        let mut data = if round % 5 == 4 {
            versions[rng.below(versions.len() as u64) as usize].clone()
        } else {
            versions.last().unwrap().clone()
        };
        if round % 5 != 4 {
            let n = 1 + rng.below(size as u64 / SEG as u64 / 2) as usize;
            mutate_segments(&mut rng, &mut data, n);
        }
        write(&src, &data);
        versions.push(data.clone());
        let mut cmd = copy_cmd(&src, &sums, &tgt);
        capped(&mut cmd);
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(full.mul_f64(rng.below(1000) as f64 / 1000.0));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
        assert_records_never_lie(&tgt, &sums, &format!("round {round}"));
    }
    assert!(killed >= 20, "only {killed} of 40 runs were killed mid-way; the test did not exercise crashes");
    let last = versions.last().unwrap();
    assert!(copy_cmd(&src, &sums, &tgt).status().unwrap().success());
    assert_eq!(&read(&tgt), last, "rerun after kills left the target different from the source");
    assert_eq!(read(&sums), reference_checksums(last));
}

#[test]
fn kill_at_each_protocol_step_then_rerun_converges_even_after_revert() {
    for (i, fp) in FAILPOINTS.iter().enumerate() {
        for nth in [1u32, 2, 5] {
            let d = tempfile::tempdir().unwrap();
            let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
            let mut rng = Rng(100 + i as u64 * 7 + u64::from(nth));
            let old = rng.bytes(24 << 20);
            write(&src, &old);
            assert!(copy_cmd(&src, &sums, &tgt).status().unwrap().success());
            let mut new = old.clone();
            mutate_segments(&mut rng, &mut new, 900);
            write(&src, &new);
            let status = copy_cmd(&src, &sums, &tgt).env("SANTOOLS_FAILPOINT", format!("{fp}:{nth}")).status().unwrap();
            let ctx = format!("{fp}:{nth}");
            assert_records_never_lie(&tgt, &sums, &ctx);
            // The revert case: the source goes back to its old bytes.
            write(&src, &old);
            assert!(copy_cmd(&src, &sums, &tgt).status().unwrap().success(), "{ctx}");
            assert_eq!(read(&tgt), old, "{ctx} (killed: {}): stale data after revert", !status.success());
            assert_eq!(read(&sums), reference_checksums(&old), "{ctx}");
        }
    }
}

#[test]
fn kill_during_first_copy_and_checksum_only_leaves_nothing_half_made() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    let data = Rng(77).bytes(20 << 20);
    write(&src, &data);
    let s = copy_cmd(&src, &sums, &tgt).env("SANTOOLS_FAILPOINT", "ddless.mid-record-write:1").status().unwrap();
    assert!(!s.success());
    assert_records_never_lie(&tgt, &sums, "first copy");
    assert!(copy_cmd(&src, &sums, &tgt).status().unwrap().success());
    assert_eq!(read(&tgt), data);
    // Checksum-only replaces atomically: a kill before the rename keeps the old file.
    let before = read(&sums);
    let s = tool("ddless")
        .arg("-s")
        .arg(&tgt)
        .arg("-c")
        .arg(&sums)
        .env("SANTOOLS_FAILPOINT", "atomic.before-rename")
        .status()
        .unwrap();
    assert!(!s.success());
    assert_eq!(read(&sums), before);
}

#[test]
fn source_shrinking_under_a_mapped_read_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    write(&src, &Rng(31).bytes(64 << 20));
    assert!(copy_cmd(&src, &sums, &tgt).status().unwrap().success());
    let before = read(&sums);
    // 16 MB/s on one worker: the run takes ~4 s; cut the source short meanwhile.
    let child = tool("ddless")
        .arg("-s")
        .arg(&src)
        .arg("-c")
        .arg(&sums)
        .arg("-t")
        .arg(&tgt)
        .args(["-w", "1", "-r", "16"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    std::fs::OpenOptions::new().write(true).open(&src).unwrap().set_len(SEG as u64).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("SIGBUS") && err.contains("shrank"), "{err}");
    // Nothing was changed, so the checksum file still vouches for the old target.
    assert_eq!(read(&sums), before);
    assert_records_never_lie(&tgt, &sums, "after SIGBUS");
}

/// A writer changes the source all through the copies, which are killed at
/// random moments: no record may ever vouch for bytes the target lacks;
/// once the writer stops, one rerun makes target and records exact.
#[test]
fn kill_while_a_writer_changes_the_source_then_quiesce_converges() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let d = tempfile::tempdir().unwrap();
    let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
    let size = 16 << 20;
    write(&src, &Rng(0xBEEF).bytes(size));
    assert!(copy_cmd(&src, &sums, &tgt).status().unwrap().success());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, src) = (stop.clone(), src.clone());
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
            let mut rng = Rng(0xF00D);
            while !stop.load(Ordering::Relaxed) {
                let seg = rng.below((size / SEG) as u64);
                f.write_all_at(&rng.bytes(4096), seg * SEG as u64 + rng.below(3) * 4096).unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let mut rng = Rng(0xD00D);
    let mut killed = 0;
    for round in 0..12 {
        let mut cmd = copy_cmd(&src, &sums, &tgt);
        cmd.args(["-r", "40"]);
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(50 + rng.below(300)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        assert_records_never_lie(&tgt, &sums, &format!("writer round {round}"));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(killed >= 4, "only {killed} runs were killed");
    assert!(copy_cmd(&src, &sums, &tgt).status().unwrap().success());
    let data = read(&src);
    assert_eq!(read(&tgt), data, "target differs from the quiesced source");
    assert_eq!(read(&sums), reference_checksums(&data));
}

/// Killed at each step of a resize (records invalidated, target cut or
/// grown, binding recorded), with the source shrunk within its last segment
/// or grown, then reverted: the rerun restores the original bytes. And a
/// run killed mid-way whose target is then truncated, replaced or
/// recreated converges too.
#[test]
fn kill_at_each_resize_step_or_damage_the_target_then_rerun_converges() {
    let steps = [
        "ddless.mid-invalidate-tail",
        "ddless.after-invalidate-plan",
        "ddless.before-target-resize",
        "ddless.after-target-resize",
        "atomic.before-rename",
    ];
    let orig = Rng(0xAB).bytes(40 * SEG);
    for (shrink, step) in [true, false].iter().flat_map(|s| steps.iter().map(move |f| (*s, *f))) {
        let d = tempfile::tempdir().unwrap();
        let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
        write(&src, &orig);
        assert!(copy_cmd(&src, &sums, &tgt).status().unwrap().success());
        let mut changed = orig.clone();
        if shrink {
            changed.truncate(orig.len() - 100);
        } else {
            changed.extend(Rng(7).bytes(3 * SEG + 5));
        }
        write(&src, &changed);
        let _ = copy_cmd(&src, &sums, &tgt).env("SANTOOLS_FAILPOINT", step).status().unwrap();
        assert_records_never_lie(&tgt, &sums, step);
        write(&src, &orig);
        assert!(copy_cmd(&src, &sums, &tgt).status().unwrap().success(), "{step}");
        assert_eq!(read(&tgt), orig, "shrink={shrink} {step}: stale bytes after revert");
        assert_eq!(read(&sums), reference_checksums(&orig), "shrink={shrink} {step}");
    }
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 3] = [
        ("truncated", |t| {
            std::fs::OpenOptions::new().write(true).open(t).unwrap().set_len(7 * SEG as u64 + 3).unwrap()
        }),
        ("replaced", |t| {
            let other = t.with_extension("other");
            std::fs::write(&other, vec![0u8; std::fs::metadata(t).unwrap().len() as usize]).unwrap();
            std::fs::rename(&other, t).unwrap();
        }),
        ("recreated", |t| {
            let len = std::fs::metadata(t).unwrap().len() as usize;
            std::fs::remove_file(t).unwrap();
            std::thread::sleep(Duration::from_millis(5));
            std::fs::write(t, vec![1u8; len]).unwrap();
        }),
    ];
    for (name, damage) in damages {
        let d = tempfile::tempdir().unwrap();
        let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
        write(&src, &orig);
        assert!(copy_cmd(&src, &sums, &tgt).status().unwrap().success());
        let mut newer = orig.clone();
        mutate_segments(&mut Rng(9), &mut newer, 30);
        write(&src, &newer);
        let s = copy_cmd(&src, &sums, &tgt).env("SANTOOLS_FAILPOINT", "ddless.mid-record-write:1").status().unwrap();
        assert!(!s.success(), "{name}");
        damage(&tgt);
        assert!(copy_cmd(&src, &sums, &tgt).status().unwrap().success(), "{name}");
        assert_eq!(read(&tgt), newer, "{name}: the rerun trusted records of another target");
        assert_eq!(read(&sums), reference_checksums(&newer), "{name}");
    }
}
