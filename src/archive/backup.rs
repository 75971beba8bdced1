//! The backup of one volume, in order (docs/archive.md, "the backup"):
//!
//! lock → recover an interrupted run → prepare the source → check the map
//! against the source → create the archive volume (or check its size) →
//! keep the head snapshot's checksum file → ddless (with the map unless a
//! full read is due) → `-i` integrity check → write the history delta →
//! snapshot with its properties → the snapshot becomes the history head →
//! finish the source (success) → unlock.
//!
//! Every step leaves state a rerun can see and finish; the snapshot comes
//! last, so its existence means "backup complete". A failure before the
//! snapshot tells the source so (its map is not consumed).

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use jiff::Timestamp;
use serde::Serialize;

use super::compare::{compare_files, Comparison};
use super::ddmap_state::{read_plan, ArchiveFacts, DdmapState, ReadPlan};
use super::history::{HistoryStore, Preserved};
use super::job_log::JobLog;
use super::map_prep::prepare_map;
use super::names::{PropertyName, SnapshotName};
use super::settings::{ArchiveSettings, SourceSpec, StateSpec, VolumeSettings};
use super::snapshot_time::snapshot_name;
use super::source::protocol::{FinishMessage, Status};
use super::source::{self, OpenedSource};
use super::store::{ArchiveStore, StoreError};
use super::volume_lock::{lock_pool, lock_volume};
use super::workspace::Workspace;
use crate::ddless::{compute_checksums, copy, ChecksumMode, ChecksumOptions, CommitTuning, CopyOptions, ReadOptions};
use crate::progress::Progress;
use crate::shared::checksum_file::ChecksumFile;
use crate::shared::checksum_record::ChecksumRecord;
use crate::shared::failpoint;
use crate::volume::VolumeSpec;

#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// `-i`: compare the source's checksum with the archive volume's bytes.
    pub integrity: bool,
    /// `-n`: say what would happen, change nothing.
    pub dry_run: bool,
    /// Accept a source smaller than its archive volume.
    pub allow_shrink: bool,
    /// How long to wait for the volume lock.
    pub lock_wait: Duration,
    /// ddless reader threads.
    pub ddless_workers: NonZeroUsize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct BackupReport {
    pub volume: String,
    pub archive_volume: String,
    pub backend: String,
    pub source: String,
    /// "ok", "dry-run", "integrity-mismatch" or "failed".
    pub status: String,
    pub size: u64,
    pub created_volume: bool,
    pub previous_size: Option<u64>,
    pub read: String,
    pub read_reason: Option<String>,
    pub ddmap_state: Option<String>,
    pub map_flagged_segments: Option<u64>,
    pub segments_read: u64,
    pub segments_changed: u64,
    pub bytes_written: u64,
    pub snapshot: Option<String>,
    /// "ok", "mismatch" or "not_checked".
    pub integrity: String,
    pub integrity_mismatch: Option<Comparison>,
    /// Segments whose archive bytes no longer matched the checksum file
    /// (found by -i; their records were invalidated so they are rewritten).
    pub archive_damage: Option<Comparison>,
    pub recovered: Option<String>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
    pub elapsed_seconds: f64,
}

impl BackupReport {
    pub fn exit_code(&self) -> u8 {
        match self.status.as_str() {
            "ok" | "dry-run" => 0,
            "integrity-mismatch" => 1,
            _ => 2,
        }
    }
}

/// Everything a backup run shares between volumes.
pub struct BackupContext<'a> {
    pub settings: &'a ArchiveSettings,
    pub log: &'a JobLog,
    pub progress: &'a dyn Progress,
    /// The clock (tests fix it).
    pub now: &'a (dyn Fn() -> Timestamp + Sync),
}

fn prop(ctx: &BackupContext<'_>, key: &str) -> PropertyName {
    ctx.settings.ns.prop(key)
}

