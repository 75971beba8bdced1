//! Rotation's executor: plans each volume with [`super::rotate::plan`] and
//! carries the plan out. It only carries out: the snapshots to delete go
//! oldest first, each destroy re-checks holds and clones itself (the
//! backend refuses atomically on ZFS, santools checks on btrfs and dir),
//! the volume lock is held throughout, a failed destroy is reported and the
//! run goes on. Afterwards the checksum history of the deleted snapshots is
//! merged away ([`super::history::HistoryStore::remove_orphans`]), so the
//! older snapshots stay verifiable without waiting for `snapcheck -o`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::job_log::JobLog;
use super::names::{SnapshotName, VolumeRef};
use super::rotate::{plan, refuses_to_delete_all, Action, Candidate, Freq, Plan, Rule, Schedule, Window};
use super::settings::ArchiveSettings;
use super::snapshot_time::parse_time_zone;
use super::store::{ArchiveStore, SnapshotInfo, StoreError};
use super::volume_lock::{lock_volume, VolumeLockError};
use super::workspace::Workspace;
use crate::config::snaprotate::SnaprotateConfig;

/// Resolves `[snaprotate]`: each schedule, or why it cannot be used (the
/// volumes that name it are skipped with that error).
pub fn schedules(c: &SnaprotateConfig, settings: &ArchiveSettings) -> BTreeMap<String, Result<Schedule, String>> {
    c.schedules
        .iter()
        .map(|(name, sc)| {
            let key = format!("snaprotate.schedules.{name}");
            let resolved = (|| {
                let tz = match &sc.timezone {
                    Some(t) => parse_time_zone(t).map_err(|e| format!("{key}.timezone: {e}"))?,
                    None => settings.tz.clone(),
                };
                let mut rules = Vec::new();
                for (i, r) in sc.rules.iter().enumerate() {
                    let freq: Freq = r.freq.parse().map_err(|e| format!("{key}.rules[{i}].freq: {e}"))?;
                    super::names::check_property_value(&r.name).map_err(|e| format!("{key}.rules[{i}].name: {e}"))?;
                    let duration =
                        u32::try_from(r.duration).map_err(|_| format!("{key}.rules[{i}].duration: too large"))?;
                    rules.push(Rule { name: r.name.clone(), freq, duration });
                }
                let keep_last = usize::try_from(sc.keep_last).unwrap_or(usize::MAX);
                let s = Schedule { name: name.clone(), rules, keep_last, tz };
                s.check().map_err(|e| format!("{key}: {e}"))?;
                Ok(s)
            })();
            (name.clone(), resolved)
        })
        .collect()
}

pub struct RotateContext<'a> {
    pub settings: &'a ArchiveSettings,
    pub schedules: &'a BTreeMap<String, Result<Schedule, String>>,
    pub log: &'a JobLog,
    pub now: Timestamp,
    pub dry_run: bool,
    pub lock_wait: Duration,
}

