//! CRC-32 (IEEE, reflected, as zlib's `crc32`) by carry-less multiplication,
//! fed 32 bytes per step, so that it can ride along a loop that already
//! loads those bytes for another hash (src/shared/checksum_x8.rs).
//!
//! The method is the folding of Gopal et al., "Fast CRC computation for
//! generic polynomials using PCLMULQDQ instruction" (Intel, 2009). A
//! 256-bit accumulator holds two 128-bit partial remainders, one for the
//! bytes at offset 0 of every 32-byte block, one for those at offset 16.
//! Each step multiplies both by x^256 modulo the polynomial (two carry-less
//! multiplies by precomputed constants) and adds the next block. At the end
//! the two halves are folded into one 128-bit value whose CRC, as a message
//! of its own, is the CRC of the whole input; crc32fast computes that last
//! step.

/// The CRC-32 polynomial in normal (not reflected) form, without x^32.
const POLY: u32 = 0x04C1_1DB7;

/// `x^n mod P`, bit-reflected and shifted left by one: the form the
/// reflected fold multiplies by (the paper's k constants).
const fn fold_constant(n: u32) -> i64 {
    let mut r: u32 = 1;
    let mut i = 0;
    while i < n {
        let carry = r & 0x8000_0000 != 0;
        r <<= 1;
        if carry {
            r ^= POLY;
        }
        i += 1;
    }
    ((r.reverse_bits() as u64) << 1) as i64
}

/// Constants to advance a 128-bit remainder by `bits`: x^(bits+32) for its
/// low 64 bits, x^(bits-32) for its high 64 bits.
const fn fold_by(bits: u32) -> (i64, i64) {
    (fold_constant(bits + 32), fold_constant(bits - 32))
}

/// Advances each half of the accumulator past one 32-byte block.
const FOLD_256: (i64, i64) = fold_by(256);
/// Folds the offset-0 remainder into the offset-16 one.
const FOLD_128: (i64, i64) = fold_by(128);

#[cfg(all(target_arch = "x86_64", santools_vpclmulqdq))]
pub mod avx2 {
    use super::{FOLD_128, FOLD_256};
    use std::arch::x86_64::*;

