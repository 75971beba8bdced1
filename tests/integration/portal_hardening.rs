//! Regression tests for issue 7 (the portal tried as an attacker and as the
//! operator of a two-fabric cluster): real tgtd nodes with one portal per
//! VLAN, fake misbehaving nodes, raw PDU clients. Each test is named after
//! what it guards; the item numbers refer to the issue.

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use santools::iscsi::login::LoginStatus;
use santools::iscsi::text::TextParams;
use santools::iscsi::text_pdu::TextResponse;

use crate::fake_node::{Behaviour, FakeNode, Forwarder};
use crate::helpers::*;
use crate::iscsi_lab::*;
use crate::raw_iscsi::*;

const INIT_A: &str = "iqn.2024-01.test:initiator-a";
const INIT_B: &str = "iqn.2024-01.test:initiator-b";
const VOL: &str = "iqn.2024-01.test:vol1";
const T: Duration = Duration::from_secs(60);

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn portal_addr(lab: &Lab) -> String {
    format!("{}:{PORTAL_PORT}", lab.portal_ip())
}

fn node_portal(ip: &str) -> String {
    format!("{ip}:{NODE_PORT},1")
}

/// The third octet (the "VLAN") of an address like 127.x.V.y[:port,tag].
fn vlan_of(addr: &str) -> String {
    addr.split('.').nth(2).unwrap_or("").to_string()
}

/// Each redirect in the access log with the portal address its connection
/// reached (the logins in these tests are sequential).
fn redirects_by_portal(log: &str) -> Vec<(String, String)> {
    let mut reached = String::new();
    let mut out = Vec::new();
    for l in log.lines() {
        if let Some(p) = l.split(" connect to ").nth(1) {
            reached = p.trim().to_string();
        }
        if let Some(r) = l.split("redirect to ").nth(1) {
            out.push((reached.clone(), r.split(' ').next().unwrap_or("").to_string()));
        }
    }
    out
}

fn state_files(dir: &Path) -> usize {
    let mut n = 0;
    let Ok(portals) = std::fs::read_dir(dir) else { return 0 };
    for p in portals.flatten() {
        for i in std::fs::read_dir(p.path()).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(i.path()).into_iter().flatten().flatten() {
                if f.path().extension().is_some_and(|e| e == "json") {
                    n += 1;
                }
            }
        }
    }
    n
}

// ---------- 1. cross-VLAN redirects ----------

#[test]
fn logins_on_each_vlan_are_redirected_only_to_that_vlans_node_portals() {
    if !iscsi_tools_present() {
        return;
    }
    // Two nodes, each with a portal on VLAN 1 and on VLAN 2; a discovery
    // portal per VLAN. state_time_sec is long, so a shared rotation state
    // would hand one VLAN's addresses to the other.
    let lab = Lab::with_vlans(2, 2);
    for n in &lab.nodes {
        n.add_target(1, VOL, &[INIT_A]);
    }
    let cfg = lab.config("state_time_sec = 30");
    let portal = PortalProc::start(&cfg, &[]);
    for _ in 0..3 {
        for v in [1, 2] {
            let url = format!("{}/{VOL}/1", lab.portal_url_on(v));
            let (code, out) = libiscsi("iscsi-inq", &["-i", INIT_A, &url], T);
            assert_eq!(code, Some(0), "{out}\n{}", portal.log());
        }
    }
    let pairs = redirects_by_portal(&portal.log());
    assert_eq!(pairs.len(), 6, "{}", portal.log());
    for (reached, dest) in &pairs {
        assert_eq!(vlan_of(reached), vlan_of(dest), "a login on {reached} was sent to {dest}:\n{pairs:?}");
    }
    for v in [1, 2] {
        let on: Vec<&String> = pairs.iter().filter(|(r, _)| *r == lab.portal_ip_on(v)).map(|(_, d)| d).collect();
        assert_eq!(on.len(), 3);
        for w in on.windows(2) {
            assert_ne!(w[0], w[1], "each VLAN rotates over its own node portals: {on:?}");
        }
    }
    // iscsi-portal-query: the same per-portal-group rotation.
    let q = |v: u32| {
        let o = run(Command::new(bin()).args(["iscsi-portal-query", "--config"]).arg(&cfg).args([
            "10.9.9.9",
            &lab.portal_ip_on(v),
            INIT_A,
            VOL,
        ]));
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).trim().to_string()
    };
    let (a1, b1, a2, b2) = (q(1), q(2), q(1), q(2));
    for (v, got) in [(1, &a1), (2, &b1), (1, &a2), (2, &b2)] {
        assert_eq!(vlan_of(got), v.to_string(), "query on VLAN {v} answered {got}");
    }
    assert_ne!(a1, a2, "VLAN 1 rotates on its own");
    assert_ne!(b1, b2, "VLAN 2 rotates on its own");
}

// ---------- 2. no success when no node answered ----------

