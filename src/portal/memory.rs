//! One budget of bytes for what connections may hold beyond their small
//! fixed buffers: SendTargets answers being sent, and PDUs larger than a
//! login PDU. A connection that cannot get its bytes is refused (Reject,
//! or the connection is dropped), so memory stays bounded in total
//! whatever many clients ask for at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct ByteBudget {
    limit: usize,
    used: AtomicUsize,
}

/// Bytes held from a budget; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<ByteBudget>,
    bytes: usize,
}

impl ByteBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(ByteBudget { limit, used: AtomicUsize::new(0) })
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_add(n).filter(|t| *t <= self.limit))
            .is_ok()
    }

    /// `n` bytes, or None if that would exceed the limit.
    pub fn reserve(self: &Arc<Self>, n: usize) -> Option<Reservation> {
        self.take(n).then(|| Reservation { budget: Arc::clone(self), bytes: n })
    }
}

impl Reservation {
    /// Grows the reservation to `total` bytes; false (unchanged) if the
    /// budget has no room.
    pub fn grow_to(&mut self, total: usize) -> bool {
        if total <= self.bytes {
            return true;
        }
        if !self.budget.take(total - self.bytes) {
            return false;
        }
        self.bytes = total;
        true
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_returned() {
        let b = ByteBudget::new(100);
        let mut r1 = b.reserve(60).unwrap();
        assert!(b.reserve(41).is_none());
        let r2 = b.reserve(40).unwrap();
        assert!(!r1.grow_to(61));
        assert_eq!(r1.bytes(), 60);
        drop(r2);
        assert!(r1.grow_to(100));
        assert_eq!(b.used(), 100);
        drop(r1);
        assert_eq!(b.used(), 0);
        assert!(b.reserve(usize::MAX).is_none(), "no overflow");
    }
}
