//! `iet-state`: the seed's iet-tools.plx commands as subcommands, over IET
//! (/proc/net/iet) or tgtd (tgtadm), through one state model.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::multicall::Tool;
use crate::shared::command::{shell_quote, Command};
use crate::shared::text_file::{read_text, MAX_TEXT_BYTES};
use crate::targets::live::iet;
use crate::targets::live::state::{self, StateTarget};
use crate::targets::live::tgt::Tgtadm;

pub const TOOL: Tool = Tool {
    name: "iet-state",
    aliases: &["iet-tools", "iet_tools"],
    about: "target state (IET /proc/net/iet or tgtd): state, state-diff, sessions, initiators, remove sessions",
    command: StateArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 (state-diff) the state changed since it was recorded, 2 error.";

/// Target state tools (the seed's iet-tools.plx)
#[derive(Parser, Debug)]
#[command(name = "iet-state", version, after_help = AFTER_HELP)]
pub struct StateArgs {
    #[command(subcommand)]
    cmd: Cmd,
    #[command(flatten)]
    source: Source,
    /// Print JSON
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Backend {
    Tgt,
    Iet,
}

/// Where live state comes from (shared with session-top).
#[derive(Args, Debug, Clone)]
pub struct Source {
    /// tgt (tgtadm) or iet (/proc/net/iet) [default: iet when /proc/net/iet exists, else tgt]
    #[arg(long, value_enum, global = true)]
    pub backend: Option<Backend>,
    /// IET's proc directory
    #[arg(long, value_name = "DIR", default_value = "/proc/net/iet", global = true)]
    pub proc: PathBuf,
    /// tgtd's control port (tgtadm -C)
    #[arg(short = 'C', long, global = true)]
    pub control_port: Option<u16>,
    /// The tgtadm program
    #[arg(long, value_name = "PATH", global = true)]
    pub tgtadm_path: Option<PathBuf>,
}

impl Source {
    pub fn backend(&self) -> Backend {
        self.backend.unwrap_or(if self.proc.join("volume").exists() { Backend::Iet } else { Backend::Tgt })
    }
    pub fn tgtadm(&self) -> Tgtadm {
        Tgtadm {
            program: self.tgtadm_path.clone().unwrap_or_else(|| "tgtadm".into()),
            control_port: self.control_port,
            ..Tgtadm::default()
        }
    }
    /// The current state of every target.
    pub fn read(&self) -> anyhow::Result<Vec<StateTarget>> {
        Ok(match self.backend() {
            Backend::Iet => {
                let files = iet::read_dir(&self.proc)?;
                state::from_iet(&iet::parse(&files)?)
            }
            Backend::Tgt => state::from_tgt(&self.tgtadm().show_targets()?),
        })
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The state of every target, LUN and session
    State,
    /// The raw state (the /proc files, or tgtadm's output)
    StateRaw,
    /// Compare with the recorded state; exit 1 when it changed
    StateDiff {
        /// Where the state is recorded
        #[arg(long, value_name = "FILE", default_value = "/var/lib/santools/targets/iet-state.json")]
        state_file: PathBuf,
        /// Record the current state afterwards (a missing record is always written)
        #[arg(long)]
        update: bool,
    },
    /// A target's tid
    TargetTid {
        #[arg(short = 't', long)]
        target: String,
    },
    /// A target's state
    TargetState {
        #[arg(short = 't', long)]
        target: String,
    },
    /// The path of a target's LUN
    TargetLunPath {
        #[arg(short = 't', long)]
        target: String,
        #[arg(short = 'l', long)]
        lun: u64,
    },
    /// The target exporting a path
    LunPathTarget {
        #[arg(short = 'p', long)]
        path: String,
    },
    /// Session counts per target
    TargetSessions,
    /// The initiator addresses connected to a target
    TargetInitiators {
        #[arg(short = 't', long)]
        target: String,
    },
    /// Disconnect the sessions of one target or of all (use with caution)
    SessionsRemove {
        #[arg(short = 't', long, conflicts_with = "all", required_unless_present = "all")]
        target: Option<String>,
        #[arg(long)]
        all: bool,
        /// Print the commands, run nothing
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
}

fn find<'a>(s: &'a [StateTarget], name: &str) -> anyhow::Result<&'a StateTarget> {
    s.iter().find(|t| t.name.eq_ignore_ascii_case(name)).with_context(|| format!("no target named {name}"))
}

/// The commands that disconnect `targets`' sessions.
pub fn removal_commands(backend: Backend, t: &Tgtadm, targets: &[&StateTarget]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for x in targets {
        for s in &x.sessions {
            for c in &s.connections {
                out.push(match backend {
                    Backend::Iet => vec![
                        "ietadm".into(),
                        "--op".into(),
                        "delete".into(),
                        format!("--tid={}", x.tid),
                        format!("--sid={}", s.sid),
                        format!("--cid={}", c.cid),
                    ],
                    Backend::Tgt => t.full_argv(&crate::targets::tgtadm::delete_conn(x.tid, s.sid, c.cid)),
                });
            }
        }
    }
    out
}

fn print_state(out: &mut dyn Write, s: &[StateTarget]) -> std::io::Result<()> {
    for t in s {
        writeln!(out, "tid:{} name:{}", t.tid, t.name)?;
        for l in &t.luns {
            writeln!(out, "\tlun:{} path:{} serial:{}", l.lun, l.path, l.serial.as_deref().unwrap_or("-"))?;
        }
        for x in &t.sessions {
            writeln!(out, "\tsid:{} initiator:{}", x.sid, x.initiator)?;
            for c in &x.connections {
                match &c.target_ip {
                    Some(d) => writeln!(out, "\t\tcid:{} s_ip:{} d_ip:{d}", c.cid, c.initiator_ip)?,
                    None => writeln!(out, "\t\tcid:{} ip:{}", c.cid, c.initiator_ip)?,
                }
            }
        }
    }
    Ok(())
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let a = StateArgs::from_arg_matches(matches)?;
    logging::init("iet-state", a.common.verbosity());
    let mut out = std::io::stdout().lock();
    if let Cmd::StateRaw = a.cmd {
        match a.source.backend() {
            Backend::Iet => {
                for (name, text) in iet::read_dir(&a.source.proc)? {
                    writeln!(out, "==> {} <==", a.source.proc.join(&name).display())?;
                    out.write_all(text.as_bytes())?;
                }
            }
            Backend::Tgt => {
                let t = a.source.tgtadm();
                let o = t.run(&["--op".into(), "show".into(), "--mode".into(), "target".into()])?;
                out.write_all(&o.stdout)?;
            }
        }
        return Ok(exit::OK);
    }
    let s = a.source.read()?;
    match a.cmd {
        Cmd::StateRaw => unreachable!("handled above"),
        Cmd::State => {
            if a.json {
                print_json(&s)?;
            } else {
                print_state(&mut out, &s)?;
            }
        }
        Cmd::StateDiff { state_file, update } => return state_diff(&mut out, &s, &state_file, update, a.json),
        Cmd::TargetTid { target } => writeln!(out, "{}", find(&s, &target)?.tid)?,
        Cmd::TargetState { target } => {
            let t = find(&s, &target)?;
            if a.json {
                print_json(t)?;
            } else {
                print_state(&mut out, std::slice::from_ref(t))?;
            }
        }
        Cmd::TargetLunPath { target, lun } => {
            let t = find(&s, &target)?;
            let l =
                t.luns.iter().find(|l| l.lun == lun).with_context(|| format!("target {target} has no LUN {lun}"))?;
            writeln!(out, "{}", l.path)?;
        }
        Cmd::LunPathTarget { path } => {
            let t = s
                .iter()
                .find(|t| t.luns.iter().any(|l| l.path == path))
                .with_context(|| format!("no target exports {path}"))?;
            writeln!(out, "{}", t.name)?;
        }
        Cmd::TargetSessions => {
            let counts: BTreeMap<&str, usize> = s.iter().map(|t| (t.name.as_str(), t.sessions.len())).collect();
            if a.json {
                print_json(&counts)?;
            } else {
                for (name, n) in counts {
                    writeln!(out, "{n} {name}")?;
                }
            }
        }
        Cmd::TargetInitiators { target } => {
            let t = find(&s, &target)?;
            let mut ips: Vec<&str> =
                t.sessions.iter().flat_map(|x| x.connections.iter().map(|c| c.initiator_ip.as_str())).collect();
            ips.sort();
            ips.dedup();
            if a.json {
                print_json(&ips)?;
            } else {
                for ip in ips {
                    writeln!(out, "{ip}")?;
                }
            }
        }
        Cmd::SessionsRemove { target, all, dry_run } => {
            let chosen: Vec<&StateTarget> =
                if all { s.iter().collect() } else { vec![find(&s, target.as_deref().unwrap_or(""))?] };
            let t = a.source.tgtadm();
            for argv in removal_commands(a.source.backend(), &t, &chosen) {
                let shown: Vec<String> = argv.iter().map(|x| shell_quote(x)).collect();
                writeln!(out, "{}", shown.join(" "))?;
                if !dry_run {
                    Command::new(&argv[0]).args(&argv[1..]).run()?;
                }
            }
        }
    }
    Ok(exit::OK)
}

fn state_diff(out: &mut dyn Write, s: &[StateTarget], file: &Path, update: bool, json: bool) -> anyhow::Result<u8> {
    let now = state::tracked(s);
    // Bounded: --state-file /dev/zero (or a FIFO) must not grow memory.
    let saved: Option<Vec<String>> = match read_text(file, MAX_TEXT_BYTES) {
        Ok(b) => Some(serde_json::from_str(&b).with_context(|| format!("reading recorded state {}", file.display()))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let write = |v: &Vec<String>| -> anyhow::Result<()> {
        if let Some(d) = file.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        crate::shared::atomic_file::write_atomic(file, &serde_json::to_vec_pretty(v)?)
            .with_context(|| format!("writing {}", file.display()))
    };
    let Some(saved) = saved else {
        write(&now)?;
        tracing::warn!("no recorded state in {}: recorded the current one", file.display());
        return Ok(exit::OK);
    };
    let removed: Vec<&String> = saved.iter().filter(|l| !now.contains(l)).collect();
    let added: Vec<&String> = now.iter().filter(|l| !saved.contains(l)).collect();
    if json {
        #[derive(serde::Serialize)]
        struct Diff<'a> {
            removed: &'a [&'a String],
            added: &'a [&'a String],
        }
        print_json(&Diff { removed: &removed, added: &added })?;
    } else {
        for l in &removed {
            writeln!(out, "- {l}")?;
        }
        for l in &added {
            writeln!(out, "+ {l}")?;
        }
    }
    if update {
        write(&now)?;
    }
    Ok(if removed.is_empty() && added.is_empty() { exit::OK } else { exit::DIFFERENCES })
}
