//! `targets apply` against real tgtd instances: each test starts its own
//! tgtd on a control port and a 127.x.y.1 portal probed free (other
//! engineers run tgtd on this machine too), drives it with libiscsi's
//! initiators, and stops it by PID.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::iscsi_lab::{iscsi_tools_present, libiscsi};

const I1: &str = "iqn.2024-01.test:init1";
const I2: &str = "iqn.2024-01.test:init2";
const STRANGER: &str = "iqn.2024-01.test:stranger";
const PREFIX: &str = "iqn.2024-01.test:santools";

fn address_free(ip: &str) -> bool {
    TcpListener::bind((ip, 3260)).is_ok()
}

pub struct Tgtd {
    pub ip: String,
    pub port: u32,
    child: Option<Child>,
}

impl Tgtd {
    /// Starts tgtd on a free control port and portal address.
    pub fn start() -> Tgtd {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        for _ in 0..50 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let seed = std::process::id() % 97 * 41 + n * 7;
            let port = 21000 + seed % 9000;
            let ip = format!("127.113.{}.{}", seed % 250 + 1, n % 250 + 1);
            if tgtd_control_port_busy(port) || !address_free(&ip) {
                continue;
            }
            let mut child = Command::new("tgtd")
                .args(["-f", "-C", &port.to_string(), "--iscsi", &format!("portal={ip}:3260")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting tgtd");
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // lost a race for the port or address: try another
                }
                if TcpStream::connect_timeout(&format!("{ip}:3260").parse().unwrap(), Duration::from_millis(200))
                    .is_ok()
                    && Command::new("tgtadm")
                        .args(["-C", &port.to_string(), "--op", "show", "--mode", "sys"])
                        .output()
                        .is_ok_and(|o| o.status.success())
                {
                    return Tgtd { ip, port, child: Some(child) };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            remove_tgtd_control_files(port);
        }
        panic!("no free tgtd control port / portal address found");
    }

    pub fn show(&self) -> String {
        let o = Command::new("tgtadm")
            .args(["-C", &self.port.to_string(), "--lld", "iscsi", "--op", "show", "--mode", "target"])
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8(o.stdout).unwrap()
    }

    pub fn url(&self, iqn: &str, lun: u32) -> String {
        format!("iscsi://{}:3260/{iqn}/{lun}", self.ip)
    }

    /// I_T nexus ids of the target named `iqn` (parsed with santools' parser).
    pub fn nexuses(&self, iqn: &str) -> Vec<u64> {
        let t = santools::targets::live::tgt::parse_show_targets(&self.show()).unwrap();
        t.iter().find(|t| t.iqn == iqn).map(|t| t.nexuses.iter().map(|n| n.sid).collect()).unwrap_or_default()
    }

    pub fn wait_for_nexus(&self, iqn: &str, not: &[u64], timeout: Duration) -> Option<u64> {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if let Some(s) = self.nexuses(iqn).into_iter().find(|s| !not.contains(s)) {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        // tgtd ignores SIGTERM while it has targets: SIGKILL our own PID.
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            remove_tgtd_control_files(self.port);
        }
    }
}

/// A libiscsi initiator generating I/O until dropped.
pub struct Perf(Child);

impl Perf {
    pub fn start(initiator: &str, url: &str) -> Perf {
        Perf(
            Command::new("iscsi-perf")
                .args(["-i", initiator, "-m", "4", "-x", "1000", url])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("iscsi-perf"),
        )
    }
    fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Setup {
    pub tgtd: Tgtd,
    dir: tempfile::TempDir,
    inventory: PathBuf,
    log: PathBuf,
    shim: PathBuf,
}

impl Setup {
    fn new() -> Option<Setup> {
        if !real_component("root", is_root(), "tgtd needs root") || !iscsi_tools_present() {
            return None;
        }
        let tgtd = Tgtd::start();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("luns")).unwrap();
        for lv in ["lv_alpha", "lv_beta"] {
            std::fs::write(dir.path().join("luns").join(lv), vec![0u8; 8 << 20]).unwrap();
        }
        // An argv-logging tgtadm: proves what apply ran.
        let log = dir.path().join("tgtadm.log");
        let shim = dir.path().join("tgtadm-shim");
        std::fs::write(&shim, format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec tgtadm \"$@\"\n", log.display()))
            .unwrap();
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let inventory = dir.path().join("inventory.toml");
        let s = Setup { tgtd, dir, inventory, log, shim };
        s.write_inventory(&[I1], true, true);
        Some(s)
    }

