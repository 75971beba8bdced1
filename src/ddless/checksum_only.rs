//! Checksum-only mode: write a fresh checksum file for a source, replacing
//! any old one atomically (the old file stays intact until the new one is
//! complete and durable). Its stats file records that the records describe
//! this source (a copy onto it as the target can then use them).

use std::time::Instant;

use anyhow::{bail, Context};

use super::checksum_access;
use super::copy::log_source;
use super::options::ChecksumOptions;
use super::reader::{run_readers, ReadJob, ReadPlan};
use super::report::ChecksumReport;
use super::stats_file::{self, Binding};
use super::volume::Volume;
use crate::progress::Progress;
use crate::shared::atomic_file::{remove_stale_temps, AtomicFile};
use crate::shared::checksum_record::{encode_records, ChecksumRecord};
use crate::shared::file_identity::{check_distinct, RolePath};
use crate::shared::object_stamp::ObjectStamp;
use crate::shared::segment::SegmentGeometry;
use crate::shared::units::mb_per_s;

pub fn compute_checksums(opts: &ChecksumOptions, progress: &dyn Progress) -> anyhow::Result<ChecksumReport> {
    let started = Instant::now();
    opts.read.validate()?;
    if checksum_access::is_dev_null(&opts.checksum) {
        bail!("checksum-only mode needs a real checksum file, not /dev/null");
    }
    let source = Volume::open_source(&opts.source, opts.read.direct_io)?;
    let geometry = SegmentGeometry::new(source.size);
    log_source(&source, &geometry, opts.read.workers.get());
    let cks = &opts.checksum;
    let ctx = || format!("checksum file {}", cks.display());
    let stats_path = stats_file::stats_path(cks);
    check_distinct(&[
        source.role_path("source")?,
        RolePath::new("checksum file", cks).with_context(ctx)?,
        RolePath::new(format!("stats file of checksum file {}:", cks.display()), &stats_path).with_context(ctx)?,
        RolePath::new(format!("lock file of checksum file {}:", cks.display()), &checksum_access::lock_path(cks))
            .with_context(ctx)?,
    ])?;
    let existing = checksum_access::inspect(cks)?;
    checksum_access::check_writable(cks, existing.is_some())?;

    let _lock = checksum_access::lock(cks)?;
    // A copy reaching the old file through another name holds the file itself.
    let old = match existing {
        Some(_) => Some(std::fs::File::open(cks).with_context(ctx)?),
        None => None,
    };
    if let Some(f) = &old {
        checksum_access::lock_inode(f, cks)?;
    }
    for p in [cks.clone(), stats_path.clone()] {
        remove_stale_temps(&p);
    }
    let wctx = || format!("writing checksum file {}", cks.display());
    let out = AtomicFile::create(cks).with_context(wctx)?;
    out.file().set_len(geometry.segment_count() * ChecksumRecord::SIZE as u64).with_context(wctx)?;
    let job = ReadJob {
        source: &source,
        geometry,
        old_records: None,
        plan: ReadPlan::All,
        compute_checksums: true,
        private_copies: false,
        records_only: true,
        workers: opts.read.workers.get(),
        read_rate_mb_s: opts.read.read_rate_mb_s,
    };
    progress.start(source.size);
    let reader_stats = run_readers(&job, |chunk| {
        use std::os::unix::fs::FileExt;
        out.file()
            .write_all_at(&encode_records(&chunk.new), chunk.segments.start * ChecksumRecord::SIZE as u64)
            .with_context(wctx)?;
        let bytes = geometry.byte_range(chunk.segments);
        progress.advance(bytes.end - bytes.start);
        Ok(())
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let report = ChecksumReport {
        source: opts.source.to_string(),
        checksum_file: opts.checksum.clone(),
        source_size: source.size,
        segments: geometry.segment_count(),
        workers: opts.read.workers.get(),
        reader_threads: reader_stats.threads,
        elapsed_seconds: elapsed,
        throughput_mb_s: mb_per_s(source.size, elapsed),
    };
    // The binding names the new file (its inode survives the rename) and
    // is durable before the rename: a crash in between leaves the old
    // checksum file, which this binding does not claim.
    let binding = Binding {
        checksum: ObjectStamp::of_file(out.file()).with_context(wctx)?,
        object: source.stamp().with_context(|| format!("source {}", opts.source.display()))?,
        object_size: source.size,
        object_path: std::path::PathBuf::from(opts.source.to_string()),
    };
    stats_file::write_checksum_only(&stats_path, &report, &binding)
        .with_context(|| format!("writing stats file {}", stats_path.display()))?;
    out.commit().with_context(wctx)?;
    tracing::info!("checksum file {} written: {} records", opts.checksum.display(), geometry.segment_count());
    Ok(report)
}
