//! The copy mode: read the source, write the segments whose checksum
//! changed, keep the checksum file, save the stats.
//!
//! A run inspects everything before it changes anything: every path it
//! reads or writes is identified (device and inode; a block device by its
//! number) and no two may be the same file; an existing target and
//! checksum file are opened for writing without being changed, so a
//! read-only or busy one is refused; only then are locks taken and files
//! created. A refused run creates and changes nothing.

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

use super::binding::{self, Found};
use super::checksum_access;
use super::commit::{CommitLimits, Committer};
use super::lun_lock::lock_lun;
use super::options::{ChecksumMode, CopyOptions};
use super::reader::{run_readers, ReadJob, ReadPlan};
use super::report::CopyReport;
use super::stats_file::{self, Binding};
use super::target::{check_target, open_existing, CopyTarget, LunTarget, Target, TargetCheck};
use super::volume::{open_lun, warn_if_unidentified, Volume};
use crate::progress::Progress;
use crate::shared::atomic_file::remove_stale_temps;
use crate::shared::change_map::{words_for_volume, ChangeMap, BYTES_PER_WORD};
use crate::shared::checksum_file::ChecksumFile;
use crate::shared::ddmap_file::{iet_words_for_volume, load_ddmap_file, DDMAP_HEADER_SIZE};
use crate::shared::file_identity::{check_distinct, RolePath};
use crate::shared::object_stamp::ObjectStamp;
use crate::shared::segment::{SegmentGeometry, SEGMENT_SIZE};
use crate::shared::units::{gb, mb_per_s, percent};
use crate::volume::VolumeSpec;

