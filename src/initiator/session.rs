//! A normal session to one target: login (login.rs), then an event loop on
//! its own thread that carries commands from any number of caller threads.
//!
//! The loop owns all protocol state: CmdSN window, task tags, StatSN, the
//! send queue. Callers hand over [`Command`]s whose buffers they lend for
//! as long as they wait in [`Session::execute`]; Data-In goes straight
//! from the socket into those buffers, Data-Out straight out of them.
//! Callers that only look at the data (hash it) lend a function instead:
//! reads go into buffers the session lends at arrival and reuses at once,
//! and the function sees each command's bytes on this thread as soon as
//! it completes (`read_consumed`, read_pool.rs).
//!
//! Faults: a dropped connection (EOF, reset, a digest error, silence past
//! the I/O timeout) is re-established by logging in again from the start
//! portal (following its redirect) within the reconnect timeout, and every
//! command in flight is issued again. Writes the target acknowledged but
//! no SYNCHRONIZE CACHE has covered yet are kept (up to a bound) and
//! replayed first, so a target that lost its cache with the connection
//! still ends up with them; past the bound, [`Session::writes_unsafe`]
//! tells the caller not to vouch for them.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::conn::describe;
use super::error::InitiatorError;
use super::login::{login, new_isid, Established};
use super::negotiate::SessionParams;
use super::options::InitiatorOptions;
use super::read_pool::ReadPool;
use super::task::{Batch, Buf, Command, Consume, DataBuf, OutPdu, Outcome, Payload, Task, TaskResult};
use super::url::Portal;
use crate::iscsi::async_message::{AsyncEvent, AsyncMessage};
use crate::iscsi::bhs::{Bhs, Opcode, BHS_LEN};
use crate::iscsi::data_pdu::{DataIn, DataOut, R2t};
use crate::iscsi::logout::LogoutRequest;
use crate::iscsi::nop::{NopIn, NopOut};
use crate::iscsi::pdu::{
    check_data_digest, check_header_digest, data_trailer, encode_header, frame, DecodeLimits, Digests, Frame, Pdu,
};
use crate::iscsi::reject::{reason_name, RejectNotice};
use crate::iscsi::scsi_pdu::{Residual, ScsiCommand, ScsiResponse, TaskAttr};
use crate::iscsi::RESERVED_TAG;
use crate::scsi::cdb::{self, Cdb};
use crate::scsi::sense::Sense;
use crate::scsi::{encode_lun, Status};

/// What a caller may want to know about the session.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SessionInfo {
    pub target: String,
    /// The portal the session is connected to now (after redirects), as
    /// the URL or the redirect spelled it.
    pub portal: String,
    /// The address the connection reached, resolved and canonical
    /// (`127.0.0.1:3260` however it was spelled: a name, an IPv4-mapped
    /// IPv6 address): what tells two spellings of one node apart from two
    /// nodes.
    pub peer: String,
    pub params: SessionParams,
    /// The target's session handle (changes with each reconnect).
    pub tsih: u16,
    pub reconnects: u32,
    /// NOP-In pings of the target answered.
    pub pings_answered: u64,
}

struct Shared {
    inbox: Mutex<Inbox>,
    wake: OwnedFd,
    shutdown: AtomicBool,
    info: Mutex<SessionInfo>,
    capacity_changed: AtomicBool,
    writes_unsafe: AtomicBool,
    journal_bytes: AtomicUsize,
    next_seq: AtomicU64,
    read_pool: Arc<ReadPool>,
}

struct Inbox {
    // Boxed once at submission; the box moves between the loop's queues.
    #[allow(clippy::vec_box)]
    tasks: Vec<Box<Task>>,
    /// False once the loop has ended: nothing more will be carried.
    alive: bool,
}

impl Shared {
    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
    }
}

/// A logged-in session. Dropping it logs out.
pub struct Session {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Session {
    /// Logs in to `target` at `portal` and starts the session's loop.
    pub fn open(portal: &Portal, target: &str, opts: &InitiatorOptions) -> Result<Session, InitiatorError> {
        opts.validate().map_err(InitiatorError::Options)?;
        let isid = new_isid();
        let est = login(portal, Some(target), isid, opts)?;
        // SAFETY: eventfd has no memory-safety preconditions.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(InitiatorError::Options(format!("eventfd: {}", io::Error::last_os_error())));
        }
        let info = SessionInfo {
            target: target.to_string(),
            portal: est.conn.label.clone(),
            peer: canonical_peer(&est.conn.stream),
            params: est.params,
            tsih: est.tsih,
            reconnects: 0,
            pings_answered: 0,
        };
        let shared = Arc::new(Shared {
            inbox: Mutex::new(Inbox { tasks: Vec::new(), alive: true }),
            // SAFETY: fd is a new descriptor we own.
            wake: unsafe { OwnedFd::from_raw_fd(fd) },
            shutdown: AtomicBool::new(false),
            info: Mutex::new(info),
            capacity_changed: AtomicBool::new(false),
            writes_unsafe: AtomicBool::new(false),
            journal_bytes: AtomicUsize::new(0),
            next_seq: AtomicU64::new(0),
            read_pool: Arc::new(ReadPool::new(READ_POOL_KEEP)),
        });
        let start = est.moved_permanently.clone().unwrap_or_else(|| portal.clone());
        let mut engine = Engine::new(Arc::clone(&shared), opts.clone(), target.to_string(), start, isid);
        engine.install(est).map_err(|e| InitiatorError::Transport { peer: portal.to_string(), detail: e })?;
        let thread = std::thread::Builder::new()
            .name("iscsi-session".into())
            .spawn(move || engine.run())
            .map_err(|e| InitiatorError::Options(format!("starting the session thread: {e}")))?;
        Ok(Session { shared, thread: Some(thread) })
    }

