//! ddmap files come from /proc and from disk: parsing must never panic,
//! whatever parses must serialize back to the same bytes (except IET's
//! `suspended` and unused header bytes 9-11, which santools writes as 0),
//! and the streaming reader must agree with the one-shot parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use santools::shared::ddmap_file::{Ddmap, DdmapHeader, MapReader};

fuzz_target!(|data: &[u8]| {
    let header = DdmapHeader::parse(data);
    let streamed = MapReader::open(data).and_then(|r| r.read_all());
    match Ddmap::parse(data) {
        Ok(map) => {
            assert!(header.is_ok());
            let bytes = map.to_bytes().expect("a parsed map serializes");
            assert_eq!(bytes.len(), data.len());
            assert_eq!(bytes[..9], data[..9], "round trip changed the bytes");
            assert_eq!(bytes[12..], data[12..], "round trip changed the bytes");
            let mut merged = map.clone();
            merged.merge_from(&map).expect("a map merges with itself");
            assert_eq!(merged, map);
            assert_eq!(streamed.expect("the stream reader accepts what parse accepts"), map);
        }
        Err(_) => assert!(streamed.is_err(), "the stream reader accepted what parse refused"),
    }
});
