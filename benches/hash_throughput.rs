//! Checksum throughput on 16 KiB segments: our MurmurHash3 (scalar and
//! 8-lane) against the `murmur3` crate, plus crc32fast and the combined
//! per-segment record, and the two ways of computing eight records
//! (separate passes, or both hashes in one pass over the bytes).
//! Run: `cargo bench --bench hash_throughput`.

use std::hint::black_box;
use std::time::Instant;

use santools::shared::checksum_record::{checksum_segments, ChecksumRecord};
use santools::shared::checksum_x8::{checksum_x8, one_pass_available, separate_passes};
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
    one_pass_against_separate(&data);
}

/// The eight-record kernels side by side, alternated in rounds (this
/// machine is shared: medians of paired rounds, not single timings).
/// In cache: 1 MiB hashed 256 times. As received: each 256 KiB command
/// copied out of the 128 MiB buffer into one reused buffer (as the
/// kernel's socket copy leaves it), then hashed.
fn one_pass_against_separate(data: &[u8]) {
    if !one_pass_available() {
        println!("## eight records at a time: no one-pass kernel in this build or on this CPU (needs Rust 1.89+, AVX2, VPCLMULQDQ); not compared");
        return;
    }
    type Kernel = fn([&[u8]; 8]) -> [ChecksumRecord; 8];
    let kernels: [(&str, Kernel); 2] = [("separate passes", separate_passes), ("one pass", checksum_x8)];
    let hash_all = |buf: &[u8], k: Kernel| -> u64 {
        buf.chunks_exact(8 * SEG)
            .map(|c| {
                let lanes: [&[u8]; 8] = std::array::from_fn(|i| &c[i * SEG..(i + 1) * SEG]);
                k(lanes).iter().map(|r| u64::from(r.crc32 ^ r.murmur3)).sum::<u64>()
            })
            .sum()
    };
    let in_cache = &data[..1 << 20];
    assert_eq!(hash_all(in_cache, separate_passes), hash_all(in_cache, checksum_x8));
    let command = 256 << 10;
    let mut received = vec![0u8; command];
    let rounds = 9;
    let mut cached = [vec![], vec![]];
    let mut copied = [vec![], vec![]];
    let mut copy_only = vec![];
    for _ in 0..rounds {
        for (k, (_, kernel)) in kernels.iter().enumerate() {
            let t = Instant::now();
            black_box((0..256).map(|_| hash_all(black_box(in_cache), *kernel)).sum::<u64>());
            cached[k].push(t.elapsed().as_secs_f64() / (256.0 * in_cache.len() as f64 / 1e9));
            let t = Instant::now();
            let mut sum = 0;
            for c in data.chunks_exact(command) {
                received.copy_from_slice(c);
                sum += hash_all(black_box(&received), *kernel);
            }
            black_box(sum);
            copied[k].push(t.elapsed().as_secs_f64() / (data.len() as f64 / 1e9));
        }
        let t = Instant::now();
        for c in data.chunks_exact(command) {
            received.copy_from_slice(c);
            black_box(&received);
        }
        copy_only.push(t.elapsed().as_secs_f64() / (data.len() as f64 / 1e9));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let copy = median(&mut copy_only);
    println!("## eight records at a time, {rounds} alternated rounds, medians (CPU s per GB hashed)");
    for (k, (name, _)) in kernels.iter().enumerate() {
        let c = median(&mut cached[k]);
        let r = median(&mut copied[k]);
        println!(
            "{name:<16} in cache {c:.3} s/GB ({:5.2} GB/s); copied in then hashed {r:.3} s/GB, of which hashing {:.3}",
            1.0 / c,
            r - copy
        );
    }
    let ratio = |v: &[Vec<f64>]| {
        let mut r: Vec<f64> = v[0].iter().zip(&v[1]).map(|(s, o)| s / o).collect();
        median(&mut r)
    };
    println!(
        "one pass against separate passes, paired rounds: {:.2}x in cache, {:.2}x copied in then hashed (copy alone {copy:.3} s/GB)",
        ratio(&cached),
        ratio(&copied)
    );
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
