//! Checksum-only mode: write a fresh checksum file for a source, replacing
//! any old one atomically (the old file stays intact until the new one is
//! complete and durable).

use std::time::Instant;

use anyhow::{bail, Context};

use super::checksum_access;
use super::copy::log_source;
use super::options::ChecksumOptions;
use super::reader::{run_readers, ReadJob, ReadPlan};
use super::report::ChecksumReport;
use super::volume::Volume;
use crate::progress::Progress;
use crate::shared::atomic_file::AtomicFile;
use crate::shared::checksum_record::{encode_records, ChecksumRecord};
use crate::shared::segment::SegmentGeometry;
use crate::shared::units::mb_per_s;

pub fn compute_checksums(opts: &ChecksumOptions, progress: &dyn Progress) -> anyhow::Result<ChecksumReport> {
    let started = Instant::now();
    if checksum_access::is_dev_null(&opts.checksum) {
        bail!("checksum-only mode needs a real checksum file, not /dev/null");
    }
    let source = Volume::open_source(&opts.source, opts.read.direct_io)?;
    let geometry = SegmentGeometry::new(source.size);
    log_source(&source, &geometry, opts.read.workers.get());
    if opts.checksum == opts.source {
        bail!("checksum file {} must not be the source", opts.checksum.display());
    }
    let _lock = checksum_access::lock(&opts.checksum)?;
    let ctx = || format!("writing checksum file {}", opts.checksum.display());
    let out = AtomicFile::create(&opts.checksum).with_context(ctx)?;
    out.file().set_len(geometry.segment_count() * ChecksumRecord::SIZE as u64).with_context(ctx)?;
    let job = ReadJob {
        source: &source,
        geometry,
        old_records: None,
        plan: ReadPlan::All,
        compute_checksums: true,
        workers: opts.read.workers.get(),
        read_rate_mb_s: opts.read.read_rate_mb_s,
    };
    progress.start(source.size);
    run_readers(&job, |chunk| {
        use std::os::unix::fs::FileExt;
        out.file()
            .write_all_at(&encode_records(&chunk.new), chunk.segments.start * ChecksumRecord::SIZE as u64)
            .with_context(ctx)?;
        let bytes = geometry.byte_range(chunk.segments);
        progress.advance(bytes.end - bytes.start);
        Ok(())
    })?;
    out.commit().with_context(ctx)?;
    let elapsed = started.elapsed().as_secs_f64();
    tracing::info!("checksum file {} written: {} records", opts.checksum.display(), geometry.segment_count());
    Ok(ChecksumReport {
        source: opts.source.clone(),
        checksum_file: opts.checksum.clone(),
        source_size: source.size,
        segments: geometry.segment_count(),
        elapsed_seconds: elapsed,
        throughput_mb_s: mb_per_s(source.size, elapsed),
    })
}
