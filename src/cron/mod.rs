//! Scheduling the archive's jobs: `cron-update` keeps a santools-owned
//! section of the host's crontab (seed: cron_update.plx) or writes systemd
//! timers, from `[cron.hosts.<host>]`; `sync-all` copies the configuration
//! to the other archive hosts and runs cron-update there (seed:
//! sync_all.sh). Pure parts: [`spec`] (cron fields, OnCalendar), [`section`]
//! (the crontab section), [`systemd`] (units); executors: [`update`],
//! [`sync`]; command lines in [`cli`].

pub mod cli;
pub mod section;
pub mod spec;
pub mod sync;
pub mod systemd;
pub mod update;
