//! `cron-update`'s executor: the host's jobs from `[cron.hosts.<host>]`
//! into its crontab section (kept state: `cron.<host>.current` and
//! `cron.<host>.new`, as the seed) or into systemd units in a directory.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;

use super::section::{self, CronLine};
use super::spec::CronSpec;
use super::systemd;
use crate::archive::job_log::JobLog;
use crate::config::cron::CronConfig;
use crate::shared::atomic_file::write_atomic;
use crate::shared::command::Command;
use crate::shared::text_file::{read_text, MAX_TEXT_BYTES};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/santools/state";
/// /run/lock exists on every boot (a directory of our own under /run
/// would not, and flock cannot create it).
pub const DEFAULT_LOCK_DIR: &str = "/run/lock";

#[derive(Clone, Debug)]
pub struct Job {
    pub name: String,
    pub spec: CronSpec,
    pub comment: Option<String>,
    /// What runs, the lock wrapper included.
    pub argv: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct HostJobs {
    pub host: String,
    pub crontab_user: Option<String>,
    pub systemd_dir: Option<PathBuf>,
    pub jobs: Vec<Job>,
    pub state_dir: PathBuf,
}

fn flock_program() -> String {
    ["/usr/bin/flock", "/bin/flock"].iter().find(|p| Path::new(p).exists()).unwrap_or(&"flock").to_string()
}

/// Resolves and checks one host's jobs; every error names its key.
pub fn resolve(c: &CronConfig, host: &str) -> anyhow::Result<HostJobs> {
    let Some(h) = c.hosts.get(host) else {
        let known: Vec<&str> = c.hosts.keys().map(String::as_str).collect();
        bail!(
            "host {host:?} has no [cron.hosts.{host}] section (known: {}); give --host NAME",
            if known.is_empty() { "none".into() } else { known.join(", ") }
        );
    };
    let lock_dir = c.lock_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_LOCK_DIR));
    if let Some(u) = &h.crontab_user {
        if u.is_empty() || u.starts_with('-') || !u.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            bail!("cron.hosts.{host}.crontab_user: {u:?} is not a user name");
        }
    }
    let mut jobs = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, j) in h.jobs.iter().enumerate() {
        let key = format!("cron.hosts.{host}.jobs[{i}]");
        if j.name.is_empty()
            || j.name.len() > 64
            || !j.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
        {
            bail!("{key}.name: {:?} must be 1-64 of a-z, 0-9, '_', '-'", j.name);
        }
        if !names.insert(j.name.clone()) {
            bail!("{key}.name: {:?} is used twice", j.name);
        }
        let spec = CronSpec::parse(&j.schedule).map_err(|e| anyhow::anyhow!("{key}.schedule: {e}"))?;
        if j.command.is_empty() || j.command[0].is_empty() {
            bail!("{key}.command: must be a non-empty argument vector");
        }
        if let Some(a) = j.command.iter().find(|a| a.chars().any(|c| c.is_control())) {
            bail!("{key}.command: argument {a:?} contains a control character");
        }
        if let Some(c) = &j.comment {
            if c.chars().any(|c| c.is_control()) {
                bail!("{key}.comment: must be one line");
            }
        }
        let mut argv = Vec::new();
        if j.lock {
            argv.extend([
                flock_program(),
                "-n".to_string(),
                lock_dir.join(format!("santools-cron-{}.lock", j.name)).display().to_string(),
            ]);
        }
        argv.extend(j.command.iter().cloned());
        jobs.push(Job { name: j.name.clone(), spec, comment: j.comment.clone(), argv });
    }
    Ok(HostJobs {
        host: host.to_string(),
        crontab_user: h.crontab_user.clone(),
        systemd_dir: h.systemd_dir.clone(),
        jobs,
        state_dir: c.state_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct UpdateReport {
    pub host: String,
    /// "crontab" or the systemd directory.
    pub target: String,
    pub changed: bool,
    pub dry_run: bool,
    pub diff: String,
    pub written: Vec<String>,
    pub removed: Vec<String>,
}

fn crontab(user: Option<&str>) -> Command {
    let mut c = Command::new("crontab").timeout(std::time::Duration::from_secs(60));
    if let Some(u) = user {
        c = c.args(["-u", u]);
    }
    c
}

fn read_crontab(user: Option<&str>) -> anyhow::Result<String> {
    let out = crontab(user).arg("-l").run_unchecked()?;
    if out.status.success() {
        return Ok(out.stdout_str()?.to_string());
    }
    let err = out.stderr_lossy();
    if err.contains("no crontab for") {
        return Ok(String::new());
    }
    bail!("crontab -l failed: {}", err.trim())
}

/// The crontab section.
pub fn update_crontab(h: &HostJobs, dry_run: bool, log: &JobLog) -> anyhow::Result<UpdateReport> {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::system()).strftime("%Y-%m-%d %H:%M:%S").to_string();
    let lines: Vec<CronLine> = h
        .jobs
        .iter()
        .map(|j| CronLine { comment: j.comment.clone(), schedule: j.spec.text.clone(), argv: j.argv.clone() })
        .collect();
    let sec = section::render(&h.host, &now, &lines);
    let current_path = h.state_dir.join(format!("cron.{}.current", h.host));
    let new_path = h.state_dir.join(format!("cron.{}.new", h.host));
    log.line("cron", &format!("reading current crontab settings into {}", current_path.display()));
    let current = read_crontab(h.crontab_user.as_deref())?;
    let mut rep = UpdateReport {
        host: h.host.clone(),
        target: "crontab".into(),
        changed: false,
        dry_run,
        diff: String::new(),
        written: Vec::new(),
        removed: Vec::new(),
    };
    let next = section::replace(&current, &sec)?;
    if !dry_run {
        fs::create_dir_all(&h.state_dir).with_context(|| format!("creating {}", h.state_dir.display()))?;
        write_atomic(&current_path, current.as_bytes())
            .with_context(|| format!("writing {}", current_path.display()))?;
    }
    let Some(next) = next else {
        log.line("cron", &format!("crontab of {} is up to date", h.host));
        return Ok(rep);
    };
    rep.changed = true;
    rep.diff = section::diff(&current, &next);
    if dry_run {
        return Ok(rep);
    }
    write_atomic(&new_path, next.as_bytes()).with_context(|| format!("writing {}", new_path.display()))?;
    log.line("cron", &format!("crontab < {}", new_path.display()));
    crontab(h.crontab_user.as_deref()).arg(&new_path).run().context("installing the new crontab")?;
    rep.written.push(new_path.display().to_string());
    Ok(rep)
}

/// systemd units in `dir`: written when they differ, santools' own units
/// of jobs no longer configured removed; other files untouched.
pub fn update_systemd(h: &HostJobs, dir: &Path, dry_run: bool, log: &JobLog) -> anyhow::Result<UpdateReport> {
    let mut rep = UpdateReport {
        host: h.host.clone(),
        target: dir.display().to_string(),
        changed: false,
        dry_run,
        diff: String::new(),
        written: Vec::new(),
        removed: Vec::new(),
    };
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let mut wanted = std::collections::BTreeSet::new();
    for j in &h.jobs {
        for (name, body) in systemd::units(&h.host, &j.name, j.comment.as_deref(), &j.spec, &j.argv) {
            let path = dir.join(&name);
            wanted.insert(name.clone());
            // Bounded, and only a missing unit counts as absent: one that is
            // not UTF-8 (or unreadable) was replaced unchecked.
            let old = match read_text(&path, MAX_TEXT_BYTES) {
                Ok(t) => Some(t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => bail!("{} exists and cannot be read ({e}); refusing to replace it", path.display()),
            };
            if let Some(o) = &old {
                if !o.starts_with(systemd::MARKER) {
                    bail!("{} exists and was not written by santools; refusing to replace it", path.display());
                }
            }
            if old.as_deref() == Some(body.as_str()) {
                continue;
            }
            rep.changed = true;
            rep.diff.push_str(
                &section::diff(old.as_deref().unwrap_or(""), &body)
                    .lines()
                    .map(|l| format!("{name}: {l}\n"))
                    .collect::<String>(),
            );
            if !dry_run {
                write_atomic(&path, body.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
                log.line("cron", &format!("wrote {}", path.display()));
            }
            rep.written.push(path.display().to_string());
        }
    }
    for e in fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with("santools-") && (name.ends_with(".service") || name.ends_with(".timer"));
        if !ours || wanted.contains(&name) {
            continue;
        }
        // A FIFO or an endless file here is not ours: left untouched.
        if !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let head = read_text(&e.path(), MAX_TEXT_BYTES).unwrap_or_default();
        if !head.starts_with(systemd::MARKER) {
            continue;
        }
        rep.changed = true;
        if !dry_run {
            fs::remove_file(e.path()).with_context(|| format!("removing {}", e.path().display()))?;
            log.line("cron", &format!("removed {}", e.path().display()));
        }
        rep.removed.push(e.path().display().to_string());
    }
    Ok(rep)
}
