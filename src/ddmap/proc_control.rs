//! IET's ddmap proc controls: writing `mapzap`, `mapsuspend` or `mapresume`
//! to /proc/net/iet/ddmap/<target>.<lun> clears the map, suspends writes
//! to the LUN and its map (for a consistent snapshot), or resumes them.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcCommand {
    Zap,
    Suspend,
    Resume,
}

impl ProcCommand {
    /// The exact bytes IET expects (no newline, as `echo -n`).
    pub fn word(&self) -> &'static str {
        match self {
            ProcCommand::Zap => "mapzap",
            ProcCommand::Suspend => "mapsuspend",
            ProcCommand::Resume => "mapresume",
        }
    }
}

/// Refuses names that could leave the proc directory.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        bail!("invalid ddmap entry name {name:?}: expected \"<target iqn>.<lun>\" without '/'");
    }
    Ok(())
}

/// Sends `command` to the entry `name` under `proc_dir`; returns the path.
pub fn proc_control(proc_dir: &Path, name: &str, command: ProcCommand) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let path = proc_dir.join(name);
    if !path.exists() {
        bail!(
            "no ddmap entry {} (is the LUN configured on this node and IET built with the ddmap patch?)",
            path.display()
        );
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .with_context(|| format!("opening ddmap entry {}", path.display()))?;
    f.write_all(command.word().as_bytes())
        .with_context(|| format!("writing {} to {}", command.word(), path.display()))?;
    tracing::info!("{} sent to {}", command.word(), path.display());
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape() {
        for bad in ["", ".", "..", "../x", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        check_name("iqn.1990-01.edu.amherst:t.0").unwrap();
    }
}
