//! Replication of btrfs pools (zfs-copy): `btrfs send [-p BASE] SNAP...`
//! on the source, `btrfs receive` on the target.
//!
//! `btrfs receive` creates each subvolume as it reads the stream and marks
//! it read-only, with its received UUID, only when that snapshot's stream
//! ended well. It has to receive straight into `.snapshots/<volume>/`: a
//! read-only subvolume cannot be moved to another directory afterwards
//! (EROFS), and a read-only snapshot of it would lose the received UUID
//! that later incremental streams are matched by. So a snapshot directory
//! that is a *writable* subvolume is a receive in progress or one that was
//! cut off: every listing skips it, and the receiving side holds
//! `.snapshots/<volume>/.receive.lock` while it receives, so the next
//! receive (or a failed one) deletes what is left without touching a
//! running one. After a receive the volume itself becomes a writable
//! snapshot of the newest snapshot, as a ZFS receive leaves the dataset at
//! its newest snapshot.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::btrfs_subvol::{format_uuid, subvol_info};
use super::dir::{rename_noreplace, TreeStore, TMP_PREFIX};
use super::{props_file, ArchiveStore, StoreError};
use crate::archive::names::{SnapshotName, VolumeName};
use crate::shared::atomic_file::sync_parent_dir;
use crate::shared::command::Command;
use crate::shared::file_lock;

/// `.snapshots/<volume>/.receive.json`: the subvolumes there before a
/// receive began (their UUIDs); written before `btrfs receive` runs,
/// removed once it is finished or cleaned up.
#[derive(serde::Serialize, serde::Deserialize)]
struct ReceiveJournal {
    before: Vec<String>,
}

impl TreeStore {
    /// A snapshot's identity across hosts (see [`super::btrfs_subvol`]).
    pub(super) fn btrfs_identity(&self, snapshot_dir: &Path) -> Result<String, StoreError> {
        let info = subvol_info(snapshot_dir).map_err(StoreError::io("reading the subvolume of", snapshot_dir))?;
        if !info.is_root {
            // A plain directory would answer with the subvolume it sits in.
            return Err(StoreError::Invalid(format!("{} is not a subvolume", snapshot_dir.display())));
        }
        Ok(info.identity())
    }

    /// `btrfs send [-p FROM] [SNAPSHOTS BETWEEN...] SNAP`: with several
    /// snapshots btrfs-progs 6.2 sends each one against FROM (not against
    /// the one before it), so `-I` over a long chain moves more than the
    /// sum of the increments; the snapshots that arrive are the same.
    pub(super) fn btrfs_send_command(
        &self,
        v: &VolumeName,
        s: &SnapshotName,
        from: Option<&SnapshotName>,
        intermediates: bool,
        tree: bool,
    ) -> Result<Command, StoreError> {
        if tree {
            return Err(StoreError::Invalid(format!(
                "{}: btrfs has no stream of a whole volume with its properties (zfs send -R): \
                 copy the first snapshot, then the rest with -I",
                self.describe()
            )));
        }
        let snap_dir = self.existing_snapshot_dir(v, s)?;
        let mut cmd = Command::new("btrfs").args(["send", "-q"]);
        if let Some(f) = from {
            cmd = cmd.arg("-p").arg(self.existing_snapshot_dir(v, f)?);
            if intermediates {
                let all = self.snapshots(v)?;
                let pos = |n: &SnapshotName| all.iter().position(|x| &x.name == n);
                if let (Some(a), Some(b)) = (pos(f), pos(s)) {
                    for between in all.iter().take(b).skip(a + 1) {
                        cmd = cmd.arg(self.snapshot_dir(v, &between.name));
                    }
                }
            }
        }
        Ok(cmd.arg(snap_dir))
    }

    /// A writable subvolume where a snapshot belongs: a receive in
    /// progress or cut off, never a snapshot.
    pub(super) fn is_partial_receive(&self, dir: &Path) -> bool {
        matches!(subvol_info(dir), Ok(i) if i.is_root && !i.read_only)
    }

    fn receive_lock_path(&self, v: &VolumeName) -> PathBuf {
        self.snapshots_dir(v).join(".receive.lock")
    }

