//! CRC32C throughput (the iSCSI digest): the table-driven implementation
//! the codec used before against the hardware-accelerated `crc32c` crate
//! it uses now, on the PDU sizes an initiator sees. Run:
//! `cargo bench --bench crc32c_throughput`.

use std::hint::black_box;
use std::time::Instant;

use santools::iscsi::crc32c::{crc32c, crc32c_table};

fn rate(label: &str, data: &[u8], chunk: usize, f: fn(&[u8]) -> u32) -> f64 {
    let run = || data.chunks(chunk).map(|c| u64::from(f(c))).sum::<u64>();
    black_box(run()); // warm up
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        black_box(run());
        best = best.min(t.elapsed().as_secs_f64());
    }
    let gbs = data.len() as f64 / best / 1e9;
    println!("{label:<34} {chunk:>7} B chunks {gbs:8.2} GB/s");
    gbs
}

fn main() {
    let mut data = vec![0u8; 64 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for c in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    assert_eq!(crc32c(&data[..4096]), crc32c_table(&data[..4096]));
    println!("# CRC32C over a {} MiB buffer, one thread, best of 3", data.len() >> 20);
    for chunk in [48, 8192, 262_144] {
        let table = rate("table-driven (old codec)", &data[..data.len() / 8], chunk, crc32c_table);
        let hw = rate("crc32c crate (SSE4.2)", &data, chunk, crc32c);
        println!("{:<34} {chunk:>7} B chunks {:8.1}x", "speed-up", hw / table);
    }
}
