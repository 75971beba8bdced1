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
    /// A cap of `mb_per_s` for each of `asked` workers, spread over
    /// `running` workers (more when a LUN's read units add threads): the
    /// run as a whole never reads faster than `asked` times the cap.
    pub fn shared(mb_per_s: NonZeroU64, asked: usize, running: usize) -> Self {
        let share = if running > asked { asked as f64 / running as f64 } else { 1.0 };
        RateLimiter { bytes_per_sec: mb_per_s.get() as f64 * 1024.0 * 1024.0 * share, start: Instant::now(), bytes: 0 }
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
        let mut r = RateLimiter::shared(NonZeroU64::new(8).unwrap(), 1, 1);
        let t0 = r.start;
        // 8 MiB at 8 MB/s is due after 1 s.
        assert_eq!(r.delay_after(8 << 20, t0), Duration::from_secs(1));
        // 2 s later another 8 MiB is already late: no wait.
        assert_eq!(r.delay_after(8 << 20, t0 + Duration::from_secs(3)), Duration::ZERO);
    }

    #[test]
    fn added_workers_share_the_cap_of_those_asked_for() {
        let mb8 = NonZeroU64::new(8).unwrap();
        // (asked, running) -> seconds 8 MiB take on one worker
        for (asked, running, secs) in [(1, 1, 1.0), (2, 2, 1.0), (1, 2, 2.0), (2, 5, 2.5), (8, 3, 1.0)] {
            let mut r = RateLimiter::shared(mb8, asked, running);
            let t0 = r.start;
            assert_eq!(r.delay_after(8 << 20, t0), Duration::from_secs_f64(secs), "-w {asked}, {running} running");
        }
    }
}
