//! Directory-tree backends: plain directories (`dir`, for hosts without ZFS
//! or btrfs) and btrfs subvolumes (`btrfs`). Both use one layout under the
//! pool's path:
//!
//! ```text
//! <path>/<volume>/image                      the archive volume's data
//! <path>/<volume>/properties.json            its user properties
//! <path>/.snapshots/<volume>/<snap>/image    a snapshot (read-only)
//! <path>/.snapshots/<volume>/<snap>.props.json   later property changes
//! <path>/ddless/                             checksum files and history
//! ```
//!
//! dir: a snapshot is a reflink copy of the image (a sparse copy where the
//! file system cannot reflink), assembled under a temporary name and
//! renamed into place, so it exists whole or not at all. btrfs: the volume
//! is a subvolume and a snapshot is `btrfs subvolume snapshot -r`, atomic
//! by itself. Either way the snapshot's properties are written into it
//! before it appears (see [`super::props_file`]).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::props_file::{self, CloneOrigin, Embedded};
use super::{
    pid_alive, ArchiveStore, Capabilities, CloneInfo, SnapshotId, SnapshotInfo, SnapshotView, SpaceInfo, StoreError,
    VolumeInfo,
};
use crate::archive::names::{HoldTag, PoolName, PropertyName, SnapshotName, VolumeName};
use crate::shared::atomic_file::sync_parent_dir;
use crate::shared::command::Command;

pub const IMAGE_FILE: &str = "image";
const SNAPSHOTS: &str = ".snapshots";
const CLONES: &str = ".clones";
pub(super) const TMP_PREFIX: &str = ".tmp-";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Plain,
    Btrfs,
}

#[derive(Clone, Debug)]
pub struct TreeStore {
    pool: PoolName,
    root: PathBuf,
    flavor: Flavor,
    timeout: Duration,
    /// Receive locks held between a receive command and its finish.
    receive_locks: std::sync::Arc<std::sync::Mutex<BTreeMap<VolumeName, File>>>,
}

/// statfs magic of btrfs.
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;

fn is_btrfs(path: &Path) -> io::Result<bool> {
    let st = nix::sys::statfs::statfs(path).map_err(io::Error::from)?;
    Ok(st.filesystem_type().0 as i64 == BTRFS_SUPER_MAGIC)
}

/// Copies the image at `src_path` to the new file `dst_path`: a reflink
/// where the file system can, else a sparse copy; synced.
fn copy_image(src_path: &Path, dst_path: &Path) -> Result<(), StoreError> {
    let src = File::open(src_path).map_err(StoreError::io("opening", src_path))?;
    let len = src.metadata().map_err(StoreError::io("reading", src_path))?.len();
    let dst =
        OpenOptions::new().write(true).create_new(true).open(dst_path).map_err(StoreError::io("creating", dst_path))?;
    if crate::shared::reflink::clone_file(&src, &dst).is_err() {
        sparse_copy(&src, &dst, len).map_err(StoreError::io("copying into", dst_path))?;
    }
    dst.sync_all().map_err(StoreError::io("syncing", dst_path))
}

/// Copies `src` into the empty `dst` keeping holes (SEEK_DATA/SEEK_HOLE).
fn sparse_copy(src: &File, dst: &File, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    dst.set_len(len)?;
    let fd = src.as_raw_fd();
    let mut pos: i64 = 0;
    let mut buf = vec![0u8; 1 << 20];
    while (pos as u64) < len {
        // SAFETY: lseek on a valid descriptor.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { len as i64 } else { hole.min(len as i64) };
        let mut off = data;
        while off < end {
            let n = ((end - off) as usize).min(buf.len());
            src.read_exact_at(&mut buf[..n], off as u64)?;
            dst.write_all_at(&buf[..n], off as u64)?;
            off += n as i64;
        }
        pos = end;
    }
    Ok(())
}

/// rename(2) that refuses to replace an existing destination.
pub(super) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    nix::fcntl::renameat2(None, from, None, to, nix::fcntl::RenameFlags::RENAME_NOREPLACE).map_err(io::Error::from)
}

impl TreeStore {
    pub fn new(pool: PoolName, root: PathBuf, flavor: Flavor, timeout: Duration) -> Self {
        TreeStore { pool, root, flavor, timeout, receive_locks: Default::default() }
    }