/// Loads a ddmap for `-m` and checks it describes a volume of `size` bytes:
/// the header is read and checked first, so a wrong file is refused
/// before its data is read. IET rounds the word count down, santools up;
/// both are accepted (docs/formats.md).
pub(crate) fn load_ddmap_for(path: &Path, size: u64) -> anyhow::Result<ChangeMap> {
    let ours = words_for_volume(size);
    let iet = iet_words_for_volume(size);
    let map = load_ddmap_file(path, |h| {
        let words = u64::from(h.map_size);
        if words != ours && words != iet {
            let accepted = if ours == iet { format!("{ours} words") } else { format!("{ours} words (or IET's {iet})") };
            bail!(
                "map_size {} words covers {} bytes, but the source is {} bytes (expected {})",
                words,
                words * BYTES_PER_WORD,
                size,
                accepted
            );
        }
        Ok(())
    })
    .with_context(|| format!("ddmap {}", path.display()))?;
    tracing::info!("opened map {}", path.display());
    tracing::info!("header size {DDMAP_HEADER_SIZE}");
    if map.map.segment_capacity() < size.div_ceil(SEGMENT_SIZE) {
        tracing::info!(
            "the map tracks {} of {} segments (IET rounds down): the rest is always read",
            map.map.segment_capacity(),
            size.div_ceil(SEGMENT_SIZE)
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
    tracing::info!("source {} size {} bytes ({})", source.kind_name(), source.size, gb(source.size));
    tracing::info!("source segments {}, remainder {} bytes", geometry.segment_count(), geometry.remainder());
    tracing::info!("read buffers job {}", geometry.buffer_count());
    tracing::info!("read buffers worker {}", geometry.buffer_count().div_ceil(workers as u64));
}

/// Every path a copy reads or writes, with its role, for the identity check.
fn run_paths(
    opts: &CopyOptions,
    source: &Volume,
    target: RolePath,
    checksum: Option<&Path>,
) -> anyhow::Result<Vec<RolePath>> {
    let mut paths = vec![source.role_path("source")?, target];
    if let Some(p) = checksum {
        let ctx = || format!("checksum file {}", p.display());
        paths.push(RolePath::new("checksum file", p).with_context(ctx)?);
        let stats = stats_file::stats_path(p);
        paths.push(RolePath::new(format!("stats file of checksum file {}:", p.display()), &stats).with_context(ctx)?);
        let lock = checksum_access::lock_path(p);
        paths.push(RolePath::new(format!("lock file of checksum file {}:", p.display()), &lock).with_context(ctx)?);
    }
    if let Some(m) = &opts.ddmap {
        paths.push(RolePath::new("ddmap", m).with_context(|| format!("ddmap {}", m.display()))?);
    }
    Ok(paths)
}

/// The target as phase 1 found it.
enum PreparedTarget {
    Local(TargetCheck, Option<std::fs::File>),
    Lun(crate::initiator::IscsiVolume),
}

/// A LUN target must hold the whole source and accept writes; checked
/// before anything is created or written.
fn check_lun_target(v: &crate::initiator::IscsiVolume, source_size: u64) -> anyhow::Result<()> {
    let info = v.info();
    if info.size < source_size {
        bail!(
            "target {} is smaller than the source: {} bytes ({}) < {} bytes ({}); an iSCSI LUN is never resized, nothing was changed",
            info.url,
            info.size,
            gb(info.size),
            source_size,
            gb(source_size)
        );
    }
    if info.write_protected {
        bail!("target {} is write-protected (read-only LUN); nothing was changed", info.url);
    }
    Ok(())
}

/// Copies `opts.source` to `opts.target`, writing only changed segments.
/// Bad input (sizes, formats, locks, paths naming the same file) is refused
/// before anything is created or written.
pub fn copy(opts: &CopyOptions, progress: &dyn Progress) -> anyhow::Result<CopyReport> {
    let started = Instant::now();
    let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    opts.read.validate()?;
    log_preamble(opts);

    // Phase 1: inspect everything, change nothing.
    let source = Volume::open_source(&opts.source, opts.read.direct_io)?;
    let geometry = SegmentGeometry::new(source.size);
    log_source(&source, &geometry, opts.read.workers.get());
    let checksum_path = match &opts.checksum {
        ChecksumMode::File(p) if checksum_access::is_dev_null(p) => None,
        ChecksumMode::File(p) => Some(p.as_path()),
        ChecksumMode::Disabled => None,
    };
    let mut warnings = Vec::new();
    // A LUN target is logged in to now: its identity joins the check below.
    let lun = match &opts.target {
        VolumeSpec::Iscsi(s) => Some(open_lun(s, "target")?),
        VolumeSpec::Path(_) => None,
    };
    let target_role = match (&lun, &opts.target) {
        (Some(v), _) => RolePath::lun("target", &v.info().url, v.info().identity()),
        (None, VolumeSpec::Path(p)) => RolePath::new("target", p).with_context(|| format!("target {}", p.display()))?,
        (None, VolumeSpec::Iscsi(_)) => unreachable!("opened above"),
    };
    check_distinct(&run_paths(opts, &source, target_role, checksum_path)?)?;
    let map = opts.ddmap.as_deref().map(|p| load_ddmap_for(p, source.size)).transpose()?;
    if let Some(p) = checksum_path {
        let existing = checksum_access::inspect(p)?;
        checksum_access::check_writable(p, existing.is_some())?;
    }
    let prepared = match (lun, &opts.target) {
        (Some(v), _) => {
            check_lun_target(&v, source.size)?;
            warnings.extend(warn_if_unidentified(&v, "target"));
            PreparedTarget::Lun(v)
        }
        (None, VolumeSpec::Path(p)) => {
            let check = check_target(p, source.size)?;
            let existing = open_existing(&check)?;
            PreparedTarget::Local(check, existing)
        }
        (None, VolumeSpec::Iscsi(_)) => unreachable!("opened above"),
    };

    // Phase 2: lock, create, bring records and target to the source's size.
    // The LUN's lock comes first: a run refused because another one writes
    // the LUN must not leave a `.lock` beside its checksum file (its lock
    // file lives in the private LUN lock directory).
    let _lun_lock = match &prepared {
        PreparedTarget::Lun(v) => lock_lun(v)?,
        PreparedTarget::Local(..) => None,
    };
    let _lock = checksum_path.map(checksum_access::lock).transpose()?;
    let (target, target_size_before, target_created) = match prepared {
        PreparedTarget::Local(check, existing) => {
            let before = check.existing.map(|(_, size)| size);
            let created = check.existing.is_none();
            (CopyTarget::Local(Target::open(&check, existing)?), before, created)
        }
        PreparedTarget::Lun(v) => {
            tracing::info!("opened target iSCSI LUN {}", v.info().url);
            let before = Some(v.size());
            (CopyTarget::Lun(LunTarget::new(v)), before, false)
        }
    };
    let target_size = target.size().with_context(|| format!("size of target {}", opts.target.display()))?;
    let target_stamp = target.stamp().with_context(|| format!("target {}", opts.target.display()))?;
    let mut segments_invalidated = 0;
    let target_path = std::path::PathBuf::from(opts.target.to_string());
    let checksum = match checksum_path {
        Some(p) => {
            tracing::info!("checksum file {}", p.display());
            for stats in [p.to_path_buf(), stats_file::stats_path(p)] {
                remove_stale_temps(&stats);
            }
            let (cf, created, records) = checksum_access::open_for_copy(p)?;
            let stamp = ObjectStamp::of_file(cf.file()).with_context(|| format!("checksum file {}", p.display()))?;
            let stats_path = stats_file::stats_path(p);
            let stored = stats_file::read_binding(&stats_path).filter(|b| b.checksum == stamp);
            let found = Found {
                source_size: source.size,
                records,
                checksum_created: created,
                binding: stored.as_ref(),
                target_path: &target_path,
                target_stamp: &target_stamp,
                target_size,
                target_created,
                target_is_file: target.is_regular_file(),
            };
            let plan = binding::plan(&found);
            for w in &plan.warnings {
                tracing::warn!("{w}");
            }
            warnings.extend(plan.warnings.iter().cloned());
            if created {
                tracing::info!("new checksum file required");
            } else if records != geometry.segment_count() {
                let w = format!(
                    "source size changed since the checksum file was made: {} -> {} segments; checksum file resized, new segments will be written",
                    records,
                    geometry.segment_count()
                );
                tracing::warn!("{w}");
                warnings.push(w);
            }
            segments_invalidated =
                checksum_access::apply_plan(&cf, p, created, records, geometry.segment_count(), &plan)?;
            if let Some(len) = plan.resize_target {
                target.resize(len).with_context(|| format!("resizing target {}", opts.target.display()))?;
                tracing::info!("target file resized from {} to {} bytes", target_size, len);
            }
            let now = Binding {
                checksum: stamp,
                object: target_stamp.clone(),
                object_size: target.size().with_context(|| format!("size of target {}", opts.target.display()))?,
                object_path: target_path.clone(),
            };
            if stored.as_ref() != Some(&now) {
                stats_file::write_binding(&stats_path, &now)
                    .with_context(|| format!("writing stats file {}", stats_path.display()))?;
            }
            tracing::info!("checksum file size {} bytes", cf.records().map(|n| n * 8).unwrap_or(0));
            let state = if created {
                "created"
            } else if records != geometry.segment_count() {
                "resized"
            } else {
                "unchanged"
            };
            Some((cf, state, now))
        }
        None => {
            tracing::info!("checksum file /dev/null");
            tracing::info!("skipping checksum computations");
            if target.is_regular_file() && target_size != source.size {
                if target_size > source.size {
                    let w = format!(
                        "target file {} is larger than the source ({} > {} bytes): shrinking it to {} bytes",
                        opts.target.display(),
                        target_size,
                        source.size,
                        source.size
                    );
                    tracing::warn!("{w}");
                    warnings.push(w);
                }
                target.resize(source.size).with_context(|| format!("resizing target {}", opts.target.display()))?;
                tracing::info!("target file resized from {} to {} bytes", target_size, source.size);
            }
            None
        }
    };
    if map.is_some() && checksum.as_ref().is_some_and(|(_, s, _)| *s == "created") {
        tracing::info!("no checksums yet: every segment is read once, whatever the ddmap says");
    }
    let size_now = target.size()?;
    tracing::info!("target {} size {} bytes ({})", target.describe_kind(), size_now, gb(size_now));

    // Phase 3: read, compare, commit.
    let records: Option<&ChecksumFile> = checksum.as_ref().map(|(cf, _, _)| cf);
    let record_store: Option<&std::fs::File> = records.map(|cf| cf.file());
    let job = ReadJob {
        source: &source,
        geometry,
        old_records: records,
        plan: map.as_ref().map_or(ReadPlan::All, ReadPlan::Map),
        compute_checksums: records.is_some(),
        private_copies: true,
        records_only: false,
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
        source: opts.source.to_string(),
        target: opts.target.to_string(),
        checksum_file: checksum_path.map(Path::to_path_buf),
        ddmap: opts.ddmap.clone(),
        source_size: source.size,
        segment_size: SEGMENT_SIZE,
        segments: geometry.segment_count(),
        direct_io: opts.read.direct_io,
        workers: opts.read.workers.get(),
        reader_threads: reader_stats.threads,
        buffers_total: geometry.buffer_count(),
        buffers_read: reader_stats.buffers_read,
        segments_read: reader_stats.segments_read,
        bytes_read: reader_stats.bytes_read,
        segments_changed: commit_stats.segments_changed,
        changed_percent: percent(commit_stats.segments_changed, geometry.segment_count()),
        bytes_written: commit_stats.bytes_written,
        bytes_punched: commit_stats.bytes_punched,
        checksum_file_state: checksum.as_ref().map(|(_, s, _)| s.to_string()),
        target_size_before,
        target_shrunk: target_size_before.is_some_and(|b| b > source.size) && target.is_regular_file(),
        segments_invalidated,
        warnings,
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
    if report.bytes_punched > 0 {
        tracing::info!("punched {} bytes ({}) of zeros out of target", report.bytes_punched, gb(report.bytes_punched));
    }
    if report.target_shrunk {
        tracing::info!(
            "target file {} was shrunk from {} to {} bytes (it was larger than the source)",
            opts.target.display(),
            target_size_before.unwrap_or(0),
            source.size
        );
    }
    tracing::info!("processing time {:.2} seconds ({:.2} minutes)", elapsed, elapsed / 60.0);
    tracing::info!("processing performance {:.2} MB/s", report.throughput_mb_s);
    if let (Some(p), Some((_, _, bound))) = (checksum_path, checksum.as_ref()) {
        let stats = stats_file::stats_path(p);
        tracing::info!("preparing stats file {}", stats.display());
        stats_file::write_copy(&stats, &report, bound)
            .with_context(|| format!("writing stats file {}", stats.display()))?;
    }
    Ok(report)
}
