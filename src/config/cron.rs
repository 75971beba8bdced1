//! `[cron]` and `[sync]`: the scheduled jobs of each archive host (seed
//! chunk 126: one section of crontab entries per host, kept in the shared
//! configuration) and how `sync-all` copies the configuration to the other
//! hosts (seed chunk 165: rsync with include/exclude lists, then
//! cron_update on each host).
//!
//! ```toml
//! [cron]
//! state_dir = "/var/lib/santools/state"
//!
//! [cron.hosts.zfs-archive1]
//! jobs = [
//!   { name = "snapcheck", schedule = "0 7 * * *", command = ["/usr/local/sbin/santools", "snapcheck", "-d", "-o"], comment = "7:00am daily" },
//!   { name = "snaprotate", schedule = "0 22 * * *", command = ["/usr/local/sbin/santools", "snaprotate", "-a"] },
//! ]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct CronConfig {
    /// Where `cron.<host>.current` and `cron.<host>.new` are kept.
    pub state_dir: Option<PathBuf>,
    /// Directory of the job lock files (`santools-cron-<job>.lock`).
    pub lock_dir: Option<PathBuf>,
    #[serde(default)]
    pub hosts: BTreeMap<String, CronHostConfig>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct CronHostConfig {
    /// Whose crontab (`crontab -u USER`) [default: the caller's].
    pub crontab_user: Option<String>,
    /// Write systemd units here instead of the crontab (hosts without cron).
    pub systemd_dir: Option<PathBuf>,
    #[serde(default)]
    pub jobs: Vec<JobConfig>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    pub name: String,
    /// Five cron fields (`0 7 * * *`) or @hourly, @daily, @weekly, @monthly, @yearly.
    pub schedule: String,
    /// Argument vector (quoted for cron's shell by santools).
    pub command: Vec<String>,
    pub comment: Option<String>,
    /// Run under a lock so a late run does not overlap the next [default: true].
    #[serde(default = "yes")]
    pub lock: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// The directory tree kept the same on every host (the seed's santools root).
    pub root: Option<PathBuf>,
    /// rsync --files-from list, relative to root (seed: sync_include.conf).
    pub include: Option<PathBuf>,
    /// rsync --exclude-from list (seed: sync_exclude.conf).
    pub exclude: Option<PathBuf>,
    /// The santools binary on the other hosts.
    pub santools: Option<String>,
    #[serde(default)]
    pub hosts: BTreeMap<String, SyncHostConfig>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SyncHostConfig {
    /// ssh destination [default: the host's name].
    pub address: Option<String>,
    /// The root on that host [default: sync.root].
    pub root: Option<PathBuf>,
    /// Its configuration file [default: <root>/santools.toml].
    pub config: Option<PathBuf>,
    pub ssh_user: Option<String>,
    pub ssh_port: Option<u16>,
    pub ssh_identity: Option<PathBuf>,
    #[serde(default)]
    pub ssh_options: Vec<String>,
}
