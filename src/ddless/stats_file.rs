//! The `<CHECKSUM>.stats` file: `key=value` lines (format in
//! docs/formats.md), replaced atomically. Besides the last run's figures it
//! records which object the checksum file's records describe (the target of
//! a copy, the source of a checksum-only run) and that object's size, and
//! the identity of the checksum file it belongs to: the checksum file keeps
//! its seed layout (raw records, no header), and this is how it "knows" the
//! target it vouches for.
//!
//! Format `ddless-stats-1` (no binding) is still read: such a checksum file
//! is treated as unbound (see copy.rs).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::report::{ChecksumReport, CopyReport};
use crate::shared::atomic_file::write_atomic;
use crate::shared::object_stamp::ObjectStamp;

pub const STATS_FORMAT: &str = "ddless-stats-2";

/// Stats files are a few hundred bytes; anything larger is not one of ours.
const MAX_STATS_BYTES: u64 = 64 << 10;

/// Where the stats of a copy with checksum file `checksum` go.
pub fn stats_path(checksum: &Path) -> PathBuf {
    let mut s = checksum.as_os_str().to_owned();
    s.push(".stats");
    PathBuf::from(s)
}

/// Which object a checksum file's records describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The checksum file this binding belongs to (a replaced checksum file
    /// is not bound by its predecessor's stats).
    pub checksum: ObjectStamp,
    /// The object whose bytes the records describe.
    pub object: ObjectStamp,
    /// Its size in bytes as of the last run.
    pub object_size: u64,
    /// Its path as given (for messages only; identity is `object`).
    pub object_path: PathBuf,
}

impl Binding {
    fn lines(&self) -> Vec<(&'static str, String)> {
        vec![
            ("bound_path", self.object_path.display().to_string()),
            ("bound_kind", self.object.kind.to_string()),
            ("bound_id", self.object.id.clone()),
            ("bound_size", self.object_size.to_string()),
            ("checksum_file_id", self.checksum.id.clone()),
        ]
    }

    /// What the messages say about the bound object.
    pub fn describe(&self) -> String {
        format!("{} {} ({} bytes, {})", self.object.kind, self.object_path.display(), self.object_size, self.object.id)
    }
}

fn parse(text: &str) -> Vec<(String, String)> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn read_pairs(path: &Path) -> Option<Vec<(String, String)>> {
    let f = std::fs::File::open(path).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    f.take(MAX_STATS_BYTES + 1).read_to_string(&mut text).ok()?;
    if text.len() as u64 > MAX_STATS_BYTES {
        return None;
    }
    Some(parse(&text))
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The binding stored in `stats`, if there is a well-formed one.
pub(crate) fn read_binding(stats: &Path) -> Option<Binding> {
    let pairs = read_pairs(stats)?;
    if get(&pairs, "format")? != STATS_FORMAT {
        return None;
    }
    Some(Binding {
        checksum: ObjectStamp::from_stored("file", get(&pairs, "checksum_file_id")?)?,
        object: ObjectStamp::from_stored(get(&pairs, "bound_kind")?, get(&pairs, "bound_id")?)?,
        object_size: get(&pairs, "bound_size")?.parse().ok()?,
        object_path: PathBuf::from(get(&pairs, "bound_path")?),
    })
}

fn render_lines(lines: &[(&str, String)]) -> String {
    lines.iter().map(|(k, v)| format!("{k}={}\n", v.replace('\n', " "))).collect()
}

fn opt_path(p: &Option<PathBuf>) -> String {
    p.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
}

pub(crate) fn render_copy(r: &CopyReport, b: &Binding) -> String {
    let mut lines = vec![
        ("format", STATS_FORMAT.to_string()),
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
        ("mode", "copy".to_string()),
        ("bytes_punched", r.bytes_punched.to_string()),
        ("target_size_before", r.target_size_before.map(|n| n.to_string()).unwrap_or_default()),
        ("segments_invalidated", r.segments_invalidated.to_string()),
    ];
    lines.extend(b.lines());
    render_lines(&lines)
}

pub(crate) fn render_checksum_only(r: &ChecksumReport, b: &Binding) -> String {
    let mut lines = vec![
        ("format", STATS_FORMAT.to_string()),
        ("source", r.source.display().to_string()),
        ("checksum_file", r.checksum_file.display().to_string()),
        ("source_size", r.source_size.to_string()),
        ("segments", r.segments.to_string()),
        ("elapsed_seconds", format!("{:.3}", r.elapsed_seconds)),
        ("throughput_mb_s", format!("{:.2}", r.throughput_mb_s)),
        ("mode", "checksum-only".to_string()),
    ];
    lines.extend(b.lines());
    render_lines(&lines)
}

pub(crate) fn write_copy(path: &Path, r: &CopyReport, b: &Binding) -> std::io::Result<()> {
    write_atomic(path, render_copy(r, b).as_bytes())
}

pub(crate) fn write_checksum_only(path: &Path, r: &ChecksumReport, b: &Binding) -> std::io::Result<()> {
    write_atomic(path, render_checksum_only(r, b).as_bytes())
}

/// Records a new binding durably, keeping the last run's figures (a run
/// that rebinds at its start has none of its own yet).
pub(crate) fn write_binding(path: &Path, b: &Binding) -> std::io::Result<()> {
    let binding_keys = ["format", "bound_path", "bound_kind", "bound_id", "bound_size", "checksum_file_id"];
    let mut lines: Vec<(&str, String)> = vec![("format", STATS_FORMAT.to_string())];
    let old = read_pairs(path).unwrap_or_default();
    for (k, v) in &old {
        if !binding_keys.contains(&k.as_str()) {
            lines.push((k.as_str(), v.clone()));
        }
    }
    lines.extend(b.lines());
    write_atomic(path, render_lines(&lines).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding {
        Binding {
            checksum: ObjectStamp::from_stored("file", "ino:5:birth:7").unwrap(),
            object: ObjectStamp::from_stored("device", "dm:LVM-abc").unwrap(),
            object_size: 1 << 30,
            object_path: PathBuf::from("/dev/vg/lv bk"),
        }
    }

    #[test]
    fn binding_round_trips_and_keeps_figures() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sums.stats");
        std::fs::write(&p, "format=ddless-stats-1\nsegments_changed=3\n").unwrap();
        assert_eq!(read_binding(&p), None, "a stats-1 file binds nothing");
        write_binding(&p, &binding()).unwrap();
        assert_eq!(read_binding(&p), Some(binding()));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("format=ddless-stats-2\n") && text.contains("segments_changed=3\n"), "{text}");
        std::fs::write(&p, text.replace("bound_size=1073741824", "bound_size=x")).unwrap();
        assert_eq!(read_binding(&p), None, "a damaged binding binds nothing");
    }
}
