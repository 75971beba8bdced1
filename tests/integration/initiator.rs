//! The native initiator against real tgtd: reads and writes compared with
//! the backing file, block sizes 512 and 4096, odd LUN sizes, redirects
//! through the santools portal, ACL and CHAP refusals in words, mutual
//! CHAP, NOP-In pings, digests, a connection killed and a target stopped
//! mid-read, and `iscsi-ls` against libiscsi's.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use santools::initiator::{
    Auth, ChapCredentials, DigestPref, InitiatorError, InitiatorOptions, IscsiUrl, IscsiVolume, Secret,
};

use crate::helpers::*;
use crate::initiator_lab::*;

const ME: &str = "iqn.2024-01.test:initiator-a";
const OTHER: &str = "iqn.2024-01.test:initiator-b";
const T1: &str = "iqn.2024-01.test:disk1";

fn opts() -> InitiatorOptions {
    let mut o = InitiatorOptions::new(ME);
    o.reconnect_timeout = Duration::from_secs(20);
    o
}

fn open(url: &str, o: &InitiatorOptions) -> Result<IscsiVolume, InitiatorError> {
    IscsiVolume::open(&IscsiUrl::parse_lun(url).unwrap(), o)
}

/// What tgtd exposes of a backing file: whole blocks.
fn exposed(file: &[u8], bs: usize) -> &[u8] {
    &file[..file.len() / bs * bs]
}

fn read_all(v: &IscsiVolume, chunk: usize) -> Vec<u8> {
    let mut out = vec![0u8; v.size() as usize];
    for (i, c) in out.chunks_mut(chunk).enumerate() {
        v.read_at(c, (i * chunk) as u64).unwrap();
    }
    out
}

#[test]
fn reads_luns_of_512_and_4096_byte_blocks_and_odd_sizes_identical_to_the_backing_files() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    // 16 MiB + 3 blocks + a ragged tail tgtd does not expose; and a
    // 4096-byte-block LUN whose size is no multiple of 1 MiB.
    let f1 = backing_file(d.path(), "a.img", (16 << 20) + 3 * 512 + 100, 1);
    let f2 = backing_file(d.path(), "b.img", (9 << 20) + 7 * 4096 + 1000, 2);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f1, 512);
    tgt.lun(1, 2, &f2, 4096);
    for (lun, file, bs) in [(1u16, &f1, 512usize), (2, &f2, 4096)] {
        let want = read(file);
        let want = exposed(&want, bs);
        for qd in [1usize, 16] {
            let mut o = opts();
            o.queue_depth = qd;
            o.max_transfer = 256 << 10;
            let v = open(&tgt.lun_url(T1, lun), &o).unwrap();
            assert_eq!((v.size() as usize, v.block_size() as usize), (want.len(), bs));
            // Chunks that are no multiple of the transfer size, and one read of everything.
            let got = read_all(&v, (3 << 20) + bs);
            assert!(got == want, "LUN {lun} (qd {qd}) differs from its backing file");
            let mut whole = vec![0u8; want.len()];
            v.read_at(&mut whole, 0).unwrap();
            assert!(whole == want);
            // Unaligned reads go through a bounce buffer.
            let mut odd = vec![0u8; 1000];
            v.read_at(&mut odd, 4097).unwrap();
            assert_eq!(&odd[..], &want[4097..5097]);
            let mut tail = vec![0u8; 10];
            v.read_at(&mut tail, want.len() as u64 - 10).unwrap();
            assert_eq!(&tail[..], &want[want.len() - 10..]);
            let e = v.read_at(&mut tail, want.len() as u64 - 5).unwrap_err().to_string();
            assert!(e.contains("past the end of the LUN"), "{e}");
        }
    }
}

/// `read_each` hands every command's bytes over once, at its offset, on
/// the session's thread; a panicking consumer ends the session and the
/// call fails instead of waiting for ever (helper-15's finding).
#[test]
fn read_each_sees_every_byte_once_and_survives_a_panicking_consumer() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let f = backing_file(d.path(), "a.img", (4 << 20) + 5 * 512, 9);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    let mut o = opts();
    o.max_transfer = 64 << 10;
    let v = open(&tgt.lun_url(T1, 1), &o).unwrap();
    let mut seen = vec![0u8; v.size() as usize];
    let mut calls = 0;
    v.read_each(0, v.size(), |off, bytes| {
        calls += 1;
        seen[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
    })
    .unwrap();
    assert_eq!(calls, (v.size() as usize).div_ceil(64 << 10));
    assert!(seen == exposed(&read(&f), 512), "read_each differs from the backing file");
    assert!(v.read_each(512, 100, |_, _| ()).is_err(), "a range that is no whole blocks");
    assert!(v.read_each(0, v.size() + 512, |_, _| ()).is_err(), "a range past the end");

    let (tx, rx) = std::sync::mpsc::channel();
    let v = Arc::new(v);
    let v2 = Arc::clone(&v);
    std::thread::spawn(move || {
        let mut n = 0;
        let r = v2.read_each(0, v2.size(), |_, _| {
            n += 1;
            if n == 3 {
                panic!("a consumer that fails");
            }
        });
        let _ = tx.send(r.map_err(|e| e.to_string()));
    });
    let r = rx.recv_timeout(Duration::from_secs(30)).expect("read_each waited for ever after its consumer panicked");
    assert!(r.is_err(), "{r:?}");
    // The session is gone: later calls fail at once rather than hang.
    assert!(v.read_at(&mut [0u8; 512], 0).is_err());
}