    pub(super) fn receive_locks(&self) -> &std::sync::Mutex<BTreeMap<VolumeName, File>> {
        &self.receive_locks
    }
    pub(super) fn root_dir(&self) -> &Path {
        &self.root
    }
    pub(super) fn volume_dir(&self, v: &VolumeName) -> PathBuf {
        self.root.join(v.as_str())
    }
    pub(super) fn snapshots_dir(&self, v: &VolumeName) -> PathBuf {
        self.root.join(SNAPSHOTS).join(v.as_str())
    }
    pub(super) fn snapshot_dir(&self, v: &VolumeName, s: &SnapshotName) -> PathBuf {
        self.snapshots_dir(v).join(s.as_str())
    }

    pub(super) fn btrfs(&self, args: &[&std::ffi::OsStr]) -> Result<(), StoreError> {
        Command::new("btrfs").args(args).timeout(self.timeout).run()?;
        Ok(())
    }

    fn clone_dir(&self, clone: &VolumeName) -> PathBuf {
        self.root.join(CLONES).join(clone.as_str())
    }

    fn object(&self, v: &VolumeName, s: &SnapshotName) -> String {
        format!("{}/{}@{}", self.pool, v, s)
    }

    pub(super) fn existing_snapshot_dir(&self, v: &VolumeName, s: &SnapshotName) -> Result<PathBuf, StoreError> {
        let dir = self.snapshot_dir(v, s);
        if !dir.is_dir() || (self.flavor == Flavor::Btrfs && self.is_partial_receive(&dir)) {
            return Err(StoreError::NotFound { object: self.object(v, s) });
        }
        Ok(dir)
    }

    /// Allocated bytes of a file (holes and shared extents not told apart).
    fn allocated(path: &Path) -> Result<u64, StoreError> {
        use std::os::unix::fs::MetadataExt;
        match fs::metadata(path) {
            Ok(m) => Ok(m.blocks() * 512),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(StoreError::Io { what: "reading", path: path.to_path_buf(), cause: e }),
        }
    }

    fn embedded_props(props: &[(PropertyName, String)]) -> Embedded {
        Embedded {
            creation: jiff::Timestamp::now().as_second(),
            properties: props.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        }
    }

    fn snapshot_plain(
        &self,
        v: &VolumeName,
        s: &SnapshotName,
        props: &[(PropertyName, String)],
    ) -> Result<(), StoreError> {
        let dir = self.snapshots_dir(v);
        fs::create_dir_all(&dir).map_err(StoreError::io("creating", &dir))?;
        let tmp = dir.join(format!("{TMP_PREFIX}{}-{}", std::process::id(), s));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).map_err(StoreError::io("creating", &tmp))?;
        let result = (|| {
            let dst_path = tmp.join(IMAGE_FILE);
            copy_image(&self.volume_dir(v).join(IMAGE_FILE), &dst_path)?;
            fs::set_permissions(&dst_path, fs::Permissions::from_mode(0o444))
                .map_err(StoreError::io("protecting", &dst_path))?;
            props_file::write_json(&tmp.join(props_file::EMBEDDED), &Self::embedded_props(props))?;
            File::open(&tmp).and_then(|d| d.sync_all()).map_err(StoreError::io("syncing", &tmp))?;
            let target = dir.join(s.as_str());
            rename_noreplace(&tmp, &target).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    StoreError::AlreadyExists { object: format!("{}/{}@{}", self.pool, v, s) }
                } else {
                    StoreError::Io { what: "renaming into place", path: target.clone(), cause: e }
                }
            })?;
            sync_parent_dir(&target).map_err(StoreError::io("syncing", &target))
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    fn snapshot_btrfs(
        &self,
        v: &VolumeName,
        s: &SnapshotName,
        props: &[(PropertyName, String)],
    ) -> Result<(), StoreError> {
        let dir = self.snapshots_dir(v);
        fs::create_dir_all(&dir).map_err(StoreError::io("creating", &dir))?;
        let target = dir.join(s.as_str());
        if target.exists() {
            return Err(StoreError::AlreadyExists { object: format!("{}/{}@{}", self.pool, v, s) });
        }
        let vol = self.volume_dir(v);
        // Embedded in the volume just before the snapshot: the read-only
        // snapshot carries its properties from its first moment. No fsync:
        // the snapshot's own transaction commit makes it durable with the
        // snapshot, and without the snapshot it means nothing.
        props_file::write_json_unsynced(&vol.join(props_file::EMBEDDED), &Self::embedded_props(props))?;
        self.btrfs(&["subvolume".as_ref(), "snapshot".as_ref(), "-r".as_ref(), vol.as_os_str(), target.as_os_str()])?;
        sync_parent_dir(&target).map_err(StoreError::io("syncing", &target))?;
        let _ = fs::remove_file(vol.join(props_file::EMBEDDED));
        Ok(())
    }
}

