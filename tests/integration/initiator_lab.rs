//! tgtd nodes for the initiator tests, on loopback addresses and tgtd
//! control ports probed free (the machine is shared: other engineers run
//! tgtd too). Every daemon is started here and stopped by its PID.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::helpers::*;

pub const PORT: u16 = 13260;

/// tgt, libiscsi's tools (the reference), and root for tgtd.
pub fn tgt_present() -> bool {
    let missing: Vec<&str> =
        ["tgtd", "tgtadm", "iscsi-ls", "iscsi-readcapacity16"].into_iter().filter(|t| which(t).is_none()).collect();
    real_component(
        "tgt + libiscsi-bin",
        missing.is_empty(),
        &format!("missing {missing:?} (apt-get install tgt libiscsi-bin)"),
    )
}

fn next_slot() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    (std::process::id().wrapping_mul(7919) + NEXT.fetch_add(1, Ordering::Relaxed)) % 60_000
}

fn port_answers(addr: &str) -> bool {
    let a: SocketAddr = addr.parse().unwrap();
    TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok()
}

/// A tgtd of our own.
pub struct Tgt {
    pub ip: String,
    pub control: u32,
    child: Option<Child>,
    pub dir: PathBuf,
    extra: String,
}

impl Tgt {
    /// Starts tgtd on a free 127.x.y.z address and control port.
    /// `iscsi_opts` are appended to `--iscsi portal=...` (e.g. nop_interval=1).
    pub fn start(dir: &Path, iscsi_opts: &str) -> Tgt {
        for _ in 0..40 {
            let slot = next_slot();
            let ip = format!("127.{}.{}.{}", 120 + slot % 100, (slot / 100) % 250 + 1, 1 + (slot / 25_000) % 200);
            let control = 20_000 + slot % 12_000;
            if tgtd_control_port_busy(control) {
                continue;
            }
            // The address is free if we can bind the iSCSI port on it.
            match TcpListener::bind(format!("{ip}:{PORT}")) {
                Ok(l) => drop(l),
                Err(_) => continue,
            }
            let mut t = Tgt { ip, control, child: None, dir: dir.to_path_buf(), extra: iscsi_opts.to_string() };
            if t.spawn() {
                return t;
            }
        }
        panic!("no free address / tgtd control port found");
    }

    fn spawn(&mut self) -> bool {
        let mut portal = format!("portal={}:{PORT}", self.ip);
        if !self.extra.is_empty() {
            portal.push(',');
            portal.push_str(&self.extra);
        }
        let log = std::fs::File::create(self.dir.join(format!("tgtd-{}.log", self.ip))).unwrap();
        let mut child = Command::new("tgtd")
            .args(["-f", "-C", &self.control.to_string(), "--iscsi", &portal])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting tgtd");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // control port or address taken after all
            }
            if port_answers(&self.addr()) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        let _ = child.kill();
        let _ = child.wait();
        remove_tgtd_control_files(self.control);
        false
    }

    pub fn addr(&self) -> String {
        format!("{}:{PORT}", self.ip)
    }

    pub fn portal_url(&self) -> String {
        format!("iscsi://{}", self.addr())
    }

    pub fn lun_url(&self, target: &str, lun: u16) -> String {
        format!("iscsi://{}/{target}/{lun}", self.addr())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn tgtadm_out(&self, args: &[&str]) -> std::process::Output {
        Command::new("tgtadm").args(["-C", &self.control.to_string(), "--lld", "iscsi"]).args(args).output().unwrap()
    }

    pub fn tgtadm(&self, args: &[&str]) -> String {
        let o = self.tgtadm_out(args);
        assert!(o.status.success(), "tgtadm {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn target(&self, tid: u32, name: &str, initiators: &[&str]) {
        let tid = tid.to_string();
        self.tgtadm(&["--op", "new", "--mode", "target", "--tid", &tid, "-T", name]);
        for i in initiators {
            self.tgtadm(&["--op", "bind", "--mode", "target", "--tid", &tid, "-Q", i]);
        }
    }

    pub fn lun(&self, tid: u32, lun: u16, backing: &Path, block_size: u32) {
        let (tid, lun, bs) = (tid.to_string(), lun.to_string(), block_size.to_string());
        self.tgtadm(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            &tid,
            "--lun",
            &lun,
            "-b",
            backing.to_str().unwrap(),
            "--blocksize",
            &bs,
        ]);
    }

    /// A CHAP account bound to the target (outgoing: the target's own, for mutual CHAP).
    pub fn account(&self, tid: u32, user: &str, password: &str, outgoing: bool) {
        self.tgtadm(&["--op", "new", "--mode", "account", "--user", user, "--password", password]);
        let tid = tid.to_string();
        let mut args = vec!["--op", "bind", "--mode", "account", "--tid", &tid, "--user", user];
        if outgoing {
            args.push("--outgoing");
        }
        self.tgtadm(&args);
    }

    /// Session ids with a connection on target `tid`.
    pub fn sessions(&self, tid: u32) -> Vec<String> {
        let o = self.tgtadm_out(&["--op", "show", "--mode", "conn", "--tid", &tid.to_string()]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Session: ").map(|s| s.trim().to_string()))
            .collect()
    }

    /// Closes every connection to target `tid` from the target's side.
    pub fn kill_connections(&self, tid: u32) -> usize {
        let sids = self.sessions(tid);
        for sid in &sids {
            let _ = self.tgtadm_out(&[
                "--op",
                "delete",
                "--mode",
                "conn",
                "--tid",
                &tid.to_string(),
                "--sid",
                sid,
                "--cid",
                "0",
            ]);
        }
        sids.len()
    }

    /// Kills tgtd (by PID).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            remove_tgtd_control_files(self.control);
        }
    }

    /// Starts tgtd again on the same address and control port.
    pub fn restart(&mut self) {
        self.stop();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("tgtd did not restart on {}", self.addr());
    }
}

impl Drop for Tgt {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A backing file of `len` deterministic pseudo-random bytes.
pub fn backing_file(dir: &Path, name: &str, len: usize, seed: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, Rng(seed).bytes(len)).unwrap();
    p
}
