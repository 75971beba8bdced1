//! The reader pool: worker threads take 8 MiB buffers of the source in
//! turn (a shared counter, so the disk sees near-sequential reads whatever
//! the worker count), get the segments the plan asks for, compute their
//! checksums, and hand each buffer to the single consumer on the calling
//! thread.
//!
//! How bytes are obtained:
//! - full reads without O_DIRECT hash straight from a read-only mapping of
//!   the source (no copy; kernel readahead overlaps hashing). A segment that
//!   is to be written is first copied out of the mapping into a private
//!   buffer and hashed again from that copy: the source may change at any
//!   moment, and a record must describe exactly the bytes written to the
//!   target, never bytes read earlier. Each buffer's pages are unmapped
//!   (MADV_DONTNEED) once the consumer is done with it, so the mapping never
//!   holds more than the buffers in flight (the page cache keeps them);
//! - O_DIRECT reads (-d), ddmap-steered reads and iSCSI LUNs use pread
//!   (a LUN: READ(16) commands, all runs of a buffer in flight at once)
//!   into aligned buffers; ddmap-steered buffered reads first ask the kernel to fetch
//!   the flagged runs of the next buffers (POSIX_FADV_WILLNEED), so a
//!   cold disk sees many small reads in flight instead of one at a time.
//!   Full reads are not announced that way: WILLNEED fills the page cache
//!   with 4 KiB pages, and mapping those later costs 26x more page faults
//!   than the large folios the mapping's own readahead creates (measured:
//!   0.92 s against 0.44 s to hash a 4 GiB source on one worker).
//!
//! Workers are plain threads rather than a rayon pool: they block in read(2)
//! and sleep for the rate cap, which would starve rayon's work stealing.
//!
//! A LUN read whole is cut into smaller units than a file (see
//! [`ReadUnits`]) so that each buffer is refilled while it is still in the
//! CPU's cache.

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Mutex;

use anyhow::Context;

use super::rate::RateLimiter;
use super::volume::Volume;
use crate::shared::aligned_buffer::AlignedBuffer;
use crate::shared::change_map::ChangeMap;
use crate::shared::checksum_file::ChecksumFile;
use crate::shared::checksum_record::{checksum_each, ChecksumRecord};
use crate::shared::mapped_file::{prefetch, Access, MappedFile};
use crate::shared::segment::{
    RangeBuilder, SegmentGeometry, SegmentRange, BUFFER_SIZE, SEGMENTS_PER_BUFFER, SEGMENT_SIZE,
};

/// Buffers of flagged runs announced to the kernel ahead of the readers...
const PREFETCH_MAP_BUFFERS: u64 = 32;
/// ... unless the map flags at most this much: then all of it at once, so
/// the disk sees every read at the start.
const PREFETCH_ALL_FLAGGED_BYTES: u64 = 256 << 20;

/// Which segments of each buffer to read.
#[derive(Clone, Copy)]
pub(crate) enum ReadPlan<'a> {
    /// Every segment.
    All,
    /// Segments flagged in the map, plus every segment whose old record is
    /// INVALID (unknown to the target: new, grown, or interrupted).
    Map(&'a ChangeMap),
}

pub(crate) struct ReadJob<'a> {
    pub source: &'a Volume,
    pub geometry: SegmentGeometry,
    /// Old records to hand along with each buffer (and to steer a Map plan).
    pub old_records: Option<&'a ChecksumFile>,
    pub plan: ReadPlan<'a>,
    pub compute_checksums: bool,
    /// Copy the segments that will be written out of a mapping and hash the
    /// copy (a copy); without it (verify, checksum only) nothing is written.
    pub private_copies: bool,
    /// The consumer looks only at records (checksum only, verify): a LUN
    /// read whole is hashed command by command as the data arrives, and
    /// no bytes are kept (ChunkBytes::Hashed).
    pub records_only: bool,
    pub workers: usize,
    pub read_rate_mb_s: Option<NonZeroU64>,
}

/// Where a buffer's bytes live.
pub(crate) enum ChunkBytes<'v> {
    /// Read into an aligned buffer (recycled after the consumer is done).
    Buffer(AlignedBuffer),
    /// The buffer's byte range of the mapped source, and the private copies
    /// (at the same offsets) of the segments that are to be written.
    Mapped { map: &'v [u8], private: Option<AlignedBuffer> },
    /// Only the runs read, back to back: `(volume offset, offset in
    /// bytes, length)` per run (grouped LUN reads, see sparse_lun.rs).
    Packed { bytes: Vec<u8>, runs: Vec<(u64, usize, usize)> },
    /// Hashed as it arrived and not kept (a records-only job).
    Hashed,
}

