//! The copy target: checked before anything is written, then opened,
//! locked, sized, and written through the commit protocol.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::commit::{DurableStore, TargetStore};
use crate::initiator::IscsiVolume;
use crate::shared::block_device::{block_device_read_only, device_kind, device_size, DeviceKind};
use crate::shared::failpoint;
use crate::shared::file_identity::{identify, resolve_dangling, FileIdentity};
use crate::shared::file_lock::{lock_exclusive, LockError, LOCK_WAIT};
use crate::shared::object_stamp::ObjectStamp;
use crate::shared::units::gb;

/// What the read-only inspection found.
#[derive(Debug)]
pub(crate) struct TargetCheck {
    pub path: PathBuf,
    pub identity: FileIdentity,
    /// None when the target does not exist yet (it will be a regular file).
    pub existing: Option<(DeviceKind, u64)>,
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Whether this process may create files in `dir` (EROFS for a read-only
/// file system even as root).
pub(crate) fn dir_writable(dir: &Path) -> io::Result<()> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: faccessat(2) with a valid C string; no memory is written.
    // AT_EACCESS: checked for the effective user, who will create the files.
    if unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK | libc::X_OK, libc::AT_EACCESS) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Inspects `path` without changing anything: a block device must be at
/// least `source_size` bytes; a missing target must be creatable.
pub(crate) fn check_target(path: &Path, source_size: u64) -> anyhow::Result<TargetCheck> {
    let identity = identify(path).with_context(|| format!("target {}", path.display()))?;
    if !identity.exists() {
        let dir =
            parent_dir(&resolve_dangling(path).with_context(|| format!("target {}", path.display()))?).to_path_buf();
        dir_writable(&dir).with_context(|| {
            format!("target {} cannot be created: directory {} is not writable", path.display(), dir.display())
        })?;
        return Ok(TargetCheck { path: path.to_path_buf(), identity, existing: None });
    }
    let meta = std::fs::metadata(path).with_context(|| format!("target {}", path.display()))?;
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
    Ok(TargetCheck { path: path.to_path_buf(), identity, existing: Some((kind, size)) })
}

/// Opens an existing target for writing without changing it, so that a
/// read-only or busy target is refused before anything is created. A block
/// device is opened O_EXCL: the kernel then refuses a second exclusive
/// opener of the same device (whichever node names it) and a mounted one.
pub(crate) fn open_existing(check: &TargetCheck) -> anyhow::Result<Option<File>> {
    let Some((kind, _)) = check.existing else { return Ok(None) };
    let path = &check.path;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let mut o = OpenOptions::new();
        o.read(true).write(true);
        if kind == DeviceKind::BlockDevice {
            o.custom_flags(libc::O_EXCL);
        }
        match o.open(path) {
            Ok(f) => {
                // The node opened must still be what was inspected.
                if FileIdentity::of_file(&f).ok().as_ref() != Some(&check.identity) {
                    bail!("target {} changed while it was being opened; nothing was changed", path.display());
                }
                if kind == DeviceKind::BlockDevice && block_device_read_only(&f).unwrap_or(false) {
                    bail!("target device {} is not writable (read-only); nothing was changed", path.display());
                }
                return Ok(Some(f));
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if Instant::now() >= deadline {
                    bail!(
                        "target device {} is in use (mounted, held by another program, or written by another ddless run); nothing was changed",
                        path.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM)) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("target {} is not writable; nothing was changed", path.display())))
            }
            Err(e) => return Err(e).with_context(|| format!("opening target {}", path.display())),
        }
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
    /// Takes the opened existing target, or creates the missing regular
    /// file (mode 0600: it holds a volume's data), and locks it. Its size is
    /// not touched here: resizing goes through the commit protocol.
    pub fn open(check: &TargetCheck, existing: Option<File>) -> anyhow::Result<Target> {
        let path = &check.path;
        let (file, kind) = match (existing, check.existing) {
            (Some(f), Some((kind, _))) => (f, kind),
            _ => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("creating target {}", path.display()))?;
                tracing::info!("target file {} not found, created it", path.display());
                (f, DeviceKind::RegularFile)
            }
        };
        lock_exclusive(&file, path).map_err(|e| match e {
            LockError::Busy { .. } => {
                anyhow::anyhow!("target {} is in use by another ddless run (locked)", path.display())
            }
            other => other.into(),
        })?;
        tracing::info!("opened target {} {}", kind.describe(), path.display());
        Ok(Target { file, kind, punch: AtomicBool::new(kind == DeviceKind::RegularFile), zeros: vec![0u8; 1 << 20] })
    }

    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    pub fn size(&self) -> io::Result<u64> {
        device_size(&self.file, self.kind)
    }

    pub fn stamp(&self) -> io::Result<ObjectStamp> {
        ObjectStamp::of_file(&self.file)
    }

    /// Sets a regular file's length and makes it durable. Callers first make
    /// the records of every segment the resize changes durably INVALID.
    pub fn resize(&self, len: u64) -> io::Result<()> {
        failpoint::hit("ddless.before-target-resize");
        self.file.set_len(len)?;
        failpoint::hit("ddless.after-target-resize");
        self.file.sync_all()
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
    fn write_zeros(&self, offset: u64, len: u64) -> io::Result<bool> {
        if self.punch.load(Ordering::Relaxed) {
            match self.punch_hole(offset, len) {
                Ok(()) => return Ok(true),
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
        Ok(false)
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

/// An iSCSI LUN as a copy target. Writes go out as WRITE(16) in whole
/// blocks: a range that does not start or end on a block boundary (the
/// short last segment of a source that is no multiple of the LUN's block
/// size, or segments of a LUN with blocks larger than 16 KiB) is read,
/// patched and written back whole; the bytes around it are the LUN's own
/// and no record describes them. `sync` is SYNCHRONIZE CACHE, and fails
/// when a reconnect may have lost acknowledged writes, so the commit
/// protocol never records them. A LUN is never resized: one smaller than
/// the source is refused before anything is written.
pub(crate) struct LunTarget {
    vol: IscsiVolume,
    zeros: Vec<u8>,
}

fn lun_io(e: crate::initiator::InitiatorError) -> io::Error {
    io::Error::from(e)
}

impl LunTarget {
    pub fn new(vol: IscsiVolume) -> LunTarget {
        LunTarget { vol, zeros: vec![0u8; 1 << 20] }
    }
}

impl DurableStore for LunTarget {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let bs = u64::from(self.vol.block_size());
        let end = offset + buf.len() as u64;
        if offset % bs == 0 && end % bs == 0 {
            return self.vol.write_at(buf, offset).map_err(lun_io);
        }
        // The aligned middle straight from `buf`; each partial end block
        // read, patched and written whole.
        let first = offset / bs * bs;
        let last = end.div_ceil(bs) * bs;
        let patch = |block: u64| -> io::Result<()> {
            let mut b = vec![0u8; bs as usize];
            self.vol.read_at(&mut b, block).map_err(lun_io)?;
            let (from, to) = (offset.max(block), end.min(block + bs));
            b[(from - block) as usize..(to - block) as usize]
                .copy_from_slice(&buf[(from - offset) as usize..(to - offset) as usize]);
            self.vol.write_at(&b, block).map_err(lun_io)
        };
        if last - first == bs {
            return patch(first);
        }
        let (head_partial, tail_partial) = (offset % bs != 0, end % bs != 0);
        let mid_start = if head_partial { first + bs } else { first };
        let mid_end = if tail_partial { last - bs } else { last };
        if head_partial {
            patch(first)?;
        }
        if mid_end > mid_start {
            let data = &buf[(mid_start - offset) as usize..(mid_end - offset) as usize];
            self.vol.write_at(data, mid_start).map_err(lun_io)?;
        }
        if tail_partial {
            patch(last - bs)?;
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.vol.flush().map_err(lun_io)
    }
}

impl TargetStore for LunTarget {
    fn write_zeros(&self, offset: u64, len: u64) -> io::Result<bool> {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(self.zeros.len() as u64) as usize;
            DurableStore::write_at(self, &self.zeros[..n], offset + done)?;
            done += n as u64;
        }
        Ok(false)
    }

    fn start_writeback(&self) -> io::Result<()> {
        // WRITE(16) is on its way to the target already.
        Ok(())
    }

    fn prefers_holes(&self) -> bool {
        false
    }
}

/// A copy's target: a local file or block device, or an iSCSI LUN.
pub(crate) enum CopyTarget {
    Local(Target),
    Lun(LunTarget),
}

impl CopyTarget {
    pub fn is_regular_file(&self) -> bool {
        matches!(self, CopyTarget::Local(t) if t.kind() == DeviceKind::RegularFile)
    }

    pub fn describe_kind(&self) -> &'static str {
        match self {
            CopyTarget::Local(t) => t.kind().describe(),
            CopyTarget::Lun(_) => "iSCSI LUN",
        }
    }

    pub fn size(&self) -> io::Result<u64> {
        match self {
            CopyTarget::Local(t) => t.size(),
            CopyTarget::Lun(l) => Ok(l.vol.size()),
        }
    }

    pub fn stamp(&self) -> io::Result<ObjectStamp> {
        match self {
            CopyTarget::Local(t) => t.stamp(),
            CopyTarget::Lun(l) => Ok(super::volume::lun_stamp(&l.vol)),
        }
    }

    /// Resizes a regular-file target (callers only ask for files).
    pub fn resize(&self, len: u64) -> io::Result<()> {
        match self {
            CopyTarget::Local(t) => t.resize(len),
            CopyTarget::Lun(_) => Err(io::Error::other("internal: an iSCSI LUN is never resized")),
        }
    }
}

impl DurableStore for CopyTarget {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        match self {
            CopyTarget::Local(t) => DurableStore::write_at(t, buf, offset),
            CopyTarget::Lun(l) => DurableStore::write_at(l, buf, offset),
        }
    }
    fn sync(&self) -> io::Result<()> {
        match self {
            CopyTarget::Local(t) => t.sync(),
            CopyTarget::Lun(l) => l.sync(),
        }
    }
}

impl TargetStore for CopyTarget {
    fn write_zeros(&self, offset: u64, len: u64) -> io::Result<bool> {
        match self {
            CopyTarget::Local(t) => t.write_zeros(offset, len),
            CopyTarget::Lun(l) => l.write_zeros(offset, len),
        }
    }
    fn start_writeback(&self) -> io::Result<()> {
        match self {
            CopyTarget::Local(t) => t.start_writeback(),
            CopyTarget::Lun(l) => l.start_writeback(),
        }
    }
    fn prefers_holes(&self) -> bool {
        match self {
            CopyTarget::Local(t) => t.prefers_holes(),
            CopyTarget::Lun(l) => l.prefers_holes(),
        }
    }
}
