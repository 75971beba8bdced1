//! Atomic replacement of a file: write a temporary file in the same
//! directory, fsync it, rename it over the destination, fsync the directory.
//! A crash at any point leaves either the old file or the new one, never a
//! mix; an abandoned temporary is removed on drop.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::shared::failpoint;

/// A file being written under a temporary name next to its destination.
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    temp_path: PathBuf,
    final_path: PathBuf,
    committed: bool,
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsyncs the directory holding `path`, making a rename in it durable.
pub fn sync_parent_dir(path: &Path) -> io::Result<()> {
    File::open(parent_dir(path))?.sync_all()
}

impl AtomicFile {
    /// Creates `.<name>.tmp.<pid>.<n>` beside `final_path` with mode 0644.
    pub fn create(final_path: &Path) -> io::Result<Self> {
        let name = final_path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
            .to_string_lossy()
            .into_owned();
        let dir = parent_dir(final_path);
        for attempt in 0..100u32 {
            let temp_path = dir.join(format!(".{name}.tmp.{}.{attempt}", std::process::id()));
            match OpenOptions::new().read(true).write(true).create_new(true).mode(0o644).open(&temp_path) {
                Ok(file) => {
                    return Ok(AtomicFile { file, temp_path, final_path: final_path.to_path_buf(), committed: false })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free temporary file name"))
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// Puts the new content in place without fsync: atomic (readers see the
    /// old or the new file) but not durable across a power cut. For state
    /// that is cheap to lose and written too often to sync.
    pub fn commit_unsynced(mut self) -> io::Result<()> {
        fs::rename(&self.temp_path, &self.final_path)?;
        self.committed = true;
        Ok(())
    }

    /// Makes the new content durable and puts it in place.
    pub fn commit(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        failpoint::hit("atomic.before-rename");
        fs::rename(&self.temp_path, &self.final_path)?;
        self.committed = true;
        sync_parent_dir(&self.final_path)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

/// Atomically replaces `path` with `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let f = AtomicFile::create(path)?;
    (&f.file).write_all(bytes)?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        fs::write(&p, b"old").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        {
            let f = AtomicFile::create(&p).unwrap();
            use std::io::Write;
            (&f.file).write_all(b"abandoned").unwrap();
        }
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temp file left behind");
    }
}
