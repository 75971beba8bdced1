//! Merging into a stored ddmap: from another ddmap (`ddmap -s SRC -t
//! TARGET`) or from a list of written extents. The target is locked, checked
//! and replaced atomically; on any error it is left untouched.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::map_io::load_ddmap;
use crate::shared::atomic_file::write_atomic;
use crate::shared::ddmap_file::Ddmap;
use crate::shared::extents::parse_extents;
use crate::shared::file_lock::{LockError, LockFile};
use crate::shared::segment::SegmentGeometry;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MergeReport {
    pub target: PathBuf,
    pub created: bool,
    pub source_map_size: u32,
    pub target_map_size_before: u32,
    pub target_map_size_after: u32,
    pub segments_set_after: u64,
}

fn lock_target(target: &Path) -> anyhow::Result<LockFile> {
    LockFile::for_path(target).map_err(|e| match e {
        LockError::Busy { path } => anyhow::anyhow!(
            "ddmap {} is being merged by another process (lock {} is held)",
            target.display(),
            path.display()
        ),
        other => other.into(),
    })
}

/// Merges `source` into the map stored at `target` (created if missing).
fn merge_into_target(source: &Ddmap, target: &Path) -> anyhow::Result<MergeReport> {
    let _lock = lock_target(target)?;
    let existing = if target.exists() {
        let t = load_ddmap(target)?;
        Some(t)
    } else {
        tracing::info!("target does not exist, creating new file");
        None
    };
    let created = existing.is_none();
    let before = existing.as_ref().map_or(0, |t| t.map.word_count());
    let merged = match existing {
        Some(mut t) => {
            t.merge_from(source).with_context(|| format!("merging into ddmap {}", target.display()))?;
            tracing::info!("name sum matches on source and target, good");
            tracing::info!("source is greater or equal to target size, good");
            t
        }
        None => source.clone(),
    };
    tracing::info!("opened target map {}", target.display());
    tracing::info!("source->map_size {} target->map_size {}", source.map.word_count(), before);
    let bytes = merged.to_bytes().with_context(|| format!("ddmap {}", target.display()))?;
    write_atomic(target, &bytes).with_context(|| format!("writing ddmap {}", target.display()))?;
    tracing::info!("merge completed");
    Ok(MergeReport {
        target: target.to_path_buf(),
        created,
        source_map_size: source.map.word_count() as u32,
        target_map_size_before: before as u32,
        target_map_size_after: merged.map.word_count() as u32,
        segments_set_after: merged.map.count_set(),
    })
}

/// `ddmap -s SRC -t TARGET`.
pub fn merge_file(source: &Path, target: &Path) -> anyhow::Result<MergeReport> {
    let src = load_ddmap(source)?;
    merge_into_target(&src, target)
}

/// `ddmap --from-extents FILE --size BYTES --name NAME -t TARGET`:
/// `extents_text` holds "OFFSET LENGTH" lines (from FILE or stdin).
pub fn merge_extents(
    extents_text: &str,
    extents_origin: &str,
    volume_size: u64,
    name: &str,
    target: &Path,
) -> anyhow::Result<MergeReport> {
    let extents = parse_extents(extents_text, volume_size).with_context(|| format!("extent list {extents_origin}"))?;
    let mut map = Ddmap::for_volume(name, volume_size);
    for e in &extents {
        map.map.set_range(SegmentGeometry::segments_touched(e.offset, e.length));
    }
    tracing::info!("{} extents from {}, {} segments flagged", extents.len(), extents_origin, map.map.count_set());
    merge_into_target(&map, target)
}
