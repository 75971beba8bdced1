//! ddmap files come from /proc and from disk: parsing must never panic, and
//! whatever parses must serialize back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use santools::shared::ddmap_file::{Ddmap, DdmapHeader};

fuzz_target!(|data: &[u8]| {
    let header = DdmapHeader::parse(data);
    match Ddmap::parse(data) {
        Ok(map) => {
            assert!(header.is_ok());
            let bytes = map.to_bytes().expect("a parsed map serializes");
            assert_eq!(bytes, data, "round trip changed the bytes");
            let mut merged = map.clone();
            merged.merge_from(&map).expect("a map merges with itself");
            assert_eq!(merged, map);
        }
        Err(_) => {}
    }
});
