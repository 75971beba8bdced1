//! `backup` (seed: iet_luncopy.plx / eql_luncopy.plx): copy configured
//! volumes into the archive and snapshot them.

use std::io::Write;
use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::bail;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde::Serialize;

use super::{load_settings_iscsi, open_log, wait_secs, workers, Bar, Initiator};
use crate::archive::backup::{backup_all, snapshot_count_and_newest, BackupContext, BackupOptions, BackupReport};
use crate::archive::settings::{SourceSpec, StateSpec, VolumeSettings};
use crate::archive::source::describe_spec;
use crate::archive::workspace::Workspace;
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::multicall::Tool;
use crate::progress::{NoProgress, Progress};

pub const TOOL: Tool = Tool {
    name: "backup",
    aliases: &["iet_luncopy", "luncopy", "eql_luncopy"],
    about: "copy configured volumes into the archive and snapshot them",
    command: BackupArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Examples:
  backup -l                       list the configured volumes and their state
  backup -s lv_vol00 -n           say what a backup of one volume would do
  backup -a                       back up every enabled volume (cron: nightly)
  backup -s vg8/lv_vol00 -i       back up one volume, then check it against the source

Each backup copies with ddless (only changed segments written, only ddmap-flagged
segments read when the map is CLEAN or ACTIVE), then takes the snapshot
POOL/PREFIX_LV_bk@YYYY-MM-DD_HH:MM:SS. See docs/archive.md.
Exit codes: 0 success, 1 an integrity check (-i) found differences, 2 error.";

/// Copy configured volumes into the archive and snapshot them
#[derive(Parser, Debug)]
#[command(name = "backup", version, after_help = AFTER_HELP)]
pub struct BackupArgs {
    /// Back up every enabled volume of [archive.volumes]
    #[arg(short = 'a', long = "all", conflicts_with = "volume")]
    all: bool,
    /// Back up one volume (its name, vg/lv, or POOL/ARCHIVE_VOLUME)
    #[arg(short = 's', long = "volume", value_name = "VOLUME")]
    volume: Option<String>,
    /// After the copy, compare a checksum of the source with the archive volume
    #[arg(short = 'i', long = "integrity")]
    integrity: bool,
    /// List candidate volumes and their state; back up nothing
    #[arg(short = 'l', long = "list", conflicts_with_all = ["integrity", "dry_run"])]
    list: bool,
    /// Dry run: say what would happen, change nothing
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// ddless reader threads per volume [default: archive.ddless_workers]
    #[arg(short = 'w', long = "workers", value_name = "N", value_parser = workers)]
    workers: Option<usize>,
    /// Volumes backed up at once with -a [default: archive.concurrent_workers]
    #[arg(long = "concurrent", value_name = "N", value_parser = workers)]
    concurrent: Option<usize>,
    /// Accept a source smaller than its archive volume (shrinks the volume)
    #[arg(long = "allow-shrink")]
    allow_shrink: bool,
    /// Wait up to SECONDS for a volume another run holds
    #[arg(long = "wait", value_name = "SECONDS", value_parser = wait_secs, default_value = "0")]
    wait: Duration,
    /// Print reports as JSON on stdout
    #[arg(long = "json")]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Serialize)]
struct ListEntry {
    volume: String,
    enabled: bool,
    source: String,
    archive_volume: String,
    backend: String,
    exists: bool,
    size: Option<u64>,
    snapshots: usize,
    last_snapshot: Option<String>,
    ddmap_state: String,
    dirty: Option<String>,
    last_result: Option<String>,
}

fn list(
    settings: &crate::archive::settings::ArchiveSettings,
    vols: &[&VolumeSettings],
    json: bool,
) -> anyhow::Result<u8> {
    let mut entries = Vec::new();
    let mut code = exit::OK;
    for v in vols {
        let Some(store) = settings.store(&v.archive.pool) else { continue };
        let info = store.check().and_then(|_| store.volume(&v.archive.volume));
        let (exists, size) = match &info {
            Ok(Some(i)) => (true, Some(i.size)),
            Ok(None) => (false, None),
            Err(e) => {
                tracing::error!("{}: {e}", v.archive);
                code = exit::ERROR;
                (false, None)
            }
        };
        let (snapshots, last) =
            if exists { snapshot_count_and_newest(store.as_ref(), v).unwrap_or((0, None)) } else { (0, None) };
        let ddmap_state = match &v.source {
            SourceSpec::Path { ddmap: None, .. } | SourceSpec::Iscsi { ddmap: None, .. } => {
                "none (full reads)".to_string()
            }
            SourceSpec::Path { state: StateSpec::Fixed(s), .. }
            | SourceSpec::Iscsi { state: StateSpec::Fixed(s), .. } => s.to_string(),
            SourceSpec::Path { state: StateSpec::File(f), .. }
            | SourceSpec::Iscsi { state: StateSpec::File(f), .. } => {
                format!("from {}", f.display())
            }
            SourceSpec::Path { state: StateSpec::Unknown, .. }
            | SourceSpec::Iscsi { state: StateSpec::Unknown, .. } => "UNKNOWN".into(),
            SourceSpec::Command { .. } => "from the source's prepare command".into(),
        };
        let st = store
            .checksum_dir(false)
            .ok()
            .map(|d| Workspace::new(d, &v.archive.volume))
            .and_then(|w| w.state().ok())
            .unwrap_or_default();
        entries.push(ListEntry {
            volume: v.source_name.clone(),
            enabled: v.enabled,
            source: describe_spec(&v.source),
            archive_volume: v.archive.to_string(),
            backend: store.describe(),
            exists,
            size,
            snapshots,
            last_snapshot: last,
            ddmap_state,
            dirty: st.dirty,
            last_result: st.last_result,
        });
    }
    if json {
        print_json(&entries)?;
    } else {
        let mut out = std::io::stdout().lock();
        for e in &entries {
            writeln!(
                out,
                "{}{}\n  source:        {}\n  archive:       {} on {} ({})\n  last snapshot: {} ({} snapshots)\n  ddmap state:   {}{}",
                e.volume,
                if e.enabled { "" } else { " (disabled)" },
                e.source,
                e.archive_volume,
                e.backend,
                match e.size {
                    Some(s) => format!("{s} bytes"),
                    None => "not created yet".into(),
                },
                e.last_snapshot.as_deref().unwrap_or("-"),
                e.snapshots,
                e.ddmap_state,
                match &e.dirty {
                    Some(d) => format!("\n  DIRTY:         {d} (next backup reads everything)"),
                    None => String::new(),
                }
            )?;
        }
    }
    Ok(code)
}

fn print_report(r: &BackupReport) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match r.status.as_str() {
        "ok" => writeln!(
            out,
            "ok {}: {} read ({} segments), {} changed, {} bytes written, integrity {}, {:.1} s",
            r.snapshot.as_deref().unwrap_or(&r.archive_volume),
            r.read,
            r.segments_read,
            r.segments_changed,
            r.bytes_written,
            r.integrity.replace('_', " "),
            r.elapsed_seconds
        )?,
        "dry-run" => writeln!(out, "dry-run {}: would read {} from {}", r.archive_volume, r.read, r.source)?,
        "integrity-mismatch" => {
            let m = r.integrity_mismatch.as_ref();
            writeln!(
                out,
                "MISMATCH {}: {} segment(s) differ between source and archive (first: {}); no snapshot taken, volume marked DIRTY",
                r.archive_volume,
                m.map(|m| m.differing).unwrap_or(0),
                m.map(|m| m.first.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")).unwrap_or_default()
            )?
        }
        _ => writeln!(out, "FAILED {}: {}", r.archive_volume, r.error.as_deref().unwrap_or("unknown error"))?,
    }
    Ok(())
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let args = BackupArgs::from_arg_matches(matches)?;
    logging::init("backup", args.common.verbosity());
    let settings = load_settings_iscsi(args.common.config.as_deref(), Initiator::ForLunSources)?;
    let vols: Vec<&VolumeSettings> = match (&args.volume, args.all || args.list) {
        (Some(name), _) => vec![settings.find_volume(name).ok_or_else(|| {
            anyhow::anyhow!("volume {name:?} is not configured under [[archive.volumes]] (see backup -l)")
        })?],
        (None, true) => settings.volumes.iter().filter(|v| v.enabled || args.list).collect(),
        (None, false) => bail!("say which volumes: -a (all), -s VOLUME, or -l to list them"),
    };
    if args.list {
        return list(&settings, &vols, args.json);
    }
    let log = if args.dry_run { crate::archive::job_log::JobLog::disabled() } else { open_log(&settings, "backup") };
    let opts = BackupOptions {
        integrity: args.integrity,
        dry_run: args.dry_run,
        allow_shrink: args.allow_shrink,
        lock_wait: args.wait,
        ddless_workers: args.workers.and_then(NonZeroUsize::new).unwrap_or(settings.ddless_workers),
    };
    let concurrent = args.concurrent.unwrap_or(settings.concurrent_workers.get());
    // One bar when one volume runs at a time; log lines otherwise.
    let bar = Bar::new(args.common.quiet || (vols.len() > 1 && concurrent > 1), "backup");
    let progress: &dyn Progress = if vols.len() > 1 && concurrent > 1 { &NoProgress } else { bar.get() };
    let now = jiff::Timestamp::now;
    let ctx = BackupContext { settings: &settings, log: &log, progress, now: &now };
    if !args.dry_run {
        log.line(
            "backup",
            &format!("starting: {} volume(s), {} at a time", vols.len(), concurrent.min(vols.len()).max(1)),
        );
    }
    let reports = backup_all(&ctx, &vols, &opts, concurrent);
    drop(bar);
    let code = reports.iter().map(BackupReport::exit_code).max().unwrap_or(exit::OK);
    if !args.dry_run {
        let failed = reports.iter().filter(|r| r.exit_code() == 2).count();
        let mismatched = reports.iter().filter(|r| r.exit_code() == 1).count();
        log.line(
            "backup",
            &format!(
                "finished: {} ok, {mismatched} integrity mismatch, {failed} failed",
                reports.len() - failed - mismatched
            ),
        );
    }
    if args.json {
        print_json(&reports)?;
    } else {
        for r in &reports {
            print_report(r)?;
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_tree_is_consistent() {
        BackupArgs::command().debug_assert();
    }
}
