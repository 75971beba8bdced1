//! The commit protocol: how changed segments reach the target and their
//! records reach the checksum file so that a crash at any instant (kill -9
//! or power loss) leaves, for every segment, a record that either matches
//! what the target holds or is INVALID.
//!
//! Rules, in the order they are applied:
//! 1. A segment whose old record is valid is never written until INVALID is
//!    durable in its place (write INVALID records, fsync the checksum file).
//!    Such writes wait in a bounded arena so that one fsync covers many;
//!    the arena is flushed while reading goes on.
//! 2. A segment whose old record is already INVALID (new file, grown volume,
//!    earlier interruption) is written at once.
//! 3. A new record is written only after an fsync of the target has made
//!    the segment's data durable (a checkpoint: every 1 GiB or 30 s, when
//!    the arena flushes, and at the end).
//! 4. At the end the checksum file is fsynced.
//!
//! Records are written a whole read buffer at a time: 512 segments' records
//! are one 4 KiB page of the checksum file, built from the old records the
//! reader passed along, so a buffer costs at most two record writes (the
//! invalidation image and the final image) however many segments changed.
//!
//! So a record on disk is either INVALID, or an old record of data the
//! target still holds untouched, or a new record of data already durable.
//! The rerun rewrites exactly the INVALID ones, even if the source went back
//! to its old bytes in between (the "revert" case).

use std::io;
use std::ops::Range;
use std::time::{Duration, Instant};

use super::options::CommitTuning;
use super::reader::ChunkResult;
use crate::shared::checksum_record::{encode_records, ChecksumRecord};
use crate::shared::failpoint;
use crate::shared::segment::{SegmentGeometry, SegmentRange};

/// Positional writes and durability; implemented by real files and, in
/// tests, by a store that can lose unsynced writes.
pub(crate) trait DurableStore {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every completed write durable.
    fn sync(&self) -> io::Result<()>;
}

/// A target volume: a store that can also zero a range (sparsely where the
/// file system allows).
pub(crate) trait TargetStore: DurableStore {
    /// Zeroes a range; true when it was punched out (no data written).
    fn write_zeros(&self, offset: u64, len: u64) -> io::Result<bool>;
    /// Starts writing dirty data back without waiting (a hint that lets the
    /// disk work while reading continues; durability still needs `sync`).
    fn start_writeback(&self) -> io::Result<()>;
    /// Whether zero segments should go through `write_zeros` (regular files).
    fn prefers_holes(&self) -> bool;
}

impl DurableStore for std::fs::File {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.sync_data()
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct CommitLimits {
    /// Bytes of changed data that may wait for invalidation.
    pub pending_bytes: usize,
    /// Checkpoint after this many bytes written since the last one.
    pub checkpoint_bytes: u64,
    /// ... or after this long, whichever comes first.
    pub checkpoint_interval: Duration,
}

impl CommitLimits {
    pub fn from_tuning(t: CommitTuning) -> Self {
        CommitLimits {
            pending_bytes: t.invalidate_batch_bytes,
            checkpoint_bytes: t.checkpoint_bytes,
            checkpoint_interval: Duration::from_secs(30),
        }
    }
}

impl Default for CommitLimits {
    fn default() -> Self {
        CommitLimits::from_tuning(CommitTuning::default())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CommitStats {
    pub segments_changed: u64,
    /// Data written to the target (zeros too, where holes cannot be punched).
    pub bytes_written: u64,
    /// Zero segments punched out of a regular-file target instead of written.
    pub bytes_punched: u64,
    pub checkpoints: u64,
    pub invalidation_syncs: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Immediate,
    AfterInvalidation,
}

struct PendingWrite {
    offset: u64,
    arena: Range<usize>,
    zero: bool,
    len: u64,
}

/// The records of one read buffer as they are to be written.
struct RecordPage {
    first_segment: u64,
    records: Vec<ChecksumRecord>,
}

impl RecordPage {
    fn write<C: DurableStore>(&self, store: &C) -> io::Result<()> {
        store.write_at(&encode_records(&self.records), self.first_segment * ChecksumRecord::SIZE as u64)
    }
}

/// Written bytes after which writeback is started early.
const WRITEBACK_KICK_BYTES: u64 = 32 << 20;

/// Record pages held in memory before a forced flush (64 MiB of images).
const MAX_HELD_PAGES: usize = 16 * 1024;

#[derive(Default)]
struct Pending {
    arena: Vec<u8>,
    writes: Vec<PendingWrite>,
    /// Old records with INVALID over the segments waiting in the arena.
    invalidations: Vec<RecordPage>,
    /// Final records of those buffers, written after the data is durable.
    finals: Vec<RecordPage>,
}

pub(crate) struct Committer<'a, C: DurableStore, T: TargetStore> {
    records: Option<&'a C>,
    target: &'a T,
    geometry: SegmentGeometry,
    limits: CommitLimits,
    pending: Pending,
    /// Final pages of buffers whose data is written but not yet synced.
    unrecorded: Vec<RecordPage>,
    dirty_bytes: u64,
    /// Written since writeback was last started.
    unstarted_bytes: u64,
    target_dirty: bool,
    /// Record pages written since the checksum file was last synced.
    records_unsynced: bool,
    last_checkpoint: Instant,
    stats: CommitStats,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn is_zero(data: &[u8]) -> bool {
    data.chunks(64).all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0)
}

impl<'a, C: DurableStore, T: TargetStore> Committer<'a, C, T> {
    pub fn new(records: Option<&'a C>, target: &'a T, geometry: SegmentGeometry, limits: CommitLimits) -> Self {
        Committer {
            records,
            target,
            geometry,
            limits,
            pending: Pending::default(),
            unrecorded: Vec::new(),
            dirty_bytes: 0,
            unstarted_bytes: 0,
            target_dirty: false,
            records_unsynced: false,
            last_checkpoint: Instant::now(),
            stats: CommitStats::default(),
        }
    }

