//! The portal against real components: tgtd nodes serving the same targets
//! with initiator-name ACLs, libiscsi's iscsi-ls / iscsi-inq /
//! iscsi-readcapacity16, and open-iscsi's iscsiadm (userspace discovery).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use santools::iscsi::login::{LoginRequest, LoginResponse, LoginStatus, Stage};
use santools::iscsi::pdu::{decode, encode, DecodeLimits, Digests, Pdu};
use santools::iscsi::text::{TextAssembler, TextParams};
use santools::iscsi::text_pdu::{TextRequest, TextResponse};
use santools::iscsi::RESERVED_TAG;

use crate::helpers::*;
use crate::iscsi_lab::*;

const INIT_A: &str = "iqn.2024-01.test:initiator-a";
const INIT_B: &str = "iqn.2024-01.test:initiator-b";
const T: Duration = Duration::from_secs(60);

/// Two nodes serving vol1 (A only) and vol2 (B only), a portal in front.
fn cluster(extra: &str) -> (Lab, PortalProc) {
    let lab = Lab::new(2);
    for n in &lab.nodes {
        n.add_target(1, "iqn.2024-01.test:vol1", &[INIT_A]);
        n.add_target(2, "iqn.2024-01.test:vol2", &[INIT_B]);
        n.add_target(3, "iqn.2024-01.test:retired", &[INIT_A]);
    }
    let cfg = lab.config(&format!("targets_removed = [\"iqn.2024-01.test:retired\"]\n{extra}"));
    let portal = PortalProc::start(&cfg, &[]);
    (lab, portal)
}

fn lun_url(lab: &Lab, target: &str) -> String {
    format!("{}/{target}/1", lab.portal_url())
}

#[test]
fn discovery_lists_what_each_initiator_may_see_at_the_portal_address() {
    if !iscsi_tools_present() {
        return;
    }
    let (lab, portal) = cluster("");
    let (code, out) = libiscsi("iscsi-ls", &["-i", INIT_A, &lab.portal_url()], T);
    assert_eq!(code, Some(0), "{out}");
    let want = format!("Target:iqn.2024-01.test:vol1 Portal:{}:{PORTAL_PORT},1", lab.portal_ip());
    assert_eq!(
        out.trim(),
        want,
        "initiator A sees exactly vol1, at the portal's address (not vol2, not the removed one)"
    );
    let (code, out) = libiscsi("iscsi-ls", &["-i", INIT_B, &lab.portal_url()], T);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.trim(), format!("Target:iqn.2024-01.test:vol2 Portal:{}:{PORTAL_PORT},1", lab.portal_ip()));
    let (_, out) = libiscsi("iscsi-ls", &["-i", "iqn.2024-01.test:stranger", &lab.portal_url()], T);
    assert_eq!(out.trim(), "", "an initiator no ACL names sees nothing");
    let log = portal.log();
    for l in [
        "initiator iqn.2024-01.test:initiator-a session Discovery",
        "initiator request SendTargets=All",
        "portal response TargetName=iqn.2024-01.test:vol1",
        &format!("portal response TargetAddress={}:{PORTAL_PORT},1", lab.portal_ip()),
        "disconnected",
    ] {
        assert!(log.contains(l), "access log lacks {l:?}:\n{log}");
    }
    assert!(log.contains(&format!("connect to {}", lab.portal_ip())));
}

#[test]
fn logins_reach_the_lun_and_alternate_between_nodes() {
    if !iscsi_tools_present() {
        return;
    }
    let (lab, portal) = cluster("");
    for _ in 0..4 {
        let (code, out) = libiscsi("iscsi-inq", &["-i", INIT_A, &lun_url(&lab, "iqn.2024-01.test:vol1")], T);
        assert_eq!(code, Some(0), "{out}\n{}", portal.log());
        assert!(out.contains("DIRECT_ACCESS"), "{out}");
    }
    let (code, out) = libiscsi("iscsi-readcapacity16", &["-i", INIT_A, &lun_url(&lab, "iqn.2024-01.test:vol1")], T);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Total size:16777216"), "{out}");
    let r = portal.redirects();
    assert_eq!(r.len(), 5, "{}", portal.log());
    let n1 = format!("{}:{NODE_PORT},1", lab.nodes[0].ip);
    let n2 = format!("{}:{NODE_PORT},1", lab.nodes[1].ip);
    for w in r.windows(2) {
        assert_ne!(w[0], w[1], "consecutive logins went to the same portal: {r:?}");
        assert!([&n1, &n2].contains(&&w[0]), "{r:?}");
    }
    // Another initiator's rotation is its own.
    let (code, out) = libiscsi("iscsi-inq", &["-i", INIT_B, &lun_url(&lab, "iqn.2024-01.test:vol2")], T);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(portal.redirects().last().unwrap(), &n1, "a new (initiator, target) starts at the first portal");
}

