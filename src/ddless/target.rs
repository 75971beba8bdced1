//! The copy target: checked before anything is written, then opened,
//! locked, sized, and written through the commit protocol.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context};

use super::commit::{DurableStore, TargetStore};
use crate::shared::block_device::{device_kind, device_size, DeviceKind};
use crate::shared::file_lock::{lock_exclusive, LockError};
use crate::shared::units::gb;

/// What the read-only inspection found.
#[derive(Debug)]
pub(crate) struct TargetCheck {
    pub path: PathBuf,
    /// None when the target does not exist yet (it will be a regular file).
    pub existing: Option<(DeviceKind, u64, (u64, u64))>,
}

/// Inspects `path` without changing anything: a block device must be at
/// least `source_size` bytes; a missing target must be creatable.
pub(crate) fn check_target(path: &Path, source_size: u64) -> anyhow::Result<TargetCheck> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let kind = device_kind(&meta).with_context(|| format!("target {}", path.display()))?;
            let size = match kind {
                DeviceKind::RegularFile => meta.len(),
                DeviceKind::BlockDevice => {
                    let f = File::open(path).with_context(|| format!("opening target {}", path.display()))?;
                    device_size(&f, kind).with_context(|| format!("size of target {}", path.display()))?
                }
            };
            if kind == DeviceKind::BlockDevice && size < source_size {
                bail!(
                    "target {} is smaller than the source: {} bytes ({}) < {} bytes ({})",
                    path.display(),
                    size,
                    gb(size),
                    source_size,
                    gb(source_size)
                );
            }
            Ok(TargetCheck { path: path.to_path_buf(), existing: Some((kind, size, (meta.dev(), meta.ino()))) })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            if !parent.is_dir() {
                bail!("target {}: directory {} does not exist", path.display(), parent.display());
            }
            Ok(TargetCheck { path: path.to_path_buf(), existing: None })
        }
        Err(e) => Err(e).with_context(|| format!("target {}", path.display())),
    }
}

/// An open, locked target.
pub(crate) struct Target {
    file: File,
    kind: DeviceKind,
    punch: AtomicBool,
    zeros: Vec<u8>,
}

impl Target {
    /// Opens (creating a regular file if needed), locks, and for a regular
    /// file sets the length to the source size.
    pub fn open(check: &TargetCheck, source_size: u64) -> anyhow::Result<Target> {
        let path = &check.path;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(check.existing.is_none())
            .truncate(false)
            .mode(0o644)
            .open(path)
            .with_context(|| format!("opening target {}", path.display()))?;
        lock_exclusive(&file, path).map_err(|e| match e {
            LockError::Busy { .. } => {
                anyhow::anyhow!("target {} is in use by another ddless run (locked)", path.display())
            }
            other => other.into(),
        })?;
        let kind = match check.existing {
            Some((k, _, _)) => k,
            None => DeviceKind::RegularFile,
        };
        let size = device_size(&file, kind).with_context(|| format!("size of target {}", path.display()))?;
        tracing::info!("opened target {} {}", kind.describe(), path.display());
        if kind == DeviceKind::RegularFile && size != source_size {
            // Grown space reads as zeros and holds no data yet; records of
            // segments there are INVALID (new) so they get written.
            file.set_len(source_size).with_context(|| format!("resizing target {}", path.display()))?;
            file.sync_all().with_context(|| format!("syncing target {}", path.display()))?;
            tracing::info!("target file resized from {} to {} bytes", size, source_size);
        }
        let size = device_size(&file, kind)?;
        tracing::info!("target {} size {} bytes ({})", kind.describe(), size, gb(size));
        Ok(Target { file, kind, punch: AtomicBool::new(kind == DeviceKind::RegularFile), zeros: vec![0u8; 1 << 20] })
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        // SAFETY: fallocate on a valid descriptor; no memory is passed.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl DurableStore for Target {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl TargetStore for Target {
    fn write_zeros(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.punch.load(Ordering::Relaxed) {
            match self.punch_hole(offset, len) {
                Ok(()) => return Ok(()),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)) => {
                    tracing::debug!("target file system cannot punch holes ({e}); writing zeros");
                    self.punch.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let mut done = 0;
        while done < len {
            let n = (len - done).min(self.zeros.len() as u64) as usize;
            self.file.write_all_at(&self.zeros[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }

    fn start_writeback(&self) -> io::Result<()> {
        // SAFETY: sync_file_range on a valid descriptor, whole file, no waiting.
        let rc = unsafe { libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // Only a hint: file systems or devices without support are fine.
        match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ESPIPE) | Some(libc::EOPNOTSUPP) => Ok(()),
            _ => Err(e),
        }
    }

    fn prefers_holes(&self) -> bool {
        self.kind == DeviceKind::RegularFile
    }
}
