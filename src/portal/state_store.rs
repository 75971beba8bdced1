//! Rotation state on disk, one small JSON file per (discovery portal,
//! initiator, target): `<state_directory>/<portal>/<initiator>/<target>.json`,
//! replaced atomically under a lock on the sibling `.lck` file, so the
//! daemon's threads, a restarted daemon and `iscsi-portal-query` share it.
//! Each discovery portal (VLAN, fabric) rotates on its own: a login on one
//! never sees another portal group's addresses.
//!
//! Entries nobody used for `state_expiry_sec` are removed by [`StateStore::sweep`];
//! write failures (a full or read-only file system) are logged once per
//! change of state, not per entry and flush ([`WriteHealth`]).
//!
//! The daemon's store is write-behind: a redirect reads and advances the
//! state in memory and a flusher writes changed entries every
//! [`FLUSH_INTERVAL`] (and at shutdown). Writing the file on every login
//! made each redirect a file create + rename, and ext4 starts writeback of
//! a file renamed over another, so logins waited for the disk (~5,000/s,
//! p99 48 ms at 64 clients). A file changed by another process (the query
//! tool) is noticed by its stamp and wins over the memory. A daemon killed
//! outright loses at most the last interval's rotation steps: harmless, the
//! next login simply starts from an earlier portal.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::rotation::PortalState;
use crate::shared::atomic_file::AtomicFile;
use crate::shared::file_lock::{lock_exclusive_within, open_or_create, LockError};

/// How often the daemon writes changed rotation state.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

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

/// Identity of one version of a state file: every save is a new inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    mtime_ns: i64,
    size: u64,
}

fn stamp_of(path: &Path) -> Option<FileStamp> {
    let m = fs::metadata(path).ok()?;
    Some(FileStamp { ino: m.ino(), mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(), size: m.size() })
}

/// What the daemon remembers of one entry.
struct Remembered {
    state: PortalState,
    /// The file version `state` was read from or last written as (None:
    /// no file).
    stamp: Option<FileStamp>,
    /// Changed in memory since.
    dirty: bool,
}

/// One (initiator, target) entry inside this process: threads wanting it
/// queue on `busy` rather than polling flock, and the write-behind memory.
#[derive(Default)]
struct Entry {
    busy: Mutex<bool>,
    free: Condvar,
    memory: Mutex<Option<Remembered>>,
}

impl Entry {
    fn memory(&self) -> MutexGuard<'_, Option<Remembered>> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_dirty(&self) -> bool {
        self.memory().as_ref().is_some_and(|m| m.dirty)
    }

    /// Takes the entry, waiting until `deadline`; false on timeout.
    fn acquire(&self, deadline: Option<Instant>) -> bool {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy {
            let Some(deadline) = deadline else { return false };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            busy = self.free.wait_timeout(busy, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        *busy = true;
        true
    }

    fn release(&self) {
        *self.busy.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.free.notify_one();
    }
}

/// Entries kept before clean, unused ones are dropped.
const MAX_ENTRIES: usize = 65536;

/// Whether rotation state can be written, as last seen: a failure is
/// logged when it starts or changes kind, and the recovery once.
#[derive(Default)]
pub struct WriteHealth {
    failing: Mutex<Option<String>>,
}

impl WriteHealth {
    /// Records a failed write; logs only if it is a new kind of failure.
    pub fn failed(&self, dir: &Path, e: &StateError) {
        let kind = match e {
            StateError::Io { source, .. } => format!("{:?}", source.kind()),
            StateError::Busy { .. } => "busy".to_string(),
        };
        let mut f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if f.as_deref() != Some(kind.as_str()) {
            tracing::warn!(
                "rotation state cannot be written under {}: {e}; redirects go on from memory (logged again only when this changes)",
                dir.display()
            );
            *f = Some(kind);
        }
    }

    /// Records a successful write; logs the recovery after a failure.
    pub fn ok(&self, dir: &Path) {
        let mut f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if f.take().is_some() {
            tracing::info!("rotation state is written again under {}", dir.display());
        }
    }

    pub fn is_failing(&self) -> bool {
        self.failing.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }
}

#[derive(Clone, Default)]
pub struct StateStore {
    dir: PathBuf,
    entries: Arc<Mutex<HashMap<PathBuf, Arc<Entry>>>>,
    write_behind: bool,
    health: Arc<WriteHealth>,
}

/// What one sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Entries removed because nobody used them for the expiry time.
    pub expired: usize,
    /// Entries removed because there were more than the limit.
    pub over_limit: usize,
    /// Entries kept.
    pub kept: usize,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").field("dir", &self.dir).field("write_behind", &self.write_behind).finish()
    }
}

