//! Opening a source volume (file, block device or `iscsi://` LUN) and
//! reading it, with O_DIRECT when asked (files and devices).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::initiator::IscsiVolume;
use crate::shared::aligned_buffer::DIRECT_IO_ALIGN;
use crate::shared::block_device::{device_kind, device_size, DeviceKind};
use crate::shared::file_identity::RolePath;
use crate::shared::object_stamp::ObjectStamp;
use crate::volume::{IscsiSpec, VolumeSpec};

/// Where a volume's bytes are.
pub(crate) enum Backend {
    File { file: File, path: PathBuf, kind: DeviceKind },
    Lun(IscsiVolume),
}

/// An open source volume.
pub(crate) struct Volume {
    /// The path, or the URL with passwords redacted (for messages).
    pub name: String,
    pub backend: Backend,
    pub size: u64,
    /// O_DIRECT (files and devices only).
    pub direct: bool,
}

fn is_einval(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// Logs in to a LUN for a ddless run; `role` names it in errors.
pub(crate) fn open_lun(s: &IscsiSpec, role: &str) -> anyhow::Result<IscsiVolume> {
    IscsiVolume::open(&s.url, &s.options).with_context(|| format!("{role} {}", s.url))
}

/// A LUN's stamp: kind `lun`, its identity (target, LUN, designators).
pub(crate) fn lun_stamp(v: &IscsiVolume) -> ObjectStamp {
    ObjectStamp::lun(v.info().identity())
}

/// Warns once when a LUN has no global name to bind records to.
pub(crate) fn warn_if_unidentified(v: &IscsiVolume, role: &str) -> Option<String> {
    if !v.info().designators.is_empty() {
        return None;
    }
    let w = format!(
        "{role} {}: the target reports no device identifier for the LUN (VPD 0x83 or 0x80): a LUN recreated under the same target name and number cannot be told apart from the old one",
        v.info().url
    );
    tracing::warn!("{w}");
    Some(w)
}

impl Volume {
    /// Opens the source read-only; with `direct`, O_DIRECT, failing
    /// clearly if the file system refuses it. A LUN is logged in to.
    pub fn open_source(spec: &VolumeSpec, direct: bool) -> anyhow::Result<Volume> {
        match spec {
            VolumeSpec::Path(p) => Self::open_path(p, direct),
            VolumeSpec::Iscsi(s) => {
                if direct {
                    tracing::info!("-d (O_DIRECT) does not apply to an iSCSI source: reads go to the target directly");
                }
                let v = open_lun(s, "source")?;
                warn_if_unidentified(&v, "source");
                tracing::info!("opened source iSCSI LUN {}", s.url);
                Ok(Volume { name: s.url.to_string(), size: v.size(), backend: Backend::Lun(v), direct: false })
            }
        }
    }

    fn open_path(path: &Path, direct: bool) -> anyhow::Result<Volume> {
        let meta = std::fs::metadata(path).with_context(|| format!("source {}", path.display()))?;
        let kind = device_kind(&meta).with_context(|| format!("source {}", path.display()))?;
        let mut opts = OpenOptions::new();
        opts.read(true);
        if direct {
            opts.custom_flags(libc::O_DIRECT);
        }
        let file = match opts.open(path) {
            Ok(f) => f,
            Err(e) if direct && is_einval(&e) => {
                bail!("source {}: the file system refuses O_DIRECT (-d); run without -d", path.display())
            }
            Err(e) => return Err(e).with_context(|| format!("opening source {}", path.display())),
        };
        let size = device_size(&file, kind).with_context(|| format!("size of source {}", path.display()))?;
        tracing::info!("opened source {} {}", kind.describe(), path.display());
        Ok(Volume {
            name: path.display().to_string(),
            backend: Backend::File { file, path: path.to_path_buf(), kind },
            size,
            direct,
        })
    }

    /// "file", "device" or "iSCSI LUN", for log lines.
    pub fn kind_name(&self) -> &'static str {
        match &self.backend {
            Backend::File { kind, .. } => kind.describe(),
            Backend::Lun(_) => "iSCSI LUN",
        }
    }

    /// The open file, for a file or block device.
    pub fn file(&self) -> Option<&File> {
        match &self.backend {
            Backend::File { file, .. } => Some(file),
            Backend::Lun(_) => None,
        }
    }

    pub fn lun(&self) -> Option<&IscsiVolume> {
        match &self.backend {
            Backend::Lun(v) => Some(v),
            Backend::File { .. } => None,
        }
    }

    /// What the volume is, for the check that no two roles of a run name
    /// the same object.
    pub fn role_path(&self, role: &str) -> anyhow::Result<RolePath> {
        match &self.backend {
            Backend::File { file, path, .. } => {
                RolePath::of_open(role, path, file).with_context(|| format!("{role} {}", path.display()))
            }
            Backend::Lun(v) => Ok(RolePath::lun(role, &v.info().url, v.info().identity())),
        }
    }

    /// The stable name a checksum file's records are bound to.
    pub fn stamp(&self) -> io::Result<ObjectStamp> {
        match &self.backend {
            Backend::File { file, .. } => ObjectStamp::of_file(file),
            Backend::Lun(v) => Ok(lun_stamp(v)),
        }
    }

    /// Fills `buf[..len]` from byte `offset`. With O_DIRECT the request is
    /// rounded up to the alignment (`buf` must have room); the kernel stops
    /// at the end of the volume.
    pub fn read_at(&self, buf: &mut [u8], offset: u64, len: usize) -> io::Result<()> {
        let file = match &self.backend {
            Backend::Lun(v) => return Ok(v.read_at(&mut buf[..len], offset)?),
            Backend::File { file, .. } => file,
        };
        let want = if self.direct { len.div_ceil(DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN } else { len };
        let mut done = 0;
        while done < len {
            match file.read_at(&mut buf[done..want], offset + done as u64) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("source ended at byte {} (did it shrink during the run?)", offset + done as u64),
                    ))
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.direct && is_einval(&e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("O_DIRECT read refused ({e}); the file system does not support -d"),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads `(volume offset, buffer)` pairs: a LUN gets them as one batch
    /// of commands in flight together, a file one after the other.
    pub fn read_scattered(&self, reqs: &mut [(u64, &mut [u8])]) -> io::Result<()> {
        if let Backend::Lun(v) = &self.backend {
            let bs = u64::from(v.block_size());
            if reqs.iter().all(|(off, b)| off % bs == 0 && b.len() as u64 % bs == 0) {
                return Ok(v.read_many(reqs)?);
            }
        }
        for (off, b) in reqs.iter_mut() {
            let len = b.len();
            self.read_at(b, *off, len)?;
        }
        Ok(())
    }

    /// Reads several ranges of the volume into `buf`: `(offset in buf,
    /// volume offset, length)` each. A LUN gets them as one batch of
    /// commands in flight together (the way to read a ddmap's scattered
    /// segments fast); a file one after the other.
    pub fn read_ranges(&self, buf: &mut [u8], ranges: &[(usize, u64, usize)]) -> io::Result<()> {
        if self.lun().is_some() {
            let mut reqs: Vec<(u64, &mut [u8])> = Vec::with_capacity(ranges.len());
            let mut rest: &mut [u8] = buf;
            let mut consumed = 0;
            for &(at, off, len) in ranges {
                let tail = std::mem::take(&mut rest);
                let (_, from_at) = tail.split_at_mut(at - consumed);
                let (this, after) = from_at.split_at_mut(len);
                reqs.push((off, this));
                rest = after;
                consumed = at + len;
            }
            return self.read_scattered(&mut reqs);
        }
        // A file: one after the other (with O_DIRECT, read_at needs the
        // room behind each range that `buf` has).
        for &(at, off, len) in ranges {
            self.read_at(&mut buf[at..], off, len)?;
        }
        Ok(())
    }
}
