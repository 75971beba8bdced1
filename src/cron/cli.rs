//! `cron-update` (seed: cron_update.plx) and `sync-all` (seed: sync_all.sh).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::sync::{resolve as resolve_sync, sync_host, HostReport};
use super::update::{resolve, update_crontab, update_systemd, UpdateReport};
use crate::archive::job_log::{host_name, JobLog};
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::config::{Config, Section, DEFAULT_CONFIG_PATH};
use crate::multicall::Tool;

pub const CRON_TOOL: Tool = Tool {
    name: "cron-update",
    aliases: &["cron_update", "cron_update.plx"],
    about: "install this host's scheduled archive jobs (crontab section or systemd timers)",
    command: CronArgs::command,
    run: run_cron,
};

pub const SYNC_TOOL: Tool = Tool {
    name: "sync-all",
    aliases: &["sync_all", "sync_all.sh"],
    about: "copy the configuration to the other archive hosts and update their jobs",
    command: SyncArgs::command,
    run: run_sync,
};

const CRON_HELP: &str = "\
Examples:
  cron-update -n            show what would change in this host's crontab section
  cron-update               rewrite only the section between
                            # >>> MultiHost Cron BEGIN (<host> <time>) and # <<< MultiHost Cron END
  cron-update --systemd /etc/systemd/system
                            the same jobs as santools-<job>.service + .timer (Persistent=true);
                            then: systemctl daemon-reload && systemctl enable --now santools-<job>.timer

Jobs come from [cron.hosts.<host>] (the host is this machine's name, or --host).
Every other crontab line stays as it is; a second run changes nothing. Each job runs
under flock -n <lock_dir>/santools-cron-<job>.lock, so a late run never overlaps the
next (cron and systemd runs of a job share the lock). The crontab before and after is
kept in <state_dir>/cron.<host>.current and .new. Exit codes: 0 success, 2 error.";

const SYNC_HELP: &str = "\
Examples:
  sync-all -n               what rsync would copy to each host, and their cron changes
  sync-all                  rsync the files listed in sync_include.conf (minus
                            sync_exclude.conf) under sync.root to every [sync.hosts.*]
                            but this one, over ssh, then run cron-update there

Exit codes: 0 success, 2 error (on any host; the others are still done).";

/// Install this host's scheduled archive jobs
#[derive(Parser, Debug)]
#[command(name = "cron-update", version, after_help = CRON_HELP)]
pub struct CronArgs {
    /// Show the changes, change nothing
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// The host's name in [cron.hosts] [default: this machine's name]
    #[arg(long = "host", value_name = "NAME")]
    host: Option<String>,
    /// Write systemd units into DIR instead of the crontab
    #[arg(long = "systemd", value_name = "DIR")]
    systemd: Option<PathBuf>,
    /// Print the report as JSON on stdout
    #[arg(long = "json")]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

/// Copy the configuration to the other archive hosts and update their jobs
#[derive(Parser, Debug)]
#[command(name = "sync-all", version, after_help = SYNC_HELP)]
pub struct SyncArgs {
    /// Show what would be copied and changed, change nothing
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// This host's name (skipped) [default: this machine's name]
    #[arg(long = "host", value_name = "NAME")]
    host: Option<String>,
    /// Print the report as JSON on stdout
    #[arg(long = "json")]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

fn log_for(c: &Config) -> JobLog {
    let dir = c.archive.as_ref().map(|a| a.log_dir.clone()).unwrap_or_else(|| PathBuf::from("/var/log/santools"));
    JobLog::open(&dir, "cron", jiff::tz::TimeZone::UTC).unwrap_or_else(|_| JobLog::disabled())
}

/// This machine's name as [cron.hosts] would know it: the full name, or
/// the part before the first dot.
fn me(c: &Config, given: Option<&str>) -> String {
    if let Some(g) = given {
        return g.to_string();
    }
    let full = host_name();
    let short = full.split('.').next().unwrap_or(&full).to_string();
    if c.cron.hosts.contains_key(&full) {
        full
    } else {
        short
    }
}

fn print_update(out: &mut dyn Write, r: &UpdateReport) -> std::io::Result<()> {
    if !r.changed {
        return writeln!(out, "{}: {} is up to date", r.host, r.target);
    }
    write!(out, "{}", r.diff)?;
    for w in &r.written {
        writeln!(out, "{} {w}", if r.dry_run { "would write" } else { "wrote" })?;
    }
    for w in &r.removed {
        writeln!(out, "{} {w}", if r.dry_run { "would remove" } else { "removed" })?;
    }
    writeln!(out, "{}: {} {}", r.host, r.target, if r.dry_run { "would change (dry run)" } else { "updated" })
}

fn run_cron(matches: &ArgMatches) -> anyhow::Result<u8> {
    let args = CronArgs::from_arg_matches(matches)?;
    logging::init("cron-update", args.common.verbosity());
    let c = Config::load_for(args.common.config.as_deref(), &[Section::Cron])?;
    for w in &c.warnings {
        tracing::warn!("{w}");
    }
    if c.file.is_none() {
        anyhow::bail!("{}", c.missing_section("cron"));
    }
    let host = me(&c, args.host.as_deref());
    let jobs = resolve(&c.cron, &host)?;
    let log = if args.dry_run { JobLog::disabled() } else { log_for(&c) };
    let rep = match args.systemd.as_deref().or(jobs.systemd_dir.as_deref()) {
        Some(dir) => update_systemd(&jobs, dir, args.dry_run, &log)?,
        None => update_crontab(&jobs, args.dry_run, &log)?,
    };
    if args.json {
        print_json(&rep)?;
    } else {
        print_update(&mut std::io::stdout().lock(), &rep)?;
    }
    Ok(exit::OK)
}

fn run_sync(matches: &ArgMatches) -> anyhow::Result<u8> {
    let args = SyncArgs::from_arg_matches(matches)?;
    logging::init("sync-all", args.common.verbosity());
    let c = Config::load_for(args.common.config.as_deref(), &[Section::Sync, Section::Cron])?;
    if c.file.is_none() {
        anyhow::bail!("{}", c.missing_section("sync"));
    }
    let path = args.common.config.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let host = me(&c, args.host.as_deref());
    let plan = resolve_sync(&c.sync, Path::new(&path), &host)?;
    if plan.hosts.is_empty() {
        anyhow::bail!("no other host under [sync.hosts] (this host is {host})");
    }
    let log = if args.dry_run { JobLog::disabled() } else { log_for(&c) };
    let reports: Vec<HostReport> = plan.hosts.iter().map(|h| sync_host(&plan, h, args.dry_run, &log)).collect();
    let code = if reports.iter().any(|r| r.error.is_some()) { exit::ERROR } else { exit::OK };
    if args.json {
        print_json(&reports)?;
    } else {
        let mut out = std::io::stdout().lock();
        for r in &reports {
            match &r.error {
                Some(e) => writeln!(out, "{}: FAILED: {e}", r.host)?,
                None => {
                    writeln!(out, "{}: synchronized{}", r.host, if args.dry_run { " (dry run)" } else { "" })?;
                    for l in r.rsync.lines().chain(r.cron_update.lines()) {
                        writeln!(out, "  {l}")?;
                    }
                }
            }
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_trees_are_consistent() {
        CronArgs::command().debug_assert();
        SyncArgs::command().debug_assert();
    }
}