    /// Takes one buffer of read segments: decides which changed, writes or
    /// queues them, and checkpoints when due.
    pub fn submit(&mut self, chunk: &ChunkResult<'_>) -> io::Result<()> {
        let checksums = self.records.is_some();
        let holes = self.target.prefers_holes();
        let mut groups: Vec<(SegmentRange, Class, bool)> = Vec::new();
        for run in &chunk.read {
            // Group consecutive changed segments of the same class and zero-ness.
            let mut group: Option<(u64, Class, bool)> = None;
            for seg in run.iter().chain(std::iter::once(run.end)) {
                let this = if seg < run.end {
                    let i = chunk.index_of(seg);
                    let new = chunk.new[i];
                    let old = if checksums { chunk.old[i] } else { ChecksumRecord::INVALID };
                    if checksums && old.vouches_for(&new) {
                        None
                    } else {
                        let class = if old.is_invalid() { Class::Immediate } else { Class::AfterInvalidation };
                        let zero = holes && is_zero(chunk.data(SegmentRange::single(seg), &self.geometry));
                        Some((class, zero))
                    }
                } else {
                    None
                };
                match (group, this) {
                    (Some((_, gc, gz)), Some((c, z))) if gc == c && gz == z => {}
                    (prev, next) => {
                        if let Some((start, class, zero)) = prev {
                            groups.push((SegmentRange::new(start, seg), class, zero));
                        }
                        group = next.map(|(c, z)| (seg, c, z));
                    }
                }
            }
        }
        if groups.is_empty() {
            return self.maybe_checkpoint();
        }
        let waits = groups.iter().any(|(_, c, _)| *c == Class::AfterInvalidation);
        if waits {
            let needed: usize = groups
                .iter()
                .filter(|(_, c, z)| *c == Class::AfterInvalidation && !*z)
                .map(|(r, _, _)| chunk.data(*r, &self.geometry).len())
                .sum();
            if self.pending.arena.len() + needed > self.limits.pending_bytes
                || self.pending.finals.len() >= MAX_HELD_PAGES
            {
                self.flush_pending()?;
            }
        }
        for (range, class, zero) in &groups {
            self.changed(chunk, *range, *class, *zero)?;
        }
        if checksums {
            let mut fin = chunk.old.clone();
            for (range, _, _) in &groups {
                for s in range.iter() {
                    fin[chunk.index_of(s)] = chunk.new[chunk.index_of(s)];
                }
            }
            let page = RecordPage { first_segment: chunk.segments.start, records: fin };
            if waits {
                let mut inval = chunk.old.clone();
                for (range, class, _) in &groups {
                    if *class == Class::AfterInvalidation {
                        for s in range.iter() {
                            inval[chunk.index_of(s)] = ChecksumRecord::INVALID;
                        }
                    }
                }
                self.pending.invalidations.push(RecordPage { first_segment: chunk.segments.start, records: inval });
                self.pending.finals.push(page);
            } else {
                self.unrecorded.push(page);
            }
        }
        self.maybe_checkpoint()
    }

