//! A file or block device as a [`BlockVolume`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Access, BlockVolume};
use crate::shared::block_device::{device_kind, device_size};

pub struct FileVolume {
    file: File,
    path: PathBuf,
    size: u64,
}

impl FileVolume {
    pub fn open(path: &Path, access: Access) -> io::Result<FileVolume> {
        let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let file = OpenOptions::new().read(true).write(access == Access::ReadWrite).open(path).map_err(ctx)?;
        let meta = file.metadata().map_err(ctx)?;
        let kind = device_kind(&meta)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: {e}", path.display())))?;
        let size = device_size(&file, kind).map_err(ctx)?;
        Ok(FileVolume { file, path: path.to_path_buf(), size })
    }
}

impl BlockVolume for FileVolume {
    fn size(&self) -> u64 {
        self.size
    }

    fn block_size(&self) -> u32 {
        512
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset).map_err(|e| {
            let what = if e.kind() == io::ErrorKind::UnexpectedEof { "ended early (did it shrink?)" } else { "read" };
            io::Error::new(e.kind(), format!("{}: {what} at offset {offset}: {e}", self.path.display()))
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: write at offset {offset}: {e}", self.path.display())))
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data().map_err(|e| io::Error::new(e.kind(), format!("{}: fdatasync: {e}", self.path.display())))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v.img");
        std::fs::write(&p, vec![0u8; 8192]).unwrap();
        let v = FileVolume::open(&p, Access::ReadWrite).unwrap();
        assert_eq!(v.size(), 8192);
        v.write_at(&[7u8; 512], 1024).unwrap();
        v.flush().unwrap();
        let mut b = [0u8; 512];
        v.read_at(&mut b, 1024).unwrap();
        assert_eq!(b, [7u8; 512]);
        let e = v.read_at(&mut b, 8000).unwrap_err();
        assert!(e.to_string().contains("v.img"), "{e}");
        let ro = FileVolume::open(&p, Access::ReadOnly).unwrap();
        assert!(ro.write_at(&[1u8; 512], 0).is_err());
    }
}