    pub fn iqn(&self, lv: &str) -> String {
        format!("{PREFIX}.pg-test.vg-files.{}", lv.replace('_', "-"))
    }

    fn write_inventory(&self, alpha_initiators: &[&str], alpha_up: bool, beta: bool) {
        let inits: Vec<String> = alpha_initiators.iter().map(|i| format!("\"{i}\"")).collect();
        let mut t = format!(
            "[targets]\nprefix = \"{PREFIX}\"\nhosts = [\"node1\"]\nport = 3260\ntarget_options = [[\"ImmediateData\", \"No\"]]\n\
             [targets.file_groups]\nvg_files = \"{luns}\"\n[targets.portal_groups.pg_test]\nnode1 = [\"{ip}\"]\n\n\
             [[targets.target]]\nstate = \"{state}\"\ndevice = \"{luns}/lv_alpha\"\nio = \"fileio\"\nserial = \"SANT-ALPHA\"\nportal_group = \"pg_test\"\ninitiators = [{inits}]\n",
            luns = self.dir.path().join("luns").display(),
            ip = self.tgtd.ip,
            state = if alpha_up { "up" } else { "down" },
            inits = inits.join(", "),
        );
        if beta {
            t.push_str(&format!(
                "\n[[targets.target]]\nstate = \"up\"\ndevice = \"{}/lv_beta\"\nio = \"blockio\"\nserial = \"SANT-BETA\"\nportal_group = \"pg_test\"\ninitiators = [\"{I2}\"]\nincoming_users = [{{ user = \"beta\", secret = \"beta-secret-12\" }}]\n",
                self.dir.path().join("luns").display()
            ));
        }
        std::fs::write(&self.inventory, t).unwrap();
    }

    fn apply(&self, extra: &[&str]) -> std::process::Output {
        std::fs::write(&self.log, "").unwrap();
        let mut c = tool("targets");
        c.args(["apply", "--node", "node1", "-C", &self.tgtd.port.to_string()])
            .arg("--inventory")
            .arg(&self.inventory)
            .arg("--tgtadm-path")
            .arg(&self.shim)
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .args(extra);
        run(&mut c)
    }

    fn writes(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter(|l| !l.contains("--op show"))
            .map(str::to_string)
            .collect()
    }
}

