//! Reproducible pseudo-random bytes for unit tests (xorshift64): data no
//! hash treats specially, the same on every run.

/// `len` bytes from the xorshift64 sequence for `seed`. Distinct seeds
/// give distinct sequences: the seed is mixed by a bijection (an odd
/// multiply, then an add) before it starts the generator.
pub(crate) fn xorshift_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0xD1B5_4A32_D192_ED03);
    if x == 0 {
        // xorshift never leaves 0; only one seed maps here.
        x = 1;
    }
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbouring_seeds_give_different_bytes() {
        let lanes: Vec<Vec<u8>> = (0..64).map(|s| xorshift_bytes(64, s)).collect();
        for a in 0..lanes.len() {
            for b in a + 1..lanes.len() {
                assert_ne!(lanes[a], lanes[b], "seeds {a} and {b}");
            }
        }
    }
}
