//! Load generator for the iSCSI portal: opens connections on loopback and
//! performs normal-session logins (answered by a redirect) and discovery
//! sessions (login + SendTargets=All + logout), at 1, 64 and 1024
//! concurrent clients, with the portal's state cached; and, side by side,
//! the same discovery sessions straight against a tgtd node.
//!
//! Then, with `ONLY=io` or by default after those: a real initiator's I/O
//! (libiscsi's iscsi-perf, 4 KiB reads, 32 in flight) on a node's LUN
//! while 200 discovery clients loop through the portal with the node cache
//! expiring every second, without the portal's single flight and node
//! budgets (`SANTOOLS_PORTAL_UNCOALESCED=1`, the code before issue 7) and
//! with them, in one run.
//!
//! Run: `cargo bench --bench portal_load` (needs tgtd and root for
//! loopback addresses beyond 127.0.0.1; it starts and stops its own
//! processes by PID). SECONDS=N sets the duration of each step (default 5);
//! ONLY=redirect, ONLY=discovery or ONLY=io runs just those steps;
//! IO_ROUNDS=N repeats the io step's quiet/before/after triple (default 3);
//! CLIENTS=64 (a comma list) limits the redirect and discovery steps to
//! those client counts.
//! BASELINE_BIN=path also runs the redirect and discovery steps against
//! another santools binary (an earlier build), side by side.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use santools::iscsi::login::{LoginRequest, LoginResponse, LoginStatus, Stage};
use santools::iscsi::logout::LogoutRequest;
use santools::iscsi::pdu::{decode, encode, DecodeLimits, Digests, Pdu};
use santools::iscsi::text::TextParams;
use santools::iscsi::text_pdu::{TextRequest, TextResponse};

