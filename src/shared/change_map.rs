//! The ddmap change bitmap: bit b (LSB = 0) of u32 word w stands for segment
//! 32*w + b; a set bit means "written since the map was last cleared".
//!
//! [`ChangeMap::mark_write`] is the IET kernel's `ddmap_lun_exec`, step for
//! step, so a map built here from a list of writes is bit-identical to the
//! one the target kernel would have kept.

use crate::shared::segment::{RangeBuilder, SegmentRange, SEGMENT_SHIFT};

/// Segments per map word.
pub const SEGMENTS_PER_WORD: u64 = 32;
/// Bytes of volume per map word (DDMAP_512K_SHIFT).
pub const BYTES_PER_WORD: u64 = 512 * 1024;
const WORD_SHIFT: u32 = 19;
const SEGMENT_MASK: u64 = 0x3FFF;
const MAP_BIT_EXP: u64 = 0x7C000;

const _: () = assert!(1 << WORD_SHIFT == BYTES_PER_WORD);
const _: () = assert!(BYTES_PER_WORD >> SEGMENT_SHIFT == SEGMENTS_PER_WORD);

/// Map words needed for a volume: ceil(size / 512 KiB).
pub fn words_for_volume(volume_size: u64) -> u64 {
    volume_size.div_ceil(BYTES_PER_WORD)
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ChangeMap {
    words: Vec<u32>,
}

impl ChangeMap {
    /// An all-clear map of `words` words.
    pub fn new(words: usize) -> Self {
        ChangeMap { words: vec![0; words] }
    }

    pub fn from_words(words: Vec<u32>) -> Self {
        ChangeMap { words }
    }

    pub fn words(&self) -> &[u32] {
        &self.words
    }

    pub fn word_count(&self) -> usize {
        self.words.len()
    }

    /// Segments the map can describe (32 per word).
    pub fn segment_capacity(&self) -> u64 {
        self.words.len() as u64 * SEGMENTS_PER_WORD
    }

    pub fn is_set(&self, segment: u64) -> bool {
        let w = (segment / SEGMENTS_PER_WORD) as usize;
        self.words.get(w).is_some_and(|word| word & (1 << (segment % SEGMENTS_PER_WORD)) != 0)
    }

    /// Sets one segment's bit; segments past the map are ignored, as the
    /// kernel ignores writes past its map.
    pub fn set(&mut self, segment: u64) {
        let w = (segment / SEGMENTS_PER_WORD) as usize;
        if let Some(word) = self.words.get_mut(w) {
            *word |= 1 << (segment % SEGMENTS_PER_WORD);
        }
    }

    /// Records a write of `size` bytes at byte offset `ppos`, exactly as the
    /// kernel's `ddmap_lun_exec`: align ppos down to its segment, grow size
    /// by the same amount, then set `(size - 1) >> 14` + 1 consecutive bits
    /// starting at ppos's bit. A zero-length write touches nothing (the
    /// kernel would underflow `size - 1`; no real write has size 0).
    pub fn mark_write(&mut self, ppos: u64, size: u32) {
        if size == 0 {
            return;
        }
        let ppos_align = ppos & SEGMENT_MASK;
        let ppos = ppos - ppos_align;
        let size = u64::from(size) + ppos_align - 1;
        let mut map_offset = ppos >> WORD_SHIFT;
        let map_bit_exp = (ppos & MAP_BIT_EXP) >> SEGMENT_SHIFT;
        let mut map_bit: u32 = 1 << map_bit_exp;
        let mut size_bits = size >> SEGMENT_SHIFT;
        let mut map_mask: u32 = 0;
        loop {
            map_mask |= map_bit;
            map_bit = map_bit.wrapping_shl(1);
            if map_bit == 0 {
                self.or_word(map_offset, map_mask);
                map_offset += 1;
                map_mask = 0;
                map_bit = 1;
            }
            if size_bits == 0 {
                break;
            }
            size_bits -= 1;
        }
        if map_mask != 0 {
            self.or_word(map_offset, map_mask);
        }
    }

    fn or_word(&mut self, index: u64, mask: u32) {
        if let Some(word) = usize::try_from(index).ok().and_then(|i| self.words.get_mut(i)) {
            *word |= mask;
        }
    }

    /// Sets every segment in `range` a word at a time (for large extents; the
    /// result equals [`mark_write`](Self::mark_write) over the same bytes).
    pub fn set_range(&mut self, range: SegmentRange) {
        let end = range.end.min(self.segment_capacity());
        let mut s = range.start;
        while s < end {
            let w = (s / SEGMENTS_PER_WORD) as usize;
            let bit = s % SEGMENTS_PER_WORD;
            let n = (SEGMENTS_PER_WORD - bit).min(end - s);
            let mask = if n == 32 { u32::MAX } else { ((1u32 << n) - 1) << bit };
            self.words[w] |= mask;
            s += n;
        }
    }

    /// Number of set bits.
    pub fn count_set(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Ranges of set segments within `within`, ascending and coalesced.
    pub fn set_ranges(&self, within: SegmentRange) -> Vec<SegmentRange> {
        let mut b = RangeBuilder::new();
        let end = within.end.min(self.segment_capacity());
        let mut s = within.start;
        while s < end {
            let w = (s / SEGMENTS_PER_WORD) as usize;
            let word = self.words[w];
            if word == 0 && s % SEGMENTS_PER_WORD == 0 {
                s += SEGMENTS_PER_WORD;
                continue;
            }
            if word & (1 << (s % SEGMENTS_PER_WORD)) != 0 {
                b.push(s);
            }
            s += 1;
        }
        b.finish()
    }

    /// ORs `words` into the map starting at word `at` (words past the end
    /// are ignored).
    pub fn or_words_at(&mut self, at: usize, words: &[u32]) {
        if let Some(dst) = self.words.get_mut(at..) {
            for (d, s) in dst.iter_mut().zip(words) {
                *d |= *s;
            }
        }
    }

    /// Bitwise OR of `other` into `self`; a larger `other` grows `self`.
    pub fn merge_or(&mut self, other: &ChangeMap) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (dst, src) in self.words.iter_mut().zip(&other.words) {
            *dst |= *src;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::segment::SegmentGeometry;
    use proptest::prelude::*;

    // Worked examples from the seed's "DDMAP Debugging and Examples".
    #[test]
    fn seed_first_segment_sets_bit_zero() {
        let mut m = ChangeMap::new(8);
        m.mark_write(0, 16384);
        assert_eq!(m.words()[0], 0x0000_0001);
        m.mark_write(16384, 16384); // "another 16 KB segment right after the first"
        assert_eq!(m.words()[0], 0x0000_0003);
    }

    #[test]
    fn seed_unaligned_20000_byte_write() {
        // dd bs=20000 seek=40 reaches the target as two requests.
        let mut m = ChangeMap::new(8);
        m.mark_write(798_720, 4096); // aligned to 786432: one bit
        assert_eq!(m.words()[1], 0x0001_0000);
        m.mark_write(802_816, 20480); // 2 bits: 0x00060000
        assert_eq!(m.words()[1], 0x0007_0000);
        assert_eq!(m.words()[0], 0);
    }

    #[test]
    fn seed_4mib_write_fills_row_0x20() {
        // dd bs=1M count=4 seek=4: words 8..16 (dump row 0x00000020) all set.
        let mut m = ChangeMap::new(24);
        m.mark_write(4 << 20, 4 << 20);
        assert!(m.words()[..8].iter().all(|&w| w == 0));
        assert!(m.words()[8..16].iter().all(|&w| w == u32::MAX));
        assert!(m.words()[16..].iter().all(|&w| w == 0));
    }

    #[test]
    fn seed_alignment_example_17000() {
        // ppos 17000 aligns down to 16384 (616 bytes); a 1-byte write sets bit 1.
        let mut m = ChangeMap::new(1);
        m.mark_write(17000, 1);
        assert_eq!(m.words()[0], 0b10);
    }

    #[test]
    fn writes_past_the_map_are_ignored() {
        let mut m = ChangeMap::new(1);
        m.mark_write(31 * 16384, 3 * 16384);
        assert_eq!(m.words(), &[0x8000_0000]);
        m.set(1000);
        assert_eq!(m.count_set(), 1);
    }

    #[test]
    fn zero_length_write_touches_nothing() {
        let mut m = ChangeMap::new(2);
        m.mark_write(12345, 0);
        assert_eq!(m.count_set(), 0);
    }

    #[test]
    fn words_for_volume_rounds_up() {
        assert_eq!(words_for_volume(10 << 30), 20480); // the seed's 10 GB example
        assert_eq!(words_for_volume(1), 1);
        assert_eq!(words_for_volume(0), 0);
        assert_eq!(words_for_volume(512 * 1024 + 1), 2);
    }

    #[test]
    fn set_ranges_and_merge() {
        let mut a = ChangeMap::new(2);
        a.set_range(SegmentRange::new(3, 6));
        a.set(40);
        assert_eq!(a.set_ranges(SegmentRange::new(0, 64)), vec![SegmentRange::new(3, 6), SegmentRange::new(40, 41)]);
        assert_eq!(a.set_ranges(SegmentRange::new(4, 40)), vec![SegmentRange::new(4, 6)]);
        let mut b = ChangeMap::new(3);
        b.set(70);
        a.merge_or(&b);
        assert_eq!(a.word_count(), 3);
        assert!(a.is_set(70) && a.is_set(3) && a.is_set(40));
        assert_eq!(a.count_set(), 5);
    }

    proptest! {
        #[test]
        fn kernel_algorithm_sets_exactly_the_touched_segments(ppos in 0u64..(40 << 20), size in 1u32..(9 << 20)) {
            let mut kernel = ChangeMap::new(words_for_volume(64 << 20) as usize);
            kernel.mark_write(ppos, size);
            let mut fast = ChangeMap::new(kernel.word_count());
            fast.set_range(SegmentGeometry::segments_touched(ppos, u64::from(size)));
            prop_assert_eq!(&kernel, &fast);
            let touched = SegmentGeometry::segments_touched(ppos, u64::from(size));
            prop_assert_eq!(kernel.count_set(), touched.len());
        }

        #[test]
        fn merge_is_union(a in proptest::collection::vec(any::<u32>(), 0..20), b in proptest::collection::vec(any::<u32>(), 0..20)) {
            let mut m = ChangeMap::from_words(a.clone());
            m.merge_or(&ChangeMap::from_words(b.clone()));
            for s in 0..(a.len().max(b.len()) as u64 * 32) {
                let expect = ChangeMap::from_words(a.clone()).is_set(s) || ChangeMap::from_words(b.clone()).is_set(s);
                prop_assert_eq!(m.is_set(s), expect);
            }
        }
    }
}
