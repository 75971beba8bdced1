//! The multi-call front door: one table of tools, dispatched by the name the
//! binary was started as (a symlink such as `ddless`) or by its first
//! argument (`santools ddless ...`). Either way the tool sees its own name
//! as argv[0], so `--help` reads `Usage: ddless ...`.

mod builtins;
pub mod docs;

use std::ffi::OsString;
use std::path::Path;

use crate::cli::exit;

/// One tool of the multi-call binary.
pub struct Tool {
    pub name: &'static str,
    /// Further names it answers to (seed-compatible spellings).
    pub aliases: &'static [&'static str],
    pub about: &'static str,
    pub command: fn() -> clap::Command,
    pub run: fn(&clap::ArgMatches) -> anyhow::Result<u8>,
}

impl Tool {
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.name).chain(self.aliases.iter().copied())
    }
}

/// Every tool, in the order `santools --help` lists them.
pub fn tools() -> &'static [Tool] {
    static TOOLS: &[Tool] = &[
        crate::ddless::cli::TOOL,
        crate::ddmap::cli::TOOL,
        crate::portal::cli::daemon_cli::TOOL,
        crate::portal::cli::query_cli::TOOL,
        crate::portal::cli::sendtargets_cli::TOOL,
        crate::initiator::cli::TOOL,
        crate::archive::cli::backup_cli::TOOL,
        crate::archive::cli::restore_cli::TOOL,
        crate::archive::cli::snapcheck_cli::TOOL,
        crate::archive::cli::maint_cli::TOOL,
        crate::archive::cli::snaprotate_cli::TOOL,
        crate::archive::cli::df_cli::TOOL,
        crate::archive::cli::list_cli::TOOL,
        crate::archive::cli::zvols_cli::TOOL,
        crate::archive::cli::customprop_cli::SET_TOOL,
        crate::archive::cli::customprop_cli::DEL_TOOL,
        crate::archive::cli::status_cli::TOOL,
        crate::archive::cli::copy_cli::TOOL,
        crate::archive::replicate::agent::TOOL,
        crate::cron::cli::CRON_TOOL,
        crate::cron::cli::SYNC_TOOL,
        crate::targets::cli::TOOL,
        crate::targets::state_cli::TOOL,
        crate::targets::session_top::TOOL,
        crate::targets::lun_snapshot::cli::TOOL,
        crate::lvm::iostat_cli::TOOL,
        crate::lvm::cli::SNAP_CREATE,
        crate::lvm::cli::SNAP_REMOVE,
        crate::lvm::cli::SNAP_COPY,
        crate::lvm::cli::COPY,
        crate::lvm::cli::DEVSIZE,
        crate::lvm::cli::CLUSTER,
        crate::targets::routing_cli::ROUTING,
        crate::targets::routing_cli::IPTABLES,
    ];
    TOOLS
}

pub fn find_tool(name: &str) -> Option<&'static Tool> {
    tools().iter().find(|t| t.names().any(|n| n == name))
}

/// Parses `args` (args[0] = the tool's name) and runs the tool.
pub fn run_tool(tool: &Tool, args: Vec<OsString>) -> u8 {
    let matches = match (tool.command)().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) if e.use_stderr() => {
            // `ddless: error: ...`, like every other error of the tool.
            let text = e.render().to_string();
            let text =
                text.strip_prefix("error: ").map_or(text.clone(), |rest| format!("{}: error: {rest}", tool.name));
            eprint!("{text}");
            return exit::ERROR;
        }
        Err(e) => {
            let _ = e.print();
            return exit::OK;
        }
    };
    match (tool.run)(&matches) {
        Ok(code) => code,
        Err(e) => exit::report_error(tool.name, &e),
    }
}

fn invoked_name(arg0: &OsString) -> String {
    Path::new(arg0).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Entry point for `main`: returns the process exit code.
pub fn main_with_args(mut args: Vec<OsString>) -> u8 {
    let arg0 = args.first().map(invoked_name).unwrap_or_default();
    if let Some(tool) = find_tool(&arg0) {
        return run_tool(tool, args);
    }
    if args.len() < 2 {
        eprint!("{}", builtins::usage());
        return exit::ERROR;
    }
    let first = args[1].to_string_lossy().into_owned();
    match first.as_str() {
        "-h" | "--help" | "help" => builtins::print_usage(),
        "-V" | "--version" => builtins::print_version(),
        "--list" => builtins::print_list(),
        "install-links" => builtins::install_links(args.split_off(1)),
        "check-config" => builtins::check_config(args.split_off(1)),
        "gen-man" => builtins::gen_man(args.split_off(1)),
        "gen-completions" => builtins::gen_completions(args.split_off(1)),
        name => match find_tool(name) {
            Some(tool) => run_tool(tool, args.split_off(1)),
            None => {
                let names: Vec<&str> = tools().iter().flat_map(|t| t.names()).collect();
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "santools: error: unknown tool '{name}'; available tools: {} (see santools --help)",
                    names.join(", ")
                );
                exit::ERROR
            }
        },
    }
}
