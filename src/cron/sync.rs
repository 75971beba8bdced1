//! `sync-all`'s executor (seed: sync_all.sh): rsync the configured tree to
//! each other archive host over ssh (include and exclude lists as the
//! seed's sync_include.conf / sync_exclude.conf), then run `cron-update`
//! there so its jobs follow the configuration it just received.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::archive::job_log::JobLog;
use crate::config::cron::SyncConfig;
use crate::shared::command::{Command, SshTarget};

#[derive(Clone, Debug)]
pub struct SyncHost {
    pub name: String,
    pub ssh: SshTarget,
    pub root: PathBuf,
    pub config: PathBuf,
}

#[derive(Clone, Debug)]
pub struct SyncPlan {
    pub root: PathBuf,
    pub include: PathBuf,
    pub exclude: Option<PathBuf>,
    pub santools: String,
    pub hosts: Vec<SyncHost>,
}

/// A word rsync's `-e` splitting keeps whole: no whitespace or quotes.
fn rsync_word(key: &str, w: &str) -> anyhow::Result<()> {
    if w.is_empty() || w.chars().any(|c| c.is_whitespace() || c.is_control() || "'\"\\".contains(c)) {
        bail!("{key}: {w:?} cannot be passed to rsync's ssh command (no spaces or quotes)");
    }
    Ok(())
}

/// The hosts to sync: every `[sync.hosts.NAME]` but this one (`me`).
pub fn resolve(c: &SyncConfig, config_path: &Path, me: &str) -> anyhow::Result<SyncPlan> {
    let root = match &c.root {
        Some(r) => r.clone(),
        None => config_path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/etc/santools")),
    };
    if !root.is_absolute() || !root.is_dir() {
        bail!("sync.root: {} is not an existing absolute directory", root.display());
    }
    let include = c.include.clone().unwrap_or_else(|| root.join("sync_include.conf"));
    if !include.is_file() {
        bail!("sync.include: {} does not exist (a list of paths under {} to copy)", include.display(), root.display());
    }
    let exclude = c.exclude.clone().or_else(|| Some(root.join("sync_exclude.conf")).filter(|p| p.is_file()));
    let santools = c.santools.clone().unwrap_or_else(|| "santools".into());
    let mut hosts = Vec::new();
    for (name, h) in &c.hosts {
        if name == me {
            continue;
        }
        let key = format!("sync.hosts.{name}");
        let addr = h.address.clone().unwrap_or_else(|| name.clone());
        rsync_word(&format!("{key}.address"), &addr)?;
        let mut t = SshTarget::new(addr).option("StrictHostKeyChecking=yes").option("ConnectTimeout=30");
        if let Some(u) = &h.ssh_user {
            rsync_word(&format!("{key}.ssh_user"), u)?;
            t = t.user(u.clone());
        }
        if let Some(p) = h.ssh_port {
            t = t.port(p);
        }
        if let Some(i) = &h.ssh_identity {
            rsync_word(&format!("{key}.ssh_identity"), &i.display().to_string())?;
            t = t.identity(i.clone());
        }
        for (i, o) in h.ssh_options.iter().enumerate() {
            rsync_word(&format!("{key}.ssh_options[{i}]"), o)?;
            let k = o.split('=').next().unwrap_or_default();
            if k.eq_ignore_ascii_case("StrictHostKeyChecking") || k.eq_ignore_ascii_case("BatchMode") {
                bail!("{key}.ssh_options[{i}]: {k} is always on");
            }
            t = t.option(o.clone());
        }
        let hroot = h.root.clone().unwrap_or_else(|| root.clone());
        if !hroot.is_absolute() {
            bail!("{key}.root: must be absolute");
        }
        let config = h.config.clone().unwrap_or_else(|| hroot.join("santools.toml"));
        hosts.push(SyncHost { name: name.clone(), ssh: t, root: hroot, config });
    }
    Ok(SyncPlan { root, include, exclude, santools, hosts })
}

#[derive(Clone, Debug, Serialize)]
pub struct HostReport {
    pub host: String,
    pub rsync: String,
    pub cron_update: String,
    pub error: Option<String>,
}

/// rsync's `-e`: the same ssh options the runner uses.
fn ssh_command(t: &SshTarget) -> String {
    let mut v = vec!["ssh".to_string(), "-o".into(), "BatchMode=yes".into()];
    if let Some(p) = t.port {
        v.extend(["-p".into(), p.to_string()]);
    }
    if let Some(i) = &t.identity {
        v.extend(["-i".into(), i.display().to_string()]);
    }
    for o in &t.options {
        v.extend(["-o".into(), o.clone()]);
    }
    if let Some(u) = &t.user {
        v.extend(["-l".into(), u.clone()]);
    }
    v.join(" ")
}

pub fn sync_host(p: &SyncPlan, h: &SyncHost, dry_run: bool, log: &JobLog) -> HostReport {
    let mut rep = HostReport { host: h.name.clone(), rsync: String::new(), cron_update: String::new(), error: None };
    let r = (|| -> anyhow::Result<()> {
        let mut rsync = Command::new("rsync")
            .args(["-a", "-r", "--delete", "--itemize-changes"])
            .arg(format!("--files-from={}", p.include.display()))
            .timeout(Duration::from_secs(3600));
        if let Some(e) = &p.exclude {
            rsync = rsync.arg(format!("--exclude-from={}", e.display()));
        }
        if dry_run {
            rsync = rsync.arg("-n");
        }
        let src = format!("{}/", p.root.display());
        let dst = format!("{}:{}/", h.ssh.host, h.root.display());
        rsync = rsync.args(["-e", &ssh_command(&h.ssh), "--", &src, &dst]);
        log.line("sync", &format!("{}: rsync {src} -> {dst}", h.name));
        let out = rsync.run().with_context(|| format!("rsync to {}", h.name))?;
        rep.rsync = out.stdout_str()?.to_string();
        if dry_run {
            // The host's cron-update reads the configuration the copy
            // would bring: it runs only after a real copy.
            rep.cron_update = "cron-update: runs after the copy (not in a dry run)".into();
            return Ok(());
        }
        let out = Command::new(&p.santools)
            .args(["cron-update", "--config"])
            .arg(&h.config)
            .args(["--host", &h.name])
            .ssh(h.ssh.clone())
            .timeout(Duration::from_secs(300))
            .run()
            .with_context(|| format!("cron-update on {}", h.name))?;
        rep.cron_update = out.stdout_str()?.to_string();
        log.line("sync", &format!("{}: synchronized, cron updated", h.name));
        Ok(())
    })();
    if let Err(e) = r {
        log.error("sync", &format!("{}: {e:#}", h.name));
        rep.error = Some(format!("{e:#}"));
    }
    rep
}
