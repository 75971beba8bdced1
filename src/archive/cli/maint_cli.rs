//! `ddless-maint` (seed: ddless_maint.sh): verify, and with --repair
//! rebuild, each archive volume's live checksum file against the volume.

use std::num::NonZeroUsize;
use std::time::Duration;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::{load_settings, open_log, wait_secs, workers, Bar};
use crate::archive::maint::{maintain, MaintContext, MaintReport};
use crate::archive::names::VolumeRef;
use crate::archive::snapcheck::all_volumes;
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::multicall::Tool;

pub const TOOL: Tool = Tool {
    name: "ddless-maint",
    aliases: &["ddless_maint", "ddless_maint.sh"],
    about: "verify (and repair) archive volumes' checksum files",
    command: MaintArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Examples:
  ddless-maint                      verify every archive volume's checksum file
  ddless-maint -s lv_vol00 --repair rebuild one from its volume (next backup reads all)
Exit codes: 0 all match (or were repaired), 1 differences found, 2 error.";

/// Verify (and repair) archive volumes' checksum files
#[derive(Parser, Debug)]
#[command(name = "ddless-maint", version, after_help = AFTER_HELP)]
pub struct MaintArgs {
    /// Only this volume (configured name, vg/lv, or POOL/ARCHIVE_VOLUME)
    #[arg(short = 's', long = "volume", value_name = "VOLUME")]
    volume: Option<String>,
    /// Rebuild a checksum file that does not match its volume
    #[arg(long = "repair")]
    repair: bool,
    /// ddless reader threads [default: archive.ddless_workers]
    #[arg(short = 'w', long = "workers", value_name = "N", value_parser = workers)]
    workers: Option<usize>,
    /// Wait up to SECONDS for a volume another run holds
    #[arg(long = "wait", value_name = "SECONDS", value_parser = wait_secs, default_value = "0")]
    wait: Duration,
    /// Print the reports as JSON on stdout
    #[arg(long = "json")]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let args = MaintArgs::from_arg_matches(matches)?;
    logging::init("ddless-maint", args.common.verbosity());
    let settings = load_settings(args.common.config.as_deref())?;
    let vols: Vec<VolumeRef> = match &args.volume {
        Some(name) => {
            let v = match settings.find_volume(name) {
                Some(v) => v.archive.clone(),
                None => {
                    crate::archive::names::ObjectRef::parse(name)
                        .map_err(|_| {
                            anyhow::anyhow!("volume {name:?} is not configured (give its name or POOL/ARCHIVE_VOLUME)")
                        })?
                        .volume
                }
            };
            vec![v]
        }
        None => all_volumes(&settings)?,
    };
    let log = open_log(&settings, "ddless-maint");
    let bar = Bar::new(args.common.quiet, "ddless-maint");
    let ctx = MaintContext {
        settings: &settings,
        log: &log,
        progress: bar.get(),
        lock_wait: args.wait,
        workers: args.workers.and_then(NonZeroUsize::new).unwrap_or(settings.ddless_workers),
    };
    let reports: Vec<MaintReport> = vols.iter().map(|v| maintain(&ctx, v, args.repair)).collect();
    drop(bar);
    if args.json {
        print_json(&reports)?;
    } else {
        for r in &reports {
            match r.result.as_str() {
                "ok" => println!("ok {} ({} segments)", r.volume, r.segments),
                "repaired" => println!("repaired {}", r.volume),
                "differences" => println!(
                    "MISMATCH {}: {} segment(s) differ (first: {})",
                    r.volume,
                    r.segments_differing - r.invalid_records,
                    r.first_differing.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                ),
                "no-checksum-file" => println!("MISSING {}: no checksum file", r.volume),
                _ => println!("FAILED {}: {}", r.volume, r.error.as_deref().unwrap_or("")),
            }
        }
    }
    Ok(reports.iter().map(MaintReport::exit_code).max().unwrap_or(exit::OK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_tree_is_consistent() {
        MaintArgs::command().debug_assert();
    }
}
