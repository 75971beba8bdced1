//! Where archive volumes live: one interface ([`ArchiveStore`]), several
//! backends, each the only code that knows its system tools.
//!
//! - [`zfs`]: a dataset per volume holding one sparse image file (image
//!   mode: any ZFS, including zfs-fuse), or a zvol (zvol mode, as the
//!   seed);
//! - [`btrfs`]: a subvolume per volume holding the image, read-only
//!   snapshots;
//! - [`dir`]: plain directories, snapshots as reflink (or sparse) copies.
//!
//! Callers check [`Capabilities`] instead of matching on the kind.

mod btrfs_send;
pub mod btrfs_subvol;
pub mod dir;
mod props_file;
pub mod zfs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::names::{HoldTag, PoolName, PropertyName, SnapshotName, VolumeName};
use crate::shared::command::{Command, CommandError};

/// What a backend can do; the archive checks these instead of assuming.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Volumes are block devices (zvols) rather than image files.
    pub zvols: bool,
    /// Holds are native (otherwise santools emulates them in a sidecar).
    pub native_holds: bool,
    /// A clone keeps its origin snapshot from being destroyed.
    pub clones_block_origin: bool,
    /// Snapshots can be sent to another pool or host.
    pub send_receive: bool,
    /// An interrupted receive can resume.
    pub resumable_receive: bool,
    /// Reading a snapshot needs a temporary clone (no snapshot directory).
    pub snapshot_read_needs_clone: bool,
}

/// An archive volume as the backend sees it.
#[derive(Clone, Debug, Serialize)]
pub struct VolumeInfo {
    pub name: VolumeName,
    /// Bytes of the volume (the image file's or zvol's size).
    pub size: u64,
    /// What ddless writes: the image file or the zvol device.
    pub data_path: PathBuf,
    /// User properties (`<ns>:key`).
    pub properties: BTreeMap<String, String>,
}

/// A snapshot of an archive volume.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotInfo {
    pub name: SnapshotName,
    /// Creation time, seconds since the epoch.
    pub creation: i64,
    /// User properties (`<ns>:key`).
    pub properties: BTreeMap<String, String>,
    /// Hold tags (a held snapshot cannot be destroyed until released).
    /// Holds santools did not make itself are listed as
    /// `N hold(s) not made by santools` where the backend cannot name them.
    pub holds: Vec<String>,
    /// Clones made from it (`POOL/NAME`).
    pub clones: Vec<String>,
    /// Bytes only this snapshot holds, when the backend knows.
    pub used: Option<u64>,
    /// Identity that survives a send/receive: the ZFS guid; on btrfs the
    /// subvolume's UUID (its received UUID for a received snapshot).
    pub guid: Option<String>,
}

impl SnapshotInfo {
    pub fn held(&self) -> bool {
        !self.holds.is_empty()
    }
}

/// A snapshot as replication needs it: its identity and its holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotId {
    pub name: SnapshotName,
    pub creation: i64,
    pub guid: Option<String>,
    pub holds: Vec<String>,
}

impl From<SnapshotInfo> for SnapshotId {
    fn from(s: SnapshotInfo) -> Self {
        SnapshotId { name: s.name, creation: s.creation, guid: s.guid, holds: s.holds }
    }
}

/// A clone of a snapshot (`POOL/NAME`, made from `origin`).
#[derive(Clone, Debug, Serialize)]
pub struct CloneInfo {
    pub name: String,
    pub origin: String,
}

/// Space figures of a volume (the seed's zfs_df columns); `None` where the
/// backend has no such figure.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SpaceInfo {
    pub volsize: Option<u64>,
    pub refreservation: Option<u64>,
    /// Compression ratio (`1.52` for 1.52x).
    pub compressratio: Option<f64>,
    pub used_by_dataset: Option<u64>,
    pub used_by_snapshots: Option<u64>,
    pub used_by_refreservation: Option<u64>,
    pub used_by_children: Option<u64>,
    pub used: Option<u64>,
    pub reservation: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{object} does not exist")]
    NotFound { object: String },
    #[error("{object} already exists")]
    AlreadyExists { object: String },
    #[error("{object} is busy: {reason}")]
    Busy { object: String, reason: String },
    #[error("{object} is held ({})", tags.join(", "))]
    Held { object: String, tags: Vec<String> },
    #[error("{object} has clones ({})", clones.join(", "))]
    HasClones { object: String, clones: Vec<String> },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{what} {}: {cause}", path.display())]
    Io { what: &'static str, path: PathBuf, cause: std::io::Error },
    #[error("unexpected output of {what}: {problem}")]
    Parse { what: String, problem: String },
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    pub(crate) fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
        move |cause| StoreError::Io { what, path: path.to_path_buf(), cause }
    }
}

