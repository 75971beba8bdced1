//! What `ddmap -a`, `-b` and `--stats` print: plain data, rendered by the CLI.

use serde::Serialize;

use crate::shared::change_map::ChangeMap;
use crate::shared::ddmap_file::DdmapHeader;
use crate::shared::segment::SEGMENT_SIZE;
use crate::shared::units::percent;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct HeaderInfo {
    pub device: String,
    pub info: String,
    pub version: u32,
    /// IET's flag: the map was suspended while it was read (seed: `ddmap suspended`).
    pub suspended: u8,
    pub name_sum: u32,
    pub map_size: u32,
    pub map_size_bytes: u64,
}

impl HeaderInfo {
    pub fn new(device: &str, h: &DdmapHeader) -> Self {
        HeaderInfo {
            device: device.to_string(),
            info: "ddmap".into(),
            version: u32::from(h.version),
            suspended: h.suspended,
            name_sum: h.name_sum,
            map_size: h.map_size,
            map_size_bytes: h.map_size_bytes(),
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MapStats {
    pub map_size: u64,
    pub segments: u64,
    pub segments_set: u64,
    pub bytes_flagged: u64,
    pub percent: f64,
}

impl MapStats {
    pub fn of(map: &ChangeMap) -> Self {
        Self::from_counts(map.word_count() as u64, map.count_set())
    }

    /// From a word count and a count of set bits (streamed maps).
    pub fn from_counts(words: u64, set: u64) -> Self {
        let segments = words * 32;
        MapStats {
            map_size: words,
            segments,
            segments_set: set,
            bytes_flagged: set * SEGMENT_SIZE,
            percent: percent(set, segments),
        }
    }
}

/// One row of the data dump: the byte offset of its first word (word
/// index `first_word` * 4, 8 hex digits) then up to 8 words, 8 hex digits
/// each.
pub fn data_row(first_word: u64, words: &[u32]) -> String {
    let mut s = format!("{:08x}", first_word * 4);
    for w in words {
        s.push_str(&format!(" {w:08x}"));
    }
    s
}

/// The data dump, one row per 8 words.
pub fn data_rows(map: &ChangeMap) -> impl Iterator<Item = String> + '_ {
    map.words().chunks(8).enumerate().map(|(row, words)| data_row(row as u64 * 8, words))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_look_like_the_seed() {
        let mut m = ChangeMap::new(17);
        m.set(0);
        m.set(1);
        m.words();
        let mut m2 = m.clone();
        m2.mark_write(798_720, 4096);
        m2.mark_write(802_816, 20480);
        let rows: Vec<String> = data_rows(&m2).collect();
        assert_eq!(rows[0], "00000000 00000003 00070000 00000000 00000000 00000000 00000000 00000000 00000000");
        assert_eq!(rows[1].split(' ').next(), Some("00000020"));
        assert_eq!(rows[2], "00000040 00000000");
    }

    #[test]
    fn stats_count_bits() {
        let mut m = ChangeMap::new(2);
        m.set(5);
        m.set(63);
        let s = MapStats::of(&m);
        assert_eq!((s.segments, s.segments_set, s.bytes_flagged), (64, 2, 32768));
        assert!((s.percent - 3.125).abs() < 1e-9);
    }
}