#[test]
fn discovery_with_every_node_down_or_silent_is_refused_not_an_empty_success() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(0);
    let silent = FakeNode::start(&format!("{}:{NODE_PORT}", lab.node_ip(1, 51)), Behaviour::Silent);
    // .52: nothing listens there (connection refused).
    let groups = vec![(
        lab.portal_ip(),
        vec![("silent".to_string(), vec![lab.node_ip(1, 51)]), ("dead".to_string(), vec![lab.node_ip(1, 52)])],
    )];
    let portal = PortalProc::start(&lab.config_with("", &groups), &[]);
    let (code, out) = libiscsi("iscsi-ls", &["-i", INIT_A, &lab.portal_url()], T);
    assert_ne!(code, Some(0), "iscsi-ls must fail, not list nothing: {out}\n{}", portal.log());
    assert!(portal.wait_for_log("no node answered SendTargets", Duration::from_secs(10)), "{}", portal.log());
    // On the wire: a Reject (out of resources), then the portal closes.
    let mut r = Raw::discovery(&portal_addr(&lab), INIT_A);
    let pdu = r.text(b"SendTargets=All\0".to_vec()).expect("an answer");
    assert_eq!(pdu.bhs.opcode_raw(), 0x3f, "a Reject, not a Text Response");
    assert_eq!(pdu.bhs.0[2], 0x0a);
    assert!(r.closed());
    // open-iscsi's discovery fails too (and so changes no node record).
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/iscsiadm-userspace.sh");
    if real_component(
        "open-iscsi iscsiadm (userspace discovery)",
        which("iscsiadm").is_some() && is_root() && script.exists(),
        "needs open-iscsi, root and ../shared/tools/iscsiadm-userspace.sh",
    ) {
        let o = iscsiadm_userspace(
            &script,
            &["-m", "discovery", "-t", "st", "-p", &portal_addr(&lab), "-I", "fakeiface"],
            INIT_A,
        );
        assert!(!o.status.success(), "iscsiadm discovery must fail: {}", String::from_utf8_lossy(&o.stdout));
    }
    drop(silent);
}

#[test]
fn a_partial_answer_keeps_the_silent_nodes_last_targets_and_says_so() {
    if !iscsi_tools_present() {
        return;
    }
    let mut lab = Lab::new(2);
    lab.nodes[0].add_target(1, "iqn.2024-01.test:on-node1", &[INIT_A, INIT_B]);
    lab.nodes[1].add_target(1, "iqn.2024-01.test:on-node2", &[INIT_A, INIT_B]);
    let portal = PortalProc::start(&lab.config(""), &[]);
    let addr = portal_addr(&lab);
    let names = |init: &str| -> Vec<String> {
        let t = Raw::discovery(&addr, init).send_targets_all().expect("an answer");
        t.pairs().iter().filter(|(k, _)| k == "TargetName").map(|(_, v)| v.clone()).collect()
    };
    assert_eq!(names(INIT_A), ["iqn.2024-01.test:on-node1", "iqn.2024-01.test:on-node2"]);
    lab.nodes[1].stop();
    std::thread::sleep(Duration::from_millis(2200)); // past state_time_sec = 2
    assert_eq!(
        names(INIT_A),
        ["iqn.2024-01.test:on-node1", "iqn.2024-01.test:on-node2"],
        "a node that does not answer keeps its last answer:\n{}",
        portal.log()
    );
    assert!(portal.wait_for_log("partial answer: node node2 portal", Duration::from_secs(10)), "{}", portal.log());
    assert!(portal.wait_for_log("listing its answer from", Duration::from_secs(10)), "{}", portal.log());
    // An initiator the silent node never answered: what node1 shows it,
    // and a line saying what is missing.
    assert_eq!(names(INIT_B), ["iqn.2024-01.test:on-node1"]);
    assert!(
        portal.wait_for_log("its targets are missing from this answer", Duration::from_secs(10)),
        "{}",
        portal.log()
    );
}

// ---------- 3. failover staleness ----------

#[test]
fn a_target_leaving_its_node_holds_logins_instead_of_redirecting_to_the_old_node() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(2);
    lab.nodes[0].add_target(1, VOL, &[INIT_A]);
    // Both nodes serve other volumes too.
    for n in &lab.nodes {
        n.add_target(9, "iqn.2024-01.test:another-volume", &[INIT_A]);
    }
    // A long state_time_sec: the cached list still names node1 when the
    // volume group moves.
    let portal =
        PortalProc::start(&lab.config("state_time_sec = 30\nfailover_wait_sec = 25\nfailover_rescan_sec = 1"), &[]);
    let url = format!("{}/{VOL}/1", lab.portal_url());
    assert_eq!(libiscsi("iscsi-inq", &["-i", INIT_A, &url], T).0, Some(0), "{}", portal.log());
    assert_eq!(portal.redirects(), [node_portal(&lab.nodes[0].ip)]);
    // Older than redirect_verify_ms (1 s): that confirmation no longer counts.
    std::thread::sleep(Duration::from_millis(1200));
    lab.nodes[0].remove_target(1);
    let logins: Vec<_> = (0..9)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || libiscsi("iscsi-inq", &["-i", INIT_A, &url], T))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    lab.nodes[1].add_target(1, VOL, &[INIT_A]);
    for l in logins {
        let (code, out) = l.join().unwrap();
        assert_eq!(code, Some(0), "a login during the failover failed: {out}\n{}", portal.log());
    }
    let r = portal.redirects();
    assert_eq!(r.len(), 10, "{}", portal.log());
    assert!(r[1..].iter().all(|d| *d == node_portal(&lab.nodes[1].ip)), "{r:?}\n{}", portal.log());
    // The old node was asked before any redirect (under heavy load it may
    // time out instead of answering: the login is held either way).
    assert!(
        wait_until(Duration::from_secs(10), || {
            let log = portal.log();
            log.contains("no longer lists") || log.contains("could not confirm")
        }),
        "{}",
        portal.log()
    );
}

#[test]
fn a_reload_that_removes_a_node_stops_redirects_to_it_at_once() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(2);
    for n in &lab.nodes {
        n.add_target(1, VOL, &[INIT_A]);
    }
    // Cached lists and confirmations would both be trusted for 30 s.
    let extra = "state_time_sec = 30\nredirect_verify_ms = 30000";
    let cfg = lab.config(extra);
    let portal = PortalProc::start(&cfg, &[]);
    let login = || normal_login(&portal_addr(&lab), INIT_A, VOL).expect("answered");
    let first: Vec<String> = (0..2).map(|_| login().1.unwrap()).collect();
    assert!(first.contains(&node_portal(&lab.nodes[0].ip)), "{first:?}");
    let mut groups = lab.groups();
    groups[0].1.remove(0);
    lab.config_with(extra, &groups);
    portal.signal(libc::SIGHUP);
    assert!(portal.wait_for_log("configuration reloaded", Duration::from_secs(10)), "{}", portal.log());
    for _ in 0..4 {
        let (status, addr) = login();
        assert_eq!(status, LoginStatus::TARGET_MOVED_TEMPORARILY);
        assert_eq!(addr.unwrap(), node_portal(&lab.nodes[1].ip), "{}", portal.log());
    }
}