#[test]
fn rotation_survives_a_restart() {
    if !iscsi_tools_present() {
        return;
    }
    let (lab, mut portal) = cluster("");
    let url = lun_url(&lab, "iqn.2024-01.test:vol1");
    assert_eq!(libiscsi("iscsi-inq", &["-i", INIT_A, &url], T).0, Some(0));
    let first = portal.redirects();
    assert!(portal.stop().unwrap().success(), "{}", portal.log());
    let cfg = lab.dir.path().join("santools.toml");
    let portal = PortalProc::start(&cfg, &[]);
    assert_eq!(libiscsi("iscsi-inq", &["-i", INIT_A, &url], T).0, Some(0));
    let second = portal.redirects();
    assert_eq!((first.len(), second.len()), (1, 1), "{}", portal.log());
    assert_ne!(first[0], second[0], "a restart must not reset the rotation");
}

#[test]
fn kill_9_leaves_readable_state_and_the_rotation_continues() {
    if !iscsi_tools_present() {
        return;
    }
    let (lab, portal) = cluster("");
    let url = lun_url(&lab, "iqn.2024-01.test:vol1");
    assert_eq!(libiscsi("iscsi-inq", &["-i", INIT_A, &url], T).0, Some(0));
    let first = portal.redirects();
    // Past one flush interval the step is on disk; then load, then kill -9
    // while logins are being served.
    std::thread::sleep(Duration::from_millis(600));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let url = lun_url(&lab, "iqn.2024-01.test:vol2");
            std::thread::spawn(move || libiscsi("iscsi-inq", &["-i", INIT_B, &url], T))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    portal.signal(libc::SIGKILL);
    drop(portal);
    for l in load {
        let _ = l.join();
    }
    // Every state file left behind is whole.
    let mut files = 0;
    for portal_dir in std::fs::read_dir(lab.dir.path().join("state")).unwrap() {
        for dir in std::fs::read_dir(portal_dir.unwrap().path()).unwrap() {
            for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
                let p = f.unwrap().path();
                if p.extension().is_some_and(|e| e == "json") {
                    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap())
                        .unwrap_or_else(|e| panic!("{} is not whole after kill -9: {e}", p.display()));
                    assert!(v.get("last_portal_index").is_some(), "{v}");
                    files += 1;
                }
            }
        }
    }
    assert!(files >= 1);
    let portal = PortalProc::start(&lab.dir.path().join("santools.toml"), &[]);
    assert_eq!(libiscsi("iscsi-inq", &["-i", INIT_A, &url], T).0, Some(0), "{}", portal.log());
    assert_ne!(portal.redirects(), first, "the flushed step must survive kill -9");
}

#[test]
fn with_a_node_down_logins_go_to_the_survivor() {
    if !iscsi_tools_present() {
        return;
    }
    let (mut lab, portal) = cluster("");
    let (code, _) = libiscsi("iscsi-inq", &["-i", INIT_A, &lun_url(&lab, "iqn.2024-01.test:vol1")], T);
    assert_eq!(code, Some(0));
    lab.nodes[0].stop();
    std::thread::sleep(Duration::from_millis(2100)); // state_time_sec = 2
    let survivor = format!("{}:{NODE_PORT},1", lab.nodes[1].ip);
    for _ in 0..3 {
        let t = Instant::now();
        let (code, out) = libiscsi("iscsi-inq", &["-i", INIT_A, &lun_url(&lab, "iqn.2024-01.test:vol1")], T);
        assert_eq!(code, Some(0), "{out}\n{}", portal.log());
        assert!(t.elapsed() < Duration::from_secs(5), "a dead node must cost at most the upstream timeouts");
        assert_eq!(portal.redirects().last().unwrap(), &survivor);
    }
    // Discovery still answers from the survivor.
    let (code, out) = libiscsi("iscsi-ls", &["-i", INIT_A, &lab.portal_url()], T);
    assert_eq!(code, Some(0));
    assert!(out.contains("iqn.2024-01.test:vol1"), "{out}");
}

