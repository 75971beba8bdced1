//! A small iSCSI lab on loopback for the portal tests: tgtd nodes on their
//! own 127.0.x.y addresses (each with its own control port), and the
//! portal daemon. Every process is started here and stopped by PID.

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

/// A unique third octet per lab, so parallel tests never share addresses.
fn next_lab_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id() % 50 * 4;
    10 + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % 240
}

pub struct Lab {
    pub id: u32,
    pub dir: tempfile::TempDir,
    pub nodes: Vec<TgtNode>,
}

pub struct TgtNode {
    pub ip: String,
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
    fn start(ip: String, control: u32, dir: &Path) -> TgtNode {
        let child = Command::new("tgtd")
            .args(["-f", "-C", &control.to_string(), "--iscsi", &format!("portal={ip}:{NODE_PORT}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tgtd");
        assert!(wait_for_port(&format!("{ip}:{NODE_PORT}"), Duration::from_secs(10)), "tgtd on {ip} did not start");
        let lun_file = dir.join(format!("lun-{ip}.img"));
        std::fs::write(&lun_file, vec![0u8; 16 << 20]).unwrap();
        TgtNode { ip, control, child: Some(child), lun_file }
    }

    pub fn tgtadm(&self, args: &[&str]) {
        let o = Command::new("tgtadm")
            .args(["-C", &self.control.to_string(), "--lld", "iscsi"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "tgtadm {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// A target with one 16 MiB LUN that only `initiators` may see.
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
            self.tgtadm(&["--op", "bind", "--mode", "target", "--tid", &tid, "-Q", i]);
        }
    }

    pub fn addr(&self) -> String {
        format!("{}:{NODE_PORT}", self.ip)
    }

    /// Kills this node's tgtd (by PID): the node is down.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TgtNode {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Lab {
    /// `n` tgtd nodes on 127.0.<id>.1..n.
    pub fn new(n: u32) -> Lab {
        let id = next_lab_id();
        let dir = tempfile::tempdir().unwrap();
        let nodes = (1..=n).map(|i| TgtNode::start(format!("127.0.{id}.{i}"), 3000 + id * 8 + i, dir.path())).collect();
        Lab { id, dir, nodes }
    }

    pub fn portal_ip(&self) -> String {
        format!("127.0.{}.100", self.id)
    }

    pub fn portal_url(&self) -> String {
        format!("iscsi://{}:{PORTAL_PORT}", self.portal_ip())
    }

    /// A portal configuration for this lab; `extra` goes into [portal].
    pub fn config(&self, extra: &str) -> PathBuf {
        let nodes: String =
            self.nodes.iter().enumerate().map(|(i, n)| format!("\"node{}\" = [\"{}\"]\n", i + 1, n.ip)).collect();
        let text = format!(
            "[portal]\nlisten = [\"{ip}:{PORTAL_PORT}\"]\nstate_time_sec = 2\nstate_directory = \"{dir}/state\"\npid_file = \"{dir}/portal.pid\"\nupstream_connect_timeout_ms = 500\nupstream_response_timeout_ms = 1000\n{extra}\n\n[[portal.discovery_portals]]\naddress = \"{ip}\"\nportal_group_name = \"pg_test\"\nportal_port = {NODE_PORT}\n[portal.discovery_portals.portal_addresses]\n{nodes}",
            ip = self.portal_ip(),
            dir = self.dir.path().display(),
        );
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
