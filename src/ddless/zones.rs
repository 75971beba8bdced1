//! Read speed zones: the volume cut into equal zones, a sample read at the
//! start of each, one throughput figure per zone, for plotting (a disk's
//! outer tracks are faster than its inner ones).

use std::time::Instant;

use serde::Serialize;

use super::options::ZoneOptions;
use super::volume::Volume;
use crate::shared::aligned_buffer::AlignedBuffer;
use crate::shared::segment::{BUFFER_SIZE, SEGMENT_SIZE};
use crate::shared::units::mb_per_s;

#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct ZoneResult {
    pub zone: u32,
    pub offset: u64,
    pub bytes_read: u64,
    pub seconds: f64,
    pub mb_s: f64,
}

/// Zone `i`'s start, aligned down to a segment so O_DIRECT reads line up.
fn zone_start(size: u64, zones: u64, i: u64) -> u64 {
    ((size as u128 * i as u128 / zones as u128) as u64) / SEGMENT_SIZE * SEGMENT_SIZE
}

pub fn speed_zones(
    opts: &ZoneOptions,
    mut on_zone: impl FnMut(&ZoneResult) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<ZoneResult>> {
    let source = Volume::open_source(&opts.source, opts.direct_io)?;
    if source.size == 0 {
        anyhow::bail!("source {} is empty: there are no zones to measure", opts.source.display());
    }
    // Every zone starts on its own segment: a tiny source gets fewer zones.
    let requested = u64::from(opts.zones.get());
    let zones = requested.min((source.size / SEGMENT_SIZE).max(1));
    if zones < requested {
        tracing::warn!(
            "source {} has only {} bytes: measuring {} zones instead of {}",
            opts.source.display(),
            source.size,
            zones,
            requested
        );
    }
    let mut buf = AlignedBuffer::new(BUFFER_SIZE as usize);
    let mut out = Vec::new();
    for i in 0..zones {
        let start = zone_start(source.size, zones, i);
        let end = zone_start(source.size, zones, i + 1).max(start).min(source.size);
        let end = if i + 1 == zones { source.size } else { end };
        let sample = (end - start).min(opts.sample_bytes.get());
        let t = Instant::now();
        let mut done = 0;
        while done < sample {
            let len = (sample - done).min(BUFFER_SIZE) as usize;
            source.read_at(&mut buf, start + done, len)?;
            done += len as u64;
        }
        let secs = t.elapsed().as_secs_f64();
        let z = ZoneResult {
            zone: i as u32,
            offset: start,
            bytes_read: sample,
            seconds: secs,
            mb_s: mb_per_s(sample, secs),
        };
        on_zone(&z)?;
        out.push(z);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_cover_the_volume_in_order() {
        let size = 1_000_000_000;
        let starts: Vec<u64> = (0..=100).map(|i| zone_start(size, 100, i)).collect();
        assert_eq!(starts[0], 0);
        assert!(starts.windows(2).all(|w| w[0] <= w[1]));
        assert!(starts.iter().all(|s| s % SEGMENT_SIZE == 0));
        assert!(starts[100] <= size && size - starts[100] < SEGMENT_SIZE);
        // With at most size / SEGMENT_SIZE zones, every zone has its own start.
        let tiny = 2 * SEGMENT_SIZE + 1;
        let n = (tiny / SEGMENT_SIZE).max(1);
        let starts: Vec<u64> = (0..n).map(|i| zone_start(tiny, n, i)).collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
    }
}