#[test]
fn writes_land_in_the_backing_file_and_flush_is_synchronize_cache() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let f = backing_file(d.path(), "w.img", 8 << 20, 3);
    let f4 = backing_file(d.path(), "w4.img", 4 << 20, 4);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    tgt.lun(1, 2, &f4, 4096);
    for (lun, file, bs) in [(1u16, &f, 512usize), (2, &f4, 4096)] {
        let mut want = read(file);
        let v = open(&tgt.lun_url(T1, lun), &opts()).unwrap();
        let mut rng = Rng(lun as u64 + 10);
        // Small, large (several commands, R2Ts beyond the first burst), and the last block.
        for (off, len) in [(0usize, bs), (bs * 3, 300 << 10), (1 << 20, 2 << 20), (want.len() - bs, bs)] {
            let data = rng.bytes(len);
            v.write_at(&data, off as u64).unwrap();
            want[off..off + len].copy_from_slice(&data);
        }
        v.flush().unwrap();
        assert!(read(file) == want, "LUN {lun}: backing file differs after the writes");
        assert!(read_all(&v, 1 << 20) == want);
        let e = v.write_at(&[0u8; 100], 0).unwrap_err().to_string();
        assert!(e.contains("whole") && e.contains("blocks"), "{e}");
        let e = v.write_at(&vec![0u8; bs], want.len() as u64).unwrap_err().to_string();
        assert!(e.contains("past the end"), "{e}");
    }
}

#[test]
fn header_and_data_digests_protect_reads_and_writes() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let f = backing_file(d.path(), "d.img", 6 << 20, 5);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    let mut o = opts();
    o.header_digest = DigestPref::Crc32c;
    // tgt offers digests only where the target is configured for them.
    let e = open(&tgt.lun_url(T1, 1), &o).err().expect("digests required, target without").to_string();
    assert!(e.contains("HeaderDigest=None") && e.contains("CRC32C"), "{e}");
    for key in ["HeaderDigest", "DataDigest"] {
        tgt.tgtadm(&["--op", "update", "--mode", "target", "--tid", "1", "--name", key, "--value", "CRC32C,None"]);
    }
    o.data_digest = DigestPref::Crc32c;
    let v = open(&tgt.lun_url(T1, 1), &o).unwrap();
    let p = v.session_info().params;
    assert!(p.header_digest && p.data_digest, "{p:?}");
    let data = Rng(6).bytes(1 << 20);
    v.write_at(&data, 512 * 7).unwrap();
    v.flush().unwrap();
    let mut want = read(&f);
    assert_eq!(&want[512 * 7..512 * 7 + data.len()], &data[..]);
    want.truncate(want.len());
    assert!(read_all(&v, 1 << 20) == want);
}

#[test]
fn acl_refusal_is_reported_in_words() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let f = backing_file(d.path(), "acl.img", 1 << 20, 7);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    let mut o = opts();
    o.initiator_name = OTHER.into();
    let e = open(&tgt.lun_url(T1, 1), &o).err().expect("the ACL must refuse initiator-b");
    let msg = e.to_string();
    // tgt hides a target from initiators its ACL refuses (0x0203); other
    // targets say 0x0202. Either way the message names the initiator.
    assert!(
        msg.contains("not found (0x0203): the portal serves no target iqn.2024-01.test:disk1 to initiator iqn.2024-01.test:initiator-b (no such target, or its ACL hides it from this initiator)")
            || msg.contains("authorization failure (0x0202): the target's ACL does not admit initiator iqn.2024-01.test:initiator-b"),
        "{msg}"
    );
    assert!(msg.contains(T1), "{msg}");
    let e = open(&format!("iscsi://{}/iqn.2024-01.test:nosuch/1", tgt.addr()), &opts()).err().unwrap().to_string();
    assert!(e.contains("(0x0203)"), "{e}");
    let e = open(&tgt.lun_url(T1, 9), &opts()).err().unwrap().to_string();
    assert!(e.contains("has no LUN 9"), "{e}");
    let e = open(&tgt.lun_url(T1, 0), &opts()).err().unwrap().to_string();
    assert!(e.contains("STORAGE_ARRAY_CONTROLLER") && e.contains("not a disk"), "{e}");
}

fn chap(user: &str, secret: &str) -> Option<ChapCredentials> {
    Some(ChapCredentials { user: user.into(), secret: Secret::new(secret) })
}

