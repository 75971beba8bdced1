//! The archive tools' command lines: `backup`, `restore`, `snapcheck`,
//! `ddless-maint`. Each parses its flags, loads `[archive]`, and renders the
//! library's typed reports as text or `--json`.

pub mod backup_cli;
pub mod copy_cli;
pub mod customprop_cli;
pub mod df_cli;
pub mod list_cli;
pub mod maint_cli;
pub mod restore_cli;
pub mod snapcheck_cli;
pub mod snaprotate_cli;
pub mod status_cli;
pub mod zvols_cli;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::job_log::JobLog;
use super::names::{ObjectRef, VolumeRef};
use super::settings::ArchiveSettings;
use crate::cli::progress::TerminalProgress;
use crate::config::{Config, Section};
use crate::progress::{NoProgress, Progress};

/// Loads the configuration and resolves `[archive]` (required by every
/// archive tool).
pub(crate) fn load_settings(config: Option<&Path>) -> anyhow::Result<ArchiveSettings> {
    load_settings_iscsi(config, Initiator::Unused)
}

/// Whether a tool uses the `[initiator]` section (then it must be valid).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Initiator {
    Unused,
    /// backup: when a configured source is an iscsi:// LUN.
    ForLunSources,
    /// restore onto an iscsi:// LUN.
    Used,
}

/// As [`load_settings`], with the `[initiator]` section.
pub(crate) fn load_settings_iscsi(config: Option<&Path>, use_: Initiator) -> anyhow::Result<ArchiveSettings> {
    Ok(load_config_with(config, use_, &[])?.1)
}

/// The configuration (strict in `[archive]` and `extra`) and `[archive]`
/// resolved.
pub(crate) fn load_config(config: Option<&Path>, extra: &[Section]) -> anyhow::Result<(Config, ArchiveSettings)> {
    load_config_with(config, Initiator::Unused, extra)
}

fn load_config_with(
    config: Option<&Path>,
    use_: Initiator,
    extra: &[Section],
) -> anyhow::Result<(Config, ArchiveSettings)> {
    // Errors in other tools' sections are warnings here (issue 6, item 12).
    let mut uses = vec![Section::Archive];
    uses.extend_from_slice(extra);
    let mut c = Config::load_for(config, &uses)?;
    let lun_sources = c.archive.as_ref().is_some_and(|a| a.volumes.iter().any(|v| v.source.kind == "iscsi"));
    if use_ == Initiator::Used || (use_ == Initiator::ForLunSources && lun_sources) {
        uses.push(Section::Initiator);
        c = Config::load_for(config, &uses)?;
        let path = config.map(Path::to_path_buf).unwrap_or_else(|| crate::config::DEFAULT_CONFIG_PATH.into());
        // A source URL may carry a password (`USER%PASSWORD@`, `target_password=`).
        let url_secrets = c.archive.as_ref().is_some_and(|a| {
            a.volumes.iter().filter_map(|v| v.source.url.as_deref()).any(|u| {
                crate::initiator::IscsiUrl::parse(u)
                    .map_or_else(|_| crate::initiator::url::redact_secrets(u) != u, |p| p.has_password())
            })
        });
        let secrets = c.initiator.has_secrets() || url_secrets;
        if let Some(w) = crate::initiator::settings::exposure_warning(&path, secrets) {
            tracing::warn!("{w}");
        }
    }
    for w in &c.warnings {
        tracing::warn!("{w}");
    }
    let shown =
        config.map(|p| p.display().to_string()).unwrap_or_else(|| crate::config::DEFAULT_CONFIG_PATH.to_string());
    let a = c.archive.as_ref().with_context(|| c.missing_section("archive"))?;
    let mut settings = ArchiveSettings::from_config(a)
        .map_err(|v| anyhow::anyhow!("configuration {shown}: key `{}`: {}", v.key, v.problem))?;
    settings.initiator = c.initiator.clone();
    check_pools_distinct(&settings).map_err(|e| anyhow::anyhow!("configuration {shown}: {e}"))?;
    Ok((c, settings))
}

/// Two pool keys naming one directory (the same path, a symlink, a bind
/// mount) would put two sources into one archive volume under two
/// different locks: refused. Compared by identity, not by spelling.
fn check_pools_distinct(settings: &ArchiveSettings) -> Result<(), String> {
    use crate::archive::settings::BackendSettings;
    let mut seen: Vec<(crate::shared::file_identity::FileIdentity, String, String)> = Vec::new();
    for (name, p) in &settings.pools {
        let path = match &p.backend {
            BackendSettings::Btrfs { path } | BackendSettings::Dir { path } => path,
            BackendSettings::Zfs { .. } => continue,
        };
        let Ok(id) = crate::shared::file_identity::identify(path) else { continue };
        if let Some((_, other, other_path)) = seen.iter().find(|(i, _, _)| *i == id) {
            return Err(format!(
                "pools `archive.pools.{other}` ({other_path}) and `archive.pools.{name}` ({}) are the same directory",
                path.display()
            ));
        }
        seen.push((id, name.to_string(), path.display().to_string()));
    }
    Ok(())
}

/// An archive volume named on the command line: `POOL/VOLUME` or a
/// configured volume's name.
pub(crate) fn resolve_volume(settings: &ArchiveSettings, name: &str) -> anyhow::Result<VolumeRef> {
    if let Some(v) = settings.find_volume(name) {
        return Ok(v.archive.clone());
    }
    let o =
        ObjectRef::parse(name).with_context(|| format!("{name:?} is neither a configured volume nor POOL/VOLUME"))?;
    if o.snapshot.is_some() {
        anyhow::bail!("{name}: expected a volume, not a snapshot");
    }
    if settings.store(&o.volume.pool).is_none() {
        anyhow::bail!("pool {} is not configured under [archive.pools]", o.volume.pool);
    }
    Ok(o.volume)
}

/// The tool's log file; a directory that cannot be written is a warning
/// (the terminal still gets every line).
pub(crate) fn open_log(settings: &ArchiveSettings, tool: &str) -> JobLog {
    match JobLog::open(&settings.log_dir, tool, settings.tz.clone()) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(
                "cannot write the log file in {}: {e}; logging to the terminal only",
                settings.log_dir.display()
            );
            JobLog::disabled()
        }
    }
}

/// Parses a pool name argument.
pub(crate) fn pool_arg(s: &str) -> Result<super::names::PoolName, String> {
    super::names::PoolName::new(s).map_err(|e| e.to_string())
}

/// Parses `--wait SECONDS`.
pub(crate) fn wait_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(n) if n <= 7 * 86_400 => Ok(Duration::from_secs(n)),
        Ok(_) => Err("must be at most 604800 (a week)".into()),
        Err(_) => Err(format!("'{s}' is not a whole number of seconds")),
    }
}

/// Parses a worker count (1..=64).
pub(crate) fn workers(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        Ok(_) => Err("must be between 1 and 64".into()),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

/// A progress bar on a terminal, nothing elsewhere.
pub(crate) struct Bar(Option<TerminalProgress>);

impl Bar {
    pub(crate) fn new(quiet: bool, label: &str) -> Self {
        Bar(TerminalProgress::for_terminal(quiet, label))
    }
    pub(crate) fn get(&self) -> &dyn Progress {
        match &self.0 {
            Some(b) => b,
            None => &NoProgress,
        }
    }
}
