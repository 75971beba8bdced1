//! CRC32C (Castagnoli), the iSCSI header and data digest (RFC 7143 13.1).
//!
//! With data digests negotiated every byte of a LUN read passes through
//! here, so [`crc32c`] uses the `crc32c` crate (SSE4.2 `crc32` instructions
//! on x86-64, ARMv8 CRC on aarch64, a software fallback elsewhere). The
//! byte-at-a-time table version it replaced stays as [`crc32c_table`]: the
//! reference in tests and the baseline in `benches/crc32c_throughput.rs`
//! (docs/performance.md has the figures).

const fn table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0x82f6_3b78 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static TABLE: [u32; 256] = table();

/// CRC32C of `data` (init and final XOR 0xffffffff), hardware-accelerated.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Continues a CRC32C: `crc32c_append(crc32c(a), b) == crc32c(a ++ b)`,
/// for a digest over data and padding that live in different buffers.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

/// The byte-at-a-time table implementation (reference and baseline).
pub fn crc32c_table(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn check_values() {
        for f in [crc32c, crc32c_table] {
            assert_eq!(f(b"123456789"), 0xe306_9283);
            // RFC 3720 B.4 test vectors: 32 bytes of zeros and of 0xff.
            assert_eq!(f(&[0u8; 32]), 0x8a91_36aa);
            assert_eq!(f(&[0xffu8; 32]), 0x62a8_ab43);
            assert_eq!(f(&[]), 0);
        }
    }

    proptest! {
        #[test]
        fn hardware_equals_table_and_append_equals_whole(data in proptest::collection::vec(any::<u8>(), 0..3000), cut in 0usize..3000) {
            let cut = cut.min(data.len());
            prop_assert_eq!(crc32c(&data), crc32c_table(&data));
            prop_assert_eq!(crc32c_append(crc32c(&data[..cut]), &data[cut..]), crc32c(&data));
        }
    }
}
