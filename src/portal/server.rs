//! The daemon's network side: bind the listen addresses, accept with a cap
//! on connections (in total and per source address), serve each on a
//! worker thread, and on shutdown stop accepting and wait (bounded) for
//! open connections. A housekeeping thread writes rotation state, expires
//! unused state, and sums up throttled refusal logs.
//!
//! Connections are served by a pool of long-lived worker threads that grows
//! on demand up to max_connections: a slow or silent client holds only its
//! own worker until its deadline. Reusing workers matters: creating and
//! destroying a thread per login (stack mmap/munmap, TLB shootdowns on the
//! other CPU) capped the portal at ~3,900 redirects/s with a 100 ms p99.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::access_log::plain_ip;
use super::limits::{CONNECTION_BUDGET, MAX_STATE_FILES, REFUSAL_LOG_WINDOW};
use super::memory::ByteBudget;
use super::nodes::Nodes;
use super::session;
use super::state_store::{StateStore, FLUSH_INTERVAL};
use super::throttle::{Throttle, Verdict};
use crate::config::PortalConfig;

/// Pending connections the kernel queues for accept().
const LISTEN_BACKLOG: libc::c_int = 4096;
/// Stack for connection threads: sessions are shallow.
const CONNECTION_STACK: usize = 256 * 1024;
/// An idle worker beyond this many exits after IDLE_WORKER_EXIT.
const KEEP_IDLE_WORKERS: usize = 64;
const IDLE_WORKER_EXIT: Duration = Duration::from_secs(60);

/// Why a connection was closed at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Refusal {
    Total,
    PerSource,
}