    /// Carries out `cmds` (at most the queue depth in flight, in order of
    /// submission) and returns one result each. Blocks until all are done:
    /// the buffers are lent to the session until then.
    pub fn execute(&self, cmds: &mut [Command<'_>]) -> Vec<TaskResult> {
        if cmds.is_empty() {
            return Vec::new();
        }
        let batch = Arc::new(Batch::new(cmds.len()));
        let tasks = cmds
            .iter_mut()
            .map(|c| {
                let buf = match &mut c.data {
                    DataBuf::None => Buf::None,
                    DataBuf::In(b) => Buf::In(b.as_mut_ptr(), b.len()),
                    DataBuf::Out(b) => Buf::Out(b.as_ptr(), b.len()),
                };
                ((c.lun, c.cdb), buf)
            })
            .collect();
        if !self.submit(tasks, &batch) {
            return cmds.iter().map(|_| Err(InitiatorError::Closed)).collect();
        }
        batch.wait()
    }

    /// Issues reads of `(cdb, bytes)` on `lun` into buffers the session
    /// lends (read_pool.rs) and calls `consume(index, bytes)` on the
    /// session thread for each that ends GOOD and whole, as it arrives,
    /// after the next commands have gone out: the data is used while still
    /// in the CPU's cache and no thread is woken per command. Blocks until
    /// all are done; returns one result each.
    pub(crate) fn read_consumed(
        &self,
        lun: u16,
        reads: &[(Cdb, usize)],
        consume: &mut (dyn FnMut(usize, &[u8]) + Send),
    ) -> Vec<TaskResult> {
        if reads.is_empty() {
            return Vec::new();
        }
        // SAFETY: `consume` outlives every task: this call blocks until
        // all have finished, and touches `consume` no more until then.
        let c = unsafe { Consume::new(consume) };
        let batch = Arc::new(Batch::new(reads.len()));
        let tasks = reads.iter().map(|(cdb, len)| ((lun, *cdb), Buf::Lent { data: None, len: *len, consume: c }));
        if !self.submit(tasks.collect(), &batch) {
            return reads.iter().map(|_| Err(InitiatorError::Closed)).collect();
        }
        batch.wait()
    }

    /// Queues tasks reporting to `batch`; false when the session has ended.
    fn submit(&self, tasks: Vec<((u16, Cdb), Buf)>, batch: &Arc<Batch>) -> bool {
        {
            let mut inbox = self.shared.inbox.lock().unwrap_or_else(|p| p.into_inner());
            if !inbox.alive {
                return false;
            }
            for (i, ((lun, cdb), buf)) in tasks.into_iter().enumerate() {
                inbox.tasks.push(Box::new(Task {
                    lun_field: encode_lun(lun),
                    lun,
                    cdb,
                    buf,
                    done: Some((Arc::clone(batch), i)),
                    seq: self.shared.next_seq.fetch_add(1, Ordering::Relaxed),
                    itt: 0,
                    received: 0,
                    solicited: 0,
                    retries: 0,
                    sync_covers: 0,
                }));
            }
        }
        self.shared.wake();
        true
    }

    /// One command.
    pub fn execute_one(&self, cmd: Command<'_>) -> TaskResult {
        let mut c = [cmd];
        self.execute(&mut c).pop().unwrap_or(Err(InitiatorError::Closed))
    }

    pub fn info(&self) -> SessionInfo {
        self.shared.info.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// True once (and for as long as) the target announced a capacity change.
    pub fn take_capacity_changed(&self) -> bool {
        self.shared.capacity_changed.swap(false, Ordering::Relaxed)
    }

    /// True when a reconnect happened after acknowledged writes that no
    /// SYNCHRONIZE CACHE covered and that were too many to keep for replay:
    /// the target may have lost them. Sticky.
    pub fn writes_unsafe(&self) -> bool {
        self.shared.writes_unsafe.load(Ordering::Relaxed)
    }

    /// Bytes of acknowledged, not yet synchronized writes kept for replay.
    pub fn journal_bytes(&self) -> usize {
        self.shared.journal_bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Relaxed);
        self.shared.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------

/// The connected peer's address with IPv4-mapped IPv6 addresses as IPv4.
fn canonical_peer(stream: &std::net::TcpStream) -> String {
    match stream.peer_addr() {
        Ok(a) => canonical_addr(a).to_string(),
        Err(_) => String::from("unknown"),
    }
}

fn canonical_addr(a: std::net::SocketAddr) -> std::net::SocketAddr {
    std::net::SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn sn_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Incoming PDU state.
enum RxState {
    Header,
    /// Reading the payload of `bhs` into `sink`.
    Data {
        bhs: Bhs,
        frame: Frame,
        sink: Sink,
        got: usize,
    },
    Trailer {
        bhs: Bhs,
        frame: Frame,
        sink: Sink,
    },
}

enum Sink {
    /// A read task's buffer at an offset: (itt, pointer, offset).
    Task(u32, *mut u8, usize),
    Owned(Vec<u8>),
}

// SAFETY: the pointer is into an active read task's buffer (see Task);
// only the event loop thread uses it.
unsafe impl Send for Sink {}

const RX_BUF: usize = 64 << 10;

/// Read buffers the session keeps for reuse (read_pool.rs); more are
/// freed when returned. A few commands' worth is all that stays in use.
const READ_POOL_KEEP: usize = 16 << 20;

/// Data-In payloads from this size on are read straight from the socket
/// into the caller's buffer, together with the next PDU's header (one
/// readv), and headers after them are read exactly: no payload byte is
/// copied. Smaller ones come in bulk reads into the receive buffer (fewer
/// system calls; the copy is cheap).
const DIRECT_MIN: usize = 16 << 10;

/// A command may take this many I/O timeouts (2 minutes by default) without
/// any progress while the target answers pings: more than a slow
/// SYNCHRONIZE CACHE needs (Linux sd allows a flush 60 s), less than forever.
const STALL_FACTOR: u32 = 4;

/// Memory the send queue may hold (our answers to the target's pings,
/// Data-Out headers for its R2Ts) before we stop reading from the target:
/// a target that floods us with requests and never reads our answers is
/// slowed down to the pace it reads, instead of growing our memory.
const TX_BACKLOG_MAX: usize = 8 << 20;

struct Live {
    stream: std::net::TcpStream,
    label: String,
    limits: DecodeLimits,
    send_digests: Digests,
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    state: RxState,
    tx: VecDeque<OutPdu>,
    /// Sum of the queued PDUs' footprints.
    tx_bytes: usize,
    last_rx: Instant,
    /// Our NOP-Out ping awaiting its answer: (ITT, when sent).
    ping: Option<(u32, Instant)>,
    /// A read returned less than asked: the socket is empty, so wait for
    /// poll instead of asking again (a read that would only say EAGAIN).
    drained: bool,
    /// The last Data-In carried a payload of DIRECT_MIN or more: read the
    /// next header exactly, so the payload after it is not copied.
    large_payloads: bool,
}

struct JournalEntry {
    seq: u64,
    lun_field: [u8; 8],
    lun: u16,
    cdb: Cdb,
    data: Arc<Vec<u8>>,
}

struct Engine {
    shared: Arc<Shared>,
    opts: InitiatorOptions,
    target: String,
    start: Portal,
    isid: [u8; 6],
    live: Option<Live>,
    params: SessionParams,
    cmdsn: u32,
    exp_statsn: u32,
    max_cmdsn: u32,
    next_itt: u32,
    pending: VecDeque<Box<Task>>,
    delayed: Vec<(Instant, Box<Task>)>,
    active: HashMap<u32, Box<Task>>,
    reconnects: u32,
    reconnect_not_before: Option<Instant>,
    broken: Option<InitiatorError>,
    completed_writes: u64,
    synced_writes: u64,
    journal: VecDeque<JournalEntry>,
    journal_bytes: usize,
    /// Latest completed write not kept in the journal.
    unjournaled: Option<u64>,
    last_cause: Option<String>,
    /// When a command last moved: issued, Data-In or R2T for it, status.
    /// A target that answers pings but completes nothing, or keeps its
    /// command window closed, is a dead connection after
    /// STALL_FACTOR I/O timeouts.
    last_progress: Instant,
    /// Lent reads ended GOOD and whole, waiting for their consumer.
    #[allow(clippy::vec_box)]
    to_consume: Vec<(Box<Task>, Outcome)>,
}

type Res<T> = Result<T, String>;

impl Engine {
    fn new(shared: Arc<Shared>, opts: InitiatorOptions, target: String, start: Portal, isid: [u8; 6]) -> Engine {
        Engine {
            shared,
            opts,
            target,
            start,
            isid,
            live: None,
            params: SessionParams::default(),
            cmdsn: 0,
            exp_statsn: 0,
            max_cmdsn: 0,
            next_itt: 1,
            pending: VecDeque::new(),
            delayed: Vec::new(),
            active: HashMap::new(),
            reconnects: 0,
            reconnect_not_before: None,
            broken: None,
            completed_writes: 0,
            synced_writes: 0,
            journal: VecDeque::new(),
            journal_bytes: 0,
            unjournaled: None,
            last_cause: None,
            last_progress: Instant::now(),
            to_consume: Vec::new(),
        }
    }

    fn install(&mut self, est: Established) -> Res<()> {
        let Established { conn, params, cmdsn, exp_statsn, max_cmdsn, tsih, .. } = est;
        conn.stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        self.params = params;
        self.last_progress = Instant::now();
        self.cmdsn = cmdsn;
        self.exp_statsn = exp_statsn;
        self.max_cmdsn = max_cmdsn;
        {
            let mut info = self.shared.info.lock().unwrap_or_else(|p| p.into_inner());
            info.portal = conn.label.clone();
            info.peer = canonical_peer(&conn.stream);
            info.params = params;
            info.tsih = tsih;
            info.reconnects = self.reconnects;
        }
        self.live = Some(Live {
            stream: conn.stream,
            label: conn.label,
            limits: conn.limits,
            send_digests: conn.send_digests,
            rbuf: vec![0u8; RX_BUF],
            start: 0,
            end: 0,
            state: RxState::Header,
            tx: VecDeque::new(),
            tx_bytes: 0,
            last_rx: Instant::now(),
            ping: None,
            drained: false,
            large_payloads: false,
        });
        Ok(())
    }

    fn label(&self) -> String {
        self.live.as_ref().map_or_else(|| self.start.to_string(), |l| l.label.clone())
    }

    // ----- the loop -----

    fn run(mut self) {
        loop {
            self.take_inbox();
            let idle = self.pending.is_empty() && self.active.is_empty() && self.delayed.is_empty();
            if self.shared.shutdown.load(Ordering::Relaxed) && idle {
                self.logout();
                return;
            }
            if self.live.is_none() {
                if idle && self.journal.is_empty() {
                    self.wait_wake(Duration::from_secs(1));
                    continue;
                }
                self.reconnect();
                continue;
            }
            self.promote_delayed();
            if let Err(e) = self.issue() {
                self.connection_failed(e);
                continue;
            }
            if let Err(e) = self.flush_tx() {
                self.connection_failed(e);
                continue;
            }
            if let Err(e) = self.poll_once() {
                self.connection_failed(e);
                continue;
            }
            if let Err(e) = self.timers() {
                self.connection_failed(e);
            }
        }
    }

    fn wait_wake(&self, d: Duration) {
        let mut p = [libc::pollfd { fd: self.shared.wake.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(p.as_mut_ptr(), 1, d.as_millis() as i32) };
        self.drain_wake();
    }

    fn drain_wake(&self) {
        let mut b = [0u8; 8];
        // SAFETY: reading 8 bytes from our non-blocking eventfd.
        unsafe { libc::read(self.shared.wake.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
    }

    fn take_inbox(&mut self) {
        let tasks = std::mem::take(&mut self.shared.inbox.lock().unwrap_or_else(|p| p.into_inner()).tasks);
        for t in tasks {
            if let Some(e) = &self.broken {
                t.finish(Err(e.clone()));
            } else {
                self.pending.push_back(t);
            }
        }
    }

    fn promote_delayed(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].0 <= now {
                let (_, t) = self.delayed.swap_remove(i);
                self.pending.push_front(t);
            } else {
                i += 1;
            }
        }
    }

    fn poll_once(&mut self) -> Res<()> {
        let timeout = self.next_timer();
        let live = self.live.as_ref().expect("connected");
        // Past the backlog bound, read nothing until the target has taken
        // some of what we owe it.
        let mut events = if live.tx_bytes > TX_BACKLOG_MAX { 0 } else { libc::POLLIN };
        if !live.tx.is_empty() {
            events |= libc::POLLOUT;
        }
        let mut fds = [
            libc::pollfd { fd: live.stream.as_raw_fd(), events, revents: 0 },
            libc::pollfd { fd: self.shared.wake.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        // on_readable consumes every whole PDU it has, so bytes left in the
        // receive buffer are an incomplete one: wait for the socket.
        let ms = timeout.as_millis().min(1000) as i32;
        // SAFETY: two valid pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(format!("poll: {e}"));
        }
        if fds[1].revents != 0 {
            self.drain_wake();
        }
        if fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            self.on_readable()?;
        }
        if fds[0].revents & libc::POLLOUT != 0 {
            self.flush_tx()?;
        }
        Ok(())
    }

    fn next_timer(&self) -> Duration {
        let now = Instant::now();
        // Often enough that a ping goes out at a third of the I/O timeout.
        let mut t = Duration::from_secs(1).min(self.opts.io_timeout / 6);
        for (when, _) in &self.delayed {
            t = t.min(when.saturating_duration_since(now));
        }
        t
    }

    fn timers(&mut self) -> Res<()> {
        let io_timeout = self.opts.io_timeout;
        let window_closed = !self.pending.is_empty() && sn_gt(self.cmdsn, self.max_cmdsn);
        // Commands waiting on the target: in flight, or held back by its
        // closed command window (retries waiting on our own timer are not).
        let busy = !self.active.is_empty() || window_closed;
        if !busy {
            self.last_progress = Instant::now();
        }
        let stalled = self.last_progress.elapsed();
        if busy && stalled >= io_timeout * STALL_FACTOR {
            return Err(if self.active.is_empty() {
                format!(
                    "the target kept its command window closed for {} s (MaxCmdSN {}, next CmdSN {})",
                    stalled.as_secs(),
                    self.max_cmdsn,
                    self.cmdsn
                )
            } else {
                format!(
                    "no command made progress for {} s ({} in flight): the target answers but completes nothing",
                    stalled.as_secs(),
                    self.active.len()
                )
            });
        }
        let ping_due = {
            let live = self.live.as_mut().expect("connected");
            let silent = live.last_rx.elapsed();
            if busy && silent >= io_timeout {
                return Err(format!("no answer from the target for {} s", silent.as_secs()));
            }
            // The answer to a ping also carries a fresh MaxCmdSN.
            busy && live.ping.is_none() && silent >= io_timeout / 3
        };
        if ping_due {
            let itt = self.alloc_itt();
            let nop = NopOut {
                lun: [0; 8],
                itt,
                ttt: RESERVED_TAG,
                cmdsn: self.cmdsn,
                exp_statsn: self.exp_statsn,
                data: Vec::new(),
            };
            self.queue_pdu(&nop.to_pdu(), RESERVED_TAG);
            self.live.as_mut().expect("connected").ping = Some((itt, Instant::now()));
            tracing::debug!(
                "{}: quiet for {} s with commands outstanding: ping",
                self.label(),
                io_timeout.as_secs() / 3
            );
        }
        Ok(())
    }

    // ----- sending -----

    fn alloc_itt(&mut self) -> u32 {
        loop {
            let itt = self.next_itt;
            self.next_itt = self.next_itt.wrapping_add(1);
            if itt != RESERVED_TAG && itt != 0 && !self.active.contains_key(&itt) {
                return itt;
            }
        }
    }

    fn queue(&mut self, bhs: &Bhs, payload: Payload, itt: u32) {
        let live = self.live.as_mut().expect("connected");
        let d = live.send_digests;
        let head = encode_header(bhs, payload.bytes().len(), d);
        let (trailer, trailer_len) = data_trailer(payload.bytes(), d);
        if self.opts.log_pdus {
            tracing::debug!("pdu {} <- {}", live.label, describe(&Pdu::new(*bhs, Vec::new())));
        }
        let o = OutPdu { head, payload, trailer, trailer_len, written: 0, itt };
        live.tx_bytes += o.footprint();
        live.tx.push_back(o);
    }

    fn queue_pdu(&mut self, pdu: &Pdu, itt: u32) {
        self.queue(&pdu.bhs, Payload::Owned(pdu.data.clone()), itt);
    }

    /// Issues pending tasks while the queue depth and CmdSN window allow.
    fn issue(&mut self) -> Res<()> {
        while self.active.len() < self.opts.queue_depth && !sn_gt(self.cmdsn, self.max_cmdsn) {
            let Some(mut t) = self.pending.pop_front() else { break };
            let itt = self.alloc_itt();
            t.itt = itt;
            // A fresh issue: no data received, no R2T seen (whatever path
            // requeued the task).
            t.received = 0;
            t.solicited = 0;
            if t.cdb[0] == cdb::SYNCHRONIZE_CACHE_10 {
                t.sync_covers = self.completed_writes;
            }
            let len = t.len();
            let mut cmd = ScsiCommand {
                immediate: false,
                fin: true,
                read: t.is_read(),
                write: t.is_write(),
                attr: TaskAttr::Simple,
                lun: t.lun_field,
                itt,
                expected_len: len as u32,
                cmdsn: self.cmdsn,
                exp_statsn: self.exp_statsn,
                cdb: t.cdb,
                data: Vec::new(),
            };
            self.cmdsn = self.cmdsn.wrapping_add(1);
            self.last_progress = Instant::now();
            if t.is_write() {
                let p = self.params;
                let max_xmit = p.max_xmit_data_segment as usize;
                let immediate = if p.immediate_data { len.min(p.first_burst as usize).min(max_xmit) } else { 0 };
                let unsolicited_end = if p.initial_r2t { immediate } else { len.min(p.first_burst as usize) };
                cmd.fin = unsolicited_end == immediate;
                let payload = t.out_payload(0, immediate);
                self.queue(&cmd.to_bhs(), payload, itt);
                let mut off = immediate;
                let mut datasn = 0;
                while off < unsolicited_end {
                    let n = (unsolicited_end - off).min(max_xmit);
                    let d = DataOut {
                        fin: off + n == unsolicited_end,
                        lun: t.lun_field,
                        itt,
                        ttt: RESERVED_TAG,
                        exp_statsn: self.exp_statsn,
                        datasn,
                        offset: off as u32,
                        data: Vec::new(),
                    };
                    let payload = t.out_payload(off, n);
                    self.queue(&d.to_bhs(n as u32), payload, itt);
                    off += n;
                    datasn += 1;
                }
            } else {
                self.queue(&cmd.to_bhs(), Payload::None, itt);
            }
            self.active.insert(itt, t);
        }
        Ok(())
    }

    fn flush_tx(&mut self) -> Res<()> {
        let live = self.live.as_mut().expect("connected");
        while !live.tx.is_empty() {
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(48);
            for o in live.tx.iter().take(16) {
                let mut skip = o.written;
                for part in o.parts() {
                    if skip >= part.len() {
                        skip -= part.len();
                        continue;
                    }
                    slices.push(IoSlice::new(&part[skip..]));
                    skip = 0;
                }
            }
            let r = live.stream.write_vectored(&slices);
            drop(slices);
            match r {
                Ok(0) => return Err("the connection closed while sending".into()),
                Ok(mut n) => {
                    while n > 0 {
                        let front = live.tx.front_mut().expect("written bytes belong to queued PDUs");
                        let left = front.total() - front.written;
                        if n >= left {
                            n -= left;
                            let done = live.tx.pop_front().expect("front exists");
                            live.tx_bytes = live.tx_bytes.saturating_sub(done.footprint());
                        } else {
                            front.written += n;
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("sending: {e}")),
            }
        }
        Ok(())
    }

    /// Before a task completes: nothing queued may point into its buffer.
    fn release_tx(&mut self, itt: u32) {
        let Some(live) = self.live.as_mut() else { return };
        live.tx.retain_mut(|o| {
            if o.itt != itt {
                return true;
            }
            if o.written == 0 {
                return false;
            }
            // Half sent: the rest must still go out, from our own copy.
            o.payload = Payload::Owned(o.payload.bytes().to_vec());
            o.itt = RESERVED_TAG;
            true
        });
        // retain_mut walks the whole queue anyway.
        live.tx_bytes = live.tx.iter().map(OutPdu::footprint).sum();
    }

    // ----- receiving -----

    /// Reads up to `max` bytes into the receive buffer; Ok(false) when
    /// nothing is there now.
    fn fill(&mut self, max: usize) -> Res<bool> {
        let live = self.live.as_mut().expect("connected");
        if live.start == live.end {
            live.start = 0;
            live.end = 0;
        } else if live.start > RX_BUF / 2 {
            live.rbuf.copy_within(live.start..live.end, 0);
            live.end -= live.start;
            live.start = 0;
        }
        if live.drained {
            return Ok(false);
        }
        let want = max.min(RX_BUF - live.end);
        loop {
            match live.stream.read(&mut live.rbuf[live.end..live.end + want]) {
                Ok(0) => return Err("the target closed the connection".into()),
                Ok(n) => {
                    live.end += n;
                    live.last_rx = Instant::now();
                    live.drained = n < want;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    live.drained = true;
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("receiving: {e}")),
            }
        }
    }

    /// Bytes to ask for when `need` more are wanted for a header or
    /// trailer: exactly those after large payloads, else a bulk read.
    fn header_read_size(&self, need: usize) -> usize {
        if self.live.as_ref().is_some_and(|l| l.large_payloads) {
            need
        } else {
            RX_BUF
        }
    }

    /// Reads the rest of a large payload straight into `dst` and, in the
    /// same readv, up to `tail` bytes after it (the trailer and the next
    /// header) into the receive buffer, which is empty. Returns the payload
    /// bytes read; 0 when nothing is there now.
    fn read_direct(&mut self, dst: &mut [u8], tail: usize) -> Res<usize> {
        let live = self.live.as_mut().expect("connected");
        debug_assert_eq!(live.start, live.end);
        live.start = 0;
        live.end = 0;
        if live.drained {
            return Ok(0);
        }
        let want = dst.len();
        loop {
            let mut iov = [IoSliceMut::new(dst), IoSliceMut::new(&mut live.rbuf[..tail])];
            match live.stream.read_vectored(&mut iov) {
                Ok(0) => return Err("the target closed the connection".into()),
                Ok(n) => {
                    live.last_rx = Instant::now();
                    live.drained = n < want + tail;
                    live.end = n.saturating_sub(want);
                    return Ok(n.min(want));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    live.drained = true;
                    return Ok(0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("receiving: {e}")),
            }
        }
    }

    fn on_readable(&mut self) -> Res<()> {
        self.live.as_mut().expect("connected").drained = false;
        loop {
            let live = self.live.as_mut().expect("connected");
            if live.tx_bytes > TX_BACKLOG_MAX {
                // Answers are piling up (a flood of pings or R2Ts): send
                // before reading more (poll_once waits for POLLOUT).
                return Ok(());
            }
            let avail = live.end - live.start;
            match std::mem::replace(&mut live.state, RxState::Header) {
                RxState::Header => {
                    let need = if avail >= BHS_LEN {
                        let mut raw = [0u8; BHS_LEN];
                        raw.copy_from_slice(&live.rbuf[live.start..live.start + BHS_LEN]);
                        frame(&Bhs(raw), &live.limits).map_err(|e| format!("malformed PDU: {e}"))?.header_len
                    } else {
                        BHS_LEN
                    };
                    if need > RX_BUF / 2 {
                        return Err(format!("header of {need} bytes"));
                    }
                    if avail < need {
                        let size = self.header_read_size(need - avail);
                        if !self.fill(size)? {
                            return Ok(());
                        }
                        continue;
                    }
                    let mut raw = [0u8; BHS_LEN];
                    raw.copy_from_slice(&live.rbuf[live.start..live.start + BHS_LEN]);
                    let bhs = Bhs(raw);
                    let fr = frame(&bhs, &live.limits).map_err(|e| format!("malformed PDU: {e}"))?;
                    if live.limits.digests.header {
                        check_header_digest(&live.rbuf[live.start..live.start + fr.header_len])
                            .map_err(|e| e.to_string())?;
                    }
                    live.start += fr.header_len;
                    let sink = self.sink_for(&bhs, &fr)?;
                    let live = self.live.as_mut().expect("connected");
                    live.state = if fr.data_len == 0 {
                        RxState::Trailer { bhs, frame: fr, sink }
                    } else {
                        RxState::Data { bhs, frame: fr, sink, got: 0 }
                    };
                }
                RxState::Data { bhs, frame: fr, mut sink, mut got } => {
                    let want = fr.data_len - got;
                    if avail > 0 {
                        let n = want.min(avail);
                        let src = &live.rbuf[live.start..live.start + n];
                        match &mut sink {
                            // SAFETY: sink_for checked offset + data_len against the buffer.
                            Sink::Task(_, p, off) => unsafe {
                                std::ptr::copy_nonoverlapping(src.as_ptr(), p.add(*off + got), n)
                            },
                            Sink::Owned(v) => v.extend_from_slice(src),
                        }
                        live.start += n;
                        got += n;
                    } else if let (Sink::Task(_, p, off), true) = (&sink, fr.data_len >= DIRECT_MIN) {
                        // Large payloads go straight from the socket to the caller's
                        // buffer, with the trailer and the next header behind them.
                        // SAFETY: as above; the range is within the task's buffer.
                        let dst = unsafe { std::slice::from_raw_parts_mut(p.add(*off + got), want) };
                        let hdigest = if live.limits.digests.header { 4 } else { 0 };
                        let n = self.read_direct(dst, fr.trailer_len() + BHS_LEN + hdigest)?;
                        if n == 0 {
                            let live = self.live.as_mut().expect("connected");
                            live.state = RxState::Data { bhs, frame: fr, sink, got };
                            return Ok(());
                        }
                        got += n;
                    } else {
                        live.state = RxState::Data { bhs, frame: fr, sink, got };
                        if !self.fill(RX_BUF)? {
                            return Ok(());
                        }
                        continue;
                    }
                    let live = self.live.as_mut().expect("connected");
                    live.state = if got == fr.data_len {
                        RxState::Trailer { bhs, frame: fr, sink }
                    } else {
                        RxState::Data { bhs, frame: fr, sink, got }
                    };
                }
                RxState::Trailer { bhs, frame: fr, sink } => {
                    let tl = fr.trailer_len();
                    if avail < tl {
                        live.state = RxState::Trailer { bhs, frame: fr, sink };
                        let size = self.header_read_size(tl - avail);
                        if !self.fill(size)? {
                            return Ok(());
                        }
                        continue;
                    }
                    if fr.data_digest {
                        let trailer = &live.rbuf[live.start..live.start + tl];
                        let payload: &[u8] = match &sink {
                            // SAFETY: the bytes just received into the task's buffer.
                            Sink::Task(_, p, off) => unsafe { std::slice::from_raw_parts(p.add(*off), fr.data_len) },
                            Sink::Owned(v) => v,
                        };
                        check_data_digest(payload, trailer).map_err(|e| e.to_string())?;
                    }
                    live.start += tl;
                    let dispatched = self.dispatch(bhs, fr, sink);
                    // Whatever happens next, reads that ended GOOD are consumed
                    // and finished: their callers wait for them.
                    let consumed = if self.to_consume.is_empty() { Ok(()) } else { self.consume_completed() };
                    dispatched.and(consumed)?;
                }
            }
        }
    }

    /// Where the payload of the PDU with header `bhs` goes.
    fn sink_for(&mut self, bhs: &Bhs, fr: &Frame) -> Res<Sink> {
        if bhs.opcode() != Some(Opcode::DataIn) {
            return Ok(Sink::Owned(Vec::with_capacity(fr.data_len)));
        }
        let d = DataIn::from_bhs(bhs).map_err(|e| format!("Data-In: {e}"))?;
        let task = self.active.get_mut(&d.itt).ok_or_else(|| format!("Data-In for unknown task 0x{:08x}", d.itt))?;
        let (p, len) = match &mut task.buf {
            Buf::In(p, len) => (*p, *len),
            Buf::Lent { data, len, .. } => {
                let len = *len;
                let v = data.get_or_insert_with(|| self.shared.read_pool.take(len));
                (v.as_mut_ptr(), len)
            }
            _ => return Err(format!("Data-In for task 0x{:08x}, which reads nothing", d.itt)),
        };
        let off = d.offset as usize;
        if off != task.received {
            return Err(format!("Data-In out of order: offset {off}, expected {}", task.received));
        }
        if off + fr.data_len > len {
            return Err(format!("Data-In past the end of the buffer: {}+{} > {len}", off, fr.data_len));
        }
        if let Some(live) = self.live.as_mut() {
            live.large_payloads = fr.data_len >= DIRECT_MIN;
        }
        if fr.data_len > 0 {
            // Empty Data-In PDUs are no progress: a target could send them forever.
            self.last_progress = Instant::now();
        }
        Ok(Sink::Task(d.itt, p, off))
    }

    fn saw_statsn(&mut self, statsn: u32) {
        let next = statsn.wrapping_add(1);
        if sn_gt(next, self.exp_statsn) {
            self.exp_statsn = next;
        }
    }

    fn saw_window(&mut self, exp_cmdsn: u32, max_cmdsn: u32) {
        // RFC 7143 4.2.2.1: ignore a MaxCmdSN below ExpCmdSN - 1.
        if !sn_gt(exp_cmdsn, max_cmdsn.wrapping_add(1)) && sn_gt(max_cmdsn, self.max_cmdsn) {
            self.max_cmdsn = max_cmdsn;
        }
    }

    fn dispatch(&mut self, bhs: Bhs, fr: Frame, sink: Sink) -> Res<()> {
        if self.opts.log_pdus {
            let label = self.label();
            let shown = match &sink {
                Sink::Owned(v) => Pdu::new(bhs, v.clone()),
                Sink::Task(..) => Pdu::new(bhs, Vec::new()),
            };
            tracing::debug!("pdu {label} -> {}", describe(&shown));
        }
        let data = match sink {
            Sink::Owned(v) => v,
            Sink::Task(itt, _, _) => {
                let d = DataIn::from_bhs(&bhs).map_err(|e| e.to_string())?;
                self.saw_window(d.exp_cmdsn, d.max_cmdsn);
                if let Some(t) = self.active.get_mut(&itt) {
                    t.received += fr.data_len;
                }
                if d.has_status {
                    self.saw_statsn(d.statsn);
                    self.finish_task(itt, 0, d.status, Vec::new(), d.residual)?;
                }
                return Ok(());
            }
        };
        let pdu = Pdu::new(bhs, data);
        match bhs.opcode() {
            Some(Opcode::DataIn) => {
                // A Data-In without payload (status only).
                let d = DataIn::from_pdu(&pdu).map_err(|e| e.to_string())?;
                if !self.active.contains_key(&d.itt) {
                    return Err(format!("Data-In for unknown task 0x{:08x}", d.itt));
                }
                self.saw_window(d.exp_cmdsn, d.max_cmdsn);
                if d.has_status {
                    self.saw_statsn(d.statsn);
                    self.finish_task(d.itt, 0, d.status, Vec::new(), d.residual)?;
                }
            }
            Some(Opcode::ScsiResponse) => {
                let r = ScsiResponse::from_pdu(&pdu).map_err(|e| format!("SCSI Response: {e}"))?;
                self.saw_statsn(r.statsn);
                self.saw_window(r.exp_cmdsn, r.max_cmdsn);
                self.finish_task(r.itt, r.response, r.status, r.sense, r.residual)?;
            }
            Some(Opcode::R2t) => {
                let r = R2t::from_pdu(&pdu).map_err(|e| format!("R2T: {e}"))?;
                self.saw_window(r.exp_cmdsn, r.max_cmdsn);
                self.on_r2t(&r)?;
            }
            Some(Opcode::NopIn) => {
                let n = NopIn::from_pdu(&pdu).map_err(|e| format!("NOP-In: {e}"))?;
                self.saw_window(n.exp_cmdsn, n.max_cmdsn);
                if n.itt != RESERVED_TAG {
                    self.saw_statsn(n.statsn);
                    let live = self.live.as_mut().expect("connected");
                    if live.ping.is_some_and(|(i, _)| i == n.itt) {
                        live.ping = None;
                    }
                }
                if n.is_ping() {
                    // The target's ping: answer with its TTT and data.
                    let answer = NopOut {
                        lun: n.lun,
                        itt: RESERVED_TAG,
                        ttt: n.ttt,
                        cmdsn: self.cmdsn,
                        exp_statsn: self.exp_statsn,
                        data: n.data,
                    };
                    self.queue_pdu(&answer.to_pdu(), RESERVED_TAG);
                    self.shared.info.lock().unwrap_or_else(|p| p.into_inner()).pings_answered += 1;
                    tracing::debug!("{}: answered the target's NOP-In ping", self.label());
                }
            }
            Some(Opcode::AsyncMessage) => {
                let m = AsyncMessage::from_pdu(&pdu).map_err(|e| format!("Async Message: {e}"))?;
                self.saw_statsn(m.statsn);
                self.saw_window(m.exp_cmdsn, m.max_cmdsn);
                self.on_async(&m)?;
            }
            Some(Opcode::Reject) => {
                let r = RejectNotice::from_pdu(&pdu).map_err(|e| format!("Reject: {e}"))?;
                self.saw_statsn(r.statsn);
                self.saw_window(r.exp_cmdsn, r.max_cmdsn);
                let itt = r.rejected.map(|h| h.itt());
                let reason = format!("{} (0x{:02x})", reason_name(r.reason), r.reason);
                if r.reason == 0x02 {
                    return Err(format!("the target rejected a PDU: {reason}"));
                }
                match itt.and_then(|i| self.active.remove(&i)) {
                    Some(t) => {
                        self.release_tx(t.itt);
                        let command = cdb::name(&t.cdb);
                        let lun = t.lun;
                        t.finish(Err(InitiatorError::Rejected { command, lun, reason }));
                    }
                    None => {
                        let live = self.live.as_mut().expect("connected");
                        if live.ping.is_some_and(|(i, _)| Some(i) == itt) {
                            live.ping = None;
                        }
                        tracing::warn!("{}: the target rejected a PDU: {reason}", self.label());
                    }
                }
            }
            _ => return Err(format!("unexpected PDU opcode 0x{:02x} in the full feature phase", bhs.opcode_raw())),
        }
        Ok(())
    }

    fn on_r2t(&mut self, r: &R2t) -> Res<()> {
        let max_xmit = self.params.max_xmit_data_segment as usize;
        let exp_statsn = self.exp_statsn;
        let task = self.active.get_mut(&r.itt).ok_or_else(|| format!("R2T for unknown task 0x{:08x}", r.itt))?;
        if !task.is_write() {
            return Err(format!("R2T for task 0x{:08x}, which writes nothing", r.itt));
        }
        let (off, len) = (r.offset as usize, r.desired_len as usize);
        match off.checked_add(len) {
            Some(end) if end <= task.len() => {}
            _ => return Err(format!("R2T for bytes {off}+{len} of a {}-byte write", task.len())),
        }
        task.solicited += len;
        if task.solicited > task.len() {
            return Err(format!(
                "R2Ts asked for {} bytes of a {}-byte write (each byte is asked for once)",
                task.solicited,
                task.len()
            ));
        }
        let task = &*task;
        self.last_progress = Instant::now();
        let mut pdus = Vec::new();
        let mut at = off;
        let mut datasn = 0;
        while at < off + len {
            let n = (off + len - at).min(max_xmit);
            let d = DataOut {
                fin: at + n == off + len,
                lun: task.lun_field,
                itt: r.itt,
                ttt: r.ttt,
                exp_statsn,
                datasn,
                offset: at as u32,
                data: Vec::new(),
            };
            pdus.push((d.to_bhs(n as u32), task.out_payload(at, n)));
            at += n;
            datasn += 1;
        }
        for (bhs, payload) in pdus {
            self.queue(&bhs, payload, r.itt);
        }
        Ok(())
    }

    fn on_async(&mut self, m: &AsyncMessage) -> Res<()> {
        match m.event {
            AsyncEvent::ScsiEvent => {
                if let Some(s) = Sense::parse(&m.sense) {
                    if (s.asc, s.ascq) == (0x2a, 0x09) {
                        self.shared.capacity_changed.store(true, Ordering::Relaxed);
                    }
                    tracing::warn!("{}: the target reports: {s}", self.label());
                }
            }
            AsyncEvent::LogoutRequested => {
                return Err(format!("the target asked us to log out within {} s", m.param3));
            }
            AsyncEvent::ConnectionDropped | AsyncEvent::SessionDropped => {
                let wait = u64::from(m.param2).min(60);
                self.reconnect_not_before = Some(Instant::now() + Duration::from_secs(wait));
                return Err(format!("the target announced it drops the connection (reconnect after {wait} s)"));
            }
            e => tracing::debug!("{}: asynchronous event {e:?} ignored", self.label()),
        }
        Ok(())
    }

    /// A task's status arrived (SCSI Response, or Data-In with S).
    fn finish_task(&mut self, itt: u32, response: u8, status: u8, sense: Vec<u8>, residual: Residual) -> Res<()> {
        let mut t = self.active.remove(&itt).ok_or_else(|| format!("status for unknown task 0x{itt:08x}"))?;
        self.release_tx(itt);
        self.last_progress = Instant::now();
        let command = cdb::name(&t.cdb);
        if response != 0 {
            let lun = t.lun;
            t.finish(Err(InitiatorError::Scsi {
                command,
                lun,
                status: Status::Other(status),
                sense: None,
                detail: format!("the target failed the command (iSCSI response 0x{response:02x})"),
            }));
            return Ok(());
        }
        let status = Status::from_u8(status);
        let sense = Sense::parse(&sense);
        let retry = t.retries < self.opts.command_retries;
        match (status, &sense) {
            (Status::CheckCondition, Some(s)) if s.is_unit_attention() && retry => {
                if (s.asc, s.ascq) == (0x2a, 0x09) {
                    self.shared.capacity_changed.store(true, Ordering::Relaxed);
                }
                tracing::info!("{}: {command} on LUN {}: {s}; retrying", self.label(), t.lun);
                t.retries += 1;
                t.reset();
                self.pending.push_front(t);
                return Ok(());
            }
            (Status::Busy | Status::TaskSetFull, _) if retry => {
                t.retries += 1;
                let wait = Duration::from_millis(50 * u64::from(t.retries));
                tracing::debug!("{}: {command}: {}; retrying in {} ms", self.label(), status.name(), wait.as_millis());
                t.reset();
                self.delayed.push((Instant::now() + wait, t));
                return Ok(());
            }
            _ => {}
        }
        if status == Status::Good {
            if t.is_write() {
                self.completed_writes += 1;
                if t.done.is_some() {
                    self.journal_write(&t);
                }
            } else if t.cdb[0] == cdb::SYNCHRONIZE_CACHE_10 {
                self.synced(t.sync_covers);
            }
        }
        let outcome = Outcome { status, sense, residual, transferred: t.received };
        if let Buf::Lent { len, .. } = &t.buf {
            if status == Status::Good && t.received == *len {
                self.to_consume.push((t, outcome));
                return Ok(());
            }
        }
        t.finish(Ok(outcome));
        Ok(())
    }

    /// Sends what can go out now, then hands the completed lent reads to
    /// their consumers: the target works on the next commands meanwhile.
    fn consume_completed(&mut self) -> Res<()> {
        let sent = self.issue().and_then(|()| self.flush_tx());
        self.consume_ready();
        sent
    }

    /// Hands the completed lent reads to their consumers and finishes them.
    fn consume_ready(&mut self) {
        for (mut t, outcome) in self.to_consume.drain(..) {
            if let (Buf::Lent { data, len, consume }, Some((_, index))) = (&mut t.buf, &t.done) {
                if let Some(d) = data.take() {
                    // SAFETY: the caller waits in read_consumed until this task finishes.
                    unsafe { consume.call(*index, &d[..*len]) };
                    self.shared.read_pool.give(d);
                }
            }
            t.finish(Ok(outcome));
        }
    }

    // ----- write journal -----

    fn journal_write(&mut self, t: &Task) {
        let n = t.len();
        if self.journal_bytes + n > self.opts.write_journal_limit {
            self.unjournaled = Some(self.completed_writes);
        } else {
            self.journal.push_back(JournalEntry {
                seq: self.completed_writes,
                lun_field: t.lun_field,
                lun: t.lun,
                cdb: t.cdb,
                data: Arc::new(t.out_bytes().to_vec()),
            });
            self.journal_bytes += n;
        }
        self.shared.journal_bytes.store(self.journal_bytes, Ordering::Relaxed);
    }

    /// A SYNCHRONIZE CACHE issued after `covers` completed writes succeeded.
    fn synced(&mut self, covers: u64) {
        self.synced_writes = self.synced_writes.max(covers);
        while self.journal.front().is_some_and(|e| e.seq <= self.synced_writes) {
            let e = self.journal.pop_front().expect("checked");
            self.journal_bytes -= e.data.len();
        }
        if self.unjournaled.is_some_and(|s| s <= self.synced_writes) {
            self.unjournaled = None;
        }
        self.shared.journal_bytes.store(self.journal_bytes, Ordering::Relaxed);
    }

    // ----- faults -----

    fn connection_failed(&mut self, cause: String) {
        let label = self.label();
        self.live = None;
        if self.shared.shutdown.load(Ordering::Relaxed)
            && self.pending.is_empty()
            && self.active.is_empty()
            && self.delayed.is_empty()
        {
            return;
        }
        tracing::warn!("connection to {label} lost: {cause}; reconnecting");
        let mut back: Vec<Box<Task>> = self.active.drain().map(|(_, t)| t).collect();
        back.sort_by_key(|t| t.seq);
        for mut t in back.into_iter().rev() {
            t.reset();
            self.pending.push_front(t);
        }
        if self.unjournaled.is_some() {
            self.shared.writes_unsafe.store(true, Ordering::Relaxed);
            // A warning now; the flush that would have covered them fails.
            tracing::warn!(
                "{label}: acknowledged writes not yet covered by SYNCHRONIZE CACHE were too many to keep for replay: \
                 the target may have lost them"
            );
        }
        self.last_cause = Some(cause);
    }

    fn fail_everything(&mut self, e: InitiatorError) {
        self.consume_ready();
        for t in self.pending.drain(..) {
            t.finish(Err(e.clone()));
        }
        for (_, t) in self.delayed.drain(..) {
            t.finish(Err(e.clone()));
        }
        for (_, t) in self.active.drain() {
            t.finish(Err(e.clone()));
        }
        self.broken = Some(e);
    }

    fn reconnect(&mut self) {
        let cause = self.last_cause.take().unwrap_or_else(|| "connection closed".into());
        let portal = self.start.to_string();
        self.reconnects += 1;
        if self.reconnects > self.opts.max_reconnects {
            let e = InitiatorError::TooManyReconnects { portal, cause, count: self.reconnects - 1 };
            // The callers' commands fail with it, and they name the volume.
            tracing::info!("{e}");
            self.fail_everything(e);
            return;
        }
        if let Some(t) = self.reconnect_not_before.take() {
            std::thread::sleep(t.saturating_duration_since(Instant::now()));
        }
        let began = Instant::now();
        let deadline = began + self.opts.reconnect_timeout;
        let mut wait = Duration::from_millis(200);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut opts = self.opts.clone();
            opts.login_timeout = opts.login_timeout.min(deadline.saturating_duration_since(Instant::now()));
            opts.login_timeout = opts.login_timeout.max(Duration::from_millis(500));
            match login(&self.start, Some(&self.target), self.isid, &opts) {
                Ok(est) => {
                    let label = est.conn.label.clone();
                    if let Some(p) = est.moved_permanently.clone() {
                        self.start = p;
                    }
                    if let Err(e) = self.install(est) {
                        tracing::warn!("{label}: {e}");
                    } else {
                        tracing::warn!(
                            "reconnected to {} at {label} after {attempts} attempt(s) in {:.1} s; reissuing {} command(s)",
                            self.target,
                            began.elapsed().as_secs_f64(),
                            self.pending.len() + self.journal.len()
                        );
                        self.replay_journal();
                        return;
                    }
                }
                Err(e) if e.is_permanent() => {
                    tracing::info!("reconnecting to {}: {e}", self.target);
                    self.fail_everything(e);
                    return;
                }
                Err(e) => {
                    let now = Instant::now();
                    if now + wait >= deadline || self.shared.shutdown.load(Ordering::Relaxed) {
                        let e = InitiatorError::ConnectionLost {
                            portal,
                            cause,
                            secs: self.opts.reconnect_timeout.as_secs(),
                            attempts,
                            last: e.to_string(),
                        };
                        tracing::info!("{e}");
                        self.fail_everything(e);
                        return;
                    }
                    tracing::info!("reconnecting to {portal}: {e}; next attempt in {} ms", wait.as_millis());
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Writes acknowledged before the drop, not yet covered by a
    /// SYNCHRONIZE CACHE: sent again before anything else.
    fn replay_journal(&mut self) {
        for e in self.journal.iter().rev() {
            self.pending.push_front(Box::new(Task {
                lun_field: e.lun_field,
                lun: e.lun,
                cdb: e.cdb,
                buf: Buf::Shared(Arc::clone(&e.data)),
                done: None,
                seq: 0,
                itt: 0,
                received: 0,
                solicited: 0,
                retries: 0,
                sync_covers: 0,
            }));
        }
    }

    fn logout(&mut self) {
        let Some(mut live) = self.live.take() else { return };
        let _ = live.stream.set_nonblocking(false);
        let itt = self.alloc_itt();
        let req = LogoutRequest { reason: 0, itt, cid: 0, cmdsn: self.cmdsn, exp_statsn: self.exp_statsn };
        let bytes = crate::iscsi::pdu::encode(&req.to_pdu(), live.send_digests);
        let _ = live.stream.set_write_timeout(Some(Duration::from_secs(2)));
        let _ = live.stream.set_read_timeout(Some(Duration::from_secs(2)));
        // Whatever was half-sent goes first.
        while let Some(o) = live.tx.pop_front() {
            let mut all = Vec::new();
            for p in o.parts() {
                all.extend_from_slice(p);
            }
            if live.stream.write_all(&all[o.written.min(all.len())..]).is_err() {
                return;
            }
        }
        if live.stream.write_all(&bytes).is_ok() {
            // Wait for the Logout Response (or the close), briefly.
            let mut sink = [0u8; 4096];
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(2) {
                match live.stream.read(&mut sink) {
                    Ok(0) | Err(_) => break,
                    Ok(n) if n >= BHS_LEN && sink[0] & 0x3f == Opcode::LogoutResponse.code() => break,
                    Ok(_) => {}
                }
            }
        }
        let _ = live.stream.shutdown(std::net::Shutdown::Both);
        tracing::debug!("logged out of {} at {}", self.target, live.label);
    }
}

impl Drop for Engine {
    /// However the loop ends, every waiting caller gets an answer.
    fn drop(&mut self) {
        let leftover = {
            let mut inbox = self.shared.inbox.lock().unwrap_or_else(|p| p.into_inner());
            inbox.alive = false;
            std::mem::take(&mut inbox.tasks)
        };
        let e = self.broken.clone().unwrap_or(InitiatorError::Closed);
        for t in leftover {
            t.finish(Err(e.clone()));
        }
        self.fail_everything(e);
    }
}
