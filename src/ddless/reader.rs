//! The reader pool: worker threads take 8 MiB buffers of the source in
//! turn (a shared counter, so the disk sees near-sequential reads whatever
//! the worker count), read the segments the plan asks for, compute their
//! checksums, and hand each buffer to the single consumer on the calling
//! thread, which returns the buffer for reuse.
//!
//! Workers are plain threads rather than a rayon pool: they block in read(2)
//! and sleep for the rate cap, which would starve rayon's work stealing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Mutex;

use anyhow::Context;

use super::rate::RateLimiter;
use super::volume::Volume;
use crate::shared::aligned_buffer::AlignedBuffer;
use crate::shared::change_map::ChangeMap;
use crate::shared::checksum_file::ChecksumFile;
use crate::shared::checksum_record::{checksum_segments, ChecksumRecord};
use crate::shared::segment::{RangeBuilder, SegmentGeometry, SegmentRange, BUFFER_SIZE};

use std::num::NonZeroU64;

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
    pub workers: usize,
    pub read_rate_mb_s: Option<NonZeroU64>,
}

/// One buffer's worth of work, handed to the consumer.
pub(crate) struct ChunkResult {
    /// Segments this buffer covers.
    pub segments: SegmentRange,
    /// Segment s's bytes start at `(s - segments.start) * SEGMENT_SIZE`.
    pub buffer: AlignedBuffer,
    /// Runs of segments actually read, ascending.
    pub read: Vec<SegmentRange>,
    /// New record per segment of the buffer (INVALID where not read or not computed).
    pub new: Vec<ChecksumRecord>,
    /// Old record per segment of the buffer; empty without a checksum file.
    pub old: Vec<ChecksumRecord>,
    pub bytes_read: u64,
}

impl ChunkResult {
    /// Bytes of `range` (inside this buffer), clamped to the volume.
    pub fn data(&self, range: SegmentRange, geometry: &SegmentGeometry) -> &[u8] {
        let bytes = geometry.byte_range(range);
        let base = geometry.segment_offset(self.segments.start);
        &self.buffer[(bytes.start - base) as usize..(bytes.end - base) as usize]
    }

    pub fn index_of(&self, segment: u64) -> usize {
        (segment - self.segments.start) as usize
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReaderStats {
    pub buffers_read: u64,
    pub segments_read: u64,
    pub bytes_read: u64,
}

fn plan_runs(plan: ReadPlan<'_>, segments: SegmentRange, old: &[ChecksumRecord]) -> Vec<SegmentRange> {
    match plan {
        ReadPlan::All => vec![segments],
        ReadPlan::Map(map) => {
            let mut b = RangeBuilder::new();
            let flagged = map.set_ranges(segments);
            let mut flagged = flagged.iter().peekable();
            for s in segments.iter() {
                while flagged.peek().is_some_and(|r| r.end <= s) {
                    flagged.next();
                }
                let in_map = flagged.peek().is_some_and(|r| r.contains(s));
                let unknown = old.get((s - segments.start) as usize).is_some_and(|r| r.is_invalid());
                if in_map || unknown {
                    b.push(s);
                }
            }
            b.finish()
        }
    }
}

fn read_chunk(
    job: &ReadJob<'_>,
    index: u64,
    mut buffer: AlignedBuffer,
    limiter: &mut Option<RateLimiter>,
) -> anyhow::Result<ChunkResult> {
    let g = &job.geometry;
    let segments = g.buffer_segments(index);
    let mut old = Vec::new();
    if let Some(cf) = job.old_records {
        cf.read_records(segments.start, &mut old, segments.len() as usize).context("reading the checksum file")?;
    }
    let read = plan_runs(job.plan, segments, &old);
    let mut new = vec![ChecksumRecord::INVALID; segments.len() as usize];
    let base = g.segment_offset(segments.start);
    let mut bytes_read = 0;
    let mut scratch = Vec::with_capacity(read.iter().map(|r| r.len() as usize).max().unwrap_or(0));
    for run in &read {
        let bytes = g.byte_range(*run);
        let len = (bytes.end - bytes.start) as usize;
        let at = (bytes.start - base) as usize;
        job.source
            .read_at(&mut buffer[at..], bytes.start, len)
            .with_context(|| format!("reading source {} at byte {}", job.source.path.display(), bytes.start))?;
        bytes_read += len as u64;
        if let Some(l) = limiter.as_mut() {
            l.throttle(len as u64);
        }
        if job.compute_checksums {
            scratch.clear();
            checksum_segments(&buffer[at..at + len], &mut scratch);
            let first = (run.start - segments.start) as usize;
            new[first..first + scratch.len()].copy_from_slice(&scratch);
        }
    }
    Ok(ChunkResult { segments, buffer, read, new, old, bytes_read })
}

/// Runs the pool over every buffer of the volume. `consume` sees each
/// buffer exactly once, in no particular order, and gives the buffer back.
/// The first error (a worker's or the consumer's) stops the pool.
pub(crate) fn run_readers(
    job: &ReadJob<'_>,
    mut consume: impl FnMut(ChunkResult) -> anyhow::Result<AlignedBuffer>,
) -> anyhow::Result<ReaderStats> {
    let buffers = job.geometry.buffer_count();
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let pool: Mutex<Vec<AlignedBuffer>> = Mutex::new(Vec::new());
    let workers = job.workers.max(1);
    let mut stats = ReaderStats::default();
    let mut first_error = None;

    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<anyhow::Result<ChunkResult>>(workers * 2);
        for worker in 0..workers {
            let tx = tx.clone();
            let (next, stop, pool) = (&next, &stop, &pool);
            scope.spawn(move || {
                let mut limiter = job.read_rate_mb_s.map(RateLimiter::new);
                let mut done = 0u64;
                tracing::debug!("worker_id {worker} started");
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= buffers {
                        break;
                    }
                    let buffer = pool
                        .lock()
                        .ok()
                        .and_then(|mut p| p.pop())
                        .unwrap_or_else(|| AlignedBuffer::new(BUFFER_SIZE as usize));
                    let result = read_chunk(job, index, buffer, &mut limiter);
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
        for result in rx.iter() {
            let outcome = result.and_then(|chunk| {
                let (segs, bytes, any) =
                    (chunk.read.iter().map(|r| r.len()).sum::<u64>(), chunk.bytes_read, !chunk.read.is_empty());
                let buffer = consume(chunk)?;
                stats.segments_read += segs;
                stats.bytes_read += bytes;
                stats.buffers_read += u64::from(any);
                Ok(buffer)
            });
            match outcome {
                Ok(buffer) => {
                    if let Ok(mut p) = pool.lock() {
                        p.push(buffer);
                    }
                }
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    first_error = Some(e);
                    break;
                }
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
}