/// A held lock on one (initiator, target) entry: the in-process entry,
/// then (writing through) the flock that other processes respect.
pub struct EntryLock {
    _lock: Option<File>,
    data: PathBuf,
    entry: Arc<Entry>,
    write_behind: bool,
}

impl Drop for EntryLock {
    fn drop(&mut self) {
        self.entry.release();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("state {} is locked by another process for more than {waited:?}", path.display())]
    Busy { path: PathBuf, waited: Duration },
}

/// Opens and flocks the `.lck` beside the state file `data` (creating its
/// directory), waiting up to `wait`.
///
/// The sweep removes lock files (under their lock), so a lock taken on a
/// file that was removed meanwhile is retried on the new one: whoever
/// holds the lock holds the file that is at the path.
fn flock_entry(data: &Path, wait: Duration) -> Result<File, StateError> {
    let deadline = Instant::now() + wait;
    let lck = data.with_extension("lck");
    let mut last = None;
    for _ in 0..8 {
        if let Some(dir) = data.parent() {
            fs::create_dir_all(dir).map_err(|source| StateError::Io { path: dir.to_path_buf(), source })?;
        }
        let f = match open_or_create(&lck) {
            Ok(f) => f,
            // The sweep removed the directory between the two calls.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                last = Some(e);
                continue;
            }
            Err(source) => return Err(StateError::Io { path: lck, source }),
        };
        match lock_exclusive_within(&f, &lck, deadline.saturating_duration_since(Instant::now())) {
            Ok(()) => {}
            Err(LockError::Busy { path }) => return Err(StateError::Busy { path, waited: wait }),
            Err(LockError::Io { path, source }) => return Err(StateError::Io { path, source }),
        }
        let same = match (f.metadata(), fs::metadata(&lck)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            return Ok(f);
        }
    }
    Err(StateError::Io { path: lck, source: last.unwrap_or_else(|| io::Error::other("lock file kept being replaced")) })
}

/// Takes the flock of `data`'s lock file only if it is free now.
fn try_flock_existing(data: &Path) -> Option<File> {
    let lck = data.with_extension("lck");
    let f = File::open(&lck).ok()?;
    // SAFETY: flock on a valid open descriptor.
    (unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0).then_some(f)
}

fn read_state(data: &Path) -> Option<PortalState> {
    let bytes = fs::read(data).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("ignoring unreadable state {}: {e}", data.display());
            None
        }
    }
}

/// Replaces `data` atomically. Not fsynced: losing the last few rotation
/// steps to a power cut is harmless, and a login must not wait for the disk.
fn write_state(data: &Path, state: &PortalState) -> Result<(), StateError> {
    let err = |source| StateError::Io { path: data.to_path_buf(), source };
    let mut bytes = serde_json::to_vec_pretty(state).map_err(|e| err(io::Error::other(e)))?;
    bytes.push(b'\n');
    let f = AtomicFile::create(data).map_err(err)?;
    f.file().write_all(&bytes).map_err(err)?;
    f.commit_unsynced().map_err(err)
}

impl StateStore {
    /// A store that writes every change at once (the query tool).
    pub fn new(dir: &Path) -> Self {
        StateStore { dir: dir.to_path_buf(), entries: Arc::default(), write_behind: false, health: Arc::default() }
    }

    /// The daemon's store: changes are kept in memory and written by
    /// [`StateStore::flush`].
    pub fn write_behind(dir: &Path) -> Self {
        StateStore { write_behind: true, ..StateStore::new(dir) }
    }