#[test]
fn the_invalidate_hook_drops_cached_portal_lists_at_once() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(2);
    lab.nodes[0].add_target(1, VOL, &[INIT_A]);
    let cfg = lab.config("state_time_sec = 30\nredirect_verify_ms = 30000");
    let pid_file = lab.dir.path().join("hook.pid");
    let portal = PortalProc::start(&cfg, &["--pid-file", pid_file.to_str().unwrap()]);
    let login = || normal_login(&portal_addr(&lab), INIT_A, VOL).expect("answered").1.unwrap();
    assert_eq!(login(), node_portal(&lab.nodes[0].ip));
    // The volume group moves.
    lab.nodes[0].remove_target(1);
    lab.nodes[1].add_target(1, VOL, &[INIT_A]);
    // With confirmations trusted for 30 s the portal does not know yet...
    assert_eq!(login(), node_portal(&lab.nodes[0].ip));
    // ...until the cluster manager's hook tells it.
    let out = ok(Command::new(bin())
        .args(["iscsi-portal", "--invalidate", "--config"])
        .arg(&cfg)
        .arg("--pid-file")
        .arg(&pid_file));
    assert!(out.contains("drops its cached portal lists"), "{out}");
    assert!(portal.wait_for_log("cached portal lists dropped (SIGUSR1)", Duration::from_secs(10)), "{}", portal.log());
    assert_eq!(login(), node_portal(&lab.nodes[1].ip), "{}", portal.log());
}

// ---------- 4. one request, bounded cost ----------

#[test]
fn one_request_with_thousands_of_sendtargets_keys_is_refused_and_memory_stays_bounded() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(0);
    let names: Vec<String> =
        (0..1003).map(|i| format!("iqn.2024-01.test:a-target-name-of-some-length-for-volume-{i:04}")).collect();
    let fake = FakeNode::start(&format!("{}:{NODE_PORT}", lab.node_ip(1, 51)), Behaviour::Targets(names.clone()));
    let groups = vec![(lab.portal_ip(), vec![("many".to_string(), vec![lab.node_ip(1, 51)])])];
    let portal = PortalProc::start(&lab.config_with("state_time_sec = 30", &groups), &[]);
    let addr = portal_addr(&lab);
    // A legitimate answer: all 1003 targets, a bounded number of log lines.
    let t = Raw::discovery(&addr, INIT_A).send_targets_all().unwrap();
    assert_eq!(t.pairs().iter().filter(|(k, _)| k == "TargetName").count(), 1003);
    let rss_before = rss_kib(portal.pid());
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    // 4,096 x SendTargets=All in one 64 KiB request...
                    let mut r = Raw::discovery(&addr, INIT_A);
                    let pdu = r.text(b"SendTargets=All\0".repeat(4096));
                    if let Some(p) = pdu {
                        assert_eq!(p.bhs.opcode_raw(), 0x3f, "refused, not answered");
                    }
                    assert!(r.closed());
                    // ...and 500 or 40 of them in a request small enough to parse.
                    for n in [500, 40] {
                        let mut r = Raw::discovery(&addr, INIT_A);
                        let pdu = r.text(b"SendTargets=All\0".repeat(n)).expect("an answer");
                        assert_eq!(pdu.bhs.opcode_raw(), 0x3f, "a Reject");
                        assert!(r.closed());
                    }
                }
            })
        })
        .collect();
    for a in attackers {
        a.join().unwrap();
    }
    let rss_after = rss_kib(portal.pid());
    assert!(rss_after < rss_before + 64 * 1024, "RSS grew from {rss_before} KiB to {rss_after} KiB");
    assert!(portal.wait_for_log("portal response: 987 more targets (not logged)", Duration::from_secs(10)));
    assert!(portal.wait_for_log_count("disconnected", 61, Duration::from_secs(10)), "{}", portal.log());
    let log = portal.log();
    for why in
        ["text of 65536 bytes exceeds the limit of 8192", "500 keys (at most 64)", "40 SendTargets keys (at most 1)"]
    {
        assert!(log.contains(why), "{why}: {log}");
    }
    assert_eq!(log.matches("portal response TargetName=").count(), 16, "one answer logs at most 16 targets");
    assert!(log.contains("portal response: 987 more targets (not logged)"), "{log}");
    drop(fake);
}

// ---------- 5. a misbehaving node costs at most the bound ----------

#[test]
fn a_node_answering_every_text_with_f0_costs_at_most_the_bound() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(1);
    lab.nodes[0].add_target(1, VOL, &[INIT_A]);
    let endless = FakeNode::start(&format!("{}:{NODE_PORT}", lab.node_ip(1, 51)), Behaviour::EndlessContinuation);
    let silent = FakeNode::start(&format!("{}:{NODE_PORT}", lab.node_ip(1, 52)), Behaviour::Silent);
    let mut groups = lab.groups();
    groups[0].1.push(("endless".into(), vec![lab.node_ip(1, 51)]));
    groups[0].1.push(("silent".into(), vec![lab.node_ip(1, 52)]));
    let portal = PortalProc::start(&lab.config_with("", &groups), &[]);
    let (code, out) = libiscsi("iscsi-ls", &["-i", INIT_A, &lab.portal_url()], T);
    assert_eq!(code, Some(0), "{out}\n{}", portal.log());
    assert!(out.contains(VOL), "{out}");
    assert!(
        wait_until(Duration::from_secs(10), || {
            let log = portal.log();
            log.contains("did not end within 2048 text responses")
                || log.contains("no answer within the node query bound")
        }),
        "{}",
        portal.log()
    );
    assert!(endless.sessions() >= 1);
    assert!(
        endless.text_requests() <= 2048 * endless.sessions(),
        "{} text requests in {} sessions",
        endless.text_requests(),
        endless.sessions()
    );
    // Logins for the good node's target go on.
    let (code, out) = libiscsi("iscsi-inq", &["-i", INIT_A, &format!("{}/{VOL}/1", lab.portal_url())], T);
    assert_eq!(code, Some(0), "{out}\n{}", portal.log());
    drop((endless, silent));
}

