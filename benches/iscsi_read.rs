//! Sequential read of a LUN over iSCSI on loopback, in one run, side by
//! side: santools' initiator at queue depths 1, 8 and 32 (digests off and
//! on), libiscsi's `iscsi-perf` at the same depths and request size,
//! `qemu-img convert` (its iSCSI driver is libiscsi), and reading the
//! backing file directly (the ceiling). Then the nightly case: 1% of the
//! 16 KiB segments, scattered, read at queue depth 32 (ours) against
//! `iscsi-perf -r` (random reads).
//!
//! The `santools ddless` binary is measured as an administrator runs it:
//! `ddless -s iscsi://... -c X` (checksum only) at the same queue depths,
//! and `ddless -s iscsi://... -m MAP -c X -t FILE` with a ddmap flagging
//! the same 1% (wall and CPU of the whole process).
//!
//! Reports MB/s, the ratio to libiscsi, and CPU seconds per GB of the
//! initiator (user + system) and of tgtd.
//!
//! Run: `cargo bench --bench iscsi_read` (needs tgtd, libiscsi-bin,
//! qemu-utils; starts its own tgtd on a free loopback address and stops
//! it by PID). LUN_MIB (default 2048), SECONDS per iscsi-perf step
//! (default 8), REPS (default 3), NIGHTLY_RUNS (ddless -m runs per nightly
//! sample, default 10), BENCH_DIR (default /var/tmp), REQUEST_KIB (bytes
//! per READ for every reader, default 256), TGTD_MALLOC=tuned (tgtd with
//! fixed malloc thresholds), ONLY=nightly or ONLY=sequential, SPLIT_CPUS=1
//! (tgtd on CPU 0, this bench and every initiator on CPU 1: the nearest
//! this one machine comes to a target on its own host), BASELINE_SANTOOLS
//! (path of an earlier santools binary: its `ddless -c` rows run next to
//! this build's, in each repetition, for an A/B in one run), QEMU_IMG (a
//! qemu-img whose iscsi block module loads; Debian's needs
//! qemu-block-extra of its own version, see docs/performance.md).
//!
//! Rows are repeated REPS times, each row next to its libiscsi peer; the
//! table shows medians, the ratio of the medians, and the median (and
//! range) of the ratios within each repetition.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use santools::initiator::{DigestPref, InitiatorOptions, IscsiUrl, IscsiVolume};

const TARGET: &str = "iqn.2024-01.bench:lun";
const INITIATOR: &str = "iqn.2024-01.bench:initiator";
/// Bytes per READ for every reader (REQUEST_KIB, default 256 KiB).
fn request() -> usize {
    std::env::var("REQUEST_KIB").ok().and_then(|v| v.parse::<usize>().ok()).map_or(256 << 10, |k| k << 10)
}

struct Tgtd {
    child: Child,
    ctl: String,
    addr: String,
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // SIGKILL leaves tgtd's control socket and lock file behind.
        let _ = std::fs::remove_file(format!("/var/run/tgtd/socket.{}", self.ctl));
        let _ = std::fs::remove_file(format!("/var/run/tgtd/socket.{}.lock", self.ctl));
    }
}

impl Tgtd {
    fn tgtadm(&self, args: &[&str]) {
        let s = Command::new("tgtadm").args(["-C", &self.ctl, "--lld", "iscsi"]).args(args).status().unwrap();
        assert!(s.success(), "tgtadm {args:?}");
    }

    /// CPU seconds (user + system) tgtd has used so far.
    fn cpu(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (ticks(11) + ticks(12)) / hz
    }
}

/// `TGTD_MALLOC=tuned`: tgtd with fixed glibc malloc thresholds. With the
/// defaults, tgtd's buffer per command (posix_memalign of the transfer
/// length) is mmapped, or taken from a heap that is trimmed and regrown,
/// until tgtd has freed a chunk several times larger: its CPU per GB then
/// depends on the largest command it has served since it started
/// (docs/performance.md, "The target's allocator").
const TUNED_MALLOC: [&str; 2] = ["MALLOC_MMAP_THRESHOLD_=33554432", "MALLOC_TRIM_THRESHOLD_=268435456"];

fn tgtd_malloc_tuned() -> bool {
    std::env::var("TGTD_MALLOC").is_ok_and(|v| v == "tuned")
}