#[test]
fn chap_one_way_and_mutual_succeed_and_fail_clearly() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let f = backing_file(d.path(), "c.img", 1 << 20, 8);
    let f2 = backing_file(d.path(), "c2.img", 1 << 20, 9);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    tgt.account(1, "alice", "alice-secret-12", false);
    let t2 = "iqn.2024-01.test:mutual";
    tgt.target(2, t2, &[ME]);
    tgt.lun(2, 1, &f2, 512);
    tgt.account(2, "bob", "bob-secret-1234", false);
    tgt.account(2, "target2", "target-secret-99", true);

    // One-way: right secret works, wrong one and none are refused in words.
    let mut o = opts();
    o.auth = Auth { chap: chap("alice", "alice-secret-12"), mutual: None };
    let v = open(&tgt.lun_url(T1, 1), &o).unwrap();
    assert!(read_all(&v, 1 << 20) == read(&f));
    drop(v);
    o.auth.chap = chap("alice", "wrong-secret-000");
    let e = open(&tgt.lun_url(T1, 1), &o).err().unwrap().to_string();
    assert!(e.contains("authentication failure (0x0201)") && e.contains("user alice"), "{e}");
    o.auth.chap = None;
    let e = open(&tgt.lun_url(T1, 1), &o).err().unwrap().to_string();
    assert!(e.contains("requires CHAP") || e.contains("(0x0201)"), "{e}");

    // Mutual: the target proves itself with its own secret.
    o.auth = Auth { chap: chap("bob", "bob-secret-1234"), mutual: chap("target2", "target-secret-99") };
    let v = open(&format!("iscsi://{}/{t2}/1", tgt.addr()), &o).unwrap();
    assert!(read_all(&v, 1 << 20) == read(&f2));
    drop(v);
    o.auth.mutual = chap("target2", "not-the-target-secret");
    let e = open(&format!("iscsi://{}/{t2}/1", tgt.addr()), &o).err().unwrap().to_string();
    assert!(e.contains("mutual CHAP") && e.contains("response is wrong"), "{e}");
    o.auth.mutual = chap("impostor", "target-secret-99");
    let e = open(&format!("iscsi://{}/{t2}/1", tgt.addr()), &o).err().unwrap().to_string();
    assert!(e.contains("named itself"), "{e}");
    // A target without CHAP cannot satisfy a mutual-CHAP initiator.
    let t3 = "iqn.2024-01.test:open";
    tgt.target(3, t3, &[ME]);
    tgt.lun(3, 1, &f2, 512);
    o.auth.mutual = chap("target2", "target-secret-99");
    let e = open(&format!("iscsi://{}/{t3}/1", tgt.addr()), &o).err().unwrap().to_string();
    assert!(e.contains("does not do CHAP with this initiator") || e.contains("skipped CHAP"), "{e}");
    // A right initiator secret, but the target has no account to prove itself with.
    o.auth = Auth { chap: chap("alice", "alice-secret-12"), mutual: chap("target2", "target-secret-99") };
    let e = open(&tgt.lun_url(T1, 1), &o).err().unwrap().to_string();
    assert!(e.contains("(0x0201)") && e.contains("cannot prove itself as target2"), "{e}");

    // iscsi-ls of the whole portal logs in to each target with its own
    // credentials ([initiator.targets."IQN"]), as ddless does.
    let cfg = d.path().join("santools.toml");
    std::fs::write(
        &cfg,
        format!(
            "[initiator]\nname = \"{ME}\"\nchap_username = \"alice\"\nchap_password = \"alice-secret-12\"\n\
             [initiator.targets.\"{t2}\"]\nchap_username = \"bob\"\nchap_password = \"bob-secret-1234\"\n\
             target_chap_username = \"target2\"\ntarget_chap_password = \"target-secret-99\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = ok(tool("iscsi-ls").arg("--config").arg(&cfg).arg(tgt.portal_url()));
    for t in [T1, t2, t3] {
        assert!(out.contains(&format!("Target: {t}")), "{out}");
    }
    assert_eq!(out.matches("LUN 1: DIRECT_ACCESS").count(), 3, "{out}");
    // Target credentials for every target: discovery (which tgt does not
    // authenticate) still lists the portal; logins still require mutual CHAP.
    std::fs::write(
        &cfg,
        format!(
            "[initiator]\nname = \"{ME}\"\nchap_username = \"bob\"\nchap_password = \"bob-secret-1234\"\n\
             target_chap_username = \"target2\"\ntarget_chap_password = \"target-secret-99\"\n"
        ),
    )
    .unwrap();
    let o = run(tool("iscsi-ls").arg("--config").arg(&cfg).arg(tgt.portal_url()));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.matches("Target: ").count(), 3, "{out}");
    assert_eq!(out.matches("LUN 1: DIRECT_ACCESS").count(), 1, "only the mutual target admits us: {out}");
}

