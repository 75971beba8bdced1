//! The initiator against a hostile target (hostile_target.rs) and hostile
//! settings: every run ends within its documented timeouts with exit 2, a
//! clear error, and nothing created; plus the per-host LUN lock against a
//! real tgtd reached under two spellings of its address.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::hostile_target::{HostileTarget, Misbehaviour};
use crate::initiator_lab::*;

const ME: &str = "iqn.2024-01.test:hostile-initiator";

/// Runs `cmd`, killing it after `limit` (a hang is a failure, not a stuck suite).
fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("running santools");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(o) => o.expect("waiting for santools"),
        Err(_) => {
            // SAFETY: kill(2) on the child we spawned (not yet reaped: its waiter is blocked).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{cmd:?} still running after {} s: hangs", limit.as_secs());
        }
    }
}

/// Asserts exit 2 with every needle in stderr and no panic.
fn refused(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "expected exit 2\nstdout: {}\nstderr: {err}", stdout(o));
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
    assert!(!err.contains("panicked"), "panic: {err}");
}

/// A configuration with short I/O timeouts, so a stalled target is given
/// up on in seconds.
fn short_timeouts(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("santools.toml");
    std::fs::write(&p, "[initiator]\nio_timeout_sec = 2\nmax_reconnects = 0\nreconnect_timeout_sec = 3\n").unwrap();
    p
}

fn ddless_from(t: &HostileTarget, dir: &Path, config: Option<&Path>) -> Command {
    let mut c = tool("ddless");
    if let Some(cfg) = config {
        c.arg("--config").arg(cfg);
    }
    c.args(["--initiator-name", ME, "--login-timeout", "5", "-s", &t.lun_url(), "-c"])
        .arg(dir.join("sums"))
        .arg("-t")
        .arg(dir.join("copy"));
    c
}

/// ddless copying a 1 MiB file of its own to the hostile target's LUN.
fn ddless_to(t: &HostileTarget, dir: &Path, config: &Path) -> Command {
    let src = dir.join("src");
    write(&src, &vec![7u8; 1 << 20]);
    let mut c = tool("ddless");
    c.arg("--config").arg(config).args(["--initiator-name", ME, "-s"]).arg(&src);
    c.args(["-t", &t.lun_url(), "-c"]).arg(dir.join("sums"));
    c
}

fn nothing_created(dir: &Path) {
    for n in ["sums", "copy", "sums.stats"] {
        assert!(!dir.join(n).exists(), "a refused run created {n}");
    }
}

#[test]
fn a_login_response_continued_forever_without_text_is_refused() {
    let t = HostileTarget::start(Misbehaviour::LoginContinuesForever);
    let o =
        run_within(tool("iscsi-ls").args(["-i", ME, "--login-timeout", "5", &t.portal_url()]), Duration::from_secs(60));
    refused(&o, &["continued (C bit) without any text"]);
}

#[test]
fn a_sendtargets_answer_continued_forever_without_text_is_refused() {
    let t = HostileTarget::start(Misbehaviour::DiscoveryContinuesForever);
    let o = run_within(
        tool("iscsi-ls").args(["-i", ME, "-t", "--login-timeout", "5", &t.portal_url()]),
        Duration::from_secs(60),
    );
    refused(&o, &["non-final SendTargets answer without any text"]);
}

#[test]
fn a_target_that_answers_pings_but_never_completes_a_read_is_given_up_on() {
    let d = tempfile::tempdir().unwrap();
    let t = HostileTarget::start(Misbehaviour::ReadsNeverComplete);
    let cfg = short_timeouts(d.path());
    let o = run_within(&mut ddless_from(&t, d.path(), Some(&cfg)), Duration::from_secs(90));
    // (On a machine too loaded to answer in 2 s, silence may be named first.)
    let err = stderr(&o);
    assert!(err.contains("no command made progress for 8 s") || err.contains("no answer from the target"), "{err}");
    refused(&o, &["max_reconnects"]);
    // Nothing was read: the checksum file (if any) vouches for nothing.
    if d.path().join("sums").exists() {
        let v = run(tool("ddless")
            .arg("--verify")
            .arg("-s")
            .arg(d.path().join("copy"))
            .arg("-c")
            .arg(d.path().join("sums")));
        assert_eq!(v.status.code(), Some(1), "a failed run's checksum file vouches for data: {}", stdout(&v));
    }
}

