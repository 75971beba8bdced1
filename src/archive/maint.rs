//! `ddless-maint` (the seed's ddless_maint.sh, chunk 99): verify each
//! archive volume's live checksum file against the volume itself, and with
//! `--repair` rebuild it from the volume.
//!
//! A repair first keeps the newest snapshot's checksum file in the history
//! (it is what that snapshot had; the rebuilt file describes the volume as
//! it is now), then replaces the live file atomically and marks the volume
//! DIRTY, so the next backup reads the whole source and rewrites whatever
//! the archive volume lost.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde::Serialize;

use super::history::Preserved;
use super::job_log::JobLog;
use super::names::VolumeRef;
use super::settings::ArchiveSettings;
use super::volume_lock::lock_volume;
use super::workspace::Workspace;
use crate::ddless::{compute_checksums, verify, ChecksumOptions, ReadOptions, VerifyOptions};
use crate::progress::Progress;
use crate::volume::VolumeSpec;

#[derive(Clone, Debug, Default, Serialize)]
pub struct MaintReport {
    pub volume: String,
    /// "ok", "differences", "repaired", "no-checksum-file" or "error".
    pub result: String,
    pub segments: u64,
    /// Segments whose data does not match their record.
    pub segments_differing: u64,
    /// Of those, records that are INVALID (left by an interrupted copy: not
    /// damage, the next backup rewrites them).
    pub invalid_records: u64,
    pub first_differing: Vec<u64>,
    pub error: Option<String>,
    pub elapsed_seconds: f64,
}

pub struct MaintContext<'a> {
    pub settings: &'a ArchiveSettings,
    pub log: &'a JobLog,
    pub progress: &'a dyn Progress,
    pub lock_wait: Duration,
    pub workers: std::num::NonZeroUsize,
}

pub fn maintain(ctx: &MaintContext<'_>, vol: &VolumeRef, repair: bool) -> MaintReport {
    let started = Instant::now();
    let mut r = MaintReport { volume: vol.to_string(), ..MaintReport::default() };
    if let Err(e) = run(ctx, vol, repair, &mut r) {
        r.result = "error".into();
        r.error = Some(format!("{e:#}"));
        ctx.log.error("maint", &format!("{vol}: {e:#}"));
    }
    r.elapsed_seconds = started.elapsed().as_secs_f64();
    r
}

fn run(ctx: &MaintContext<'_>, vol: &VolumeRef, repair: bool, r: &mut MaintReport) -> anyhow::Result<()> {
    let store = ctx.settings.store(&vol.pool).ok_or_else(|| anyhow!("pool {} is not configured", vol.pool))?;
    store.check()?;
    let _lock = lock_volume(&ctx.settings.lock_dir, vol, "ddless-maint", ctx.lock_wait)?;
    let info = store.volume(&vol.volume)?.ok_or_else(|| anyhow!("archive volume {vol} does not exist"))?;
    let ws = Workspace::new(store.checksum_dir(!repair)?, &vol.volume);
    let read = ReadOptions { direct_io: false, workers: ctx.workers, read_rate_mb_s: None };
    let live = ws.checksum();
    let fits =
        std::fs::metadata(&live).map(|m| m.len() == info.size.div_ceil(crate::shared::segment::SEGMENT_SIZE) * 8);
    let differences = match fits {
        Err(_) => {
            r.result = "no-checksum-file".into();
            ctx.log.warn("maint", &format!("{vol}: no checksum file {}", live.display()));
            true
        }
        Ok(false) => {
            r.result = "differences".into();
            ctx.log.error(
                "maint",
                &format!("{vol}: checksum file {} does not fit the volume's {} bytes", live.display(), info.size),
            );
            true
        }
        Ok(true) => {
            let v = verify(
                &VerifyOptions {
                    source: VolumeSpec::Path(info.data_path.clone()),
                    checksum: live.clone(),
                    read: read.clone(),
                },
                ctx.progress,
            )?;
            r.segments = v.segments;
            r.segments_differing = v.segments_differing;
            r.invalid_records = v.mismatches.iter().map(|m| m.invalid_records).sum();
            r.first_differing = v.mismatches.iter().flat_map(|m| m.first_segment..=m.last_segment).take(10).collect();
            let damaged = r.segments_differing - r.invalid_records;
            if damaged == 0 {
                r.result = "ok".into();
                let note = if r.invalid_records > 0 {
                    format!(" ({} records unknown after an interrupted copy)", r.invalid_records)
                } else {
                    String::new()
                };
                ctx.log.line("maint", &format!("{vol}: checksum file matches the volume{note}"));
                false
            } else {
                r.result = "differences".into();
                ctx.log.error(
                    "maint",
                    &format!(
                        "{vol}: {damaged} segment(s) do not match the checksum file (first: {:?})",
                        r.first_differing
                    ),
                );
                true
            }
        }
    };
    if differences && repair {
        if let Preserved::Lost(why) = ws.history().preserve_head()? {
            ctx.log.warn("maint", &format!("{vol}: the newest snapshot's checksum history cannot be kept: {why}"));
        }
        compute_checksums(
            &ChecksumOptions { source: VolumeSpec::Path(info.data_path.clone()), checksum: live.clone(), read },
            ctx.progress,
        )?;
        let mut state = ws.state()?;
        state.dirty = Some("checksum file rebuilt by ddless-maint --repair".into());
        ws.save_state(&state)?;
        r.result = "repaired".into();
        ctx.log.line(
            "maint",
            &format!("{vol}: checksum file rebuilt from the volume; the next backup reads the whole source"),
        );
    }
    Ok(())
}

impl MaintReport {
    pub fn exit_code(&self) -> u8 {
        match self.result.as_str() {
            "ok" | "repaired" => 0,
            "differences" | "no-checksum-file" => 1,
            _ => 2,
        }
    }
}
