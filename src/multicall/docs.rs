//! Man pages (section 8) and shell completions for every tool in the
//! registry, generated from the same clap definitions that parse the
//! command lines, so they cannot drift from them. `santools gen-man DIR`,
//! `santools gen-completions DIR`, and `install-links --man-dir/--completion-dir`
//! write them; any tool added to the registry gets them too.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap_complete::Shell;

use super::tools;
use crate::shared::atomic_file::write_atomic;

/// The section of every santools man page: system administration tools.
pub const MAN_SECTION: &str = "8";

/// `santools` itself as a clap command with every tool as a subcommand
/// (for its man page and its completions).
pub fn santools_command() -> clap::Command {
    let mut cmd = clap::Command::new("santools")
        .version(env!("CARGO_PKG_VERSION"))
        .about("SAN backup tools in one multi-call binary")
        .subcommand_required(true);
    for t in tools() {
        cmd = cmd.subcommand((t.command)().name(t.name).about(t.about));
    }
    cmd
}

/// Every (name, command) a man page or completion is made for: santools,
/// each tool, and each alias (under its own name).
fn commands() -> Vec<(String, clap::Command)> {
    let mut out = vec![("santools".to_string(), santools_command())];
    for t in tools() {
        for name in t.names() {
            out.push((name.to_string(), (t.command)().name(name).bin_name(name)));
        }
    }
    out
}

/// Renders the man page of one command.
pub fn man_page(name: &str, cmd: clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.name(name.to_string()))
        .section(MAN_SECTION)
        .manual("santools")
        .source(format!("santools {}", env!("CARGO_PKG_VERSION")))
        .render(&mut out)
        .with_context(|| format!("rendering the man page of {name}"))?;
    Ok(out)
}

/// Writes `NAME.8` for santools and every tool into `dir`; returns the paths.
pub fn write_man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, cmd) in commands() {
        let path = dir.join(format!("{name}.{MAN_SECTION}"));
        write_atomic(&path, &man_page(&name, cmd)?).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The file name a shell's completion loader looks for.
pub fn completion_file_name(shell: Shell, name: &str) -> String {
    match shell {
        Shell::Bash => name.to_string(),
        Shell::Zsh => format!("_{name}"),
        Shell::Fish => format!("{name}.fish"),
        Shell::Elvish => format!("{name}.elv"),
        Shell::PowerShell => format!("_{name}.ps1"),
        _ => format!("{name}.{shell}"),
    }
}

/// Renders the completion script of one command for one shell.
pub fn completion(shell: Shell, name: &str, mut cmd: clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}

/// Writes completions for `shells` into `dir` (bash: one file per
/// command, as bash-completion's completions/ directory expects; zsh:
/// `_NAME`; fish: `NAME.fish`); returns the paths.
pub fn write_completions(dir: &Path, shells: &[Shell]) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for &shell in shells {
        for (name, cmd) in commands() {
            let path = dir.join(completion_file_name(shell, &name));
            write_atomic(&path, &completion(shell, &name, cmd))
                .with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_tool_has_a_man_page_and_completions() {
        for t in tools() {
            let page = String::from_utf8(man_page(t.name, (t.command)()).unwrap()).unwrap();
            assert!(page.contains(".TH") && page.contains(t.name), "{}", t.name);
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                let script = String::from_utf8(completion(shell, t.name, (t.command)().name(t.name))).unwrap();
                assert!(script.contains(t.name) && script.contains("help"), "{} {shell}", t.name);
            }
        }
        santools_command().debug_assert();
    }
}
