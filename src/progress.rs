//! How long-running library operations report progress without printing:
//! the caller passes an observer; the CLI's is a terminal progress bar.

/// Receives byte counts as work proceeds. Must be cheap and thread-safe.
pub trait Progress: Send + Sync {
    fn start(&self, total_bytes: u64);
    fn advance(&self, bytes: u64);
}

/// Discards progress.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _total_bytes: u64) {}
    fn advance(&self, _bytes: u64) {}
}
