//! Shared test helpers: running the binary, making volumes, and gating on
//! real components (skip loudly, or fail when SANTOOLS_REQUIRE_REAL=1).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_santools"))
}

/// `santools TOOL ARGS...`
pub fn tool(name: &str) -> Command {
    let mut c = Command::new(bin());
    c.arg(name);
    c.env_remove("SANTOOLS_FAILPOINT");
    c.stdin(Stdio::null());
    c
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running santools")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and asserts success, returning stdout.
pub fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(o.status.success(), "command failed: {:?}\nstdout: {}\nstderr: {}", cmd, stdout(&o), stderr(&o));
    stdout(&o)
}

/// Runs and asserts exit code 2 with all `needles` in stderr.
pub fn fails_with(cmd: &mut Command, needles: &[&str]) -> String {
    let o = run(cmd);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "expected exit 2 from {:?}\nstdout: {}\nstderr: {}", cmd, stdout(&o), err);
    for n in needles {
        assert!(err.contains(n), "stderr of {:?} lacks {:?}:\n{}", cmd, n, err);
    }
    assert!(!err.contains("panicked"), "panic: {err}");
    err
}

/// Deterministic pseudo-random bytes.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
}

pub const SEG: usize = 16384;

/// Overwrites `count` random segments of `data` with fresh random bytes;
/// returns the segment indices changed.
pub fn mutate_segments(rng: &mut Rng, data: &mut [u8], count: usize) -> Vec<usize> {
    let segs = data.len().div_ceil(SEG);
    let mut changed = Vec::new();
    for _ in 0..count {
        let s = rng.below(segs as u64) as usize;
        let end = ((s + 1) * SEG).min(data.len());
        rng.fill(&mut data[s * SEG..end]);
        changed.push(s);
    }
    changed
}

/// Independent recomputation of a checksum file with the reference crates.
pub fn reference_checksums(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for seg in data.chunks(SEG) {
        out.extend_from_slice(&crc32fast::hash(seg).to_le_bytes());
        let mm = murmur3::murmur3_32(&mut std::io::Cursor::new(seg), 0).unwrap();
        out.extend_from_slice(&mm.to_le_bytes());
    }
    out
}

pub fn require_real_components() -> bool {
    std::env::var("SANTOOLS_REQUIRE_REAL").is_ok_and(|v| v == "1")
}

/// Returns true if the component is usable; otherwise skips loudly, or
/// panics when SANTOOLS_REQUIRE_REAL=1.
pub fn real_component(name: &str, available: bool, why: &str) -> bool {
    if available {
        return true;
    }
    let msg = format!("SKIPPED: real component '{name}' unavailable: {why}");
    if require_real_components() {
        panic!("{msg} (SANTOOLS_REQUIRE_REAL=1 forbids skipping)");
    }
    eprintln!("\n**************** {msg} ****************\n");
    false
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no side effects.
    unsafe { libc::geteuid() == 0 }
}

pub fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
            .map(|d| d.join(cmd))
            .find(|p| p.is_file())
    })
}

pub fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap();
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Runs `cmd` to completion under GNU time; returns its output and its
/// peak resident set size in KiB. (getrusage of a child spawned from this
/// big test process would count this process's pages: the kernel carries
/// the parent's high-water mark over a vfork+exec.)
pub fn run_measuring_rss(cmd: &mut Command) -> (Output, u64) {
    let time = which("time").unwrap_or_else(|| PathBuf::from("/usr/bin/time"));
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut wrapped = Command::new(time);
    wrapped.arg("-f").arg("%M").arg("-o").arg(report.path()).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped.stdin(Stdio::null());
    let out = wrapped.output().expect("running under /usr/bin/time (Debian package time)");
    let text = std::fs::read_to_string(report.path()).unwrap_or_default();
    let kib = text.lines().filter_map(|l| l.trim().parse::<u64>().ok()).next_back().unwrap_or(u64::MAX);
    (out, kib)
}

/// Whether a running tgtd holds control port `port`: tgtd keeps a POSIX
/// (lockf) lock on /var/run/tgtd/socket.N.lock while it runs.
pub fn tgtd_control_port_busy(port: u32) -> bool {
    use std::os::fd::AsRawFd;
    let p = format!("/var/run/tgtd/socket.{port}.lock");
    let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).open(&p) else {
        return false;
    };
    // SAFETY: a zeroed flock is a valid argument; F_GETLK only fills it in.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    // SAFETY: F_GETLK on an open descriptor with a valid flock pointer.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl) };
    rc != 0 || fl.l_type != libc::F_UNLCK as i16
}

/// Removes the control socket and lock file of a tgtd we killed: tgtd
/// removes them only on a clean exit, and SIGKILL (the only signal it obeys
/// while it has targets) is not one, so every test run left two files per
/// tgtd in /var/run/tgtd. The port's lock is taken first, so a tgtd someone
/// else started on the port since keeps its files.
pub fn remove_tgtd_control_files(port: u32) {
    use std::os::fd::AsRawFd;
    let lock = format!("/var/run/tgtd/socket.{port}.lock");
    let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).open(&lock) else {
        return;
    };
    // SAFETY: a zeroed flock is a valid argument.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    // SAFETY: F_SETLK on an open descriptor with a valid flock pointer; the
    // lock goes with the descriptor.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) } != 0 {
        return; // a running tgtd owns the port now
    }
    let _ = std::fs::remove_file(format!("/var/run/tgtd/socket.{port}"));
    let _ = std::fs::remove_file(&lock);
}
