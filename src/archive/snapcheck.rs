//! `snapcheck`: verify snapshots against their checksum history (seed
//! chunks 177, 189). Verification recomputes the ddless checksum of every
//! segment of the snapshot's bytes and compares it with the checksum file
//! the snapshot had when it was taken. The result is recorded on the
//! snapshot as `<ns>:snapcheck = <epoch>:ok|mismatch|nohistory`.
//!
//! The daily job (`-d`) verifies the N least recently verified snapshots of
//! all volumes, so every snapshot is verified in turn; `-o` removes
//! orphaned history (deltas of snapshots that are gone), never a live
//! checksum file.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde::Serialize;

use super::history::HistoryError;
use super::job_log::JobLog;
use super::names::{SnapshotName, VolumeName, VolumeRef};
use super::settings::ArchiveSettings;
use super::store::{ArchiveStore, StoreError};
use super::volume_lock::{lock_volume, VolumeLockError};
use super::workspace::Workspace;
use crate::ddless::{verify, ReadOptions, VerifyOptions};
use crate::progress::Progress;
use crate::volume::VolumeSpec;

#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub snapshot: String,
    /// "ok", "mismatch", "nohistory", "skipped" or "error".
    pub result: String,
    pub segments: u64,
    pub segments_differing: u64,
    pub first_differing: Vec<u64>,
    /// History files damaged, unreadable, or other details.
    pub problems: Vec<String>,
    pub history_files: Vec<PathBuf>,
    pub elapsed_seconds: f64,
}

impl CheckResult {
    fn new(snapshot: String) -> Self {
        CheckResult {
            snapshot,
            result: String::new(),
            segments: 0,
            segments_differing: 0,
            first_differing: Vec::new(),
            problems: Vec::new(),
            history_files: Vec::new(),
            elapsed_seconds: 0.0,
        }
    }
}

pub struct SnapcheckContext<'a> {
    pub settings: &'a ArchiveSettings,
    pub log: &'a JobLog,
    pub progress: &'a dyn Progress,
    pub lock_wait: Duration,
    pub workers: std::num::NonZeroUsize,
}

fn store_for(s: &ArchiveSettings, v: &VolumeRef) -> anyhow::Result<Arc<dyn ArchiveStore>> {
    s.store(&v.pool).ok_or_else(|| anyhow!("pool {} is not configured under [archive.pools]", v.pool))
}

/// Verifies one snapshot (taking the volume lock) and records the result.
pub fn check_snapshot(ctx: &SnapcheckContext<'_>, vol: &VolumeRef, snap: &SnapshotName) -> CheckResult {
    let started = Instant::now();
    let mut r = CheckResult::new(format!("{vol}@{snap}"));
    let lock = match lock_volume(&ctx.settings.lock_dir, vol, "snapcheck", ctx.lock_wait) {
        Ok(l) => l,
        Err(e @ VolumeLockError::Busy { .. }) => {
            r.result = "skipped".into();
            r.problems.push(e.to_string());
            ctx.log.warn("snapcheck", &format!("SKIPPED {}: {e}", r.snapshot));
            return r;
        }
        Err(e) => {
            r.result = "error".into();
            r.problems.push(e.to_string());
            return r;
        }
    };
    if let Err(e) = check_locked(ctx, vol, snap, &mut r) {
        r.result = "error".into();
        r.problems.push(format!("{e:#}"));
        ctx.log.error("snapcheck", &format!("{}: {e:#}", r.snapshot));
    }
    drop(lock);
    r.elapsed_seconds = started.elapsed().as_secs_f64();
    r
}

