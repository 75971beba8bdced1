//! The per-worker read-rate cap (`-r MB/s`): after each read, sleep until the
//! average since the worker started is back under the cap.

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

pub(crate) struct RateLimiter {
    bytes_per_sec: f64,
    start: Instant,
    bytes: u64,
}

impl RateLimiter {
    pub fn new(mb_per_s: NonZeroU64) -> Self {
        RateLimiter { bytes_per_sec: mb_per_s.get() as f64 * 1024.0 * 1024.0, start: Instant::now(), bytes: 0 }
    }

    /// How long to wait after `bytes` more were read at `now`.
    fn delay_after(&mut self, bytes: u64, now: Instant) -> Duration {
        self.bytes += bytes;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_sec);
        due.saturating_sub(now.duration_since(self.start))
    }

    pub fn throttle(&mut self, bytes: u64) {
        let d = self.delay_after(bytes, Instant::now());
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_keeps_average_under_cap() {
        let mut r = RateLimiter::new(NonZeroU64::new(8).unwrap());
        let t0 = r.start;
        // 8 MiB at 8 MB/s is due after 1 s.
        assert_eq!(r.delay_after(8 << 20, t0), Duration::from_secs(1));
        // 2 s later another 8 MiB is already late: no wait.
        assert_eq!(r.delay_after(8 << 20, t0 + Duration::from_secs(3)), Duration::ZERO);
    }
}
