//! Log lines that an attacker (or a broken disk) could repeat thousands of
//! times a second are throttled: the first in a window is logged, the
//! rest are counted and summed up in one line when the window ends.
//! Pure: the caller passes the time and does the logging.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Throttle {
    window: Duration,
    /// When the current window started (the last line logged).
    since: Option<Instant>,
    suppressed: u64,
}

/// What to do with one occurrence.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it (the first in its window).
    Log,
    /// Count it; it is part of the next summary.
    Suppress,
}

impl Throttle {
    pub const fn new(window: Duration) -> Self {
        Throttle { window, since: None, suppressed: 0 }
    }

    /// One occurrence at `now`. A due summary is not returned here: call
    /// [`Throttle::summary`] first (the server does, every tick and
    /// before each refusal).
    pub fn note(&mut self, now: Instant) -> Verdict {
        match self.since {
            Some(t) if now.saturating_duration_since(t) < self.window => {
                self.suppressed += 1;
                Verdict::Suppress
            }
            _ => {
                self.since = Some(now);
                Verdict::Log
            }
        }
    }

    /// How many occurrences were suppressed in a window that has ended by
    /// `now` (then forgotten), or None.
    pub fn summary(&mut self, now: Instant) -> Option<u64> {
        let t = self.since?;
        if now.saturating_duration_since(t) < self.window || self.suppressed == 0 {
            return None;
        }
        let n = self.suppressed;
        self.suppressed = 0;
        self.since = None;
        Some(n)
    }
}

/// Runs `log` for the first occurrence in each window of `t` (with the
/// number suppressed in the window before, if any); counts the rest.
pub fn throttled(t: &std::sync::Mutex<Throttle>, log: impl FnOnce(Option<u64>)) {
    let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    let earlier = t.summary(now);
    if t.note(now) == Verdict::Log {
        log(earlier);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_window_and_a_summary() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = Throttle::new(Duration::from_secs(1));
        // (time ms, expected verdict, expected summary before it)
        let table: &[(u64, Verdict, Option<u64>)] = &[
            (0, Verdict::Log, None),
            (10, Verdict::Suppress, None),
            (500, Verdict::Suppress, None),
            (999, Verdict::Suppress, None),
            (1000, Verdict::Log, Some(3)),
            (1500, Verdict::Suppress, None),
            (5000, Verdict::Log, Some(1)),
            (7000, Verdict::Log, None),
        ];
        for (at, verdict, summary) in table {
            assert_eq!(t.summary(ms(*at)), *summary, "summary at {at}");
            assert_eq!(t.note(ms(*at)), *verdict, "verdict at {at}");
        }
        assert_eq!(t.summary(ms(9000)), None, "nothing suppressed since the last line");
    }
}