/// Virtual memory cap for a run against a flooding target: a regression
/// fails the run (allocation failure) instead of exhausting the machine.
fn with_memory_cap(c: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 2 << 30, rlim_max: 2 << 30 };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

#[test]
fn a_target_flooding_pings_is_read_at_the_pace_it_takes_answers() {
    let d = tempfile::tempdir().unwrap();
    let t = HostileTarget::start(Misbehaviour::PingFlood);
    let cfg = short_timeouts(d.path());
    // The target never reads our answers: we stop reading once 8 MiB of
    // them are queued, and the silence ends the run. Before, each 256 KiB
    // ping's answer was queued without bound (9.7 GB in 40 s).
    let o = run_within(with_memory_cap(&mut ddless_from(&t, d.path(), Some(&cfg))), Duration::from_secs(90));
    refused(&o, &["max_reconnects"]);
}

#[test]
fn a_target_asking_for_the_same_write_data_forever_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let t = HostileTarget::start(Misbehaviour::R2tRepeat);
    let cfg = short_timeouts(d.path());
    let o = run_within(&mut ddless_to(&t, d.path(), &cfg), Duration::from_secs(90));
    refused(&o, &["R2Ts asked for", "each byte is asked for once"]);
}

#[test]
fn endless_empty_data_in_is_no_progress() {
    let d = tempfile::tempdir().unwrap();
    let t = HostileTarget::start(Misbehaviour::EmptyDataInForever);
    let cfg = short_timeouts(d.path());
    let o = run_within(&mut ddless_from(&t, d.path(), Some(&cfg)), Duration::from_secs(90));
    refused(&o, &["no command made progress for 8 s", "max_reconnects"]);
}

#[test]
fn an_r2t_for_zero_bytes_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let t = HostileTarget::start(Misbehaviour::EmptyR2tForever);
    let cfg = short_timeouts(d.path());
    let o = run_within(&mut ddless_to(&t, d.path(), &cfg), Duration::from_secs(90));
    refused(&o, &["invalid Desired Data Transfer Length: zero"]);
}

#[test]
fn a_command_window_that_never_opens_is_given_up_on() {
    let d = tempfile::tempdir().unwrap();
    let t = HostileTarget::start(Misbehaviour::WindowNeverOpens);
    let cfg = short_timeouts(d.path());
    let o = run_within(&mut ddless_from(&t, d.path(), Some(&cfg)), Duration::from_secs(90));
    let err = stderr(&o);
    assert!(
        err.contains("kept its command window closed for 8 s") || err.contains("no answer from the target"),
        "{err}"
    );
    refused(&o, &["max_reconnects"]);
    nothing_created(d.path());
}

#[test]
fn impossible_capacities_are_refused_and_nothing_is_created() {
    for (last_lba, block_size) in [(u64::MAX, 512), (u64::MAX - 1, 512), (1 << 54, 512), (1 << 52, 4096)] {
        let d = tempfile::tempdir().unwrap();
        let t = HostileTarget::start(Misbehaviour::Capacity { last_lba, block_size });
        let o = run_within(&mut ddless_from(&t, d.path(), None), Duration::from_secs(60));
        refused(&o, &["impossible capacity", "more than 2^63 bytes"]);
        nothing_created(d.path());
    }
}

#[test]
fn an_initiator_name_file_that_is_a_device_is_refused_not_read_forever() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("santools.toml");
    std::fs::write(&cfg, "[initiator]\nname_file = \"/dev/zero\"\n").unwrap();
    let o = run_within(
        tool("ddless")
            .arg("--config")
            .arg(&cfg)
            .args(["-s", "iscsi://127.0.0.1:1/iqn.2024-01.x:t/1", "-c"])
            .arg(d.path().join("sums")),
        Duration::from_secs(30),
    );
    refused(&o, &["initiator name file /dev/zero is not a regular file"]);
    nothing_created(d.path());
}

