//! The copy mode: read the source, write the segments whose checksum
//! changed, keep the checksum file, save the stats.

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

use super::checksum_access::{self, SizeChange};
use super::commit::{CommitLimits, Committer};
use super::options::{ChecksumMode, CopyOptions};
use super::reader::{run_readers, ReadJob, ReadPlan};
use super::report::CopyReport;
use super::stats_file;
use super::target::{check_target, Target};
use super::volume::Volume;
use crate::progress::Progress;
use crate::shared::change_map::{words_for_volume, ChangeMap, BYTES_PER_WORD};
use crate::shared::checksum_file::ChecksumFile;
use crate::shared::ddmap_file::{Ddmap, DDMAP_HEADER_SIZE};
use crate::shared::segment::{SegmentGeometry, SEGMENT_SIZE};
use crate::shared::units::{gb, mb_per_s, percent};

/// Loads a ddmap for `-m` and checks it describes a volume of `size` bytes.
pub(crate) fn load_ddmap_for(path: &Path, size: u64) -> anyhow::Result<ChangeMap> {
    let bytes = std::fs::read(path).with_context(|| format!("reading ddmap {}", path.display()))?;
    let map = Ddmap::parse(&bytes).with_context(|| format!("ddmap {}", path.display()))?;
    tracing::info!("opened map {}", path.display());
    tracing::info!("header size {DDMAP_HEADER_SIZE}");
    if !map.fits_volume(size) {
        bail!(
            "ddmap {}: map_size {} words covers {} bytes, but the source is {} bytes (expected {} words)",
            path.display(),
            map.map.word_count(),
            map.map.word_count() as u64 * BYTES_PER_WORD,
            size,
            words_for_volume(size)
        );
    }
    Ok(map.map)
}

fn log_preamble(opts: &CopyOptions) {
    tracing::info!("invoking ddless");
    tracing::info!("segment size {SEGMENT_SIZE} bytes");
    tracing::info!("direct IO {}", u8::from(opts.read.direct_io));
    tracing::info!("workers {}", opts.read.workers);
    tracing::info!("8 MB read buffer");
}

pub(crate) fn log_source(source: &Volume, geometry: &SegmentGeometry, workers: usize) {
    tracing::info!("source {} size {} bytes ({})", source.kind.describe(), source.size, gb(source.size));
    tracing::info!("source segments {}, remainder {} bytes", geometry.segment_count(), geometry.remainder());
    tracing::info!("read buffers job {}", geometry.buffer_count());
    tracing::info!("read buffers worker {}", geometry.buffer_count().div_ceil(workers as u64));
}

