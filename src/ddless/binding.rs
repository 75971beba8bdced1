//! Before a copy touches anything: which records can still vouch for the
//! target, and how the checksum file and the target are brought to the
//! source's size. A pure decision over what the run found (tested with
//! tables below); copy.rs carries it out in the order the commit protocol
//! needs: invalidate records durably, then resize the target, then record
//! the new binding.

use std::path::Path;

use super::stats_file::Binding;
use crate::shared::object_stamp::ObjectStamp;
use crate::shared::segment::SEGMENT_SIZE;

/// What the run found before changing anything.
#[derive(Clone, Debug)]
pub(crate) struct Found<'a> {
    pub source_size: u64,
    /// Records in the checksum file (0 when it is created now).
    pub records: u64,
    pub checksum_created: bool,
    /// The stored binding, if it belongs to this checksum file.
    pub binding: Option<&'a Binding>,
    pub target_path: &'a Path,
    pub target_stamp: &'a ObjectStamp,
    /// Current size (0 when the target is created now).
    pub target_size: u64,
    pub target_created: bool,
    /// A regular file (resized to the source size); else a block device.
    pub target_is_file: bool,
}

/// What to do, in this order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct Plan {
    /// Make this one record INVALID (the old last record, when the source
    /// size changed: it may describe a short segment).
    pub invalidate_record: Option<u64>,
    /// Make every record from this segment on INVALID.
    pub invalidate_from: Option<u64>,
    /// Resize the regular-file target to this length (after the records it
    /// affects are durably INVALID).
    pub resize_target: Option<u64>,
    /// Why records are treated as unknown or the target is resized; printed
    /// as warnings.
    pub warnings: Vec<String>,
}

fn seg_floor(bytes: u64) -> u64 {
    bytes / SEGMENT_SIZE
}

fn lower(slot: &mut Option<u64>, from: u64) {
    *slot = Some(slot.map_or(from, |s| s.min(from)));
}

