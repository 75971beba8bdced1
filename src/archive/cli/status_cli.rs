//! `archive-status`: one Nagios-style line about the whole archive
//! (sanoid's `--monitor-snapshots` is the model).

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::load_settings;
use crate::archive::reports::status_facts;
use crate::archive::status::{evaluate, summary_line, State};
use crate::cli::common_args::CommonArgs;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::multicall::Tool;

pub const TOOL: Tool = Tool {
    name: "archive-status",
    aliases: &["archive_status"],
    about: "Nagios-style check: age of the newest snapshots and snapcheck results",
    command: StatusArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Examples:
  archive-status            ARCHIVE OK - 12 volume(s), every newest snapshot at most 20h old | volumes=12 ...
  archive-status --json     every volume's state, for other monitors

Per configured (enabled) volume and any other archive volume on the pools: the age
of the newest snapshot against [archive.status] warn_age_hours / crit_age_hours,
a snapcheck mismatch recorded on any snapshot (CRITICAL), and the days since the
last snapcheck against snapcheck_warn_days / snapcheck_crit_days.
Exit codes (Nagios): 0 OK, 1 WARNING, 2 CRITICAL (an error is CRITICAL too).";

/// Nagios-style check: age of the newest snapshots and snapcheck results
#[derive(Parser, Debug)]
#[command(name = "archive-status", version, after_help = AFTER_HELP)]
pub struct StatusArgs {
    /// Print every volume's state as JSON on stdout
    #[arg(long = "json")]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let args = StatusArgs::from_arg_matches(matches)?;
    logging::init("archive-status", args.common.verbosity());
    let settings = match load_settings(args.common.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            // A monitor must get a line and a state, not only stderr.
            println!("ARCHIVE CRITICAL - {e:#}");
            return Ok(State::Critical as u8);
        }
    };
    let now = jiff::Timestamp::now().as_second();
    let all: Vec<_> = status_facts(&settings).iter().map(|f| evaluate(f, &settings.status, now)).collect();
    let (state, line) = summary_line(&all);
    if args.json {
        print_json(&serde_json::json!({ "state": state, "summary": line, "volumes": all }))?;
    } else {
        println!("{line}");
    }
    Ok(state as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_tree_is_consistent() {
        StatusArgs::command().debug_assert();
    }
}