/// One buffer's worth of work, handed to the consumer.
pub(crate) struct ChunkResult<'v> {
    /// Segments this buffer covers.
    pub segments: SegmentRange,
    /// Segment s's bytes start at `(s - segments.start) * SEGMENT_SIZE`.
    pub bytes: ChunkBytes<'v>,
    /// Runs of segments actually read, ascending.
    pub read: Vec<SegmentRange>,
    /// New record per segment of the buffer (INVALID where not read or not computed).
    pub new: Vec<ChecksumRecord>,
    /// Old record per segment of the buffer; empty without a checksum file.
    pub old: Vec<ChecksumRecord>,
    pub bytes_read: u64,
}

impl ChunkResult<'_> {
    /// Bytes of `range` (inside this buffer), clamped to the volume: for a
    /// segment that is written, exactly the bytes its new record describes.
    pub fn data(&self, range: SegmentRange, geometry: &SegmentGeometry) -> &[u8] {
        let bytes = geometry.byte_range(range);
        let base = geometry.segment_offset(self.segments.start);
        let whole: &[u8] = match &self.bytes {
            ChunkBytes::Buffer(b) => b,
            ChunkBytes::Mapped { private: Some(b), .. } => b,
            ChunkBytes::Mapped { map, private: None } => map,
            ChunkBytes::Packed { bytes: packed, runs } => {
                // Packed chunks hold only what they read: a range within one run.
                let len = (bytes.end - bytes.start) as usize;
                let (start, at, _) = runs
                    .iter()
                    .find(|&&(start, _, run_len)| start <= bytes.start && bytes.end <= start + run_len as u64)
                    .expect("a packed chunk's data is asked only for segments it read");
                let from = at + (bytes.start - start) as usize;
                return &packed[from..from + len];
            }
            ChunkBytes::Hashed => panic!("a records-only job's consumer asked for the bytes of {range:?}"),
        };
        &whole[(bytes.start - base) as usize..(bytes.end - base) as usize]
    }

    pub fn index_of(&self, segment: u64) -> usize {
        (segment - self.segments.start) as usize
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReaderStats {
    /// Reader threads that ran (`-w`, or more for a LUN's read units).
    pub threads: usize,
    pub buffers_read: u64,
    pub segments_read: u64,
    pub bytes_read: u64,
}

pub(crate) fn plan_runs(plan: ReadPlan<'_>, segments: SegmentRange, old: &[ChecksumRecord]) -> Vec<SegmentRange> {
    match plan {
        ReadPlan::All => vec![segments],
        ReadPlan::Map(map) => {
            let flagged = map.set_ranges(segments);
            // The common case (every old record valid, the map covering the
            // buffer) is just the map's runs: no walk segment by segment.
            if segments.end <= map.segment_capacity() && !old.iter().any(|r| r.is_invalid()) {
                return flagged;
            }
            let mut b = RangeBuilder::new();
            let mut flagged = flagged.iter().peekable();
            for s in segments.iter() {
                while flagged.peek().is_some_and(|r| r.end <= s) {
                    flagged.next();
                }
                // Segments past the map (IET rounds its size down) are not
                // tracked: they are always read.
                let in_map = flagged.peek().is_some_and(|r| r.contains(s)) || s >= map.segment_capacity();
                let unknown = old.get((s - segments.start) as usize).is_some_and(|r| r.is_invalid());
                if in_map || unknown {
                    b.push(s);
                }
            }
            b.finish()
        }
    }
}

/// How the plain (ungrouped) reads of a job are cut, and by how many threads.
///
/// A file is read in the seed's 8 MiB buffers by `-w` threads. An iSCSI
/// LUN's bytes are copied by the kernel out of the socket into our buffer,
/// and that copy costs twice as much per GB when the buffer has dropped out
/// of the CPU's cache since its last use: with 8 MiB buffers it always had
/// (0.13 against 0.07 CPU s/GB measured with `perf record` of `ddless -c`
/// at queue depth 8, docs/performance.md). So a LUN is read in units of a
/// quarter of what the session keeps in flight (1-8 MiB, a power of two, so
/// a unit never straddles an 8 MiB buffer), by one thread more than the
/// units in flight (at least `-w`, at most [`MAX_LUN_READERS`]): the queue
/// stays full while one thread hashes, and every buffer is reused soon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadUnits {
    /// Segments per unit (the last unit of a volume may be shorter).
    pub segments: u64,
    pub workers: usize,
}

