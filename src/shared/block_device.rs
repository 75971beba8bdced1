//! What a source or target path is (regular file or block device) and how
//! large it is. A block device's size comes from the kernel (BLKGETSIZE64),
//! never from seeking.

use std::fs::{File, Metadata};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    RegularFile,
    BlockDevice,
}

impl DeviceKind {
    pub fn describe(&self) -> &'static str {
        match self {
            DeviceKind::RegularFile => "file",
            DeviceKind::BlockDevice => "device",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("is a {kind}, expected a regular file or a block device")]
pub struct UnsupportedKind {
    pub kind: &'static str,
}

pub fn device_kind(meta: &Metadata) -> Result<DeviceKind, UnsupportedKind> {
    let ft = meta.file_type();
    if ft.is_file() {
        Ok(DeviceKind::RegularFile)
    } else if ft.is_block_device() {
        Ok(DeviceKind::BlockDevice)
    } else {
        let kind = if ft.is_dir() {
            "directory"
        } else if ft.is_char_device() {
            "character device"
        } else if ft.is_fifo() {
            "FIFO"
        } else if ft.is_socket() {
            "socket"
        } else {
            "special file"
        };
        Err(UnsupportedKind { kind })
    }
}

nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
nix::ioctl_read_bad!(blkroget, 0x125E, libc::c_int);

/// Whether an open block device is read-only (BLKROGET): the kernel lets
/// such a device be opened for writing and only refuses the writes.
pub fn block_device_read_only(file: &File) -> io::Result<bool> {
    let mut ro: libc::c_int = 0;
    // SAFETY: BLKROGET writes one int through the pointer we pass.
    unsafe { blkroget(file.as_raw_fd(), &mut ro) }.map_err(io::Error::from)?;
    Ok(ro != 0)
}

/// Opens `path` read-only without blocking on a FIFO: open(2) of a FIFO
/// waits for a writer forever, so `lvm-devsize FIFO` (or a FIFO named as a
/// LUN's device) hung instead of being refused by [`device_kind`].
/// O_NONBLOCK changes nothing for regular files and block devices.
pub fn open_nonblocking(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)
}

/// Size in bytes of the regular file or block device at `path`.
pub fn size_of_path(path: &std::path::Path) -> io::Result<u64> {
    let f = open_nonblocking(path)?;
    let kind = device_kind(&f.metadata()?).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    device_size(&f, kind)
}

/// Size in bytes of an open regular file or block device.
pub fn device_size(file: &File, kind: DeviceKind) -> io::Result<u64> {
    match kind {
        DeviceKind::RegularFile => Ok(file.metadata()?.len()),
        DeviceKind::BlockDevice => {
            let mut size: u64 = 0;
            // SAFETY: BLKGETSIZE64 writes one u64 through the pointer we pass.
            unsafe { blkgetsize64(file.as_raw_fd(), &mut size) }.map_err(io::Error::from)?;
            Ok(size)
        }
    }
}