#[test]
fn target_nop_in_pings_are_answered() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    // tgtd pings every second and drops a connection after 3 unanswered pings.
    let tgt = Tgt::start(d.path(), "nop_interval=1,nop_count=3");
    let f = backing_file(d.path(), "n.img", 1 << 20, 11);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    let v = open(&tgt.lun_url(T1, 1), &opts()).unwrap();
    let t = Instant::now();
    while v.session_info().pings_answered < 5 && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(v.session_info().pings_answered >= 5, "{:?}", v.session_info());
    assert!(read_all(&v, 1 << 20) == read(&f));
    assert_eq!(v.session_info().reconnects, 0, "answered pings keep the connection");
}

/// Reads the whole LUN in 1 MiB steps on a thread, publishing progress.
fn background_read(v: Arc<IscsiVolume>, progress: Arc<AtomicU64>) -> std::thread::JoinHandle<Result<Vec<u8>, String>> {
    std::thread::spawn(move || {
        let mut out = vec![0u8; v.size() as usize];
        for (i, c) in out.chunks_mut(1 << 20).enumerate() {
            v.read_at(c, (i << 20) as u64).map_err(|e| e.to_string())?;
            progress.store((i as u64 + 1) << 20, Ordering::Relaxed);
        }
        Ok(out)
    })
}

fn wait_for(progress: &AtomicU64, at_least: u64) {
    let t = Instant::now();
    while progress.load(Ordering::Relaxed) < at_least && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_connection_killed_mid_read_is_re_established_and_the_result_is_identical() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let f = backing_file(d.path(), "k.img", 96 << 20, 12);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    let mut o = opts();
    o.queue_depth = 4;
    o.max_transfer = 64 << 10;
    let v = Arc::new(open(&tgt.lun_url(T1, 1), &o).unwrap());
    let progress = Arc::new(AtomicU64::new(0));
    let h = background_read(Arc::clone(&v), Arc::clone(&progress));
    let mut kills = 0;
    for at in [8u64 << 20, 40 << 20] {
        wait_for(&progress, at);
        if progress.load(Ordering::Relaxed) < 90 << 20 {
            kills += tgt.kill_connections(1);
        }
    }
    let got = h.join().unwrap().expect("the read must survive dropped connections");
    assert!(got == read(&f), "data differs after reconnects");
    assert!(kills >= 1, "no connection was killed (read too fast?)");
    assert!(v.session_info().reconnects >= 1, "{:?}", v.session_info());
}

#[test]
fn a_target_stopped_mid_read_ends_with_a_clear_error_and_a_rerun_is_identical() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut tgt = Tgt::start(d.path(), "");
    let f = backing_file(d.path(), "s.img", 64 << 20, 13);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    let mut o = opts();
    o.reconnect_timeout = Duration::from_secs(2);
    o.queue_depth = 2;
    o.max_transfer = 64 << 10;
    let v = Arc::new(open(&tgt.lun_url(T1, 1), &o).unwrap());
    let progress = Arc::new(AtomicU64::new(0));
    let h = background_read(Arc::clone(&v), Arc::clone(&progress));
    wait_for(&progress, 4 << 20);
    let t = Instant::now();
    tgt.stop();
    let r = h.join().unwrap();
    if progress.load(Ordering::Relaxed) < 64 << 20 {
        let e = r.expect_err("the read must fail once the target is gone");
        assert!(e.contains("lost") && e.contains("not re-established within 2 s"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(30), "gave up after {:?}", t.elapsed());
    }
    drop(v);
    // The target comes back: a rerun reads the same bytes.
    tgt.restart();
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    let v = open(&tgt.lun_url(T1, 1), &opts()).unwrap();
    assert!(read_all(&v, 4 << 20) == read(&f));
}

#[test]
fn writes_acknowledged_before_a_dropped_connection_are_replayed_or_flush_refuses() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let f = backing_file(d.path(), "j.img", 8 << 20, 14);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    let mut want = read(&f);
    let v = open(&tgt.lun_url(T1, 1), &opts()).unwrap();
    let data = Rng(15).bytes(2 << 20);
    v.write_at(&data, 1 << 20).unwrap();
    want[1 << 20..3 << 20].copy_from_slice(&data);
    assert!(tgt.kill_connections(1) >= 1);
    v.flush().expect("journaled writes are replayed after the reconnect, then synchronized");
    assert!(v.session_info().reconnects >= 1);
    assert!(read(&f) == want);
    drop(v);
    // With no room to keep them, a reconnect makes flush refuse to vouch.
    let mut o = opts();
    o.write_journal_limit = 64 << 10;
    let v = open(&tgt.lun_url(T1, 1), &o).unwrap();
    v.write_at(&Rng(16).bytes(1 << 20), 0).unwrap();
    assert!(tgt.kill_connections(1) >= 1);
    let e = v.flush().expect_err("unreplayable writes: flush must fail").to_string();
    assert!(e.contains("may have lost them"), "{e}");
}