    fn changed(&mut self, chunk: &ChunkResult<'_>, range: SegmentRange, class: Class, zero: bool) -> io::Result<()> {
        let data = chunk.data(range, &self.geometry);
        let offset = self.geometry.segment_offset(range.start);
        let len = data.len() as u64;
        self.stats.segments_changed += range.len();
        match class {
            Class::Immediate => {
                if zero {
                    self.zero_range(offset, len)?;
                } else {
                    self.target.write_at(data, offset)?;
                    self.stats.bytes_written += len;
                }
                self.target_dirty = true;
                self.dirty_bytes += len;
                self.unstarted_bytes += len;
                if self.unstarted_bytes >= WRITEBACK_KICK_BYTES {
                    self.target.start_writeback()?;
                    self.unstarted_bytes = 0;
                }
            }
            Class::AfterInvalidation => {
                let start = self.pending.arena.len();
                if !zero {
                    self.pending.arena.extend_from_slice(data);
                }
                self.pending.writes.push(PendingWrite { offset, arena: start..self.pending.arena.len(), zero, len });
            }
        }
        Ok(())
    }

    fn zero_range(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if self.target.write_zeros(offset, len)? {
            self.stats.bytes_punched += len;
        } else {
            self.stats.bytes_written += len;
        }
        Ok(())
    }

    fn maybe_checkpoint(&mut self) -> io::Result<()> {
        let due_by_size = self.dirty_bytes >= self.limits.checkpoint_bytes || self.unrecorded.len() >= MAX_HELD_PAGES;
        let due_by_time = self.target_dirty && self.last_checkpoint.elapsed() >= self.limits.checkpoint_interval;
        if due_by_size || due_by_time {
            self.flush_pending()?;
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Rule 1: invalidate durably, then write the waiting segments.
    fn flush_pending(&mut self) -> io::Result<()> {
        if self.pending.writes.is_empty() {
            return Ok(());
        }
        let Some(records) = self.records else {
            return Err(io::Error::other("internal: pending writes without a checksum file"));
        };
        let t = Instant::now();
        for page in &self.pending.invalidations {
            page.write(records)?;
        }
        failpoint::hit("ddless.after-invalidate-write");
        records.sync()?;
        self.records_unsynced = false;
        tracing::debug!("invalidated {} record pages in {:.1} ms", self.pending.invalidations.len(), ms(t));
        self.stats.invalidation_syncs += 1;
        failpoint::hit("ddless.after-invalidate-sync");
        let t = Instant::now();
        for w in &self.pending.writes {
            if w.zero {
                if self.target.write_zeros(w.offset, w.len)? {
                    self.stats.bytes_punched += w.len;
                } else {
                    self.stats.bytes_written += w.len;
                }
            } else {
                self.target.write_at(&self.pending.arena[w.arena.clone()], w.offset)?;
                self.stats.bytes_written += w.len;
            }
            self.dirty_bytes += w.len;
            failpoint::hit("ddless.mid-pending-write");
        }
        tracing::debug!("wrote {} waiting extents in {:.1} ms", self.pending.writes.len(), ms(t));
        self.target_dirty = true;
        self.target.start_writeback()?;
        // Their records wait for the next checkpoint like any other write.
        self.unrecorded.append(&mut self.pending.finals);
        self.pending.invalidations.clear();
        self.pending.writes.clear();
        self.pending.arena.clear();
        Ok(())
    }

    /// Rule 3: make the target durable, then record what it now holds.
    fn checkpoint(&mut self) -> io::Result<()> {
        if !self.target_dirty {
            return Ok(());
        }
        failpoint::hit("ddless.before-target-sync");
        let t = Instant::now();
        self.target.sync()?;
        failpoint::hit("ddless.after-target-sync");
        tracing::debug!("checkpoint: target synced in {:.1} ms", ms(t));
        self.target_dirty = false;
        self.dirty_bytes = 0;
        self.last_checkpoint = Instant::now();
        self.stats.checkpoints += 1;
        if let Some(records) = self.records {
            for page in &self.unrecorded {
                self.records_unsynced = true;
                page.write(records)?;
                failpoint::hit("ddless.mid-record-write");
            }
        }
        self.unrecorded.clear();
        Ok(())
    }

    /// Rule 4: everything durable, records last. A run that wrote no
    /// record since the last sync skips the final one: what an earlier,
    /// killed run left unsynced needs no fsync for the invariant (rule 1
    /// made its INVALID records durable before any of its target writes,
    /// so a power cut can only turn its newer records back into INVALID),
    /// and on a disk with a volatile cache an fsync is a cache flush even
    /// with nothing dirty (ext4 asks the device for one: 0.1-6 ms here).
    pub fn finish(mut self) -> io::Result<CommitStats> {
        self.flush_pending()?;
        self.checkpoint()?;
        if let (Some(records), true) = (self.records, self.records_unsynced) {
            failpoint::hit("ddless.before-final-sync");
            records.sync()?;
            self.records_unsynced = false;
        }
        Ok(self.stats)
    }
}
