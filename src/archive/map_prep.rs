//! Prepares the ddmap a backup reads with: checked against the source's
//! size before anything is created, copied into the archive's own
//! `<prefix>_<lv>.ddmap` (so the map of every backup is kept beside its
//! checksum file), and extended when the source grew past what the map
//! tracks (IET's map covers `floor(size / 512 KiB)` words; anything it does
//! not cover is flagged, so it is always read).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::shared::atomic_file::write_atomic;
use crate::shared::change_map::{words_for_volume, BYTES_PER_WORD};
use crate::shared::ddmap_file::{DdmapHeader, DDMAP_HEADER_SIZE};

#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("ddmap {path}: {problem}")]
    Invalid { path: String, problem: String },
}

/// What the prepared map flags.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MapSummary {
    /// Words in the source's map.
    pub source_words: u64,
    /// Words in the prepared map (the source's size, rounded up).
    pub words: u64,
    /// Segments flagged (the tail the source's map did not track included).
    pub flagged_segments: u64,
}

/// Reads `from`, checks it against a source of `size` bytes and writes the
/// map ddless will use to `to` (atomically).
pub fn prepare_map(from: &Path, size: u64, to: &Path) -> Result<MapSummary, MapError> {
    let bad = |problem: String| MapError::Invalid { path: from.display().to_string(), problem };
    let mut f = File::open(from).map_err(|e| bad(format!("cannot open: {e}")))?;
    let len = f.metadata().map_err(|e| bad(e.to_string()))?.len();
    let mut head = [0u8; DDMAP_HEADER_SIZE];
    f.read_exact(&mut head).map_err(|_| bad(format!("too short for a ddmap header ({len} bytes)")))?;
    let header = DdmapHeader::parse(&head).map_err(|e| bad(e.to_string()))?;
    let needed = words_for_volume(size);
    let have = u64::from(header.map_size);
    if have > needed {
        return Err(bad(format!(
            "the map covers {} bytes ({have} words) but the source is only {size} bytes: the source is shorter than the map claims",
            have * BYTES_PER_WORD
        )));
    }
    let expected_len = DDMAP_HEADER_SIZE as u64 + 4 * have;
    if len != expected_len {
        return Err(bad(format!("header announces {have} words ({expected_len} bytes) but the file has {len} bytes")));
    }
    let mut data = vec![0u8; (4 * have) as usize];
    f.read_exact(&mut data).map_err(|e| bad(format!("reading the map: {e}")))?;
    let mut out = Vec::with_capacity(DDMAP_HEADER_SIZE + 4 * needed as usize);
    let new_header = DdmapHeader {
        map_size: u32::try_from(needed).map_err(|_| bad("source too large for a ddmap".into()))?,
        ..header
    };
    out.extend_from_slice(&new_header.to_bytes());
    out.extend_from_slice(&data);
    let mut flagged: u64 =
        data.chunks_exact(4).map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]).count_ones())).sum();
    for _ in have..needed {
        out.extend_from_slice(&u32::MAX.to_le_bytes());
        flagged += 32;
    }
    write_atomic(to, &out)
        .map_err(|e| MapError::Invalid { path: to.display().to_string(), problem: format!("writing: {e}") })?;
    Ok(MapSummary { source_words: have, words: needed, flagged_segments: flagged })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_bytes(words: &[u32]) -> Vec<u8> {
        let h = DdmapHeader { version: 1, suspended: 0, name_sum: 7, map_size: words.len() as u32 };
        let mut v = h.to_bytes().to_vec();
        for w in words {
            v.extend_from_slice(&w.to_le_bytes());
        }
        v
    }

    #[test]
    fn exact_floor_and_grown_maps() {
        let d = tempfile::tempdir().unwrap();
        let (src, out) = (d.path().join("m"), d.path().join("o"));
        std::fs::write(&src, map_bytes(&[0b101, 0])).unwrap();
        // Exact: 2 words for 1 MiB.
        assert_eq!(prepare_map(&src, 1 << 20, &out).unwrap().flagged_segments, 2);
        // IET rounds down: 2 words for 1 MiB + 100 bytes; the tail word is flagged.
        let s = prepare_map(&src, (1 << 20) + 100, &out).unwrap();
        assert_eq!((s.words, s.flagged_segments), (3, 34));
        assert_eq!(std::fs::read(&out).unwrap().len(), 20 + 12);
        // A map that claims more than the source has.
        let e = prepare_map(&src, 1000, &out).unwrap_err().to_string();
        assert!(e.contains("shorter than the map claims"), "{e}");
    }

    #[test]
    fn lies_in_the_header_are_refused_before_reading_the_map() {
        let d = tempfile::tempdir().unwrap();
        let (src, out) = (d.path().join("m"), d.path().join("o"));
        let mut b = map_bytes(&[1]);
        b[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&src, &b).unwrap();
        assert!(prepare_map(&src, u64::MAX / 2, &out).unwrap_err().to_string().contains("announces"));
        std::fs::write(&src, b"garbage garbage garbage").unwrap();
        assert!(prepare_map(&src, 1 << 20, &out).is_err());
        assert!(!out.exists());
    }
}
