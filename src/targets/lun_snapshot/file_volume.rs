//! File-backed LUNs on a reflink file system: the snapshot is a clone of
//! the volume file (atomic with respect to writes), exported read-only;
//! the clone of the last snapshot the archive stored is kept as the base,
//! and the change map is the difference of the two clones' layouts.
//!
//! Everything lives beside the volume, on its file system (clones cannot
//! cross file systems): `<dir>/.lun-snapshot/<file name>/` holds
//! `snapshot.img`, `base.img`, `changes.ddmap`, `state.json` and `lock`.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::changed::{changed_ranges, map_of};
use super::export::{self, export_iqn};
use super::state::{self, identity_text, Layout, Phase, VolumeRecord};
use super::{NodeOptions, Outcome, Prepared, Released};
use crate::archive::ddmap_state::DdmapState;
use crate::shared::atomic_file::{sync_parent_dir, write_atomic};
use crate::shared::change_map::words_for_volume;
use crate::shared::ddmap_file::{name_sum, Ddmap};
use crate::shared::file_identity::FileIdentity;
use crate::shared::reflink::{clone_file, extents};
use crate::targets::model::IoMode;

pub const DIR_NAME: &str = ".lun-snapshot";

/// A volume file, resolved.
struct Volume {
    path: PathBuf,
    file: File,
    identity: String,
    iqn: String,
    layout: Layout,
}

fn open_volume(opts: &NodeOptions, given: &Path) -> anyhow::Result<Volume> {
    let path = fs::canonicalize(given).with_context(|| format!("volume {}", given.display()))?;
    if path.components().any(|c| c.as_os_str() == DIR_NAME) {
        bail!("{} is inside a {DIR_NAME} directory (lun-snapshot's own files), not a volume", path.display());
    }
    let file = crate::shared::block_device::open_nonblocking(&path)
        .with_context(|| format!("opening volume {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("volume {}", path.display()))?;
    if !meta.is_file() {
        bail!("volume {} is not a regular file (LVM volumes are given as VG/LV)", path.display());
    }
    let name = path.file_name().context("volume has no file name")?.to_string_lossy().into_owned();
    let dir = path.parent().context("volume has no directory")?.join(DIR_NAME).join(&name);
    let iqn = export_iqn(&opts.export_prefix, &name, &path.to_string_lossy())?;
    Ok(Volume { identity: identity_text(&FileIdentity::of_metadata(&meta)), path, file, iqn, layout: Layout { dir } })
}

fn remove_if_exists(p: &Path) -> anyhow::Result<bool> {
    match fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", p.display())),
    }
}

/// Removes what an unreleased or crashed earlier `create` left (treated
/// as a failed backup: the base stays). Refused while the archive host
/// is still connected to the old export.
fn clean_stale(opts: &NodeOptions, v: &Volume, rec: Option<&VolumeRecord>) -> anyhow::Result<()> {
    let s = export::sessions(&opts.tgtadm, &v.iqn)?;
    if !s.is_empty() {
        bail!(
            "the previous snapshot of {} is still exported as {} with sessions from {}: a backup is reading it; run `lun-snapshot release` first",
            v.path.display(),
            v.iqn,
            s.iter().map(|(i, a)| format!("{i} ({a})")).collect::<Vec<_>>().join(", ")
        );
    }
    let removed = export::unexport(&opts.tgtadm, &v.iqn, &v.layout.snapshot())?;
    let had_snapshot = remove_if_exists(&v.layout.snapshot())?;
    remove_if_exists(&v.layout.dir.join("snapshot.img.tmp"))?;
    if removed || had_snapshot || rec.is_some_and(|r| r.phase == Phase::Exported) {
        tracing::warn!(
            "the previous snapshot of {} was never released: removed, its changes are kept for this one",
            v.path.display()
        );
    }
    Ok(())
}

fn clone_error(e: std::io::Error, v: &Volume) -> anyhow::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EXDEV) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::ENOTTY) => {
            " (the volume's file system cannot clone files: btrfs, or XFS with reflink, is needed)"
        }
        _ => "",
    };
    anyhow::anyhow!("cloning {}: {e}{hint}", v.path.display())
}

/// Removes the state directory (and `.lun-snapshot` above it) when this run
/// made them and was then refused: a volume whose file system cannot clone
/// must be left as it was found. A run waiting for the lock file removed
/// here is on the same file system and is refused the same way.
fn forget_new_dirs(v: &Volume, made_dir: bool, made_parent: bool) {
    if made_dir {
        let _ = fs::remove_file(v.layout.dir.join("lock"));
        let _ = fs::remove_dir(&v.layout.dir);
        if made_parent {
            if let Some(parent) = v.layout.dir.parent() {
                let _ = fs::remove_dir(parent);
            }
        }
    }
}

