//! What the portal may cost one target node: at most `node_query_rate`
//! discovery sessions started per second and `node_query_concurrency`
//! open at once, whoever asks (discovery, redirects, held logins, the
//! tools). A caller that cannot get a slot by its deadline gets an error
//! instead of a session; a held login's background rescan does not even
//! wait, and leaves half the rate to callers an initiator is waiting for.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Token bucket: `rate` tokens per second, at most `burst` saved up.
/// Pure (the caller passes the time).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate.max(1));
        TokenBucket { rate, burst: rate, tokens: rate, last: now }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = self.last.max(now);
    }

    /// Takes one token if at least `keep + 1` are there; otherwise how
    /// long until there will be.
    pub fn take(&mut self, now: Instant, keep: f64) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= keep + 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(((keep + 1.0 - self.tokens) / self.rate).max(0.001)))
        }
    }
}

/// How badly a caller needs the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// An initiator is waiting for this answer: wait for a slot until the
    /// deadline.
    Interactive,
    /// Checking a cached redirect: only if a slot and a token are free
    /// now; otherwise the caller goes on without (a login storm must not
    /// wait for confirmations).
    IfFree,
    /// A held login's periodic rescan: only if a slot is free now and at
    /// least half the rate is left for interactive callers.
    Background,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BudgetError {
    #[error("node query budget exhausted ({rate}/s, {concurrency} at once) until the deadline")]
    Exhausted { rate: u32, concurrency: u32 },
    #[error("node query budget busy: query skipped")]
    Skipped,
}

struct BudgetState {
    bucket: TokenBucket,
    open: u32,
}

/// One node's budget.
pub struct NodeBudget {
    rate: u32,
    concurrency: u32,
    state: Mutex<BudgetState>,
    freed: Condvar,
}

/// An open session's slot; dropping it frees the slot.
pub struct Permit {
    budget: Arc<NodeBudget>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = self.budget.state.lock().unwrap_or_else(|p| p.into_inner());
        st.open = st.open.saturating_sub(1);
        drop(st);
        self.budget.freed.notify_one();
    }
}

impl NodeBudget {
    pub fn new(rate: u32, concurrency: u32) -> Arc<Self> {
        Arc::new(NodeBudget {
            rate,
            concurrency: concurrency.max(1),
            state: Mutex::new(BudgetState { bucket: TokenBucket::new(rate, Instant::now()), open: 0 }),
            freed: Condvar::new(),
        })
    }

    /// A slot for one session, waiting (Interactive) until `deadline`.
    pub fn acquire(self: &Arc<Self>, priority: Priority, deadline: Instant) -> Result<Permit, BudgetError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let now = Instant::now();
            let keep = match priority {
                Priority::Interactive | Priority::IfFree => 0.0,
                Priority::Background => f64::from(self.rate) / 2.0,
            };
            let wait = if st.open >= self.concurrency {
                Some(deadline.saturating_duration_since(now))
            } else {
                match st.bucket.take(now, keep) {
                    Ok(()) => {
                        st.open += 1;
                        return Ok(Permit { budget: Arc::clone(self) });
                    }
                    Err(w) => Some(w),
                }
            };
            if priority != Priority::Interactive {
                return Err(BudgetError::Skipped);
            }
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                return Err(BudgetError::Exhausted { rate: self.rate, concurrency: self.concurrency });
            }
            let pause = wait.unwrap_or(left).min(left).max(Duration::from_millis(1));
            st = self.freed.wait_timeout(st, pause).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

/// Every node's budget, by node name (one tgtd serves all its portals).
#[derive(Default)]
pub struct Budgets {
    nodes: Mutex<HashMap<String, Arc<NodeBudget>>>,
}

impl Budgets {
    /// The node's budget with the current limits (a reload that changes
    /// them starts a new budget).
    pub fn of(&self, node: &str, rate: u32, concurrency: u32) -> Arc<NodeBudget> {
        let mut map = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get(node).filter(|b| b.rate == rate && b.concurrency == concurrency.max(1)) {
            return Arc::clone(b);
        }
        if map.len() >= 4096 {
            map.retain(|_, b| Arc::strong_count(b) > 1);
        }
        let b = NodeBudget::new(rate, concurrency);
        map.insert(node.to_string(), Arc::clone(&b));
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_table() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut b = TokenBucket::new(10, t0);
        // A full bucket: 10 at once, then one per 100 ms.
        for i in 0..10 {
            assert_eq!(b.take(t0, 0.0), Ok(()), "token {i}");
        }
        assert!(b.take(t0, 0.0).is_err());
        assert_eq!(b.take(ms(100), 0.0), Ok(()));
        assert!(b.take(ms(150), 0.0).is_err());
        // Background keeps half for interactive callers.
        let mut b = TokenBucket::new(10, t0);
        let mut background = 0;
        while b.take(t0, 5.0).is_ok() {
            background += 1;
        }
        assert_eq!(background, 5);
        assert_eq!(b.take(t0, 0.0), Ok(()), "interactive still gets one");
        // Never more than the burst, however long it was idle.
        let mut b = TokenBucket::new(2, t0);
        let later = t0 + Duration::from_secs(3600);
        assert!(b.take(later, 0.0).is_ok() && b.take(later, 0.0).is_ok() && b.take(later, 0.0).is_err());
    }

    #[test]
    fn concurrency_is_capped_and_freed() {
        let b = NodeBudget::new(1000, 2);
        let soon = Instant::now() + Duration::from_millis(50);
        let p1 = b.acquire(Priority::Interactive, soon).unwrap();
        let _p2 = b.acquire(Priority::Interactive, soon).unwrap();
        assert_eq!(b.acquire(Priority::Background, soon).err(), Some(BudgetError::Skipped));
        assert_eq!(b.acquire(Priority::IfFree, soon).err(), Some(BudgetError::Skipped));
        assert!(matches!(b.acquire(Priority::Interactive, soon), Err(BudgetError::Exhausted { .. })));
        drop(p1);
        assert!(b.acquire(Priority::Interactive, Instant::now() + Duration::from_secs(1)).is_ok());
    }
}
