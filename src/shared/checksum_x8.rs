//! Checksum records of eight segments of equal length, in one pass over
//! their bytes where the CPU allows it.
//!
//! MurmurHash3 (8 lanes, AVX2) and CRC-32 (carry-less multiply) are each
//! bound by their own execution units, not by loading the bytes. Run one
//! after the other, every segment is read twice and the two kernels never
//! overlap; run in one loop, each 32-byte block is loaded once and the CRC's
//! multiplies fill the cycles the MurmurHash3 chain leaves idle
//! (docs/performance.md, "Both hashes in one pass").

use crate::shared::checksum_record::ChecksumRecord;
use crate::shared::murmur3::murmur3_x86_32_x8;

/// Records of eight segments: each lane's CRC-32 and MurmurHash3, as
/// [`ChecksumRecord::of`] computes them one at a time.
pub fn checksum_x8(lanes: [&[u8]; 8]) -> [ChecksumRecord; 8] {
    #[cfg(all(target_arch = "x86_64", santools_vpclmulqdq))]
    {
        if one_pass::fits(&lanes) && one_pass_available() {
            // SAFETY: the CPU has the kernel's features (one_pass_available),
            // and the lanes are equal in length, a multiple of 32 bytes and
            // not empty (fits()), which is all the kernel reads.
            return unsafe { one_pass::records(&lanes) };
        }
    }
    separate_passes(lanes)
}

/// True when [`checksum_x8`] computes full segments in one pass: built with
/// the intrinsics (Rust 1.89 or later) and running on a CPU that has them.
pub fn one_pass_available() -> bool {
    #[cfg(all(target_arch = "x86_64", santools_vpclmulqdq))]
    {
        crate::shared::crc32_fold::avx2::available()
    }
    #[cfg(not(all(target_arch = "x86_64", santools_vpclmulqdq)))]
    {
        false
    }
}

/// MurmurHash3 of all eight, then each one's CRC-32.
pub fn separate_passes(lanes: [&[u8]; 8]) -> [ChecksumRecord; 8] {
    let mm = murmur3_x86_32_x8(lanes);
    std::array::from_fn(|l| ChecksumRecord { crc32: crc32fast::hash(lanes[l]), murmur3: mm[l] })
}

#[cfg(all(target_arch = "x86_64", santools_vpclmulqdq))]
mod one_pass {
    use crate::shared::checksum_record::ChecksumRecord;
    use crate::shared::crc32_fold::avx2::Crc32Fold;
    use crate::shared::murmur3::avx2::{load_block, MurmurX8};

    /// The lanes the one-pass kernel takes: equal lengths, whole 32-byte
    /// blocks (a 16 KiB segment is 512), at least one.
    pub(super) fn fits(lanes: &[&[u8]; 8]) -> bool {
        let len = lanes[0].len();
        len >= 32 && len % 32 == 0 && lanes.iter().all(|l| l.len() == len)
    }

    /// # Safety
    /// The CPU supports AVX2, PCLMULQDQ and VPCLMULQDQ, and `fits(lanes)`.
    #[target_feature(enable = "avx2,pclmulqdq,vpclmulqdq")]
    pub(super) unsafe fn records(lanes: &[&[u8]; 8]) -> [ChecksumRecord; 8] {
        let words = lanes[0].len() / 4;
        let mut murmur = MurmurX8::new();
        let first = load_block(lanes, 0);
        let mut crc = first.map(|b| Crc32Fold::start(b));
        murmur.mix_block(&first);
        let mut i = 8;
        while i + 8 <= words {
            let block = load_block(lanes, i);
            murmur.mix_block(&block);
            for (c, b) in crc.iter_mut().zip(block) {
                c.update(b);
            }
            i += 8;
        }
        let mm = murmur.into_hashes(lanes, i);
        std::array::from_fn(|l| ChecksumRecord { crc32: crc[l].finish(), murmur3: mm[l] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::test_bytes::xorshift_bytes as noise;
    use proptest::prelude::*;

    fn one_at_a_time(lanes: [&[u8]; 8]) -> [ChecksumRecord; 8] {
        lanes.map(ChecksumRecord::of)
    }

    #[test]
    fn full_segments_match_one_at_a_time() {
        let data = noise(8 * 16384, 7);
        let lanes: [&[u8]; 8] = std::array::from_fn(|i| &data[i * 16384..(i + 1) * 16384]);
        assert_eq!(checksum_x8(lanes), one_at_a_time(lanes));
        assert_eq!(separate_passes(lanes), one_at_a_time(lanes));
    }

    #[test]
    fn zero_and_one_filled_segments() {
        for fill in [0u8, 0xff] {
            let seg = vec![fill; 16384];
            let lanes = [seg.as_slice(); 8];
            assert_eq!(checksum_x8(lanes), one_at_a_time(lanes));
        }
    }

    /// The one-pass kernel itself, where this CPU has it (on others
    /// checksum_x8 takes the separate passes, which the tests above cover).
    /// Not a missing component that CI could install, so it does not fail
    /// under SANTOOLS_REQUIRE_REAL: it says loudly that it did not run.
    #[cfg(all(target_arch = "x86_64", santools_vpclmulqdq))]
    #[test]
    fn the_one_pass_kernel_runs_here_and_matches() {
        if !one_pass_available() {
            eprintln!("SKIPPED: this CPU has no VPCLMULQDQ; checksum_x8 uses separate passes here");
            return;
        }
        for len in [32, 64, 96, 512, 4096, 16384] {
            let data = noise(8 * len + 3, len as u64);
            // Unaligned on purpose: a received buffer need not be.
            let lanes: [&[u8]; 8] = std::array::from_fn(|i| &data[3 + i * len..3 + (i + 1) * len]);
            assert!(one_pass::fits(&lanes));
            // SAFETY: one_pass_available() and fits() checked.
            let got = unsafe { one_pass::records(&lanes) };
            assert_eq!(got, one_at_a_time(lanes), "{len} bytes per lane");
        }
    }

    proptest! {
        #[test]
        fn any_lengths_match_one_at_a_time(len in 0usize..700, ragged in any::<bool>(), seed: u64) {
            let bufs: Vec<Vec<u8>> =
                (0..8).map(|i| noise(if ragged && i == 5 { len + 1 } else { len }, seed ^ i)).collect();
            let lanes: [&[u8]; 8] = std::array::from_fn(|i| bufs[i].as_slice());
            prop_assert_eq!(checksum_x8(lanes), one_at_a_time(lanes));
        }

        /// Whole 32-byte blocks: what the one-pass kernel takes (where the
        /// CPU has it), each lane at its own alignment.
        #[test]
        fn whole_blocks_match_one_at_a_time(blocks in 1usize..40, offsets in proptest::array::uniform8(0usize..64), seed: u64) {
            let bufs: Vec<Vec<u8>> = (0..8).map(|i| noise(32 * blocks + 64, seed ^ (i << 8))).collect();
            let lanes: [&[u8]; 8] = std::array::from_fn(|i| &bufs[i][offsets[i]..offsets[i] + 32 * blocks]);
            prop_assert_eq!(checksum_x8(lanes), one_at_a_time(lanes));
        }
    }
}