// ---------- 6. single flight and node budgets ----------

#[test]
fn identical_discovery_queries_are_coalesced_into_one_upstream_session() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(0);
    let fake =
        FakeNode::start(&format!("{}:{NODE_PORT}", lab.node_ip(1, 51)), Behaviour::Targets(vec![VOL.to_string()]));
    let groups = vec![(lab.portal_ip(), vec![("node1".to_string(), vec![lab.node_ip(1, 51)])])];
    let portal =
        PortalProc::start(&lab.config_with("state_time_sec = 1\nmax_connections_per_source = 1000", &groups), &[]);
    let addr = portal_addr(&lab);
    let started = Instant::now();
    let clients: Vec<_> = (0..200)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut answers = 0;
                while started.elapsed() < Duration::from_secs(3) {
                    let t = Raw::discovery(&addr, INIT_A).send_targets_all().expect("an answer");
                    assert_eq!(t.get("TargetName"), Some(VOL));
                    answers += 1;
                }
                answers
            })
        })
        .collect();
    let answers: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let secs = started.elapsed().as_secs() as usize + 1;
    // One upstream session per cache expiry (state_time_sec = 1), not one
    // per client that found the cache expired.
    assert!(
        fake.sessions() <= secs + 2,
        "{} upstream sessions for {answers} answers in {secs}s\n{}",
        fake.sessions(),
        portal.log()
    );
}

#[test]
fn held_logins_with_made_up_names_stay_within_the_node_budget() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(0);
    let fake = FakeNode::start(&format!("{}:{NODE_PORT}", lab.node_ip(1, 51)), Behaviour::Targets(Vec::new()));
    let groups = vec![(lab.portal_ip(), vec![("node1".to_string(), vec![lab.node_ip(1, 51)])])];
    let extra =
        "node_query_rate = 10\nfailover_wait_sec = 3\nfailover_rescan_sec = 1\nmax_connections_per_source = 1000";
    let portal = PortalProc::start(&lab.config_with(extra, &groups), &[]);
    let addr = portal_addr(&lab);
    let started = Instant::now();
    let logins: Vec<_> = (0..100)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                normal_login(&addr, &format!("iqn.2024-01.made-up:host-{i}"), "iqn.2024-01.test:nowhere")
            })
        })
        .collect();
    for l in logins {
        let (status, _) = l.join().unwrap().expect("answered");
        assert_eq!(status, LoginStatus::SERVICE_UNAVAILABLE);
    }
    let secs = started.elapsed().as_secs_f64();
    let bound = 10.0 + 10.0 * secs;
    assert!(
        (fake.sessions() as f64) <= bound,
        "{} upstream sessions in {secs:.1}s, budget allows {bound:.0}\n{}",
        fake.sessions(),
        portal.log()
    );
}

// ---------- 7. access-log forging ----------

#[test]
fn hostile_names_cannot_forge_access_log_lines() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(0);
    let fake = FakeNode::start(
        &format!("{}:{NODE_PORT}", lab.node_ip(1, 51)),
        Behaviour::Targets(vec![
            "iqn.2024-01.test:good".into(),
            "iqn.x\naccess_log => 6.6.6.6 FORGED-BY-NODE".into(),
            "not a name".into(),
        ]),
    );
    let groups = vec![(lab.portal_ip(), vec![("node1".to_string(), vec![lab.node_ip(1, 51)])])];
    let portal = PortalProc::start(&lab.config_with("", &groups), &[]);
    let addr = portal_addr(&lab);
    let forged = |what: &str| format!("\naccess_log => 6.6.6.6 FORGED-{what}");
    // SessionType
    let mut keys = TextParams::new();
    keys.push("InitiatorName", INIT_A);
    keys.push("SessionType", format!("Discovery{}", forged("SESSIONTYPE")));
    assert_eq!(Raw::connect(&addr).login(&keys).unwrap().status, LoginStatus::SESSION_TYPE_NOT_SUPPORTED);
    // TargetName
    let (status, _) = normal_login(&addr, INIT_A, &format!("iqn.y{}", forged("TARGET"))).unwrap();
    assert_eq!(status, LoginStatus::NOT_FOUND);
    // InitiatorName
    let mut keys = TextParams::new();
    keys.push("InitiatorName", format!("iqn.w{}", forged("INITIATOR")));
    keys.push("SessionType", "Discovery");
    assert_eq!(Raw::connect(&addr).login(&keys).unwrap().status, LoginStatus::INITIATOR_ERROR);
    // The SendTargets value
    let mut r = Raw::discovery(&addr, INIT_A);
    let pdu = r.text(format!("SendTargets=iqn.z{}\0", forged("SENDTARGETS")).into_bytes()).unwrap();
    assert!(TextResponse::from_pdu(&pdu).unwrap().data.is_empty());
    // Names a node returns are not forwarded unless they are iSCSI names.
    let t = Raw::discovery(&addr, INIT_A).send_targets_all().unwrap();
    let listed: Vec<&str> = t.pairs().iter().filter(|(k, _)| k == "TargetName").map(|(_, v)| v.as_str()).collect();
    assert_eq!(listed, ["iqn.2024-01.test:good"]);
    drop(r);
    assert!(portal.wait_for_log_count("disconnected", 5, Duration::from_secs(10)), "{}", portal.log());
    let log = portal.log();
    for what in ["SESSIONTYPE", "TARGET", "INITIATOR", "SENDTARGETS", "BY-NODE"] {
        assert!(log.contains(&format!("\\x0aaccess_log => 6.6.6.6 FORGED-{what}")), "{what} not shown escaped:\n{log}");
    }
    for l in log.lines() {
        assert!(!l.starts_with("access_log => 6.6.6.6"), "forged line: {l}\n{log}");
    }
    drop(fake);
}