#[test]
fn iscsi_ls_lists_what_libiscsi_lists() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let f1 = backing_file(d.path(), "l1.img", (5 << 20) + 512 * 3, 17);
    let f2 = backing_file(d.path(), "l2.img", 3 << 20, 18);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f1, 512);
    tgt.lun(1, 2, &f2, 4096);
    tgt.target(2, "iqn.2024-01.test:disk2", &[ME]);
    tgt.lun(2, 1, &f2, 512);
    tgt.target(3, "iqn.2024-01.test:hidden", &[OTHER]);
    let out = ok(tool("iscsi-ls").args(["-i", ME, &tgt.portal_url()]));
    let (code, theirs) = libiscsi_run("iscsi-ls", &["-s", "-i", ME, &tgt.portal_url()]);
    assert_eq!(code, Some(0), "{theirs}");
    // Same targets with the same LUNs and types (libiscsi lists targets in
    // reverse order; compare sorted).
    let mut ours = Vec::new();
    let mut current = String::new();
    for l in out.lines() {
        if let Some(t) = l.strip_prefix("Target: ") {
            current = t.to_string();
            ours.push(format!("{current} target"));
        } else if let Some(l) = l.trim().strip_prefix("LUN ") {
            ours.push(format!("{current} {}", l.split(',').next().unwrap().replace(": ", " ")));
        }
    }
    let mut their = Vec::new();
    for l in theirs.lines() {
        if let Some(t) = l.strip_prefix("Target:") {
            current = t.split(' ').next().unwrap().to_string();
            their.push(format!("{current} target"));
        } else if let Some(l) = l.strip_prefix("Lun:") {
            let mut w = l.split_whitespace();
            their.push(format!("{current} {} {}", w.next().unwrap(), w.next().unwrap().trim_start_matches("Type:")));
        }
    }
    ours.sort();
    their.sort();
    their.dedup();
    assert_eq!(ours, their, "ours:\n{out}\nlibiscsi:\n{theirs}");
    assert_eq!(ours.iter().filter(|l| l.ends_with(" target")).count(), 2);
    assert!(!out.contains("hidden"));
    // Sizes as iscsi-readcapacity16 reports them.
    for (lun, file, bs) in [(1, &f1, 512u64), (2, &f2, 4096)] {
        let (code, rc) = libiscsi_run("iscsi-readcapacity16", &["-i", ME, &tgt.lun_url(T1, lun)]);
        assert_eq!(code, Some(0), "{rc}");
        let size = std::fs::metadata(file).unwrap().len() / bs * bs;
        assert!(rc.contains(&format!("Total size:{size}")), "{rc}");
        assert!(out.contains(&format!("LUN {lun}: DIRECT_ACCESS, {size} bytes")), "{out}");
    }
    let json = ok(tool("iscsi-ls").args(["-i", ME, "--json", &tgt.portal_url()]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["targets"][0]["luns"][1]["size_bytes"],
        serde_json::json!(std::fs::metadata(&f1).unwrap().len() / 512 * 512)
    );
    // Targets only, and an initiator the ACLs hide everything from.
    let t = ok(tool("iscsi-ls").args(["-i", ME, "-t", &tgt.portal_url()]));
    assert!(t.contains("Target: iqn.2024-01.test:disk2") && !t.contains("LUN"), "{t}");
    let none = ok(tool("iscsi-ls").args(["-i", "iqn.2024-01.test:stranger", &tgt.portal_url()]));
    assert_eq!(none.trim(), "");
}

fn libiscsi_run(tool: &str, args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(tool).args(args).output().unwrap();
    let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    (o.status.code(), s)
}

#[test]
fn iscsi_ls_refuses_passwords_on_the_command_line_and_bad_urls() {
    let err = fails_with(
        tool("iscsi-ls").args(["-i", ME, "iscsi://alice%supersecret@127.0.0.1/iqn.2024-01.test:x/1"]),
        &["refused", "LIBISCSI_CHAP_PASSWORD", "alice%***@"],
    );
    assert!(!err.contains("supersecret"), "{err}");
    fails_with(tool("iscsi-ls").args(["-i", ME, "iscsi://fe80::1/x"]), &["IPv6 address goes in brackets"]);
    fails_with(tool("iscsi-ls").args(["-i", ME, "/dev/sda"]), &["not an iscsi:// URL"]);
    fails_with(tool("iscsi-ls").args(["-i", "not-a-name", "iscsi://127.0.0.1"]), &["not an iSCSI name"]);
    let o = run(tool("iscsi-ls").arg("--help"));
    assert!(stdout(&o).contains("Usage: iscsi-ls"));
}

// ---------- redirects: the santools portal, and stand-in portals ----------

