//! Extent lists come from other tools' output (or a user's file): parsing
//! must never panic, and accepted extents must fit the volume.
#![no_main]

use libfuzzer_sys::fuzz_target;
use santools::shared::ddmap_file::Ddmap;
use santools::shared::extents::{for_each_extent, parse_extents};
use santools::shared::segment::SegmentGeometry;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    // Volume size from the first bytes, capped so the map stays small.
    let size = u64::from(u32::from_le_bytes([data[0], data[1], data[2], data[3]])) % (64 << 20);
    let Ok(text) = std::str::from_utf8(&data[4..]) else { return };
    // Streaming equals one-shot (lines are short here: under the line bound).
    let mut streamed = Vec::new();
    let stream = for_each_extent(text.as_bytes(), size, |e| streamed.push(e));
    if text.lines().all(|l| l.len() < 4000) {
        assert_eq!(stream.is_ok(), parse_extents(text, size).is_ok());
    }
    if let Ok(extents) = parse_extents(text, size) {
        if stream.is_ok() {
            assert_eq!(streamed, extents);
        }
        let mut map = Ddmap::for_volume("fuzz", size);
        for e in &extents {
            assert!(e.offset.checked_add(e.length).is_some_and(|end| end <= size));
            map.map.set_range(SegmentGeometry::segments_touched(e.offset, e.length));
        }
        assert!(map.map.count_set() <= SegmentGeometry::new(size).segment_count());
    }
});