// ---------- 8. the portal as its own node ----------

#[test]
fn the_portal_listed_as_its_own_node_is_refused_and_a_loop_is_detected_at_run_time() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(1);
    lab.nodes[0].add_target(1, VOL, &[INIT_A]);
    // At load and --check: a node portal that is a listen address.
    let own = lab.dir.path().join("own.toml");
    std::fs::write(
        &own,
        format!(
            "[portal]\nlisten = [\"{ip}:{NODE_PORT}\"]\nstate_directory = \"/tmp/x\"\n[[portal.discovery_portals]]\naddress = \"{ip}\"\nportal_group_name = \"pg\"\nportal_port = {NODE_PORT}\n[portal.discovery_portals.portal_addresses]\nnode1 = [\"{n1}\"]\nself = [\"{ip}\"]\n",
            ip = lab.portal_ip(),
            n1 = lab.nodes[0].ip
        ),
    )
    .unwrap();
    for args in [&["--check"][..], &[][..]] {
        fails_with(
            Command::new(bin()).arg("iscsi-portal").args(args).arg("--config").arg(&own),
            &["portal.discovery_portals[0].portal_addresses.self[0]", "would ask itself"],
        );
    }
    // At run time: a node address that leads back to the portal through a
    // forwarder the configuration check cannot see.
    let loop_ip = lab.node_ip(1, 50);
    let _fwd = Forwarder::start(&format!("{loop_ip}:{NODE_PORT}"), &portal_addr(&lab));
    let mut groups = lab.groups();
    groups[0].1.push(("loop".into(), vec![loop_ip]));
    let portal = PortalProc::start(&lab.config_with("", &groups), &[]);
    let (code, out) = libiscsi("iscsi-ls", &["-i", INIT_A, &lab.portal_url()], T);
    assert_eq!(code, Some(0), "{out}\n{}", portal.log());
    assert!(out.contains(VOL));
    assert!(
        portal.wait_for_log("loop: a discovery login from this portal's own node client", Duration::from_secs(10)),
        "{}",
        portal.log()
    );
    assert!(threads(portal.pid()) < 100, "{} threads", threads(portal.pid()));
    let (code, out) = libiscsi("iscsi-inq", &["-i", INIT_A, &format!("{}/{VOL}/1", lab.portal_url())], T);
    assert_eq!(code, Some(0), "{out}\n{}", portal.log());
}

// ---------- 9. unbounded configuration values ----------

#[test]
fn huge_numeric_config_values_are_refused_and_never_panic() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    let base = "[portal]\nlisten = [\"127.0.0.1:3260\"]\n[[portal.discovery_portals]]\naddress = \"127.0.0.1\"\nportal_group_name = \"pg\"\nportal_port = 3261\n[portal.discovery_portals.portal_addresses]\nn1 = [\"127.0.0.2\"]\n";
    for key in [
        "login_timeout_sec",
        "drain_timeout_sec",
        "idle_timeout_sec",
        "upstream_response_timeout_ms",
        "state_expiry_sec",
    ] {
        std::fs::write(&cfg, base.replace("[[portal", &format!("{key} = 9223372036854775807\n[[portal"))).unwrap();
        fails_with(
            Command::new(bin()).args(["iscsi-portal", "--check", "--config"]).arg(&cfg),
            &[&format!("portal.{key}")],
        );
        fails_with(Command::new(bin()).args(["iscsi-portal", "-k", "--config"]).arg(&cfg), &[&format!("portal.{key}")]);
    }
}

// ---------- 10. one source cannot fill the portal ----------

#[test]
fn one_source_cannot_fill_max_connections_and_refusals_are_logged_at_a_bounded_rate() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(1);
    lab.nodes[0].add_target(1, VOL, &[INIT_A]);
    let portal = PortalProc::start(
        &lab.config("max_connections = 64\nmax_connections_per_source = 8\nlogin_timeout_sec = 20"),
        &[],
    );
    let addr = portal_addr(&lab);
    let attacker = lab.node_ip(9, 1);
    let held: Vec<TcpStream> = (0..300).filter_map(|_| connect_from(&attacker, &addr).ok()).collect();
    assert!(held.len() > 200);
    assert!(portal.wait_for_log(&format!("refusing connection from {attacker}"), Duration::from_secs(10)));
    // Another host is served while the attacker holds its share.
    let mut r = Raw::new(connect_from(&lab.node_ip(9, 2), &addr).unwrap());
    let mut keys = TextParams::new();
    keys.push("InitiatorName", INIT_A);
    keys.push("SessionType", "Discovery");
    assert_eq!(r.login(&keys).unwrap().status, LoginStatus::SUCCESS);
    assert_eq!(r.send_targets_all().unwrap().get("TargetName"), Some(VOL));
    let (code, out) = libiscsi("iscsi-ls", &["-i", INIT_A, &lab.portal_url()], T);
    assert_eq!(code, Some(0), "{out}");
    assert!(portal.wait_for_log("more connections in the last 1s (max_connections_per_source", Duration::from_secs(10)));
    // One line per second and reason, however many were refused (~290).
    let refusals = portal.log().matches("refusing connection from").count();
    assert!(refusals < 20, "{refusals} refusal lines for ~290 refused connections:\n{}", portal.log());
    drop(held);
}

