//! Running as a service: signals (SIGHUP reloads, SIGUSR1 drops cached
//! portal lists, SIGTERM/SIGINT drain and exit), the PID file of a
//! background daemon (`-D`), and stopping (`-k`) or signalling it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::{fork, ForkResult, Pid};

use crate::shared::file_lock::open_or_create;

/// What a signal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Reload,
    /// Drop cached node answers and portal lists (SIGUSR1).
    Invalidate,
    Shutdown,
}

fn control_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGHUP);
    set.add(Signal::SIGUSR1);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set
}

/// Blocks the control signals in the calling thread (and so in every
/// thread it starts afterwards) and starts a thread that waits for them.
pub fn handle_signals(on: impl Fn(Control) -> bool + Send + 'static) -> anyhow::Result<()> {
    let set = control_signals();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).context("blocking signals")?;
    std::thread::Builder::new().name("signals".into()).spawn(move || loop {
        let Ok(sig) = set.wait() else { continue };
        let control = match sig {
            Signal::SIGHUP => Control::Reload,
            Signal::SIGUSR1 => Control::Invalidate,
            _ => Control::Shutdown,
        };
        if !on(control) {
            return;
        }
    })?;
    Ok(())
}

/// A PID file that stays locked while the daemon runs, so a second daemon
/// on the same file is refused and `-k` can tell a stale file from a live one.
/// Taken before `-D` forks (the lock is inherited), so a held PID file is
/// reported on the terminal; the child then writes its own PID.
pub struct PidFile {
    file: File,
    path: PathBuf,
}

impl PidFile {
    /// Writes the calling process's PID into the locked file.
    pub fn write_pid(&mut self) -> anyhow::Result<()> {
        self.file.set_len(0)?;
        std::io::Seek::seek(&mut self.file, std::io::SeekFrom::Start(0))?;
        writeln!(self.file, "{}", std::process::id())?;
        self.file.sync_all()?;
        Ok(())
    }

    pub fn create(path: &Path) -> anyhow::Result<PidFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut file = open_or_create(path).with_context(|| format!("opening pid file {}", path.display()))?;
        // SAFETY: flock on a valid descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut s = String::new();
            let _ = file.read_to_string(&mut s);
            bail!("another iscsi-portal (pid {}) holds {}", s.trim(), path.display());
        }
        let mut pid = PidFile { file, path: path.to_path_buf() };
        pid.write_pid()?;
        Ok(pid)
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = &self.file;
    }
}

/// Whether some process holds the lock on the PID file.
fn pid_file_is_live(path: &Path) -> bool {
    let Ok(f) = File::open(path) else { return false };
    // SAFETY: flock on a valid descriptor; released when `f` closes.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
}

/// Whether `pid` is a running (not exited, not zombie) process.
fn process_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|c| c != 'Z' && c != 'X'),
        Err(_) => false,
    }
}

/// Whether `pid` runs the portal (guards against a recycled PID).
fn is_portal_process(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let c = String::from_utf8_lossy(&c);
            c.contains("iscsi-portal") || c.contains("iscsi_portal_daemon")
        })
        .unwrap_or(false)
}

/// Sends `sig` to the live daemon named in the PID file `path`.
pub fn signal_background(path: &Path, sig: Signal) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading pid file {}", path.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("pid file {} holds {:?}, not a pid", path.display(), text.trim()))?;
    if pid <= 1 {
        bail!("pid file {} holds pid {pid}, refusing to signal it", path.display());
    }
    if !pid_file_is_live(path) {
        let _ = std::fs::remove_file(path);
        bail!("no iscsi-portal is running (stale pid file {} removed)", path.display());
    }
    if !is_portal_process(pid) {
        bail!("pid {pid} in {} is not an iscsi-portal process; not signalling it", path.display());
    }
    nix::sys::signal::kill(Pid::from_raw(pid), sig).with_context(|| format!("signalling pid {pid}"))?;
    Ok(pid)
}

/// `-k`: SIGTERM to the daemon named in `path`, then wait for it to exit.
pub fn stop_background(path: &Path, wait: Duration) -> anyhow::Result<i32> {
    let pid = signal_background(path, Signal::SIGTERM)?;
    let deadline = super::nodes::deadline_after(wait);
    while Instant::now() < deadline {
        if !process_running(pid) {
            return Ok(pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("iscsi-portal (pid {pid}) did not exit within {}s", wait.as_secs())
}

/// Which side of the fork we are on.
pub enum Daemonized {
    /// The foreground process: the daemon reported it started.
    Parent { pid: i32 },
    /// The background process; call `ready()` once serving.
    Child(Readiness),
}

/// The child's end of the start-up pipe.
pub struct Readiness(Option<File>);

impl Readiness {
    /// Tells the waiting parent that start-up succeeded.
    pub fn ready(&mut self) {
        if let Some(mut f) = self.0.take() {
            let _ = f.write_all(b"1");
        }
    }

    /// Tells the waiting parent why start-up failed (it prints it on the
    /// terminal, where `-D` was typed).
    pub fn failed(&mut self, why: &str) {
        if let Some(mut f) = self.0.take() {
            let _ = f.write_all(format!("0{why}").as_bytes());
        }
    }
}

/// Forks into the background (before any thread is started). The parent
/// waits until the child signals readiness or dies.
pub fn daemonize() -> anyhow::Result<Daemonized> {
    let (r, w) = nix::unistd::pipe().context("pipe")?;
    // SAFETY: called before the process starts any thread.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Parent { child } => {
            drop(w);
            let mut rf = File::from(r);
            let mut msg = Vec::new();
            let _ = Read::by_ref(&mut rf).take(4096).read_to_end(&mut msg);
            match msg.split_first() {
                Some((b'1', _)) => Ok(Daemonized::Parent { pid: child.as_raw() }),
                Some((b'0', why)) => {
                    bail!("the background daemon failed to start: {}", String::from_utf8_lossy(why))
                }
                _ => bail!("the background daemon (pid {child}) exited before it was ready (see syslog)"),
            }
        }
        ForkResult::Child => {
            drop(r);
            nix::unistd::setsid().context("setsid")?;
            std::env::set_current_dir("/").context("chdir /")?;
            let null = OpenOptions::new().read(true).write(true).open("/dev/null").context("/dev/null")?;
            for fd in 0..=2 {
                // SAFETY: dup2 onto the standard descriptors.
                unsafe { libc::dup2(null.as_raw_fd(), fd) };
            }
            let w: OwnedFd = w;
            // SAFETY: `w` is an owned, open descriptor transferred into the File.
            let f = unsafe { File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(w)) };
            Ok(Daemonized::Child(Readiness(Some(f))))
        }
    }
}
