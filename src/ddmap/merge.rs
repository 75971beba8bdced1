//! Merging into a stored ddmap: from another ddmap (`ddmap -s SRC -t
//! TARGET`) or from a list of written extents. The target is locked, both
//! headers are checked before any data is read, and the result is written
//! to a temporary file and renamed over the target; on any error the target
//! is left untouched. Memory stays near one map: the source is streamed
//! into the target's map, the result streamed out.

use std::io::{BufRead, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;

use super::map_io::open_map;
use crate::shared::atomic_file::{remove_stale_temps, AtomicFile};
use crate::shared::change_map::{words_for_volume, ChangeMap};
use crate::shared::ddmap_file::{name_sum, DdmapHeader, DdmapMergeError, DDMAP_VERSION, MAX_MAP_VOLUME_BYTES};
use crate::shared::extents::for_each_extent;
use crate::shared::file_identity::{check_distinct, RolePath};
use crate::shared::file_lock::{lock_exclusive, LockError, LockFile};
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

/// Words read or written per step.
const CHUNK_WORDS: usize = 1 << 18;

fn lock_path(target: &Path) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Locks `TARGET.lock` and, if it exists, the target itself (so that two
/// merges through different names of one file are kept apart too).
fn lock_target(target: &Path) -> anyhow::Result<(LockFile, Option<std::fs::File>)> {
    let busy = |path: &Path| {
        anyhow::anyhow!(
            "ddmap {} is being merged by another process (lock {} is held)",
            target.display(),
            path.display()
        )
    };
    let lock = LockFile::for_path(target).map_err(|e| match e {
        LockError::Busy { path } => busy(&path),
        other => other.into(),
    })?;
    let held = match std::fs::File::open(target) {
        Ok(f) => {
            lock_exclusive(&f, target).map_err(|e| match e {
                LockError::Busy { .. } => busy(target),
                other => other.into(),
            })?;
            Some(f)
        }
        Err(_) => None,
    };
    Ok((lock, held))
}

/// Refuses runs whose inputs and output are the same file.
fn check_paths(inputs: &[(&str, &Path)], target: &Path) -> anyhow::Result<()> {
    let mut paths = Vec::new();
    for (role, p) in inputs {
        paths.push(RolePath::new(*role, p).with_context(|| format!("{role} {}", p.display()))?);
    }
    paths.push(RolePath::new("target", target).with_context(|| format!("target {}", target.display()))?);
    paths.push(
        RolePath::new(format!("lock file of target {}:", target.display()), &lock_path(target))
            .with_context(|| format!("target {}", target.display()))?,
    );
    check_distinct(&paths)?;
    Ok(())
}

/// Writes `header` and `map` atomically to `target`. All-zero stretches
/// become holes, so a large, mostly clear map costs little disk.
fn write_map(target: &Path, header: &DdmapHeader, map: &ChangeMap) -> anyhow::Result<()> {
    let ctx = || format!("writing ddmap {}", target.display());
    let out = AtomicFile::create(target).with_context(ctx)?;
    let total = 20 + header.map_size_bytes();
    {
        let mut w = BufWriter::with_capacity(1 << 20, out.file());
        w.write_all(&header.to_bytes()).with_context(ctx)?;
        let mut bytes = Vec::with_capacity(CHUNK_WORDS * 4);
        for chunk in map.words().chunks(CHUNK_WORDS) {
            if chunk.iter().all(|&w| w == 0) {
                w.flush().with_context(ctx)?;
                w.seek(SeekFrom::Current(chunk.len() as i64 * 4)).with_context(ctx)?;
                continue;
            }
            bytes.clear();
            for word in chunk {
                bytes.extend_from_slice(&word.to_le_bytes());
            }
            w.write_all(&bytes).with_context(ctx)?;
        }
        w.flush().with_context(ctx)?;
    }
    out.file().set_len(total).with_context(ctx)?;
    out.commit().with_context(ctx)?;
    Ok(())
}

/// ORs the stored target map (if any) into `map`, checking its header
/// against `name_sum` and `words` before reading its data.
fn or_target_into(target: &Path, sum: u32, map: &mut ChangeMap) -> anyhow::Result<Option<u32>> {
    if !target.exists() {
        tracing::info!("target does not exist, creating new file");
        return Ok(None);
    }
    let mut t = open_map(target)?;
    let th = *t.header();
    if th.name_sum != sum {
        return Err(DdmapMergeError::NameMismatch { source_sum: sum, target_sum: th.name_sum })
            .with_context(|| format!("merging into ddmap {}", target.display()));
    }
    tracing::info!("name sum matches on source and target, good");
    if (th.map_size as usize) > map.word_count() {
        return Err(DdmapMergeError::SourceSmaller {
            source_words: map.word_count(),
            target_words: th.map_size as usize,
        })
        .with_context(|| format!("merging into ddmap {}", target.display()));
    }
    tracing::info!("source is greater or equal to target size, good");
    let mut at = 0usize;
    let mut buf = Vec::with_capacity(CHUNK_WORDS);
    loop {
        buf.clear();
        let n = t.read_words(&mut buf, CHUNK_WORDS).with_context(|| format!("ddmap {}", target.display()))?;
        if n == 0 {
            break;
        }
        map.or_words_at(at, &buf);
        at += n;
    }
    t.finish().with_context(|| format!("ddmap {}", target.display()))?;
    Ok(Some(th.map_size))
}

/// Checks a stored target's header without locking or changing anything,
/// so a merge that cannot work is refused before anything is created.
fn precheck_target(target: &Path, sum: u32, words: usize) -> anyhow::Result<()> {
    if !target.exists() {
        return Ok(());
    }
    let th = *open_map(target)?.header();
    if th.name_sum != sum {
        return Err(DdmapMergeError::NameMismatch { source_sum: sum, target_sum: th.name_sum })
            .with_context(|| format!("merging into ddmap {}", target.display()));
    }
    if th.map_size as usize > words {
        return Err(DdmapMergeError::SourceSmaller { source_words: words, target_words: th.map_size as usize })
            .with_context(|| format!("merging into ddmap {}", target.display()));
    }
    Ok(())
}

fn finish_merge(
    target: &Path,
    sum: u32,
    source_words: u32,
    map: ChangeMap,
    before: Option<u32>,
) -> anyhow::Result<MergeReport> {
    tracing::info!("opened target map {}", target.display());
    tracing::info!("source->map_size {} target->map_size {}", source_words, before.unwrap_or(0));
    let header = DdmapHeader { version: DDMAP_VERSION as u8, suspended: 0, name_sum: sum, map_size: source_words };
    write_map(target, &header, &map)?;
    tracing::info!("merge completed");
    Ok(MergeReport {
        target: target.to_path_buf(),
        created: before.is_none(),
        source_map_size: source_words,
        target_map_size_before: before.unwrap_or(0),
        target_map_size_after: source_words,
        segments_set_after: map.count_set(),
    })
}

/// `ddmap -s SRC -t TARGET`: ORs SRC into TARGET (created if missing).
pub fn merge_file(source: &Path, target: &Path) -> anyhow::Result<MergeReport> {
    check_paths(&[("source", source)], target)?;
    let mut src = open_map(source)?;
    let sh = *src.header();
    precheck_target(target, sh.name_sum, sh.map_size as usize)?;
    let _lock = lock_target(target)?;
    remove_stale_temps(target);
    let mut map = ChangeMap::new(sh.map_size as usize);
    let before = or_target_into(target, sh.name_sum, &mut map)?;
    let mut at = 0usize;
    let mut buf = Vec::with_capacity(CHUNK_WORDS);
    loop {
        buf.clear();
        let n = src.read_words(&mut buf, CHUNK_WORDS).with_context(|| format!("ddmap {}", source.display()))?;
        if n == 0 {
            break;
        }
        map.or_words_at(at, &buf);
        at += n;
    }
    src.finish().with_context(|| format!("ddmap {}", source.display()))?;
    finish_merge(target, sh.name_sum, sh.map_size, map, before)
}

/// Checks a map name for `--from-extents`: its byte sum is the map's
/// identity, so an empty name (sum 0) would match any other empty map.
pub fn check_map_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the map name is empty: give the volume's name, e.g. \"<target iqn>.<lun>\"".into());
    }
    if name.chars().any(char::is_control) {
        return Err(format!("the map name {name:?} contains control characters"));
    }
    Ok(())
}