/// Backs up one configured volume. Never panics; every failure is in the report.
pub fn backup_volume(ctx: &BackupContext<'_>, vol: &VolumeSettings, opts: &BackupOptions) -> BackupReport {
    let started = Instant::now();
    let mut report = BackupReport {
        volume: vol.source_name.clone(),
        archive_volume: vol.archive.to_string(),
        source: source::describe_spec(&vol.source),
        integrity: "not_checked".into(),
        ..BackupReport::default()
    };
    let mut opened: Option<OpenedSource> = None;
    let result = run(ctx, vol, opts, &mut report, &mut opened);
    if let Err(e) = &result {
        report.status = "failed".into();
        report.error = Some(format!("{e:#}"));
        ctx.log.error("backup", &format!("{}: backup failed: {e:#}", vol.archive));
    }
    // A source that was prepared hears how it ended (exactly once).
    if let Some(src) = opened.as_mut() {
        if !src.is_finished() {
            let msg = FinishMessage {
                status: if report.snapshot.is_some() { Status::Success } else { Status::Failure },
                volume: vol.source_name.clone(),
                token: src.prepared.token.clone(),
                snapshot: report.snapshot.clone(),
                integrity: report.integrity.clone(),
                error: report.error.clone(),
            };
            if let Err(e) = src.finish(&msg) {
                let text = format!("{}: {e}", vol.archive);
                ctx.log.error("backup", &text);
                report.error.get_or_insert(text);
                if report.status == "ok" {
                    // The snapshot exists; the source just could not clear its map.
                    report.status = "failed".into();
                }
            }
        }
    }
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    report
}

