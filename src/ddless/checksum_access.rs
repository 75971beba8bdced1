//! Opening a checksum file for the ddless modes: inspect it read-only first
//! (so bad input is refused before anything is written), then lock it and
//! bring it to the source's size.

use std::io;
use std::path::Path;

use anyhow::Context;

use crate::shared::checksum_file::{record_count, ChecksumFile};
use crate::shared::checksum_record::ChecksumRecord;
use crate::shared::file_lock::{open_or_create, LockError, LockFile};
use crate::shared::segment::SegmentGeometry;

/// True for `-c /dev/null` (no checksums).
pub(crate) fn is_dev_null(path: &Path) -> bool {
    path == Path::new("/dev/null") || path.canonicalize().is_ok_and(|p| p == Path::new("/dev/null"))
}

/// Records in an existing checksum file, None if it does not exist.
/// Refuses a file whose length is not whole records.
pub(crate) fn inspect(path: &Path) -> anyhow::Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {
            let n = record_count(meta.len()).with_context(|| format!("checksum file {}", path.display()))?;
            Ok(Some(n))
        }
        Ok(_) => anyhow::bail!("checksum file {} is not a regular file", path.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("checksum file {}", path.display())),
    }
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

/// What `open_for_copy` had to do to the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SizeChange {
    None,
    Created,
    Resized { from_records: u64, to_records: u64 },
}

/// Opens (creating if missing) and sizes the checksum file for a copy of a
/// volume with `geometry`. New and grown records are INVALID (zero), and a
/// short last segment that the source grew past is invalidated, so those
/// segments are read and written. Durable before returning.
pub(crate) fn open_for_copy(path: &Path, geometry: &SegmentGeometry) -> anyhow::Result<(ChecksumFile, SizeChange)> {
    let existed = path.exists();
    let file = open_or_create(path).with_context(|| format!("opening checksum file {}", path.display()))?;
    let cf = ChecksumFile::new(file);
    let ctx = || format!("checksum file {}", path.display());
    let have = record_count(cf.file().metadata().with_context(ctx)?.len()).with_context(ctx)?;
    let want = geometry.segment_count();
    let change = if !existed {
        SizeChange::Created
    } else if have != want {
        SizeChange::Resized { from_records: have, to_records: want }
    } else {
        SizeChange::None
    };
    if have != want {
        if have > 0 && have < want {
            // The old last record may describe a short segment that now has
            // more bytes; it no longer vouches for anything.
            cf.write_records(have - 1, &[ChecksumRecord::INVALID]).with_context(ctx)?;
        }
        cf.set_records(want).with_context(ctx)?;
        cf.sync().with_context(ctx)?;
        if !existed {
            crate::shared::atomic_file::sync_parent_dir(path).with_context(ctx)?;
        }
    }
    Ok((cf, change))
}