    fn entry(&self, key: &Path) -> Arc<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = entries.get(key) {
            return Arc::clone(e);
        }
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| Arc::strong_count(e) > 1 || e.is_dirty());
        }
        Arc::clone(entries.entry(key.to_path_buf()).or_default())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn health(&self) -> &WriteHealth {
        &self.health
    }

    /// `<dir>/<portal>/<initiator>/<target>.json`; its lock is the same
    /// with `.lck`.
    fn data_path(&self, portal: IpAddr, initiator: &str, target: &str) -> PathBuf {
        self.dir
            .join(encode_component(&portal.to_string()))
            .join(encode_component(initiator))
            .join(format!("{}.json", encode_component(target)))
    }

    /// Locks the entry of (discovery portal, initiator, target), waiting up
    /// to `wait` for another holder.
    pub fn lock(&self, portal: IpAddr, initiator: &str, target: &str, wait: Duration) -> Result<EntryLock, StateError> {
        let data = self.data_path(portal, initiator, target);
        let deadline = Instant::now() + wait;
        let entry = self.entry(&data);
        if !entry.acquire(Some(deadline)) {
            return Err(StateError::Busy { path: data.with_extension("lck"), waited: wait });
        }
        // From here on the entry is ours; the EntryLock releases it, also
        // when the flock fails.
        let mut held = EntryLock { _lock: None, data, entry, write_behind: self.write_behind };
        if !self.write_behind {
            held._lock = Some(flock_entry(&held.data, deadline.saturating_duration_since(Instant::now()))?);
        }
        Ok(held)
    }

    /// Writes every entry changed in memory (write-behind store). An entry
    /// busy right now is left for the next round unless `all` (shutdown).
    /// Returns how many files were written.
    pub fn flush(&self, all: bool) -> usize {
        let dirty: Vec<(PathBuf, Arc<Entry>)> = {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries.iter().filter(|(_, e)| e.is_dirty()).map(|(k, e)| (k.clone(), Arc::clone(e))).collect()
        };
        let mut written = 0;
        for (data, entry) in dirty {
            let wait = Duration::from_secs(2);
            if !entry.acquire(all.then(|| Instant::now() + wait)) {
                continue;
            }
            match self.flush_entry(&data, &entry, wait) {
                Ok(true) => {
                    written += 1;
                    self.health.ok(&self.dir);
                }
                Ok(false) => {}
                Err(e) => self.health.failed(&self.dir, &e),
            }
            entry.release();
        }
        written
    }

    /// Every state file as (last written, path): `<dir>/*/*/*.json`.
    fn state_files(&self) -> Vec<(SystemTime, PathBuf)> {
        let mut out = Vec::new();
        let Ok(portals) = fs::read_dir(&self.dir) else { return out };
        for p in portals.flatten() {
            let Ok(inits) = fs::read_dir(p.path()) else { continue };
            for i in inits.flatten() {
                let Ok(files) = fs::read_dir(i.path()) else { continue };
                for f in files.flatten() {
                    let path = f.path();
                    if path.extension().is_some_and(|e| e == "json") {
                        if let Ok(m) = f.metadata().and_then(|m| m.modified()) {
                            out.push((m, path));
                        }
                    }
                }
            }
        }
        out
    }

    /// Removes entries nobody used for `expiry` (their file was last
    /// written that long ago: every use is written within a flush
    /// interval), and the least recently used beyond `max_files`, with
    /// their lock files and emptied directories. An entry in use right
    /// now is left for the next sweep.
    pub fn sweep(&self, expiry: Duration, max_files: usize, now: SystemTime) -> SweepReport {
        let mut files = self.state_files();
        files.sort_unstable();
        let cutoff = now.checked_sub(expiry).unwrap_or(SystemTime::UNIX_EPOCH);
        let over = files.len().saturating_sub(max_files);
        let mut report = SweepReport::default();
        for (n, (mtime, data)) in files.iter().enumerate() {
            let expired = *mtime < cutoff;
            if !expired && n >= over {
                report.kept += 1;
                continue;
            }
            if self.remove_entry(data, if expired { Some(cutoff) } else { None }) {
                if expired {
                    report.expired += 1;
                } else {
                    report.over_limit += 1;
                }
            } else {
                report.kept += 1;
            }
        }
        if report.expired + report.over_limit > 0 {
            self.remove_empty_dirs();
        }
        report
    }

    /// Removes one entry if nobody holds it (and, with `older_than`, it
    /// is still that old under the lock).
    fn remove_entry(&self, data: &Path, older_than: Option<SystemTime>) -> bool {
        let entry = self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(data).cloned();
        if let Some(e) = &entry {
            if !e.acquire(None) {
                return false;
            }
            if e.is_dirty() {
                e.release();
                return false;
            }
        }
        let removed = match try_flock_existing(data) {
            Some(_lock) => {
                let still_old = match older_than {
                    Some(cut) => fs::metadata(data).and_then(|m| m.modified()).is_ok_and(|m| m < cut),
                    None => true,
                };
                still_old && {
                    let ok = fs::remove_file(data).is_ok();
                    // Under the lock: a waiting locker re-checks the inode.
                    let _ = fs::remove_file(data.with_extension("lck"));
                    ok
                }
            }
            None => false,
        };
        if let Some(e) = entry {
            if removed {
                *e.memory() = None;
                self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(data);
            }
            e.release();
        }
        removed
    }

    fn remove_empty_dirs(&self) {
        let Ok(portals) = fs::read_dir(&self.dir) else { return };
        for p in portals.flatten() {
            if let Ok(inits) = fs::read_dir(p.path()) {
                for i in inits.flatten() {
                    // Fails (and is meant to) unless empty.
                    let _ = fs::remove_dir(i.path());
                }
            }
            let _ = fs::remove_dir(p.path());
        }
    }

    /// State files of the seed's layout (`<dir>/<initiator>/<target>.data`,
    /// Perl Data::Dumper): counted so the daemon can say it does not use them.
    pub fn seed_state_files(&self) -> usize {
        let Ok(inits) = fs::read_dir(&self.dir) else { return 0 };
        inits
            .flatten()
            .filter_map(|i| fs::read_dir(i.path()).ok())
            .flat_map(|files| files.flatten())
            .filter(|f| f.path().extension().is_some_and(|e| e == "data"))
            .count()
    }

    fn flush_entry(&self, data: &Path, entry: &Entry, wait: Duration) -> Result<bool, StateError> {
        let _lock = flock_entry(data, wait)?;
        let mut memory = entry.memory();
        let Some(m) = memory.as_mut().filter(|m| m.dirty) else { return Ok(false) };
        if stamp_of(data) != m.stamp {
            // Another process wrote it since we read it: its version wins.
            *memory = None;
            return Ok(false);
        }
        write_state(data, &m.state)?;
        m.stamp = stamp_of(data);
        m.dirty = false;
        Ok(true)
    }
}

