//! `zfs-list` (seed: zfs_list.sh): the tree of pools, archive volumes,
//! snapshots and clones with their santools properties.

use std::io::Write;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::df_cli::size;
use super::{load_settings, pool_arg};
use crate::archive::reports::{pools, tree};
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::multicall::Tool;

pub const TOOL: Tool = Tool {
    name: "zfs-list",
    aliases: &["zfs_list", "zfs_list.sh"],
    about: "the tree of pools, archive volumes, snapshots and clones",
    command: ListArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Examples:
  zfs-list                  every configured pool
  zfs-list tank --json      one pool, for scripts

Each snapshot shows its creation time, the bytes only it holds (where the backend
knows), its holds and clones and its santools properties (<ns>:snap_time,
<ns>:snapcheck, <ns>:snaprotate_rule...). Exit codes: 0 success, 2 error.";

/// The tree of pools, archive volumes, snapshots and clones
#[derive(Parser, Debug)]
#[command(name = "zfs-list", version, after_help = AFTER_HELP)]
pub struct ListArgs {
    /// Only this pool
    #[arg(value_name = "POOL", value_parser = pool_arg)]
    pool: Option<crate::archive::names::PoolName>,
    /// Exact numbers of bytes instead of human sizes
    #[arg(short = 'p', long = "parsable")]
    parsable: bool,
    /// Print the tree as JSON on stdout
    #[arg(long = "json")]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

fn props(p: &std::collections::BTreeMap<String, String>) -> String {
    p.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let args = ListArgs::from_arg_matches(matches)?;
    logging::init("zfs-list", args.common.verbosity());
    let settings = load_settings(args.common.config.as_deref())?;
    let t = tree(&settings, &pools(&settings, args.pool.as_ref())?);
    let code = if t.iter().any(|p| p.error.is_some()) { exit::ERROR } else { exit::OK };
    if args.json {
        print_json(&t)?;
        return Ok(code);
    }
    let mut out = std::io::stdout().lock();
    for p in &t {
        writeln!(out, "{}  ({})", p.name, p.backend)?;
        if let Some(e) = &p.error {
            writeln!(out, "  ERROR: {e}")?;
        }
        for v in &p.volumes {
            writeln!(out, "  {}  {}  {}", v.name, size(Some(v.size), args.parsable), props(&v.properties))?;
            for s in &v.snapshots {
                let created = jiff::Timestamp::from_second(s.creation)
                    .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|_| "-".into());
                let mut extra = String::new();
                if !s.holds.is_empty() {
                    extra.push_str(&format!("  holds={}", s.holds.join(",")));
                }
                if !s.clones.is_empty() {
                    extra.push_str(&format!("  clones={}", s.clones.join(",")));
                }
                writeln!(
                    out,
                    "    @{}  created {created}  used {}{extra}  {}",
                    s.name,
                    size(s.used, args.parsable),
                    props(&s.properties)
                )?;
            }
        }
        for c in &p.clones {
            writeln!(out, "  {}  clone of {}", c.name, c.origin)?;
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_tree_is_consistent() {
        ListArgs::command().debug_assert();
    }
}
