//! Properties of volumes and snapshots on backends without user properties
//! (btrfs, dir), as small JSON files.
//!
//! A snapshot's properties at creation are embedded in the snapshot itself
//! (`.santools-snapshot.json` inside it), so it exists with them or not at
//! all. Later changes (a snapcheck result) go to an overlay file beside the
//! snapshot, `<snap>.props.json`, which names the identity (inode and
//! birth time) of the snapshot it belongs to: a snapshot destroyed and
//! re-created under the same name does not inherit it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::shared::atomic_file::write_atomic;

/// The embedded file's name inside a snapshot (and, just before a btrfs
/// snapshot, inside the volume).
pub const EMBEDDED: &str = ".santools-snapshot.json";
/// A volume's own properties.
pub const VOLUME_PROPS: &str = "properties.json";
const MAX_JSON: u64 = 1 << 20;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Embedded {
    pub creation: i64,
    pub properties: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    pub identity: String,
    pub properties: BTreeMap<String, String>,
    #[serde(default)]
    pub holds: BTreeSet<String>,
    /// Embedded properties removed later (the embedded file of a read-only
    /// snapshot cannot change).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub removed: BTreeSet<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeProps {
    pub properties: BTreeMap<String, String>,
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, StoreError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::Io { what: "reading", path: path.to_path_buf(), cause: e }),
    };
    if meta.len() > MAX_JSON {
        return Err(StoreError::Parse { what: path.display().to_string(), problem: "larger than 1 MiB".into() });
    }
    let bytes = fs::read(path).map_err(StoreError::io("reading", path))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::Parse { what: path.display().to_string(), problem: e.to_string() })
}

/// Atomic but not synced (see the btrfs snapshot for why that is enough there).
pub fn write_json_unsynced<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    use std::io::Write;
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Invalid(e.to_string()))?;
    bytes.push(b'\n');
    let f = crate::shared::atomic_file::AtomicFile::create(path).map_err(StoreError::io("writing", path))?;
    f.file().write_all(&bytes).map_err(StoreError::io("writing", path))?;
    f.commit_unsynced().map_err(StoreError::io("writing", path))
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Invalid(e.to_string()))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(StoreError::io("writing", path))
}

/// Identity of a snapshot directory: inode and birth time (a btrfs
/// subvolume's root is always inode 256; its birth time tells them apart).
pub fn identity(dir: &Path) -> Result<String, StoreError> {
    let m = fs::metadata(dir).map_err(StoreError::io("reading", dir))?;
    let born =
        m.created().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
    // Not the device number: btrfs gives each subvolume an anonymous one
    // that can change across mounts.
    Ok(format!("{}:{born}", m.ino()))
}

pub fn overlay_path(snapshot_dir: &Path) -> PathBuf {
    let mut p = snapshot_dir.as_os_str().to_owned();
    p.push(".props.json");
    PathBuf::from(p)
}

/// Properties of a snapshot: embedded, then the overlay if it belongs to
/// this very snapshot.
pub fn snapshot_props(snapshot_dir: &Path) -> Result<(Embedded, Overlay), StoreError> {
    let embedded: Embedded = read_json(&snapshot_dir.join(EMBEDDED))?.unwrap_or_default();
    let id = identity(snapshot_dir)?;
    // A damaged overlay loses only later property changes (a snapcheck
    // result), never the snapshot: warn and go on without it.
    let overlay = match read_json::<Overlay>(&overlay_path(snapshot_dir)) {
        Ok(Some(o)) if o.identity == id => o,
        Ok(_) => Overlay { identity: id, ..Overlay::default() },
        Err(e) => {
            tracing::warn!("ignoring {}: {e}", overlay_path(snapshot_dir).display());
            Overlay { identity: id, ..Overlay::default() }
        }
    };
    Ok((embedded, overlay))
}

/// Merged user properties of a snapshot.
pub fn merged(embedded: &Embedded, overlay: &Overlay) -> BTreeMap<String, String> {
    let mut m = embedded.properties.clone();
    m.retain(|k, _| !overlay.removed.contains(k));
    m.extend(overlay.properties.clone());
    m
}

/// Sets one property in a snapshot's overlay.
pub fn set_snapshot_prop(snapshot_dir: &Path, key: &str, value: &str) -> Result<(), StoreError> {
    let (_, mut overlay) = snapshot_props(snapshot_dir)?;
    overlay.properties.insert(key.to_string(), value.to_string());
    overlay.removed.remove(key);
    write_json(&overlay_path(snapshot_dir), &overlay)
}

/// Removes one property of a snapshot (an embedded one is masked).
pub fn remove_snapshot_prop(snapshot_dir: &Path, key: &str) -> Result<(), StoreError> {
    let (embedded, mut overlay) = snapshot_props(snapshot_dir)?;
    overlay.properties.remove(key);
    if embedded.properties.contains_key(key) {
        overlay.removed.insert(key.to_string());
    }
    write_json(&overlay_path(snapshot_dir), &overlay)
}

/// Adds (`true`) or removes a hold tag in a snapshot's overlay; returns
/// whether the set changed.
pub fn change_hold(snapshot_dir: &Path, tag: &str, add: bool) -> Result<bool, StoreError> {
    let (_, mut overlay) = snapshot_props(snapshot_dir)?;
    let changed = if add { overlay.holds.insert(tag.to_string()) } else { overlay.holds.remove(tag) };
    if changed {
        write_json(&overlay_path(snapshot_dir), &overlay)?;
    }
    Ok(changed)
}

pub fn remove_volume_prop(volume_dir: &Path, key: &str) -> Result<(), StoreError> {
    let mut p = volume_props(volume_dir)?;
    if p.properties.remove(key).is_some() {
        write_json(&volume_dir.join(VOLUME_PROPS), &p)?;
    }
    Ok(())
}

/// The record inside a clone directory naming its origin.
pub const CLONE_ORIGIN: &str = ".santools-clone.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneOrigin {
    /// `POOL/VOLUME@SNAPSHOT`
    pub origin: String,
}

pub fn volume_props(volume_dir: &Path) -> Result<VolumeProps, StoreError> {
    Ok(read_json(&volume_dir.join(VOLUME_PROPS))?.unwrap_or_default())
}

pub fn set_volume_prop(volume_dir: &Path, key: &str, value: &str) -> Result<(), StoreError> {
    let mut p = volume_props(volume_dir)?;
    p.properties.insert(key.to_string(), value.to_string());
    write_json(&volume_dir.join(VOLUME_PROPS), &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_belongs_to_one_snapshot_only() {
        let d = tempfile::tempdir().unwrap();
        let snap = d.path().join("2011-03-29_23:00:01");
        fs::create_dir(&snap).unwrap();
        write_json(&snap.join(EMBEDDED), &Embedded { creation: 5, properties: [("a:b".into(), "1".into())].into() })
            .unwrap();
        set_snapshot_prop(&snap, "a:c", "2").unwrap();
        let (e, o) = snapshot_props(&snap).unwrap();
        assert_eq!(merged(&e, &o).len(), 2);
        // Re-created under the same name: the old overlay does not apply.
        fs::remove_dir_all(&snap).unwrap();
        fs::create_dir(&snap).unwrap();
        let (e, o) = snapshot_props(&snap).unwrap();
        assert!(merged(&e, &o).is_empty());
    }
}