impl ArchiveStore for TreeStore {
    fn describe(&self) -> String {
        let kind = if self.flavor == Flavor::Btrfs { "btrfs" } else { "dir" };
        format!("{kind} {} ({})", self.pool, self.root.display())
    }

    fn pool(&self) -> &PoolName {
        &self.pool
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            zvols: false,
            native_holds: false,
            clones_block_origin: false,
            // btrfs send/receive (see btrfs_send.rs); a plain directory has no stream.
            send_receive: self.flavor == Flavor::Btrfs,
            resumable_receive: false,
            snapshot_read_needs_clone: false,
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        let m = fs::metadata(&self.root).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                StoreError::NotFound { object: format!("pool {} directory {}", self.pool, self.root.display()) }
            }
            _ => StoreError::Io { what: "checking pool directory", path: self.root.clone(), cause: e },
        })?;
        if !m.is_dir() {
            return Err(StoreError::Invalid(format!("pool {}: {} is not a directory", self.pool, self.root.display())));
        }
        if self.flavor == Flavor::Btrfs && !is_btrfs(&self.root).map_err(StoreError::io("checking", &self.root))? {
            return Err(StoreError::Invalid(format!(
                "pool {}: {} is not on a btrfs file system",
                self.pool,
                self.root.display()
            )));
        }
        Ok(())
    }

    fn checksum_dir(&self, create: bool) -> Result<PathBuf, StoreError> {
        let d = self.root.join("ddless");
        if !d.is_dir() {
            if !create {
                return Err(StoreError::NotFound { object: d.display().to_string() });
            }
            // Two volumes' first backups may race to create it.
            match fs::create_dir(&d) {
                Ok(()) => sync_parent_dir(&d).map_err(StoreError::io("syncing", &d))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
                Err(e) => return Err(StoreError::Io { what: "creating", path: d, cause: e }),
            }
        }
        Ok(d)
    }

    fn volumes(&self) -> Result<Vec<VolumeName>, StoreError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.root).map_err(StoreError::io("listing", &self.root))? {
            let e = e.map_err(StoreError::io("listing", &self.root))?;
            if let Some(n) = e.file_name().to_str() {
                if n.ends_with("_bk") && e.path().join(IMAGE_FILE).is_file() {
                    if let Ok(v) = VolumeName::new(n) {
                        out.push(v);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn volume(&self, v: &VolumeName) -> Result<Option<VolumeInfo>, StoreError> {
        let dir = self.volume_dir(v);
        if !dir.is_dir() {
            return Ok(None);
        }
        let image = dir.join(IMAGE_FILE);
        let size = match fs::metadata(&image) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(StoreError::Io { what: "reading", path: image, cause: e }),
        };
        Ok(Some(VolumeInfo {
            name: v.clone(),
            size,
            data_path: image,
            properties: props_file::volume_props(&dir)?.properties,
        }))
    }

    fn create_volume(
        &self,
        v: &VolumeName,
        _size: u64,
        props: &[(PropertyName, String)],
    ) -> Result<VolumeInfo, StoreError> {
        let dir = self.volume_dir(v);
        if !dir.exists() {
            match self.flavor {
                Flavor::Plain => {
                    // Assembled under a temporary name: a crash never leaves a
                    // half-made volume under the real one.
                    let tmp = self.root.join(format!("{TMP_PREFIX}{}-{}", std::process::id(), v));
                    let _ = fs::remove_dir_all(&tmp);
                    fs::create_dir(&tmp).map_err(StoreError::io("creating", &tmp))?;
                    File::create(tmp.join(IMAGE_FILE)).map_err(StoreError::io("creating", &tmp))?;
                    let vp = props_file::VolumeProps {
                        properties: props.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
                    };
                    props_file::write_json(&tmp.join(props_file::VOLUME_PROPS), &vp)?;
                    File::open(&tmp).and_then(|d| d.sync_all()).map_err(StoreError::io("syncing", &tmp))?;
                    rename_noreplace(&tmp, &dir).map_err(StoreError::io("renaming into place", &dir))?;
                }
                Flavor::Btrfs => {
                    self.btrfs(&["subvolume".as_ref(), "create".as_ref(), dir.as_os_str()])?;
                    File::create(dir.join(IMAGE_FILE)).map_err(StoreError::io("creating", &dir))?;
                    for (k, val) in props {
                        props_file::set_volume_prop(&dir, k.as_str(), val)?;
                    }
                }
            }
            sync_parent_dir(&dir).map_err(StoreError::io("syncing", &dir))?;
        } else if !dir.join(IMAGE_FILE).exists() {
            File::create(dir.join(IMAGE_FILE)).map_err(StoreError::io("creating", &dir))?;
        }
        self.volume(v)?.ok_or_else(|| StoreError::NotFound { object: dir.display().to_string() })
    }

    fn prepare_size(&self, _v: &VolumeName, _size: u64) -> Result<(), StoreError> {
        Ok(())
    }

    fn snapshots(&self, v: &VolumeName) -> Result<Vec<SnapshotInfo>, StoreError> {
        // Neither btrfs nor a directory keeps a clone from outliving its
        // origin: santools records each clone's origin and checks it.
        let clones = self.clones()?;
        let dir = self.snapshots_dir(v);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::Io { what: "listing", path: dir, cause: e }),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(StoreError::io("listing", &dir))?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else { continue };
            if name.starts_with('.') || name.ends_with(".props.json") || !e.path().is_dir() {
                continue;
            }
            let Ok(snap) = SnapshotName::new(&name) else { continue };
            if self.flavor == Flavor::Btrfs && self.is_partial_receive(&e.path()) {
                continue;
            }
            let (embedded, overlay) = props_file::snapshot_props(&e.path())?;
            let object = self.object(v, &snap);
            // A snapshot santools did not make has no embedded record:
            // it is as old as btrfs says (or the directory's birth).
            let creation = match embedded.creation {
                0 => match self.flavor {
                    Flavor::Btrfs => super::btrfs_subvol::subvol_info(&e.path()).map(|i| i.otime).unwrap_or(0),
                    Flavor::Plain => 0,
                }
                .max(
                    fs::metadata(e.path())
                        .and_then(|m| m.created())
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or(0),
                ),
                c => c,
            };
            let guid = match self.flavor {
                // Not a subvolume (made by hand?): listed, but it cannot
                // be matched to another host's snapshot.
                Flavor::Btrfs => self
                    .btrfs_identity(&e.path())
                    .map_err(|err| tracing::warn!("{object}: no identity for replication: {err}"))
                    .ok(),
                Flavor::Plain => None,
            };
            out.push(SnapshotInfo {
                name: snap,
                creation,
                properties: props_file::merged(&embedded, &overlay),
                holds: overlay.holds.iter().cloned().collect(),
                clones: clones.iter().filter(|c| c.origin == object).map(|c| c.name.clone()).collect(),
                used: None,
                guid,
            });
        }
        out.sort_by(|a, b| (a.creation, &a.name).cmp(&(b.creation, &b.name)));
        Ok(out)
    }

    fn create_snapshot(
        &self,
        v: &VolumeName,
        s: &SnapshotName,
        props: &[(PropertyName, String)],
    ) -> Result<(), StoreError> {
        match self.flavor {
            Flavor::Plain => self.snapshot_plain(v, s, props),
            Flavor::Btrfs => self.snapshot_btrfs(v, s, props),
        }
    }

    fn destroy_snapshot(&self, v: &VolumeName, s: &SnapshotName) -> Result<(), StoreError> {
        let dir = self.snapshot_dir(v, s);
        if !dir.is_dir() {
            return Err(StoreError::NotFound { object: format!("{}/{}@{}", self.pool, v, s) });
        }
        let (_, overlay) = props_file::snapshot_props(&dir)?;
        if !overlay.holds.is_empty() {
            return Err(StoreError::Held { object: self.object(v, s), tags: overlay.holds.iter().cloned().collect() });
        }
        let object = self.object(v, s);
        let clones: Vec<String> = self.clones()?.into_iter().filter(|c| c.origin == object).map(|c| c.name).collect();
        if !clones.is_empty() {
            return Err(StoreError::HasClones { object, clones });
        }
        match self.flavor {
            Flavor::Plain => {
                // Out of sight first: a half-deleted snapshot must never look whole.
                let doomed = self.snapshots_dir(v).join(format!("{TMP_PREFIX}{}-deleting-{}", std::process::id(), s));
                fs::rename(&dir, &doomed).map_err(StoreError::io("removing", &dir))?;
                sync_parent_dir(&dir).map_err(StoreError::io("syncing", &dir))?;
                let _ = fs::set_permissions(doomed.join(IMAGE_FILE), fs::Permissions::from_mode(0o644));
                fs::remove_dir_all(&doomed).map_err(StoreError::io("removing", &doomed))?;
            }
            Flavor::Btrfs => self.btrfs(&["subvolume".as_ref(), "delete".as_ref(), dir.as_os_str()])?,
        }
        let _ = fs::remove_file(props_file::overlay_path(&dir));
        Ok(())
    }

    fn set_property(
        &self,
        v: &VolumeName,
        s: Option<&SnapshotName>,
        p: &PropertyName,
        value: &str,
    ) -> Result<(), StoreError> {
        match s {
            Some(s) => {
                let dir = self.snapshot_dir(v, s);
                if !dir.is_dir() {
                    return Err(StoreError::NotFound { object: format!("{}/{}@{}", self.pool, v, s) });
                }
                props_file::set_snapshot_prop(&dir, p.as_str(), value)
            }
            None => {
                let dir = self.volume_dir(v);
                if !dir.is_dir() {
                    return Err(StoreError::NotFound { object: format!("{}/{}", self.pool, v) });
                }
                props_file::set_volume_prop(&dir, p.as_str(), value)
            }
        }
    }

    fn open_snapshot(&self, v: &VolumeName, s: &SnapshotName) -> Result<SnapshotView, StoreError> {
        let dir = self.existing_snapshot_dir(v, s)?;
        let image = dir.join(IMAGE_FILE);
        let size = fs::metadata(&image).map_err(StoreError::io("reading", &image))?.len();
        Ok(SnapshotView::new(image, size, None))
    }

    fn hold(&self, v: &VolumeName, s: &SnapshotName, tag: &HoldTag) -> Result<(), StoreError> {
        props_file::change_hold(&self.existing_snapshot_dir(v, s)?, tag.as_str(), true).map(|_| ())
    }

    fn release(&self, v: &VolumeName, s: &SnapshotName, tag: &HoldTag) -> Result<bool, StoreError> {
        props_file::change_hold(&self.existing_snapshot_dir(v, s)?, tag.as_str(), false)
    }

    fn clone_snapshot(&self, v: &VolumeName, s: &SnapshotName, clone: &VolumeName) -> Result<(), StoreError> {
        let snap = self.existing_snapshot_dir(v, s)?;
        let parent = self.root.join(CLONES);
        fs::create_dir_all(&parent).map_err(StoreError::io("creating", &parent))?;
        let target = self.clone_dir(clone);
        if target.exists() {
            return Err(StoreError::AlreadyExists { object: format!("{}/{}", self.pool, clone) });
        }
        let record = CloneOrigin { origin: self.object(v, s) };
        match self.flavor {
            Flavor::Btrfs => {
                self.btrfs(&["subvolume".as_ref(), "snapshot".as_ref(), snap.as_os_str(), target.as_os_str()])?;
                let _ = fs::remove_file(target.join(props_file::EMBEDDED));
                props_file::write_json(&target.join(props_file::CLONE_ORIGIN), &record)?;
            }
            Flavor::Plain => {
                let tmp = parent.join(format!("{TMP_PREFIX}{}-{}", std::process::id(), clone));
                let _ = fs::remove_dir_all(&tmp);
                fs::create_dir(&tmp).map_err(StoreError::io("creating", &tmp))?;
                let result = (|| {
                    copy_image(&snap.join(IMAGE_FILE), &tmp.join(IMAGE_FILE))?;
                    props_file::write_json(&tmp.join(props_file::CLONE_ORIGIN), &record)?;
                    rename_noreplace(&tmp, &target).map_err(StoreError::io("renaming into place", &target))
                })();
                if result.is_err() {
                    let _ = fs::remove_dir_all(&tmp);
                }
                result?;
            }
        }
        sync_parent_dir(&target).map_err(StoreError::io("syncing", &target))
    }

    fn destroy_clone(&self, clone: &VolumeName) -> Result<(), StoreError> {
        let dir = self.clone_dir(clone);
        if !dir.join(props_file::CLONE_ORIGIN).is_file() {
            return Err(StoreError::NotFound { object: format!("clone {}/{}", self.pool, clone) });
        }
        match self.flavor {
            Flavor::Btrfs => self.btrfs(&["subvolume".as_ref(), "delete".as_ref(), dir.as_os_str()])?,
            Flavor::Plain => {
                let doomed =
                    self.root.join(CLONES).join(format!("{TMP_PREFIX}{}-deleting-{}", std::process::id(), clone));
                fs::rename(&dir, &doomed).map_err(StoreError::io("removing", &dir))?;
                fs::remove_dir_all(&doomed).map_err(StoreError::io("removing", &doomed))?;
            }
        }
        sync_parent_dir(&dir).map_err(StoreError::io("syncing", &dir))
    }

    fn clones(&self) -> Result<Vec<CloneInfo>, StoreError> {
        let dir = self.root.join(CLONES);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::Io { what: "listing", path: dir, cause: e }),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(StoreError::io("listing", &dir))?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else { continue };
            if name.starts_with('.') {
                continue;
            }
            if let Some(rec) = props_file::read_json::<CloneOrigin>(&e.path().join(props_file::CLONE_ORIGIN))? {
                out.push(CloneInfo { name: format!("{}/{name}", self.pool), origin: rec.origin });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn remove_property(&self, v: &VolumeName, s: Option<&SnapshotName>, p: &PropertyName) -> Result<(), StoreError> {
        match s {
            Some(s) => props_file::remove_snapshot_prop(&self.existing_snapshot_dir(v, s)?, p.as_str()),
            None => {
                let dir = self.volume_dir(v);
                if !dir.is_dir() {
                    return Err(StoreError::NotFound { object: format!("{}/{}", self.pool, v) });
                }
                props_file::remove_volume_prop(&dir, p.as_str())
            }
        }
    }

    fn space(&self, v: &VolumeName) -> Result<SpaceInfo, StoreError> {
        let info = self.volume(v)?.ok_or_else(|| StoreError::NotFound { object: format!("{}/{}", self.pool, v) })?;
        let snaps_dir = self.snapshots_dir(v);
        let (dataset, snapshots) = match self.flavor {
            Flavor::Btrfs => {
                // `btrfs filesystem du`: the volume's total is what it
                // references; the snapshot directory's exclusive bytes are
                // what destroying every snapshot would free (ZFS's
                // usedbysnapshots).
                let mut cmd = Command::new("btrfs")
                    .args(["filesystem", "du", "-s", "--raw"])
                    .arg(self.volume_dir(v))
                    .timeout(self.timeout);
                if snaps_dir.is_dir() {
                    cmd = cmd.arg(&snaps_dir);
                }
                let out = cmd.run()?;
                let rows = parse_btrfs_du(out.stdout_str()?)
                    .map_err(|p| StoreError::Parse { what: "btrfs filesystem du".into(), problem: p })?;
                let vol = rows.first().map(|r| r.total);
                let snaps = if snaps_dir.is_dir() { rows.get(1).map(|r| r.exclusive) } else { Some(0) };
                (vol, snaps)
            }
            Flavor::Plain => {
                // Snapshots are copies: each one's allocated bytes count
                // (reflinked extents are counted again; the file system
                // does not say which are shared).
                let mut sum = 0;
                for s in self.snapshots(v)? {
                    sum += Self::allocated(&self.snapshot_dir(v, &s.name).join(IMAGE_FILE))?;
                }
                (Some(Self::allocated(&info.data_path)?), Some(sum))
            }
        };
        Ok(SpaceInfo {
            volsize: Some(info.size),
            used_by_dataset: dataset,
            used_by_snapshots: snapshots,
            used: dataset.zip(snapshots).map(|(a, b)| a + b),
            ..SpaceInfo::default()
        })
    }

    fn stream_format(&self) -> Option<&'static str> {
        (self.flavor == Flavor::Btrfs).then_some("btrfs")
    }

    /// A btrfs volume whose live copy is missing but whose snapshots
    /// arrived (a receive killed before its finish) still exists for
    /// replication: the next copy plans from its snapshots and finishes it.
    fn snapshot_ids(&self, v: &VolumeName) -> Result<Option<Vec<SnapshotId>>, StoreError> {
        let live = self.volume(v)?.is_some();
        if !live && self.flavor == Flavor::Plain {
            return Ok(None);
        }
        let snaps = self.snapshots(v)?;
        if !live && snaps.is_empty() {
            return Ok(None);
        }
        Ok(Some(snaps.into_iter().map(SnapshotId::from).collect()))
    }

    fn send_command(
        &self,
        v: &VolumeName,
        s: &SnapshotName,
        from: Option<&SnapshotName>,
        intermediates: bool,
        tree: bool,
    ) -> Result<Command, StoreError> {
        match self.flavor {
            Flavor::Btrfs => self.btrfs_send_command(v, s, from, intermediates, tree),
            Flavor::Plain => Err(StoreError::Invalid(format!("{}: a plain directory cannot send", self.describe()))),
        }
    }

    fn receive_command(&self, v: Option<&VolumeName>, _force: bool) -> Result<Command, StoreError> {
        // -F rolled the target back before (rollback): the receive itself
        // has nothing to force.
        match self.flavor {
            Flavor::Btrfs => self.btrfs_receive_command(v),
            Flavor::Plain => Err(StoreError::Invalid(format!("{}: a plain directory cannot receive", self.describe()))),
        }
    }

    fn rollback(&self, v: &VolumeName, s: &SnapshotName) -> Result<(), StoreError> {
        match self.flavor {
            Flavor::Btrfs => self.btrfs_rollback(v, s),
            Flavor::Plain => Err(StoreError::Invalid(format!("{}: cannot roll back", self.describe()))),
        }
    }

    fn finish_receive(&self, v: Option<&VolumeName>) -> Result<Vec<SnapshotName>, StoreError> {
        match (self.flavor, v) {
            (Flavor::Btrfs, Some(v)) => self.btrfs_finish_receive(v),
            _ => Ok(Vec::new()),
        }
    }

    fn abort_receive(&self, v: Option<&VolumeName>) -> Result<(), StoreError> {
        match (self.flavor, v) {
            (Flavor::Btrfs, Some(v)) => self.btrfs_abort_receive(v),
            _ => Ok(()),
        }
    }

    fn cleanup_stale(&self, v: &VolumeName) -> Result<Vec<String>, StoreError> {
        let mut removed = Vec::new();
        for dir in [self.root.clone(), self.snapshots_dir(v)] {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(rest) = name.strip_prefix(TMP_PREFIX) else { continue };
                let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
                if pid_alive(pid) {
                    continue;
                }
                let p = e.path();
                if self.flavor == Flavor::Btrfs {
                    // A staged receive or a volume being swapped in:
                    // subvolumes, deleted as such.
                    self.remove_with_subvolumes(&p)?;
                }
                let _ = fs::set_permissions(p.join(IMAGE_FILE), fs::Permissions::from_mode(0o644));
                if p.exists() {
                    fs::remove_dir_all(&p).map_err(StoreError::io("removing", &p))?;
                }
                removed.push(p.display().to_string());
            }
        }
        Ok(removed)
    }
}

