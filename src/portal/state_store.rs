//! Rotation state on disk, one small JSON file per (initiator, target):
//! `<state_directory>/<initiator>/<target>.json`, updated atomically under
//! a lock on the sibling `.lck` file, so the daemon's threads, a restarted
//! daemon and `iscsi-portal-query` share it (the seed's layout).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
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

/// Threads of this process wanting the same entry queue here rather than
/// polling flock (which they would otherwise do every few milliseconds).
#[derive(Default)]
struct Gate {
    busy: Mutex<bool>,
    free: Condvar,
}

#[derive(Clone, Default)]
pub struct StateStore {
    dir: PathBuf,
    gates: Arc<Mutex<HashMap<PathBuf, Arc<Gate>>>>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").field("dir", &self.dir).finish()
    }
}

/// A held lock on one (initiator, target) entry: the in-process gate, then
/// the flock that other processes (iscsi-portal-query) respect.
pub struct EntryLock {
    _lock: File,
    data: PathBuf,
    gate: Arc<Gate>,
}

impl Drop for EntryLock {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.gate.busy.lock() {
            *busy = false;
        }
        self.gate.free.notify_one();
    }
}

/// Gates kept before unused ones are dropped.
const MAX_GATES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("state {} is locked by another process for more than {waited:?}", path.display())]
    Busy { path: PathBuf, waited: Duration },
}

impl StateStore {
    pub fn new(dir: &Path) -> Self {
        StateStore { dir: dir.to_path_buf(), gates: Arc::default() }
    }

    fn gate(&self, key: &Path) -> Arc<Gate> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        if gates.len() >= MAX_GATES {
            gates.retain(|_, g| Arc::strong_count(g) > 1);
        }
        Arc::clone(gates.entry(key.to_path_buf()).or_default())
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
        let deadline = Instant::now() + wait;
        let gate = self.gate(&data);
        {
            let mut busy = gate.busy.lock().unwrap_or_else(|p| p.into_inner());
            while *busy {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(StateError::Busy { path: lck, waited: wait });
                }
                busy = gate.free.wait_timeout(busy, left).unwrap_or_else(|p| p.into_inner()).0;
            }
            *busy = true;
        }
        // From here on the gate is ours; a guard releases it on every exit.
        struct Release<'a>(&'a Gate, bool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                if self.1 {
                    if let Ok(mut b) = self.0.busy.lock() {
                        *b = false;
                    }
                    self.0.free.notify_one();
                }
            }
        }
        let mut release = Release(&gate, true);
        fs::create_dir_all(&dir).map_err(|source| StateError::Io { path: dir.clone(), source })?;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&lck)
            .map_err(|source| StateError::Io { path: lck.clone(), source })?;
        loop {
            // SAFETY: flock on a valid descriptor.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                release.1 = false;
                drop(release);
                return Ok(EntryLock { _lock: f, data, gate });
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
