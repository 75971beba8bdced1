//! Opening a checksum file for the ddless modes: inspect it read-only first
//! (so bad input is refused before anything is written), then lock it and
//! bring it to the source's size through the commit protocol.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::binding::Plan;
use super::target::dir_writable;
use crate::shared::checksum_file::{record_count, ChecksumFile};
use crate::shared::checksum_record::ChecksumRecord;
use crate::shared::failpoint;
use crate::shared::file_identity::trusted_symlink_target;
use crate::shared::file_lock::{lock_exclusive, LockError, LockFile};

/// True for `-c /dev/null` (no checksums).
pub(crate) fn is_dev_null(path: &Path) -> bool {
    path == Path::new("/dev/null") || path.canonicalize().is_ok_and(|p| p == Path::new("/dev/null"))
}

/// `<checksum>.lock`, the file whose flock keeps two runs apart.
pub(crate) fn lock_path(checksum: &Path) -> PathBuf {
    let mut s = checksum.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Records in an existing checksum file, None if it does not exist.
/// Refuses anything but a regular file of whole records.
pub(crate) fn inspect(path: &Path) -> anyhow::Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {
            let n = record_count(meta.len()).with_context(|| format!("checksum file {}", path.display()))?;
            Ok(Some(n))
        }
        Ok(meta) if meta.is_dir() => bail!("checksum file {} is a directory, not a checksum file", path.display()),
        Ok(_) => bail!("checksum file {} is not a regular file", path.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("checksum file {}", path.display())),
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks, without changing anything, that the checksum file (and its
/// `.stats` and `.lock` beside it) can be written: an existing file opens
/// for writing, and its directory accepts new files.
pub(crate) fn check_writable(path: &Path, exists: bool) -> anyhow::Result<()> {
    // A name in a shared directory may be another user's symlink: refused
    // here, before the target is created (see trusted_symlink_target).
    let refused = || format!("checksum file {}; nothing was changed", path.display());
    let resolved = trusted_symlink_target(path).with_context(refused)?;
    for p in [lock_path(path), crate::ddless::stats_file::stats_path(path)] {
        trusted_symlink_target(&p).with_context(refused)?;
    }
    if exists {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("checksum file {} is not writable; nothing was changed", path.display()))?;
    }
    let dir = parent_dir(&resolved);
    dir_writable(&dir).with_context(|| {
        format!(
            "checksum file {}: directory {} is not writable (the checksum file, its .stats and .lock live there); nothing was changed",
            path.display(),
            dir.display()
        )
    })
}

/// Takes `<checksum>.lock`, with a message that says who is in the way.
pub(crate) fn lock(path: &Path) -> anyhow::Result<LockFile> {
    LockFile::for_path(path).map_err(|e| match e {
        LockError::Busy { path: lock } => anyhow::anyhow!(
            "checksum file {} is in use by another ddless run (lock {} is held)",
            path.display(),
            lock.display()
        ),
        other => other.into(),
    })
}

/// Locks an open checksum file itself, so that two runs reaching the same
/// file through different names (hard links) are kept apart too.
pub(crate) fn lock_inode(file: &File, path: &Path) -> anyhow::Result<()> {
    lock_exclusive(file, path).map_err(|e| match e {
        LockError::Busy { .. } => anyhow::anyhow!(
            "checksum file {} is in use by another ddless run (the file itself is locked, through another name?)",
            path.display()
        ),
        other => other.into(),
    })
}

/// Opens the existing checksum file or creates it (empty), and locks it.
/// Returns the file, whether it was created, and its record count.
pub(crate) fn open_for_copy(path: &Path) -> anyhow::Result<(ChecksumFile, bool, u64)> {
    let ctx = || format!("checksum file {}", path.display());
    // Through this user's or root's symlinks only (see trusted_symlink_target).
    trusted_symlink_target(path).with_context(ctx)?;
    let (file, created) = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => (f, false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(path)
                .with_context(|| format!("creating checksum file {}", path.display()))?;
            (f, true)
        }
        Err(e) => return Err(e).with_context(ctx),
    };
    let meta = file.metadata().with_context(ctx)?;
    if !meta.is_file() {
        bail!("checksum file {} is not a regular file", path.display());
    }
    lock_inode(&file, path)?;
    let records = record_count(meta.len()).with_context(ctx)?;
    Ok((ChecksumFile::new(file), created, records))
}

/// Carries out the checksum-file half of `plan`: the invalidations, then
/// the length for `segments` records, durable before it returns (so the
/// target may be resized and written after it). Returns the number of
/// records that were valid and are now INVALID.
pub(crate) fn apply_plan(
    cf: &ChecksumFile,
    path: &Path,
    created: bool,
    records: u64,
    segments: u64,
    plan: &Plan,
) -> anyhow::Result<u64> {
    let ctx = || format!("checksum file {}", path.display());
    let mut invalidated = 0;
    if let Some(r) = plan.invalidate_record {
        cf.write_records(r, &[ChecksumRecord::INVALID]).with_context(ctx)?;
        invalidated += 1;
    }
    if let Some(from) = plan.invalidate_from {
        // Cutting the file back and growing it again zeroes the tail
        // without writing it (a crash in between leaves a shorter file,
        // whose missing records read as INVALID too).
        cf.set_records(from).with_context(ctx)?;
        failpoint::hit("ddless.mid-invalidate-tail");
        invalidated += records.min(segments).saturating_sub(from);
    }
    let changed = plan.invalidate_record.is_some() || plan.invalidate_from.is_some() || records != segments;
    if changed || created {
        cf.set_records(segments).with_context(ctx)?;
        cf.sync().with_context(ctx)?;
        if created {
            crate::shared::atomic_file::sync_parent_dir(path).with_context(ctx)?;
        }
        failpoint::hit("ddless.after-invalidate-plan");
    }
    Ok(invalidated)
}