/// One line of `btrfs filesystem du -s --raw`.
#[derive(Debug, PartialEq, Eq)]
pub struct DuRow {
    pub total: u64,
    pub exclusive: u64,
    pub path: String,
}

/// Parses `btrfs filesystem du -s --raw PATH...`: a header, then
/// `TOTAL EXCLUSIVE SET-SHARED PATH` per path (set-shared may be `-`).
pub fn parse_btrfs_du(text: &str) -> Result<Vec<DuRow>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    match lines.next() {
        Some(h) if h.split_whitespace().collect::<Vec<_>>() == ["Total", "Exclusive", "Set", "shared", "Filename"] => {}
        other => return Err(format!("unexpected header {other:?}")),
    }
    let mut out = Vec::new();
    for l in lines {
        let mut it = l.split_whitespace();
        let num = |f: Option<&str>, what: &str| -> Result<u64, String> {
            f.and_then(|x| x.parse().ok()).ok_or_else(|| format!("{what} is not a number in {l:?}"))
        };
        let total = num(it.next(), "total")?;
        let exclusive = num(it.next(), "exclusive")?;
        let shared = it.next().ok_or_else(|| format!("short line {l:?}"))?;
        if shared != "-" && shared.parse::<u64>().is_err() {
            return Err(format!("set shared is not a number in {l:?}"));
        }
        let path: Vec<&str> = it.collect();
        if path.is_empty() {
            return Err(format!("no path in {l:?}"));
        }
        out.push(DuRow { total, exclusive, path: path.join(" ") });
    }
    Ok(out)
}