// ---------- 11. state expiry ----------

#[test]
fn unused_rotation_state_expires() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(1);
    lab.nodes[0].add_target(1, VOL, &["ALL"]);
    let portal = PortalProc::start(&lab.config("state_expiry_sec = 2\nmax_connections_per_source = 1000"), &[]);
    let addr = portal_addr(&lab);
    for i in 0..30 {
        let (status, _) = normal_login(&addr, &format!("iqn.2024-01.made-up:host-{i}"), VOL).unwrap();
        assert_eq!(status, LoginStatus::TARGET_MOVED_TEMPORARILY);
    }
    let state = lab.dir.path().join("state");
    assert!(wait_until(Duration::from_secs(10), || state_files(&state) >= 30), "{} files", state_files(&state));
    assert!(
        wait_until(Duration::from_secs(30), || state_files(&state) == 0),
        "{} files left\n{}",
        state_files(&state),
        portal.log()
    );
    assert!(
        portal.wait_for_log("rotation state entries unused for more than 2s", Duration::from_secs(10)),
        "{}",
        portal.log()
    );
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0, "emptied directories go too");
}

// ---------- 12. full or read-only state directory ----------

struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_or_full_state_directory_is_logged_once_per_change() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(1);
    lab.nodes[0].add_target(1, VOL, &["ALL"]);
    let state = lab.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mounted = is_root()
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(&state)
            .status()
            .is_ok_and(|s| s.success());
    if !real_component("mount (tmpfs, as root)", mounted, "cannot mount a small file system for the state directory") {
        return;
    }
    let _m = Mount(state.clone());
    let portal = PortalProc::start(&lab.config("max_connections_per_source = 1000"), &[]);
    let addr = portal_addr(&lab);
    let mut n = 0;
    let mut logins = |count: usize| {
        for _ in 0..count {
            n += 1;
            let (status, _) = normal_login(&addr, &format!("iqn.2024-01.made-up:host-{n}"), VOL).unwrap();
            assert_eq!(status, LoginStatus::TARGET_MOVED_TEMPORARILY, "redirects go on");
        }
    };
    logins(3);
    assert!(wait_until(Duration::from_secs(10), || state_files(&state) >= 3));
    let count = |what: &str| portal.log().matches(what).count();
    // Each step below is one change of state, made in one action, so the
    // flusher sees nothing in between: full, writable again, read-only,
    // writable again.
    let filler = state.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 4 << 20]); // fills the 2 MiB file system
    logins(10);
    assert!(portal.wait_for_log("cannot be written", Duration::from_secs(10)), "{}", portal.log());
    std::thread::sleep(Duration::from_secs(1)); // five more flush rounds
    logins(10);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count("cannot be written"), 1, "{}", portal.log());
    std::fs::remove_file(&filler).unwrap();
    assert!(portal.wait_for_log("rotation state is written again", Duration::from_secs(10)), "{}", portal.log());
    let remount =
        |opts: &str| assert!(Command::new("mount").args(["-o", opts]).arg(&state).status().unwrap().success());
    remount("remount,ro");
    logins(30);
    assert!(wait_until(Duration::from_secs(10), || count("cannot be written") == 2), "{}", portal.log());
    std::thread::sleep(Duration::from_secs(1));
    logins(10);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count("cannot be written"), 2, "a new kind of failure is logged once:\n{}", portal.log());
    assert_eq!(count("written again"), 1);
    remount("remount,rw");
    logins(3);
    assert!(wait_until(Duration::from_secs(10), || count("written again") == 2), "{}", portal.log());
    assert_eq!(count("cannot be written"), 2);
    drop(portal);
}

// ---------- 13. login-phase limits ----------

#[test]
fn login_pdus_over_8192_bytes_are_refused_and_long_login_answers_are_split() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(1);
    lab.nodes[0].add_target(1, VOL, &[INIT_A]);
    let portal = PortalProc::start(&lab.config(""), &[]);
    let addr = portal_addr(&lab);
    // A 9,000-byte login PDU: dropped before its data is read.
    let mut keys = TextParams::new();
    keys.push("InitiatorName", INIT_A);
    keys.push("SessionType", "Discovery");
    for i in 0..2 {
        keys.push(&format!("X-pad{i}"), "p".repeat(4480));
    }
    let len = keys.to_bytes().len();
    assert!(len > 8192);
    let mut r = Raw::connect(&addr);
    assert!(r.login(&keys).is_none(), "no answer to an oversized login PDU");
    assert!(portal.wait_for_log(
        &format!("data segment of {len} bytes exceeds the negotiated maximum of 8192"),
        Duration::from_secs(10)
    ));
    // 600 keys the portal does not understand: a 12.6 KB answer, sent as
    // login responses of at most 8192 bytes with the C bit.
    let mut keys = TextParams::new();
    keys.push("InitiatorName", INIT_A);
    keys.push("SessionType", "Discovery");
    for i in 0..600 {
        keys.push(&format!("X-k{i:03}"), "v");
    }
    let mut r = Raw::connect(&addr);
    let mut rsp = r.login(&keys).unwrap();
    let mut answer = rsp.data.clone();
    let mut parts = 1;
    while rsp.cont {
        assert!(rsp.data.len() <= 8192 && !rsp.transit);
        let ack = santools::iscsi::login::LoginRequest {
            transit: false,
            cmdsn: 1,
            ..santools::iscsi::login::LoginRequest::opening(
                [0x80, 9, 8, 7, 6, 5],
                1,
                santools::iscsi::login::Stage::Operational,
                santools::iscsi::login::Stage::Operational,
                Vec::new(),
            )
        };
        r.send(&ack.to_pdu()).unwrap();
        rsp = santools::iscsi::login::LoginResponse::from_pdu(&r.recv().unwrap()).unwrap();
        answer.extend_from_slice(&rsp.data);
        parts += 1;
    }
    assert!(parts >= 2 && rsp.transit && rsp.status == LoginStatus::SUCCESS);
    let t = TextParams::parse(&answer).unwrap();
    assert_eq!(t.pairs().iter().filter(|(_, v)| v == "NotUnderstood").count(), 600);
    r.statsn = rsp.statsn;
    assert_eq!(r.send_targets_all().unwrap().get("TargetName"), Some(VOL));
}

