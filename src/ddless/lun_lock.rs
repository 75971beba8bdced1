//! The lock this host's ddless runs take on a LUN they write, so two of
//! them (with different checksum files) never write one LUN at once.
//!
//! A LUN has no local object to lock, so the lock is a file named after a
//! hash of the LUN's identity and the node address the session reached
//! (after any redirect; resolved, IPv4-mapped IPv6 as IPv4: never the URL's
//! spelling, or `localhost` and `127.0.0.1` would be two locks): two tgtd
//! daemons with default device identifiers and one target name are two
//! LUNs, one LUN through its portal and its node's own address is one. A
//! node listening on several addresses (tgtd on 0.0.0.0) is still reached
//! as several. Runs on other hosts are not seen: that is what target ACLs
//! are for.
//!
//! The files live in a directory only the running user can enter
//! (root: `/run/santools/lun-locks`; others: `$XDG_RUNTIME_DIR/santools-lun-locks`,
//! else `/tmp/santools-lun-locks-UID`), mode 0700, files 0600. A directory
//! shared by every user (it was /run/lock) let any local user pre-create a
//! LUN's lock file unreadable to others (their runs then went unlocked) or
//! hold its flock (every run writing that LUN refused). So runs of one user
//! exclude each other, which is what cron jobs of one backup host are.

use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::initiator::IscsiVolume;
use crate::shared::file_lock::{lock_exclusive, LockError};

pub(crate) struct LunLock {
    _file: File,
}

/// Another ddless run of this user writes the LUN: the run was refused
/// before it created or wrote anything (callers that claimed the LUN for
/// it, like a restore, can take their claim back).
#[derive(Debug, thiserror::Error)]
#[error("target {url} is in use by another ddless run on this host (lock {} is held); nothing was changed", lock.display())]
pub struct LunBusy {
    pub url: String,
    pub lock: PathBuf,
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Where the running user's LUN locks live (not yet checked or created).
fn lock_dir_for(euid: u32, runtime_dir: Option<&Path>) -> PathBuf {
    if euid == 0 {
        return PathBuf::from("/run/santools/lun-locks");
    }
    match runtime_dir {
        Some(d) if d.is_absolute() => d.join("santools-lun-locks"),
        _ => std::env::temp_dir().join(format!("santools-lun-locks-{euid}")),
    }
}

/// Creates `dir` (mode 0700; missing parents 0755) unless it exists, and
/// checks that it is a real directory of `euid` that nobody else may
/// write: a directory someone else made (in /tmp anyone can) is refused.
fn private_dir(dir: &Path, euid: u32) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        if !parent.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o755).create(parent)?;
        }
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let m = std::fs::symlink_metadata(dir)?;
    let refuse = |why: String| Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
    if !m.file_type().is_dir() {
        return refuse(format!("{} is not a directory", dir.display()));
    }
    if m.uid() != euid {
        return refuse(format!("{} belongs to uid {}, not to this user ({euid})", dir.display(), m.uid()));
    }
    if m.mode() & 0o022 != 0 {
        return refuse(format!("{} is writable by others (mode {:o})", dir.display(), m.mode() & 0o7777));
    }
    Ok(())
}

/// Opens (creating, mode 0600) a lock file, never through a symlink; flock
/// needs no write access.
fn open_lock_file(path: &Path) -> io::Result<File> {
    use std::os::fd::FromRawFd;
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: open(2) with a valid C string; the descriptor is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The lock file of `key` (identity@node) for the running user.
fn lock_path(key: &str) -> io::Result<PathBuf> {
    let euid = crate::shared::file_identity::euid();
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    let dir = lock_dir_for(euid, runtime.as_deref());
    private_dir(&dir, euid)?;
    Ok(dir.join(format!("santools-lun-{:016x}.lock", fnv1a(key))))
}

/// Takes the lock of the LUN `v` writes, or fails if another run of this
/// user holds it. Without a usable lock directory the run goes on
/// unlocked, with a warning saying so.
pub(crate) fn lock_lun(v: &IscsiVolume) -> anyhow::Result<Option<LunLock>> {
    let key = format!("{}@{}", v.info().identity(), v.session_info().peer);
    let opened = lock_path(&key).and_then(|path| open_lock_file(&path).map(|f| (path, f)));
    let (path, file) = match opened {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(
                "cannot open a lock for LUN {} ({e}): other ddless runs on this host writing it are not kept out",
                v.info().url
            );
            return Ok(None);
        }
    };
    lock_exclusive(&file, &path).map_err(|e| match e {
        LockError::Busy { .. } => anyhow::Error::new(LunBusy { url: v.info().url.to_string(), lock: path.clone() }),
        other => other.into(),
    })?;
    Ok(Some(LunLock { _file: file }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn lock_dirs_per_user() {
        assert_eq!(lock_dir_for(0, Some(Path::new("/run/user/0"))), Path::new("/run/santools/lun-locks"));
        assert_eq!(
            lock_dir_for(1000, Some(Path::new("/run/user/1000"))),
            Path::new("/run/user/1000/santools-lun-locks")
        );
        // A relative or missing runtime directory: the temporary directory, per uid.
        let tmp = std::env::temp_dir();
        assert_eq!(lock_dir_for(1000, Some(Path::new("rel"))), tmp.join("santools-lun-locks-1000"));
        assert_eq!(lock_dir_for(1000, None), tmp.join("santools-lun-locks-1000"));
    }

    #[test]
    fn private_dir_is_made_0700_and_others_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let me = crate::shared::file_identity::euid();
        let dir = d.path().join("a/b/locks");
        private_dir(&dir, me).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777, 0o700);
        // Again: it exists and is ours.
        private_dir(&dir, me).unwrap();
        // Writable by others: refused.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_dir(&dir, me).unwrap_err();
        assert!(e.to_string().contains("writable by others"), "{e}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        // Somebody else's: refused (as if another user had made it first).
        let e = private_dir(&dir, me + 1).unwrap_err();
        assert!(e.to_string().contains("belongs to uid"), "{e}");
        // A symlink to our own directory: refused (lstat, not stat).
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let e = private_dir(&link, me).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
    }

    #[test]
    fn lock_files_are_0600_and_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        drop(open_lock_file(&p).unwrap());
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let link = d.path().join("y.lock");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(open_lock_file(&link).is_err());
    }
}