fn run(
    ctx: &BackupContext<'_>,
    vol: &VolumeSettings,
    opts: &BackupOptions,
    report: &mut BackupReport,
    opened: &mut Option<OpenedSource>,
) -> anyhow::Result<()> {
    let s = ctx.settings;
    let log = ctx.log;
    let name = &vol.archive;
    let store: Arc<dyn ArchiveStore> =
        s.store(&name.pool).ok_or_else(|| anyhow!("pool {} is not configured", name.pool))?;
    report.backend = store.describe();
    store.check()?;
    let _lock = if opts.dry_run { None } else { Some(lock_volume(&s.lock_dir, name, "backup", opts.lock_wait)?) };
    failpoint::hit("backup.after-lock");

    // The checksum directory, if it exists; it is created only once the
    // source is prepared (a refused run creates nothing).
    let dir = match store.checksum_dir(false) {
        Ok(d) => Some(d),
        Err(StoreError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let ws = dir.map(|d| Workspace::new(d, &name.volume));

    let existing = store.volume(&name.volume)?;
    if !opts.dry_run {
        for r in store.cleanup_stale(&name.volume)? {
            log.line("backup", &format!("{name}: removed {r} left by an interrupted run"));
        }
        if let Some(ws) = &ws {
            for r in ws.remove_stale() {
                log.line("backup", &format!("{name}: removed {} left by an interrupted run", r.display()));
            }
        }
    }

    // Finish what an interrupted run left half-done.
    let history = ws.as_ref().map(Workspace::history);
    if let (Some(h), false, Some(_)) = (&history, opts.dry_run, &existing) {
        // Listing snapshots costs commands on zfs: only when a run was cut off.
        let snaps: Vec<String> = match h.pending()? {
            Some(_) => store.snapshots(&name.volume)?.into_iter().map(|s| s.name.to_string()).collect(),
            None => Vec::new(),
        };
        if let Some(done) = h.recover(|n| snaps.iter().any(|s| s == n))? {
            log.line("backup", &format!("{name}: completed the history of snapshot {done} left by an interrupted run"));
            report.recovered = Some(done);
        }
    }

    // The source.
    if opts.dry_run {
        return dry_run(ctx, vol, store.as_ref(), existing.as_ref(), ws.as_ref(), report);
    }
    let src = source::prepare(&vol.source, &vol.source_name, &s.initiator)?;
    let src = opened.insert(src);
    failpoint::hit("backup.after-prepare");
    report.source = src.description();
    report.size = src.prepared.size;
    report.ddmap_state = src.prepared.ddmap_state.map(|s| s.to_string());
    let size = src.prepared.size;
    let ws = match ws {
        Some(ws) => ws,
        None => {
            // Volumes of one pool share it: created under the pool lock.
            let _pool = lock_pool(&s.lock_dir, &name.pool, Duration::from_secs(60))?;
            Workspace::new(store.checksum_dir(true)?, &name.volume)
        }
    };
    let history = match history {
        Some(h) => h,
        None => ws.history(),
    };

    // The map, checked against the source before anything is created.
    let map = match &src.prepared.ddmap {
        Some(m) => {
            let summary = prepare_map(m, size, &ws.ddmap())?;
            report.map_flagged_segments = Some(summary.flagged_segments);
            Some(ws.ddmap())
        }
        None => None,
    };

    // The archive volume.
    let info = match existing {
        Some(info) => {
            // The volume says which source it archives: another source
            // (a second configuration, a renamed volume group) must not
            // overwrite it.
            let owner_key = prop(ctx, "source_volume");
            if let Some(owner) = info.properties.get(owner_key.as_str()) {
                if *owner != vol.source_name {
                    bail!(
                        "archive volume {name} belongs to source {owner:?} (property {owner_key}), not to {:?}: refusing to overwrite it (if it is the same volume under a new name, set the property to the new name)",
                        vol.source_name
                    );
                }
            }
            if size < info.size && !opts.allow_shrink {
                bail!(
                    "the source shrank from {} to {size} bytes; refusing to shrink archive volume {name} (use --allow-shrink; older snapshots keep the old size)",
                    info.size
                );
            }
            if size != info.size {
                report.previous_size = Some(info.size);
                log.line("backup", &format!("{name}: source size changed from {} to {size} bytes", info.size));
            }
            if let Some(sched) = &vol.schedule {
                let key = prop(ctx, "snaprotate_schedule");
                if info.properties.get(key.as_str()) != Some(sched) {
                    store.set_property(&name.volume, None, &key, sched)?;
                }
            }
            info
        }
        None => {
            let mut props = vec![(prop(ctx, "source_volume"), vol.source_name.clone())];
            if let Some(sched) = &vol.schedule {
                props.push((prop(ctx, "snaprotate_schedule"), sched.clone()));
            }
            let info = store.create_volume(&name.volume, size, &props)?;
            report.created_volume = true;
            log.line("backup", &format!("{name}: created archive volume on {}", store.describe()));
            info
        }
    };
    failpoint::hit("backup.after-create");
    store.prepare_size(&name.volume, size)?;

    // Full read or map?
    let mut state = ws.state().with_context(|| format!("reading {}", ws.state_path().display()))?;
    let facts = ArchiveFacts { no_checksum_file: !ws.checksum().exists(), marked_dirty: state.dirty.clone() };
    let plan = read_plan(map.is_some(), src.prepared.ddmap_state, &facts);
    match &plan {
        ReadPlan::Full { reason } => {
            report.read = "full".into();
            report.read_reason = Some(reason.clone());
        }
        ReadPlan::Map => report.read = "map".into(),
    }

    // Keep the head snapshot's checksum file before the live one changes.
    match history.preserve_head()? {
        Preserved::Lost(why) => {
            let w = format!("{name}: the checksum history of the newest snapshot cannot be kept: {why}; snapcheck will report it (and older ones) as nohistory");
            log.warn("backup", &w);
            report.warnings.push(w);
        }
        Preserved::Kept | Preserved::NoHead => {}
    }

    // The copy.
    let use_map = matches!(plan, ReadPlan::Map);
    let copy_opts = CopyOptions {
        source: src.volume_spec().clone(),
        target: VolumeSpec::Path(info.data_path.clone()),
        checksum: ChecksumMode::File(ws.checksum()),
        ddmap: if use_map { map.clone() } else { None },
        read: ReadOptions { direct_io: false, workers: opts.ddless_workers, read_rate_mb_s: None },
        tuning: CommitTuning::default(),
    };
    log.line("copy", &ddless_command_line(&copy_opts));
    let copied = copy(&copy_opts, ctx.progress)
        .with_context(|| format!("copying {} to {}", copy_opts.source.display(), copy_opts.target.display()))?;
    report.segments_read = copied.segments_read;
    report.segments_changed = copied.segments_changed;
    report.bytes_written = copied.bytes_written;
    log.line(
        "copy",
        &format!(
            "{name}: read {} segments, {} changed, {} bytes written in {:.1} s",
            copied.segments_read, copied.segments_changed, copied.bytes_written, copied.elapsed_seconds
        ),
    );
    failpoint::hit("backup.after-copy");

    // -i: the source's checksum against the archive volume's actual bytes.
    if opts.integrity {
        let scratch = ws.scratch().with_context(|| format!("creating scratch space in {}", ws.dir.display()))?;
        let ok = integrity_check(ctx, &ws, src, &info.data_path, &scratch, opts, report)?;
        if !ok {
            state.dirty = Some(format!(
                "the integrity check of the backup at {} found differences",
                (ctx.now)().strftime("%Y-%m-%d %H:%M:%S UTC")
            ));
            state.last_result = Some("integrity-mismatch".into());
            ws.save_state(&state)?;
            report.status = "integrity-mismatch".into();
            log.error("backup", &format!("{name}: integrity check failed: no snapshot taken; the volume is marked DIRTY so the next backup reads everything"));
            return Ok(());
        }
    }
    failpoint::hit("backup.after-integrity");

    // The snapshot name, the history delta, then the snapshot itself.
    let existing_snaps: Vec<SnapshotName> = store.snapshots(&name.volume)?.into_iter().map(|s| s.name).collect();
    let now = (ctx.now)();
    let snap = free_snapshot_name(now, &s.tz, &existing_snaps);
    history.prepare_commit(snap.as_str())?;
    failpoint::hit("backup.after-history");
    let mut props = vec![
        (prop(ctx, "snap_time"), now.as_second().to_string()),
        (prop(ctx, "source_volume"), vol.source_name.clone()),
        (prop(ctx, "read"), report.read.clone()),
        (prop(ctx, "integrity"), report.integrity.clone()),
    ];
    if let Some(st) = src.prepared.ddmap_state {
        props.push((prop(ctx, "ddmap_state"), st.to_string()));
    }
    store.create_snapshot(&name.volume, &snap, &props)?;
    report.snapshot = Some(format!("{name}@{snap}"));
    log.line("backup", &format!("{name}: snapshot {snap} taken"));
    failpoint::hit("backup.after-snapshot");
    history.finish_commit()?;
    failpoint::hit("backup.after-commit");

    // A complete full read settles a DIRTY mark. Written only when it
    // changes: an fsync pair saved on every ordinary night.
    let before = state.clone();
    if !use_map {
        state.dirty = None;
    }
    state.last_result = Some("ok".into());
    if state != before {
        ws.save_state(&state)?;
    }
    report.status = "ok".into();
    Ok(())
}

/// The managed name for `now`, moved on by a second while it is taken (two
/// backups in one second, or a local clock that repeats an hour).
fn free_snapshot_name(now: Timestamp, tz: &jiff::tz::TimeZone, taken: &[SnapshotName]) -> SnapshotName {
    let mut t = now;
    for _ in 0..3600 {
        let n = snapshot_name(t, tz);
        if !taken.contains(&n) {
            return n;
        }
        t = t.checked_add(jiff::SignedDuration::from_secs(1)).unwrap_or(t);
    }
    snapshot_name(t, tz)
}

/// The ddless command line equivalent to a copy, for the log (seed chunk 70).
fn ddless_command_line(o: &CopyOptions) -> String {
    let mut s = format!("ddless -s {}", o.source.display());
    if let Some(m) = &o.ddmap {
        s.push_str(&format!(" -m {}", m.display()));
    }
    s.push_str(&format!(" -t {}", o.target.display()));
    if let ChecksumMode::File(c) = &o.checksum {
        s.push_str(&format!(" -c {}", c.display()));
    }
    s.push_str(&format!(" -w {}", o.read.workers));
    s
}

/// Checks the archive volume's bytes against the source's checksum. Also
/// invalidates every record of the live checksum file that no longer
/// matches the archive volume (damage on the archive side), so the next
/// backup rewrites those segments. Returns whether source and archive agree.
fn integrity_check(
    ctx: &BackupContext<'_>,
    ws: &Workspace,
    src: &OpenedSource,
    data: &Path,
    scratch: &super::workspace::Scratch,
    opts: &BackupOptions,
    report: &mut BackupReport,
) -> anyhow::Result<bool> {
    let read = ReadOptions { direct_io: false, workers: opts.ddless_workers, read_rate_mb_s: None };
    let name = &report.archive_volume;
    // The archive volume as it is now.
    let archive_sums = scratch.file("archive.ddless");
    compute_checksums(
        &ChecksumOptions {
            source: VolumeSpec::Path(data.to_path_buf()),
            checksum: archive_sums.clone(),
            read: read.clone(),
        },
        ctx.progress,
    )
    .context("checksumming the archive volume")?;
    // The source: from the source side when it offers one, else a second read.
    let source_sums: PathBuf = match &src.prepared.checksum {
        Some(p) => {
            // It must come from the source: the archive's own checksum
            // files (live, history) would only compare the archive with
            // itself.
            let live = ws.checksum();
            let archive_dir = live.parent().and_then(|d| std::fs::canonicalize(d).ok());
            let theirs =
                std::fs::canonicalize(p).with_context(|| format!("the source's checksum file {}", p.display()))?;
            if archive_dir.is_some_and(|d| theirs.starts_with(d))
                || crate::shared::file_identity::identify(&theirs).ok()
                    == crate::shared::file_identity::identify(&live).ok()
            {
                bail!(
                    "the source's checksum file {} is one of the archive's own checksum files: an integrity check needs the source's",
                    p.display()
                );
            }
            ctx.log.line("backup", &format!("{name}: integrity: using the source's checksum file {}", p.display()));
            p.clone()
        }
        None => {
            let p = scratch.file("source.ddless");
            compute_checksums(
                &ChecksumOptions { source: src.volume_spec().clone(), checksum: p.clone(), read },
                ctx.progress,
            )
            .context("checksumming the source for the integrity check")?;
            p
        }
    };
    let vs_source = compare_files(&source_sums, &archive_sums, |_| {}).context("comparing checksums")?;
    // Records of the live file that do not describe the archive volume.
    let live = ws.checksum();
    let mut stale = Vec::new();
    let vs_live =
        compare_files(&live, &archive_sums, |i| stale.push(i)).context("comparing with the live checksum file")?;
    if !stale.is_empty() {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&live)
            .with_context(|| format!("opening {}", live.display()))?;
        let cf = ChecksumFile::new(f);
        let records = cf.records()?;
        for i in stale.iter().copied().filter(|&i| i < records) {
            cf.write_records(i, &[ChecksumRecord::INVALID])?;
        }
        cf.sync()?;
        ctx.log.error(
            "backup",
            &format!("{name}: {} segment(s) of the archive volume no longer match its checksum file (first: {:?}); their records were invalidated", vs_live.differing, vs_live.first),
        );
        report.archive_damage = Some(vs_live);
    }
    if vs_source.equal() && stale.is_empty() {
        report.integrity = "ok".into();
        ctx.log.line("backup", &format!("{name}: integrity check ok ({} segments)", vs_source.segments_a));
        Ok(true)
    } else {
        report.integrity = "mismatch".into();
        if !vs_source.equal() {
            ctx.log.error(
                "backup",
                &format!(
                    "{name}: integrity check: {} segment(s) differ between source and archive (first: {:?})",
                    vs_source.differing, vs_source.first
                ),
            );
        }
        report.integrity_mismatch = Some(vs_source);
        Ok(false)
    }
}

fn dry_run(
    ctx: &BackupContext<'_>,
    vol: &VolumeSettings,
    store: &dyn ArchiveStore,
    existing: Option<&super::store::VolumeInfo>,
    ws: Option<&Workspace>,
    report: &mut BackupReport,
) -> anyhow::Result<()> {
    let name = &vol.archive;
    report.status = "dry-run".into();
    let say = |m: String| ctx.log.line("backup", &format!("{name}: would {m}"));
    match existing {
        None => say(format!("create archive volume {name} on {}", store.describe())),
        Some(i) => {
            report.previous_size = Some(i.size);
            say(format!("update archive volume {name} ({} bytes)", i.size));
        }
    }
    match &vol.source {
        SourceSpec::Command { prepare, .. } => {
            report.read = "unknown".into();
            say(format!("run the source's prepare command {:?} (not run in a dry run)", prepare));
        }
        SourceSpec::Iscsi { url, ddmap, .. } => {
            // Logging in to a LUN is harmless, but the map's state and the
            // read plan are decided by a real run.
            report.read = "unknown".into();
            let map = ddmap.as_ref().map(|m| format!(" (ddmap {})", m.display())).unwrap_or_default();
            say(format!("read the LUN {}{map} with santools' initiator", source::protocol::redact_url(url)));
        }
        SourceSpec::Path { path, ddmap, state, .. } => {
            let size = source::readable_size(path, None)?;
            report.size = size;
            let st = match state {
                StateSpec::Unknown => ddmap.as_ref().map(|_| DdmapState::Unknown),
                StateSpec::Fixed(s) => Some(*s),
                StateSpec::File(_) => {
                    source::prepare(&vol.source, &vol.source_name, &ctx.settings.initiator)?.prepared.ddmap_state
                }
            };
            report.ddmap_state = st.map(|s| s.to_string());
            let facts = ArchiveFacts {
                no_checksum_file: ws.map(|w| !w.checksum().exists()).unwrap_or(true),
                marked_dirty: ws.and_then(|w| w.state().ok()).and_then(|s| s.dirty),
            };
            match read_plan(ddmap.is_some(), st, &facts) {
                ReadPlan::Full { reason } => {
                    report.read = "full".into();
                    say(format!("read all {size} bytes of {} ({reason})", path.display()));
                    report.read_reason = Some(reason);
                }
                ReadPlan::Map => {
                    report.read = "map".into();
                    say(format!(
                        "read only the segments {} flags",
                        ddmap.as_ref().map(|m| m.display().to_string()).unwrap_or_default()
                    ));
                }
            }
        }
    }
    let snaps: Vec<SnapshotName> = match existing {
        Some(_) => store.snapshots(&name.volume)?.into_iter().map(|s| s.name).collect(),
        None => Vec::new(),
    };
    let snap = free_snapshot_name((ctx.now)(), &ctx.settings.tz, &snaps);
    say(format!("take snapshot {name}@{snap}"));
    report.snapshot = None;
    Ok(())
}

/// Backs up several volumes, `workers` at a time, reports in input order.
pub fn backup_all(
    ctx: &BackupContext<'_>,
    vols: &[&VolumeSettings],
    opts: &BackupOptions,
    workers: usize,
) -> Vec<BackupReport> {
    let queue: Mutex<std::collections::VecDeque<(usize, &VolumeSettings)>> =
        Mutex::new(vols.iter().copied().enumerate().collect());
    let results: Mutex<Vec<Option<BackupReport>>> = Mutex::new(vec![None; vols.len()]);
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, vols.len().max(1)) {
            scope.spawn(|| loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some((i, v)) = next else { break };
                let r = backup_volume(ctx, v, opts);
                if let Ok(mut res) = results.lock() {
                    res[i] = Some(r);
                }
            });
        }
    });
    results.into_inner().unwrap_or_default().into_iter().flatten().collect()
}

/// A snapshot property key, for the CLI's listing.
pub fn snapshot_count_and_newest(
    store: &dyn ArchiveStore,
    vol: &VolumeSettings,
) -> Result<(usize, Option<String>), StoreError> {
    match store.volume(&vol.archive.volume)? {
        None => Ok((0, None)),
        Some(_) => {
            let snaps = store.snapshots(&vol.archive.volume)?;
            Ok((snaps.len(), snaps.last().map(|s| s.name.to_string())))
        }
    }
}

/// The checksum history of a volume (for tools that only read it).
pub fn history_of(store: &dyn ArchiveStore, vol: &super::names::VolumeName) -> Result<HistoryStore, StoreError> {
    let dir = store.checksum_dir(false)?;
    Ok(Workspace::new(dir, vol).history())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_move_on_when_taken() {
        let t: Timestamp = "2011-03-29T23:00:01Z".parse().unwrap();
        let tz = jiff::tz::TimeZone::UTC;
        let first = free_snapshot_name(t, &tz, &[]);
        assert_eq!(first.as_str(), "2011-03-29_23:00:01");
        let second = free_snapshot_name(t, &tz, std::slice::from_ref(&first));
        assert_eq!(second.as_str(), "2011-03-29_23:00:02");
    }
}