/// `SPLIT_CPUS=1`: the target and the initiators on separate CPUs.
fn split_cpus() -> bool {
    std::env::var("SPLIT_CPUS").is_ok_and(|v| v == "1")
}

/// Moves this process, and so every thread and child it starts later, to `cpu`.
fn pin_self_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only read and write that set.
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    assert!(ok, "sched_setaffinity to CPU {cpu}: {}", std::io::Error::last_os_error());
}

fn start_tgtd(lun: &Path) -> Tgtd {
    for slot in 0..200u32 {
        let n = (std::process::id() + slot * 37) % 9000;
        let ip = format!("127.250.{}.{}", n / 200 + 1, n % 200 + 1);
        let ctl = (30_000 + n % 2700).to_string();
        if Path::new(&format!("/var/run/tgtd/socket.{ctl}")).exists() {
            continue;
        }
        if TcpListener::bind(format!("{ip}:3260")).is_err() {
            continue;
        }
        let addr = format!("{ip}:3260");
        // `taskset` execs tgtd, so the child is tgtd and its I/O threads
        // inherit the CPU.
        let mut cmd = if split_cpus() {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", "tgtd"]);
            c
        } else {
            Command::new("tgtd")
        };
        if tgtd_malloc_tuned() {
            cmd.envs(TUNED_MALLOC.iter().filter_map(|kv| kv.split_once('=')));
        }
        let mut child = cmd
            .args(["-f", "-C", &ctl, "--iscsi", &format!("portal={addr}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tgtd");
        let a: SocketAddr = addr.parse().unwrap();
        let t = Instant::now();
        let mut up = false;
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if TcpStream::connect_timeout(&a, Duration::from_millis(100)).is_ok() {
                up = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !up {
            let _ = child.kill();
            let _ = child.wait();
            continue;
        }
        let t = Tgtd { child, ctl, addr };
        t.tgtadm(&["--op", "new", "--mode", "target", "--tid", "1", "-T", TARGET]);
        t.tgtadm(&["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", lun.to_str().unwrap()]);
        t.tgtadm(&["--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"]);
        return t;
    }
    panic!("no free loopback address / tgtd control port");
}

/// CPU seconds (user + system) of this process, or of reaped children.
fn rusage(who: i32) -> f64 {
    // SAFETY: getrusage fills the struct.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut r) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(r.ru_utime) + tv(r.ru_stime)
}

struct Row {
    mbs: f64,
    cpu_per_gb: f64,
    tgtd_per_gb: f64,
}

/// One measurement: (bytes, wall seconds, initiator CPU seconds), or None.
type Sample = Option<(u64, f64, f64)>;

/// Runs `f` `reps` times (interleaved with the other rows by the caller),
/// keeping every sample; the table shows medians.
/// Per row: samples of (MB/s, initiator CPU s/GB, tgtd CPU s/GB).
type Rows = Vec<(String, Vec<(f64, f64, f64)>)>;

fn sample(rows: &mut Rows, name: &str, tgtd: &Tgtd, f: impl FnOnce() -> Sample) {
    let t0 = tgtd.cpu();
    let Some((bytes, wall, cpu)) = f() else { return };
    let tc = tgtd.cpu() - t0;
    let gb = bytes as f64 / 1e9;
    let s = (bytes as f64 / 1e6 / wall, cpu / gb, tc / gb);
    println!("{name:<48} {:>8.0} MB/s {:>6.2} CPU s/GB  tgtd {:>5.2} s/GB", s.0, s.1, s.2);
    match rows.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => v.push(s),
        None => rows.push((name.to_string(), vec![s])),
    }
}

fn median(v: &[(f64, f64, f64)]) -> Row {
    let mut by_rate: Vec<&(f64, f64, f64)> = v.iter().collect();
    by_rate.sort_by(|a, b| a.0.total_cmp(&b.0));
    let m = by_rate[by_rate.len() / 2];
    Row { mbs: m.0, cpu_per_gb: m.1, tgtd_per_gb: m.2 }
}

fn perf(url: &str, args: &[&str], secs: u64, block: usize) -> Sample {
    let mut cmd = Command::new("iscsi-perf");
    cmd.args(["-i", INITIATOR]).args(args).arg(url);
    let (out, wall, cpu) = run_child(cmd, secs);
    match perf_rate(&out) {
        Some(iops) => Some(((iops * block as f64 * wall) as u64, wall, cpu)),
        None => {
            println!("iscsi-perf {args:?}: no rate in its output: {out}");
            None
        }
    }
}

fn ours(addr: &str, qd: usize, digests: (bool, bool), size: u64) -> (u64, f64, f64) {
    let mut o = InitiatorOptions::new(INITIATOR);
    o.queue_depth = qd;
    o.max_transfer = request() as u32;
    // Digest rows say exactly what they want: tgt picks its own configured
    // CRC32C over an offer of "None,CRC32C" (seen in the 2026-11-30 run).
    if digests.0 || digests.1 {
        o.header_digest = if digests.0 { DigestPref::Crc32c } else { DigestPref::None };
        o.data_digest = if digests.1 { DigestPref::Crc32c } else { DigestPref::None };
    }
    let url = IscsiUrl::parse_lun(&format!("iscsi://{addr}/{TARGET}/1")).unwrap();
    let v = std::sync::Arc::new(IscsiVolume::open(&url, &o).unwrap());
    assert!(v.size() >= size, "the LUN is smaller than {size} bytes");
    // Readers and buffers as ddless -w 2 reads a LUN (santools::ddless::
    // ReadUnits): units of a quarter of what is in flight, one reader more
    // than the units in flight. (Until 2026-12-01 ddless, and this, read
    // 8 MiB buffers with -w threads; until 2026-11-30 evening this used
    // 4 MiB, which at qd 32 left the queue half empty.)
    let knob = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let units = santools::ddless::ReadUnits::plan(Some(v.bytes_in_flight()), 2, false);
    let (readers, chunk) = (knob("READERS", units.workers as u64), knob("CHUNK_KIB", units.bytes() as u64 >> 10) << 10);
    let cpu0 = rusage(libc::RUSAGE_SELF);
    let t0 = Instant::now();
    let hs: Vec<_> = (0..readers)
        .map(|w| {
            let v = std::sync::Arc::clone(&v);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; chunk as usize];
                let mut off = w * chunk;
                while off < size {
                    let n = (size - off).min(chunk) as usize;
                    v.read_at(&mut buf[..n], off).unwrap();
                    off += readers * chunk;
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    (size, t0.elapsed().as_secs_f64(), rusage(libc::RUSAGE_SELF) - cpu0)
}

/// 1% of the 16 KiB segments, spread over the LUN, read in batches.
/// The 1% of segments the nightly case reads (sorted, distinct).
fn sparse_picks(size: u64) -> Vec<u64> {
    let segs = size / 16384;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut picks: Vec<u64> = (0..segs / 100)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % segs
        })
        .collect();
    picks.sort_unstable();
    picks.dedup();
    picks
}

fn ours_sparse(addr: &str, size: u64) -> (u64, f64, f64) {
    let mut o = InitiatorOptions::new(INITIATOR);
    o.queue_depth = 32;
    let url = IscsiUrl::parse_lun(&format!("iscsi://{addr}/{TARGET}/1")).unwrap();
    let v = std::sync::Arc::new(IscsiVolume::open(&url, &o).unwrap());
    let picks = sparse_picks(size);
    let cpu0 = rusage(libc::RUSAGE_SELF);
    let t0 = Instant::now();
    // Batches of 256 segments, all in flight together (read_many).
    let mut bufs = vec![0u8; 256 * 16384];
    for batch in picks.chunks(256) {
        let mut reqs: Vec<(u64, &mut [u8])> =
            batch.iter().zip(bufs.chunks_mut(16384)).map(|(s, b)| (s * 16384, b)).collect();
        v.read_many(&mut reqs).unwrap();
    }
    (picks.len() as u64 * 16384, t0.elapsed().as_secs_f64(), rusage(libc::RUSAGE_SELF) - cpu0)
}

/// `santools ddless` as an administrator runs it, with the bench's
/// request size (a config file) and queue depth.
fn ddless(dir: &Path, qd: usize, workers: &str, args: &[&std::ffi::OsStr]) -> Command {
    ddless_of(env!("CARGO_BIN_EXE_santools").as_ref(), dir, qd, workers, args)
}

/// `ddless` of the santools binary at `bin`.
fn ddless_of(bin: &Path, dir: &Path, qd: usize, workers: &str, args: &[&std::ffi::OsStr]) -> Command {
    let cfg = dir.join("santools.toml");
    if !cfg.exists() {
        std::fs::write(&cfg, format!("[initiator]\nname = \"{INITIATOR}\"\nmax_transfer_kib = {}\n", request() >> 10))
            .unwrap();
    }
    let mut c = Command::new(bin);
    c.arg("ddless").arg("--config").arg(&cfg).args(["-q", "-w", workers, "--queue-depth", &qd.to_string()]).args(args);
    c
}

/// `santools ddmap --from-extents` of `extents` ("OFFSET LENGTH" lines) into `out`.
fn ddmap_from_extents(dir: &Path, extents: &str, size: u64, out: &Path) {
    let ext = dir.join("extents");
    std::fs::write(&ext, extents).unwrap();
    let ok = Command::new(env!("CARGO_BIN_EXE_santools"))
        .args(["ddmap", "--from-extents"])
        .arg(&ext)
        .args(["--size", &size.to_string(), "--name", "bench", "-t"])
        .arg(out)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// A run of ddless: (bytes it read, wall, CPU of the child).
fn ddless_sample(mut c: Command, bytes: u64) -> Sample {
    c.stdin(Stdio::null());
    let (_, wall, cpu) = run_child(c, 600);
    Some((bytes, wall, cpu))
}

/// Runs a child for at most `secs`, then SIGINT; returns (output, wall, CPU).
/// The wall time ends when wait4 returns (a blocking wait: polling would
/// round a 0.1 s run up to the polling step); a watchdog thread sends the
/// SIGINT.
fn run_child(mut c: Command, secs: u64) -> (String, f64, f64) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let t0 = Instant::now();
    #[allow(clippy::zombie_processes)]
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("peer tool");
    let pid = child.id() as i32;
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let reaped = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let reaped = Arc::clone(&reaped);
        std::thread::spawn(move || {
            while !reaped.load(Ordering::SeqCst) {
                if t0.elapsed() > Duration::from_secs(secs) {
                    // SAFETY: signalling our own child, not yet reaped.
                    unsafe { libc::kill(pid, libc::SIGINT) };
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut status = 0;
    // The child is reaped here with wait4 (for its rusage), not Child::wait.
    // SAFETY: zeroed rusage filled by wait4.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: blocking wait for our own child.
    while unsafe { libc::wait4(pid, &mut status, 0, &mut r) } < 0
        && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
    {}
    let wall = t0.elapsed().as_secs_f64();
    reaped.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (reader.join().unwrap(), wall, tv(r.ru_utime) + tv(r.ru_stime))
}

/// iscsi-perf's final "iops average N (X MB/s)" in bytes/s.
fn perf_rate(out: &str) -> Option<f64> {
    let last = out.split(['\r', '\n']).rfind(|l| l.contains("iops average"))?;
    let after = last.split("iops average").nth(1)?;
    let iops: f64 = after.split_whitespace().next()?.parse().ok()?;
    Some(iops)
}

fn main() {
    // Profiling aid: `ISCSI_READ_ONE=HOST:PORT QD=8 LUN_MIB=N` reads the
    // LUN of target iqn.2024-01.bench:lun once, nothing else (run it under
    // perf, strace or valgrind against a tgtd of your own).
    if let Ok(addr) = std::env::var("ISCSI_READ_ONE") {
        let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
        let (mut bytes, mut wall, mut cpu) = (0, 0.0, 0.0);
        for _ in 0..env("PASSES", 1) {
            let (b, w, c) = if env("SPARSE", 0) == 1 {
                ours_sparse(&addr, env("LUN_MIB", 2048) << 20)
            } else {
                ours(&addr, env("QD", 8) as usize, (false, false), env("LUN_MIB", 2048) << 20)
            };
            (bytes, wall, cpu) = (bytes + b, wall + w, cpu + c);
        }
        let gb = bytes as f64 / 1e9;
        println!("{:.0} MB/s, {:.2} CPU s/GB", bytes as f64 / 1e6 / wall, cpu / gb);
        return;
    }
    for t in ["tgtd", "tgtadm", "iscsi-perf"] {
        if Command::new("which").arg(t).output().map(|o| !o.status.success()).unwrap_or(true) {
            eprintln!("SKIPPED: {t} is not installed");
            return;
        }
    }
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (mib, secs, reps) = (env("LUN_MIB", 2048), env("SECONDS", 8), env("REPS", 3));
    let nightly_runs = env("NIGHTLY_RUNS", 10).max(1);
    let size = mib << 20;
    let dir = PathBuf::from(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()));
    let dir = tempfile::tempdir_in(dir).unwrap();
    let lun = dir.path().join("lun.img");
    {
        let mut data = vec![0u8; 64 << 20];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut f = std::fs::File::create(&lun).unwrap();
        for _ in 0..mib.div_ceil(64) {
            for c in data.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
            std::io::Write::write_all(&mut f, &data).unwrap();
        }
        f.set_len(size).unwrap();
    }
    let tgtd = start_tgtd(&lun);
    if split_cpus() {
        pin_self_to(1);
        println!("# SPLIT_CPUS=1: tgtd on CPU 0, the initiators on CPU 1");
    }
    println!("# {mib} MiB LUN on tgtd at {} (loopback), {} KiB requests, median of {reps}", tgtd.addr, request() >> 10);
    println!(
        "# tgtd's allocator: {}",
        if tgtd_malloc_tuned() { TUNED_MALLOC.join(" ") } else { "glibc defaults".into() }
    );
    let url = format!("iscsi://{}/{TARGET}/1", tgtd.addr);
    let blocks = (request() / 512).to_string();
    let mut rows = Vec::new();
    // `qemu-img convert` into its null driver (qemu refuses /dev/null as
    // a raw target of the LUN's size: "Cannot grow device files").
    let qemu_img = std::env::var_os("QEMU_IMG").unwrap_or_else(|| "qemu-img".into());
    let null_target = format!("driver=null-co,size={size}");
    let qemu_args = ["convert", "-n", "--target-image-opts", url.as_str(), null_target.as_str()];
    let qemu = Command::new(&qemu_img).args(qemu_args).output();
    let qemu_ok = match &qemu {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            println!(
                "# qemu-img cannot read iscsi:// here: {}",
                String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or("")
            );
            false
        }
        Err(e) => {
            println!("# qemu-img: {e}");
            false
        }
    };
    // `ONLY=nightly`: just the nightly case (its rows and its peer).
    let only_nightly = std::env::var("ONLY").is_ok_and(|v| v == "nightly");
    // `ONLY=sequential`: the sequential rows only (no nightly case, no digests).
    let only_sequential = std::env::var("ONLY").is_ok_and(|v| v == "sequential");
    let baseline = std::env::var_os("BASELINE_SANTOOLS").map(PathBuf::from);
    if let Some(b) = &baseline {
        println!("# baseline: {}", b.display());
    }
    // Wall seconds of `ddless -m` with an empty map: what a run costs
    // before it reads anything (start, login, checksum file, logout).
    let mut fixed: Vec<f64> = Vec::new();
    for _ in 0..reps {
        if only_nightly {
            break;
        }
        sample(&mut rows, "backing file, read(2) 1 MiB (ceiling)", &tgtd, || {
            let cpu0 = rusage(libc::RUSAGE_SELF);
            let t0 = Instant::now();
            let mut f = std::fs::File::open(&lun).unwrap();
            let mut b = vec![0u8; 1 << 20];
            while f.read(&mut b).unwrap() > 0 {}
            Some((size, t0.elapsed().as_secs_f64(), rusage(libc::RUSAGE_SELF) - cpu0))
        });
        for qd in [1usize, 8, 32] {
            sample(&mut rows, &format!("santools, qd {qd}"), &tgtd, || {
                Some(ours(&tgtd.addr, qd, (false, false), size))
            });
            let q = qd.to_string();
            sample(&mut rows, &format!("libiscsi iscsi-perf, qd {qd}"), &tgtd, || {
                perf(&url, &["-m", &q, "-b", &blocks], secs, request())
            });
        }
        if qemu_ok {
            sample(&mut rows, "qemu-img convert (libiscsi)", &tgtd, || {
                let mut cmd = Command::new(&qemu_img);
                cmd.args(qemu_args);
                let (_, wall, cpu) = run_child(cmd, 600);
                Some((size, wall, cpu))
            });
        }
        for qd in [1usize, 8, 32] {
            let sums = dir.path().join("sums");
            let args: [&std::ffi::OsStr; 4] = ["-s".as_ref(), url.as_ref(), "-c".as_ref(), sums.as_ref()];
            sample(&mut rows, &format!("ddless -s iscsi:// -c (checksum only), qd {qd}"), &tgtd, || {
                ddless_sample(ddless(dir.path(), qd, "2", &args), size)
            });
            if let Some(bin) = &baseline {
                sample(&mut rows, &format!("baseline ddless -c, qd {qd}"), &tgtd, || {
                    ddless_sample(ddless_of(bin, dir.path(), qd, "2", &args), size)
                });
            }
        }
    }
    let picks = sparse_picks(size);
    let flagged = picks.len() as u64 * 16384;
    for _ in 0..reps {
        if only_sequential {
            break;
        }
        sample(&mut rows, "santools, 1% of 16 KiB segments, qd 32", &tgtd, || Some(ours_sparse(&tgtd.addr, size)));
        let (msums, mtarget, map) = (dir.path().join("msums"), dir.path().join("target.img"), dir.path().join("map"));
        let empty = dir.path().join("empty-map");
        if !map.exists() {
            // Setup, not measured: a full copy, then a ddmap flagging the 1%
            // and one flagging nothing.
            let copy: [&std::ffi::OsStr; 6] =
                ["-s".as_ref(), url.as_ref(), "-c".as_ref(), msums.as_ref(), "-t".as_ref(), mtarget.as_ref()];
            assert!(ddless(dir.path(), 32, "2", &copy).status().unwrap().success());
            let ext: String = picks.iter().map(|s| format!("{} 16384\n", s * 16384)).collect();
            ddmap_from_extents(dir.path(), &ext, size, &map);
            ddmap_from_extents(dir.path(), "", size, &empty);
        }
        let nightly = |map: &Path, workers: &str| {
            let args: [&std::ffi::OsStr; 8] = [
                "-s".as_ref(),
                url.as_ref(),
                "-m".as_ref(),
                map.as_ref(),
                "-c".as_ref(),
                msums.as_ref(),
                "-t".as_ref(),
                mtarget.as_ref(),
            ];
            ddless(dir.path(), 32, workers, &args)
        };
        let mut wall = 0.0;
        for _ in 0..nightly_runs {
            wall += ddless_sample(nightly(&empty, "2"), 0).map_or(0.0, |s| s.1);
        }
        let wall = wall / nightly_runs as f64;
        println!("{:<48} {:>8.3} s", "ddless -m (empty map: the fixed cost)", wall);
        fixed.push(wall);
        for workers in ["2", "8"] {
            // One run reads ~20 MiB in about 0.1 s: a sample is several
            // runs back to back (their bytes over their summed wall and CPU).
            sample(&mut rows, &format!("ddless -m (1% flagged) -w {workers}, qd 32"), &tgtd, || {
                let (mut bytes, mut wall, mut cpu) = (0, 0.0, 0.0);
                for _ in 0..nightly_runs {
                    let (b, w, u) = ddless_sample(nightly(&map, workers), flagged)?;
                    (bytes, wall, cpu) = (bytes + b, wall + w, cpu + u);
                }
                Some((bytes, wall, cpu))
            });
        }
        sample(&mut rows, "libiscsi iscsi-perf -r, random 16 KiB, qd 32", &tgtd, || {
            perf(&url, &["-m", "32", "-b", "32", "-r"], secs, 16384)
        });
    }
    // Digests: the target configured for CRC32C; tgtd computes them in software.
    for key in ["HeaderDigest", "DataDigest"].into_iter().filter(|_| !only_nightly && !only_sequential) {
        tgtd.tgtadm(&["--op", "update", "--mode", "target", "--tid", "1", "--name", key, "--value", "CRC32C,None"]);
    }
    for _ in 0..reps {
        if only_nightly || only_sequential {
            break;
        }
        sample(&mut rows, "santools, qd 32, header digest", &tgtd, || Some(ours(&tgtd.addr, 32, (true, false), size)));
        sample(&mut rows, "santools, qd 32, header+data digests", &tgtd, || {
            Some(ours(&tgtd.addr, 32, (true, true), size))
        });
        sample(&mut rows, "libiscsi iscsi-perf, qd 32, header digest", &tgtd, || {
            perf(&format!("{url}?header_digest=crc32c"), &["-m", "32", "-b", &blocks], secs, request())
        });
    }
    println!();
    println!("| Reader | MB/s | vs libiscsi | paired: median (min-max) | initiator CPU s/GB | tgtd CPU s/GB |");
    println!("|---|---:|---:|---:|---:|---:|");
    // Each repetition measures a row and its peer one after the other: the
    // ratio within a repetition is less exposed to the shared machine's
    // drifting load than the ratio of the medians.
    let paired = |ours: &str, peer: &str| -> String {
        let (Some((_, a)), Some((_, b))) = (rows.iter().find(|(n, _)| n == ours), rows.iter().find(|(n, _)| n == peer))
        else {
            return String::new();
        };
        let mut r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x.0 / y.0).collect();
        if r.is_empty() {
            return String::new();
        }
        r.sort_by(f64::total_cmp);
        format!("{:.2}x ({:.2}-{:.2})", r[r.len() / 2], r[0], r[r.len() - 1])
    };
    let med: Vec<(String, Row)> = rows.iter().map(|(n, v)| (n.clone(), median(v))).collect();
    let rate = |prefix: &str| med.iter().find(|(n, _)| n.starts_with(prefix)).map(|(_, r)| r.mbs);
    // The peer row a row is compared with.
    let peer_of = |name: &str| -> Option<String> {
        let full = |q: &str| format!("libiscsi iscsi-perf, qd {q}");
        if let Some(q) = name.strip_prefix("santools, qd ") {
            if q.contains("digest") {
                return Some("libiscsi iscsi-perf, qd 32, header digest".into());
            }
            return Some(full(q.split(',').next().unwrap_or("")));
        }
        if let Some(q) = name.strip_prefix("ddless -s iscsi:// -c (checksum only), qd ") {
            return Some(full(q));
        }
        if let Some(q) = name.strip_prefix("baseline ddless -c, qd ") {
            return Some(full(q));
        }
        (name.contains("1% of") || name.contains("1% flagged"))
            .then(|| "libiscsi iscsi-perf -r, random 16 KiB, qd 32".to_string())
    };
    for (name, r) in &med {
        let (peer, pair) = match peer_of(name) {
            Some(p) => (rate(&p).map(|p| format!("{:.2}x", r.mbs / p)).unwrap_or_default(), paired(name, &p)),
            None => (String::new(), String::new()),
        };
        println!("| {name} | {:.0} | {peer} | {pair} | {:.2} | {:.2} |", r.mbs, r.cpu_per_gb, r.tgtd_per_gb);
    }
    // qemu-img is timed as a whole process, as ddless is (its default:
    // 8 requests in flight).
    for qd in [8, 32].into_iter().filter(|_| qemu_ok) {
        let pair = paired(&format!("ddless -s iscsi:// -c (checksum only), qd {qd}"), "qemu-img convert (libiscsi)");
        println!("| ddless -c, qd {qd}, against qemu-img convert, paired | | {pair} | | | |");
    }
    for qd in [1, 8, 32].into_iter().filter(|_| baseline.is_some()) {
        let pair =
            paired(&format!("ddless -s iscsi:// -c (checksum only), qd {qd}"), &format!("baseline ddless -c, qd {qd}"));
        println!("| ddless -c, qd {qd}: this build against the baseline, paired | | {pair} | | | |");
    }
    // The nightly rows are whole processes reading only ~20 MiB: without
    // their fixed cost, the rate of the reading itself.
    if !fixed.is_empty() {
        fixed.sort_by(f64::total_cmp);
        let f = fixed[fixed.len() / 2];
        let flagged = flagged as f64;
        for (name, r) in med.iter().filter(|(n, _)| n.starts_with("ddless -m")) {
            let wall = flagged / 1e6 / r.mbs;
            if wall > f {
                let net = flagged / 1e6 / (wall - f);
                let peer = rate("libiscsi iscsi-perf -r").map(|p| format!("{:.2}x", net / p)).unwrap_or_default();
                println!("| {name}, net of the fixed {:.0} ms | {net:.0} | {peer} | | | |", f * 1e3);
            }
        }
    }
}
