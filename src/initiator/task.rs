//! Commands as the session's event loop carries them: the caller's buffer
//! (borrowed for as long as the caller waits), progress on the wire, and
//! the batch a result goes back to.

use std::sync::{Arc, Condvar, Mutex};

use super::error::InitiatorError;
use crate::iscsi::scsi_pdu::Residual;
use crate::scsi::cdb::Cdb;
use crate::scsi::sense::Sense;
use crate::scsi::Status;

/// The data of a command: none, a buffer to fill (Data-In), or one to send.
pub enum DataBuf<'a> {
    None,
    In(&'a mut [u8]),
    Out(&'a [u8]),
}

/// One SCSI command for [`Session::execute`](super::session::Session::execute).
pub struct Command<'a> {
    pub lun: u16,
    pub cdb: Cdb,
    pub data: DataBuf<'a>,
}

/// How a command ended at the target (status GOOD or not: the caller
/// decides what a CHECK CONDITION means for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub sense: Option<Sense>,
    pub residual: Residual,
    /// Bytes of Data-In received (reads).
    pub transferred: usize,
}

impl Outcome {
    pub fn is_good(&self) -> bool {
        self.status == Status::Good
    }
}

pub(crate) type TaskResult = Result<Outcome, InitiatorError>;

/// Results of one `execute` call, filled in by the event loop.
pub(crate) struct Batch {
    state: Mutex<(usize, Vec<Option<TaskResult>>)>,
    cv: Condvar,
}

impl Batch {
    pub fn new(n: usize) -> Batch {
        Batch { state: Mutex::new((n, (0..n).map(|_| None).collect())), cv: Condvar::new() }
    }

    pub fn complete(&self, index: usize, r: TaskResult) {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if g.1[index].is_none() {
            g.1[index] = Some(r);
            g.0 -= 1;
            if g.0 == 0 {
                self.cv.notify_all();
            }
        }
    }

