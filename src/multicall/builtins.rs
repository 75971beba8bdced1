//! The commands of `santools` itself: usage, version, install-links,
//! check-config.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Parser;

use super::tools;
use crate::cli::exit;
use crate::config::{Config, DEFAULT_CONFIG_PATH};

pub(super) fn usage() -> String {
    let mut s = format!(
        "santools {} - SAN backup tools in one binary\n\n\
         Usage: santools TOOL [ARGS...]\n       TOOL [ARGS...]            (through a symlink named after the tool)\n       santools install-links DIR [--man-dir DIR] [--completion-dir DIR]\n                                 create the tool symlinks (and man pages, completions)\n       santools gen-man DIR        write a man page (section 8) for every tool\n       santools gen-completions [--shell SHELL]... DIR\n                                 write shell completions for every tool\n       santools check-config [--config FILE]\n\nTools:\n",
        env!("CARGO_PKG_VERSION")
    );
    for t in tools() {
        let aliases = if t.aliases.is_empty() { String::new() } else { format!(" (also: {})", t.aliases.join(", ")) };
        s.push_str(&format!("  {:<24} {}{}\n", t.name, t.about, aliases));
    }
    s.push_str("\nRun 'santools TOOL --help' for a tool's options.\nExit codes: 0 success, 1 differences found (verify), 2 error.\n");
    s
}

fn print_or_broken_pipe(text: &str) -> u8 {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => exit::report_error("santools", &e.into()),
    }
}

pub(super) fn print_usage() -> u8 {
    print_or_broken_pipe(&usage())
}

pub(super) fn print_version() -> u8 {
    print_or_broken_pipe(&format!("santools {}\n", env!("CARGO_PKG_VERSION")))
}

pub(super) fn print_list() -> u8 {
    let names: String = tools().iter().flat_map(|t| t.names()).map(|n| format!("{n}\n")).collect();
    print_or_broken_pipe(&names)
}

/// Create one symlink per tool name in DIR, pointing at this binary
#[derive(Parser, Debug)]
#[command(name = "santools install-links")]
struct InstallLinksArgs {
    /// Directory to create the links in (e.g. /usr/local/sbin)
    dir: PathBuf,
    /// Binary the links point to [default: this executable]
    #[arg(long, value_name = "PATH")]
    target: Option<PathBuf>,
    /// Also write every tool's man page (section 8) here (e.g. /usr/local/share/man/man8)
    #[arg(long = "man-dir", value_name = "DIR")]
    man_dir: Option<PathBuf>,
    /// Also write shell completions here (e.g. /usr/local/share/bash-completion/completions)
    #[arg(long = "completion-dir", value_name = "DIR")]
    completion_dir: Option<PathBuf>,
    /// Shells for --completion-dir
    #[arg(long = "shell", value_name = "SHELL", default_value = "bash", value_delimiter = ',')]
    shells: Vec<clap_complete::Shell>,
}

/// Write a man page (section 8) for santools and every tool into DIR
#[derive(Parser, Debug)]
#[command(name = "santools gen-man")]
struct GenManArgs {
    /// Directory for the pages (created if missing), e.g. /usr/local/share/man/man8
    dir: PathBuf,
}

/// Write shell completions for santools and every tool into DIR
#[derive(Parser, Debug)]
#[command(name = "santools gen-completions")]
struct GenCompletionsArgs {
    /// Directory for the scripts (created if missing)
    dir: PathBuf,
    /// Shells to generate for (repeat or separate with commas)
    #[arg(long = "shell", value_name = "SHELL", default_value = "bash,zsh,fish", value_delimiter = ',')]
    shells: Vec<clap_complete::Shell>,
}

pub(super) fn gen_man(args: Vec<OsString>) -> u8 {
    let parsed: GenManArgs = match parse_args(args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match super::docs::write_man_pages(&parsed.dir) {
        Ok(paths) => print_or_broken_pipe(&paths.iter().map(|p| format!("{}\n", p.display())).collect::<String>()),
        Err(e) => exit::report_error("santools gen-man", &e),
    }
}

pub(super) fn gen_completions(args: Vec<OsString>) -> u8 {
    let parsed: GenCompletionsArgs = match parse_args(args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match super::docs::write_completions(&parsed.dir, &parsed.shells) {
        Ok(paths) => print_or_broken_pipe(&paths.iter().map(|p| format!("{}\n", p.display())).collect::<String>()),
        Err(e) => exit::report_error("santools gen-completions", &e),
    }
}

/// Parses a builtin's arguments; on failure (or --help) prints and gives the exit code.
fn parse_args<T: Parser>(args: Vec<OsString>) -> Result<T, u8> {
    T::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            exit::ERROR
        } else {
            exit::OK
        }
    })
}

