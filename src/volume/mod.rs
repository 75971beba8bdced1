//! One block-volume interface over files, block devices and `iscsi://`
//! LUNs, for the tools that read and write volumes (ddless, and the
//! archive's sources and restore targets).
//!
//! ```no_run
//! use santools::volume::{BlockVolume, VolumeSpec, Access};
//! # fn main() -> std::io::Result<()> {
//! let opts = santools::initiator::InitiatorOptions::new("iqn.2024-01.example:backup");
//! let v = VolumeSpec::parse("iscsi://10.0.0.1/iqn.2024-01.example:vol1/1")?.open(Access::ReadOnly, Some(&opts))?;
//! let mut buf = vec![0u8; 1 << 20];
//! v.read_at(&mut buf, 0)?;
//! # Ok(()) }
//! ```
//!
//! Contract: `read_at` fills the whole buffer or fails; `write_at` writes
//! the whole buffer (iSCSI: whole blocks) or fails; `flush` returns Ok
//! only when everything written before it is durable (fdatasync for
//! files, SYNCHRONIZE CACHE for LUNs). All three may be called from many
//! threads at once.

mod file;

use std::io;
use std::path::PathBuf;

pub use file::FileVolume;

use crate::initiator::{InitiatorOptions, IscsiUrl, IscsiVolume};

pub trait BlockVolume: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// The unit writes must be aligned to (512 for files).
    fn block_size(&self) -> u32;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn flush(&self) -> io::Result<()>;
    /// For messages (passwords redacted).
    fn describe(&self) -> String;
}

/// How to open a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// A volume named by a user: a path or an `iscsi://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeSpec {
    Path(PathBuf),
    Iscsi(IscsiUrl),
}

impl VolumeSpec {
    /// `iscsi://...` must be a LUN URL; anything else is a path.
    pub fn parse(s: &str) -> io::Result<VolumeSpec> {
        if IscsiUrl::is_iscsi_url(s) {
            let u = IscsiUrl::parse_lun(s).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            return Ok(VolumeSpec::Iscsi(u));
        }
        Ok(VolumeSpec::Path(PathBuf::from(s)))
    }

    /// Opens the volume; an iSCSI URL needs `iscsi` options.
    pub fn open(&self, access: Access, iscsi: Option<&InitiatorOptions>) -> io::Result<Box<dyn BlockVolume>> {
        match self {
            VolumeSpec::Path(p) => Ok(Box::new(FileVolume::open(p, access)?)),
            VolumeSpec::Iscsi(u) => {
                let opts = iscsi.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("{u}: no initiator settings given"))
                })?;
                Ok(Box::new(IscsiVolume::open(u, opts)?))
            }
        }
    }
}

impl BlockVolume for IscsiVolume {
    fn size(&self) -> u64 {
        IscsiVolume::size(self)
    }
    fn block_size(&self) -> u32 {
        IscsiVolume::block_size(self)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        Ok(IscsiVolume::read_at(self, buf, offset)?)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        Ok(IscsiVolume::write_at(self, buf, offset)?)
    }
    fn flush(&self) -> io::Result<()> {
        Ok(IscsiVolume::flush(self)?)
    }
    fn describe(&self) -> String {
        self.info().url.clone()
    }
}
