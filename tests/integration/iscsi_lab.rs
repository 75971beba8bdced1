//! A small iSCSI lab on loopback for the portal tests: tgtd nodes on their
//! own 127.x.y.z addresses, one portal per "VLAN" (the third octet), each
//! tgtd on a control port probed free, and the portal daemon. Every
//! process is started here and stopped by PID.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::*;

pub const NODE_PORT: u16 = 13260;
pub const PORTAL_PORT: u16 = 13270;

/// Whether tgt and libiscsi's tools are installed (skips loudly otherwise,
/// fails under SANTOOLS_REQUIRE_REAL=1).
pub fn iscsi_tools_present() -> bool {
    let missing: Vec<&str> = ["tgtd", "tgtadm", "iscsi-ls", "iscsi-inq", "iscsi-readcapacity16"]
        .into_iter()
        .filter(|t| which(t).is_none())
        .collect();
    real_component(
        "tgt + libiscsi-bin",
        missing.is_empty(),
        &format!("missing {missing:?} (apt-get install tgt libiscsi-bin)"),
    )
}

/// Whether `addr` can be bound now (nobody listens there).
pub fn addr_is_free(addr: &str) -> bool {
    std::net::TcpListener::bind(addr).is_ok()
}

/// A lab id (the second octet of its 127.x.y.z addresses) whose node and
/// portal addresses are free now: the machine is shared, other engineers'
/// tgtd and portals listen on loopback too.
fn next_lab_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id() % 97;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = 20 + (base * 2 + n) % 200;
        let probe = [
            format!("127.{id}.1.1:{NODE_PORT}"),
            format!("127.{id}.1.100:{PORTAL_PORT}"),
            format!("127.{id}.2.1:{NODE_PORT}"),
        ];
        if probe.iter().all(|a| addr_is_free(a)) {
            return id;
        }
        assert!(n < 2000, "no free lab addresses on 127.0.0.0/8 (127.20-219.x.y)");
    }
}

/// A tgtd control port nobody uses: its lock file is not held.
fn free_control_port() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // tgtd takes -C 0-32767.
        let port = 4_000 + (std::process::id() * 7 + n * 13) % 28_000;
        let held = tgtd_control_port_busy(port);
        if !held {
            return port;
        }
        assert!(n < 2000, "no free tgtd control port");
    }
}

/// One discovery portal of a lab configuration: its address and its
/// nodes as (name, [node portal IPs]).
pub type Group = (String, Vec<(String, Vec<String>)>);

pub struct Lab {
    pub id: u32,
    pub dir: tempfile::TempDir,
    pub nodes: Vec<TgtNode>,
    /// VLANs: node i's portal on VLAN v is `node_ip(v, i)`.
    pub vlans: u32,
}

pub struct TgtNode {
    /// Its portal on the first VLAN.
    pub ip: String,
    /// Its portals on every VLAN, in VLAN order.
    pub ips: Vec<String>,
    pub control: u32,
    child: Option<Child>,
    pub lun_file: PathBuf,
}