    /// `btrfs receive .snapshots/VOLUME/`, under the volume's receive lock
    /// (held until [`Self::btrfs_finish_receive`] or
    /// [`Self::btrfs_abort_receive`]), after removing what cut-off
    /// receives left.
    pub(super) fn btrfs_receive_command(&self, v: Option<&VolumeName>) -> Result<Command, StoreError> {
        let Some(v) = v else {
            return Err(StoreError::Invalid(format!(
                "{}: btrfs cannot receive a whole tree (-p); name the target volume",
                self.describe()
            )));
        };
        // What killed runs left for this volume goes first.
        for r in self.cleanup_stale(v)? {
            tracing::info!("removed {r}, left by an interrupted run");
        }
        let dir = self.snapshots_dir(v);
        fs::create_dir_all(&dir).map_err(StoreError::io("creating", &dir))?;
        let path = self.receive_lock_path(v);
        let lock = file_lock::open_or_create(&path).map_err(StoreError::io("opening", &path))?;
        file_lock::lock_exclusive(&lock, &path).map_err(|e| StoreError::Busy {
            object: format!("{}/{v}", self.pool()),
            reason: format!("another copy is receiving into it ({e})"),
        })?;
        // A journal left by a receive that was cut off names what was there
        // before it: what it made since goes.
        self.remove_partial_receives(v)?;
        let before: Vec<String> = fs::read_dir(&dir)
            .map_err(StoreError::io("listing", &dir))?
            .flatten()
            .filter_map(|e| subvol_info(&e.path()).ok().filter(|i| i.is_root))
            .map(|i| format_uuid(&i.uuid))
            .collect();
        props_file::write_json(&self.receive_journal_path(v), &ReceiveJournal { before })?;
        self.receiving().insert(v.clone(), lock);
        Ok(Command::new("btrfs").arg("receive").arg(dir))
    }

    fn receive_journal_path(&self, v: &VolumeName) -> PathBuf {
        self.snapshots_dir(v).join(".receive.json")
    }

    /// The writable subvolumes a receive made (not among those the journal
    /// lists as there before it): received incompletely.
    fn partial_receives(&self, v: &VolumeName) -> Result<Vec<PathBuf>, StoreError> {
        let Some(journal) = props_file::read_json::<ReceiveJournal>(&self.receive_journal_path(v))? else {
            return Ok(Vec::new());
        };
        let dir = self.snapshots_dir(v);
        let Ok(rd) = fs::read_dir(&dir) else { return Ok(Vec::new()) };
        Ok(rd
            .flatten()
            .filter(|e| {
                matches!(subvol_info(&e.path()), Ok(i) if i.is_root && !i.read_only
                    && !journal.before.contains(&format_uuid(&i.uuid)))
            })
            .map(|e| e.path())
            .collect())
    }

    fn receiving(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<VolumeName, fs::File>> {
        self.receive_locks().lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes what a receive made and did not complete, then its journal.
    /// Only under the receive lock.
    fn remove_partial_receives(&self, v: &VolumeName) -> Result<(), StoreError> {
        for p in self.partial_receives(v)? {
            tracing::warn!("removing {}: a receive that did not complete", p.display());
            self.btrfs(&["subvolume".as_ref(), "delete".as_ref(), p.as_os_str()])?;
        }
        let j = self.receive_journal_path(v);
        match fs::remove_file(&j) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io { what: "removing", path: j, cause: e }),
        }
    }

    /// After a receive that succeeded: checks that it left no partial
    /// snapshot and brings the volume to the newest snapshot. Also run when
    /// nothing was received, so a volume a crash left without its live
    /// copy gets one.
    pub(super) fn btrfs_finish_receive(&self, v: &VolumeName) -> Result<Vec<SnapshotName>, StoreError> {
        let held = self.receiving().remove(v);
        if let Some(lock) = held {
            let dir = self.snapshots_dir(v);
            if let Some(p) = self.partial_receives(v)?.first() {
                // Back under our lock for abort_receive to clean up.
                self.receiving().insert(v.clone(), lock);
                return Err(StoreError::Invalid(format!(
                    "{}/{v}@{} was not received completely",
                    self.pool(),
                    p.file_name().unwrap_or_default().to_string_lossy()
                )));
            }
            sync_parent_dir(&dir.join(".")).map_err(StoreError::io("syncing", &dir))?;
            self.btrfs_refresh_volume(v)?;
            self.remove_partial_receives(v)?;
            drop(lock);
            return Ok(Vec::new());
        }
        self.btrfs_refresh_volume(v)?;
        Ok(Vec::new())
    }