/// Reader threads the queue of a LUN may ask for in all (more only when `-w` asks).
pub const MAX_LUN_READERS: usize = 8;
const MIN_LUN_UNIT: u64 = 1 << 20;

impl ReadUnits {
    /// `lun_in_flight`: for a LUN read whole, the bytes its session keeps
    /// in flight at most; None for everything else.
    ///
    /// `rate_capped` (`-r`): no more threads than hold `workers` 8 MiB
    /// buffers' worth of units (at least `workers`). Every thread reads its
    /// unit before its share of the cap makes it wait, so the run's first
    /// reads come at full speed; more threads than that would read up to 8
    /// times more at once than `-w` readers of a file (`-w 1 -r 1` at queue
    /// depth 64: 40 MiB in the first second instead of 8).
    pub fn plan(lun_in_flight: Option<u64>, workers: usize, rate_capped: bool) -> ReadUnits {
        let Some(in_flight) = lun_in_flight else {
            return ReadUnits { segments: SEGMENTS_PER_BUFFER, workers };
        };
        let unit = (in_flight / 4).max(1).next_power_of_two().clamp(MIN_LUN_UNIT, BUFFER_SIZE);
        let to_fill = usize::try_from(in_flight.div_ceil(unit)).unwrap_or(usize::MAX).saturating_add(1);
        let mut threads = to_fill.min(MAX_LUN_READERS);
        if rate_capped {
            let fit = (workers as u64).saturating_mul(BUFFER_SIZE) / unit;
            threads = threads.min(usize::try_from(fit).unwrap_or(usize::MAX));
        }
        ReadUnits { segments: unit / SEGMENT_SIZE, workers: workers.max(threads) }
    }

    /// Bytes per unit.
    pub fn bytes(&self) -> usize {
        (self.segments * SEGMENT_SIZE) as usize
    }

    fn count(&self, g: &SegmentGeometry) -> u64 {
        g.segment_count().div_ceil(self.segments)
    }

    fn range(&self, g: &SegmentGeometry, index: u64) -> SegmentRange {
        let start = index * self.segments;
        SegmentRange::new(start, (start + self.segments).min(g.segment_count()))
    }
}

/// Whether a chunk ending before segment `end` completes an 8 MiB buffer
/// (the unit reports count: "buffers read" stays the seed's number).
fn ends_a_buffer(g: &SegmentGeometry, end: u64) -> bool {
    end % SEGMENTS_PER_BUFFER == 0 || end == g.segment_count()
}

/// Bytes come from the mapping when there is one, else from a buffer.
struct Sources<'v> {
    mapped: Option<&'v MappedFile>,
}

/// Copies `runs` (segment ranges inside the chunk starting at segment
/// `first`) from the mapping into the private buffer and, with `compute`,
/// recomputes their records from the copy.
struct PrivateCopy<'a> {
    geometry: &'a SegmentGeometry,
    first: u64,
    map: &'a [u8],
    compute: bool,
}

impl PrivateCopy<'_> {
    fn run(&self, private: &mut AlignedBuffer, runs: &[SegmentRange], new: &mut [ChecksumRecord]) {
        let base = self.geometry.segment_offset(self.first);
        let bytes = |run: &SegmentRange| {
            let r = self.geometry.byte_range(*run);
            (r.start - base) as usize..(r.end - base) as usize
        };
        for run in runs {
            let b = bytes(run);
            private[b.clone()].copy_from_slice(&self.map[b]);
        }
        if self.compute {
            // From the copy, which is what gets written.
            let copied = runs.iter().map(|run| ((run.start - self.first) as usize, &private[bytes(run)]));
            for (first, k, rec) in hash_runs(copied) {
                new[first + k] = rec;
            }
        }
    }
}

