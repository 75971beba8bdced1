//! `snaprotate` (seed: snaprotate.plx / snaprotate_job.sh): prune archive
//! snapshots by the volume's schedule.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use jiff::Timestamp;
use serde::Serialize;

use super::{load_config, open_log, resolve_volume, wait_secs};
use crate::archive::rotate_apply::{rotate_volume, scheduled_volumes, schedules, RotateContext, VolumeRotation};
use crate::archive::snapshot_time::parse_managed;
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::config::Section;
use crate::multicall::Tool;

pub const TOOL: Tool = Tool {
    name: "snaprotate",
    aliases: &["snaprotate.plx", "snaprotate_job", "snaprotate_job.sh"],
    about: "delete archive snapshots a rotation schedule no longer keeps",
    command: SnaprotateArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Examples:
  snaprotate -a -n          show what the nightly rotation would delete, change nothing
  snaprotate -a             rotate every volume that carries <ns>:snaprotate_schedule (cron: nightly)
  snaprotate -s tank/iscsi_lv_mail_bk -n --now 2011-06-01T00:00:00Z
                            the plan for one volume as it would be on June 1st

Schedules are [snaprotate.schedules.NAME] in the configuration (rules of daily,
weekly, monthly... windows going back from the newest snapshot). Each snapshot is
listed as `keep|delete|protect VOLUME@SNAPSHOT RULE-OR-REASON`: held snapshots (a
replication's base), snapshots with clones, the newest and the keep_last newest are
protected. Snapshots whose name is not YYYY-MM-DD_HH:MM:SS are never touched.
Exit codes: 0 success, 2 error (a refused schedule, a failed destroy).";

/// Delete archive snapshots a rotation schedule no longer keeps
#[derive(Parser, Debug)]
#[command(name = "snaprotate", version, after_help = AFTER_HELP)]
pub struct SnaprotateArgs {
    /// Every archive volume that carries <ns>:snaprotate_schedule
    #[arg(short = 'a', long = "all", conflicts_with = "volume")]
    all: bool,
    /// One volume: POOL/VOLUME or a configured volume name
    #[arg(short = 's', long = "volume", value_name = "OBJECT")]
    volume: Option<String>,
    /// Simulate: print the plan, change nothing
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// Evaluate the schedule at TIME instead of now (RFC 3339, or
    /// YYYY-MM-DD_HH:MM:SS / "YYYY-MM-DD HH:MM:SS" in the archive's time zone)
    #[arg(long = "now", value_name = "TIME")]
    now: Option<String>,
    /// Wait up to SECONDS for a volume another run holds (else nothing of it is deleted)
    #[arg(long = "wait", value_name = "SECONDS", value_parser = wait_secs, default_value = "0")]
    wait: Duration,
    /// Print the report as JSON on stdout
    #[arg(long = "json")]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Serialize)]
struct Report {
    now: String,
    dry_run: bool,
    volumes: Vec<VolumeRotation>,
}

/// `--now`: an RFC 3339 timestamp, or a civil time in `tz`.
pub fn parse_now(text: &str, tz: &jiff::tz::TimeZone) -> anyhow::Result<Timestamp> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let civil = parse_managed(text).or_else(|| text.replacen(' ', "T", 1).parse::<jiff::civil::DateTime>().ok());
    let civil = civil.with_context(|| {
        format!("--now {text:?}: expected 2011-03-29T23:00:00Z, 2011-03-29_23:00:00 or \"2011-03-29 23:00:00\"")
    })?;
    Ok(tz.to_ambiguous_timestamp(civil).compatible()?)
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let args = SnaprotateArgs::from_arg_matches(matches)?;
    logging::init("snaprotate", args.common.verbosity());
    if !args.all && args.volume.is_none() {
        bail!("say which volumes: -a (every scheduled volume) or -s POOL/VOLUME");
    }
    let (config, settings) = load_config(args.common.config.as_deref(), &[Section::Snaprotate])?;
    let now = match &args.now {
        Some(t) => parse_now(t, &settings.tz)?,
        None => Timestamp::now(),
    };
    let scheds = schedules(&config.snaprotate, &settings);
    let log =
        if args.dry_run { crate::archive::job_log::JobLog::disabled() } else { open_log(&settings, "snaprotate") };
    let volumes = match &args.volume {
        Some(v) => vec![resolve_volume(&settings, v)?],
        None => scheduled_volumes(&settings)?,
    };
    let ctx = RotateContext {
        settings: &settings,
        schedules: &scheds,
        log: &log,
        now,
        dry_run: args.dry_run,
        lock_wait: args.wait,
    };
    let report = Report {
        now: now.to_string(),
        dry_run: args.dry_run,
        volumes: volumes.iter().map(|v| rotate_volume(&ctx, v)).collect(),
    };
    let code = if report.volumes.iter().any(VolumeRotation::failed) { exit::ERROR } else { exit::OK };
    if args.json {
        print_json(&report)?;
        return Ok(code);
    }
    let mut out = std::io::stdout().lock();
    for v in &report.volumes {
        for d in &v.decisions {
            write!(out, "{} {} {}", d.action, d.snapshot, d.reason)?;
            if let Some(e) = &d.error {
                write!(out, " FAILED: {e}")?;
            }
            writeln!(out)?;
        }
        for w in &v.warnings {
            writeln!(out, "warning {}: {w}", v.volume)?;
        }
        for e in &v.errors {
            writeln!(out, "ERROR {}: {e}", v.volume)?;
        }
        let t = &v.totals;
        if v.errors.is_empty() {
            writeln!(
                out,
                "{}: schedule {}: {} keep, {} protect, {} delete{}{}",
                v.volume,
                v.schedule.as_deref().unwrap_or("-"),
                t.keep,
                t.protect,
                t.delete,
                if args.dry_run {
                    " (dry run: nothing deleted)".to_string()
                } else {
                    format!(", {} deleted", t.deleted)
                },
                if t.failed > 0 { format!(", {} FAILED", t.failed) } else { String::new() }
            )?;
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_tree_is_consistent() {
        SnaprotateArgs::command().debug_assert();
    }

    #[test]
    fn now_accepts_the_usual_spellings() {
        let ny = crate::archive::snapshot_time::parse_time_zone("America/New_York").unwrap();
        let want: Timestamp = "2011-03-29T23:00:00Z".parse().unwrap();
        assert_eq!(parse_now("2011-03-29T23:00:00Z", &ny).unwrap(), want);
        assert_eq!(parse_now("2011-03-29_19:00:00", &ny).unwrap(), want);
        assert_eq!(parse_now("2011-03-29 19:00:00", &ny).unwrap(), want);
        assert!(parse_now("yesterday", &ny).is_err());
    }
}