/// `ddmap --from-extents FILE --size BYTES --name NAME -t TARGET`: builds
/// the map of the "OFFSET LENGTH" lines read from `extents` (streamed) and
/// merges it into TARGET. `extents_path` is the list's file, if it has one
/// (it must not be the target).
pub fn merge_extents(
    extents: impl BufRead,
    extents_origin: &str,
    extents_path: Option<&Path>,
    volume_size: u64,
    name: &str,
    target: &Path,
) -> anyhow::Result<MergeReport> {
    check_map_name(name).map_err(anyhow::Error::msg)?;
    if volume_size > MAX_MAP_VOLUME_BYTES {
        bail!(
            "--size {volume_size} bytes is larger than a ddmap can describe ({MAX_MAP_VOLUME_BYTES} bytes: map_size is a 32-bit word count)"
        );
    }
    match extents_path {
        Some(p) => check_paths(&[("extent list", p)], target)?,
        None => check_paths(&[], target)?,
    }
    let words = words_for_volume(volume_size);
    let sum = name_sum(name.as_bytes());
    precheck_target(target, sum, words as usize)?;
    let _lock = lock_target(target)?;
    remove_stale_temps(target);
    // A zeroed allocation: pages no extent touches cost no memory.
    let mut map = ChangeMap::new(words as usize);
    let n = for_each_extent(extents, volume_size, |e| {
        map.set_range(SegmentGeometry::segments_touched(e.offset, e.length));
    })
    .with_context(|| format!("extent list {extents_origin}"))?;
    tracing::info!("{} extents from {}, {} segments flagged", n, extents_origin, map.count_set());
    let before = or_target_into(target, sum, &mut map)?;
    finish_merge(target, sum, words as u32, map, before)
}
