//! Verify mode: recompute every segment's checksum and compare it with the
//! checksum file, writing nothing. An INVALID record counts as a mismatch
//! (it is what an interrupted copy leaves).

use std::time::Instant;

use anyhow::{bail, Context};

use super::checksum_access;
use super::copy::log_source;
use super::options::VerifyOptions;
use super::reader::{run_readers, ReadJob, ReadPlan};
use super::report::{MismatchRange, VerifyReport};
use super::stats_file;
use super::volume::Volume;
use crate::progress::Progress;
use crate::shared::checksum_file::{check_fits, ChecksumFile};
use crate::shared::file_identity::{check_distinct, RolePath};
use crate::shared::object_stamp::ObjectStamp;
use crate::shared::segment::{SegmentGeometry, SegmentRange};
use crate::shared::units::mb_per_s;

pub fn verify(opts: &VerifyOptions, progress: &dyn Progress) -> anyhow::Result<VerifyReport> {
    let started = Instant::now();
    opts.read.validate()?;
    if checksum_access::is_dev_null(&opts.checksum) {
        bail!("verify needs a checksum file, not /dev/null");
    }
    let source = Volume::open_source(&opts.source, opts.read.direct_io)?;
    let geometry = SegmentGeometry::new(source.size);
    log_source(&source, &geometry, opts.read.workers.get());
    let cks = &opts.checksum;
    let ctx = || format!("checksum file {}", cks.display());
    check_distinct(&[
        source.role_path("source")?,
        RolePath::new("checksum file", cks).with_context(ctx)?,
        RolePath::new(format!("lock file of checksum file {}:", cks.display()), &checksum_access::lock_path(cks))
            .with_context(ctx)?,
    ])?;
    if checksum_access::inspect(cks)?.is_none() {
        bail!("checksum file {} does not exist", cks.display());
    }
    // Refuse a file that cannot be right before taking the lock (which
    // creates CHECKSUM.lock), then check again under the lock.
    let file = std::fs::File::open(cks).with_context(ctx)?;
    let meta = file.metadata().with_context(ctx)?;
    if !meta.is_file() {
        bail!("checksum file {} is not a regular file", cks.display());
    }
    check_fits(meta.len(), &geometry).with_context(ctx)?;
    let _lock = checksum_access::lock(cks)?;
    check_fits(file.metadata().with_context(ctx)?.len(), &geometry).with_context(ctx)?;
    if let Ok(stamp) = ObjectStamp::of_file(&file) {
        let bound = stats_file::read_binding(&stats_file::stats_path(cks)).filter(|b| b.checksum == stamp);
        let source_stamp = source.stamp().ok();
        match bound {
            Some(b) if source_stamp.as_ref() == Some(&b.object) && b.object_size != source.size => tracing::warn!(
                "{} is {} bytes, but the checksum file describes it at {} bytes (truncated or extended since?)",
                opts.source.display(),
                source.size,
                b.object_size
            ),
            Some(b) if source_stamp.as_ref() != Some(&b.object) => {
                tracing::info!(
                    "the checksum file describes {}; comparing {} with it",
                    b.describe(),
                    opts.source.display()
                )
            }
            _ => {}
        }
    }
    let records = ChecksumFile::new(file);
    let job = ReadJob {
        source: &source,
        geometry,
        old_records: Some(&records),
        plan: ReadPlan::All,
        compute_checksums: true,
        private_copies: false,
        records_only: true,
        workers: opts.read.workers.get(),
        read_rate_mb_s: opts.read.read_rate_mb_s,
    };
    // (range, invalid-record count) per run of differing segments.
    let mut runs: Vec<(SegmentRange, u64)> = Vec::new();
    progress.start(source.size);
    run_readers(&job, |chunk| {
        let mut current: Option<(SegmentRange, u64)> = None;
        for seg in chunk.segments.iter() {
            let i = chunk.index_of(seg);
            let (old, new) = (chunk.old[i], chunk.new[i]);
            if old.vouches_for(&new) {
                runs.extend(current.take());
                continue;
            }
            let invalid = u64::from(old.is_invalid());
            match current.as_mut() {
                Some((r, n)) => {
                    r.end = seg + 1;
                    *n += invalid;
                }
                None => current = Some((SegmentRange::single(seg), invalid)),
            }
        }
        runs.extend(current);
        let bytes = geometry.byte_range(chunk.segments);
        progress.advance(bytes.end - bytes.start);
        Ok(())
    })?;
    // Buffers finish out of order: sort, then join runs that meet at a buffer edge.
    runs.sort_unstable_by_key(|(r, _)| r.start);
    let mut merged: Vec<(SegmentRange, u64)> = Vec::new();
    for (r, n) in runs {
        match merged.last_mut() {
            Some((last, m)) if last.end == r.start => {
                last.end = r.end;
                *m += n;
            }
            _ => merged.push((r, n)),
        }
    }
    let mismatches: Vec<MismatchRange> = merged
        .iter()
        .map(|(r, n)| {
            let bytes = geometry.byte_range(*r);
            MismatchRange {
                first_segment: r.start,
                last_segment: r.end - 1,
                first_byte: bytes.start,
                end_byte: bytes.end,
                invalid_records: *n,
            }
        })
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    Ok(VerifyReport {
        source: opts.source.to_string(),
        checksum_file: opts.checksum.clone(),
        source_size: source.size,
        segments: geometry.segment_count(),
        segments_differing: merged.iter().map(|(r, _)| r.len()).sum(),
        mismatches,
        elapsed_seconds: elapsed,
        throughput_mb_s: mb_per_s(source.size, elapsed),
    })
}
