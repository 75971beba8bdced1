//! `snapcheck` (seed: snapcheck.plx): verify snapshots against their
//! checksum history; remove orphaned history.

use std::collections::BTreeSet;
use std::io::Write;
use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::bail;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde::Serialize;

use super::{load_settings, open_log, wait_secs, workers, Bar};
use crate::archive::names::{ObjectRef, VolumeRef};
use crate::archive::snapcheck::{
    all_volumes, candidates, check_snapshot, choose, remove_orphans, volumes_with_history, CheckResult, OrphanReport,
    SnapcheckContext,
};
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::multicall::Tool;

pub const TOOL: Tool = Tool {
    name: "snapcheck",
    aliases: &["snapcheck.plx"],
    about: "verify archive snapshots against their checksum history",
    command: SnapcheckArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Examples:
  snapcheck -s tank/iscsi_lv_vol00_bk@2011-03-29_23:00:01   verify one snapshot now
  snapcheck -d -o          the daily job: verify the least recently verified
                           snapshots (archive.snapcheck_count), remove orphans

Each result is recorded on the snapshot as <ns>:snapcheck = <epoch>:ok|mismatch|nohistory.
Exit codes: 0 every snapshot checked is ok (or has no history), 1 a mismatch, 2 error.";

/// Verify archive snapshots against their checksum history
#[derive(Parser, Debug)]
#[command(name = "snapcheck", version, after_help = AFTER_HELP)]
pub struct SnapcheckArgs {
    /// Verify this snapshot now
    #[arg(short = 's', long = "snapshot", value_name = "POOL/VOLUME@SNAPSHOT")]
    snapshot: Option<String>,
    /// Daily job: verify the least recently verified snapshots of all volumes
    #[arg(short = 'd', long = "daily")]
    daily: bool,
    /// Remove orphaned checksum history (snapshots that are gone)
    #[arg(short = 'o', long = "orphans")]
    orphans: bool,
    /// Snapshots -d verifies [default: archive.snapcheck_count]
    #[arg(long = "count", value_name = "N", requires = "daily", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    count: Option<u64>,
    /// ddless reader threads [default: archive.ddless_workers]
    #[arg(short = 'w', long = "workers", value_name = "N", value_parser = workers)]
    workers: Option<usize>,
    /// Wait up to SECONDS for a volume another run holds (else it is skipped)
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
    checked: Vec<CheckResult>,
    orphans: Vec<OrphanReport>,
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let args = SnapcheckArgs::from_arg_matches(matches)?;
    logging::init("snapcheck", args.common.verbosity());
    if args.snapshot.is_none() && !args.daily && !args.orphans {
        bail!("say what to do: -s POOL/VOLUME@SNAPSHOT, -d (daily job) and/or -o (orphans)");
    }
    let one = match &args.snapshot {
        Some(s) => {
            let o = ObjectRef::parse(s)?;
            if o.snapshot.is_none() {
                bail!("-s needs a snapshot: POOL/VOLUME@SNAPSHOT");
            }
            Some(o)
        }
        None => None,
    };
    let settings = load_settings(args.common.config.as_deref())?;
    let log = open_log(&settings, "snapcheck");
    let bar = Bar::new(args.common.quiet, "snapcheck");
    let ctx = SnapcheckContext {
        settings: &settings,
        log: &log,
        progress: bar.get(),
        lock_wait: args.wait,
        workers: args.workers.and_then(NonZeroUsize::new).unwrap_or(settings.ddless_workers),
    };
    let mut report = Report { checked: Vec::new(), orphans: Vec::new() };
    if let Some(o) = &one {
        if settings.store(&o.volume.pool).is_none() {
            bail!("pool {} is not configured under [archive.pools]", o.volume.pool);
        }
        if let Some(s) = &o.snapshot {
            report.checked.push(check_snapshot(&ctx, &o.volume, s));
        }
    }
    let mut list_failures = 0;
    if args.daily {
        let count = args.count.map(|c| c as usize).unwrap_or(settings.snapcheck_count);
        let (all, failed) = candidates(&settings)?;
        for f in &failed {
            log.line("snapcheck", &format!("FAILED listing the snapshots of {f}"));
            tracing::error!("listing the snapshots of {f}");
        }
        list_failures = failed.len();
        let picked = choose(all, count);
        log.line("snapcheck", &format!("daily: verifying {} snapshot(s)", picked.len()));
        for c in picked {
            report.checked.push(check_snapshot(&ctx, &c.volume, &c.snapshot));
        }
    }
    if args.orphans {
        let mut vols: BTreeSet<VolumeRef> = all_volumes(&settings)?.into_iter().collect();
        for pool in settings.pools.keys() {
            if let Some(store) = settings.store(pool) {
                for v in volumes_with_history(store.as_ref()) {
                    vols.insert(VolumeRef::new(pool.clone(), v));
                }
            }
        }
        for v in vols {
            report.orphans.push(remove_orphans(&ctx, &v));
        }
    }
    drop(bar);
    let mut code = exit::OK;
    for c in &report.checked {
        code = code.max(match c.result.as_str() {
            "ok" | "nohistory" => exit::OK,
            "mismatch" => exit::DIFFERENCES,
            "skipped" => exit::OK,
            _ => exit::ERROR,
        });
    }
    if report.orphans.iter().any(|o| o.error.is_some()) || list_failures > 0 {
        code = exit::ERROR;
    }
    if args.json {
        print_json(&report)?;
    } else {
        let mut out = std::io::stdout().lock();
        for c in &report.checked {
            match c.result.as_str() {
                "ok" => writeln!(out, "ok {} ({} segments)", c.snapshot, c.segments)?,
                "mismatch" => {
                    let first: Vec<String> = c.first_differing.iter().map(u64::to_string).collect();
                    writeln!(
                        out,
                        "MISMATCH {}: {} of {} segments differ{}{}",
                        c.snapshot,
                        c.segments_differing,
                        c.segments,
                        if first.is_empty() { String::new() } else { format!(" (first: {})", first.join(", ")) },
                        if c.problems.is_empty() { String::new() } else { format!("; {}", c.problems.join("; ")) }
                    )?
                }
                other => writeln!(out, "{other} {}: {}", c.snapshot, c.problems.join("; "))?,
            }
        }
        for o in &report.orphans {
            for p in &o.removed {
                writeln!(out, "removed orphan {}", p.display())?;
            }
            if let Some(e) = &o.error {
                writeln!(out, "FAILED orphans of {}: {e}", o.volume)?;
            }
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_tree_is_consistent() {
        SnapcheckArgs::command().debug_assert();
    }
}
