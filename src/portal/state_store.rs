//! Rotation state on disk, one small JSON file per (initiator, target):
//! `<state_directory>/<initiator>/<target>.json`, updated atomically under
//! a lock on the sibling `.lck` file, so the daemon's threads, a restarted
//! daemon and `iscsi-portal-query` share it (the seed's layout).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::rotation::PortalState;
use crate::shared::atomic_file::AtomicFile;

/// Characters kept as they are in file names; anything else is %XX.
fn encode_component(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.starts_with('.') {
        out.replace_range(0..1, "%2E");
    }
    out
}

#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

/// A held lock on one (initiator, target) entry.
pub struct EntryLock {
    _lock: File,
    data: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("state {} is locked by another process for more than {waited:?}", path.display())]
    Busy { path: PathBuf, waited: Duration },
}

impl StateStore {
    pub fn new(dir: &Path) -> Self {
        StateStore { dir: dir.to_path_buf() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn paths(&self, initiator: &str, target: &str) -> (PathBuf, PathBuf, PathBuf) {
        let d = self.dir.join(encode_component(initiator));
        let t = encode_component(target);
        (d.clone(), d.join(format!("{t}.json")), d.join(format!("{t}.lck")))
    }

    /// Locks the entry, waiting up to `wait` for another holder.
    pub fn lock(&self, initiator: &str, target: &str, wait: Duration) -> Result<EntryLock, StateError> {
        let (dir, data, lck) = self.paths(initiator, target);
        fs::create_dir_all(&dir).map_err(|source| StateError::Io { path: dir.clone(), source })?;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&lck)
            .map_err(|source| StateError::Io { path: lck.clone(), source })?;
        let deadline = Instant::now() + wait;
        loop {
            // SAFETY: flock on a valid descriptor.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(EntryLock { _lock: f, data });
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(StateError::Io { path: lck, source: e });
            }
            if Instant::now() >= deadline {
                return Err(StateError::Busy { path: lck, waited: wait });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl EntryLock {
    /// The stored state, or None if there is none (or it is unreadable,
    /// which only costs a rescan: the file is rewritten on save).
    pub fn load(&self) -> Option<PortalState> {
        let bytes = fs::read(&self.data).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("ignoring unreadable state {}: {e}", self.data.display());
                None
            }
        }
    }

    /// Replaces the state atomically. Not fsynced: losing the last few
    /// rotations to a power cut is harmless, and a login must not wait for
    /// the disk.
    pub fn save(&self, state: &PortalState) -> Result<(), StateError> {
        let err = |source| StateError::Io { path: self.data.clone(), source };
        let f = AtomicFile::create(&self.data).map_err(err)?;
        serde_json::to_writer_pretty(f.file(), state).map_err(|e| err(io::Error::other(e)))?;
        f.commit_unsynced().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::target_address::TargetAddress;

    #[test]
    fn round_trip_and_layout() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::new(d.path());
        let lock = store.lock("iqn.1998-01.com.vmware:host1", "iqn.t:vol0", Duration::from_secs(1)).unwrap();
        assert!(lock.load().is_none());
        let mut s = PortalState::new("iqn.1998-01.com.vmware:host1", "iqn.t:vol0");
        s.refresh(vec![TargetAddress::parse("10.0.1.1:3260,1").unwrap()], 42);
        s.next_portal();
        lock.save(&s).unwrap();
        assert_eq!(lock.load(), Some(s));
        assert!(d.path().join("iqn.1998-01.com.vmware:host1/iqn.t:vol0.json").exists());
    }

    #[test]
    fn second_locker_waits_then_gives_up() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::new(d.path());
        let _held = store.lock("iqn.i", "iqn.t", Duration::from_secs(1)).unwrap();
        let t = Instant::now();
        assert!(matches!(store.lock("iqn.i", "iqn.t", Duration::from_millis(50)), Err(StateError::Busy { .. })));
        assert!(t.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn hostile_names_stay_inside_the_directory() {
        assert_eq!(encode_component("../../etc/passwd"), "%2E.%2F..%2Fetc%2Fpasswd");
        assert_eq!(encode_component("iqn.a b"), "iqn.a%20b");
    }
}