/// A free loopback address with `port` unbound, as a TcpListener.
pub fn listener_on_free_address(port: u16) -> std::net::TcpListener {
    for i in 0..500u32 {
        let n = (std::process::id().wrapping_mul(31) + i * 97) % 60_000;
        let ip = format!("127.{}.{}.{}", 230 + n % 20, n / 20 % 250 + 1, n / 5000 % 200 + 10);
        if let Ok(l) = std::net::TcpListener::bind(format!("{ip}:{port}")) {
            return l;
        }
    }
    panic!("no free loopback address");
}

/// A stand-in portal: answers each login with `status` and
/// TargetAddress=`to`, after `delay`. Runs until the test ends.
fn redirector(l: std::net::TcpListener, to: String, delay: Duration, status: u16) {
    use santools::iscsi::login::{LoginRequest, LoginResponse, LoginStatus};
    use santools::iscsi::pdu::{decode, encode, DecodeLimits, Digests};
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let to = to.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let req = loop {
                    if let Ok(Some((p, _))) =
                        decode(&buf, &DecodeLimits { max_data_segment: 65536, digests: Digests::default() })
                    {
                        break LoginRequest::from_pdu(&p).unwrap();
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                std::thread::sleep(delay);
                let rsp =
                    LoginResponse::answering(&req, LoginStatus(status), format!("TargetAddress={to},1\0").into_bytes());
                let _ = s.write_all(&encode(&rsp.to_pdu(), Digests::default()));
                let _ = s.read(&mut chunk);
            });
        }
    });
}

#[test]
fn redirect_loops_and_long_chains_are_refused_and_delayed_logins_are_waited_for() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let f = backing_file(d.path(), "r.img", 2 << 20, 21);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    // A -> B -> A: a loop.
    let a = listener_on_free_address(3260);
    let b = listener_on_free_address(3260);
    let (aa, ba) = (a.local_addr().unwrap().to_string(), b.local_addr().unwrap().to_string());
    redirector(a, ba.clone(), Duration::ZERO, 0x0101);
    redirector(b, aa.clone(), Duration::ZERO, 0x0102);
    let e = open(&format!("iscsi://{aa}/{T1}/1"), &opts()).err().unwrap().to_string();
    assert_eq!(e, format!("login redirect loop: {aa} -> {ba} -> {aa}"));
    // A chain longer than max_redirects.
    let hops: Vec<std::net::TcpListener> = (0..4).map(|_| listener_on_free_address(3260)).collect();
    let addrs: Vec<String> = hops.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    for (i, l) in hops.into_iter().enumerate() {
        let next = addrs.get(i + 1).cloned().unwrap_or_else(|| tgt.addr());
        redirector(l, next, Duration::ZERO, 0x0101);
    }
    let mut o = opts();
    o.max_redirects = 3;
    let e = open(&format!("iscsi://{}/{T1}/1", addrs[0]), &o).err().unwrap().to_string();
    assert!(e.starts_with("more than 3 login redirects:"), "{e}");
    o.max_redirects = 4;
    let v = open(&format!("iscsi://{}/{T1}/1", addrs[0]), &o).unwrap();
    assert_eq!(v.session_info().portal, tgt.addr(), "the session lives where the chain ended");
    assert!(read_all(&v, 1 << 20) == read(&f));
    drop(v);
    // A portal holding the login (failover) for 2 s, then redirecting.
    let slow = listener_on_free_address(3260);
    let sa = slow.local_addr().unwrap().to_string();
    redirector(slow, tgt.addr(), Duration::from_secs(2), 0x0101);
    let t = Instant::now();
    let v = open(&format!("iscsi://{sa}/{T1}/1"), &opts()).unwrap();
    assert!(t.elapsed() >= Duration::from_secs(2));
    assert!(read_all(&v, 1 << 20) == read(&f));
    drop(v);
    let mut o = opts();
    o.login_timeout = Duration::from_secs(1);
    let e = open(&format!("iscsi://{sa}/{T1}/1"), &o).err().unwrap().to_string();
    assert!(e.contains("no login response within 1 s"), "{e}");
    // A redirect without an address, and a refusal class that is not retried.
    let bare = listener_on_free_address(3260);
    let ba2 = bare.local_addr().unwrap().to_string();
    redirector(bare, String::new(), Duration::ZERO, 0x0101);
    let e = open(&format!("iscsi://{ba2}/{T1}/1"), &opts()).err().unwrap().to_string();
    assert!(e.contains("invalid TargetAddress"), "{e}");
    let removed = listener_on_free_address(3260);
    let ra = removed.local_addr().unwrap().to_string();
    redirector(removed, tgt.addr(), Duration::ZERO, 0x0204);
    let e = open(&format!("iscsi://{ra}/{T1}/1"), &opts()).err().unwrap().to_string();
    assert!(e.contains("target removed (0x0204)"), "{e}");
}