pub fn create(opts: &NodeOptions, given: &Path) -> anyhow::Result<Prepared> {
    let v = open_volume(opts, given)?;
    let made_parent = v.layout.dir.parent().is_some_and(|p| !p.exists());
    let made_dir = !v.layout.dir.exists();
    let _lock = v.layout.lock(opts.lock_wait, &v.path.display().to_string())?;
    let rec = state::load(&v.layout.record())?;
    clean_stale(opts, &v, rec.as_ref())?;

    let base = v.layout.base();
    let base_size = rec.as_ref().filter(|r| r.identity == v.identity).and_then(|r| r.base_size);
    let base_ok = base_size.is_some() && base.exists();
    if !base_ok && remove_if_exists(&base)? {
        tracing::warn!(
            "{}: the volume was replaced since its last snapshot: the old base is dropped",
            v.path.display()
        );
    }

    let tmp = v.layout.dir.join("snapshot.img.tmp");
    let snap = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    if let Err(e) = clone_file(&v.file, &snap) {
        let _ = fs::remove_file(&tmp);
        forget_new_dirs(&v, made_dir, made_parent);
        return Err(clone_error(e, &v));
    }
    snap.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
    fs::rename(&tmp, v.layout.snapshot()).with_context(|| format!("renaming {}", tmp.display()))?;
    sync_parent_dir(&v.layout.snapshot())?;
    let size = snap.metadata()?.len();

    let (ddmap, ddmap_state, changed) = if base_ok {
        match change_map(&base, &snap, size, &v.iqn) {
            Ok(map) => {
                let n = map.map.count_set();
                write_atomic(&v.layout.map(), &map.to_bytes()?)
                    .with_context(|| format!("writing {}", v.layout.map().display()))?;
                (Some(v.layout.map()), Some(DdmapState::Clean), Some(n))
            }
            Err(e) => {
                tracing::warn!("{}: no change map ({e:#}): the archive reads the whole snapshot", v.path.display());
                remove_if_exists(&v.layout.map())?;
                (None, None, None)
            }
        }
    } else {
        remove_if_exists(&v.layout.map())?;
        (None, None, None)
    };

    if let Err(e) = export::export(&opts.tgtadm, &v.iqn, &v.layout.snapshot(), IoMode::Fileio, &opts.initiator) {
        let _ = fs::remove_file(v.layout.snapshot());
        return Err(e);
    }
    state::save(
        &v.layout.record(),
        &VolumeRecord {
            phase: Phase::Exported,
            volume: v.path.display().to_string(),
            identity: v.identity.clone(),
            iqn: v.iqn.clone(),
            snapshot: v.layout.snapshot(),
            size,
            created: state::now(),
            base_size: if base_ok { base_size } else { None },
        },
    )?;
    let url = opts.portal.as_ref().map(|p| format!("iscsi://{p}/{}/1", v.iqn));
    Ok(Prepared {
        path: url.is_none().then(|| v.layout.snapshot()),
        url,
        snapshot: v.layout.snapshot(),
        size,
        ddmap,
        ddmap_state,
        token: v.iqn.clone(),
        iqn: v.iqn,
        kind: "file".into(),
        changed_segments: changed,
    })
}

fn change_map(base: &Path, snap: &File, size: u64, iqn: &str) -> anyhow::Result<Ddmap> {
    let b = File::open(base).with_context(|| format!("opening {}", base.display()))?;
    let base_len = b.metadata()?.len();
    let be = extents(&b).with_context(|| format!("listing the extents of {}", base.display()))?;
    let ne = extents(snap).context("listing the extents of the snapshot")?;
    let ranges = changed_ranges(&be, base_len, &ne, size);
    let words = usize::try_from(words_for_volume(size))?;
    Ok(Ddmap { name_sum: name_sum(iqn.as_bytes()), map: map_of(&ranges, words) })
}

pub fn release(opts: &NodeOptions, given: &Path, outcome: Outcome) -> anyhow::Result<Released> {
    let v = open_volume(opts, given)?;
    let _lock = v.layout.lock(opts.lock_wait, &v.path.display().to_string())?;
    let rec = state::load(&v.layout.record())?;
    let export_removed = export::unexport(&opts.tgtadm, &v.iqn, &v.layout.snapshot())?;
    let snapshot = v.layout.snapshot();
    let exported = rec.as_ref().filter(|r| r.phase == Phase::Exported);
    let mut consumed = false;
    let mut base_size = rec.as_ref().and_then(|r| r.base_size);
    let mut identity = rec.as_ref().map(|r| r.identity.clone()).unwrap_or_else(|| v.identity.clone());
    let snapshot_removed = if !snapshot.exists() {
        false
    } else if let (Outcome::Success, Some(r)) = (outcome, exported) {
        // The archive stored this snapshot: it is the base from now on.
        fs::rename(&snapshot, v.layout.base())
            .with_context(|| format!("keeping {} as the base", snapshot.display()))?;
        sync_parent_dir(&snapshot)?;
        consumed = true;
        base_size = Some(r.size);
        identity = r.identity.clone();
        true
    } else {
        if outcome == Outcome::Success {
            tracing::warn!("{}: no record of this snapshot: removed, its changes are kept", v.path.display());
        }
        remove_if_exists(&snapshot)?;
        true
    };
    remove_if_exists(&v.layout.map())?;
    if rec.is_some() || consumed {
        state::save(
            &v.layout.record(),
            &VolumeRecord {
                phase: Phase::Released,
                volume: v.path.display().to_string(),
                identity,
                iqn: v.iqn.clone(),
                snapshot: snapshot.clone(),
                size: rec.as_ref().map(|r| r.size).unwrap_or(0),
                created: rec.as_ref().map(|r| r.created).unwrap_or(0),
                base_size,
            },
        )?;
    }
    Ok(Released {
        volume: v.path.display().to_string(),
        outcome,
        export_removed,
        snapshot_removed,
        changes_consumed: consumed,
    })
}

/// The merged map of the current snapshot (for `lun-snapshot map`).
pub fn map_path(opts: &NodeOptions, given: &Path) -> anyhow::Result<PathBuf> {
    let v = open_volume(opts, given)?;
    Ok(v.layout.map())
}