pub(crate) fn plan(f: &Found<'_>) -> Plan {
    let mut p = Plan::default();
    let target = f.target_path.display();
    if !f.checksum_created && f.records > 0 {
        match f.binding {
            Some(b) if b.object != *f.target_stamp => {
                lower(&mut p.invalidate_from, 0);
                p.warnings.push(if f.target_created {
                    format!(
                        "target {target} did not exist (removed?) and was created; the checksum file describes {}: every segment will be written",
                        b.describe()
                    )
                } else {
                    format!(
                        "target {target} is not the object the checksum file describes ({}): it was replaced or recreated; every segment will be written",
                        b.describe()
                    )
                });
            }
            Some(b) if b.object_size != f.target_size => {
                let from = seg_floor(b.object_size.min(f.target_size));
                lower(&mut p.invalidate_from, from);
                p.warnings.push(format!(
                    "target {target} is {} bytes but was {} bytes after the last run (truncated or extended since?): segments from {from} on will be written",
                    f.target_size, b.object_size
                ));
            }
            Some(_) => {}
            None if f.target_created => {
                lower(&mut p.invalidate_from, 0);
                p.warnings.push(format!(
                    "target {target} did not exist (removed?) and was created: the checksum file's records are unknown for it; every segment will be written"
                ));
            }
            None => {
                p.warnings.push(format!(
                    "the checksum file does not record which target it describes (made by an older ddless, or its .stats file was removed): assuming it describes {target}"
                ));
                let covered = f.records.saturating_mul(SEGMENT_SIZE);
                if f.target_size < covered {
                    let from = seg_floor(f.target_size);
                    lower(&mut p.invalidate_from, from);
                    p.warnings.push(format!(
                        "target {target} is {} bytes, shorter than the {} bytes the checksum file covers: segments from {from} on will be written",
                        f.target_size, covered
                    ));
                }
            }
        }
    }
    let segments = f.source_size.div_ceil(SEGMENT_SIZE);
    if !f.checksum_created && f.records > 0 && f.records != segments {
        p.invalidate_record = Some(f.records - 1);
    }
    if f.target_is_file && f.target_size != f.source_size {
        // Every segment the new length changes loses its record first.
        lower(&mut p.invalidate_from, seg_floor(f.target_size.min(f.source_size)));
        p.resize_target = Some(f.source_size);
        if f.target_size > f.source_size {
            p.warnings.push(format!(
                "target file {target} is larger than the source ({} > {} bytes): shrinking it to {} bytes",
                f.target_size, f.source_size, f.source_size
            ));
        }
    }
    // Records past the new end go with the resize of the checksum file.
    if p.invalidate_from.is_some_and(|n| n >= f.records.min(segments)) {
        p.invalidate_from = None;
    }
    if p.invalidate_record.is_some_and(|r| p.invalidate_from.is_some_and(|n| r >= n) || r >= segments) {
        p.invalidate_record = None;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const SEG: u64 = SEGMENT_SIZE;

    fn stamp(id: &str) -> ObjectStamp {
        ObjectStamp::from_stored("file", id).unwrap()
    }

    fn bound(id: &str, size: u64) -> Binding {
        Binding { checksum: stamp("c"), object: stamp(id), object_size: size, object_path: PathBuf::from("t") }
    }

    struct Case {
        name: &'static str,
        source: u64,
        records: u64,
        binding: Option<Binding>,
        target_id: &'static str,
        target_size: u64,
        created: bool,
        expect_from: Option<u64>,
        expect_record: Option<u64>,
        expect_resize: Option<u64>,
        warns: usize,
    }

    #[test]
    fn plans() {
        let s = 100 * SEG;
        let cases = [
            Case {
                name: "unchanged",
                source: s,
                records: 100,
                binding: Some(bound("t1", s)),
                target_id: "t1",
                target_size: s,
                created: false,
                expect_from: None,
                expect_record: None,
                expect_resize: None,
                warns: 0,
            },
            Case {
                name: "replaced target",
                source: s,
                records: 100,
                binding: Some(bound("t1", s)),
                target_id: "t2",
                target_size: s,
                created: false,
                expect_from: Some(0),
                expect_record: None,
                expect_resize: None,
                warns: 1,
            },
            Case {
                name: "removed target",
                source: s,
                records: 100,
                binding: Some(bound("t1", s)),
                target_id: "t2",
                target_size: 0,
                created: true,
                expect_from: Some(0),
                expect_record: None,
                expect_resize: Some(s),
                warns: 1,
            },
            Case {
                name: "truncated target",
                source: s,
                records: 100,
                binding: Some(bound("t1", s)),
                target_id: "t1",
                target_size: 30 * SEG + 5,
                created: false,
                expect_from: Some(30),
                expect_record: None,
                expect_resize: Some(s),
                warns: 1,
            },
            Case {
                name: "shrink within last segment",
                source: s - 100,
                records: 100,
                binding: Some(bound("t1", s)),
                target_id: "t1",
                target_size: s,
                created: false,
                expect_from: Some(99),
                expect_record: None,
                expect_resize: Some(s - 100),
                warns: 1,
            },
            Case {
                name: "revert after killed shrink",
                source: s,
                records: 100,
                binding: Some(bound("t1", s)),
                target_id: "t1",
                target_size: s - 100,
                created: false,
                expect_from: Some(99),
                expect_record: None,
                expect_resize: Some(s),
                warns: 1,
            },
            Case {
                name: "source grew",
                source: s + 7,
                records: 100,
                binding: Some(bound("t1", s)),
                target_id: "t1",
                target_size: s,
                created: false,
                expect_from: None,
                expect_record: Some(99),
                expect_resize: Some(s + 7),
                warns: 0,
            },
            Case {
                name: "legacy, target fits",
                source: s,
                records: 100,
                binding: None,
                target_id: "t1",
                target_size: s,
                created: false,
                expect_from: None,
                expect_record: None,
                expect_resize: None,
                warns: 1,
            },
            Case {
                name: "legacy, target short",
                source: s,
                records: 100,
                binding: None,
                target_id: "t1",
                target_size: 10 * SEG,
                created: false,
                expect_from: Some(10),
                expect_record: None,
                expect_resize: Some(s),
                warns: 2,
            },
            Case {
                name: "legacy, target gone",
                source: s,
                records: 100,
                binding: None,
                target_id: "t1",
                target_size: 0,
                created: true,
                expect_from: Some(0),
                expect_record: None,
                expect_resize: Some(s),
                warns: 1,
            },
        ];
        for c in cases {
            let st = stamp(c.target_id);
            let found = Found {
                source_size: c.source,
                records: c.records,
                checksum_created: false,
                binding: c.binding.as_ref(),
                target_path: Path::new("t"),
                target_stamp: &st,
                target_size: c.target_size,
                target_created: c.created,
                target_is_file: true,
            };
            let p = plan(&found);
            assert_eq!(p.invalidate_from, c.expect_from, "{}", c.name);
            assert_eq!(p.invalidate_record, c.expect_record, "{}", c.name);
            assert_eq!(p.resize_target, c.expect_resize, "{}", c.name);
            assert_eq!(p.warnings.len(), c.warns, "{}: {:?}", c.name, p.warnings);
        }
    }
}