    /// Blocks until every command has a result.
    pub fn wait(&self) -> Vec<TaskResult> {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while g.0 > 0 {
            g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        g.1.drain(..).map(|r| r.unwrap_or(Err(InitiatorError::Closed))).collect()
    }
}

/// Where a task's data lives.
pub(crate) enum Buf {
    None,
    /// The caller's buffer to fill.
    In(*mut u8, usize),
    /// The caller's data to send.
    Out(*const u8, usize),
    /// Data the session owns (a journaled write being replayed).
    Shared(Arc<Vec<u8>>),
    /// `len` bytes to read into a buffer from the session's read pool,
    /// taken when the first Data-In arrives (read_pool.rs); `consume` is
    /// given the bytes on the session thread when the read ends GOOD and
    /// whole, and the buffer goes straight back to the pool.
    Lent {
        data: Option<Vec<u8>>,
        len: usize,
        consume: Consume,
    },
}

/// A caller's function over lent reads' bytes: `(index in the batch,
/// bytes)`. Called only on the session thread, one call at a time.
#[derive(Clone, Copy)]
pub(crate) struct Consume(*mut (dyn FnMut(usize, &[u8]) + Send + 'static));

impl Consume {
    /// # Safety
    /// The caller keeps `f` alive and untouched until every task holding
    /// the result has finished (it blocks in `Batch::wait`).
    pub unsafe fn new<'a>(f: &'a mut (dyn FnMut(usize, &[u8]) + Send + 'a)) -> Consume {
        type Short<'a> = *mut (dyn FnMut(usize, &[u8]) + Send + 'a);
        type Long = *mut (dyn FnMut(usize, &[u8]) + Send + 'static);
        let p: Short<'a> = f;
        // SAFETY: only the lifetime is erased; see the contract above.
        Consume(unsafe { std::mem::transmute::<Short<'a>, Long>(p) })
    }

    /// # Safety
    /// As for `new`; on the session thread only.
    pub unsafe fn call(&self, index: usize, bytes: &[u8]) {
        // SAFETY: see `new`.
        unsafe { (*self.0)(index, bytes) }
    }
}

pub(crate) struct Task {
    pub lun_field: [u8; 8],
    pub lun: u16,
    pub cdb: Cdb,
    pub buf: Buf,
    /// Where the result goes; None for the session's own replays.
    pub done: Option<(Arc<Batch>, usize)>,
    /// Submission order (requeued tasks keep their place).
    pub seq: u64,
    pub itt: u32,
    /// Data-In bytes received so far.
    pub received: usize,
    /// Bytes the target's R2Ts asked for so far: at error recovery level
    /// 0 each byte is asked for once, so more is a target looping on us.
    pub solicited: usize,
    pub retries: u32,
    /// Writes completed (GOOD) when a SYNCHRONIZE CACHE was issued.
    pub sync_covers: u64,
}

// SAFETY: the raw pointers point into a buffer (or, for a lent read, a
// consumer) whose owner blocks in `Session::execute` (`read_consumed`)
// until the task completes; only the event loop thread touches them in
// between.
unsafe impl Send for Task {}

impl Task {
    pub fn len(&self) -> usize {
        match &self.buf {
            Buf::None => 0,
            Buf::In(_, n) | Buf::Out(_, n) => *n,
            Buf::Shared(v) => v.len(),
            Buf::Lent { len, .. } => *len,
        }
    }

    pub fn is_read(&self) -> bool {
        matches!(self.buf, Buf::In(..) | Buf::Lent { .. })
    }

    pub fn is_write(&self) -> bool {
        matches!(self.buf, Buf::Out(..) | Buf::Shared(_))
    }

    /// `len` bytes of the write data at `off`, as a payload to send.
    pub fn out_payload(&self, off: usize, len: usize) -> Payload {
        match &self.buf {
            // SAFETY: off + len <= the buffer length (checked by callers).
            Buf::Out(p, _) => Payload::Raw(unsafe { p.add(off) }, len),
            Buf::Shared(v) => Payload::Shared(Arc::clone(v), off, len),
            _ => Payload::None,
        }
    }

    /// The write data as one slice.
    pub fn out_bytes(&self) -> &[u8] {
        match &self.buf {
            // SAFETY: see `unsafe impl Send`.
            Buf::Out(p, n) => unsafe { std::slice::from_raw_parts(*p, *n) },
            Buf::Shared(v) => v,
            _ => &[],
        }
    }

    /// Forgets progress on the wire, for a reissue.
    pub fn reset(&mut self) {
        self.itt = 0;
        self.received = 0;
        self.solicited = 0;
    }

    pub fn finish(mut self, r: TaskResult) {
        if let Some((b, i)) = self.done.take() {
            b.complete(i, r);
        }
    }
}

/// A task dropped unfinished (a panic unwinding the event loop, in a lent
/// read's consumer say) still answers its caller, who would otherwise
/// wait for ever.
impl Drop for Task {
    fn drop(&mut self) {
        if let Some((b, i)) = self.done.take() {
            b.complete(i, Err(InitiatorError::Closed));
        }
    }
}

/// A PDU's payload on the send queue.
pub(crate) enum Payload {
    None,
    /// Part of a caller's write buffer (valid while its task is active).
    Raw(*const u8, usize),
    Owned(Vec<u8>),
    Shared(Arc<Vec<u8>>, usize, usize),
}

impl Payload {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Payload::None => &[],
            // SAFETY: the task owning the buffer is active (see Task).
            Payload::Raw(p, n) => unsafe { std::slice::from_raw_parts(*p, *n) },
            Payload::Owned(v) => v,
            Payload::Shared(v, off, n) => &v[*off..*off + *n],
        }
    }
}

/// One PDU on the send queue.
pub(crate) struct OutPdu {
    pub head: Vec<u8>,
    pub payload: Payload,
    pub trailer: [u8; 8],
    pub trailer_len: usize,
    pub written: usize,
    /// The task whose buffer the payload borrows (RESERVED_TAG: none).
    pub itt: u32,
}

// SAFETY: as for Task.
unsafe impl Send for OutPdu {}

impl OutPdu {
    pub fn total(&self) -> usize {
        self.head.len() + self.payload.bytes().len() + self.trailer_len
    }

    pub fn parts(&self) -> [&[u8]; 3] {
        [&self.head, self.payload.bytes(), &self.trailer[..self.trailer_len]]
    }

    /// Memory this PDU holds while queued: itself, its header, and a
    /// payload it owns (a caller's buffer it only points into is not ours).
    pub fn footprint(&self) -> usize {
        let owned = match &self.payload {
            Payload::Owned(v) => v.len(),
            _ => 0,
        };
        std::mem::size_of::<OutPdu>() + self.head.len() + owned
    }
}