    /// True when this CPU can run [`Crc32Fold`]. The AVX2 check is not
    /// redundant: it is the one that also asks whether the operating system
    /// saves YMM registers (std does not for VPCLMULQDQ).
    pub fn available() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("pclmulqdq")
            && is_x86_feature_detected!("vpclmulqdq")
    }

    /// The running CRC-32 of one byte stream fed 32 bytes at a time.
    #[derive(Clone, Copy)]
    pub struct Crc32Fold {
        acc: __m256i,
    }

    impl Crc32Fold {
        /// Starts with the stream's first 32 bytes.
        ///
        /// # Safety
        /// The CPU must support AVX2 ([`available`]).
        #[target_feature(enable = "avx2")]
        #[inline]
        pub unsafe fn start(first: __m256i) -> Self {
            // CRC-32 starts from all ones: folded in as the first 4 bytes
            // XOR !0, as the paper does for an initial value.
            let init = _mm256_set_epi32(0, 0, 0, 0, 0, 0, 0, -1);
            Crc32Fold { acc: _mm256_xor_si256(first, init) }
        }

        /// Adds the stream's next 32 bytes.
        ///
        /// # Safety
        /// The CPU must support AVX2 and VPCLMULQDQ ([`available`]).
        #[target_feature(enable = "avx2,vpclmulqdq")]
        #[inline]
        #[allow(clippy::incompatible_msrv)] // compiled only on Rust >= 1.89 (build.rs)
        pub unsafe fn update(&mut self, next: __m256i) {
            let k = _mm256_set_epi64x(FOLD_256.1, FOLD_256.0, FOLD_256.1, FOLD_256.0);
            let lo = _mm256_clmulepi64_epi128(self.acc, k, 0x00);
            let hi = _mm256_clmulepi64_epi128(self.acc, k, 0x11);
            self.acc = _mm256_xor_si256(_mm256_xor_si256(next, lo), hi);
        }

        /// The CRC-32 of everything fed.
        ///
        /// # Safety
        /// The CPU must support AVX2 and PCLMULQDQ ([`available`]).
        #[target_feature(enable = "avx2,pclmulqdq")]
        pub unsafe fn finish(self) -> u32 {
            let k = _mm_set_epi64x(FOLD_128.1, FOLD_128.0);
            let first = _mm256_castsi256_si128(self.acc);
            let second = _mm256_extracti128_si256(self.acc, 1);
            let x = _mm_xor_si128(
                _mm_xor_si128(second, _mm_clmulepi64_si128(first, k, 0x00)),
                _mm_clmulepi64_si128(first, k, 0x11),
            );
            let mut rest = [0u8; 16];
            _mm_storeu_si128(rest.as_mut_ptr() as *mut __m128i, x);
            // The initial value is already in `x`: what is left is the plain
            // remainder of these 16 bytes, which is crc32fast's update from
            // a state of all ones (it inverts its state on the way in and out).
            let mut h = crc32fast::Hasher::new_with_initial(u32::MAX);
            h.update(&rest);
            h.finalize()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_the_published_ones() {
        // The fold-by-4 (512 bits) and fold-by-1 (128 bits) constants of
        // the paper, as crc32fast, zlib-ng and Linux carry them, and the
        // 1024-bit ones of crc32fast's 8-stream AVX2 kernel.
        assert_eq!(fold_by(512), (0x1_5444_2bd4, 0x1_c6e4_1596));
        assert_eq!(fold_by(128), (0x1_7519_97d0, 0x0_ccaa_009e));
        assert_eq!(fold_by(1024), (0x1_e88e_f372, 0x1_4a7f_e880));
        assert_eq!(fold_constant(64), 0x1_63cd_6124);
        // The pair the 32-byte fold uses, pinned so that a change to the
        // formula cannot go unseen on a CPU that skips the kernel tests.
        assert_eq!(FOLD_256, (fold_constant(288), fold_constant(224)));
        assert_eq!(FOLD_256, (0x0_f1da_05aa, 0x1_5a54_6366));
        assert_eq!(FOLD_128, (0x1_7519_97d0, 0x0_ccaa_009e));
    }

    #[cfg(all(target_arch = "x86_64", santools_vpclmulqdq))]
    #[test]
    fn fold_equals_crc32fast_on_every_length() {
        use std::arch::x86_64::*;
        if !avx2::available() {
            eprintln!("SKIPPED: this CPU has no VPCLMULQDQ (the fold is not used here)");
            return;
        }
        let data = crate::shared::test_bytes::xorshift_bytes(4096 + 32, 0x2545_f491_4f6c_dd1d);
        for blocks in 1..=128 {
            for start in [0, 1, 7, 31] {
                let bytes = &data[start..start + 32 * blocks];
                // SAFETY: available() checked above; every load is of 32
                // bytes inside `bytes`.
                let got = unsafe {
                    let load = |i: usize| _mm256_loadu_si256(bytes[32 * i..32 * i + 32].as_ptr() as *const __m256i);
                    let mut crc = avx2::Crc32Fold::start(load(0));
                    for i in 1..blocks {
                        crc.update(load(i));
                    }
                    crc.finish()
                };
                assert_eq!(got, crc32fast::hash(bytes), "{blocks} blocks at offset {start}");
            }
        }
        // All zeros and all ones: the initial value must still count.
        for fill in [0u8, 0xff] {
            let bytes = [fill; 64];
            let got = unsafe {
                let mut crc = avx2::Crc32Fold::start(_mm256_loadu_si256(bytes.as_ptr() as *const __m256i));
                crc.update(_mm256_loadu_si256(bytes[32..].as_ptr() as *const __m256i));
                crc.finish()
            };
            assert_eq!(got, crc32fast::hash(&bytes));
        }
    }
}