/// Two ddless runs writing one LUN, the second through another spelling
/// of the node's address (`[::ffff:IP]`): the per-host LUN lock must still
/// keep it out, or both checksum files would vouch for different data.
#[test]
fn the_lun_lock_holds_however_the_node_address_is_spelled() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let disk = backing_file(d.path(), "disk.img", 16 << 20, 1);
    tgt.target(1, "iqn.2024-01.test:locked", &[ME]);
    tgt.lun(1, 1, &disk, 512);
    let src1 = d.path().join("src1");
    let src2 = d.path().join("src2");
    let mut rng = Rng(7);
    write(&src1, &rng.bytes(16 << 20));
    write(&src2, &rng.bytes(16 << 20));
    let url1 = tgt.lun_url("iqn.2024-01.test:locked", 1);
    let port = tgt.addr().rsplit(':').next().unwrap().to_string();
    let url2 = format!("iscsi://[::ffff:{}]:{port}/iqn.2024-01.test:locked/1", tgt.ip);
    // The first run is slow (1 MB/s): its lock is held for seconds.
    let mut first = tool("ddless")
        .args(["--initiator-name", ME, "-q", "-r", "1", "-w", "1", "-s"])
        .arg(&src1)
        .args(["-t", &url1, "-c"])
        .arg(d.path().join("sums1"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.path().join("first.err")).unwrap())
        .spawn()
        .unwrap();
    let first_err = || std::fs::read_to_string(d.path().join("first.err")).unwrap_or_default();
    // The checksum file is created once the LUN lock is held.
    let t0 = Instant::now();
    while !d.path().join("sums1").exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "the first run never started");
        assert!(first.try_wait().unwrap().is_none(), "the first run ended early: {}", first_err());
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = run_within(
        tool("ddless")
            .args(["--initiator-name", ME, "-s"])
            .arg(&src2)
            .args(["-t", &url2, "-c"])
            .arg(d.path().join("sums2")),
        Duration::from_secs(60),
    );
    let still_running = first.try_wait().unwrap().is_none();
    let _ = first.kill();
    let _ = first.wait();
    assert!(still_running, "the first run ended before the second tried: no overlap to test (machine too slow?)");
    refused(&o, &["is in use by another ddless run"]);
    // Nothing of the refused run's checksum file: not the file, its stats,
    // nor the `.lock` beside it (the LUN's lock is taken before that one).
    for debris in ["sums2", "sums2.stats", "sums2.lock"] {
        assert!(!d.path().join(debris).exists(), "the refused run created {debris}");
    }
}

/// `iscsi-ls URL/IQN/LUN` for a LUN the target does not have: exit 1 and
/// the reason, not an empty listing with exit 0.
#[test]
fn iscsi_ls_of_a_missing_lun_says_so() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let disk = backing_file(d.path(), "disk.img", 1 << 20, 3);
    tgt.target(1, "iqn.2024-01.test:listed", &[ME]);
    tgt.lun(1, 1, &disk, 512);
    let o = run_within(
        tool("iscsi-ls").args(["-i", ME, &tgt.lun_url("iqn.2024-01.test:listed", 5)]),
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(1), "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("no LUN 5"), "{}", stdout(&o));
    let o = run_within(
        tool("iscsi-ls").args(["-i", ME, &tgt.lun_url("iqn.2024-01.test:listed", 1)]),
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(0), "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("LUN 1: DIRECT_ACCESS, 1048576 bytes"), "{}", stdout(&o));
}

#[test]
fn iscsi_ls_examines_a_bounded_number_of_announced_targets_and_addresses() {
    // A portal announcing 40 targets with 30 dead addresses each: iscsi-ls
    // logs in to the first --max-targets only, tries a few addresses of
    // each, and names the rest as not examined.
    let t = HostileTarget::start(Misbehaviour::ManyTargets { count: 40, addresses: 30 });
    let started = Instant::now();
    let o = run_within(
        tool("iscsi-ls").args(["-i", ME, "--max-targets", "3", "--json", &t.portal_url()]),
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(1), "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON report");
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 40, "every announced target is named");
    let skipped = targets.iter().filter(|t| t["error"].as_str().is_some_and(|e| e.contains("not examined"))).count();
    assert_eq!(skipped, 37, "{report:#}");
    // One discovery session, then one login per examined target (at the
    // portal's own address, after the dead announced ones were refused).
    assert_eq!(t.connections.load(std::sync::atomic::Ordering::Relaxed), 1 + 3);
    assert!(started.elapsed() < Duration::from_secs(30));
}
