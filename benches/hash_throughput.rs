//! Checksum throughput on 16 KiB segments: our MurmurHash3 (scalar and
//! 8-lane) against the `murmur3` crate, plus crc32fast and the combined
//! per-segment record. Run: `cargo bench --bench hash_throughput`.

use std::hint::black_box;
use std::time::Instant;

use santools::shared::checksum_record::{checksum_segments, ChecksumRecord};
use santools::shared::murmur3::{murmur3_x86_32, murmur3_x86_32_x8};

const SEG: usize = 16384;

fn gbs(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

fn time(label: &str, bytes: usize, f: impl Fn() -> u64) -> f64 {
    f(); // warm up
    let t = Instant::now();
    black_box(f());
    let rate = gbs(bytes, t.elapsed().as_secs_f64());
    println!("{label:<40} {rate:6.2} GB/s");
    rate
}

fn main() {
    let mut data = vec![0u8; 128 << 20];
    let mut x = 0x1234_5678_9abc_def1u64;
    for c in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    // Same results first: the crate is the oracle.
    for seg in data.chunks(SEG).take(64) {
        let oracle = murmur3::murmur3_32(&mut std::io::Cursor::new(seg), 0).unwrap();
        assert_eq!(murmur3_x86_32(seg, 0), oracle);
    }
    println!("# 16 KiB segments, one thread");
    println!("## a 128 MiB buffer (from memory)");
    suite(&data, 1);
    println!("## a 1 MiB buffer hashed 128 times (in cache, as a buffer just received)");
    suite(&data[..1 << 20], 128);
}

/// Every hash over `data`, `reps` times per measurement.
fn suite(data: &[u8], reps: usize) {
    let n = data.len() * reps;
    let time = |label: &str, bytes: usize, f: &dyn Fn() -> u64| time(label, bytes, || (0..reps).map(|_| f()).sum());
    let crate_rate = time("murmur3 crate (io::Read API)", n / 8, &|| {
        data[..data.len() / 8]
            .chunks(SEG)
            .map(|s| u64::from(murmur3::murmur3_32(&mut std::io::Cursor::new(s), 0).unwrap()))
            .sum()
    });
    let scalar =
        time("santools murmur3, scalar slice", n, &|| data.chunks(SEG).map(|s| u64::from(murmur3_x86_32(s, 0))).sum());
    let x8 = time("santools murmur3, 8 lanes (AVX2 if present)", n, &|| {
        data.chunks(8 * SEG)
            .map(|c| {
                let lanes: [&[u8]; 8] = std::array::from_fn(|i| &c[i * SEG..(i + 1) * SEG]);
                murmur3_x86_32_x8(lanes).iter().map(|&h| u64::from(h)).sum::<u64>()
            })
            .sum()
    });
    time("crc32fast", n, &|| data.chunks(SEG).map(|s| u64::from(crc32fast::hash(s))).sum());
    time("ChecksumRecord::of (crc + scalar murmur)", n, &|| {
        data.chunks(SEG).map(|s| u64::from(ChecksumRecord::of(s).murmur3)).sum()
    });
    time("checksum_segments (what ddless runs)", n, &|| {
        let mut out = Vec::with_capacity(data.len() / SEG);
        checksum_segments(data, &mut out);
        out.iter().map(|r| u64::from(r.crc32)).sum()
    });
    println!(
        "ratios: scalar/crate {:.1}x, 8-lane/crate {:.1}x, 8-lane/scalar {:.1}x",
        scalar / crate_rate,
        x8 / crate_rate,
        x8 / scalar
    );
}
