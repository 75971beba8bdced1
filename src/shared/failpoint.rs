//! Crash injection for the kill -9 tests.
//!
//! `SANTOOLS_FAILPOINT=name[:n]` makes the process SIGKILL itself the n-th
//! time (default 1st) it passes the failpoint `name`, so tests can crash a
//! writer at exact steps of its commit protocol (for instance between the
//! target fsync and the checksum update). Unset, a failpoint costs one
//! relaxed atomic load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

struct Armed {
    name: String,
    nth: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("SANTOOLS_FAILPOINT").ok()?;
            let (name, nth) = match spec.rsplit_once(':') {
                Some((n, c)) => (n.to_string(), c.parse().ok()?),
                None => (spec, 1),
            };
            Some(Armed { name, nth, hits: AtomicU64::new(0) })
        })
        .as_ref()
}

/// Marks a point in a commit protocol where a crash is interesting.
pub fn hit(name: &str) {
    if let Some(a) = armed() {
        if a.name == name && a.hits.fetch_add(1, Ordering::Relaxed) + 1 == a.nth {
            // SAFETY: kill(2) on our own pid; SIGKILL cannot be caught, which
            // is the point: nothing after this line runs.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}