/// The santools portal on a free loopback address, redirecting every
/// login to `tgt` (one node); its config and state live in `dir`.
pub fn santools_portal_for(tgt: &Tgt, dir: &std::path::Path) -> (crate::iscsi_lab::PortalProc, std::net::SocketAddr) {
    let l = listener_on_free_address(13270);
    let portal_addr = l.local_addr().unwrap();
    drop(l);
    let cfg = dir.join("santools.toml");
    std::fs::write(
        &cfg,
        format!(
            "[portal]\nlisten = [\"{portal_addr}\"]\nstate_time_sec = 2\nstate_directory = \"{dir}/state\"\npid_file = \"{dir}/portal.pid\"\nupstream_connect_timeout_ms = 500\nupstream_response_timeout_ms = 2000\n\n[[portal.discovery_portals]]\naddress = \"{pip}\"\nportal_group_name = \"pg_test\"\nportal_port = {PORT}\n[portal.discovery_portals.portal_addresses]\n\"node1\" = [\"{nip}\"]\n",
            dir = dir.display(),
            pip = portal_addr.ip(),
            nip = tgt.ip,
        ),
    )
    .unwrap();
    (crate::iscsi_lab::PortalProc::start(&cfg, &[]), portal_addr)
}

#[test]
fn login_reads_and_reconnects_through_the_santools_portal_redirect() {
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "");
    let f = backing_file(d.path(), "p.img", 48 << 20, 22);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    let (portal, portal_addr) = santools_portal_for(&tgt, d.path());
    let url = format!("iscsi://{portal_addr}/{T1}/1");
    let mut o = opts();
    o.queue_depth = 4;
    o.max_transfer = 64 << 10;
    let v = Arc::new(open(&url, &o).unwrap());
    assert_eq!(v.session_info().portal, tgt.addr(), "redirected to the node");
    assert!(portal.log().contains(&format!("redirect to {}", tgt.addr())), "{}", portal.log());
    // A connection killed mid-read: the reconnect asks the portal again.
    let progress = Arc::new(AtomicU64::new(0));
    let h = background_read(Arc::clone(&v), Arc::clone(&progress));
    wait_for(&progress, 8 << 20);
    let killed = tgt.kill_connections(1);
    let got = h.join().unwrap().expect("read through the portal survives a dropped connection");
    assert!(got == read(&f));
    if killed > 0 && progress.load(Ordering::Relaxed) < 48 << 20 {
        assert!(v.session_info().reconnects >= 1);
    }
    // iscsi-ls through the portal: discovery answers with the portal's address.
    let out = ok(tool("iscsi-ls").args(["-i", ME, &format!("iscsi://{portal_addr}")]));
    assert!(out.contains(&format!("Target: {T1}\n  Portal: {portal_addr},1\n")), "{out}");
    assert!(out.contains("LUN 1: DIRECT_ACCESS, 50331648 bytes"), "{out}");
}

// ---------- golden capture: real tgt PDUs through a recording proxy ----------

/// PDUs seen by the proxy: (target to initiator?, bytes).
type Recording = Arc<std::sync::Mutex<Vec<(bool, Vec<u8>)>>>;

/// Forwards one connection to `to`, recording each PDU per direction.
fn recording_proxy(l: std::net::TcpListener, to: String) -> Recording {
    use santools::iscsi::pdu::{decode, DecodeLimits, Digests};
    use std::io::{Read, Write};
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let l2 = Arc::clone(&log);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(client) = s else { return };
            let server = std::net::TcpStream::connect(&to).unwrap();
            for (mut from, mut into, t2i) in
                [(client.try_clone().unwrap(), server.try_clone().unwrap(), false), (server, client, true)]
            {
                let log = Arc::clone(&l2);
                std::thread::spawn(move || {
                    let mut pending = Vec::new();
                    let mut chunk = vec![0u8; 1 << 16];
                    let limits = DecodeLimits { max_data_segment: 1 << 24, digests: Digests::default() };
                    loop {
                        let n = match from.read(&mut chunk) {
                            Ok(0) | Err(_) => {
                                let _ = into.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                            Ok(n) => n,
                        };
                        if into.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                        pending.extend_from_slice(&chunk[..n]);
                        while let Ok(Some((_, used))) = decode(&pending, &limits) {
                            let pdu: Vec<u8> = pending.drain(..used).collect();
                            log.lock().unwrap().push((t2i, pdu));
                        }
                    }
                });
            }
        }
    });
    log
}