const NET: &str = "127.0.223";
const IO_PORTAL_PORT: u16 = 13471;
const NODE_PORT: u16 = 13460;
const PORTAL_PORT: u16 = 13470;
const TARGET: &str = "iqn.2024-01.bench:vol1";
const INITIATORS: usize = 64;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(addr: &str) {
    let a: SocketAddr = addr.parse().unwrap();
    let t = Instant::now();
    while TcpStream::connect_timeout(&a, Duration::from_millis(100)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "{addr} did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tgtd control port whose lock file nobody holds (the machine is
/// shared; tgtd takes -C 0-32767).
fn free_control_port(from: u32) -> String {
    use std::os::fd::AsRawFd;
    (from..32_000)
        .find(|p| {
            !std::fs::File::open(format!("/var/run/tgtd/socket.{p}.lock")).is_ok_and(|f| {
                // SAFETY: flock on a valid descriptor, released when f closes.
                unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
            })
        })
        .expect("a free tgtd control port")
        .to_string()
}

fn tgtadm(ctl: &str, args: &[&str]) {
    let s = Command::new("tgtadm").args(["-C", ctl, "--lld", "iscsi"]).args(args).status().unwrap();
    assert!(s.success(), "tgtadm {args:?}");
}

fn initiator(i: usize) -> String {
    format!("iqn.2024-01.bench:initiator-{i:03}")
}

fn read_pdu(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Pdu> {
    let limits = DecodeLimits { max_data_segment: 1 << 20, digests: Digests::default() };
    let mut chunk = [0u8; 8192];
    loop {
        if let Ok(Some((p, n))) = decode(buf, &limits) {
            buf.drain(..n);
            return Ok(p);
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn login_pdu(init: &str, session: &str, target: Option<&str>) -> Vec<u8> {
    let mut keys = TextParams::new();
    keys.push("InitiatorName", init);
    keys.push("SessionType", session);
    if let Some(t) = target {
        keys.push("TargetName", t);
    }
    keys.push("HeaderDigest", "None");
    keys.push("DataDigest", "None");
    keys.push("MaxRecvDataSegmentLength", "262144");
    let r = LoginRequest {
        cmdsn: 1,
        ..LoginRequest::opening([0x80, 0, 0, 0, 1, 0], 1, Stage::Operational, Stage::FullFeature, keys.to_bytes())
    };
    encode(&r.to_pdu(), Digests::default())
}

/// Connects, sends a login request, and reads its response.
fn connect_and_login(addr: SocketAddr, req: &[u8]) -> std::io::Result<(TcpStream, Vec<u8>, LoginResponse)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(req)?;
    let mut buf = Vec::new();
    let rsp = LoginResponse::from_pdu(&read_pdu(&mut s, &mut buf)?).map_err(std::io::Error::other)?;
    Ok((s, buf, rsp))
}

/// One normal-session login; Ok if redirected.
fn one_redirect(addr: SocketAddr, req: &[u8]) -> std::io::Result<()> {
    let (mut s, _, rsp) = connect_and_login(addr, req)?;
    if rsp.status != LoginStatus::TARGET_MOVED_TEMPORARILY {
        return Err(std::io::Error::other(format!("status {}", rsp.status)));
    }
    // Let the portal close first, so TIME_WAIT lands on its side.
    let mut rest = [0u8; 64];
    let _ = s.read(&mut rest);
    Ok(())
}

/// One discovery session: login, SendTargets=All, logout.
fn one_discovery(addr: SocketAddr, req: &[u8]) -> std::io::Result<()> {
    let (mut s, mut buf, rsp) = connect_and_login(addr, req)?;
    if rsp.status != LoginStatus::SUCCESS || !rsp.transit {
        return Err(std::io::Error::other(format!("login status {}", rsp.status)));
    }
    let mut keys = TextParams::new();
    keys.push("SendTargets", "All");
    let t = TextRequest::new(2, 1, rsp.statsn + 1, keys.to_bytes());
    s.write_all(&encode(&t.to_pdu(), Digests::default()))?;
    let tr = TextResponse::from_pdu(&read_pdu(&mut s, &mut buf)?).map_err(std::io::Error::other)?;
    if !tr.fin || !String::from_utf8_lossy(&tr.data).contains(TARGET) {
        return Err(std::io::Error::other("SendTargets answer lacks the target"));
    }
    let lo = LogoutRequest { reason: 0, itt: 3, cid: 0, cmdsn: 1, exp_statsn: tr.statsn + 1 };
    s.write_all(&encode(&lo.to_pdu(), Digests::default()))?;
    let _ = read_pdu(&mut s, &mut buf)?;
    Ok(())
}

struct Outcome {
    ops: usize,
    errors: usize,
    first_error: Option<String>,
    secs: f64,
    latencies_us: Vec<u64>,
}

fn run_load(clients: usize, secs: f64, op: Arc<dyn Fn(usize) -> std::io::Result<()> + Send + Sync>) -> Outcome {
    run_paced_load(clients, secs, Duration::ZERO, op)
}

/// Like run_load, but each client starts an operation at most every
/// `every` (ZERO: closed loop).
fn run_paced_load(
    clients: usize,
    secs: f64,
    every: Duration,
    op: Arc<dyn Fn(usize) -> std::io::Result<()> + Send + Sync>,
) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (stop, op) = (Arc::clone(&stop), Arc::clone(&op));
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let mut lat = Vec::new();
                    let (mut errors, mut first) = (0usize, None);
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        match op(c) {
                            Ok(()) => lat.push(t.elapsed().as_micros() as u64),
                            Err(e) => {
                                errors += 1;
                                first.get_or_insert(e.to_string());
                            }
                        }
                        if let Some(rest) = every.checked_sub(t.elapsed()) {
                            std::thread::sleep(rest);
                        }
                    }
                    (lat, errors, first)
                })
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut out = Outcome { ops: 0, errors: 0, first_error: None, secs: 0.0, latencies_us: Vec::new() };
    for h in handles {
        let (lat, errors, first) = h.join().unwrap();
        out.ops += lat.len();
        out.latencies_us.extend(lat);
        out.errors += errors;
        if out.first_error.is_none() {
            out.first_error = first;
        }
    }
    out.secs = start.elapsed().as_secs_f64();
    out.latencies_us.sort_unstable();
    out
}

/// One connection of the event-driven generator.
enum Slot {
    Connecting {
        fd: TcpStream,
        since: Instant,
    },
    Reading {
        fd: TcpStream,
        since: Instant,
        buf: Vec<u8>,
    },
    /// Answer checked; waiting for the portal to close.
    Draining {
        fd: TcpStream,
    },
}

fn open_nonblocking(addr: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(a) = addr else { return Err(std::io::Error::other("IPv4 only")) };
    // SAFETY: plain socket(2); the descriptor is owned by the TcpStream below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: sin is a valid sockaddr_in of the given length.
    let rc = unsafe {
        libc::connect(fd, &sin as *const _ as *const libc::sockaddr, std::mem::size_of_val(&sin) as libc::socklen_t)
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn epoll_ctl(ep: i32, op: i32, fd: &TcpStream, events: u32, token: usize) {
    use std::os::fd::AsRawFd;
    let mut ev = libc::epoll_event { events, u64: token as u64 };
    // SAFETY: valid epoll and socket descriptors.
    unsafe { libc::epoll_ctl(ep, op, fd.as_raw_fd(), &mut ev) };
}

/// Normal-session logins from `clients` connections driven by one epoll
/// thread (as wrk drives HTTP load), so that the latency measured is the
/// portal's and not the generator's own thread scheduling.
fn run_redirects_evented(clients: usize, secs: f64, portal: SocketAddr, reqs: &[Vec<u8>]) -> Outcome {
    let limits = DecodeLimits { max_data_segment: 1 << 20, digests: Digests::default() };
    // SAFETY: plain epoll_create1.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    let mut out = Outcome { ops: 0, errors: 0, first_error: None, secs: 0.0, latencies_us: Vec::new() };
    let fail = |out: &mut Outcome, e: String| {
        out.errors += 1;
        out.first_error.get_or_insert(e);
    };
    let start_one = |c: usize| -> std::io::Result<Slot> {
        let fd = open_nonblocking(portal)?;
        epoll_ctl(ep, libc::EPOLL_CTL_ADD, &fd, (libc::EPOLLOUT | libc::EPOLLIN) as u32, c);
        Ok(Slot::Connecting { fd, since: Instant::now() })
    };
    let mut slots: Vec<Option<Slot>> = (0..clients).map(|c| start_one(c).ok()).collect();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut chunk = [0u8; 4096];
    while Instant::now() < end {
        // SAFETY: events has room for events.len() entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 100) };
        for ev in events.iter().take(n.max(0) as usize) {
            let c = ev.u64 as usize;
            let Some(slot) = slots[c].take() else { continue };
            let next = match slot {
                Slot::Connecting { mut fd, since } => match fd.take_error() {
                    Ok(None) => match fd.write_all(&reqs[c % INITIATORS]) {
                        Ok(()) => {
                            epoll_ctl(ep, libc::EPOLL_CTL_MOD, &fd, libc::EPOLLIN as u32, c);
                            Some(Slot::Reading { fd, since, buf: Vec::new() })
                        }
                        Err(e) => {
                            fail(&mut out, format!("write: {e}"));
                            None
                        }
                    },
                    Ok(Some(e)) | Err(e) => {
                        fail(&mut out, format!("connect: {e}"));
                        None
                    }
                },
                Slot::Reading { mut fd, since, mut buf } => match fd.read(&mut chunk) {
                    Ok(0) => {
                        fail(&mut out, "closed before the answer".into());
                        None
                    }
                    Ok(k) => {
                        buf.extend_from_slice(&chunk[..k]);
                        match decode(&buf, &limits) {
                            Ok(Some((pdu, _))) => {
                                match LoginResponse::from_pdu(&pdu) {
                                    Ok(r) if r.status == LoginStatus::TARGET_MOVED_TEMPORARILY => {
                                        out.ops += 1;
                                        out.latencies_us.push(since.elapsed().as_micros() as u64);
                                    }
                                    Ok(r) => fail(&mut out, format!("status {}", r.status)),
                                    Err(e) => fail(&mut out, e.to_string()),
                                }
                                Some(Slot::Draining { fd })
                            }
                            Ok(None) => Some(Slot::Reading { fd, since, buf }),
                            Err(e) => {
                                fail(&mut out, e.to_string());
                                None
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Some(Slot::Reading { fd, since, buf }),
                    Err(e) => {
                        fail(&mut out, format!("read: {e}"));
                        None
                    }
                },
                Slot::Draining { mut fd } => match fd.read(&mut chunk) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Some(Slot::Draining { fd }),
                    _ => None, // closed by the portal (or reset): done
                },
            };
            slots[c] = match next {
                Some(s) => Some(s),
                // The old descriptor is dropped (closed) here; start anew.
                None => match start_one(c) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        fail(&mut out, format!("socket: {e}"));
                        None
                    }
                },
            };
        }
    }
    out.secs = start.elapsed().as_secs_f64();
    drop(slots);
    // SAFETY: closing our epoll descriptor.
    unsafe { libc::close(ep) };
    out.latencies_us.sort_unstable();
    out
}

fn pct(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)] as f64 / 1000.0
}

fn report(label: &str, clients: usize, o: &Outcome) -> f64 {
    report_cpu(label, clients, o, None)
}

/// CPU time (user + system) a process used so far, in microseconds.
fn cpu_us(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    // After the command: state is field 3, utime 14, stime 15 (1-based).
    let ticks: f64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<f64>().ok()).sum();
    // SAFETY: sysconf has no side effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks * 1e6 / hz
}