fn check_locked(
    ctx: &SnapcheckContext<'_>,
    vol: &VolumeRef,
    snap: &SnapshotName,
    r: &mut CheckResult,
) -> anyhow::Result<()> {
    let store = store_for(ctx.settings, vol)?;
    if !store.snapshots(&vol.volume)?.iter().any(|s| &s.name == snap) {
        return Err(StoreError::NotFound { object: r.snapshot.clone() }.into());
    }
    let ws = Workspace::new(store.checksum_dir(false)?, &vol.volume);
    let scratch = ws.scratch()?;
    let expected = scratch.file("history.ddless");
    let rec = match ws.history().reconstruct(snap.as_str(), &expected) {
        Ok(rec) => rec,
        Err(HistoryError::NoHistory { reason, .. }) => {
            r.result = "nohistory".into();
            r.problems.push(reason.clone());
            ctx.log.warn("snapcheck", &format!("nohistory {}: {reason}", r.snapshot));
            record(ctx, store.as_ref(), vol, snap, "nohistory");
            return Ok(());
        }
        Err(e) => {
            r.problems.push(e.to_string());
            r.result = "mismatch".into();
            ctx.log.error("snapcheck", &format!("mismatch {}: its checksum history is damaged: {e}", r.snapshot));
            record(ctx, store.as_ref(), vol, snap, "mismatch");
            return Ok(());
        }
    };
    r.history_files = rec.files.clone();
    r.problems.extend(rec.problems.iter().cloned());
    let view = store.open_snapshot(&vol.volume, snap)?;
    let expected_segments = view.size.div_ceil(crate::shared::segment::SEGMENT_SIZE);
    r.segments = expected_segments;
    if rec.segments != expected_segments {
        r.result = "mismatch".into();
        r.problems.push(format!(
            "the snapshot has {} bytes ({expected_segments} segments) but its checksum history has {} segments",
            view.size, rec.segments
        ));
    } else {
        let report = verify(
            &VerifyOptions {
                source: VolumeSpec::Path(view.data_path.clone()),
                checksum: expected.clone(),
                read: ReadOptions { direct_io: false, workers: ctx.workers, read_rate_mb_s: None },
            },
            ctx.progress,
        )?;
        r.segments_differing = report.segments_differing;
        r.first_differing = report.mismatches.iter().flat_map(|m| m.first_segment..=m.last_segment).take(10).collect();
        r.result = if report.matches() && rec.problems.is_empty() { "ok" } else { "mismatch" }.into();
    }
    drop(view);
    let line = match r.result.as_str() {
        "ok" => format!("ok {} ({} segments)", r.snapshot, r.segments),
        _ => {
            let mut l = format!("mismatch {}: {} of {} segments differ", r.snapshot, r.segments_differing, r.segments);
            if !r.first_differing.is_empty() {
                l.push_str(&format!(
                    ", first: {}",
                    r.first_differing.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                ));
            }
            if !r.problems.is_empty() {
                l.push_str(&format!("; {}", r.problems.join("; ")));
            }
            l
        }
    };
    if r.result == "ok" {
        ctx.log.line("snapcheck", &line);
    } else {
        ctx.log.error("snapcheck", &line);
    }
    let result = r.result.clone();
    record(ctx, store.as_ref(), vol, snap, &result);
    Ok(())
}

/// Writes `<ns>:snapcheck` on the snapshot (a failure is only a warning:
/// the verification itself has been reported).
fn record(ctx: &SnapcheckContext<'_>, store: &dyn ArchiveStore, vol: &VolumeRef, snap: &SnapshotName, result: &str) {
    let value = format!("{}:{result}", jiff::Timestamp::now().as_second());
    if let Err(e) = store.set_property(&vol.volume, Some(snap), &ctx.settings.ns.prop("snapcheck"), &value) {
        ctx.log.warn("snapcheck", &format!("could not record the result on {vol}@{snap}: {e}"));
    }
}

/// A snapshot and when it was last verified (0: never).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub volume: VolumeRef,
    pub snapshot: SnapshotName,
    pub last_checked: i64,
    pub creation: i64,
}

/// The `<epoch>` of a `<ns>:snapcheck` value (0 when absent or garbage).
pub fn last_checked(value: Option<&String>) -> i64 {
    value.and_then(|v| v.split(':').next()).and_then(|e| e.parse::<i64>().ok()).filter(|e| *e >= 0).unwrap_or(0)
}

/// The daily job's choice: least recently verified first, then oldest.
pub fn choose(mut all: Vec<Candidate>, count: usize) -> Vec<Candidate> {
    all.sort_by(|a, b| {
        (a.last_checked, a.creation, &a.volume, &a.snapshot).cmp(&(b.last_checked, b.creation, &b.volume, &b.snapshot))
    });
    all.truncate(count);
    all
}

