//! `iscsi-portal` (also `iscsi_portal_daemon`): the daemon.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::load_portal_config;
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging::{self, Verbosity};
use crate::config::Config;
use crate::multicall::Tool;
use crate::portal::daemon::{daemonize, handle_signals, stop_background, Control, Daemonized, PidFile};
use crate::portal::server::{bind, serve, Portal};

pub const TOOL: Tool = Tool {
    name: "iscsi-portal",
    aliases: &["iscsi_portal_daemon"],
    about: "iSCSI portal daemon: answers discovery, redirects logins to live target portals",
    command: PortalArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Runs in the foreground (for systemd; see examples/iscsi-portal.service) unless -D.
Signals: SIGHUP reloads the configuration (a bad one is refused and the old kept);
SIGTERM or SIGINT stop accepting, wait up to drain_timeout_sec for open logins, exit.
Exit codes: 0 success, 2 error.";

/// iSCSI portal daemon: answers discovery for a cluster of target nodes and
/// redirects each login to a live portal of the node serving the target
#[derive(Parser, Debug)]
#[command(name = "iscsi-portal", version, after_help = AFTER_HELP)]
pub struct PortalArgs {
    /// Run in the background (logs go to syslog; PID in pid_file)
    #[arg(short = 'D', long = "daemon")]
    background: bool,
    /// Stop the background daemon named in the PID file
    #[arg(short = 'k', long = "kill", conflicts_with_all = ["background", "listen_port", "check"])]
    kill: bool,
    /// Log every PDU (debug)
    #[arg(short = 'd', long = "debug-pdus")]
    debug_pdus: bool,
    /// Listen on this port instead of the configured ones (same addresses)
    #[arg(short = 'l', long = "listen-port", value_name = "PORT")]
    listen_port: Option<u16>,
    /// PID file [default: pid_file from the configuration]
    #[arg(long = "pid-file", value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Validate the configuration, print a summary, and exit
    #[arg(long = "check")]
    check: bool,
    #[command(flatten)]
    common: CommonArgs,
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let a = PortalArgs::from_arg_matches(matches)?;
    // The access log is the daemon's normal output: info by default.
    let verbosity = match (a.common.quiet, a.common.verbose, a.debug_pdus) {
        (true, _, _) => Verbosity::Normal,
        (_, 0, false) => Verbosity::Verbose,
        _ => Verbosity::Debug,
    };
    let mut config = load_portal_config(a.common.config.as_deref())?;
    if let Some(port) = a.listen_port {
        for l in &mut config.listen {
            l.set_port(port);
        }
    }
    let pid_path = a.pid_file.clone().unwrap_or_else(|| config.pid_file.clone());
    // The PID file is truncated when the daemon starts: it must not be the
    // configuration file under another name (identity, not spelling).
    let config_path = a.common.config.clone().unwrap_or_else(|| crate::config::DEFAULT_CONFIG_PATH.into());
    if !a.kill {
        use crate::shared::file_identity::{check_distinct, RolePath};
        // A pid file whose directory does not exist yet cannot be the configuration.
        if let (Ok(c), Ok(p)) = (RolePath::new("configuration", &config_path), RolePath::new("pid file", &pid_path)) {
            check_distinct(&[c, p])?;
        }
    }
    if a.kill {
        let pid = stop_background(&pid_path, Duration::from_secs(config.drain_timeout_sec + 5))?;
        println!("stopped iscsi-portal (pid {pid})");
        return Ok(exit::OK);
    }
    if a.check {
        println!("configuration is valid");
        for l in &config.listen {
            println!("listen {l}");
        }
        for d in &config.discovery_portals {
            println!(
                "discovery portal {} ({}): {} node portals",
                d.address,
                d.portal_group_name,
                d.node_portals().len()
            );
        }
        return Ok(exit::OK);
    }
    std::fs::create_dir_all(&config.state_directory)
        .with_context(|| format!("creating state_directory {}", config.state_directory.display()))?;
    // Bind before forking, so an address in use is reported here.
    let listeners = bind(&config.listen)?;
    let mut readiness = None;
    if a.background {
        match daemonize()? {
            Daemonized::Parent { pid } => {
                println!("iscsi-portal started in the background (pid {pid})");
                return Ok(exit::OK);
            }
            Daemonized::Child(r) => readiness = Some(r),
        }
        logging::init_syslog("iscsi-portal", verbosity);
    } else {
        logging::init("iscsi-portal", verbosity);
    }
    let _pid = if a.background || a.pid_file.is_some() { Some(PidFile::create(&pid_path)?) } else { None };
    let portal = Arc::new(Portal::new(config, a.debug_pdus));
    let config_path = a.common.config.clone();
    let p = Arc::clone(&portal);
    handle_signals(move |c| match c {
        Control::Reload => {
            match Config::load(config_path.as_deref()).and_then(|c| {
                c.portal.ok_or_else(|| crate::config::ConfigError::Parse {
                    path: config_path.clone().unwrap_or_else(|| crate::config::DEFAULT_CONFIG_PATH.into()),
                    message: "no [portal] section".into(),
                })
            }) {
                Ok(new) => {
                    p.reload(new);
                    tracing::info!("configuration reloaded");
                }
                Err(e) => tracing::error!("reload refused, keeping the running configuration: {e}"),
            }
            true
        }
        Control::Shutdown => {
            tracing::info!("shutting down on signal");
            p.stop.store(true, Ordering::Relaxed);
            false
        }
    })?;
    if let Some(r) = readiness.as_mut() {
        r.ready();
    }
    serve(listeners, portal)?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_tree_is_consistent() {
        PortalArgs::command().debug_assert();
    }
}
