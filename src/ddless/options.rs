//! Typed options of the ddless operations.

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;

/// How the source is read.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// O_DIRECT reads with aligned buffers (bypass the page cache).
    pub direct_io: bool,
    /// Reader threads.
    pub workers: NonZeroUsize,
    /// Per-worker read cap in MB/s (MB = 2^20 bytes).
    pub read_rate_mb_s: Option<NonZeroU64>,
}

/// The most reader threads a run may ask for (`-w`, `[ddless] workers`):
/// beyond the CPUs and the disk's queue depth more threads only cost memory
/// (two 8 MiB buffers each).
pub const MAX_WORKERS: usize = 1024;

/// Options that no run can carry out, refused before anything is allocated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error("workers: {0} is more than the maximum of {MAX_WORKERS}")]
    TooManyWorkers(usize),
}

impl ReadOptions {
    /// Checks the bounds (the CLI and the config check the same ones).
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.workers.get() > MAX_WORKERS {
            return Err(OptionsError::TooManyWorkers(self.workers.get()));
        }
        Ok(())
    }

    /// One worker per CPU, at most 8: hashing runs at several GB/s per core,
    /// so beyond that the disks, not the CPUs, are the limit.
    pub fn default_workers() -> NonZeroUsize {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        NonZeroUsize::new(cpus.clamp(1, 8)).unwrap_or(NonZeroUsize::MIN)
    }
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { direct_io: false, workers: Self::default_workers(), read_rate_mb_s: None }
    }
}

/// Where segment checksums are kept during a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChecksumMode {
    /// Keep them in this checksum file (created if missing).
    File(PathBuf),
    /// `-c /dev/null`: no checksums, every read segment is written.
    Disabled,
}

/// How often a copy makes its progress durable (see docs/ddless.md, "crash safety").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitTuning {
    /// Bytes written to the target between checkpoints (target fsync, then
    /// record update). Smaller: less rework after a crash, more fsyncs.
    pub checkpoint_bytes: u64,
    /// Bytes of changed data held in memory while their old records are
    /// invalidated; one checksum-file fsync covers the whole batch.
    pub invalidate_batch_bytes: usize,
}

impl Default for CommitTuning {
    fn default() -> Self {
        CommitTuning { checkpoint_bytes: 1 << 30, invalidate_batch_bytes: 16 << 20 }
    }
}

#[derive(Clone, Debug)]
pub struct CopyOptions {
    pub source: PathBuf,
    pub target: PathBuf,
    pub checksum: ChecksumMode,
    /// Read only the segments this ddmap flags (plus any whose checksum
    /// record is INVALID).
    pub ddmap: Option<PathBuf>,
    pub read: ReadOptions,
    pub tuning: CommitTuning,
}

#[derive(Clone, Debug)]
pub struct ChecksumOptions {
    pub source: PathBuf,
    pub checksum: PathBuf,
    pub read: ReadOptions,
}

#[derive(Clone, Debug)]
pub struct VerifyOptions {
    pub source: PathBuf,
    pub checksum: PathBuf,
    pub read: ReadOptions,
}

#[derive(Clone, Debug)]
pub struct ReadTestOptions {
    pub source: PathBuf,
    pub direct_io: bool,
}

#[derive(Clone, Debug)]
pub struct ZoneOptions {
    pub source: PathBuf,
    pub direct_io: bool,
    /// Number of equal zones (100 in the seed).
    pub zones: NonZeroU32,
    /// Bytes read at the start of each zone (capped at the zone size).
    pub sample_bytes: NonZeroU64,
}
