//! Read buffers the session lends: a command reading into the pool gets its
//! buffer when its first Data-In arrives, not when it is submitted, and the
//! buffer goes back as soon as the caller is done with the data.
//!
//! Why: the socket copy is the initiator's largest cost after hashing, and
//! it costs twice as much into memory that has left the CPU's cache as
//! into memory just used (measured with `perf record`, docs/performance.md
//! "Buffers lent at arrival"). Taking the most recently returned buffer at
//! arrival keeps the few buffers being filled or consumed at any moment
//! in cache, whatever the queue depth; a buffer per command in flight,
//! taken at submission, does not (libiscsi reads into a buffer it reuses
//! at once for the same reason).

use std::sync::Mutex;

/// Buffers kept for reuse, most recently returned first; beyond
/// `keep_bytes` a returned buffer is freed.
pub(crate) struct ReadPool {
    free: Mutex<Vec<Vec<u8>>>,
    keep_bytes: usize,
}

impl ReadPool {
    pub fn new(keep_bytes: usize) -> ReadPool {
        ReadPool { free: Mutex::new(Vec::new()), keep_bytes }
    }

    /// A buffer of exactly `len` bytes (contents unspecified: the caller
    /// sees only the bytes a command filled).
    pub fn take(&self, len: usize) -> Vec<u8> {
        let reused = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match reused {
            Some(mut v) if v.capacity() >= len => {
                // Within the capacity: no allocation; zeroes only bytes
                // this vector never held.
                v.resize(len, 0);
                v
            }
            _ => vec![0u8; len],
        }
    }

    pub fn give(&self, v: Vec<u8>) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let kept: usize = free.iter().map(Vec::capacity).sum();
        if kept + v.capacity() <= self.keep_bytes {
            free.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_buffer_returned_is_the_next_lent() {
        let pool = ReadPool::new(1 << 20);
        let a = pool.take(4096);
        let pa = a.as_ptr();
        let b = pool.take(4096);
        pool.give(b);
        pool.give(a);
        let again = pool.take(4096);
        assert_eq!(again.as_ptr(), pa);
    }

    #[test]
    fn buffers_have_the_length_asked_and_grow_when_needed() {
        let pool = ReadPool::new(1 << 20);
        pool.give(pool.take(100));
        assert_eq!(pool.take(50).len(), 50);
        pool.give(vec![1u8; 10]);
        assert_eq!(pool.take(4096).len(), 4096);
    }

    #[test]
    fn the_pool_keeps_no_more_than_its_bound() {
        let pool = ReadPool::new(8192);
        for _ in 0..4 {
            pool.give(vec![0u8; 4096]);
        }
        assert_eq!(pool.free.lock().unwrap().len(), 2);
    }
}
