//! The archive's reports: space per volume (`zfs-df`), the tree of pools,
//! volumes, snapshots and clones (`zfs-list`), one line per volume
//! (`zfs-zvols`) and the facts `archive-status` judges. Each works on every
//! backend through [`ArchiveStore`]; a figure a backend lacks is `None`
//! (shown as `-`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::names::{PoolName, VolumeRef};
use super::settings::ArchiveSettings;
use super::snapcheck::last_checked;
use super::status::VolumeFacts;
use super::store::{ArchiveStore, CloneInfo, SnapshotInfo, SpaceInfo, StoreError};

#[derive(Clone, Debug, Serialize)]
pub struct DfRow {
    /// `POOL/VOLUME`
    pub name: String,
    #[serde(flatten)]
    pub space: SpaceInfo,
}

#[derive(Clone, Debug, Serialize)]
pub struct SnapshotEntry {
    pub name: String,
    pub creation: i64,
    pub used: Option<u64>,
    pub holds: Vec<String>,
    pub clones: Vec<String>,
    /// santools' own properties (`<ns>:...`).
    pub properties: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VolumeEntry {
    pub name: String,
    pub size: u64,
    pub properties: BTreeMap<String, String>,
    pub snapshots: Vec<SnapshotEntry>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PoolEntry {
    pub name: String,
    pub backend: String,
    pub volumes: Vec<VolumeEntry>,
    pub clones: Vec<CloneInfo>,
    pub error: Option<String>,
}

/// One line of `zfs-zvols`.
#[derive(Clone, Debug, Serialize)]
pub struct ZvolRow {
    pub volume: String,
    pub size: u64,
    pub used: Option<u64>,
    pub snapshots: usize,
    pub oldest: Option<String>,
    pub newest: Option<String>,
    /// `ok`, `mismatch`, `nohistory` of the most recently verified snapshot.
    pub last_snapcheck: Option<String>,
    pub last_snapcheck_time: Option<i64>,
    pub schedule: Option<String>,
    pub source_volume: Option<String>,
    pub holds: usize,
    pub clones: usize,
}

fn ns_props(settings: &ArchiveSettings, props: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let prefix = format!("{}:", settings.ns.as_str());
    props.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The pools to report on: all configured, or the one asked for.
pub fn pools(settings: &ArchiveSettings, only: Option<&PoolName>) -> anyhow::Result<Vec<PoolName>> {
    match only {
        Some(p) if settings.pools.contains_key(p) => Ok(vec![p.clone()]),
        Some(p) => anyhow::bail!("pool {p} is not configured under [archive.pools]"),
        None => Ok(settings.pools.keys().cloned().collect()),
    }
}

fn store(settings: &ArchiveSettings, pool: &PoolName) -> Result<std::sync::Arc<dyn ArchiveStore>, StoreError> {
    settings.store(pool).ok_or_else(|| StoreError::NotFound { object: format!("pool {pool}") })
}

/// `zfs-df`: space per volume. Errors per pool are returned beside the rows.
pub fn df(settings: &ArchiveSettings, pools: &[PoolName]) -> (Vec<DfRow>, Vec<String>) {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for p in pools {
        let r = (|| -> Result<(), StoreError> {
            let s = store(settings, p)?;
            s.check()?;
            for v in s.volumes()? {
                rows.push(DfRow { name: format!("{p}/{v}"), space: s.space(&v)? });
            }
            Ok(())
        })();
        if let Err(e) = r {
            errors.push(format!("pool {p}: {e}"));
        }
    }
    (rows, errors)
}

fn snapshot_entry(settings: &ArchiveSettings, s: &SnapshotInfo) -> SnapshotEntry {
    SnapshotEntry {
        name: s.name.to_string(),
        creation: s.creation,
        used: s.used,
        holds: s.holds.clone(),
        clones: s.clones.clone(),
        properties: ns_props(settings, &s.properties),
    }
}

/// `zfs-list`: the tree of pools, volumes, snapshots and clones.
pub fn tree(settings: &ArchiveSettings, pools: &[PoolName]) -> Vec<PoolEntry> {
    pools
        .iter()
        .map(|p| {
            let mut entry = PoolEntry {
                name: p.to_string(),
                backend: String::new(),
                volumes: Vec::new(),
                clones: Vec::new(),
                error: None,
            };
            let r = (|| -> Result<(), StoreError> {
                let s = store(settings, p)?;
                entry.backend = s.describe();
                s.check()?;
                for v in s.volumes()? {
                    let info = s.volume(&v)?.ok_or_else(|| StoreError::NotFound { object: format!("{p}/{v}") })?;
                    let snaps = s.snapshots(&v)?;
                    entry.volumes.push(VolumeEntry {
                        name: format!("{p}/{v}"),
                        size: info.size,
                        properties: ns_props(settings, &info.properties),
                        snapshots: snaps.iter().map(|x| snapshot_entry(settings, x)).collect(),
                    });
                }
                entry.clones = s.clones()?;
                Ok(())
            })();
            if let Err(e) = r {
                entry.error = Some(e.to_string());
            }
            entry
        })
        .collect()
}

/// The most recent snapcheck of any snapshot: (epoch, result), and the
/// snapshots whose recorded result is a mismatch.
fn snapcheck_facts(settings: &ArchiveSettings, snaps: &[SnapshotInfo]) -> (Option<(i64, String)>, Vec<String>) {
    let key = settings.ns.prop("snapcheck");
    let mut last: Option<(i64, String)> = None;
    let mut mismatches = Vec::new();
    for s in snaps {
        let Some(v) = s.properties.get(key.as_str()) else { continue };
        let at = last_checked(Some(v));
        let result = v.split_once(':').map(|(_, r)| r.to_string()).unwrap_or_default();
        if result == "mismatch" {
            mismatches.push(format!("@{}", s.name));
        }
        if at > 0 && last.as_ref().map_or(true, |(t, _)| *t < at) {
            last = Some((at, result));
        }
    }
    (last, mismatches)
}

/// `zfs-zvols`: one row per archive volume.
pub fn zvols(settings: &ArchiveSettings, pools: &[PoolName]) -> (Vec<ZvolRow>, Vec<String>) {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for p in pools {
        let r = (|| -> Result<(), StoreError> {
            let s = store(settings, p)?;
            s.check()?;
            for v in s.volumes()? {
                let info = s.volume(&v)?.ok_or_else(|| StoreError::NotFound { object: format!("{p}/{v}") })?;
                let snaps = s.snapshots(&v)?;
                let (last, _) = snapcheck_facts(settings, &snaps);
                rows.push(ZvolRow {
                    volume: format!("{p}/{v}"),
                    size: info.size,
                    used: s.space(&v)?.used,
                    snapshots: snaps.len(),
                    oldest: snaps.first().map(|x| x.name.to_string()),
                    newest: snaps.last().map(|x| x.name.to_string()),
                    last_snapcheck: last.as_ref().map(|(_, r)| r.clone()),
                    last_snapcheck_time: last.as_ref().map(|(t, _)| *t),
                    schedule: info.properties.get(settings.ns.prop("snaprotate_schedule").as_str()).cloned(),
                    source_volume: info.properties.get(settings.ns.prop("source_volume").as_str()).cloned(),
                    holds: snaps.iter().filter(|x| x.held()).count(),
                    clones: snaps.iter().map(|x| x.clones.len()).sum(),
                });
            }
            Ok(())
        })();
        if let Err(e) = r {
            errors.push(format!("pool {p}: {e}"));
        }
    }
    (rows, errors)
}

/// The facts `archive-status` judges: every enabled configured volume, plus
/// any other archive volume found on the pools.
pub fn status_facts(settings: &ArchiveSettings) -> Vec<VolumeFacts> {
    let mut wanted: Vec<VolumeRef> = settings.volumes.iter().filter(|v| v.enabled).map(|v| v.archive.clone()).collect();
    let mut pool_errors: BTreeMap<PoolName, String> = BTreeMap::new();
    for p in settings.pools.keys() {
        let found = store(settings, p).and_then(|s| {
            s.check()?;
            s.volumes()
        });
        match found {
            Ok(vols) => {
                for v in vols {
                    let r = VolumeRef::new(p.clone(), v);
                    if !wanted.contains(&r) {
                        wanted.push(r);
                    }
                }
            }
            Err(e) => {
                pool_errors.insert(p.clone(), e.to_string());
            }
        }
    }
    let snap_time = settings.ns.prop("snap_time");
    wanted
        .into_iter()
        .map(|v| {
            let mut f = VolumeFacts { volume: v.to_string(), ..VolumeFacts::default() };
            if let Some(e) = pool_errors.get(&v.pool) {
                f.error = Some(format!("pool {}: {e}", v.pool));
                return f;
            }
            let r = (|| -> Result<(), StoreError> {
                let s = store(settings, &v.pool)?;
                if s.volume(&v.volume)?.is_none() {
                    return Ok(());
                }
                f.exists = true;
                let snaps = s.snapshots(&v.volume)?;
                f.snapshots = snaps.len();
                f.newest_snapshot = snaps
                    .iter()
                    .map(|x| x.properties.get(snap_time.as_str()).and_then(|t| t.parse().ok()).unwrap_or(x.creation))
                    .max();
                (f.last_snapcheck, f.mismatches) = snapcheck_facts(settings, &snaps);
                Ok(())
            })();
            if let Err(e) = r {
                f.error = Some(e.to_string());
            }
            f
        })
        .collect()
}