/// A snapshot opened for reading. The path stays valid until it is dropped
/// (which removes a temporary clone, where one was needed).
pub struct SnapshotView {
    pub data_path: PathBuf,
    pub size: u64,
    cleanup: Option<Box<dyn FnOnce() + Send>>,
}

impl SnapshotView {
    pub fn new(data_path: PathBuf, size: u64, cleanup: Option<Box<dyn FnOnce() + Send>>) -> Self {
        SnapshotView { data_path, size, cleanup }
    }
}

impl Drop for SnapshotView {
    fn drop(&mut self) {
        if let Some(c) = self.cleanup.take() {
            c();
        }
    }
}

/// One pool of archive volumes on one backend.
pub trait ArchiveStore: Send + Sync {
    /// "zfs (image) tank", for logs and reports.
    fn describe(&self) -> String;
    fn pool(&self) -> &PoolName;
    fn capabilities(&self) -> Capabilities;
    /// Checks that the pool exists and is usable.
    fn check(&self) -> Result<(), StoreError>;
    /// The directory holding checksum files and their history
    /// (`<pool>/ddless`); created on first use when `create`.
    fn checksum_dir(&self, create: bool) -> Result<PathBuf, StoreError>;
    /// Archive volumes on the pool (names ending in `_bk`).
    fn volumes(&self) -> Result<Vec<VolumeName>, StoreError>;
    fn volume(&self, v: &VolumeName) -> Result<Option<VolumeInfo>, StoreError>;
    /// Creates an empty volume (its data grows with the first copy) with
    /// the configured creation options and user properties.
    fn create_volume(
        &self,
        v: &VolumeName,
        size: u64,
        props: &[(PropertyName, String)],
    ) -> Result<VolumeInfo, StoreError>;
    /// Makes room for `size` bytes before a copy: image files are resized
    /// by ddless itself (through its commit protocol); a zvol is grown here.
    fn prepare_size(&self, v: &VolumeName, size: u64) -> Result<(), StoreError>;
    /// Snapshots of a volume, oldest first (by creation, then name).
    fn snapshots(&self, v: &VolumeName) -> Result<Vec<SnapshotInfo>, StoreError>;
    /// The snapshots of a volume, oldest first, as replication needs them
    /// (name, creation, guid, holds); None when the volume does not exist.
    /// A backend overrides it where the full listing costs more calls.
    fn snapshot_ids(&self, v: &VolumeName) -> Result<Option<Vec<SnapshotId>>, StoreError> {
        if self.volume(v)?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.snapshots(v)?.into_iter().map(SnapshotId::from).collect()))
    }
    /// Takes a snapshot with its properties in one step: it exists with
    /// them or not at all.
    fn create_snapshot(
        &self,
        v: &VolumeName,
        s: &SnapshotName,
        props: &[(PropertyName, String)],
    ) -> Result<(), StoreError>;
    /// Destroys a snapshot. Refuses with [`StoreError::Held`] while it is
    /// held and with [`StoreError::HasClones`] while a clone was made from
    /// it (checked by santools itself where the backend would not refuse).
    fn destroy_snapshot(&self, v: &VolumeName, s: &SnapshotName) -> Result<(), StoreError>;
    /// Places a hold: the snapshot cannot be destroyed until every hold is
    /// released. Holding twice with one tag is one hold.
    fn hold(&self, v: &VolumeName, s: &SnapshotName, tag: &HoldTag) -> Result<(), StoreError>;
    /// Releases a hold; false when the snapshot had no hold with this tag.
    fn release(&self, v: &VolumeName, s: &SnapshotName, tag: &HoldTag) -> Result<bool, StoreError>;
    /// Makes a writable clone `POOL/clone` of a snapshot.
    fn clone_snapshot(&self, v: &VolumeName, s: &SnapshotName, clone: &VolumeName) -> Result<(), StoreError>;
    fn destroy_clone(&self, clone: &VolumeName) -> Result<(), StoreError>;
    /// Every clone on the pool and its origin.
    fn clones(&self) -> Result<Vec<CloneInfo>, StoreError>;
    /// Removes a user property from a volume or (with `s`) a snapshot.
    fn remove_property(&self, v: &VolumeName, s: Option<&SnapshotName>, p: &PropertyName) -> Result<(), StoreError>;
    /// Space figures of a volume and its snapshots.
    fn space(&self, v: &VolumeName) -> Result<SpaceInfo, StoreError>;
    /// The command that writes a send stream of snapshot `s` to stdout:
    /// incremental from `from` (with every snapshot in between when
    /// `intermediates`), or with `tree` the volume with all its snapshots
    /// and properties (`zfs send -R`).
    fn send_command(
        &self,
        v: &VolumeName,
        s: &SnapshotName,
        from: Option<&SnapshotName>,
        intermediates: bool,
        tree: bool,
    ) -> Result<Command, StoreError> {
        let _ = (v, s, from, intermediates, tree);
        Err(StoreError::Invalid(format!("{}: this backend cannot send snapshots", self.describe())))
    }
    /// The command that reads a send stream on stdin into volume `v`
    /// (`force`: roll back what the target has after the base), or with
    /// `v` None into the pool under the names in the stream (`receive -d`).
    fn receive_command(&self, v: Option<&VolumeName>, force: bool) -> Result<Command, StoreError> {
        let _ = (v, force);
        Err(StoreError::Invalid(format!("{}: this backend cannot receive snapshots", self.describe())))
    }
    /// Rolls a volume back to snapshot `s`, destroying the snapshots after
    /// it (`zfs rollback -r`; for `zfs-copy -F`).
    fn rollback(&self, v: &VolumeName, s: &SnapshotName) -> Result<(), StoreError> {
        let _ = (v, s);
        Err(StoreError::Invalid(format!("{}: this backend cannot roll back", self.describe())))
    }
    /// The kind of send stream this backend makes and takes ("zfs",
    /// "btrfs"); None where it has none. A copy between two kinds is refused.
    fn stream_format(&self) -> Option<&'static str> {
        None
    }
    /// Completes a receive into `v` after the receive command succeeded
    /// (btrfs: moves the completely received snapshots into place); also
    /// called when the target was up to date. Returns what it moved.
    fn finish_receive(&self, v: Option<&VolumeName>) -> Result<Vec<SnapshotName>, StoreError> {
        let _ = v;
        Ok(Vec::new())
    }
    /// Drops what a failed receive into `v` left (btrfs: its staging).
    fn abort_receive(&self, v: Option<&VolumeName>) -> Result<(), StoreError> {
        let _ = v;
        Ok(())
    }
    /// Sets a user property on a volume or (with `s`) a snapshot.
    fn set_property(
        &self,
        v: &VolumeName,
        s: Option<&SnapshotName>,
        p: &PropertyName,
        value: &str,
    ) -> Result<(), StoreError>;
    /// Opens a snapshot's bytes for reading.
    fn open_snapshot(&self, v: &VolumeName, s: &SnapshotName) -> Result<SnapshotView, StoreError>;
    /// Removes what an interrupted run of ours left behind for this volume
    /// (temporary clones of dead processes). Returns what was removed.
    fn cleanup_stale(&self, v: &VolumeName) -> Result<Vec<String>, StoreError>;
}

/// True when `pid` is a live process (a stale temporary of a dead run may
/// be removed; a live run's may not).
pub(crate) fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let rc = unsafe { libc::kill(pid as i32, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The name prefix of temporary objects (clones, directories) santools
/// creates while reading snapshots: `santools-read-<pid>-<n>`.
pub(crate) const TEMP_PREFIX: &str = "santools-read-";

/// The pid in a temporary object's name, if it is one of ours.
pub(crate) fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.rsplit('/').next()?.strip_prefix(TEMP_PREFIX)?;
    rest.split('-').next()?.parse().ok()
}

/// A fresh temporary name for this process.
pub(crate) fn temp_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{TEMP_PREFIX}{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_carry_their_owner() {
        let n = temp_name();
        assert_eq!(temp_owner(&n), Some(std::process::id()));
        assert_eq!(temp_owner(&format!("tank/{n}")), Some(std::process::id()));
        assert_eq!(temp_owner("tank/iscsi_lv_bk"), None);
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
    }
}