// ---------- 14, 15. background operation ----------

#[test]
fn a_background_daemon_with_a_relative_config_path_reloads_on_sighup() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(1);
    lab.nodes[0].add_target(1, VOL, &[INIT_A]);
    let cfg = lab.config("");
    let dir = lab.dir.path();
    let out = ok(Command::new(bin()).current_dir(dir).args(["iscsi-portal", "-D", "--config", "santools.toml"]));
    assert!(out.contains("started in the background"), "{out}");
    let pid: i32 = std::fs::read_to_string(dir.join("portal.pid")).unwrap().trim().parse().unwrap();
    let url = format!("{}/{VOL}/1", lab.portal_url());
    assert_eq!(libiscsi("iscsi-inq", &["-i", INIT_A, &url], T).0, Some(0));
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[[portal.discovery_portals]]",
        &format!("targets_removed = [\"{VOL}\"]\n\n[[portal.discovery_portals]]"),
    );
    std::fs::write(&cfg, text).unwrap();
    // SAFETY: kill(2) on the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    assert!(
        wait_until(Duration::from_secs(15), || libiscsi("iscsi-inq", &["-i", INIT_A, &url], T)
            .1
            .contains("Target removed")),
        "SIGHUP did not reload the relative --config after -D changed to /"
    );
    ok(Command::new(bin()).current_dir(dir).args(["iscsi-portal", "-k", "--config", "santools.toml"]));
}

#[test]
fn a_background_daemon_that_cannot_start_says_why_on_the_terminal() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(1);
    let cfg = lab.config("");
    ok(Command::new(bin()).args(["iscsi-portal", "-D", "--config"]).arg(&cfg));
    let pid = std::fs::read_to_string(lab.dir.path().join("portal.pid")).unwrap();
    // Another port (so binding works), the same PID file.
    let port =
        (PORTAL_PORT + 1..PORTAL_PORT + 200).find(|p| addr_is_free(&format!("{}:{p}", lab.portal_ip()))).unwrap();
    let err = fails_with(
        Command::new(bin()).args(["iscsi-portal", "-D", "-l", &port.to_string(), "--config"]).arg(&cfg),
        &["another iscsi-portal", "holds"],
    );
    assert!(err.contains(&format!("pid {}", pid.trim())), "{err}");
    ok(Command::new(bin()).args(["iscsi-portal", "-k", "--config"]).arg(&cfg));
}