fn read_chunk<'v>(
    job: &ReadJob<'_>,
    sources: &Sources<'v>,
    segments: SegmentRange,
    buffer: impl Fn() -> AlignedBuffer,
    limiter: &mut Option<RateLimiter>,
) -> anyhow::Result<ChunkResult<'v>> {
    let g = &job.geometry;
    let mut old = Vec::new();
    if let Some(cf) = job.old_records {
        cf.read_records(segments.start, &mut old, segments.len() as usize).context("reading the checksum file")?;
    }
    let read = plan_runs(job.plan, segments, &old);
    if let Some(lun) = hashed_on_arrival(job) {
        return hash_lun_unit(job, lun, segments, read, old, limiter);
    }
    let chunk_bytes = g.byte_range(segments);
    let base = chunk_bytes.start;
    let mut bytes = match sources.mapped {
        Some(m) => {
            ChunkBytes::Mapped { map: &m.bytes()[chunk_bytes.start as usize..chunk_bytes.end as usize], private: None }
        }
        None => ChunkBytes::Buffer(buffer()),
    };
    let mut new = vec![ChecksumRecord::INVALID; segments.len() as usize];
    let mut bytes_read = 0;
    // A LUN gets all of this buffer's runs at once: their commands are in
    // flight together instead of one run's after the other's.
    let batched = match &mut bytes {
        ChunkBytes::Buffer(buf) if job.source.lun().is_some() && !read.is_empty() => {
            let ranges: Vec<(usize, u64, usize)> = read
                .iter()
                .map(|run| {
                    let r = g.byte_range(*run);
                    ((r.start - base) as usize, r.start, (r.end - r.start) as usize)
                })
                .collect();
            job.source.read_ranges(buf, &ranges).with_context(|| {
                format!("reading source {} at bytes {}-{}", job.source.name, ranges[0].1, chunk_bytes.end)
            })?;
            true
        }
        _ => false,
    };
    for run in &read {
        let range = g.byte_range(*run);
        let len = (range.end - range.start) as usize;
        let at = (range.start - base) as usize;
        match &mut bytes {
            ChunkBytes::Buffer(buf) => {
                if !batched {
                    job.source
                        .read_at(&mut buf[at..], range.start, len)
                        .with_context(|| format!("reading source {} at byte {}", job.source.name, range.start))?;
                }
            }
            // Hashed and copied below, all runs together.
            ChunkBytes::Mapped { .. } => {}
            // Never made here (grouped LUN reads build their own; LUN
            // units of records-only jobs return above).
            ChunkBytes::Packed { .. } | ChunkBytes::Hashed => {}
        }
        bytes_read += len as u64;
        if let Some(l) = limiter.as_mut() {
            l.throttle(len as u64);
        }
    }
    if let ChunkBytes::Mapped { map, private } = &mut bytes {
        // Which segments will be written: those without a valid old
        // record, and those whose mapped bytes no longer match it. Only the
        // latter need hashing from the mapping (and, without private
        // copies, all of them: the records come from the mapping then).
        let old_valid = |s: u64| old.get((s - segments.start) as usize).is_some_and(|r| !r.is_invalid());
        let mut subs: Vec<(SegmentRange, bool)> = Vec::new(); // (segments, old records valid)
        for run in &read {
            let mut s = run.start;
            while s < run.end {
                let valid = job.compute_checksums && old_valid(s);
                let mut e = s + 1;
                while e < run.end && (job.compute_checksums && old_valid(e)) == valid {
                    e += 1;
                }
                subs.push((SegmentRange::new(s, e), valid));
                s = e;
            }
        }
        let from_map = |valid: bool| valid || (job.compute_checksums && !job.private_copies);
        let hashed = hash_runs(subs.iter().filter(|(_, valid)| from_map(*valid)).map(|(sub, _)| {
            let r = g.byte_range(*sub);
            (sub.start, &map[(r.start - base) as usize..(r.end - base) as usize])
        }));
        let mut hashed = hashed.into_iter();
        let mut to_copy = RangeBuilder::new();
        for (sub, valid) in &subs {
            if !from_map(*valid) {
                to_copy.push_range(*sub);
                continue;
            }
            for (start, k, rec) in hashed.by_ref().take(sub.len() as usize) {
                let seg = start + k as u64;
                let i = (seg - segments.start) as usize;
                new[i] = rec;
                if *valid && !old[i].vouches_for(&rec) {
                    to_copy.push(seg);
                }
            }
        }
        let runs = to_copy.finish();
        if job.private_copies && !runs.is_empty() {
            let buf = private.get_or_insert_with(&buffer);
            PrivateCopy { geometry: g, first: segments.start, map, compute: job.compute_checksums }
                .run(buf, &runs, &mut new);
        }
    }
    if let (ChunkBytes::Buffer(buf), true) = (&bytes, job.compute_checksums) {
        let runs = read.iter().map(|run| {
            let r = g.byte_range(*run);
            ((run.start - segments.start) as usize, &buf[(r.start - base) as usize..(r.end - base) as usize])
        });
        for (first, k, rec) in hash_runs(runs) {
            new[first + k] = rec;
        }
    }
    Ok(ChunkResult { segments, bytes, read, new, old, bytes_read })
}