impl EntryLock {
    /// The stored state, or None if there is none (or it is unreadable,
    /// which only costs a rescan: the file is rewritten on save).
    pub fn load(&self) -> Option<PortalState> {
        if !self.write_behind {
            return read_state(&self.data);
        }
        let stamp = stamp_of(&self.data);
        let mut memory = self.entry.memory();
        if let Some(m) = memory.as_ref().filter(|m| m.stamp == stamp) {
            return Some(m.state.clone());
        }
        // Changed (or removed) by someone else: the file wins.
        *memory = None;
        let state = read_state(&self.data)?;
        *memory = Some(Remembered { state: state.clone(), stamp, dirty: false });
        Some(state)
    }

    /// Replaces the state: at once, or (write-behind) at the next flush.
    pub fn save(&self, state: &PortalState) -> Result<(), StateError> {
        if !self.write_behind {
            return write_state(&self.data, state);
        }
        let mut memory = self.entry.memory();
        match memory.as_mut() {
            Some(m) => {
                m.state = state.clone();
                m.dirty = true;
            }
            None => *memory = Some(Remembered { state: state.clone(), stamp: stamp_of(&self.data), dirty: true }),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::target_address::TargetAddress;

    const P: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, 9));
    const P2: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 2, 9));

    #[test]
    fn round_trip_and_layout() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::new(d.path());
        let lock = store.lock(P, "iqn.1998-01.com.vmware:host1", "iqn.t:vol0", Duration::from_secs(1)).unwrap();
        assert!(lock.load().is_none());
        let mut s = PortalState::new("iqn.1998-01.com.vmware:host1", "iqn.t:vol0");
        s.refresh(vec![TargetAddress::parse("10.0.1.1:3260,1").unwrap()], 42);
        s.next_portal();
        lock.save(&s).unwrap();
        assert_eq!(lock.load(), Some(s));
        assert!(d.path().join("10.0.1.9/iqn.1998-01.com.vmware:host1/iqn.t:vol0.json").exists());
    }

    #[test]
    fn second_locker_waits_then_gives_up() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::new(d.path());
        let _held = store.lock(P, "iqn.i", "iqn.t", Duration::from_secs(1)).unwrap();
        let t = Instant::now();
        assert!(matches!(store.lock(P, "iqn.i", "iqn.t", Duration::from_millis(50)), Err(StateError::Busy { .. })));
        assert!(t.elapsed() >= Duration::from_millis(50));
    }

    fn state_at(index: usize) -> PortalState {
        let mut s = PortalState::new("iqn.i", "iqn.t");
        s.refresh(
            vec![
                TargetAddress::parse("10.0.1.1:3260,1").unwrap(),
                TargetAddress::parse("10.0.1.2:3260,1").unwrap(),
                TargetAddress::parse("10.0.1.3:3260,1").unwrap(),
            ],
            42,
        );
        s.last_portal_index = Some(index);
        s
    }

    #[test]
    fn write_behind_reaches_the_disk_at_the_flush() {
        let d = tempfile::tempdir().unwrap();
        let daemon = StateStore::write_behind(d.path());
        let direct = StateStore::new(d.path());
        let w = Duration::from_secs(1);
        daemon.lock(P, "iqn.i", "iqn.t", w).unwrap().save(&state_at(0)).unwrap();
        assert_eq!(direct.lock(P, "iqn.i", "iqn.t", w).unwrap().load(), None, "not written before the flush");
        assert_eq!(daemon.lock(P, "iqn.i", "iqn.t", w).unwrap().load(), Some(state_at(0)), "memory serves");
        assert_eq!(daemon.flush(false), 1);
        assert_eq!(daemon.flush(false), 0, "clean entries are not rewritten");
        assert_eq!(direct.lock(P, "iqn.i", "iqn.t", w).unwrap().load(), Some(state_at(0)));
        // A later change overwrites the file at the next flush.
        daemon.lock(P, "iqn.i", "iqn.t", w).unwrap().save(&state_at(1)).unwrap();
        assert_eq!(daemon.flush(true), 1);
        assert_eq!(direct.lock(P, "iqn.i", "iqn.t", w).unwrap().load(), Some(state_at(1)));
    }

    #[test]
    fn another_process_write_wins_over_memory() {
        let d = tempfile::tempdir().unwrap();
        let daemon = StateStore::write_behind(d.path());
        let direct = StateStore::new(d.path());
        let w = Duration::from_secs(1);
        daemon.lock(P, "iqn.i", "iqn.t", w).unwrap().save(&state_at(0)).unwrap();
        daemon.flush(true);
        // The query tool advances the rotation on disk.
        direct.lock(P, "iqn.i", "iqn.t", w).unwrap().save(&state_at(2)).unwrap();
        assert_eq!(daemon.lock(P, "iqn.i", "iqn.t", w).unwrap().load(), Some(state_at(2)));
        // A daemon change not yet flushed when the file changes is dropped
        // in favour of the file.
        daemon.lock(P, "iqn.i", "iqn.t", w).unwrap().save(&state_at(1)).unwrap();
        direct.lock(P, "iqn.i", "iqn.t", w).unwrap().save(&state_at(0)).unwrap();
        assert_eq!(daemon.flush(true), 0);
        assert_eq!(direct.lock(P, "iqn.i", "iqn.t", w).unwrap().load(), Some(state_at(0)));
        assert_eq!(daemon.lock(P, "iqn.i", "iqn.t", w).unwrap().load(), Some(state_at(0)));
    }

    #[test]
    fn a_busy_entry_waits_for_the_next_flush_round() {
        let d = tempfile::tempdir().unwrap();
        let daemon = StateStore::write_behind(d.path());
        let w = Duration::from_secs(1);
        let held = daemon.lock(P, "iqn.i", "iqn.t", w).unwrap();
        held.save(&state_at(0)).unwrap();
        assert_eq!(daemon.flush(false), 0);
        drop(held);
        assert_eq!(daemon.flush(false), 1);
    }

    #[test]
    fn each_discovery_portal_has_its_own_rotation() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::write_behind(d.path());
        let w = Duration::from_secs(1);
        store.lock(P, "iqn.i", "iqn.t", w).unwrap().save(&state_at(2)).unwrap();
        assert_eq!(store.lock(P2, "iqn.i", "iqn.t", w).unwrap().load(), None, "another portal group's state");
        store.flush(true);
        assert!(d.path().join("10.0.1.9/iqn.i/iqn.t.json").exists());
        assert!(!d.path().join("10.0.2.9").exists());
    }

    #[test]
    fn unused_state_expires_and_the_count_is_capped() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::write_behind(d.path());
        let direct = StateStore::new(d.path());
        let w = Duration::from_secs(1);
        for i in 0..5 {
            direct.lock(P, &format!("iqn.i{i}"), "iqn.t", w).unwrap().save(&state_at(0)).unwrap();
        }
        // A daemon entry in use is never removed under it.
        let held = store.lock(P, "iqn.i0", "iqn.t", w).unwrap();
        let now = SystemTime::now();
        assert_eq!(
            store.sweep(Duration::from_secs(3600), 100, now),
            SweepReport { expired: 0, over_limit: 0, kept: 5 }
        );
        let later = now + Duration::from_secs(7200);
        let r = store.sweep(Duration::from_secs(3600), 100, later);
        assert_eq!((r.expired, r.kept), (4, 1), "{r:?}");
        drop(held);
        assert_eq!(store.sweep(Duration::from_secs(3600), 100, later).expired, 1);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0, "emptied directories are removed too");
        // The daemon's memory of a removed entry is gone: a fresh start.
        assert_eq!(store.lock(P, "iqn.i0", "iqn.t", w).unwrap().load(), None);
        // Over the cap, the least recently written go first.
        for i in 0..5 {
            direct.lock(P, &format!("iqn.j{i}"), "iqn.t", w).unwrap().save(&state_at(0)).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        let r = store.sweep(Duration::from_secs(3600), 2, SystemTime::now());
        assert_eq!((r.over_limit, r.kept), (3, 2), "{r:?}");
        assert!(d.path().join("10.0.1.9/iqn.j4/iqn.t.json").exists());
        assert!(!d.path().join("10.0.1.9/iqn.j0/iqn.t.json").exists());
        // A removed lock file does not let two lockers in at once.
        let a = direct.lock(P, "iqn.j4", "iqn.t", w).unwrap();
        assert!(matches!(direct.lock(P, "iqn.j4", "iqn.t", Duration::from_millis(50)), Err(StateError::Busy { .. })));
        drop(a);
    }

    #[test]
    fn write_failures_are_reported_once_per_change() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::write_behind(d.path());
        let w = Duration::from_secs(1);
        // A file where the portal's directory should be: every write fails.
        fs::write(d.path().join("10.0.1.9"), b"").unwrap();
        for i in 0..20 {
            store.lock(P, &format!("iqn.i{i}"), "iqn.t", w).unwrap().save(&state_at(0)).unwrap();
        }
        assert_eq!(store.flush(false), 0);
        assert!(store.health().is_failing());
        assert_eq!(store.lock(P, "iqn.i3", "iqn.t", w).unwrap().load(), Some(state_at(0)), "memory still serves");
        fs::remove_file(d.path().join("10.0.1.9")).unwrap();
        assert_eq!(store.flush(false), 20, "written once the file system recovers");
        assert!(!store.health().is_failing());
    }

    #[test]
    fn seed_state_files_are_counted() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("iqn.1998-01.com.vmware:host")).unwrap();
        fs::write(d.path().join("iqn.1998-01.com.vmware:host/iqn.t.data"), b"$data = {};").unwrap();
        fs::write(d.path().join("iqn.1998-01.com.vmware:host/iqn.t.lck"), b"").unwrap();
        assert_eq!(StateStore::new(d.path()).seed_state_files(), 1);
    }

    #[test]
    fn hostile_names_stay_inside_the_directory() {
        assert_eq!(encode_component("../../etc/passwd"), "%2E.%2F..%2Fetc%2Fpasswd");
        assert_eq!(encode_component("iqn.a b"), "iqn.a%20b");
    }
}