#[test]
fn a_removed_target_is_refused() {
    if !iscsi_tools_present() {
        return;
    }
    let (lab, portal) = cluster("");
    let (code, out) = libiscsi("iscsi-inq", &["-i", INIT_A, &lun_url(&lab, "iqn.2024-01.test:retired")], T);
    assert_ne!(code, Some(0));
    assert!(out.contains("Target removed"), "libiscsi should report the 0x0204 status: {out}");
    assert!(portal.log().contains("iqn.2024-01.test:retired is removed, refused (0x0204)"), "{}", portal.log());
}

#[test]
fn a_target_missing_everywhere_makes_the_client_wait_then_follow() {
    if !iscsi_tools_present() {
        return;
    }
    let (lab, portal) = cluster("failover_wait_sec = 20\nfailover_rescan_sec = 1");
    let url = lun_url(&lab, "iqn.2024-01.test:late");
    let t = Instant::now();
    let waiter = std::thread::spawn(move || libiscsi("iscsi-inq", &["-i", INIT_A, &url], T));
    // The volume group "fails over": the target appears on node 2 after 3 s.
    std::thread::sleep(Duration::from_secs(3));
    lab.nodes[1].add_target(4, "iqn.2024-01.test:late", &[INIT_A]);
    let (code, out) = waiter.join().unwrap();
    assert_eq!(code, Some(0), "{out}\n{}", portal.log());
    assert!(t.elapsed() >= Duration::from_secs(3));
    let log = portal.log();
    assert!(log.contains("iqn.2024-01.test:late found on no node, holding the login"), "{log}");
    assert_eq!(portal.redirects().last().unwrap(), &format!("{}:{NODE_PORT},1", lab.nodes[1].ip));
}

