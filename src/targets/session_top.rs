//! `session-top save|diff|watch`: the seed's session_top.sh. `save` records
//! each target's session count; `diff` prints one line per target in the
//! seed's format (`OK 10 expect 10 IQN`, `DIFF 1 expect 2 IQN`) and exits 1
//! when a count dropped (an initiator has not reconnected after a
//! failover); `watch` redraws that every interval.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::multicall::Tool;
use crate::shared::text_file::{read_text, MAX_TEXT_BYTES};
use crate::targets::state_cli::Source;

pub const TOOL: Tool = Tool {
    name: "session-top",
    aliases: &["session_top"],
    about: "save session counts per target and show which targets lost sessions",
    command: SessionTopArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Exit codes: 0 no target lost sessions, 1 (diff, watch --count) a count dropped, 2 error.";

/// Track the number of sessions per target (the seed's session_top.sh)
#[derive(Parser, Debug)]
#[command(name = "session-top", version, after_help = AFTER_HELP)]
pub struct SessionTopArgs {
    #[command(subcommand)]
    cmd: Cmd,
    /// The saved counts
    #[arg(long, value_name = "FILE", default_value = "/var/lib/santools/targets/target_sessions", global = true)]
    file: PathBuf,
    #[command(flatten)]
    source: Source,
    /// Print JSON
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Record the current session count of every target
    Save,
    /// Compare the current counts with the saved ones
    Diff,
    /// Show the comparison every interval, top-like on a terminal
    Watch {
        /// Seconds between updates
        #[arg(short = 'i', long, default_value_t = 2)]
        interval: u64,
        /// Stop after this many updates
        #[arg(short = 'c', long)]
        count: Option<u64>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Line {
    /// `OK` or `DIFF`.
    pub status: &'static str,
    pub current: u64,
    pub expect: u64,
    pub target: String,
}

/// One line per target known now or saved, saved ones first in name order.
pub fn diff(saved: &BTreeMap<String, u64>, now: &BTreeMap<String, u64>) -> Vec<Line> {
    let mut names: Vec<&String> = saved.keys().chain(now.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|n| {
            let current = now.get(n).copied().unwrap_or(0);
            let expect = saved.get(n).copied().unwrap_or(0);
            Line { status: if current == expect { "OK" } else { "DIFF" }, current, expect, target: n.clone() }
        })
        .collect()
}

/// Whether any count dropped.
pub fn dropped(lines: &[Line]) -> bool {
    lines.iter().any(|l| l.current < l.expect)
}

pub fn render(lines: &[Line]) -> String {
    lines.iter().map(|l| format!("{} {} expect {} {}\n", l.status, l.current, l.expect, l.target)).collect()
}

/// The saved file: `COUNT IQN` per line.
pub fn parse_saved(text: &str, file: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for (i, l) in text.lines().enumerate() {
        let (n, name) =
            l.split_once(' ').with_context(|| format!("{}:{}: expected \"COUNT TARGET\"", file.display(), i + 1))?;
        let n: u64 = n.parse().with_context(|| format!("{}:{}: {n:?} is not a count", file.display(), i + 1))?;
        out.insert(name.to_string(), n);
    }
    Ok(out)
}

fn counts(source: &Source) -> anyhow::Result<BTreeMap<String, u64>> {
    Ok(source.read()?.into_iter().map(|t| (t.name, t.sessions.len() as u64)).collect())
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let a = SessionTopArgs::from_arg_matches(matches)?;
    logging::init("session-top", a.common.verbosity());
    let load = || -> anyhow::Result<BTreeMap<String, u64>> {
        let text = read_text(&a.file, MAX_TEXT_BYTES).with_context(|| {
            format!("reading saved session counts {} (run `session-top save` first)", a.file.display())
        })?;
        parse_saved(&text, &a.file)
    };
    match a.cmd {
        Cmd::Save => {
            let now = counts(&a.source)?;
            let text: String = now.iter().map(|(n, c)| format!("{c} {n}\n")).collect();
            if let Some(d) = a.file.parent() {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            }
            crate::shared::atomic_file::write_atomic(&a.file, text.as_bytes())
                .with_context(|| format!("writing {}", a.file.display()))?;
            tracing::info!("saved session counts of {} targets in {}", now.len(), a.file.display());
            Ok(exit::OK)
        }
        Cmd::Diff => {
            let lines = diff(&load()?, &counts(&a.source)?);
            if a.json {
                print_json(&lines)?;
            } else {
                std::io::stdout().lock().write_all(render(&lines).as_bytes())?;
            }
            Ok(if dropped(&lines) { exit::DIFFERENCES } else { exit::OK })
        }
        Cmd::Watch { interval, count } => {
            let saved = load()?;
            let tty = std::io::stdout().is_terminal();
            let mut n = 0;
            loop {
                let lines = diff(&saved, &counts(&a.source)?);
                let mut out = std::io::stdout().lock();
                if tty {
                    write!(out, "\x1b[H\x1b[2J")?;
                }
                if a.json {
                    serde_json::to_writer(&mut out, &lines)?;
                    writeln!(out)?;
                } else {
                    out.write_all(render(&lines).as_bytes())?;
                }
                out.flush()?;
                n += 1;
                if count.is_some_and(|c| n >= c) {
                    return Ok(if dropped(&lines) { exit::DIFFERENCES } else { exit::OK });
                }
                std::thread::sleep(Duration::from_secs(interval.max(1)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lines() {
        let saved: BTreeMap<String, u64> = [("iqn.a".into(), 2), ("iqn.b".into(), 10), ("iqn.gone".into(), 1)].into();
        let now: BTreeMap<String, u64> = [("iqn.a".into(), 1), ("iqn.b".into(), 10), ("iqn.new".into(), 3)].into();
        let lines = diff(&saved, &now);
        assert_eq!(
            render(&lines),
            "DIFF 1 expect 2 iqn.a\nOK 10 expect 10 iqn.b\nDIFF 0 expect 1 iqn.gone\nDIFF 3 expect 0 iqn.new\n"
        );
        assert!(dropped(&lines));
        let up: BTreeMap<String, u64> = [("iqn.a".into(), 3)].into();
        assert!(!dropped(&diff(&[("iqn.a".to_string(), 2)].into(), &up)));
    }

    #[test]
    fn saved_file_round_trip_and_errors() {
        let p = Path::new("/x/target_sessions");
        assert_eq!(parse_saved("2 iqn.a\n10 iqn.b\n", p).unwrap().len(), 2);
        let e = parse_saved("2 iqn.a\nmany iqn.b\n", p).unwrap_err().to_string();
        assert!(e.contains("/x/target_sessions:2"), "{e}");
    }
}
