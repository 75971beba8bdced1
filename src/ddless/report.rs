//! Typed results of the ddless operations, printed by the CLI as text or
//! JSON and saved as the stats file.

use std::path::PathBuf;

use serde::Serialize;

use crate::shared::segment::SegmentRange;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CopyReport {
    /// The source's path, or its URL (passwords redacted).
    pub source: String,
    pub target: String,
    /// None with `-c /dev/null`.
    pub checksum_file: Option<PathBuf>,
    pub ddmap: Option<PathBuf>,
    pub source_size: u64,
    pub segment_size: u64,
    pub segments: u64,
    pub direct_io: bool,
    /// `-w` (or `[ddless] workers`), as asked.
    pub workers: usize,
    /// The reader threads that ran: `workers`, or more when a LUN's queue
    /// needed them, fewer when the volume has fewer buffers (at least 1).
    pub reader_threads: usize,
    pub buffers_total: u64,
    pub buffers_read: u64,
    pub segments_read: u64,
    pub bytes_read: u64,
    /// Segments written or punched out.
    pub segments_changed: u64,
    pub changed_percent: f64,
    /// Data written to the target (zeros too where holes cannot be punched).
    pub bytes_written: u64,
    /// All-zero segments punched out of a regular-file target instead.
    pub bytes_punched: u64,
    /// "created", "resized" or "unchanged" (absent without a checksum file).
    pub checksum_file_state: Option<String>,
    /// The target's size before the run (None when the run created it).
    pub target_size_before: Option<u64>,
    /// A regular-file target larger than the source was cut to its size.
    pub target_shrunk: bool,
    /// Records made unknown before the copy because they no longer vouched
    /// for the target (replaced, recreated, truncated or resized).
    pub segments_invalidated: u64,
    /// The warnings printed during the run.
    pub warnings: Vec<String>,
    pub elapsed_seconds: f64,
    /// Source size over elapsed time, MB/s (MB = 2^20), as the seed reports.
    pub throughput_mb_s: f64,
    pub started_unix: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ChecksumReport {
    pub source: String,
    pub checksum_file: PathBuf,
    pub source_size: u64,
    pub segments: u64,
    /// `-w` as asked, and the reader threads that ran (see CopyReport).
    pub workers: usize,
    pub reader_threads: usize,
    pub elapsed_seconds: f64,
    pub throughput_mb_s: f64,
}

/// A run of consecutive segments whose data does not match the record.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MismatchRange {
    pub first_segment: u64,
    pub last_segment: u64,
    pub first_byte: u64,
    /// Exclusive.
    pub end_byte: u64,
    /// Segments in the range whose record is INVALID (an interrupted copy).
    pub invalid_records: u64,
}

impl MismatchRange {
    pub fn segments(&self) -> SegmentRange {
        SegmentRange::new(self.first_segment, self.last_segment + 1)
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct VerifyReport {
    pub source: String,
    pub checksum_file: PathBuf,
    pub source_size: u64,
    pub segments: u64,
    pub segments_differing: u64,
    pub mismatches: Vec<MismatchRange>,
    pub elapsed_seconds: f64,
    pub throughput_mb_s: f64,
}

impl VerifyReport {
    pub fn matches(&self) -> bool {
        self.segments_differing == 0
    }
}
