//! `ddless -p`: the built-in parameters.

use serde::Serialize;

use super::options::ReadOptions;
use crate::shared::change_map::BYTES_PER_WORD;
use crate::shared::checksum_record::ChecksumRecord;
use crate::shared::segment::{BUFFER_SIZE, SEGMENTS_PER_BUFFER, SEGMENT_SIZE};

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Parameters {
    pub version: &'static str,
    pub segment_size: u64,
    pub read_buffer_size: u64,
    pub segments_per_buffer: u64,
    pub default_workers: usize,
    pub checksum_record_size: usize,
    pub checksum_layout: &'static str,
    pub invalid_record: &'static str,
    pub ddmap_bytes_per_word: u64,
    pub murmur3_lanes: &'static str,
}

pub fn parameters() -> Parameters {
    #[cfg(target_arch = "x86_64")]
    let simd = std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    Parameters {
        version: env!("CARGO_PKG_VERSION"),
        segment_size: SEGMENT_SIZE,
        read_buffer_size: BUFFER_SIZE,
        segments_per_buffer: SEGMENTS_PER_BUFFER,
        default_workers: ReadOptions::default_workers().get(),
        checksum_record_size: ChecksumRecord::SIZE,
        checksum_layout:
            "bytes 0-3 CRC-32 (IEEE) LE, bytes 4-7 MurmurHash3_x86_32 seed 0 LE, one record per segment, no header",
        invalid_record: "8 zero bytes = unknown, segment is rewritten",
        ddmap_bytes_per_word: BYTES_PER_WORD,
        murmur3_lanes: if simd { "8 (AVX2)" } else { "1 (scalar)" },
    }
}