#[derive(Clone, Debug, Serialize)]
pub struct DecisionReport {
    /// keep, delete or protect (what the plan says).
    pub action: Action,
    /// `POOL/VOLUME@SNAPSHOT`
    pub snapshot: String,
    pub reason: String,
    /// delete: true once destroyed (false in a dry run or when it failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub keep: usize,
    pub delete: usize,
    pub protect: usize,
    pub deleted: usize,
    pub failed: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct VolumeRotation {
    pub volume: String,
    pub schedule: Option<String>,
    pub dry_run: bool,
    pub anchor: Option<String>,
    pub windows: Vec<Window>,
    pub decisions: Vec<DecisionReport>,
    pub totals: Totals,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

impl VolumeRotation {
    fn new(volume: &VolumeRef, dry_run: bool) -> Self {
        VolumeRotation {
            volume: volume.to_string(),
            schedule: None,
            dry_run,
            anchor: None,
            windows: Vec::new(),
            decisions: Vec::new(),
            totals: Totals::default(),
            warnings: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub fn failed(&self) -> bool {
        !self.errors.is_empty() || self.totals.failed > 0
    }
}

/// The protections a snapshot carries by itself: holds (naming the holder)
/// and clones.
pub fn protections(s: &SnapshotInfo) -> Vec<String> {
    let mut p = Vec::new();
    if !s.holds.is_empty() {
        let replication = s.holds.iter().any(|t| t.starts_with("santools-copy-"));
        p.push(format!(
            "held by {}{}",
            s.holds.join(", "),
            if replication { " (a replication's incremental base)" } else { "" }
        ));
    }
    if !s.clones.is_empty() {
        p.push(format!("has clones {}", s.clones.join(", ")));
    }
    p
}

/// Rotates one archive volume.
pub fn rotate_volume(ctx: &RotateContext<'_>, vol: &VolumeRef) -> VolumeRotation {
    let mut rep = VolumeRotation::new(vol, ctx.dry_run);
    if let Err(e) = rotate_inner(ctx, vol, &mut rep) {
        let msg = format!("{e:#}");
        ctx.log.error("snaprotate", &format!("{vol}: {msg}"));
        rep.errors.push(msg);
    }
    rep
}

fn rotate_inner(ctx: &RotateContext<'_>, vol: &VolumeRef, rep: &mut VolumeRotation) -> anyhow::Result<()> {
    let store = ctx
        .settings
        .store(&vol.pool)
        .ok_or_else(|| anyhow::anyhow!("pool {} is not configured under [archive.pools]", vol.pool))?;
    let info = store.volume(&vol.volume)?.ok_or_else(|| StoreError::NotFound { object: vol.to_string() })?;
    let key = ctx.settings.ns.prop("snaprotate_schedule");
    let sched_name = info.properties.get(key.as_str()).cloned().ok_or_else(|| {
        anyhow::anyhow!("{vol} has no {key} property: it is not rotated (set it with zfs-customprop-set)")
    })?;
    rep.schedule = Some(sched_name.clone());
    let schedule = match ctx.schedules.get(&sched_name) {
        Some(Ok(s)) => s,
        Some(Err(e)) => anyhow::bail!("schedule {sched_name} is refused: {e}"),
        None => {
            let known: Vec<&str> = ctx.schedules.keys().map(String::as_str).collect();
            anyhow::bail!(
                "schedule {sched_name} (from {key}) is not configured under [snaprotate.schedules] (known: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )
        }
    };
    // The lock keeps backup, restore and snapcheck of this volume away
    // while snapshots go; when another run holds it, nothing is deleted and
    // the plan says why.
    let mut lock_holder = None;
    let lock = if ctx.dry_run {
        None
    } else {
        match lock_volume(&ctx.settings.lock_dir, vol, "snaprotate", ctx.lock_wait) {
            Ok(l) => Some(l),
            Err(e @ VolumeLockError::Busy { .. }) => {
                lock_holder = Some(e.to_string());
                None
            }
            Err(e) => return Err(e.into()),
        }
    };
    let rule_key = ctx.settings.ns.prop("snaprotate_rule");
    let snaps = store.snapshots(&vol.volume)?;
    let candidates: Vec<Candidate> = snaps
        .iter()
        .map(|s| {
            let mut p = protections(s);
            if let Some(h) = &lock_holder {
                p.push(format!("volume in use: {h}"));
            }
            Candidate {
                name: s.name.clone(),
                current_rule: s.properties.get(rule_key.as_str()).cloned(),
                protections: p,
            }
        })
        .collect();
    let mut plan: Plan = plan(&candidates, schedule, ctx.now)?;
    rep.anchor = plan.anchor.map(|t| t.to_string());
    rep.windows = plan.windows.clone();
    for w in &plan.warnings {
        ctx.log.warn("snaprotate", &format!("{vol}: {w}"));
        rep.warnings.push(w.clone());
    }
    if let Some(h) = &lock_holder {
        rep.warnings.push(format!("nothing deleted: {h}"));
    }
    let mut results: BTreeMap<SnapshotName, (Option<bool>, Option<String>)> = BTreeMap::new();
    if !ctx.dry_run && lock.is_some() {
        apply(ctx, store.as_ref(), vol, &mut plan, &rule_key, &mut results, rep);
        refuses_to_delete_all(&plan, &schedule.name)?;
    }
    for d in &plan.decisions {
        let (deleted, error) = results.remove(&d.snapshot).unwrap_or((None, None));
        let deleted = if d.action == Action::Delete { Some(deleted.unwrap_or(false)) } else { None };
        match d.action {
            Action::Keep => rep.totals.keep += 1,
            Action::Delete => rep.totals.delete += 1,
            Action::Protect => rep.totals.protect += 1,
        }
        if deleted == Some(true) {
            rep.totals.deleted += 1;
        }
        if error.is_some() {
            rep.totals.failed += 1;
        }
        rep.decisions.push(DecisionReport {
            action: d.action,
            snapshot: format!("{vol}@{}", d.snapshot),
            reason: d.reason.clone(),
            deleted,
            error,
        });
    }
    let verb = if ctx.dry_run { "would delete" } else { "deleted" };
    ctx.log.line(
        "snaprotate",
        &format!(
            "{vol}: schedule {}: {} kept, {} protected, {verb} {}{}",
            schedule.name,
            rep.totals.keep,
            rep.totals.protect,
            if ctx.dry_run { rep.totals.delete } else { rep.totals.deleted },
            if rep.totals.failed > 0 { format!(", {} failed", rep.totals.failed) } else { String::new() }
        ),
    );
    drop(lock);
    Ok(())
}

fn apply(
    ctx: &RotateContext<'_>,
    store: &dyn ArchiveStore,
    vol: &VolumeRef,
    plan: &mut Plan,
    rule_key: &super::names::PropertyName,
    results: &mut BTreeMap<SnapshotName, (Option<bool>, Option<String>)>,
    rep: &mut VolumeRotation,
) {
    for d in plan.decisions.iter().filter(|d| d.action == Action::Keep) {
        if let Some(rule) = &d.set_rule {
            if let Err(e) = store.set_property(&vol.volume, Some(&d.snapshot), rule_key, rule) {
                // The keep stands; only the label is missing.
                let msg = format!("{vol}@{}: could not record {rule_key}={rule}: {e}", d.snapshot);
                ctx.log.warn("snaprotate", &msg);
                rep.warnings.push(msg);
            }
        }
    }
    let order: Vec<SnapshotName> = plan.deletions().iter().map(|d| d.snapshot.clone()).collect();
    let mut gone = false;
    for snap in order {
        let Some(d) = plan.decisions.iter_mut().find(|d| d.snapshot == snap) else { continue };
        match store.destroy_snapshot(&vol.volume, &snap) {
            Ok(()) => {
                ctx.log.line("snaprotate", &format!("deleted {vol}@{snap} ({})", d.reason));
                results.insert(snap, (Some(true), None));
                gone = true;
            }
            // Held or cloned since the plan was made: it stays, and says why.
            Err(StoreError::Held { tags, .. }) => {
                d.action = Action::Protect;
                d.reason = format!("held by {}", tags.join(", "));
                ctx.log.warn("snaprotate", &format!("kept {vol}@{snap}: {}", d.reason));
            }
            Err(StoreError::HasClones { clones, .. }) => {
                d.action = Action::Protect;
                d.reason = format!("has clones {}", clones.join(", "));
                ctx.log.warn("snaprotate", &format!("kept {vol}@{snap}: {}", d.reason));
            }
            Err(StoreError::NotFound { .. }) => {
                // Someone else removed it meanwhile: the goal is reached.
                results.insert(snap, (Some(true), None));
                gone = true;
            }
            Err(e) => {
                ctx.log.error("snaprotate", &format!("could not delete {vol}@{snap}: {e}"));
                results.insert(snap, (Some(false), Some(e.to_string())));
            }
        }
    }
    if gone {
        merge_history(ctx, store, vol, rep);
    }
}

/// Merges the checksum history of deleted snapshots into their
/// predecessors. A failure is a warning: `snapcheck -o` retries it.
fn merge_history(ctx: &RotateContext<'_>, store: &dyn ArchiveStore, vol: &VolumeRef, rep: &mut VolumeRotation) {
    let run = || -> anyhow::Result<usize> {
        let dir = match store.checksum_dir(false) {
            Ok(d) => d,
            Err(StoreError::NotFound { .. }) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let existing: BTreeSet<String> =
            store.snapshots(&vol.volume)?.into_iter().map(|s| s.name.to_string()).collect();
        Ok(Workspace::new(dir, &vol.volume).history().remove_orphans(&existing)?.len())
    };
    match run() {
        Ok(0) => {}
        Ok(n) => ctx.log.line("snaprotate", &format!("{vol}: merged the checksum history of {n} deleted snapshot(s)")),
        Err(e) => {
            let msg = format!("{vol}: checksum history not merged ({e:#}); snapcheck -o will retry");
            ctx.log.warn("snaprotate", &msg);
            rep.warnings.push(msg);
        }
    }
}

/// The volumes `-a` rotates: every archive volume on every configured pool
/// that carries `<ns>:snaprotate_schedule`.
pub fn scheduled_volumes(settings: &ArchiveSettings) -> anyhow::Result<Vec<VolumeRef>> {
    let key = settings.ns.prop("snaprotate_schedule");
    let mut out = Vec::new();
    for pool in settings.pools.keys() {
        let store = settings.store(pool).ok_or_else(|| anyhow::anyhow!("pool {pool} vanished"))?;
        store.check()?;
        for v in store.volumes()? {
            if let Some(info) = store.volume(&v)? {
                if info.properties.contains_key(key.as_str()) {
                    out.push(VolumeRef::new(pool.clone(), v));
                }
            }
        }
    }
    Ok(out)
}