/// State shared by all connections of a running portal.
pub struct Portal {
    config: RwLock<Arc<PortalConfig>>,
    pub store: StateStore,
    pub nodes: Nodes,
    /// Bytes connections may hold beyond their fixed buffers.
    pub buffers: Arc<ByteBudget>,
    /// Log every PDU (`-d`).
    pub log_pdus: bool,
    /// Set on SIGTERM: stop accepting, end failover waits.
    pub stop: AtomicBool,
    active: AtomicUsize,
    /// Open connections per source address.
    sources: Mutex<HashMap<IpAddr, usize>>,
    refusals: Mutex<HashMap<Refusal, (Throttle, Option<IpAddr>)>>,
    /// Unix second of the last invalidation of cached portal lists.
    invalidated_at: AtomicU64,
    tsih: AtomicU16,
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Portal {
    /// `coalesce`: single flight and node budgets (off only to measure
    /// the portal without them).
    pub fn new(config: PortalConfig, log_pdus: bool, coalesce: bool) -> Portal {
        Portal {
            store: StateStore::write_behind(&config.state_directory),
            config: RwLock::new(Arc::new(config)),
            nodes: Nodes::new(coalesce),
            buffers: ByteBudget::new(CONNECTION_BUDGET),
            log_pdus,
            stop: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            sources: Mutex::default(),
            refusals: Mutex::default(),
            invalidated_at: AtomicU64::new(0),
            tsih: AtomicU16::new(0),
        }
    }

    /// Drops every cached node answer and marks every rotation list stale,
    /// at once: the next login asks the nodes (reload, SIGUSR1 — the hook a
    /// cluster manager calls when it moves a volume group).
    pub fn invalidate(&self) {
        self.invalidated_at.store(now_unix(), Ordering::Relaxed);
        self.nodes.clear();
    }

    pub fn invalidated_at(&self) -> u64 {
        self.invalidated_at.load(Ordering::Relaxed)
    }

    /// The configuration in force (a reload swaps it; running connections
    /// keep the one they started with).
    pub fn config(&self) -> Arc<PortalConfig> {
        self.config.read().map(|c| c.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Replaces the configuration. Listen addresses and the state directory
    /// are fixed at start; a change to them is reported and needs a restart.
    pub fn reload(&self, new: PortalConfig) {
        let old = self.config();
        if new.listen != old.listen {
            tracing::warn!("reload: the listen addresses changed; they take effect at the next restart");
        }
        if new.state_directory != old.state_directory {
            tracing::warn!("reload: state_directory changed; it takes effect at the next restart");
        }
        if let Ok(mut c) = self.config.write() {
            *c = Arc::new(new);
        }
        // Nodes or their addresses may have changed: nothing cached before
        // the reload is handed out after it.
        self.invalidate();
    }

    /// Logs a refused connection, at most once per window per reason; the
    /// rest are summed up by [`Portal::log_refusal_summaries`].
    fn refused(&self, why: Refusal, ip: IpAddr, detail: std::fmt::Arguments<'_>) {
        let mut map = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        let (t, last) = map.entry(why).or_insert_with(|| (Throttle::new(REFUSAL_LOG_WINDOW), None));
        *last = Some(ip);
        if t.note(Instant::now()) == Verdict::Log {
            tracing::warn!("refusing connection from {ip}: {detail}");
        }
    }

    fn log_refusal_summaries(&self) {
        let mut map = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        for (why, (t, last)) in map.iter_mut() {
            if let Some(n) = t.summary(Instant::now()) {
                let what = match why {
                    Refusal::Total => "max_connections",
                    Refusal::PerSource => "max_connections_per_source",
                };
                tracing::warn!(
                    "refused {n} more connections in the last {}s ({what}; last from {})",
                    REFUSAL_LOG_WINDOW.as_secs(),
                    last.map_or_else(|| "?".to_string(), |ip| ip.to_string())
                );
            }
        }
    }

    /// Counts a connection from `ip` unless that source has its share.
    fn admit(&self, ip: IpAddr, per_source: usize) -> Result<(), usize> {
        let mut map = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= per_source {
            return Err(*n);
        }
        *n += 1;
        Ok(())
    }

    fn release(&self, ip: IpAddr) {
        let mut map = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }

    pub fn active_connections(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// A fresh non-zero TSIH for a completed discovery login.
    pub fn next_tsih(&self) -> u16 {
        loop {
            let t = self.tsih.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if t != 0 {
                return t;
            }
        }
    }
}

/// Binds every listen address; errors name the address.
pub fn bind(addrs: &[SocketAddr]) -> anyhow::Result<Vec<TcpListener>> {
    addrs
        .iter()
        .map(|a| {
            let l = TcpListener::bind(a).map_err(|e| anyhow::anyhow!("binding {a}: {e}"))?;
            // std listens with a backlog of 128: a burst of logins (every
            // initiator of a cluster after a switch reboot) overflows it and
            // the dropped SYNs come back only after a 1 s retransmit. Linux
            // takes a second listen() as a new backlog (capped at somaxconn).
            // SAFETY: listen on a valid, bound socket descriptor.
            if unsafe { libc::listen(l.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
                let e = io::Error::last_os_error();
                return Err(anyhow::anyhow!("listening on {a}: {e}"));
            }
            l.set_nonblocking(true).map_err(|e| anyhow::anyhow!("listener {a}: {e}"))?;
            Ok(l)
        })
        .collect()
}

/// Accepted connections (with their source) waiting for a worker, and the
/// workers.
#[derive(Default)]
struct PoolState {
    queue: VecDeque<(TcpStream, IpAddr)>,
    idle: usize,
    workers: usize,
}

#[derive(Default)]
struct WorkerPool {
    state: Mutex<PoolState>,
    wake: Condvar,
}

impl WorkerPool {
    /// Queues a connection; starts a worker if none is idle.
    fn submit(self: &Arc<Self>, stream: TcpStream, ip: IpAddr, portal: &Arc<Portal>) {
        let Ok(mut st) = self.state.lock() else { return };
        st.queue.push_back((stream, ip));
        if st.idle >= st.queue.len() {
            self.wake.notify_one();
            return;
        }
        st.workers += 1;
        drop(st);
        let (pool, p) = (Arc::clone(self), Arc::clone(portal));
        let spawned = std::thread::Builder::new()
            .name("portal-conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || pool.work(&p));
        if let Err(e) = spawned {
            tracing::error!("cannot start a connection worker: {e}");
            if let Ok(mut st) = self.state.lock() {
                st.workers -= 1;
            }
            // An existing worker will pick the connection up.
            self.wake.notify_one();
        }
    }

    fn work(&self, portal: &Portal) {
        loop {
            let (stream, ip) = {
                let Ok(mut st) = self.state.lock() else { return };
                loop {
                    if let Some(s) = st.queue.pop_front() {
                        break s;
                    }
                    if portal.stop.load(Ordering::Relaxed) {
                        st.workers -= 1;
                        return;
                    }
                    st.idle += 1;
                    let (guard, timeout) = match self.wake.wait_timeout(st, IDLE_WORKER_EXIT) {
                        Ok(r) => r,
                        Err(_) => return,
                    };
                    st = guard;
                    st.idle -= 1;
                    if timeout.timed_out() && st.queue.is_empty() && st.idle >= KEEP_IDLE_WORKERS {
                        st.workers -= 1;
                        return;
                    }
                }
            };
            session::serve(stream, portal);
            portal.release(ip);
            portal.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn wake_all(&self) {
        self.wake.notify_all();
    }
}

fn accept_one(stream: TcpStream, peer: SocketAddr, portal: &Arc<Portal>, pool: &Arc<WorkerPool>) {
    let cfg = portal.config();
    let ip = plain_ip(peer.ip());
    let n = portal.active.fetch_add(1, Ordering::Relaxed);
    if n >= cfg.max_connections {
        portal.active.fetch_sub(1, Ordering::Relaxed);
        portal.refused(Refusal::Total, ip, format_args!("{n} connections open (max_connections)"));
        return;
    }
    if let Err(held) = portal.admit(ip, cfg.max_connections_per_source) {
        portal.active.fetch_sub(1, Ordering::Relaxed);
        portal.refused(
            Refusal::PerSource,
            ip,
            format_args!("it holds {held} connections (max_connections_per_source)"),
        );
        return;
    }
    if let Err(e) = stream.set_nonblocking(false) {
        portal.release(ip);
        portal.active.fetch_sub(1, Ordering::Relaxed);
        tracing::warn!("connection from {ip}: {e}");
        return;
    }
    pool.submit(stream, ip, portal);
}

/// Writes rotation state every flush interval, expires unused state, and
/// sums up throttled refusals, until the portal stops.
fn housekeeping(p: &Portal) {
    let mut last_sweep = Instant::now();
    while !p.stop.load(Ordering::Relaxed) {
        std::thread::sleep(FLUSH_INTERVAL);
        p.store.flush(false);
        p.log_refusal_summaries();
        let expiry = p.config().state_expiry();
        // Often enough that nothing lives much past its expiry.
        let every = (expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        if last_sweep.elapsed() >= every {
            last_sweep = Instant::now();
            let r = p.store.sweep(expiry, MAX_STATE_FILES, SystemTime::now());
            if r.expired > 0 {
                tracing::info!(
                    "removed {} rotation state entries unused for more than {}s",
                    r.expired,
                    expiry.as_secs()
                );
            }
            if r.over_limit > 0 {
                tracing::warn!(
                    "removed {} least recently used rotation state entries (more than {MAX_STATE_FILES})",
                    r.over_limit
                );
            }
        }
    }
}

/// Serves until `portal.stop` is set, then drains. Logs one
/// "listening on ADDR" line per listener first.
pub fn serve(listeners: Vec<TcpListener>, portal: Arc<Portal>) -> io::Result<()> {
    for l in &listeners {
        tracing::info!("listening on {}", l.local_addr()?);
    }
    let pool = Arc::new(WorkerPool::default());
    let seed_files = portal.store.seed_state_files();
    if seed_files > 0 {
        tracing::info!(
            "{} holds {seed_files} state files of the seed's portal (*.data); they are not read (rotation starts afresh) and may be removed",
            portal.store.dir().display()
        );
    }
    let flusher = {
        let p = Arc::clone(&portal);
        std::thread::Builder::new().name("portal-state".into()).spawn(move || housekeeping(&p))?
    };
    let mut fds: Vec<libc::pollfd> =
        listeners.iter().map(|l| libc::pollfd { fd: l.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    while !portal.stop.load(Ordering::Relaxed) {
        // SAFETY: fds points at fds.len() initialised pollfd structs.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 200) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for (i, l) in listeners.iter().enumerate() {
            if fds[i].revents == 0 {
                continue;
            }
            loop {
                match l.accept() {
                    Ok((stream, peer)) => accept_one(stream, peer, &portal, &pool),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::error!(
                            "accept on {}: {e}",
                            l.local_addr().map_or_else(|_| "?".into(), |a| a.to_string())
                        );
                        std::thread::sleep(Duration::from_millis(100));
                        break;
                    }
                }
            }
        }
    }
    drop(listeners);
    let cfg = portal.config();
    let deadline = super::nodes::deadline_after(cfg.drain_timeout());
    let open = portal.active_connections();
    if open > 0 {
        tracing::info!("shutting down: waiting up to {}s for {open} open connections", cfg.drain_timeout_sec);
    }
    while portal.active_connections() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    pool.wake_all();
    let left = portal.active_connections();
    if left > 0 {
        tracing::warn!("shutting down with {left} connections still open");
    }
    let _ = flusher.join();
    let written = portal.store.flush(true);
    tracing::debug!("rotation state saved ({written} entries)");
    tracing::info!("stopped");
    Ok(())
}
