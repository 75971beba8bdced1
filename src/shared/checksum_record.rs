//! The 8-byte ddless checksum record of one segment: CRC-32 (IEEE, as
//! zlib.crc32) then MurmurHash3_x86_32 (seed 0), both little-endian.
//!
//! The all-zero record is reserved to mean "unknown": ddless writes it
//! (durably) before it touches a segment of the target, so a crash can never
//! leave a record that vouches for data the target does not hold. A segment
//! whose real checksum is all zero (odds 2^-64) is simply rewritten on every
//! run, which is always safe.

use crate::shared::checksum_x8::checksum_x8;
use crate::shared::murmur3::murmur3_x86_32;
use crate::shared::segment::SEGMENT_SIZE;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ChecksumRecord {
    pub crc32: u32,
    pub murmur3: u32,
}

impl ChecksumRecord {
    /// Bytes per record in the checksum file.
    pub const SIZE: usize = 8;
    /// The reserved "unknown" record.
    pub const INVALID: ChecksumRecord = ChecksumRecord { crc32: 0, murmur3: 0 };

    /// Checksum of one segment's bytes (the last segment may be short).
    pub fn of(data: &[u8]) -> Self {
        ChecksumRecord { crc32: crc32fast::hash(data), murmur3: murmur3_x86_32(data, 0) }
    }

    /// True for the reserved record, which never vouches for any data.
    pub fn is_invalid(&self) -> bool {
        *self == Self::INVALID
    }

    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.crc32.to_le_bytes());
        b[4..].copy_from_slice(&self.murmur3.to_le_bytes());
        b
    }

    pub fn from_bytes(b: [u8; 8]) -> Self {
        ChecksumRecord {
            crc32: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            murmur3: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// True when `self` proves that the segment holding `other`'s data is
    /// unchanged: equal and not the reserved record.
    pub fn vouches_for(&self, other: &ChecksumRecord) -> bool {
        !self.is_invalid() && self == other
    }
}

/// Checksums of consecutive segments in `data` (segment i = bytes
/// `[i*16384, (i+1)*16384)`, the last one may be short), appended to `out`.
pub fn checksum_segments(data: &[u8], out: &mut Vec<ChecksumRecord>) {
    let seg = SEGMENT_SIZE as usize;
    let full = data.len() / seg;
    let mut i = 0;
    while i + 8 <= full {
        let lanes: [&[u8]; 8] = std::array::from_fn(|l| &data[(i + l) * seg..(i + l + 1) * seg]);
        out.extend(checksum_x8(lanes));
        i += 8;
    }
    for chunk in data[i * seg..].chunks(seg) {
        out.push(ChecksumRecord::of(chunk));
    }
}

/// Checksums of separate segments, one slice each (full or short), in
/// their order. Full segments are hashed eight at a time like
/// [`checksum_segments`] does for consecutive ones: a ddmap-steered read
/// flags scattered single segments, which one by one hash at the scalar
/// MurmurHash3's speed (a quarter of the 8-lane one).
pub fn checksum_each(segments: &[&[u8]], out: &mut Vec<ChecksumRecord>) {
    let seg = SEGMENT_SIZE as usize;
    let base = out.len();
    out.resize(base + segments.len(), ChecksumRecord::INVALID);
    let full: Vec<usize> = (0..segments.len()).filter(|&i| segments[i].len() == seg).collect();
    let mut batched = vec![false; segments.len()];
    // A short last batch (a buffer of a nightly ddmap holds ~5 flagged
    // segments) still goes through the 8-lane kernel, its free lanes
    // repeating its last segment. A whole batch, free lanes included (whose
    // CRC the one-pass kernel computes too), costs less than three scalar
    // records: 8 / 7-9 GB/s against 3 / 2.4 GB/s (hash_throughput).
    for batch in full.chunks(8).filter(|b| b.len() >= 3) {
        let lanes: [&[u8]; 8] = std::array::from_fn(|l| segments[batch[l.min(batch.len() - 1)]]);
        for (r, &i) in checksum_x8(lanes).into_iter().zip(batch) {
            out[base + i] = r;
            batched[i] = true;
        }
    }
    for (i, s) in segments.iter().enumerate().filter(|&(i, _)| !batched[i]) {
        out[base + i] = ChecksumRecord::of(s);
    }
}

/// Encodes records into the on-disk byte layout.
pub fn encode_records(records: &[ChecksumRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * ChecksumRecord::SIZE);
    for r in records {
        out.extend_from_slice(&r.to_bytes());
    }
    out
}

/// Decodes whole records from `bytes` (trailing partial bytes are ignored;
/// callers validate the length first).
pub fn decode_records(bytes: &[u8], out: &mut Vec<ChecksumRecord>) {
    for c in bytes.chunks_exact(ChecksumRecord::SIZE) {
        out.push(ChecksumRecord::from_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_crc_then_murmur_little_endian() {
        let r = ChecksumRecord::of(b"123456789");
        assert_eq!(r.crc32, 0xcbf4_3926); // the CRC-32 check value
        let b = r.to_bytes();
        assert_eq!(&b[..4], &0xcbf4_3926u32.to_le_bytes());
        assert_eq!(ChecksumRecord::from_bytes(b), r);
    }

    #[test]
    fn invalid_record_vouches_for_nothing() {
        assert!(!ChecksumRecord::INVALID.vouches_for(&ChecksumRecord::INVALID));
        let r = ChecksumRecord::of(&[7u8; 100]);
        assert!(r.vouches_for(&r));
        assert!(!r.vouches_for(&ChecksumRecord::of(&[8u8; 100])));
    }

    proptest! {
        #[test]
        fn batch_equals_one_by_one(len in 0usize..(16384 * 11)) {
            let data: Vec<u8> = (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2]).collect();
            let mut batch = Vec::new();
            checksum_segments(&data, &mut batch);
            let single: Vec<ChecksumRecord> = data.chunks(16384).map(ChecksumRecord::of).collect();
            prop_assert_eq!(batch, single);
        }

        #[test]
        fn each_equals_one_by_one(lens in proptest::collection::vec(prop_oneof![Just(16384usize), 0usize..16385], 0..30)) {
            let bufs: Vec<Vec<u8>> = lens.iter().enumerate()
                .map(|(k, &len)| (0..len).map(|i| ((i + k * 7919) as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2]).collect())
                .collect();
            let slices: Vec<&[u8]> = bufs.iter().map(|b| b.as_slice()).collect();
            let mut got = vec![ChecksumRecord::of(b"before")];
            checksum_each(&slices, &mut got);
            let mut want = vec![ChecksumRecord::of(b"before")];
            want.extend(slices.iter().map(|s| ChecksumRecord::of(s)));
            prop_assert_eq!(got, want);
        }

        #[test]
        fn encode_decode_round_trip(raw in proptest::collection::vec(any::<(u32, u32)>(), 0..50)) {
            let recs: Vec<ChecksumRecord> = raw.iter().map(|&(c, m)| ChecksumRecord { crc32: c, murmur3: m }).collect();
            let mut back = Vec::new();
            decode_records(&encode_records(&recs), &mut back);
            prop_assert_eq!(back, recs);
        }
    }
}