/// The LUN whose units are hashed as their commands complete: a records-
/// only job reading a LUN whole, whose commands hold whole segments.
fn hashed_on_arrival<'v>(job: &ReadJob<'v>) -> Option<&'v crate::initiator::IscsiVolume> {
    let lun = job.source.lun()?;
    let whole_segments = u64::from(lun.info().max_transfer) % SEGMENT_SIZE == 0;
    (job.records_only && job.compute_checksums && matches!(job.plan, ReadPlan::All) && whole_segments).then_some(lun)
}

/// Reads a LUN's unit and hashes each command's segments as the command
/// completes, in a buffer the session lends and reuses at once: the data
/// is hashed while still in the CPU's cache, and the socket copy goes into
/// memory that is (read_pool.rs). Records only; no bytes are kept.
fn hash_lun_unit<'v>(
    job: &ReadJob<'_>,
    lun: &crate::initiator::IscsiVolume,
    segments: SegmentRange,
    read: Vec<SegmentRange>,
    old: Vec<ChecksumRecord>,
    limiter: &mut Option<RateLimiter>,
) -> anyhow::Result<ChunkResult<'v>> {
    let range = job.geometry.byte_range(segments);
    let len = range.end - range.start;
    let mut new = vec![ChecksumRecord::INVALID; segments.len() as usize];
    lun.read_each(range.start, len, |off, data| {
        let first = ((off - range.start) / SEGMENT_SIZE) as usize;
        for (_, k, rec) in hash_runs([((), data)]) {
            new[first + k] = rec;
        }
    })
    .with_context(|| format!("reading source {} at bytes {}-{}", job.source.name, range.start, range.end))?;
    if let Some(l) = limiter.as_mut() {
        l.throttle(len);
    }
    Ok(ChunkResult { segments, bytes: ChunkBytes::Hashed, read, new, old, bytes_read: len })
}

/// Records of every segment of `runs` (a key and the run's bytes each),
/// as (key, segment within the run, record). All runs are hashed together
/// so that a ddmap's scattered single segments go eight at a time like
/// consecutive ones; run by run they would be hashed one at a time, with
/// a quarter of the speed.
pub(crate) fn hash_runs<'a, K: Copy>(runs: impl IntoIterator<Item = (K, &'a [u8])>) -> Vec<(K, usize, ChecksumRecord)> {
    let seg = crate::shared::segment::SEGMENT_SIZE as usize;
    let mut slots = Vec::new();
    let mut slices: Vec<&[u8]> = Vec::new();
    for (key, bytes) in runs {
        for (k, s) in bytes.chunks(seg).enumerate() {
            slots.push((key, k));
            slices.push(s);
        }
    }
    let mut records = Vec::with_capacity(slices.len());
    checksum_each(&slices, &mut records);
    slots.into_iter().zip(records).map(|((key, k), r)| (key, k, r)).collect()
}

/// Announces the flagged runs of the buffers before `until` (exclusive)
/// not yet announced.
fn prefetch_flagged(job: &ReadJob<'_>, map: &ChangeMap, cursor: &Mutex<u64>, until: u64) {
    let Ok(mut next) = cursor.lock() else { return };
    while *next < until {
        if let Some(file) = job.source.file() {
            for run in map.set_ranges(job.geometry.buffer_segments(*next)) {
                let r = job.geometry.byte_range(run);
                prefetch(file, r.start, r.end - r.start);
            }
        }
        *next += 1;
    }
}

/// Releases consumed buffers of a mapping in batches that trail the
/// readers: unmapping right behind a cold sequential read slowed it down
/// (measured: a 2 GiB cold read took 3.2-11.7 s instead of 1.5 s), a lag
/// of a few buffers measured on par with no release at all.
#[derive(Default)]
struct Release {
    /// Every buffer below this one has been released.
    upto: u64,
    /// Consumed buffers at or above `upto`, not yet released.
    done: std::collections::BTreeSet<u64>,
}

/// Buffers kept mapped behind the newest consumed one.
const RELEASE_LAG_BUFFERS: u64 = 2;
/// Buffers released per madvise call.
const RELEASE_BATCH_BUFFERS: u64 = 4;