#[test]
fn pdus_captured_from_tgt_decode_as_their_types_and_round_trip() {
    use santools::initiator::{Command, DataBuf, Session};
    use santools::iscsi::bhs::Opcode;
    use santools::iscsi::data_pdu::{DataIn, DataOut, R2t};
    use santools::iscsi::nop::{NopIn, NopOut};
    use santools::iscsi::pdu::{decode, encode, DecodeLimits, Digests};
    use santools::iscsi::scsi_pdu::{ScsiCommand, ScsiResponse};
    use santools::scsi::sense::{Sense, SenseKey};
    if !tgt_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tgt = Tgt::start(d.path(), "nop_interval=1,nop_count=5");
    let f = backing_file(d.path(), "g.img", 1 << 20, 23);
    tgt.target(1, T1, &[ME]);
    tgt.lun(1, 1, &f, 512);
    let l = listener_on_free_address(3260);
    let proxy = l.local_addr().unwrap().to_string();
    let log = recording_proxy(l, tgt.addr());
    let v = open(&format!("iscsi://{proxy}/{T1}/1"), &opts()).unwrap();
    let mut b = vec![0u8; 300 << 10];
    v.read_at(&mut b, 0).unwrap();
    v.write_at(&b, 0).unwrap(); // past FirstBurstLength: R2T and Data-Out
    v.flush().unwrap();
    let t = Instant::now();
    while v.session_info().pings_answered < 1 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(v);
    // A READ past the end: CHECK CONDITION with sense data.
    let s = Session::open(&IscsiUrl::parse(&format!("iscsi://{proxy}")).unwrap().portal, T1, &opts()).unwrap();
    let mut buf = vec![0u8; 512];
    let mut o = s
        .execute_one(Command { lun: 1, cdb: santools::scsi::cdb::read_16(1 << 30, 1), data: DataBuf::In(&mut buf) })
        .unwrap();
    while o.sense.is_some_and(|s| s.is_unit_attention()) {
        o = s
            .execute_one(Command { lun: 1, cdb: santools::scsi::cdb::read_16(1 << 30, 1), data: DataBuf::In(&mut buf) })
            .unwrap();
    }
    assert_eq!(o.sense.map(|s| (s.key, s.asc)), Some((SenseKey::IllegalRequest, 0x21)), "{o:?}");
    drop(s);
    std::thread::sleep(Duration::from_millis(200));
    let pdus = log.lock().unwrap().clone();
    let limits = DecodeLimits { max_data_segment: 1 << 24, digests: Digests::default() };
    let mut seen = std::collections::BTreeSet::new();
    let capture = std::env::var_os("SANTOOLS_CAPTURE_DIR");
    for (i, (t2i, bytes)) in pdus.iter().enumerate() {
        let (p, _) = decode(bytes, &limits).unwrap().unwrap();
        assert_eq!(&encode(&p, Digests::default()), bytes, "PDU {i} re-encodes to other bytes");
        let op = p.bhs.opcode().unwrap();
        seen.insert(format!("{op:?}"));
        let ctx = format!("PDU {i} ({op:?})");
        match op {
            Opcode::ScsiCommand => assert_eq!(
                ScsiCommand::from_pdu(&ScsiCommand::from_pdu(&p).expect(&ctx).to_pdu()).unwrap(),
                ScsiCommand::from_pdu(&p).unwrap()
            ),
            Opcode::ScsiResponse => {
                let r = ScsiResponse::from_pdu(&p).expect(&ctx);
                assert_eq!(ScsiResponse::from_pdu(&r.to_pdu()).unwrap(), r);
                assert_eq!(encode(&r.to_pdu(), Digests::default()), *bytes, "{ctx}");
                if !r.sense.is_empty() {
                    seen.insert(format!("sense {}", Sense::parse(&r.sense).expect(&ctx).key.name()));
                }
            }
            Opcode::DataIn => {
                let r = DataIn::from_pdu(&p).expect(&ctx);
                assert_eq!(encode(&r.to_pdu(), Digests::default()), *bytes, "{ctx}");
            }
            Opcode::DataOut => {
                let r = DataOut::from_pdu(&p).expect(&ctx);
                assert_eq!(encode(&r.to_pdu(), Digests::default()), *bytes, "{ctx}");
            }
            Opcode::R2t => {
                let r = R2t::from_pdu(&p).expect(&ctx);
                assert_eq!(encode(&r.to_pdu(), Digests::default()), *bytes, "{ctx}");
            }
            Opcode::NopIn => {
                let r = NopIn::from_pdu(&p).expect(&ctx);
                assert_eq!(encode(&r.to_pdu(), Digests::default()), *bytes, "{ctx}");
            }
            Opcode::NopOut => {
                let r = NopOut::from_pdu(&p).expect(&ctx);
                assert_eq!(encode(&r.to_pdu(), Digests::default()), *bytes, "{ctx}");
            }
            _ => {}
        }
        if let Some(dir) = &capture {
            let name = format!("tgt-{i:04}-{}-op{:02x}.pdu", if *t2i { "t2i" } else { "i2t" }, p.bhs.opcode_raw());
            std::fs::write(std::path::Path::new(dir).join(name), bytes).unwrap();
        }
    }
    for want in [
        "ScsiCommand",
        "ScsiResponse",
        "DataIn",
        "DataOut",
        "R2t",
        "NopIn",
        "NopOut",
        "sense UNIT ATTENTION",
        "sense ILLEGAL REQUEST",
    ] {
        assert!(seen.contains(want), "no {want} captured: {seen:?}");
    }
}