fn wait_for_port(addr: &str, timeout: Duration) -> bool {
    let a: SocketAddr = addr.parse().unwrap();
    let t = Instant::now();
    while t.elapsed() < timeout {
        if TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl TgtNode {
    /// A tgtd serving one portal per address in `ips` (the first with
    /// `--iscsi portal=`, the others added with tgtadm), on a free control
    /// port.
    fn start(ips: Vec<String>, dir: &Path) -> TgtNode {
        for attempt in 0..20 {
            let control = free_control_port();
            let errors = dir.join(format!("tgtd-{}-{control}.err", ips[0]));
            let mut child = Command::new("tgtd")
                .args(["-f", "-C", &control.to_string(), "--iscsi", &format!("portal={}:{NODE_PORT}", ips[0])])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&errors).unwrap())
                .spawn()
                .expect("starting tgtd");
            let t = Instant::now();
            let mut up = false;
            while t.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // lost the control port to someone: try another
                }
                if TcpStream::connect_timeout(
                    &format!("{}:{NODE_PORT}", ips[0]).parse().unwrap(),
                    Duration::from_millis(200),
                )
                .is_ok()
                {
                    up = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !up {
                let _ = child.kill();
                let _ = child.wait();
                remove_tgtd_control_files(control);
                assert!(
                    attempt < 19,
                    "tgtd on {} did not start: {}",
                    ips[0],
                    std::fs::read_to_string(&errors).unwrap_or_default()
                );
                continue;
            }
            let lun_file = dir.join(format!("lun-{}.img", ips[0]));
            std::fs::write(&lun_file, vec![0u8; 16 << 20]).unwrap();
            let node = TgtNode { ip: ips[0].clone(), ips, control, child: Some(child), lun_file };
            for ip in &node.ips[1..] {
                node.tgtadm(&["--op", "new", "--mode", "portal", "--param", &format!("portal={ip}:{NODE_PORT}")]);
                assert!(wait_for_port(&format!("{ip}:{NODE_PORT}"), Duration::from_secs(10)));
            }
            return node;
        }
        unreachable!()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn tgtadm(&self, args: &[&str]) {
        let o = Command::new("tgtadm")
            .args(["-C", &self.control.to_string(), "--lld", "iscsi"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "tgtadm {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// A target with one 16 MiB LUN that only `initiators` may see
    /// (`ALL`: every initiator).
    pub fn add_target(&self, tid: u32, name: &str, initiators: &[&str]) {
        let tid = tid.to_string();
        self.tgtadm(&["--op", "new", "--mode", "target", "--tid", &tid, "-T", name]);
        self.tgtadm(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            &tid,
            "--lun",
            "1",
            "-b",
            self.lun_file.to_str().unwrap(),
        ]);
        for i in initiators {
            if *i == "ALL" {
                self.tgtadm(&["--op", "bind", "--mode", "target", "--tid", &tid, "-I", "ALL"]);
            } else {
                self.tgtadm(&["--op", "bind", "--mode", "target", "--tid", &tid, "-Q", i]);
            }
        }
    }

    /// Removes a target (its volume group moved away).
    pub fn remove_target(&self, tid: u32) {
        self.tgtadm(&["--op", "delete", "--mode", "target", "--tid", &tid.to_string(), "--force"]);
    }

    pub fn addr(&self) -> String {
        format!("{}:{NODE_PORT}", self.ip)
    }

    /// Kills this node's tgtd (by PID): the node is down.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            remove_tgtd_control_files(self.control);
        }
    }
}

impl Drop for TgtNode {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Lab {
    /// `n` tgtd nodes with one portal each on 127.<id>.1.1..n.
    pub fn new(n: u32) -> Lab {
        Lab::with_vlans(n, 1)
    }

    /// `n` tgtd nodes, each with one portal per VLAN: node i on VLAN v is
    /// 127.<id>.<v>.<i>; the portal listens on 127.<id>.<v>.100.
    pub fn with_vlans(n: u32, vlans: u32) -> Lab {
        let id = next_lab_id();
        let dir = tempfile::tempdir().unwrap();
        let nodes = (1..=n)
            .map(|i| TgtNode::start((1..=vlans).map(|v| format!("127.{id}.{v}.{i}")).collect(), dir.path()))
            .collect();
        Lab { id, dir, nodes, vlans }
    }

    pub fn node_ip(&self, vlan: u32, node: u32) -> String {
        format!("127.{}.{vlan}.{node}", self.id)
    }

    /// The portal's address on the first VLAN.
    pub fn portal_ip(&self) -> String {
        self.portal_ip_on(1)
    }

    pub fn portal_ip_on(&self, vlan: u32) -> String {
        format!("127.{}.{vlan}.100", self.id)
    }

    pub fn portal_url(&self) -> String {
        format!("iscsi://{}:{PORTAL_PORT}", self.portal_ip())
    }

    pub fn portal_url_on(&self, vlan: u32) -> String {
        format!("iscsi://{}:{PORTAL_PORT}", self.portal_ip_on(vlan))
    }

    /// The lab's default discovery portals: one per VLAN, each with every
    /// node's portal on that VLAN.
    pub fn groups(&self) -> Vec<Group> {
        (1..=self.vlans)
            .map(|v| {
                let nodes = self
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (format!("node{}", i + 1), vec![n.ips[v as usize - 1].clone()]))
                    .collect();
                (self.portal_ip_on(v), nodes)
            })
            .collect()
    }

    /// A portal configuration for this lab; `extra` goes into [portal].
    pub fn config(&self, extra: &str) -> PathBuf {
        self.config_with(extra, &self.groups())
    }

    /// A portal configuration with these discovery portals: (portal IP,
    /// [(node name, [node portal IPs])]).
    pub fn config_with(&self, extra: &str, groups: &[Group]) -> PathBuf {
        let listen: Vec<String> = groups.iter().map(|(ip, _)| format!("\"{ip}:{PORTAL_PORT}\"")).collect();
        let dir = self.dir.path().display();
        let mut text = format!("[portal]\nlisten = [{}]\n", listen.join(", "));
        // The lab's defaults, unless `extra` sets the key.
        for (k, v) in [
            ("state_time_sec", "2".to_string()),
            ("state_directory", format!("\"{dir}/state\"")),
            ("pid_file", format!("\"{dir}/portal.pid\"")),
            ("upstream_connect_timeout_ms", "500".to_string()),
            ("upstream_response_timeout_ms", "1000".to_string()),
        ] {
            if !extra.lines().any(|l| l.split('=').next().is_some_and(|e| e.trim() == k)) {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        text.push_str(extra);
        text.push('\n');
        for (i, (ip, nodes)) in groups.iter().enumerate() {
            text.push_str(&format!(
                "\n[[portal.discovery_portals]]\naddress = \"{ip}\"\nportal_group_name = \"pg_test{}\"\nportal_port = {NODE_PORT}\n[portal.discovery_portals.portal_addresses]\n",
                if i == 0 { String::new() } else { format!("{}", i + 1) }
            ));
            for (name, ips) in nodes {
                let ips: Vec<String> = ips.iter().map(|a| format!("\"{a}\"")).collect();
                text.push_str(&format!("\"{name}\" = [{}]\n", ips.join(", ")));
            }
        }
        let p = self.dir.path().join("santools.toml");
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// The portal daemon, its stderr collected for the tests to read.
pub struct PortalProc {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl PortalProc {
    pub fn start(config: &Path, extra_args: &[&str]) -> PortalProc {
        let mut child = Command::new(bin())
            .arg("iscsi-portal")
            .arg("--config")
            .arg(config)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting iscsi-portal");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let l = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut g = l.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        let p = PortalProc { child: Some(child), log };
        assert!(p.wait_for_log("listening on", Duration::from_secs(10)), "portal did not start:\n{}", p.log());
        p
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits until `needle` occurs at least `n` times in the log.
    pub fn wait_for_log_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if self.log().matches(needle).count() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Redirect destinations logged so far, in order.
    pub fn redirects(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| l.split("redirect to ").nth(1))
            .map(|r| r.split(' ').next().unwrap_or("").to_string())
            .collect()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of the child we started.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGTERM, then wait for the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: as above.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok()
    }
}

impl Drop for PortalProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `../shared/tools/iscsiadm-userspace.sh ARGS` as `initiator`, one at
/// a time on this machine: the script's stand-in for iscsid listens on one
/// abstract socket name, so two runs at once would share it and one would
/// lose it mid-discovery ("read error, daemon died?").
pub fn iscsiadm_userspace(script: &Path, args: &[&str], initiator: &str) -> std::process::Output {
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    let _g = IN_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
    let lock =
        std::fs::OpenOptions::new().create(true).append(true).open("/tmp/santools-iscsiadm-userspace.lock").unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a valid descriptor; released when `lock` closes.
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    Command::new("bash").arg(script).args(args).env("INITIATOR", initiator).output().unwrap()
}

/// Runs a libiscsi tool with a time bound, returning (status, stdout+stderr).
pub fn libiscsi(tool: &str, args: &[&str], timeout: Duration) -> (Option<i32>, String) {
    let mut c = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        if let Ok(Some(_)) = c.try_wait() {
            break;
        }
        if t.elapsed() > timeout {
            let _ = c.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = c.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&o.stderr));
    (o.status.code(), text)
}
