//! Segment geometry: how a volume is cut into the 16 KiB segments that both
//! the checksum file and the ddmap bitmap count in, and into the 8 MiB read
//! buffers ddless works through.

use std::ops::Range;

/// Bytes per segment; one checksum record and one ddmap bit per segment.
pub const SEGMENT_SIZE: u64 = 16 * 1024;
/// log2(SEGMENT_SIZE), as the IET kernel's DDMAP_SEGMENT_SHIFT.
pub const SEGMENT_SHIFT: u32 = 14;
/// Bytes per read buffer (the seed's "8 MB read buffer").
pub const BUFFER_SIZE: u64 = 8 * 1024 * 1024;
/// Segments per read buffer.
pub const SEGMENTS_PER_BUFFER: u64 = BUFFER_SIZE / SEGMENT_SIZE;

const _: () = assert!(1 << SEGMENT_SHIFT == SEGMENT_SIZE);
const _: () = assert!(BUFFER_SIZE % SEGMENT_SIZE == 0);

/// A half-open range of segment indices `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SegmentRange {
    pub start: u64,
    pub end: u64,
}

impl SegmentRange {
    pub fn new(start: u64, end: u64) -> Self {
        debug_assert!(start <= end);
        SegmentRange { start, end }
    }

    pub fn single(segment: u64) -> Self {
        SegmentRange::new(segment, segment + 1)
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    pub fn contains(&self, segment: u64) -> bool {
        (self.start..self.end).contains(&segment)
    }

    pub fn iter(&self) -> Range<u64> {
        self.start..self.end
    }
}

/// Builds sorted, coalesced segment ranges from segments pushed in
/// ascending order.
#[derive(Debug, Default)]
pub struct RangeBuilder {
    ranges: Vec<SegmentRange>,
}

impl RangeBuilder {
    pub fn new() -> Self {
        RangeBuilder::default()
    }

    /// Adds `segment`; segments must arrive in ascending order.
    pub fn push(&mut self, segment: u64) {
        self.push_range(SegmentRange::single(segment));
    }

    /// Adds a range; ranges must arrive in ascending order of start.
    pub fn push_range(&mut self, range: SegmentRange) {
        if range.is_empty() {
            return;
        }
        match self.ranges.last_mut() {
            Some(last) if last.end >= range.start => last.end = last.end.max(range.end),
            _ => self.ranges.push(range),
        }
    }

    pub fn finish(self) -> Vec<SegmentRange> {
        self.ranges
    }
}

/// How a volume of a given byte size divides into segments and buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentGeometry {
    volume_size: u64,
}

impl SegmentGeometry {
    pub fn new(volume_size: u64) -> Self {
        SegmentGeometry { volume_size }
    }

    pub fn volume_size(&self) -> u64 {
        self.volume_size
    }

    /// Number of segments; the last one may be short.
    pub fn segment_count(&self) -> u64 {
        self.volume_size.div_ceil(SEGMENT_SIZE)
    }

    /// Bytes in the short last segment, 0 when the size is a whole number of segments.
    pub fn remainder(&self) -> u64 {
        self.volume_size % SEGMENT_SIZE
    }

    /// Byte offset of a segment.
    pub fn segment_offset(&self, segment: u64) -> u64 {
        segment * SEGMENT_SIZE
    }

    /// Length in bytes of a segment (the last one may be short; past the end: 0).
    pub fn segment_len(&self, segment: u64) -> u64 {
        let start = segment.saturating_mul(SEGMENT_SIZE);
        self.volume_size.saturating_sub(start).min(SEGMENT_SIZE)
    }

    /// Byte range covered by a range of segments, clamped to the volume.
    pub fn byte_range(&self, range: SegmentRange) -> Range<u64> {
        let start = (range.start * SEGMENT_SIZE).min(self.volume_size);
        let end = (range.end * SEGMENT_SIZE).min(self.volume_size);
        start..end
    }

    /// Number of 8 MiB read buffers needed to cover the volume.
    pub fn buffer_count(&self) -> u64 {
        self.volume_size.div_ceil(BUFFER_SIZE)
    }

    /// Segments covered by read buffer `index`.
    pub fn buffer_segments(&self, index: u64) -> SegmentRange {
        let start = index * SEGMENTS_PER_BUFFER;
        let end = (start + SEGMENTS_PER_BUFFER).min(self.segment_count());
        SegmentRange::new(start.min(end), end)
    }

    /// Segments touched by the byte range `[offset, offset + length)`.
    /// Empty when `length` is 0.
    pub fn segments_touched(offset: u64, length: u64) -> SegmentRange {
        if length == 0 {
            return SegmentRange::new(offset >> SEGMENT_SHIFT, offset >> SEGMENT_SHIFT);
        }
        let last = offset.saturating_add(length - 1) >> SEGMENT_SHIFT;
        SegmentRange::new(offset >> SEGMENT_SHIFT, last + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_remainders() {
        let cases = [
            (0u64, 0u64, 0u64, 0u64),
            (1, 1, 1, 1),
            (16384, 1, 0, 1),
            (16385, 2, 1, 1),
            (5_368_709_120, 327_680, 0, 640),         // the seed's 5 GB volume
            (536_870_912_000, 32_768_000, 0, 64_000), // the seed's 500 GB volume
        ];
        for (size, segs, rem, bufs) in cases {
            let g = SegmentGeometry::new(size);
            assert_eq!(g.segment_count(), segs, "segments of {size}");
            assert_eq!(g.remainder(), rem, "remainder of {size}");
            assert_eq!(g.buffer_count(), bufs, "buffers of {size}");
        }
    }

    #[test]
    fn last_segment_is_short() {
        let g = SegmentGeometry::new(3 * SEGMENT_SIZE + 100);
        assert_eq!(g.segment_len(0), SEGMENT_SIZE);
        assert_eq!(g.segment_len(3), 100);
        assert_eq!(g.segment_len(4), 0);
        assert_eq!(g.byte_range(SegmentRange::new(2, 4)), 2 * SEGMENT_SIZE..3 * SEGMENT_SIZE + 100);
    }

    #[test]
    fn buffer_segments_cover_volume_exactly() {
        let g = SegmentGeometry::new(BUFFER_SIZE * 2 + SEGMENT_SIZE * 3 + 7);
        assert_eq!(g.buffer_count(), 3);
        assert_eq!(g.buffer_segments(0), SegmentRange::new(0, 512));
        assert_eq!(g.buffer_segments(1), SegmentRange::new(512, 1024));
        assert_eq!(g.buffer_segments(2), SegmentRange::new(1024, 1028));
    }

    #[test]
    fn segments_touched_by_byte_ranges() {
        assert_eq!(SegmentGeometry::segments_touched(0, 16384), SegmentRange::new(0, 1));
        assert_eq!(SegmentGeometry::segments_touched(0, 16385), SegmentRange::new(0, 2));
        assert_eq!(SegmentGeometry::segments_touched(16383, 2), SegmentRange::new(0, 2));
        assert_eq!(SegmentGeometry::segments_touched(17000, 1), SegmentRange::new(1, 2));
        assert!(SegmentGeometry::segments_touched(17000, 0).is_empty());
    }

    #[test]
    fn range_builder_coalesces() {
        let mut b = RangeBuilder::new();
        for s in [1, 2, 3, 7, 8, 10] {
            b.push(s);
        }
        b.push_range(SegmentRange::new(10, 12));
        b.push_range(SegmentRange::new(12, 13));
        assert_eq!(b.finish(), vec![SegmentRange::new(1, 4), SegmentRange::new(7, 9), SegmentRange::new(10, 13)]);
    }
}