/// Copies `opts.source` to `opts.target`, writing only changed segments.
/// Bad input (sizes, formats, locks) is refused before anything is written.
pub fn copy(opts: &CopyOptions, progress: &dyn Progress) -> anyhow::Result<CopyReport> {
    let started = Instant::now();
    let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    log_preamble(opts);

    // Phase 1: inspect everything, change nothing.
    let source = Volume::open_source(&opts.source, opts.read.direct_io)?;
    let geometry = SegmentGeometry::new(source.size);
    log_source(&source, &geometry, opts.read.workers.get());
    let map = opts.ddmap.as_deref().map(|p| load_ddmap_for(p, source.size)).transpose()?;
    let checksum_path = match &opts.checksum {
        ChecksumMode::File(p) if checksum_access::is_dev_null(p) => None,
        ChecksumMode::File(p) => Some(p.as_path()),
        ChecksumMode::Disabled => None,
    };
    if let Some(p) = checksum_path {
        checksum_access::inspect(p)?;
        if p == opts.source || p == opts.target {
            bail!("checksum file {} must not be the source or the target", p.display());
        }
    }
    let check = check_target(&opts.target, source.size)?;
    if let Some((_, _, id)) = check.existing {
        if id == source.identity {
            bail!("target {} is the source itself", opts.target.display());
        }
    }

    // Phase 2: lock, create, size.
    let _lock = checksum_path.map(checksum_access::lock).transpose()?;
    let checksum = match checksum_path {
        Some(p) => {
            tracing::info!("checksum file {}", p.display());
            let (cf, change) = checksum_access::open_for_copy(p, &geometry)?;
            match change {
                SizeChange::Created => tracing::info!("new checksum file required"),
                SizeChange::Resized { from_records, to_records } => tracing::warn!(
                    "source size changed since the checksum file was made: {} -> {} segments; checksum file resized, new segments will be written",
                    from_records,
                    to_records
                ),
                SizeChange::None => {}
            }
            tracing::info!("checksum file size {} bytes", cf.records().map(|n| n * 8).unwrap_or(0));
            Some((cf, change))
        }
        None => {
            tracing::info!("checksum file /dev/null");
            tracing::info!("skipping checksum computations");
            None
        }
    };
    if map.is_some() && checksum.as_ref().is_some_and(|(_, c)| *c == SizeChange::Created) {
        tracing::info!("no checksums yet: every segment is read once, whatever the ddmap says");
    }
    let target = Target::open(&check, source.size)?;

    // Phase 3: read, compare, commit.
    let records: Option<&ChecksumFile> = checksum.as_ref().map(|(cf, _)| cf);
    let record_store: Option<&std::fs::File> = records.map(|cf| cf.file());
    let job = ReadJob {
        source: &source,
        geometry,
        old_records: records,
        plan: map.as_ref().map_or(ReadPlan::All, ReadPlan::Map),
        compute_checksums: records.is_some(),
        workers: opts.read.workers.get(),
        read_rate_mb_s: opts.read.read_rate_mb_s,
    };
    tracing::info!("launching worker threads");
    progress.start(source.size);
    let mut committer = Committer::new(record_store, &target, geometry, CommitLimits::from_tuning(opts.tuning));
    let reader_stats = run_readers(&job, |chunk| {
        committer.submit(chunk).with_context(|| format!("writing target {}", opts.target.display()))?;
        progress.advance(geometry.byte_range(chunk.segments).end - geometry.byte_range(chunk.segments).start);
        Ok(())
    })?;
    tracing::debug!("all buffers read after {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
    let commit_stats =
        committer.finish().with_context(|| format!("flushing target {} and checksum file", opts.target.display()))?;

    let elapsed = started.elapsed().as_secs_f64();
    let report = CopyReport {
        source: opts.source.clone(),
        target: opts.target.clone(),
        checksum_file: checksum_path.map(Path::to_path_buf),
        ddmap: opts.ddmap.clone(),
        source_size: source.size,
        segment_size: SEGMENT_SIZE,
        segments: geometry.segment_count(),
        direct_io: opts.read.direct_io,
        workers: opts.read.workers.get(),
        buffers_total: geometry.buffer_count(),
        buffers_read: reader_stats.buffers_read,
        segments_read: reader_stats.segments_read,
        bytes_read: reader_stats.bytes_read,
        segments_changed: commit_stats.segments_changed,
        changed_percent: percent(commit_stats.segments_changed, geometry.segment_count()),
        bytes_written: commit_stats.bytes_written,
        checksum_file_state: checksum.as_ref().map(|(_, c)| {
            match c {
                SizeChange::Created => "created",
                SizeChange::Resized { .. } => "resized",
                SizeChange::None => "unchanged",
            }
            .to_string()
        }),
        elapsed_seconds: elapsed,
        throughput_mb_s: mb_per_s(source.size, elapsed),
        started_unix,
    };
    tracing::info!("total buffers read {}", report.buffers_read);
    tracing::info!(
        "found changed segments {} ({:.2}%) of {} segments",
        report.segments_changed,
        report.changed_percent,
        report.segments
    );
    tracing::info!("wrote {} bytes ({}) to target", report.bytes_written, gb(report.bytes_written));
    tracing::info!("processing time {:.2} seconds ({:.2} minutes)", elapsed, elapsed / 60.0);
    tracing::info!("processing performance {:.2} MB/s", report.throughput_mb_s);
    if let Some(p) = checksum_path {
        let stats = stats_file::stats_path(p);
        tracing::info!("preparing stats file {}", stats.display());
        stats_file::write(&stats, &report).with_context(|| format!("writing stats file {}", stats.display()))?;
    }
    Ok(report)
}