#[test]
fn a_target_missing_for_the_whole_wait_is_service_unavailable() {
    if !iscsi_tools_present() {
        return;
    }
    let (lab, portal) = cluster("failover_wait_sec = 3\nfailover_rescan_sec = 1");
    let t = Instant::now();
    let (code, out) = libiscsi("iscsi-inq", &["-i", INIT_A, &lun_url(&lab, "iqn.2024-01.test:never")], T);
    assert_ne!(code, Some(0), "{out}");
    assert!(t.elapsed() >= Duration::from_secs(3) && t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert!(portal.log().contains("service unavailable (0x0301)"), "{}", portal.log());
}

#[test]
fn open_iscsi_discovery_through_the_portal() {
    if !iscsi_tools_present() {
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/iscsiadm-userspace.sh");
    let usable = which("iscsiadm").is_some() && which("unshare").is_some() && is_root() && script.exists();
    if !real_component(
        "open-iscsi iscsiadm (userspace discovery)",
        usable,
        "needs open-iscsi, root, unshare and ../shared/tools/iscsiadm-userspace.sh",
    ) {
        return;
    }
    let (lab, _portal) = cluster("");
    let o = iscsiadm_userspace(
        &script,
        &["-m", "discovery", "-t", "st", "-p", &format!("{}:{PORTAL_PORT}", lab.portal_ip()), "-I", "fakeiface"],
        INIT_B,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out.trim(), format!("{}:{PORTAL_PORT},1 iqn.2024-01.test:vol2", lab.portal_ip()));
}

#[test]
fn open_iscsi_follows_a_long_answer_split_over_text_responses() {
    if !iscsi_tools_present() {
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/iscsiadm-userspace.sh");
    if !real_component(
        "open-iscsi iscsiadm (userspace discovery)",
        which("iscsiadm").is_some() && is_root() && script.exists(),
        "needs open-iscsi and root",
    ) {
        return;
    }
    // 420 long target names: ~50 KB of answer, more than the 32 KiB that
    // iscsiadm-userspace.sh declares as MaxRecvDataSegmentLength.
    let lab = Lab::new(1);
    let names: Vec<String> =
        (0..420).map(|i| format!("iqn.2024-01.test:a-rather-long-target-name-for-splitting-{i:04}")).collect();
    for (i, n) in names.iter().enumerate() {
        lab.nodes[0].tgtadm(&["--op", "new", "--mode", "target", "--tid", &(i + 1).to_string(), "-T", n]);
        lab.nodes[0].tgtadm(&["--op", "bind", "--mode", "target", "--tid", &(i + 1).to_string(), "-Q", INIT_A]);
    }
    let _portal = PortalProc::start(&lab.config(""), &[]);
    let o = iscsiadm_userspace(
        &script,
        &["-m", "discovery", "-t", "st", "-p", &format!("{}:{PORTAL_PORT}", lab.portal_ip()), "-I", "fakeiface"],
        INIT_A,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: Vec<&str> = out.lines().filter_map(|l| l.split(' ').nth(1)).collect();
    assert_eq!(got.len(), names.len(), "{out}");
    // Our own client with a 512-byte limit sees the continuation PDUs.
    let (pdus, text) = raw_send_targets(&format!("{}:{PORTAL_PORT}", lab.portal_ip()), INIT_A, 512, Digests::default());
    assert!(pdus > 50, "only {pdus} text responses for ~50 KB at 512 bytes each");
    assert_eq!(text.pairs().iter().filter(|(k, _)| k == "TargetName").count(), names.len());
}

// ---------- a raw client, for digests, continuation and garbage ----------

fn read_pdu(s: &mut TcpStream, limits: &DecodeLimits) -> Pdu {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((p, n)) = decode(&buf, limits).expect("valid PDU from the portal") {
            assert_eq!(n, buf.len(), "no pipelining expected");
            return p;
        }
        let n = s.read(&mut chunk).expect("reading from the portal");
        assert!(n > 0, "portal closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Discovery login + SendTargets=All with our codec; returns the number of
/// text response PDUs and the assembled answer.
fn raw_send_targets(addr: &str, initiator: &str, max_recv: u32, digests: Digests) -> (usize, TextParams) {
    raw_send_targets_for(addr, initiator, max_recv, digests, "All")
}

fn raw_send_targets_for(
    addr: &str,
    initiator: &str,
    max_recv: u32,
    digests: Digests,
    query: &str,
) -> (usize, TextParams) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut keys = TextParams::new();
    keys.push("InitiatorName", initiator);
    keys.push("SessionType", "Discovery");
    let dig = |on: bool| if on { "CRC32C" } else { "None" };
    keys.push("HeaderDigest", dig(digests.header));
    keys.push("DataDigest", dig(digests.data));
    keys.push("MaxRecvDataSegmentLength", max_recv.to_string());
    let login = LoginRequest {
        cmdsn: 1,
        ..LoginRequest::opening([0x80, 1, 2, 3, 4, 5], 1, Stage::Operational, Stage::FullFeature, keys.to_bytes())
    };
    s.write_all(&encode(&login.to_pdu(), Digests::default())).unwrap();
    let plain = DecodeLimits { max_data_segment: 1 << 20, digests: Digests::default() };
    let rsp = LoginResponse::from_pdu(&read_pdu(&mut s, &plain)).unwrap();
    assert_eq!(rsp.status, LoginStatus::SUCCESS);
    assert!(rsp.transit && rsp.nsg == Stage::FullFeature && rsp.tsih != 0);
    let answered = TextParams::parse(&rsp.data).unwrap();
    assert_eq!(answered.get("HeaderDigest"), Some(dig(digests.header)));
    let limits = DecodeLimits { max_data_segment: max_recv, digests };
    let mut keys = TextParams::new();
    keys.push("SendTargets", query);
    let mut req = TextRequest::new(2, 1, rsp.statsn + 1, keys.to_bytes());
    let mut asm = TextAssembler::new(1 << 22);
    let mut pdus = 0;
    loop {
        s.write_all(&encode(&req.to_pdu(), digests)).unwrap();
        let r = TextResponse::from_pdu(&read_pdu(&mut s, &limits)).unwrap();
        pdus += 1;
        assert!(r.data.len() <= max_recv as usize);
        let whole = asm.push(&r.data, !r.fin || r.cont).unwrap();
        if r.fin {
            assert_eq!(r.ttt, RESERVED_TAG);
            return (pdus, TextParams::parse(&whole.unwrap_or_default()).unwrap());
        }
        assert_ne!(r.ttt, RESERVED_TAG);
        req = TextRequest::new(2, 1, r.statsn + 1, Vec::new());
        req.ttt = r.ttt;
    }
}

#[test]
fn an_initiator_insisting_on_crc32c_digests_gets_them() {
    if !iscsi_tools_present() {
        return;
    }
    let (lab, _portal) = cluster("");
    let (pdus, text) = raw_send_targets(
        &format!("{}:{PORTAL_PORT}", lab.portal_ip()),
        INIT_A,
        8192,
        Digests { header: true, data: true },
    );
    assert_eq!(pdus, 1);
    assert_eq!(text.get("TargetName"), Some("iqn.2024-01.test:vol1"));
}

#[test]
fn malformed_truncated_oversized_and_silent_clients_are_dropped_and_service_goes_on() {
    if !iscsi_tools_present() {
        return;
    }
    let (lab, portal) = cluster("login_timeout_sec = 2\nmax_recv_data_segment_length = 8192");
    let addr = format!("{}:{PORTAL_PORT}", lab.portal_ip());
    let works = || {
        let (code, out) = libiscsi("iscsi-ls", &["-i", INIT_A, &lab.portal_url()], T);
        assert_eq!(code, Some(0), "portal stopped serving: {out}\n{}", portal.log());
        assert!(out.contains("vol1"));
    };
    let send = |bytes: &[u8], then_read: bool| {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(bytes);
        if then_read {
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    };
    let mut bhs = [0u8; 48];
    // Login request with T and C both set: malformed.
    bhs[0] = 0x43;
    bhs[1] = 0xc7;
    send(&bhs, true);
    // An oversized data segment (16 MiB - 1) announced in the header.
    bhs[1] = 0x87;
    bhs[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    send(&bhs, true);
    // A truncated PDU: header promising 100 bytes of data, then close.
    bhs[5..8].copy_from_slice(&[0, 0, 100]);
    let mut trunc = bhs.to_vec();
    trunc.extend_from_slice(b"InitiatorName=");
    send(&trunc, false);
    // A SCSI command before any login.
    let mut scsi = [0u8; 48];
    scsi[0] = 0x01;
    send(&scsi, true);
    // Random garbage.
    send(&Rng(5).bytes(3000), true);
    // Login keys that are not key=value.
    let mut bad = bhs;
    let junk = b"this is not a key value list\0";
    bad[5..8].copy_from_slice(&[0, 0, junk.len() as u8]);
    let mut v = bad.to_vec();
    v.extend_from_slice(junk);
    v.resize(48 + junk.len().div_ceil(4) * 4, 0);
    send(&v, true);
    // A silent client, and a slow one that stops after half a header:
    // both are dropped at login_timeout_sec while others are served.
    let silent = TcpStream::connect(&addr).unwrap();
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(&bhs[..20]).unwrap();
    works();
    assert!(portal.wait_for_log("no login within 2s", Duration::from_secs(10)), "{}", portal.log());
    drop((silent, slow));
    works();
    let log = portal.log();
    for l in [
        "dropping connection: malformed PDU: data segment of 16777215 bytes exceeds",
        "dropping connection: protocol error: login request: invalid flags",
        "expected a Login Request, got opcode 0x01",
        "in the middle of a PDU",
        "malformed login keys",
    ] {
        assert!(log.contains(l), "access log lacks {l:?}:\n{log}");
    }
    assert!(!log.contains("panicked"));
}

#[test]
fn many_concurrent_clients_are_served() {
    if !iscsi_tools_present() {
        return;
    }
    let (lab, portal) = cluster("");
    let addr = format!("{}:{PORTAL_PORT}", lab.portal_ip());
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let a = addr.clone();
            std::thread::spawn(move || raw_send_targets(&a, INIT_A, 8192, Digests::default()).1)
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().get("TargetName"), Some("iqn.2024-01.test:vol1"));
    }
    assert!(!portal.log().contains("error"), "{}", portal.log());
}

#[test]
fn sighup_reloads_and_a_bad_config_is_refused() {
    if !iscsi_tools_present() {
        return;
    }
    let (lab, portal) = cluster("");
    let cfg = lab.dir.path().join("santools.toml");
    let url = lun_url(&lab, "iqn.2024-01.test:vol1");
    assert_eq!(libiscsi("iscsi-inq", &["-i", INIT_A, &url], T).0, Some(0));
    // Retire vol1 too, reload: logins are now refused.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "targets_removed = [\"iqn.2024-01.test:retired\"]",
        "targets_removed = [\"iqn.2024-01.test:retired\", \"iqn.2024-01.test:vol1\"]",
    );
    std::fs::write(&cfg, &text).unwrap();
    portal.signal(libc::SIGHUP);
    assert!(portal.wait_for_log("configuration reloaded", Duration::from_secs(5)), "{}", portal.log());
    let (code, out) = libiscsi("iscsi-inq", &["-i", INIT_A, &url], T);
    assert_ne!(code, Some(0), "{out}");
    // A broken config is refused; the running one stays.
    std::fs::write(&cfg, text.replace("state_time_sec = 2", "state_time_sec = 0")).unwrap();
    portal.signal(libc::SIGHUP);
    assert!(portal.wait_for_log("reload refused", Duration::from_secs(5)), "{}", portal.log());
    assert!(portal.log().contains("portal.state_time_sec"));
    let (_, out) = libiscsi("iscsi-inq", &["-i", INIT_A, &url], T);
    assert!(out.contains("Target removed"), "old config must stay in force: {out}");
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    if !iscsi_tools_present() {
        return;
    }
    let (lab, mut portal) = cluster("failover_wait_sec = 30");
    // A login held for a missing target must not block shutdown.
    let url = lun_url(&lab, "iqn.2024-01.test:never");
    let waiter = std::thread::spawn(move || libiscsi("iscsi-inq", &["-i", INIT_A, &url], T));
    std::thread::sleep(Duration::from_millis(800));
    let t = Instant::now();
    let status = portal.stop().unwrap();
    assert!(status.success(), "{status:?}\n{}", portal.log());
    assert!(t.elapsed() < Duration::from_secs(5), "shutdown took {:?}", t.elapsed());
    assert!(portal.log().contains("stopped"));
    let (code, _) = waiter.join().unwrap();
    assert_ne!(code, Some(0));
}

#[test]
fn background_daemon_writes_its_pid_and_stops_with_k() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(1);
    lab.nodes[0].add_target(1, "iqn.2024-01.test:vol1", &[INIT_A]);
    let cfg = lab.config("");
    let pid_file = lab.dir.path().join("portal.pid");
    let out = ok(Command::new(bin()).args(["iscsi-portal", "-D", "--config"]).arg(&cfg));
    assert!(out.contains("started in the background"), "{out}");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let (code, out) = libiscsi("iscsi-ls", &["-i", INIT_A, &lab.portal_url()], T);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("vol1"));
    // A second daemon on the same pid file and address is refused.
    let o = run(Command::new(bin()).args(["iscsi-portal", "-D", "--config"]).arg(&cfg));
    assert_eq!(o.status.code(), Some(2));
    let out = ok(Command::new(bin()).args(["iscsi-portal", "-k", "--config"]).arg(&cfg));
    assert!(out.contains(&format!("stopped iscsi-portal (pid {pid})")), "{out}");
    assert!(!pid_file.exists());
    // Gone, or a zombie nobody reaps (this container's PID 1 may not).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start().chars().next().unwrap_or('?'));
    assert!(stat.is_empty() || state == Some('Z'), "daemon still running: {stat}");
    let o = run(Command::new(bin()).args(["iscsi-portal", "-k", "--config"]).arg(&cfg));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn query_and_sendtargets_tools_use_the_daemons_logic_and_state() {
    if !iscsi_tools_present() {
        return;
    }
    let (lab, portal) = cluster("");
    let cfg = lab.dir.path().join("santools.toml");
    let q = |target: &str| {
        run(Command::new(bin()).args(["iscsi-portal-query", "--config"]).arg(&cfg).args([
            "10.9.9.9",
            &lab.portal_ip(),
            INIT_A,
            target,
        ]))
    };
    let a = stdout(&q("iqn.2024-01.test:vol1")).trim().to_string();
    let b = stdout(&q("iqn.2024-01.test:vol1")).trim().to_string();
    assert_ne!(a, b, "successive queries rotate");
    // A real login continues the rotation the queries advanced...
    assert_eq!(libiscsi("iscsi-inq", &["-i", INIT_A, &lun_url(&lab, "iqn.2024-01.test:vol1")], T).0, Some(0));
    let shown = |q: &str| q.split_whitespace().find(|w| w.contains(':')).unwrap_or(q).to_string();
    assert_eq!(portal.redirects().last().map(String::as_str), Some(shown(&a).as_str()), "{a} / {}", portal.log());
    // ...and the query sees the daemon's step once it is written.
    std::thread::sleep(Duration::from_millis(700));
    let c = stdout(&q("iqn.2024-01.test:vol1")).trim().to_string();
    assert_eq!(c, b, "the daemon's login must advance the shared rotation");
    let o = q("iqn.2024-01.test:retired");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("targets_removed"));
    let o = q("iqn.2024-01.test:nowhere");
    assert_eq!(o.status.code(), Some(1));
    fails_with(
        Command::new(bin()).args(["iscsi-portal-query", "--config"]).arg(&cfg).args([
            "10.9.9.9",
            "10.1.1.1",
            INIT_A,
            "not a name",
        ]),
        &["not an iSCSI name"],
    );
    let out = ok(Command::new(bin()).args(["iscsi-portal-sendtargets", "--config"]).arg(&cfg).args(["-i", INIT_B]));
    assert_eq!(out.matches("target iqn.2024-01.test:vol2").count(), 2, "{out}");
    assert!(!out.contains("vol1"));
    let out = ok(Command::new(bin()).args(["iscsi-portal-sendtargets", "--config"]).arg(&cfg).arg("-l"));
    assert_eq!(out.trim(), format!("pg_test {}", lab.portal_ip()));
}

#[test]
fn portal_config_errors_name_the_key() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, "[portal]\nlisten = [\"127.0.0.1:1\"]\ndiscovery_portals = []\n").unwrap();
    fails_with(
        Command::new(bin()).args(["iscsi-portal", "--check", "--config"]).arg(&cfg),
        &["c.toml", "portal.discovery_portals"],
    );
    std::fs::write(&cfg, "[ddless]\n").unwrap();
    fails_with(Command::new(bin()).args(["iscsi-portal", "--config"]).arg(&cfg), &["no [portal] section"]);
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/santools.toml");
    let out = ok(Command::new(bin()).args(["iscsi-portal", "--check", "--config"]).arg(&example));
    assert!(out.contains("configuration is valid"));
}