/// A tgtd with the test inventory applied.
pub fn setup() -> Option<Setup> {
    let s = Setup::new()?;
    let o = s.apply(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    Some(s)
}

fn code(o: &std::process::Output) -> Option<i32> {
    o.status.code()
}

#[test]
fn targets_apply_from_empty_then_reapply_writes_nothing() {
    let Some(s) = Setup::new() else { return };
    let o = s.apply(&[]);
    assert_eq!(code(&o), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains(&format!("+ {}", s.iqn("lv_alpha"))), "{}", stdout(&o));
    let show = s.tgtd.show();
    assert!(show.contains(&s.iqn("lv_alpha")) && show.contains(&s.iqn("lv_beta")), "{show}");
    assert!(show.contains("SCSI ID: SANT-ALPHA") && show.contains("0.0.0.0/32") && show.contains(I1), "{show}");
    assert!(!s.writes().is_empty());
    // The printed plan never shows the CHAP secret.
    assert!(!stdout(&o).contains("beta-secret-12"), "{}", stdout(&o));
    let o = s.apply(&[]);
    assert_eq!(code(&o), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(s.writes(), Vec::<String>::new(), "a second apply ran tgtadm writes");
    assert!(stdout(&o).lines().all(|l| l.starts_with("= ")), "{}", stdout(&o));
}

#[test]
fn targets_apply_adds_an_initiator_without_touching_the_session() {
    let Some(s) = Setup::new() else { return };
    assert_eq!(code(&s.apply(&[])), Some(0));
    let alpha = s.iqn("lv_alpha");
    let mut perf = Perf::start(I1, &s.tgtd.url(&alpha, 1));
    let sid = s.tgtd.wait_for_nexus(&alpha, &[], Duration::from_secs(20)).expect("iscsi-perf logged in");
    s.write_inventory(&[I1, I2], true, true);
    let o = s.apply(&[]);
    assert_eq!(code(&o), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(s.writes().len(), 1, "{:?}", s.writes());
    assert!(s.writes()[0].contains("--op bind") && s.writes()[0].contains(I2));
    assert_eq!(s.tgtd.nexuses(&alpha), [sid], "the session changed");
    assert!(perf.running());
    let (st, out) = libiscsi("iscsi-inq", &["-i", I2, &s.tgtd.url(&alpha, 1)], Duration::from_secs(20));
    assert_eq!(st, Some(0), "{out}");
}

#[test]
fn targets_apply_refuses_to_remove_a_target_with_a_session_unless_forced() {
    let Some(s) = Setup::new() else { return };
    assert_eq!(code(&s.apply(&[])), Some(0));
    let alpha = s.iqn("lv_alpha");
    let _perf = Perf::start(I1, &s.tgtd.url(&alpha, 1));
    let sid = s.tgtd.wait_for_nexus(&alpha, &[], Duration::from_secs(20)).expect("iscsi-perf logged in");
    s.write_inventory(&[I1], false, true);
    let before = s.tgtd.show();
    let o = s.apply(&[]);
    assert_eq!(code(&o), Some(3), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains(I1) && stderr(&o).contains("127.0.0.1"), "{}", stderr(&o));
    assert_eq!(s.writes(), Vec::<String>::new());
    assert_eq!(s.tgtd.nexuses(&alpha), [sid]);
    assert_eq!(
        santools::targets::live::tgt::parse_show_targets(&before).unwrap().len(),
        santools::targets::live::tgt::parse_show_targets(&s.tgtd.show()).unwrap().len()
    );
    // A dry run says the same and changes nothing either.
    assert_eq!(code(&s.apply(&["--dry-run"])), Some(3));
    let o = s.apply(&["--force"]);
    assert_eq!(code(&o), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(!s.tgtd.show().contains(&alpha), "{}", s.tgtd.show());
    assert!(s.tgtd.show().contains(&s.iqn("lv_beta")));
}

#[test]
fn targets_apply_resizes_a_grown_lun_only_when_forced_and_the_initiator_reconnects() {
    let Some(s) = Setup::new() else { return };
    assert_eq!(code(&s.apply(&[])), Some(0));
    let alpha = s.iqn("lv_alpha");
    let mut perf = Perf::start(I1, &s.tgtd.url(&alpha, 1));
    let sid = s.tgtd.wait_for_nexus(&alpha, &[], Duration::from_secs(20)).expect("iscsi-perf logged in");
    let f = std::fs::OpenOptions::new().write(true).open(s.dir.path().join("luns/lv_alpha")).unwrap();
    f.set_len(24 << 20).unwrap();
    let o = s.apply(&[]);
    assert_eq!(code(&o), Some(3), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("resize"), "{}", stdout(&o));
    assert_eq!(s.tgtd.nexuses(&alpha), [sid]);
    let o = s.apply(&["--force"]);
    assert_eq!(code(&o), Some(0), "{}{}", stdout(&o), stderr(&o));
    let live = santools::targets::live::tgt::parse_show_targets(&s.tgtd.show()).unwrap();
    let t = live.iter().find(|t| t.iqn == alpha).unwrap();
    assert_eq!(t.luns.iter().find(|l| l.lun == 1).unwrap().size_mb, 25, "24 MiB is 25 MB in tgt's units");
    assert_eq!(t.state, "ready");
    let new = s.tgtd.wait_for_nexus(&alpha, &[sid], Duration::from_secs(60));
    assert!(new.is_some() && perf.running(), "iscsi-perf did not reconnect");
    let (st, out) = libiscsi("iscsi-readcapacity16", &["-i", I1, &s.tgtd.url(&alpha, 1)], Duration::from_secs(20));
    assert_eq!(st, Some(0), "{out}");
    assert!(out.contains(&format!("{}", (24u64 << 20) / 512 - 1)) || out.contains("25165824"), "{out}");
    // The record now holds the new size: the next apply is a no-op.
    let o = s.apply(&[]);
    assert_eq!(code(&o), Some(0));
    assert_eq!(s.writes(), Vec::<String>::new());
}

#[test]
fn targets_apply_unlisted_initiator_can_neither_log_in_nor_discover() {
    let Some(s) = Setup::new() else { return };
    assert_eq!(code(&s.apply(&[])), Some(0));
    let alpha = s.iqn("lv_alpha");
    let portal = format!("iscsi://{}:3260", s.tgtd.ip);
    let (_, listed) = libiscsi("iscsi-ls", &["-i", I1, &portal], Duration::from_secs(20));
    assert!(listed.contains(&alpha), "{listed}");
    let (_, hidden) = libiscsi("iscsi-ls", &["-i", STRANGER, &portal], Duration::from_secs(20));
    assert!(!hidden.contains(&alpha) && !hidden.contains(&s.iqn("lv_beta")), "{hidden}");
    let (st, out) = libiscsi("iscsi-inq", &["-i", STRANGER, &s.tgtd.url(&alpha, 1)], Duration::from_secs(20));
    assert_ne!(st, Some(0), "a stranger logged in: {out}");
    let (st, out) = libiscsi("iscsi-inq", &["-i", I1, &s.tgtd.url(&alpha, 1)], Duration::from_secs(20));
    assert_eq!(st, Some(0), "{out}");
    // CHAP: the listed initiator without the secret is refused, with it admitted.
    let beta = s.iqn("lv_beta");
    let (st, _) = libiscsi("iscsi-inq", &["-i", I2, &s.tgtd.url(&beta, 1)], Duration::from_secs(20));
    assert_ne!(st, Some(0));
    let url = format!("iscsi://beta%beta-secret-12@{}:3260/{beta}/1", s.tgtd.ip);
    let (st, out) = libiscsi("iscsi-inq", &["-i", I2, &url], Duration::from_secs(20));
    assert_eq!(st, Some(0), "{out}");
}

/// Finding T5 (attack-targets): a dry run (and a refused or failed one)
/// created the state directory and its lock file.
#[test]
fn targets_apply_dry_or_failed_creates_nothing() {
    let Some(s) = Setup::new() else { return };
    let state = s.dir.path().join("state");
    let o = s.apply(&["--dry-run"]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("+ {}", s.iqn("lv_alpha"))), "{}", stdout(&o));
    assert!(!state.exists(), "a dry run created {}", state.display());
    // tgtd unreachable (a control port nobody serves): an error, nothing made.
    let mut c = tool("targets");
    c.args(["apply", "--node", "node1", "-C", "1"]).arg("--inventory").arg(&s.inventory);
    c.arg("--state-dir").arg(&state);
    let o = run(&mut c);
    assert_eq!(code(&o), Some(2), "{}", stderr(&o));
    assert!(!state.exists(), "a failed run created {}", state.display());
    assert_eq!(s.writes(), Vec::<String>::new());
    assert!(!s.tgtd.show().contains(&s.iqn("lv_alpha")));
}

/// Finding T6 (attack-targets): root's apply used a state directory
/// another user could write: a record symlinked to any file was
/// overwritten with the record, a lock symlink created its target.
#[test]
fn targets_apply_refuses_a_state_dir_others_control() {
    use std::os::unix::fs::PermissionsExt;
    let Some(s) = Setup::new() else { return };
    let state = s.dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let victim = s.dir.path().join("victim");
    std::fs::write(&victim, "{\"version\":1,\"targets\":{}}").unwrap();
    std::os::unix::fs::symlink(&victim, state.join("tgt-last-applied.json")).unwrap();
    std::os::unix::fs::symlink(s.dir.path().join("made"), state.join("tgt-apply.lock")).unwrap();
    for (uid, mode) in [(65534, 0o755), (0, 0o777)] {
        std::os::unix::fs::lchown(&state, Some(uid), None).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(mode)).unwrap();
        let o = s.apply(&[]);
        assert_eq!(code(&o), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("another user could plant files"), "{}", stderr(&o));
        assert_eq!(s.writes(), Vec::<String>::new());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "{\"version\":1,\"targets\":{}}");
        assert!(!s.dir.path().join("made").exists());
    }
}

#[test]
fn targets_apply_is_locked_against_a_concurrent_apply() {
    let Some(s) = Setup::new() else { return };
    std::fs::create_dir_all(s.dir.path().join("state")).unwrap();
    let lock = s.dir.path().join("state/tgt-apply.lock");
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on our own open file.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    let o = s.apply(&[]);
    assert_eq!(code(&o), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("locked"), "{}", stderr(&o));
    assert_eq!(s.writes(), Vec::<String>::new());
    drop(f);
}