/// Every archive volume on every configured pool.
pub fn all_volumes(settings: &ArchiveSettings) -> anyhow::Result<Vec<VolumeRef>> {
    let mut out = Vec::new();
    for pool in settings.pools.keys() {
        let store = settings.store(pool).ok_or_else(|| anyhow!("pool {pool} vanished"))?;
        store.check()?;
        for v in store.volumes()? {
            out.push(VolumeRef::new(pool.clone(), v));
        }
    }
    Ok(out)
}

/// Every snapshot of every archive volume, and the volumes whose
/// snapshots could not be listed (one damaged volume must not stop the
/// daily job for the others).
pub fn candidates(settings: &ArchiveSettings) -> anyhow::Result<(Vec<Candidate>, Vec<String>)> {
    let key = settings.ns.prop("snapcheck");
    let mut all = Vec::new();
    let mut failed = Vec::new();
    for v in all_volumes(settings)? {
        let store = store_for(settings, &v)?;
        let snaps = match store.snapshots(&v.volume) {
            Ok(s) => s,
            Err(e) => {
                failed.push(format!("{v}: {e}"));
                continue;
            }
        };
        for s in snaps {
            all.push(Candidate {
                volume: v.clone(),
                last_checked: last_checked(s.properties.get(key.as_str())),
                creation: s.creation,
                snapshot: s.name,
            });
        }
    }
    Ok((all, failed))
}

#[derive(Clone, Debug, Serialize)]
pub struct OrphanReport {
    pub volume: String,
    pub removed: Vec<PathBuf>,
    pub error: Option<String>,
}

/// `-o`: merges away the history of snapshots that are gone.
pub fn remove_orphans(ctx: &SnapcheckContext<'_>, vol: &VolumeRef) -> OrphanReport {
    let mut rep = OrphanReport { volume: vol.to_string(), removed: Vec::new(), error: None };
    let run = || -> anyhow::Result<Vec<PathBuf>> {
        let _lock = lock_volume(&ctx.settings.lock_dir, vol, "snapcheck -o", ctx.lock_wait)?;
        let store = store_for(ctx.settings, vol)?;
        let dir = match store.checksum_dir(false) {
            Ok(d) => d,
            Err(StoreError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let existing: BTreeSet<String> =
            store.snapshots(&vol.volume)?.into_iter().map(|s| s.name.to_string()).collect();
        Ok(Workspace::new(dir, &vol.volume).history().remove_orphans(&existing)?)
    };
    match run() {
        Ok(removed) => {
            for p in &removed {
                ctx.log.line("snapcheck", &format!("{vol}: removed orphaned checksum history {}", p.display()));
            }
            rep.removed = removed;
        }
        Err(e) => {
            ctx.log.error("snapcheck", &format!("{vol}: {e:#}"));
            rep.error = Some(format!("{e:#}"));
        }
    }
    rep
}

/// Archive volumes whose history directory exists although the volume is
/// gone: their history is orphaned too.
pub fn volumes_with_history(store: &dyn ArchiveStore) -> Vec<VolumeName> {
    let Ok(dir) = store.checksum_dir(false) else { return Vec::new() };
    let Ok(rd) = std::fs::read_dir(dir.join("history")) else { return Vec::new() };
    rd.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| VolumeName::new(&format!("{n}_bk")).ok())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::names::PoolName;

    #[test]
    fn least_recently_checked_first() {
        let v = |n: &str| VolumeRef::new(PoolName::new("tank").unwrap(), VolumeName::new(n).unwrap());
        let c = |vol: &str, s: &str, last: i64, created: i64| Candidate {
            volume: v(vol),
            snapshot: SnapshotName::new(s).unwrap(),
            last_checked: last,
            creation: created,
        };
        let all = vec![c("a_bk", "s1", 100, 1), c("a_bk", "s2", 0, 2), c("b_bk", "s1", 50, 1), c("b_bk", "s2", 0, 1)];
        let picked: Vec<String> = choose(all, 3).iter().map(|c| format!("{}@{}", c.volume, c.snapshot)).collect();
        assert_eq!(picked, vec!["tank/b_bk@s2", "tank/a_bk@s2", "tank/b_bk@s1"]);
        assert_eq!(last_checked(Some(&"1700000000:ok".to_string())), 1_700_000_000);
        assert_eq!(last_checked(Some(&"garbage".to_string())), 0);
        assert_eq!(last_checked(None), 0);
    }
}