pub(super) fn install_links(args: Vec<OsString>) -> u8 {
    let parsed: InstallLinksArgs = match parse_args(args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match do_install_links(&parsed) {
        Ok(()) => exit::OK,
        Err(e) => exit::report_error("santools install-links", &e),
    }
}

fn do_install_links(args: &InstallLinksArgs) -> anyhow::Result<()> {
    let exe = match &args.target {
        Some(t) => t.clone(),
        None => std::env::current_exe().context("finding this executable")?,
    };
    let exe = exe.canonicalize().with_context(|| format!("resolving {}", exe.display()))?;
    if !args.dir.is_dir() {
        bail!("{} is not a directory", args.dir.display());
    }
    // Check every name first so that a refusal leaves nothing half-done.
    let mut to_create = Vec::new();
    for name in tools().iter().flat_map(|t| t.names()) {
        let link = args.dir.join(name);
        match std::fs::symlink_metadata(&link) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let dest = std::fs::read_link(&link).with_context(|| format!("reading link {}", link.display()))?;
                let dest_abs = if dest.is_absolute() { dest.clone() } else { args.dir.join(&dest) };
                if dest_abs.canonicalize().ok().as_deref() != Some(exe.as_path()) {
                    bail!(
                        "refusing to replace {}: it is a link to {}, not to {}",
                        link.display(),
                        dest.display(),
                        exe.display()
                    );
                }
            }
            Ok(_) => bail!("refusing to replace {}: it is not a santools link", link.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => to_create.push(link),
            Err(e) => return Err(e).with_context(|| format!("inspecting {}", link.display())),
        }
    }
    for link in to_create {
        std::os::unix::fs::symlink(&exe, &link).with_context(|| format!("creating link {}", link.display()))?;
        tracing::info!("linked {} -> {}", link.display(), exe.display());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in tools().iter().flat_map(|t| t.names()) {
        for other in same_name_elsewhere(name, &args.dir, &exe, &path) {
            let whose = if name == "iscsi-ls" { " (libiscsi-bin's iscsi-ls is a different tool)" } else { "" };
            eprintln!(
                "santools install-links: warning: {} is another program named {name}{whose}; whichever of {} and \
                 {} comes first in PATH runs; `santools {name}` always runs this one",
                other.display(),
                args.dir.display(),
                other.parent().unwrap_or(Path::new("/")).display()
            );
        }
    }
    if let Some(dir) = &args.man_dir {
        super::docs::write_man_pages(dir)?;
    }
    if let Some(dir) = &args.completion_dir {
        super::docs::write_completions(dir, &args.shells)?;
    }
    Ok(())
}

/// Executables named `name` in the directories of `path` other than `dir`
/// that are not this binary: a link in `dir` shadows them, or they it
/// (libiscsi-bin installs /usr/bin/iscsi-ls, a different tool).
fn same_name_elsewhere(name: &str, dir: &Path, exe: &Path, path: &std::ffi::OsStr) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut found = Vec::new();
    for d in std::env::split_paths(path).filter(|d| d.is_absolute()) {
        if d.canonicalize().unwrap_or_else(|_| d.clone()) == dir {
            continue;
        }
        let candidate = d.join(name);
        let executable =
            std::fs::metadata(&candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if executable && candidate.canonicalize().ok().as_deref() != Some(exe) && !found.contains(&candidate) {
            found.push(candidate);
        }
    }
    found
}

/// Validate a santools configuration file and report the result
#[derive(Parser, Debug)]
#[command(name = "santools check-config")]
struct CheckConfigArgs {
    /// File to check
    #[arg(long = "config", value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
}

pub(super) fn check_config(args: Vec<OsString>) -> u8 {
    let parsed: CheckConfigArgs = match parse_args(args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match Config::load(Some(Path::new(&parsed.config))) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("santools check-config: warning: {w}");
            }
            print_or_broken_pipe(&format!("{}: configuration is valid\n", parsed.config.display()))
        }
        Err(e) => exit::report_error("santools check-config", &e.into()),
    }
}