/// User properties as a map (for reports).
pub fn props_map(props: &[(PropertyName, String)]) -> BTreeMap<String, String> {
    props.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_captured_btrfs_du() {
        // btrfs filesystem du -s --raw btm/v btm/s1 (btrfs-progs 6.2)
        let text = include_str!("../../../tests/fixtures/btrfs/btrfs-progs-6.2/du-raw.txt");
        let rows = parse_btrfs_du(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], DuRow { total: 1048576, exclusive: 102400, path: "btm/v".into() });
        assert_eq!(rows[1].exclusive, 0);
        assert!(parse_btrfs_du("garbage\n").is_err());
        assert!(parse_btrfs_du("     Total   Exclusive  Set shared  Filename\n 1 x 2 p\n").is_err());
    }

    #[test]
    fn holds_and_clones_block_destroy_on_a_plain_pool() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        let v = VolumeName::new("iscsi_lv_bk").unwrap();
        s.create_volume(&v, 0, &[]).unwrap();
        let snap = SnapshotName::new("2011-03-29_23:00:01").unwrap();
        s.create_snapshot(&v, &snap, &[]).unwrap();
        let tag = HoldTag::new("santools-copy-b").unwrap();
        s.hold(&v, &snap, &tag).unwrap();
        s.hold(&v, &snap, &tag).unwrap();
        assert_eq!(s.snapshots(&v).unwrap()[0].holds, vec!["santools-copy-b".to_string()]);
        assert!(matches!(s.destroy_snapshot(&v, &snap), Err(StoreError::Held { .. })));
        assert!(s.release(&v, &snap, &tag).unwrap());
        assert!(!s.release(&v, &snap, &tag).unwrap());
        let c = VolumeName::new("lv_clone").unwrap();
        s.clone_snapshot(&v, &snap, &c).unwrap();
        assert_eq!(s.snapshots(&v).unwrap()[0].clones, vec!["p/lv_clone".to_string()]);
        match s.destroy_snapshot(&v, &snap) {
            Err(StoreError::HasClones { clones, .. }) => assert_eq!(clones, vec!["p/lv_clone".to_string()]),
            other => panic!("{other:?}"),
        }
        s.destroy_clone(&c).unwrap();
        assert!(s.clones().unwrap().is_empty());
        let ns = crate::archive::names::Namespace::new("edu.test").unwrap();
        s.set_property(&v, Some(&snap), &ns.prop("k"), "1").unwrap();
        s.remove_property(&v, Some(&snap), &ns.prop("k")).unwrap();
        assert!(s.snapshots(&v).unwrap()[0].properties.is_empty());
        let space = s.space(&v).unwrap();
        assert_eq!(space.volsize, Some(0));
        s.destroy_snapshot(&v, &snap).unwrap();
    }

    fn store(root: &Path) -> TreeStore {
        TreeStore::new(PoolName::new("p").unwrap(), root.to_path_buf(), Flavor::Plain, Duration::from_secs(60))
    }

    #[test]
    fn dir_snapshots_are_whole_copies_with_their_properties() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        s.check().unwrap();
        let v = VolumeName::new("iscsi_lv_bk").unwrap();
        let ns = crate::archive::names::Namespace::new("edu.test").unwrap();
        let info = s.create_volume(&v, 0, &[(ns.prop("snaprotate_schedule"), "A".into())]).unwrap();
        assert_eq!(info.properties.get("edu.test:snaprotate_schedule").map(String::as_str), Some("A"));
        // Sparse: a hole, then data.
        let f = OpenOptions::new().write(true).open(&info.data_path).unwrap();
        f.set_len(3 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"hello", 2 << 20).unwrap();
        let snap = SnapshotName::new("2011-03-29_23:00:01").unwrap();
        s.create_snapshot(&v, &snap, &[(ns.prop("snap_time"), "1301439601".into())]).unwrap();
        assert!(matches!(s.create_snapshot(&v, &snap, &[]), Err(StoreError::AlreadyExists { .. })));
        f.write_all_at(b"world", 2 << 20).unwrap();
        let list = s.snapshots(&v).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].properties.get("edu.test:snap_time").map(String::as_str), Some("1301439601"));
        let view = s.open_snapshot(&v, &snap).unwrap();
        let bytes = fs::read(&view.data_path).unwrap();
        assert_eq!(bytes.len(), 3 << 20);
        assert_eq!(&bytes[2 << 20..(2 << 20) + 5], b"hello");
        s.set_property(&v, Some(&snap), &ns.prop("snapcheck"), "1:ok").unwrap();
        assert_eq!(s.snapshots(&v).unwrap()[0].properties.get("edu.test:snapcheck").map(String::as_str), Some("1:ok"));
        s.destroy_snapshot(&v, &snap).unwrap();
        assert!(s.snapshots(&v).unwrap().is_empty());
        assert_eq!(s.volumes().unwrap(), vec![v]);
    }
}
