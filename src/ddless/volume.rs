//! Opening a source volume (file or block device) and reading it, with
//! O_DIRECT when asked.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::shared::aligned_buffer::DIRECT_IO_ALIGN;
use crate::shared::block_device::{device_kind, device_size, DeviceKind};

/// An open source volume.
#[derive(Debug)]
pub(crate) struct Volume {
    pub file: File,
    pub path: PathBuf,
    pub kind: DeviceKind,
    pub size: u64,
    pub direct: bool,
}

fn is_einval(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

impl Volume {
    /// Opens `path` read-only; with `direct`, O_DIRECT, failing clearly if
    /// the file system refuses it.
    pub fn open_source(path: &Path, direct: bool) -> anyhow::Result<Volume> {
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
        Ok(Volume { file, path: path.to_path_buf(), kind, size, direct })
    }

    /// Fills `buf[..len]` from byte `offset`. With O_DIRECT the request is
    /// rounded up to the alignment (`buf` must have room); the kernel stops
    /// at the end of the volume.
    pub fn read_at(&self, buf: &mut [u8], offset: u64, len: usize) -> io::Result<()> {
        let want = if self.direct { len.div_ceil(DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN } else { len };
        let mut done = 0;
        while done < len {
            match self.file.read_at(&mut buf[done..want], offset + done as u64) {
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
}