    /// Drops what a failed receive left (still under its lock).
    pub(super) fn btrfs_abort_receive(&self, v: &VolumeName) -> Result<(), StoreError> {
        let held = self.receiving().remove(v);
        if held.is_some() {
            self.remove_partial_receives(v)?;
        }
        Ok(())
    }

    /// `-F`: the snapshots after `s` go (newest first; a held one stops it).
    pub(super) fn btrfs_rollback(&self, v: &VolumeName, s: &SnapshotName) -> Result<(), StoreError> {
        let all = self.snapshots(v)?;
        let pos = all
            .iter()
            .position(|x| &x.name == s)
            .ok_or_else(|| StoreError::NotFound { object: format!("{}/{v}@{s}", self.pool()) })?;
        // Checked for all of them first: a refused rollback deletes nothing.
        for later in &all[pos + 1..] {
            let object = format!("{}/{v}@{}", self.pool(), later.name);
            if later.held() {
                return Err(StoreError::Held { object, tags: later.holds.clone() });
            }
            if !later.clones.is_empty() {
                return Err(StoreError::HasClones { object, clones: later.clones.clone() });
            }
        }
        for later in all[pos + 1..].iter().rev() {
            self.destroy_snapshot(v, &later.name)?;
        }
        Ok(())
    }

    /// Makes the volume a writable snapshot of its newest snapshot (if it
    /// is not one already), swapped in atomically with RENAME_EXCHANGE.
    fn btrfs_refresh_volume(&self, v: &VolumeName) -> Result<(), StoreError> {
        let Some(newest) = self.snapshots(v)?.pop() else { return Ok(()) };
        let newest_dir = self.snapshot_dir(v, &newest.name);
        let vol = self.volume_dir(v);
        let newest_info = subvol_info(&newest_dir).map_err(StoreError::io("reading the subvolume of", &newest_dir))?;
        if let Ok(cur) = subvol_info(&vol) {
            if cur.is_root && cur.parent_uuid == newest_info.uuid {
                return Ok(());
            }
        }
        let tmp = self.root_dir().join(format!("{TMP_PREFIX}{}-volume-{v}", std::process::id()));
        self.remove_with_subvolumes(&tmp)?;
        self.btrfs(&["subvolume".as_ref(), "snapshot".as_ref(), newest_dir.as_os_str(), tmp.as_os_str()])?;
        // The snapshot's embedded record describes the snapshot, not the volume.
        let _ = fs::remove_file(tmp.join(props_file::EMBEDDED));
        if vol.exists() {
            nix::fcntl::renameat2(None, &tmp, None, &vol, nix::fcntl::RenameFlags::RENAME_EXCHANGE)
                .map_err(|e| StoreError::Io { what: "swapping in", path: vol.clone(), cause: e.into() })?;
            sync_parent_dir(&vol).map_err(StoreError::io("syncing", &vol))?;
            // The old volume, now under the temporary name.
            self.remove_with_subvolumes(&tmp)?;
        } else {
            rename_noreplace(&tmp, &vol).map_err(StoreError::io("moving into place", &vol))?;
            sync_parent_dir(&vol).map_err(StoreError::io("syncing", &vol))?;
        }
        Ok(())
    }

    /// Removes `path`: a subvolume with `btrfs subvolume delete`, a
    /// directory after deleting the subvolumes directly in it. Absent: fine.
    pub(super) fn remove_with_subvolumes(&self, path: &Path) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt;
        let m = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::Io { what: "reading", path: path.to_path_buf(), cause: e }),
        };
        let is_subvolume = |m: &fs::Metadata| m.is_dir() && m.ino() == 256;
        if is_subvolume(&m) {
            return self.btrfs(&["subvolume".as_ref(), "delete".as_ref(), path.as_os_str()]);
        }
        if m.is_dir() {
            for e in fs::read_dir(path).map_err(StoreError::io("listing", path))?.flatten() {
                if e.path().symlink_metadata().map(|m| is_subvolume(&m)).unwrap_or(false) {
                    self.btrfs(&["subvolume".as_ref(), "delete".as_ref(), e.path().as_os_str()])?;
                }
            }
            fs::remove_dir_all(path).map_err(StoreError::io("removing", path))
        } else {
            fs::remove_file(path).map_err(StoreError::io("removing", path))
        }
    }
}
