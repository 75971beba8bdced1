//! The per-volume lock: backup, restore-from, snapcheck, maintenance and
//! rotation of one archive volume never overlap.
//!
//! An flock on `<lock dir>/<pool>@<volume>.lock` (pool slashes as `%`). The
//! file is never replaced or removed (that would split the lock between
//! two inodes); the holder writes who it is into it, so a refused run can
//! say who holds the lock.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::archive::names::VolumeRef;
use crate::shared::file_lock::{lock_exclusive_within, open_or_create, LockError, LOCK_WAIT};

#[derive(Debug, thiserror::Error)]
pub enum VolumeLockError {
    #[error("archive volume {volume} is locked by {holder} (lock file {}); try again later or use --wait SECONDS", path.display())]
    Busy { volume: String, holder: String, path: PathBuf },
    #[error("lock file {}: {cause}", path.display())]
    Io { path: PathBuf, cause: io::Error },
    /// Named as the setting a user changes: a new user's run fails here first.
    #[error("lock directory {} ([archive] lock_dir): {cause}", path.display())]
    Dir { path: PathBuf, cause: io::Error },
}

/// A held volume lock; released on drop.
#[derive(Debug)]
pub struct VolumeLock {
    _file: File,
    path: PathBuf,
}

impl VolumeLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lock file of a volume.
pub fn lock_path(lock_dir: &Path, volume: &VolumeRef) -> PathBuf {
    lock_dir.join(format!("{}@{}.lock", volume.pool.as_str().replace('/', "%"), volume.volume))
}

fn holder_of(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.rewind();
    let _ = Read::by_ref(file).take(4096).read_to_string(&mut s);
    let s = s.trim();
    if s.is_empty() {
        "another process".to_string()
    } else {
        s.replace('\n', " ")
    }
}

/// Takes the lock of `volume` for `tool`, waiting up to `wait`.
pub fn lock_volume(
    lock_dir: &Path,
    volume: &VolumeRef,
    tool: &str,
    wait: Duration,
) -> Result<VolumeLock, VolumeLockError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| VolumeLockError::Io { path, cause }
    };
    std::fs::create_dir_all(lock_dir).map_err(|cause| VolumeLockError::Dir { path: lock_dir.to_path_buf(), cause })?;
    let path = lock_path(lock_dir, volume);
    let mut file = open_or_create(&path).map_err(io_err(&path))?;
    // Wait in short rounds so a long --wait still notices the holder leaving.
    // At least LOCK_WAIT: a child we fork from another thread briefly
    // shares our descriptors between fork and exec (see file_lock).
    let deadline = Instant::now() + wait.max(LOCK_WAIT);
    loop {
        let round = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
        match lock_exclusive_within(&file, &path, round) {
            Ok(()) => break,
            Err(LockError::Busy { .. }) if Instant::now() < deadline => continue,
            Err(LockError::Busy { .. }) => {
                return Err(VolumeLockError::Busy { volume: volume.to_string(), holder: holder_of(&mut file), path })
            }
            Err(LockError::Io { source, .. }) => return Err(VolumeLockError::Io { path, cause: source }),
        }
    }
    let started = jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
    let info = format!("{tool} (pid {}, started {started})\n", std::process::id());
    file.set_len(0).map_err(io_err(&path))?;
    file.rewind().map_err(io_err(&path))?;
    file.write_all(info.as_bytes()).map_err(io_err(&path))?;
    Ok(VolumeLock { _file: file, path })
}

/// Takes the pool-wide lock (`<lock dir>/<pool>.pool.lock`) for the short
/// steps that touch what all volumes of a pool share, such as creating the
/// checksum directory.
pub fn lock_pool(
    lock_dir: &Path,
    pool: &crate::archive::names::PoolName,
    wait: Duration,
) -> Result<VolumeLock, VolumeLockError> {
    std::fs::create_dir_all(lock_dir).map_err(|cause| VolumeLockError::Io { path: lock_dir.to_path_buf(), cause })?;
    let path = lock_dir.join(format!("{}.pool.lock", pool.as_str().replace('/', "%")));
    let file = open_or_create(&path).map_err(|cause| VolumeLockError::Io { path: path.clone(), cause })?;
    match lock_exclusive_within(&file, &path, wait.max(LOCK_WAIT)) {
        Ok(()) => Ok(VolumeLock { _file: file, path }),
        Err(LockError::Busy { .. }) => {
            Err(VolumeLockError::Busy { volume: format!("pool {pool}"), holder: "another run".into(), path })
        }
        Err(LockError::Io { source, .. }) => Err(VolumeLockError::Io { path, cause: source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::names::{PoolName, VolumeName};

    #[test]
    fn second_locker_learns_who_holds_it() {
        let d = tempfile::tempdir().unwrap();
        let v = VolumeRef::new(PoolName::new("tank/a").unwrap(), VolumeName::new("iscsi_lv_bk").unwrap());
        let held = lock_volume(d.path(), &v, "backup", Duration::ZERO).unwrap();
        assert!(held.path().ends_with("tank%a@iscsi_lv_bk.lock"));
        let e = lock_volume(d.path(), &v, "snapcheck", Duration::from_millis(50)).unwrap_err().to_string();
        assert!(e.contains("backup (pid"), "{e}");
        drop(held);
        lock_volume(d.path(), &v, "snapcheck", Duration::ZERO).unwrap();
    }

    #[test]
    fn a_lock_dir_that_cannot_be_made_is_named_as_the_setting() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("plain");
        std::fs::write(&file, b"").unwrap();
        let v = VolumeRef::new(PoolName::new("tank").unwrap(), VolumeName::new("iscsi_lv_bk").unwrap());
        let e = lock_volume(&file.join("locks"), &v, "backup", Duration::ZERO).unwrap_err().to_string();
        assert!(e.starts_with(&format!("lock directory {}/locks ([archive] lock_dir): ", file.display())), "{e}");
    }
}
