//! ddmap-steered reads of an iSCSI LUN, several buffers at a time.
//!
//! A nightly ddmap flags a few segments per 8 MiB buffer (1% is about 5),
//! so reading buffer by buffer keeps only a handful of READ commands in
//! flight per worker while the target could take the session's whole
//! queue depth. Here a worker claims consecutive buffers until they hold
//! [`GROUP_SEGMENTS`] flagged segments (at most [`GROUP_BUFFERS`] buffers),
//! sends the reads of all of them as one batch, and then hands the buffers
//! to the consumer one by one as usual. The bytes of each buffer are kept
//! packed (only the runs read), so a group costs memory in proportion to
//! what was flagged, not 8 MiB per buffer.

use std::ops::Range;
use std::sync::Mutex;

use anyhow::Context;

use super::rate::RateLimiter;
use super::reader::{hash_runs, plan_runs, ChunkBytes, ChunkResult, ReadJob};
use crate::shared::change_map::ChangeMap;
use crate::shared::checksum_record::ChecksumRecord;

/// Flagged segments a group aims at (1 MiB of data, 64 commands).
pub(crate) const GROUP_SEGMENTS: u64 = 64;
/// Buffers a group spans at most (256 MiB of the volume).
pub(crate) const GROUP_BUFFERS: u64 = 32;

/// Claims the next group of buffers: consecutive, ending once they hold
/// `GROUP_SEGMENTS` flagged segments or span `GROUP_BUFFERS`.
pub(crate) fn claim_group(cursor: &Mutex<u64>, job: &ReadJob<'_>, map: &ChangeMap) -> Option<Range<u64>> {
    let buffers = job.geometry.buffer_count();
    let mut next = cursor.lock().unwrap_or_else(|e| e.into_inner());
    let start = *next;
    if start >= buffers {
        return None;
    }
    let (mut end, mut flagged) = (start, 0u64);
    while end < buffers && end - start < GROUP_BUFFERS && flagged < GROUP_SEGMENTS {
        flagged += map.set_ranges(job.geometry.buffer_segments(end)).iter().map(|r| r.len()).sum::<u64>();
        end += 1;
    }
    *next = end;
    Some(start..end)
}

/// Reads a group of buffers with all their runs in flight together.
pub(crate) fn read_group<'v>(
    job: &ReadJob<'_>,
    group: Range<u64>,
    limiter: &mut Option<RateLimiter>,
) -> anyhow::Result<Vec<ChunkResult<'v>>> {
    let g = &job.geometry;
    let mut chunks = Vec::with_capacity((group.end - group.start) as usize);
    // The old records of the whole group in one read (a group spans up to
    // 32 buffers: 128 KiB of records), not one small read per buffer.
    let group_first = g.buffer_segments(group.start).start;
    let mut group_old = Vec::new();
    if let (Some(cf), false) = (job.old_records, group.is_empty()) {
        let end = g.buffer_segments(group.end - 1).end;
        cf.read_records(group_first, &mut group_old, (end - group_first) as usize)
            .context("reading the checksum file")?;
    }
    for index in group {
        let segments = g.buffer_segments(index);
        let old = match job.old_records {
            Some(_) => {
                group_old[(segments.start - group_first) as usize..(segments.end - group_first) as usize].to_vec()
            }
            None => Vec::new(),
        };
        let read = plan_runs(job.plan, segments, &old);
        // (volume offset, offset in the packed bytes, length) per run.
        let mut runs = Vec::with_capacity(read.len());
        let mut packed = 0usize;
        for run in &read {
            let r = g.byte_range(*run);
            let len = (r.end - r.start) as usize;
            runs.push((r.start, packed, len));
            packed += len;
        }
        chunks.push(ChunkResult {
            segments,
            bytes: ChunkBytes::Packed { bytes: vec![0u8; packed], runs },
            read,
            new: vec![ChecksumRecord::INVALID; segments.len() as usize],
            old,
            bytes_read: packed as u64,
        });
    }
    let first = chunks.iter().flat_map(|c| c.read.first()).next().map(|r| g.byte_range(*r).start);
    let mut reqs: Vec<(u64, &mut [u8])> = Vec::new();
    for c in chunks.iter_mut() {
        if let ChunkBytes::Packed { bytes, runs } = &mut c.bytes {
            let mut rest: &mut [u8] = bytes;
            for &(off, _, len) in runs.iter() {
                let (this, after) = std::mem::take(&mut rest).split_at_mut(len);
                reqs.push((off, this));
                rest = after;
            }
        }
    }
    if !reqs.is_empty() {
        job.source.read_scattered(&mut reqs).with_context(|| {
            format!("reading source {} ({} runs from byte {})", job.source.name, reqs.len(), first.unwrap_or(0))
        })?;
    }
    drop(reqs);
    if job.compute_checksums {
        // Every segment read in the group, hashed together: they are
        // scattered, so run by run most would be hashed one at a time.
        let runs = chunks.iter().enumerate().flat_map(|(n, c)| {
            c.read.iter().map(move |run| ((n, (run.start - c.segments.start) as usize), c.data(*run, g)))
        });
        for ((n, first), k, rec) in hash_runs(runs) {
            chunks[n].new[first + k] = rec;
        }
    }
    if let Some(l) = limiter.as_mut() {
        for c in &chunks {
            l.throttle(c.bytes_read);
        }
    }
    Ok(chunks)
}