impl Release {
    fn consumed(&mut self, m: &MappedFile, g: &SegmentGeometry, index: u64) {
        self.done.insert(index);
        let newest = self.done.last().copied().unwrap_or(0);
        let mut end = self.upto;
        while self.done.first() == Some(&end) && end + RELEASE_LAG_BUFFERS <= newest {
            self.done.pop_first();
            end += 1;
        }
        let last = g.buffer_count();
        if end - self.upto >= RELEASE_BATCH_BUFFERS || (end == last && end > self.upto) {
            let from = g.byte_range(g.buffer_segments(self.upto)).start;
            let to = g.byte_range(g.buffer_segments(end - 1)).end;
            m.release(from, to - from);
            self.upto = end;
        } else if end > self.upto {
            // Not enough for a batch yet: keep them for the next call.
            for i in self.upto..end {
                self.done.insert(i);
            }
        }
    }
}

/// Runs the pool over every buffer of the volume. `consume` sees each
/// buffer exactly once, in no particular order. The first error (a
/// worker's or the consumer's) stops the pool.
pub(crate) fn run_readers(
    job: &ReadJob<'_>,
    mut consume: impl FnMut(&ChunkResult<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<ReaderStats> {
    let buffers = job.geometry.buffer_count();
    let mapping = match (job.plan, job.source.file()) {
        (ReadPlan::All, Some(file)) if !job.source.direct && job.source.size > 0 => Some(
            MappedFile::map(file, job.source.size, Access::Sequential)
                .with_context(|| format!("mapping source {}", job.source.name))?,
        ),
        _ => None,
    };
    let sources = Sources { mapped: mapping.as_ref() };
    let prefetch_map = match job.plan {
        ReadPlan::Map(m) if !job.source.direct && job.source.file().is_some() => Some(m),
        _ => None,
    };
    let prefetch_distance = match prefetch_map {
        Some(m) if m.count_set() * crate::shared::segment::SEGMENT_SIZE <= PREFETCH_ALL_FLAGGED_BYTES => buffers,
        _ => PREFETCH_MAP_BUFFERS,
    };
    let prefetch_cursor = Mutex::new(0u64);
    // A LUN read by a ddmap: groups of buffers, their reads in flight together.
    let lun_groups = match job.plan {
        ReadPlan::Map(m) if job.source.lun().is_some() => Some(m),
        _ => None,
    };
    let group_cursor = Mutex::new(0u64);
    let lun_in_flight = match (job.plan, job.source.lun()) {
        (ReadPlan::All, Some(lun)) => Some(lun.bytes_in_flight()),
        _ => None,
    };
    let units = ReadUnits::plan(lun_in_flight, job.workers, job.read_rate_mb_s.is_some());
    let unit_count = units.count(&job.geometry);
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let pool: Mutex<Vec<AlignedBuffer>> = Mutex::new(Vec::new());
    // More threads than buffers would only wait; the bound on -w is checked
    // by the caller before anything is allocated.
    let workers = units.workers.clamp(1, unit_count.max(1) as usize);
    if lun_in_flight.is_some() {
        // The report's `workers` is -w; `reader_threads` (and this) say what ran.
        tracing::info!("reading the LUN in {} KiB units with {workers} threads", units.bytes() >> 10);
    }
    let mut stats = ReaderStats { threads: workers, ..ReaderStats::default() };
    let mut first_error = None;
    let mut release = Release::default();

    std::thread::scope(|scope| {
        // A message is one buffer, or a whole group of a LUN's grouped
        // reads: the worker goes on to its next group's reads at once
        // instead of waiting for the consumer buffer by buffer (one
        // hand-off per group, not per buffer).
        // Sized by -w: the threads a LUN's units add keep its queue full,
        // they do not make more buffers wait for the consumer.
        let (tx, rx) = sync_channel::<anyhow::Result<Vec<ChunkResult<'_>>>>(job.workers.min(workers) * 2);
        for worker in 0..workers {
            let tx = tx.clone();
            let (next, stop, pool, sources, cursor) = (&next, &stop, &pool, &sources, &prefetch_cursor);
            let group_cursor = &group_cursor;
            scope.spawn(move || {
                let mut limiter = job.read_rate_mb_s.map(|r| RateLimiter::shared(r, job.workers, workers));
                let mut done = 0u64;
                tracing::debug!("worker_id {worker} started");
                if let Some(map) = lun_groups {
                    'groups: while !stop.load(Ordering::Relaxed) {
                        let Some(group) = super::sparse_lun::claim_group(group_cursor, job, map) else { break };
                        match super::sparse_lun::read_group(job, group, &mut limiter) {
                            Ok(chunks) => {
                                let n = chunks.len() as u64;
                                if tx.send(Ok(chunks)).is_err() {
                                    break 'groups;
                                }
                                done += n;
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                break;
                            }
                        }
                    }
                    tracing::debug!("worker_id {worker} done after {done} buffers");
                    return;
                }
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= unit_count {
                        break;
                    }
                    if let Some(map) = prefetch_map {
                        prefetch_flagged(job, map, cursor, index.saturating_add(prefetch_distance).min(buffers));
                    }
                    let take_buffer = || {
                        pool.lock().ok().and_then(|mut p| p.pop()).unwrap_or_else(|| AlignedBuffer::new(units.bytes()))
                    };
                    let segments = units.range(&job.geometry, index);
                    let result = read_chunk(job, sources, segments, take_buffer, &mut limiter).map(|c| vec![c]);
                    let failed = result.is_err();
                    if tx.send(result).is_err() || failed {
                        break;
                    }
                    done += 1;
                }
                tracing::debug!("worker_id {worker} done after {done} buffers");
            });
        }
        drop(tx);
        let mut take = |chunk: ChunkResult<'_>| -> anyhow::Result<()> {
            consume(&chunk)?;
            if let (Some(m), ChunkBytes::Mapped { .. }) = (sources.mapped, &chunk.bytes) {
                // Done with these pages: drop them from our mapping so the
                // process does not grow to the size of the source.
                release.consumed(m, &job.geometry, chunk.segments.start / SEGMENTS_PER_BUFFER);
            }
            stats.segments_read += chunk.read.iter().map(|r| r.len()).sum::<u64>();
            stats.bytes_read += chunk.bytes_read;
            stats.buffers_read += u64::from(!chunk.read.is_empty() && ends_a_buffer(&job.geometry, chunk.segments.end));
            let recycled = match chunk.bytes {
                ChunkBytes::Buffer(b) => Some(b),
                ChunkBytes::Mapped { private, .. } => private,
                ChunkBytes::Packed { .. } | ChunkBytes::Hashed => None,
            };
            if let Some(b) = recycled {
                if let Ok(mut p) = pool.lock() {
                    p.push(b);
                }
            }
            Ok(())
        };
        for message in rx.iter() {
            if let Err(e) = message.and_then(|chunks| chunks.into_iter().try_for_each(&mut take)) {
                stop.store(true, Ordering::Relaxed);
                first_error = Some(e);
                break;
            }
        }
        // Dropping the receiver unblocks any worker stuck in send.
        drop(rx);
    });
    match first_error {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_plan_adds_unknown_segments() {
        let mut map = ChangeMap::new(1);
        map.set(2);
        map.set(3);
        let mut old = vec![ChecksumRecord { crc32: 1, murmur3: 1 }; 8];
        old[6] = ChecksumRecord::INVALID;
        let runs = plan_runs(ReadPlan::Map(&map), SegmentRange::new(0, 8), &old);
        assert_eq!(runs, vec![SegmentRange::new(2, 4), SegmentRange::new(6, 7)]);
        assert_eq!(plan_runs(ReadPlan::All, SegmentRange::new(0, 8), &old), vec![SegmentRange::new(0, 8)]);
    }

    #[test]
    fn map_plan_fast_path_equals_the_walk() {
        // Every old record valid: the plan is exactly the map's runs, also
        // for a buffer that starts inside a map word.
        let mut map = ChangeMap::new(4096);
        for s in [0u64, 1, 2, 31, 32, 33, 100, 511, 512, 700, 701, 1023] {
            map.set(s);
        }
        let valid = ChecksumRecord { crc32: 7, murmur3: 7 };
        for (start, end) in [(0u64, 512u64), (512, 1024), (5, 40), (31, 33), (600, 650)] {
            let seg = SegmentRange::new(start, end);
            let old = vec![valid; (end - start) as usize];
            let want: Vec<SegmentRange> = {
                let mut b = RangeBuilder::new();
                for s in seg.iter().filter(|&s| map.is_set(s)) {
                    b.push(s);
                }
                b.finish()
            };
            assert_eq!(plan_runs(ReadPlan::Map(&map), seg, &old), want, "{start}..{end}");
            assert_eq!(plan_runs(ReadPlan::Map(&map), seg, &[]), want, "{start}..{end} without old records");
        }
    }

    #[test]
    fn lun_units_follow_what_is_in_flight() {
        const K: u64 = 1024;
        const M: u64 = 1 << 20;
        let seg = |bytes: u64| bytes / SEGMENT_SIZE;
        // (bytes in flight, -w) -> (unit bytes, reader threads)
        let table: [(Option<u64>, usize, u64, usize); 10] = [
            (None, 2, 8 * M, 2),                             // a file: the seed's buffers, -w threads
            (None, 64, 8 * M, 64),                           // -w is the user's, never capped here
            (Some(256 * K), 2, M, 2),                        // qd 1 x 256 KiB
            (Some(512 * K), 1, M, 2),                        // qd 1 x 512 KiB: one unit in flight, one more
            (Some(8 * 256 * K), 2, M, 3),                    // qd 8 x 256 KiB
            (Some(32 * 256 * K), 2, 2 * M, 5),               // qd 32 x 256 KiB
            (Some(16 * 512 * K), 2, 2 * M, 5),               // the defaults: qd 16 x 512 KiB
            (Some(32 * 512 * K), 8, 4 * M, 8),               // -w above what the queue needs
            (Some(256 * 16 * M), 2, 8 * M, MAX_LUN_READERS), // absurd: capped
            (Some(3 * 4096), 1, M, 2),                       // tiny transfers
        ];
        for (in_flight, w, unit, workers) in table {
            let u = ReadUnits::plan(in_flight, w, false);
            assert_eq!(u, ReadUnits { segments: seg(unit), workers }, "{in_flight:?} in flight, -w {w}");
            assert_eq!(SEGMENTS_PER_BUFFER % u.segments, 0, "a unit never straddles a buffer");
        }
    }

    #[test]
    fn under_a_rate_cap_units_in_flight_hold_no_more_than_w_buffers() {
        const K: u64 = 1024;
        const M: u64 = 1 << 20;
        // (bytes in flight, -w) -> reader threads under -r
        let table: [(Option<u64>, usize, usize); 7] = [
            (None, 3, 3),                 // a file: -w, as ever
            (Some(16 * 512 * K), 1, 4),   // the defaults: 2 MiB units, 4 of them fill one buffer
            (Some(64 * 512 * K), 1, 1),   // 8 MiB units: one thread per -w
            (Some(256 * 16 * M), 1, 1),   // absurd: still one
            (Some(256 * 16 * M), 3, 3),   // never fewer than -w
            (Some(8 * 256 * K), 2, 3),    // 1 MiB units: the queue's 3 fit in 2 buffers
            (Some(32 * 512 * K), 16, 16), // -w above what the queue needs
        ];
        for (in_flight, w, workers) in table {
            let planned = ReadUnits::plan(in_flight, w, false);
            let capped = ReadUnits::plan(in_flight, w, true);
            assert_eq!(capped, ReadUnits { workers, ..planned }, "{in_flight:?} in flight, -w {w}");
            assert!(capped.workers >= w);
            assert!(capped.workers == w || capped.workers as u64 * capped.bytes() as u64 <= w as u64 * BUFFER_SIZE);
        }
    }

    #[test]
    fn units_cover_the_volume_and_count_each_buffer_once() {
        let g = SegmentGeometry::new(3 * BUFFER_SIZE + 5 * SEGMENT_SIZE + 7);
        for u in [
            ReadUnits::plan(None, 2, false),
            ReadUnits::plan(Some(1 << 20), 2, false),
            ReadUnits::plan(Some(8 << 20), 2, true),
        ] {
            let ranges: Vec<SegmentRange> = (0..u.count(&g)).map(|i| u.range(&g, i)).collect();
            assert_eq!(ranges[0].start, 0);
            assert!(ranges.windows(2).all(|w| w[0].end == w[1].start && !w[0].is_empty()));
            assert_eq!(ranges.last().unwrap().end, g.segment_count());
            assert_eq!(ranges.iter().filter(|r| ends_a_buffer(&g, r.end)).count() as u64, g.buffer_count());
        }
    }

    #[test]
    fn iet_map_short_tail_is_always_read() {
        // One word tracks 32 segments; a 35-segment volume's last 3 are untracked.
        let map = ChangeMap::new(1);
        let old = vec![ChecksumRecord { crc32: 1, murmur3: 1 }; 35];
        assert_eq!(plan_runs(ReadPlan::Map(&map), SegmentRange::new(0, 35), &old), vec![SegmentRange::new(32, 35)]);
    }
}
