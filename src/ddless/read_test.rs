//! Read performance test: read the source sequentially in 8 MiB buffers on
//! one thread and time each buffer, as the seed's `ddless -s SRC -v`.

use std::time::Instant;

use serde::Serialize;

use super::options::ReadTestOptions;
use super::volume::Volume;
use crate::shared::aligned_buffer::AlignedBuffer;
use crate::shared::segment::BUFFER_SIZE;
use crate::shared::units::mb_per_s;

#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct BufferTiming {
    pub offset: u64,
    pub bytes: u64,
    pub milliseconds: f64,
    pub mb_s: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ReadTestReport {
    pub source_size: u64,
    pub buffers: u64,
    pub elapsed_seconds: f64,
    pub mb_s: f64,
    pub slowest_mb_s: f64,
    pub fastest_mb_s: f64,
}

pub fn read_test(
    opts: &ReadTestOptions,
    mut on_buffer: impl FnMut(&BufferTiming) -> anyhow::Result<()>,
) -> anyhow::Result<ReadTestReport> {
    let source = Volume::open_source(&opts.source, opts.direct_io)?;
    let mut buf = AlignedBuffer::new(BUFFER_SIZE as usize);
    let started = Instant::now();
    let (mut offset, mut buffers) = (0u64, 0u64);
    let (mut slowest, mut fastest) = (f64::INFINITY, 0f64);
    while offset < source.size {
        let len = (source.size - offset).min(BUFFER_SIZE) as usize;
        let t = Instant::now();
        source.read_at(&mut buf, offset, len)?;
        let secs = t.elapsed().as_secs_f64();
        let timing =
            BufferTiming { offset, bytes: len as u64, milliseconds: secs * 1000.0, mb_s: mb_per_s(len as u64, secs) };
        slowest = slowest.min(timing.mb_s);
        fastest = fastest.max(timing.mb_s);
        on_buffer(&timing)?;
        offset += len as u64;
        buffers += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(ReadTestReport {
        source_size: source.size,
        buffers,
        elapsed_seconds: elapsed,
        mb_s: mb_per_s(source.size, elapsed),
        slowest_mb_s: if buffers == 0 { 0.0 } else { slowest },
        fastest_mb_s: fastest,
    })
}