/// Prints one row; with the daemon's CPU time spent on the step, also its
/// CPU cost per operation, the figure that load on a shared machine moves
/// least.
fn report_cpu(label: &str, clients: usize, o: &Outcome, cpu_us_spent: Option<f64>) -> f64 {
    let rate = o.ops as f64 / o.secs;
    let cpu = cpu_us_spent.map(|c| format!("  portal CPU {:>5.1} us/op", c / o.ops.max(1) as f64)).unwrap_or_default();
    println!(
        "{label:<34} {clients:>5} clients  {rate:>9.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}{cpu}{}",
        pct(&o.latencies_us, 0.50),
        pct(&o.latencies_us, 0.99),
        o.errors,
        o.first_error.as_ref().map(|e| format!(" (first: {e})")).unwrap_or_default()
    );
    rate
}

fn start_portal(bin: &str, cfg: &std::path::Path, log: &std::path::Path, env: &[(&str, &str)], extra: &[&str]) -> Proc {
    let log = std::fs::File::create(log).unwrap();
    Proc(
        Command::new(bin)
            .args(["iscsi-portal", "--config"])
            .arg(cfg)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Client counts of the redirect and discovery steps: CLIENTS=64,1024 or
/// the default 1, 64, 1024.
fn client_counts() -> Vec<usize> {
    std::env::var("CLIENTS")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1, 64, 1024])
}

