//! Atomic replacement of a file: write a temporary file in the same
//! directory, fsync it, rename it over the destination, fsync the directory.
//! A crash at any point leaves either the old file or the new one, never a
//! mix; an abandoned temporary is removed on drop.
//!
//! A temporary is flocked while it is being written, so that one left
//! behind by a killed run (`.NAME.tmp.PID.N`, as large as the file it was to
//! replace) can be told from one a live run is writing, and removed
//! ([`remove_stale_temps`]). A destination that is a symlink is replaced
//! where it points, keeping the link; an existing destination's mode and
//! owner are kept.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::shared::failpoint;
use crate::shared::file_identity::{euid, trusted_symlink_target};

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
    /// Creates `.<name>.tmp.<pid>.<n>` beside `final_path` (beside the file
    /// a symlink at `final_path` points to), mode 0644 or the mode and owner
    /// of the file it will replace, and flocks it.
    pub fn create(final_path: &Path) -> io::Result<Self> {
        let final_path = trusted_symlink_target(final_path)?;
        let name = final_path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
            .to_string_lossy()
            .into_owned();
        let dir = parent_dir(&final_path);
        let existing = fs::metadata(&final_path).ok().filter(|m| m.is_file());
        for attempt in 0..100u32 {
            let temp_path = dir.join(temp_name(&name, std::process::id(), attempt));
            match OpenOptions::new().read(true).write(true).create_new(true).mode(0o644).open(&temp_path) {
                Ok(file) => {
                    let f = AtomicFile { file, temp_path, final_path: final_path.clone(), committed: false };
                    // SAFETY: flock on our fresh descriptor; it cannot be held by anyone else.
                    unsafe { libc::flock(f.file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
                    if let Some(meta) = &existing {
                        f.file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
                        // Only root may give a file away; others keep their own.
                        let _ = std::os::unix::fs::fchown(&f.file, Some(meta.uid()), Some(meta.gid()));
                    }
                    return Ok(f);
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

    /// Makes the new content durable and puts it in place, leaving the
    /// rename's durability to a later fsync of the same directory (one
    /// directory fsync for several files written together).
    pub fn commit_then_sync_dir_later(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        failpoint::hit("atomic.before-rename");
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

fn temp_name(name: &str, pid: u32, attempt: u32) -> String {
    format!(".{name}.tmp.{pid}.{attempt}")
}

/// True for `.<name>.tmp.<digits>.<digits>`.
fn is_temp_of(candidate: &str, name: &str) -> bool {
    let Some(rest) =
        candidate.strip_prefix('.').and_then(|c| c.strip_prefix(name)).and_then(|c| c.strip_prefix(".tmp."))
    else {
        return false;
    };
    match rest.split_once('.') {
        Some((pid, n)) => {
            !pid.is_empty()
                && !n.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Removes temporaries of `final_path` left behind by killed runs: regular
/// files named `.<name>.tmp.<pid>.<n>` beside it, owned by this user, that
/// no live process holds (their flock is free). Callers hold the lock that
/// protects `final_path`, so no run of ours can be starting one meanwhile.
/// Returns the paths removed; problems are only logged.
pub fn remove_stale_temps(final_path: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(final_path) = trusted_symlink_target(final_path) else { return removed };
    let Some(name) = final_path.file_name().map(|n| n.to_string_lossy().into_owned()) else { return removed };
    let dir = parent_dir(&final_path);
    let Ok(entries) = fs::read_dir(dir) else { return removed };
    let me = euid();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        if !is_temp_of(&file_name.to_string_lossy(), &name) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        if !meta.is_file() || meta.uid() != me {
            continue;
        }
        let Ok(file) = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) else { continue };
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue; // a live run is writing it
        }
        let same = file.metadata().is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
        if same && fs::remove_file(&path).is_ok() {
            tracing::info!("removed stale temporary file {} (left by a killed run)", path.display());
            removed.push(path);
        }
    }
    removed
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

    #[test]
    fn stale_temps_of_dead_runs_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sums");
        let dead = dir.path().join(".sums.tmp.999999.0");
        fs::write(&dead, b"left by kill -9").unwrap();
        let unrelated = dir.path().join(".sums.tmp.x.0");
        fs::write(&unrelated, b"not ours").unwrap();
        let other = dir.path().join(".other.tmp.1.0");
        fs::write(&other, b"another file's").unwrap();
        let live = AtomicFile::create(&p).unwrap();
        let removed = remove_stale_temps(&p);
        assert_eq!(removed, vec![dead.clone()]);
        assert!(!dead.exists() && unrelated.exists() && other.exists() && live.temp_path().exists());
        assert!(is_temp_of(".sums.tmp.12.3", "sums") && !is_temp_of(".sums.tmp.12", "sums"));
    }

    /// Finding T7 (attack-targets): a symlink another user planted at the
    /// destination (`/tmp/counts -> /etc/shadow`) made root replace the file
    /// it pointed to (`session-top save --file /tmp/counts`).
    #[test]
    fn a_symlink_of_another_user_is_not_written_through() {
        if crate::shared::file_identity::euid() != 0 {
            eprintln!("skipped: giving a symlink to another user needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let link = dir.path().join("counts");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
        let e = write_atomic(&link, b"new").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("symlink of uid 65534"), "{e}");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2, "nothing created");
        // root's own links are followed as before.
        std::os::unix::fs::lchown(&link, Some(0), Some(0)).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"new");
    }

    #[test]
    fn symlinked_destination_keeps_the_link_mode_and_owner() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::write(&real, b"old").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("real", &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
        assert_eq!(fs::metadata(&real).unwrap().mode() & 0o7777, 0o600);
    }
}
