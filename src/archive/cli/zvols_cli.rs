//! `zfs-zvols` (seed: zfs_zvols.plx): one line per archive volume.

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::df_cli::{size, table};
use super::{load_settings, pool_arg};
use crate::archive::reports::{pools, zvols};
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::multicall::Tool;

pub const TOOL: Tool = Tool {
    name: "zfs-zvols",
    aliases: &["zfs_zvols", "zfs_zvols.plx"],
    about: "one line per archive volume: size, snapshots, last verification",
    command: ZvolsArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Examples:
  zfs-zvols                 size, used, snapshot count, oldest and newest snapshot,
                            last snapcheck result of each archive volume
  zfs-zvols -v              also the schedule, the source volume, holds and clones
  zfs-zvols --json          for scripts (every field)

Exit codes: 0 success, 2 error.";

/// One line per archive volume: size, snapshots, last verification
#[derive(Parser, Debug)]
#[command(name = "zfs-zvols", version, after_help = AFTER_HELP)]
pub struct ZvolsArgs {
    /// Only this pool
    #[arg(value_name = "POOL", value_parser = pool_arg)]
    pool: Option<crate::archive::names::PoolName>,
    /// Exact numbers of bytes instead of human sizes
    #[arg(short = 'p', long = "parsable")]
    parsable: bool,
    /// Print the report as JSON on stdout
    #[arg(long = "json")]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let args = ZvolsArgs::from_arg_matches(matches)?;
    logging::init("zfs-zvols", args.common.verbosity());
    let settings = load_settings(args.common.config.as_deref())?;
    let (rows, errors) = zvols(&settings, &pools(&settings, args.pool.as_ref())?);
    for e in &errors {
        tracing::error!("{e}");
    }
    let code = if errors.is_empty() { exit::OK } else { exit::ERROR };
    if args.json {
        print_json(&serde_json::json!({ "volumes": rows, "errors": errors }))?;
        return Ok(code);
    }
    let verbose = args.common.verbose > 0;
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![
                r.volume.clone(),
                size(Some(r.size), args.parsable),
                size(r.used, args.parsable),
                r.snapshots.to_string(),
                dash(&r.oldest),
                dash(&r.newest),
                match (&r.last_snapcheck, r.last_snapcheck_time) {
                    (Some(res), Some(t)) => format!(
                        "{res} ({})",
                        jiff::Timestamp::from_second(t).map(|t| t.strftime("%Y-%m-%d").to_string()).unwrap_or_default()
                    ),
                    _ => "-".into(),
                },
            ];
            if verbose {
                c.extend([dash(&r.schedule), dash(&r.source_volume), r.holds.to_string(), r.clones.to_string()]);
            }
            c
        })
        .collect();
    let mut header = vec!["VOLUME", "SIZE", "USED", "SNAPS", "OLDEST", "NEWEST", "SNAPCHECK"];
    if verbose {
        header.extend(["SCHEDULE", "SOURCE", "HELD", "CLONES"]);
    }
    table(&mut std::io::stdout().lock(), &header, &cells, false)?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_tree_is_consistent() {
        ZvolsArgs::command().debug_assert();
    }
}
