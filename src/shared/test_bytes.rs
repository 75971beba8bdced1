//! Reproducible pseudo-random bytes for unit tests (xorshift64): data no
//! hash treats specially, the same on every run.

/// `len` bytes from the xorshift64 sequence started at `seed` (0 is
/// replaced by 1: xorshift never leaves 0).
pub(crate) fn xorshift_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
