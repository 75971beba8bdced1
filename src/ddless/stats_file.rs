//! The `<CHECKSUM>.stats` file written after each copy: `key=value` lines
//! (format in docs/formats.md), replaced atomically.

use std::path::{Path, PathBuf};

use super::report::CopyReport;
use crate::shared::atomic_file::write_atomic;

/// Where the stats of a copy with checksum file `checksum` go.
pub fn stats_path(checksum: &Path) -> PathBuf {
    let mut s = checksum.as_os_str().to_owned();
    s.push(".stats");
    PathBuf::from(s)
}

fn opt_path(p: &Option<PathBuf>) -> String {
    p.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
}

pub(crate) fn render(r: &CopyReport) -> String {
    let lines = [
        ("format", "ddless-stats-1".to_string()),
        ("source", r.source.display().to_string()),
        ("target", r.target.display().to_string()),
        ("checksum_file", opt_path(&r.checksum_file)),
        ("ddmap", opt_path(&r.ddmap)),
        ("started_unix", r.started_unix.to_string()),
        ("source_size", r.source_size.to_string()),
        ("segment_size", r.segment_size.to_string()),
        ("segments", r.segments.to_string()),
        ("direct_io", u8::from(r.direct_io).to_string()),
        ("workers", r.workers.to_string()),
        ("buffers_total", r.buffers_total.to_string()),
        ("buffers_read", r.buffers_read.to_string()),
        ("segments_read", r.segments_read.to_string()),
        ("bytes_read", r.bytes_read.to_string()),
        ("segments_changed", r.segments_changed.to_string()),
        ("changed_percent", format!("{:.2}", r.changed_percent)),
        ("bytes_written", r.bytes_written.to_string()),
        ("checksum_file_state", r.checksum_file_state.clone().unwrap_or_default()),
        ("elapsed_seconds", format!("{:.3}", r.elapsed_seconds)),
        ("throughput_mb_s", format!("{:.2}", r.throughput_mb_s)),
    ];
    lines.iter().map(|(k, v)| format!("{k}={}\n", v.replace('\n', " "))).collect()
}

pub(crate) fn write(path: &Path, r: &CopyReport) -> std::io::Result<()> {
    write_atomic(path, render(r).as_bytes())
}