#[test]
fn send_targets_for_one_name_and_the_connection_cap() {
    if !iscsi_tools_present() {
        return;
    }
    let (lab, portal) = cluster("max_connections = 3\nlogin_timeout_sec = 20");
    let addr = format!("{}:{PORTAL_PORT}", lab.portal_ip());
    let (_, t) = raw_send_targets_for(&addr, INIT_A, 8192, Digests::default(), "iqn.2024-01.test:vol1");
    assert_eq!(t.get("TargetName"), Some("iqn.2024-01.test:vol1"));
    let (_, t) = raw_send_targets_for(&addr, INIT_A, 8192, Digests::default(), "iqn.2024-01.test:vol2");
    assert!(t.is_empty(), "A may not see vol2: {t:?}");
    // The two discovery sessions must have ended (slots freed) before the
    // cap is filled, or a loaded machine sees one of the held ones refused.
    assert!(portal.wait_for_log_count("disconnected", 2, Duration::from_secs(10)), "{}", portal.log());
    // Three idle connections fill the cap; a fourth is closed at once.
    let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    assert!(portal.wait_for_log_count("connect to", 5, Duration::from_secs(10)), "{}", portal.log());
    let mut extra = TcpStream::connect(&addr).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(extra.read(&mut b).ok(), Some(0), "the connection over the cap must be closed");
    assert!(portal.wait_for_log("(max_connections)", Duration::from_secs(5)), "{}", portal.log());
    drop(held);
    // Freed slots serve again.
    std::thread::sleep(Duration::from_millis(300));
    let (_, t) = raw_send_targets(&addr, INIT_A, 8192, Digests::default());
    assert_eq!(t.get("TargetName"), Some("iqn.2024-01.test:vol1"));
}
