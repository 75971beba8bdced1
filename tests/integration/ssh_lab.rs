//! A real sshd for one test: on a free loopback address and port, with a
//! generated host key and client key, no passwords; the test writes the
//! known_hosts file, so host keys are checked. Stopped by PID on drop.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub port: u16,
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
    child: Child,
}

fn free_port(addr: &str) -> u16 {
    let l = std::net::TcpListener::bind(format!("{addr}:0")).unwrap();
    l.local_addr().unwrap().port()
}

impl Sshd {
    /// None (skipped loudly, or a failure under SANTOOLS_REQUIRE_REAL=1)
    /// when sshd is missing or we are not root.
    pub fn start() -> Option<Sshd> {
        let sshd = which("sshd");
        if sshd.is_none() || which("ssh-keygen").is_none() || !is_root() {
            real_component("openssh-server", false, "sshd and ssh-keygen as root are needed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (k, t) in [("host_key", "ed25519"), ("id_client", "ed25519")] {
            let o = Command::new("ssh-keygen").args(["-q", "-t", t, "-N", "", "-f"]).arg(d.join(k)).output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        std::fs::copy(d.join("id_client.pub"), d.join("authorized_keys")).unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        // A loopback address of our own (127.0.0.0/8 is all loopback).
        let pid = std::process::id();
        let addr = format!("127.{}.{}.{}", 9 + (pid >> 16) % 200, (pid >> 8) % 250, 2 + pid % 250);
        let port = free_port(&addr);
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {addr}:{port}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel ERROR\n",
                d.join("host_key").display(),
                d.join("authorized_keys").display(),
                d.join("sshd.pid").display()
            ),
        )
        .unwrap();
        let child = Command::new(sshd.unwrap())
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect((addr.as_str(), port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let mut parts = host_pub.split_whitespace();
        let known = format!("[{addr}]:{port} {} {}\n", parts.next().unwrap(), parts.next().unwrap());
        std::fs::write(d.join("known_hosts"), known).unwrap();
        Some(Sshd { identity: d.join("id_client"), known_hosts: d.join("known_hosts"), addr, port, child, dir })
    }

    /// `[archive.copy]` / `[sync]` style ssh settings for this server.
    pub fn ssh_toml(&self) -> String {
        format!(
            "ssh_port = {}\nssh_identity = {:?}\nssh_options = [\"UserKnownHostsFile={}\", \"IdentitiesOnly=yes\"]\n",
            self.port,
            self.identity,
            self.known_hosts.display()
        )
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