#[test]
fn a_background_daemon_logs_to_syslog_with_the_right_priorities() {
    if !iscsi_tools_present() {
        return;
    }
    let usable = is_root() && which("unshare").is_some() && which("mknod").is_some();
    if !real_component(
        "unshare -m (root)",
        usable,
        "needs root and util-linux unshare to give the daemon its own /dev/log",
    ) {
        return;
    }
    let lab = Lab::new(1);
    lab.nodes[0].add_target(1, VOL, &[INIT_A]);
    let cfg = lab.config("syslog_prefix = \"portal-test\"");
    let sock_path = lab.dir.path().join("log.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    // A private /dev in a mount namespace whose /dev/log is our socket.
    let script = format!(
        "mount -t tmpfs tmpfs /dev && mknod -m 666 /dev/null c 1 3 && mknod -m 444 /dev/urandom c 1 9 && touch /dev/log && mount --bind '{}' /dev/log && exec '{}' iscsi-portal -D --config '{}'",
        sock_path.display(),
        bin().display(),
        cfg.display()
    );
    let o = run(Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let pid: i32 = std::fs::read_to_string(lab.dir.path().join("portal.pid")).unwrap().trim().parse().unwrap();
    // info: the access log; err: a reload refused.
    let _ = Raw::discovery(&portal_addr(&lab), INIT_A).send_targets_all();
    std::fs::write(&cfg, "[portal]\nstate_time_sec = 0\n").unwrap();
    // SAFETY: kill(2) on the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let mut lines = Vec::new();
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    while t.elapsed() < Duration::from_secs(15) && !lines.iter().any(|l: &String| l.contains("reload refused")) {
        if let Ok(n) = sock.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    ok(Command::new(bin())
        .args(["iscsi-portal", "-k", "--pid-file"])
        .arg(lab.dir.path().join("portal.pid"))
        .arg("--config")
        .arg(lab.config("")));
    let find = |needle: &str| {
        lines.iter().find(|l| l.contains(needle)).cloned().unwrap_or_else(|| panic!("no {needle:?} in {lines:#?}"))
    };
    // <facility daemon (3) * 8 + severity>
    assert!(find("initiator request SendTargets=All").starts_with("<30>"), "{lines:#?}");
    assert!(find("reload refused").starts_with("<27>"), "{lines:#?}");
    assert!(find("listening on").contains("portal-test["), "syslog_prefix is the ident: {lines:#?}");
}

// ---------- 16, 17. --check and the tools ----------

#[test]
fn check_refuses_duplicate_listen_port_0_unserved_listen_and_names_missing_keys() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    let two = |listen: &str, first: &str| {
        format!(
            "[portal]\nlisten = [{listen}]\n[[portal.discovery_portals]]\n{first}portal_group_name = \"a\"\n[portal.discovery_portals.portal_addresses]\nn1 = [\"10.0.1.1\"]\n[[portal.discovery_portals]]\naddress = \"10.0.2.9\"\nportal_group_name = \"b\"\n[portal.discovery_portals.portal_addresses]\nn1 = [\"10.0.2.1\"]\n"
        )
    };
    let addr = "address = \"10.0.1.9\"\n";
    let cases = [
        (two("\"10.0.1.9:3260\", \"10.0.2.9:3260\", \"10.0.1.9:3260\"", addr), "portal.listen[2]", "already listed"),
        (two("\"10.0.1.9:3260\", \"10.0.2.9:0\"", addr), "portal.listen[1]", "port 0"),
        (
            two("\"10.0.1.9:3260\", \"10.0.2.9:3260\", \"10.0.3.9:3260\"", addr),
            "portal.listen[2]",
            "no [[portal.discovery_portals]] has address 10.0.3.9",
        ),
        (two("\"10.0.1.9:3260\", \"10.0.2.9:3260\"", ""), "portal.discovery_portals[0].address", "required"),
    ];
    for (text, key, what) in cases {
        std::fs::write(&cfg, text).unwrap();
        fails_with(Command::new(bin()).args(["iscsi-portal", "--check", "--config"]).arg(&cfg), &[key, what]);
    }
    std::fs::write(&cfg, two("\"10.0.1.9:3260\", \"10.0.2.9:3260\"", addr)).unwrap();
    let out = ok(Command::new(bin()).args(["iscsi-portal", "--check", "--config"]).arg(&cfg));
    assert!(out.contains("configuration is valid"));
    std::fs::write(&cfg, two("\"0.0.0.0:3260\"", addr)).unwrap();
    let out = ok(Command::new(bin()).args(["iscsi-portal", "--check", "--config"]).arg(&cfg));
    assert!(out.contains("note: a wildcard listen address"), "{out}");
}

#[test]
fn sendtargets_tool_validates_the_initiator_name() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, "[portal]\nlisten = [\"127.0.0.1:3260\"]\n[[portal.discovery_portals]]\naddress = \"127.0.0.1\"\nportal_group_name = \"pg\"\nportal_port = 3261\n[portal.discovery_portals.portal_addresses]\nn1 = [\"127.0.0.2\"]\n").unwrap();
    for bad in ["not a name", "iqn.x\naccess_log => forged", "iqn.a/../../etc"] {
        let err = fails_with(
            Command::new(bin()).args(["iscsi-portal-sendtargets", "--config"]).arg(&cfg).args(["-i", bad]),
            &["is not an iSCSI name"],
        );
        assert!(!err.contains('\n') || err.lines().count() == 1, "{err}");
    }
}

#[test]
fn a_listen_port_override_does_not_warn_on_every_reload() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(1);
    let cfg = lab.config("");
    let port =
        (PORTAL_PORT + 1..PORTAL_PORT + 200).find(|p| addr_is_free(&format!("{}:{p}", lab.portal_ip()))).unwrap();
    let portal = PortalProc::start(&cfg, &["-l", &port.to_string()]);
    assert!(portal.log().contains(&format!("listening on {}:{port}", lab.portal_ip())), "{}", portal.log());
    for n in 1..=2 {
        portal.signal(libc::SIGHUP);
        assert!(portal.wait_for_log_count("configuration reloaded", n, Duration::from_secs(10)), "{}", portal.log());
    }
    assert!(!portal.log().contains("listen addresses changed"), "{}", portal.log());
}

// ---------- 18. seed compatibility ----------

#[test]
fn seed_foreground_switch_syslog_prefix_and_seed_state_files() {
    if !iscsi_tools_present() {
        return;
    }
    let lab = Lab::new(1);
    lab.nodes[0].add_target(1, VOL, &[INIT_A]);
    let cfg = lab.config("syslog_prefix = \"iscsi_portal\"");
    // A state directory left by the seed's Perl portal.
    let seed = lab.dir.path().join("state/iqn.1998-01.com.vmware:host");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join(format!("{VOL}.data")), "$VAR1 = { 'last_portal_index' => 1 };\n").unwrap();
    let portal = PortalProc::start(&cfg, &["-f"]);
    assert!(
        portal.wait_for_log(
            "holds 1 state files of the seed's portal (*.data); they are not read",
            Duration::from_secs(10)
        ),
        "{}",
        portal.log()
    );
    let (code, out) = libiscsi("iscsi-inq", &["-i", INIT_A, &format!("{}/{VOL}/1", lab.portal_url())], T);
    assert_eq!(code, Some(0), "{out}\n{}", portal.log());
    assert!(seed.join(format!("{VOL}.data")).exists(), "the seed's files are left alone");
    fails_with(Command::new(bin()).args(["iscsi-portal", "-f", "-D", "--config"]).arg(&cfg), &["cannot be used with"]);
}

/// A typo in another tool's section is a warning for the portal, not a
/// refusal to start (the file is shared by every tool on a host).
#[test]
fn typo_in_another_section_does_not_stop_the_portal_check() {
    let d = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/santools.toml"))
            .unwrap();
    let broken = example.replacen("workers = 4", "workerz = 4", 1);
    assert_ne!(broken, example);
    let cfg = d.path().join("santools.toml");
    std::fs::write(&cfg, &broken).unwrap();
    let o = run(Command::new(bin()).args(["iscsi-portal", "--check", "--config"]).arg(&cfg));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("[ddless]") && stderr(&o).contains("workerz"), "{}", stderr(&o));
    fails_with(Command::new(bin()).args(["check-config", "--config"]).arg(&cfg), &["workerz"]);
}
