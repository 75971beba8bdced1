//! Advisory exclusive locks (flock) that keep two runs from working on the
//! same checksum file, target or map at once.
//!
//! A lock is retried for a short while before it counts as busy: in a
//! process that spawns commands from other threads (the archive backup runs
//! ddless in-process), a child between fork and exec briefly shares our
//! open files and with them a lock we just released. A real concurrent run
//! holds its lock for its whole duration, so it is still refused.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::shared::file_identity::trusted_symlink_target;

/// How long a lock is retried before it counts as held by someone else.
pub const LOCK_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{} is locked by another running process", path.display())]
    Busy { path: PathBuf },
    #[error("locking {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// Opens a file for reading and writing, creating it (mode 0644) but never
/// truncating it: lock files, pid files, checksum files. Symlinks are
/// followed only when this user or root made them (a lock file's name is
/// often in a shared directory: `/tmp/sums.lock`).
pub fn open_or_create(path: &Path) -> io::Result<File> {
    let target = trusted_symlink_target(path)?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&target)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} became a symlink while it was opened: refusing to follow it", target.display()),
            ),
            _ => e,
        })
}

/// Takes an exclusive flock on an open file, retrying for [`LOCK_WAIT`].
pub fn lock_exclusive(file: &File, path: &Path) -> Result<(), LockError> {
    lock_exclusive_within(file, path, LOCK_WAIT)
}

/// Takes an exclusive flock on an open file, retrying for `wait`.
pub fn lock_exclusive_within(file: &File, path: &Path, wait: Duration) -> Result<(), LockError> {
    // A wait too long for an Instant (--wait 18446744073709551615) is a
    // wait without end, not an overflow panic.
    let deadline = Instant::now().checked_add(wait);
    loop {
        // SAFETY: flock on a valid open descriptor has no memory effects.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(LockError::Io { path: path.to_path_buf(), source: err });
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(LockError::Busy { path: path.to_path_buf() });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A held lock on a sidecar lock file (`<path>.lock`). The lock file stays
/// in place after release: removing it would race with a waiting locker.
#[derive(Debug)]
pub struct LockFile {
    _file: File,
    path: PathBuf,
}

impl LockFile {
    /// Locks `<protected>.lock`, creating it if needed.
    pub fn for_path(protected: &Path) -> Result<Self, LockError> {
        let mut name = protected.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let file = open_or_create(&path).map_err(|source| LockError::Io { path: path.clone(), source })?;
        lock_exclusive(&file, &path)?;
        Ok(LockFile { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_locker_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sums");
        let held = LockFile::for_path(&p).unwrap();
        match LockFile::for_path(&p) {
            Err(LockError::Busy { path }) => assert!(path.ends_with("sums.lock")),
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(held);
        LockFile::for_path(&p).unwrap();
    }

    /// A lock or checksum file name in a shared directory: a symlink another
    /// user planted there (`/tmp/sums.lock -> /root/new`) had root's ddless
    /// create the file it pointed to, wherever that was.
    #[test]
    fn a_symlink_of_another_user_is_not_followed() {
        if crate::shared::file_identity::euid() != 0 {
            eprintln!("SKIPPED: giving a symlink to another user needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        let link = dir.path().join("sums.lock");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
        let e = LockFile::for_path(&dir.path().join("sums")).unwrap_err().to_string();
        assert!(e.contains("symlink of uid 65534") && e.contains("refusing to follow it"), "{e}");
        assert!(!victim.exists(), "created through the link");
        std::os::unix::fs::lchown(&link, Some(0), Some(0)).unwrap();
        LockFile::for_path(&dir.path().join("sums")).unwrap();
        assert!(victim.exists(), "root's own link is followed");
    }

    /// Finding (attack-final): a wait too long for an Instant panicked
    /// ("overflow when adding duration to instant") before trying the lock.
    #[test]
    fn an_endless_wait_does_not_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let f = File::create(&p).unwrap();
        lock_exclusive_within(&f, &p, Duration::MAX).unwrap();
    }
}
