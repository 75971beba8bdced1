//! `ddless -b` (the seed's "bail out"): decide whether a copy could use the
//! existing checksum file or would need a new one, and copy nothing. The
//! seed's lvm tools call it and expect exit code 3 for "new checksum file
//! required". Nothing is created, locked or changed.

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use super::checksum_access;
use super::options::{ChecksumMode, CopyOptions};
use super::stats_file;
use super::volume::Volume;
use crate::shared::checksum_file::record_count;
use crate::shared::file_identity::{check_distinct, RolePath};
use crate::shared::object_stamp::ObjectStamp;
use crate::shared::segment::SegmentGeometry;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ChecksumCheckReport {
    pub checksum_file: PathBuf,
    pub target: PathBuf,
    /// The copy would use the existing records.
    pub usable: bool,
    /// Why a new checksum file is required (None when usable).
    pub reason: Option<String>,
    pub records: Option<u64>,
    pub segments: u64,
}

pub fn check_checksum_file(opts: &CopyOptions) -> anyhow::Result<ChecksumCheckReport> {
    let ChecksumMode::File(cks) = &opts.checksum else {
        anyhow::bail!("-b needs a checksum file, not /dev/null");
    };
    if checksum_access::is_dev_null(cks) {
        anyhow::bail!("-b needs a checksum file, not /dev/null");
    }
    let source = Volume::open_source(&opts.source, opts.read.direct_io)?;
    let geometry = SegmentGeometry::new(source.size);
    check_distinct(&[
        RolePath::of_open("source", &opts.source, &source.file)
            .with_context(|| format!("source {}", opts.source.display()))?,
        RolePath::new("target", &opts.target).with_context(|| format!("target {}", opts.target.display()))?,
        RolePath::new("checksum file", cks).with_context(|| format!("checksum file {}", cks.display()))?,
    ])?;
    let segments = geometry.segment_count();
    let mut report = ChecksumCheckReport {
        checksum_file: cks.clone(),
        target: opts.target.clone(),
        usable: false,
        reason: None,
        records: None,
        segments,
    };
    let meta = match std::fs::metadata(cks) {
        Ok(m) if m.is_file() => m,
        Ok(_) => anyhow::bail!("checksum file {} is not a regular file", cks.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.reason = Some("the checksum file does not exist".into());
            return Ok(report);
        }
        Err(e) => return Err(e).with_context(|| format!("checksum file {}", cks.display())),
    };
    let records = record_count(meta.len()).with_context(|| format!("checksum file {}", cks.display()))?;
    report.records = Some(records);
    if records != segments {
        report.reason = Some(format!(
            "the checksum file holds {records} records but the source has {segments} segments (its size changed)"
        ));
        return Ok(report);
    }
    let target = std::fs::metadata(&opts.target).ok();
    let Some(target) = target else {
        report.reason = Some("the target does not exist".into());
        return Ok(report);
    };
    let stamp = ObjectStamp::of_metadata(&meta);
    if let Some(b) = stats_file::read_binding(&stats_file::stats_path(cks)).filter(|b| b.checksum == stamp) {
        if b.object != ObjectStamp::of_metadata(&target) {
            report.reason = Some(format!("the checksum file describes another target: {}", b.describe()));
            return Ok(report);
        }
    }
    report.usable = true;
    Ok(report)
}