/// The redirect and discovery steps against the portal binary `bin`.
fn redirect_and_discovery(bin: &str, label: &str, dir: &std::path::Path, secs: f64, only: &str, node: SocketAddr) {
    let portal: SocketAddr = format!("{NET}.100:{PORTAL_PORT}").parse().unwrap();
    let cfg = dir.join(format!("santools-{label}.toml"));
    // The current portal caps connections per source address; the load
    // generator is one host.
    let per_source = if label == "this build" { "max_connections_per_source = 8192\n" } else { "" };
    std::fs::write(
        &cfg,
        format!(
            "[portal]\nlisten = [\"{NET}.100:{PORTAL_PORT}\"]\nstate_time_sec = 3600\nstate_directory = \"{}/state-{}\"\nmax_connections = 8192\n{per_source}\n[[portal.discovery_portals]]\naddress = \"{NET}.100\"\nportal_group_name = \"bench\"\nportal_port = {NODE_PORT}\n[portal.discovery_portals.portal_addresses]\nnode1 = [\"{NET}.1\"]\nnode2 = [\"{NET}.2\"]\n",
            dir.display(),
            label.replace(' ', "-")
        ),
    )
    .unwrap();
    let daemon = start_portal(bin, &cfg, &dir.join(format!("portal-{}.log", label.replace(' ', "-"))), &[], &[]);
    let pid = daemon.0.id();
    wait_port(&portal.to_string());
    let redirect_reqs: Arc<Vec<Vec<u8>>> =
        Arc::new((0..INITIATORS).map(|i| login_pdu(&initiator(i), "Normal", Some(TARGET))).collect());
    let discovery_reqs: Arc<Vec<Vec<u8>>> =
        Arc::new((0..INITIATORS).map(|i| login_pdu(&initiator(i), "Discovery", None)).collect());
    // Warm the state: one login and one discovery per initiator.
    for i in 0..INITIATORS {
        one_redirect(portal, &redirect_reqs[i]).expect("warm-up redirect");
        one_discovery(portal, &discovery_reqs[i]).expect("warm-up discovery");
    }
    println!("## {label} ({bin})");
    let mut at64 = (0.0, 0.0);
    for clients in client_counts() {
        if only == "discovery" {
            break;
        }
        let r = Arc::clone(&redirect_reqs);
        let c0 = cpu_us(pid);
        let o = run_load(clients, secs, Arc::new(move |c| one_redirect(portal, &r[c % INITIATORS])));
        report_cpu("redirect, a thread per client", clients, &o, Some(cpu_us(pid) - c0));
        std::thread::sleep(Duration::from_secs(2)); // let TIME_WAIT drain a little
        let c0 = cpu_us(pid);
        let o = run_redirects_evented(clients, secs, portal, &redirect_reqs);
        let rate = report_cpu("redirect, one epoll client thread", clients, &o, Some(cpu_us(pid) - c0));
        if clients == 64 {
            at64 = (rate, pct(&o.latencies_us, 0.99));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let mut discovery = (0.0, 0.0);
    for clients in client_counts() {
        if only == "redirect" {
            break;
        }
        let d = Arc::clone(&discovery_reqs);
        let c0 = cpu_us(pid);
        let o = run_load(clients, secs, Arc::new(move |c| one_discovery(portal, &d[c % INITIATORS])));
        let rate = report_cpu("discovery session (portal)", clients, &o, Some(cpu_us(pid) - c0));
        if clients == 64 {
            discovery.0 = rate;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    if only != "redirect" {
        let d = Arc::clone(&discovery_reqs);
        let o = run_load(64, secs, Arc::new(move |c| one_discovery(node, &d[c % INITIATORS])));
        discovery.1 = report("discovery session (tgtd directly)", 64, &o);
    }
    println!();
    if only != "discovery" {
        println!(
            "targets (epoll client): >= 5000 redirects/s at 64 clients: {:.0}/s; p99 < 10 ms: {:.2} ms",
            at64.0, at64.1
        );
    }
    if only != "redirect" {
        println!(
            "discovery at 64 clients: portal {:.0}/s vs tgtd directly {:.0}/s = {:.2}x",
            discovery.0,
            discovery.1,
            discovery.0 / discovery.1.max(1.0)
        );
    }
    println!();
}

/// iscsi-perf against `url` for `secs`: (average IOPS, lowest one-second
/// IOPS), from its per-second lines.
fn iscsi_perf(url: &str, secs: f64) -> Option<(f64, f64)> {
    let child = Command::new("iscsi-perf")
        .args(["-i", "iqn.2024-01.bench:perf-initiator", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_secs_f64(secs));
    // SAFETY: kill(2) on the child we started; SIGINT makes it print its summary.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let avg = text.rsplit("iops average ").next()?.split_whitespace().next()?.parse().ok()?;
    let min = text
        .split("iops current ")
        .skip(1)
        .filter_map(|p| p.split_whitespace().next()?.parse::<f64>().ok())
        .fold(f64::INFINITY, f64::min);
    Some((avg, if min.is_finite() { min } else { avg }))
}

/// Each looping discovery client of the io step starts a session at most
/// this often: 200 clients make ~2,000 sessions/s, light enough for the
/// two CPUs, and every second (state_time_sec = 1) they all find the node
/// cache expired within 100 ms: the stampede.
const PACE: Duration = Duration::from_millis(100);

/// A real initiator's I/O on node1 while 200 discovery clients loop through
/// a portal whose node cache expires every second (state_time_sec = 1),
/// with single flight and node budgets off (the code before issue 7) and
/// on: IOPS, discovery answers per second, upstream sessions opened.
fn io_under_discovery_load(bin: &str, dir: &std::path::Path, secs: f64) {
    if Command::new("iscsi-perf").arg("-h").output().is_err() {
        eprintln!("portal_load: iscsi-perf not installed (apt-get install libiscsi-bin); io step skipped");
        return;
    }
    let portal: SocketAddr = format!("{NET}.100:{IO_PORTAL_PORT}").parse().unwrap();
    let cfg = dir.join("santools-io.toml");
    std::fs::write(
        &cfg,
        format!(
            "[portal]\nlisten = [\"{NET}.100:{IO_PORTAL_PORT}\"]\nstate_time_sec = 1\nstate_directory = \"{}/state-io\"\nmax_connections = 8192\nmax_connections_per_source = 8192\n\n[[portal.discovery_portals]]\naddress = \"{NET}.100\"\nportal_group_name = \"bench\"\nportal_port = {NODE_PORT}\n[portal.discovery_portals.portal_addresses]\nnode1 = [\"{NET}.1\"]\nnode2 = [\"{NET}.2\"]\n",
            dir.display()
        ),
    )
    .unwrap();
    let url = format!("iscsi://{NET}.1:{NODE_PORT}/{TARGET}/1");
    println!("## a real initiator's I/O on node1 (iscsi-perf, 4 KiB sequential reads, 32 in flight) while 200 discovery clients (8 initiator names, each a session every 100 ms) loop through the portal; state_time_sec = 1");
    let rounds: usize = std::env::var("IO_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let reqs: Arc<Vec<Vec<u8>>> =
        Arc::new((0..8).map(|i| login_pdu(&format!("iqn.2024-01.bench:looping-{i}"), "Discovery", None)).collect());
    for round in 1..=rounds {
        let (quiet, quiet_min) = iscsi_perf(&url, secs).unwrap_or((0.0, 0.0));
        println!(
            "{:<58} {quiet:>9.0} IOPS (lowest second {quiet_min:.0})",
            format!("round {round}: no discovery load")
        );
        for (label, env) in [
            ("single flight and node budgets off (before issue 7)", &[("SANTOOLS_PORTAL_UNCOALESCED", "1")][..]),
            ("single flight and node budgets on (this build)", &[][..]),
        ] {
            let log = dir.join(format!("portal-io-{}.log", env.len()));
            let p = start_portal(bin, &cfg, &log, env, &["-v"]);
            wait_port(&portal.to_string());
            // One second of load to settle, then the I/O measured for
            // `secs` while the load goes on.
            let d = Arc::clone(&reqs);
            let _ = run_paced_load(200, 1.0, PACE, Arc::new(move |c| one_discovery(portal, &d[c % 8])));
            let perf = std::thread::spawn({
                let url = url.clone();
                move || iscsi_perf(&url, secs)
            });
            let d = Arc::clone(&reqs);
            let o = run_paced_load(200, secs, PACE, Arc::new(move |c| one_discovery(portal, &d[c % 8])));
            let (iops, min) = perf.join().unwrap().unwrap_or((0.0, 0.0));
            drop(p);
            let upstream =
                std::fs::read_to_string(&log).unwrap_or_default().matches("upstream discovery session to").count();
            println!(
                "{:<58} {iops:>9.0} IOPS (lowest second {min:.0}; {:.0}% of quiet)  discovery {:>6.0}/s errors {}  upstream sessions {upstream} in {:.0} s",
                format!("round {round}: {label}"),
                100.0 * iops / quiet.max(1.0),
                o.ops as f64 / o.secs,
                o.errors,
                o.secs + 1.0
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

fn main() {
    if Command::new("tgtd").arg("-V").output().is_err() {
        eprintln!("portal_load: tgtd not installed (apt-get install tgt); nothing measured");
        return;
    }
    let secs: f64 = std::env::var("SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let dir = tempfile::tempdir().unwrap();
    let lun = dir.path().join("lun.img");
    std::fs::write(&lun, vec![0u8; 64 << 20]).unwrap();
    let mut nodes = Vec::new();
    let mut from = 3900;
    for n in 1..=2 {
        let ip = format!("{NET}.{n}");
        let ctl = free_control_port(from);
        from = ctl.parse::<u32>().unwrap() + 1;
        nodes.push(Proc(
            Command::new("tgtd")
                .args(["-f", "-C", &ctl, "--iscsi", &format!("portal={ip}:{NODE_PORT}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ));
        wait_port(&format!("{ip}:{NODE_PORT}"));
        tgtadm(&ctl, &["--op", "new", "--mode", "target", "--tid", "1", "-T", TARGET]);
        tgtadm(
            &ctl,
            &["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", lun.to_str().unwrap()],
        );
        tgtadm(&ctl, &["--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"]);
    }
    let node: SocketAddr = format!("{NET}.1:{NODE_PORT}").parse().unwrap();
    println!("# iscsi-portal load: {secs} s per step, {INITIATORS} initiators x 1 target, state cached, access log to a file");
    println!("# {} CPUs; client and daemon share them", std::thread::available_parallelism().map_or(1, |n| n.get()));
    let only = std::env::var("ONLY").unwrap_or_default();
    let this = env!("CARGO_BIN_EXE_santools");
    if only != "io" {
        redirect_and_discovery(this, "this build", dir.path(), secs, &only, node);
        if let Ok(base) = std::env::var("BASELINE_BIN") {
            redirect_and_discovery(&base, "baseline", dir.path(), secs, &only, node);
        }
    }
    if only.is_empty() || only == "io" {
        io_under_discovery_load(this, dir.path(), secs);
    }
}
