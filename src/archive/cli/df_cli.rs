//! `zfs-df` (seed: zfs_df.sh): space per archive volume, split the way
//! `zfs list -o space` splits it.

use std::io::Write;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::{load_settings, pool_arg};
use crate::archive::reports::{df, pools};
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::multicall::Tool;
use crate::shared::units::human;

pub const TOOL: Tool = Tool {
    name: "zfs-df",
    aliases: &["zfs_df", "zfs_df.sh"],
    about: "space used by each archive volume and its snapshots",
    command: DfArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Examples:
  zfs-df                    every configured pool, human sizes
  zfs-df -p tank            exact bytes, one pool
  zfs-df --json             for scripts

Columns (as zfs list -o space): VOLSIZE the volume's size, REFRESERV its
refreservation, RATIO compression, USEDDS bytes the volume itself uses, USEDSNAP
bytes only its snapshots hold, USEDREFRESERV, USEDCHILD, USED the total, RESERV.
A figure the backend does not have is shown as '-' (btrfs and dir have no
reservations or compression ratio). Exit codes: 0 success, 2 error.";

/// Space used by each archive volume and its snapshots
#[derive(Parser, Debug)]
#[command(name = "zfs-df", version, after_help = AFTER_HELP)]
pub struct DfArgs {
    /// Only this pool
    #[arg(value_name = "POOL", value_parser = pool_arg)]
    pool: Option<crate::archive::names::PoolName>,
    /// Exact numbers of bytes instead of human sizes
    #[arg(short = 'p', long = "parsable")]
    parsable: bool,
    /// No header, fields separated by tabs
    #[arg(short = 'H', long = "no-header")]
    no_header: bool,
    /// Print the report as JSON on stdout
    #[arg(long = "json")]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

/// A size column: human or exact, `-` when unknown.
pub(crate) fn size(v: Option<u64>, exact: bool) -> String {
    match v {
        None => "-".into(),
        Some(b) if exact => b.to_string(),
        Some(b) => human(b),
    }
}

/// Prints rows as aligned columns (or tab-separated with `tabs`).
pub(crate) fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>], tabs: bool) -> std::io::Result<()> {
    if tabs {
        for r in rows {
            writeln!(out, "{}", r.join("\t"))?;
        }
        return Ok(());
    }
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let s: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
        s.join("  ").trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let args = DfArgs::from_arg_matches(matches)?;
    logging::init("zfs-df", args.common.verbosity());
    let settings = load_settings(args.common.config.as_deref())?;
    let (rows, errors) = df(&settings, &pools(&settings, args.pool.as_ref())?);
    for e in &errors {
        tracing::error!("{e}");
    }
    let code = if errors.is_empty() { exit::OK } else { exit::ERROR };
    if args.json {
        print_json(&serde_json::json!({ "volumes": rows, "errors": errors }))?;
        return Ok(code);
    }
    let p = args.parsable;
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let s = &r.space;
            vec![
                r.name.clone(),
                size(s.volsize, p),
                size(s.refreservation, p),
                s.compressratio.map(|x| format!("{x:.2}x")).unwrap_or_else(|| "-".into()),
                size(s.used_by_dataset, p),
                size(s.used_by_snapshots, p),
                size(s.used_by_refreservation, p),
                size(s.used_by_children, p),
                size(s.used, p),
                size(s.reservation, p),
            ]
        })
        .collect();
    let header =
        ["NAME", "VOLSIZE", "REFRESERV", "RATIO", "USEDDS", "USEDSNAP", "USEDREFRESERV", "USEDCHILD", "USED", "RESERV"];
    table(&mut std::io::stdout().lock(), &header, &cells, args.no_header)?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_tree_is_consistent() {
        DfArgs::command().debug_assert();
    }
}
