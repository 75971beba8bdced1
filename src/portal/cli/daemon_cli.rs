//! `iscsi-portal` (also `iscsi_portal_daemon`): the daemon.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use nix::sys::signal::Signal;

use super::load_portal_config;
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging::{self, Verbosity};
use crate::config::{ConfigError, PortalConfig};
use crate::multicall::Tool;
use crate::portal::daemon::{
    daemonize, handle_signals, signal_background, stop_background, Control, Daemonized, PidFile, Readiness,
};
use crate::portal::server::{bind, serve, Portal};

pub const TOOL: Tool = Tool {
    name: "iscsi-portal",
    aliases: &["iscsi_portal_daemon"],
    about: "iSCSI portal daemon: answers discovery, redirects logins to live target portals",
    command,
    run,
};

const AFTER_HELP: &str = "\
Runs in the foreground (for systemd; see examples/iscsi-portal.service) unless -D;
-f (the seed's foreground switch) is accepted and changes nothing.
Logs: the access log and warnings go to stderr (syslog with -D, facility daemon,
ident syslog_prefix, priorities err/warning/info/debug).
Signals: SIGHUP reloads the configuration (a bad one is refused and the old kept) and
drops every cached portal list; SIGUSR1 only drops them (--invalidate sends it: call it
from the cluster manager when a volume group moves); SIGTERM or SIGINT stop accepting,
wait up to drain_timeout_sec for open logins, exit.
Exit codes: 0 success, 2 error.";

/// iSCSI portal daemon: answers discovery for a cluster of target nodes and
/// redirects each login to a live portal of the node serving the target
#[derive(Parser, Debug)]
#[command(name = "iscsi-portal", version, after_help = AFTER_HELP)]
pub struct PortalArgs {
    /// Run in the background (logs go to syslog; PID in pid_file)
    #[arg(short = 'D', long = "daemon")]
    background: bool,
    /// Run in the foreground (the default; the seed's switch)
    #[arg(short = 'f', long = "foreground", conflicts_with = "background")]
    foreground: bool,
    /// Stop the background daemon named in the PID file
    #[arg(short = 'k', long = "kill", conflicts_with_all = ["background", "listen_port", "check", "invalidate"])]
    kill: bool,
    /// Tell the running daemon (PID file) to drop its cached portal lists now (SIGUSR1)
    #[arg(long = "invalidate", conflicts_with_all = ["background", "check"])]
    invalidate: bool,
    /// Log every PDU (debug)
    #[arg(short = 'd', long = "debug-pdus")]
    debug_pdus: bool,
    /// Listen on this port instead of the configured ones (same addresses)
    #[arg(short = 'l', long = "listen-port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
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

/// The daemon's clap command: the shared -v/-q texts say what they do here.
pub fn command() -> clap::Command {
    PortalArgs::command()
        .mut_arg("verbose", |a| {
            a.help("Also log debug detail: node queries, cache and rotation decisions (the access log is always on)")
        })
        .mut_arg("quiet", |a| a.help("Only warnings and errors: no access log"))
}

/// Whether `ip` is an address of this host (binding it works).
fn is_local_ip(ip: IpAddr) -> bool {
    std::net::TcpListener::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// A path as seen from the current directory now: `-D` changes to `/`, and
/// SIGHUP must reread the same file.
fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir().context("finding the current directory")?.join(p))
}

/// Loads the configuration as the daemon runs it: `-l` applied, and no node
/// portal that is this portal itself (a wildcard listen address included).
fn load(path: Option<&Path>, listen_port: Option<u16>) -> anyhow::Result<PortalConfig> {
    let mut config = load_portal_config(path)?;
    let shown = path.map_or_else(|| crate::config::DEFAULT_CONFIG_PATH.into(), Path::to_path_buf);
    let invalid =
        |v: crate::config::InvalidValue| ConfigError::Invalid { path: shown.clone(), key: v.key, problem: v.problem };
    if let Some(port) = listen_port {
        config = config.with_listen_port(port).map_err(invalid)?;
    }
    config.check_not_self(is_local_ip).map_err(invalid)?;
    Ok(config)
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let a = PortalArgs::from_arg_matches(matches)?;
    // The access log is the daemon's normal output: info by default.
    let verbosity = match (a.common.quiet, a.common.verbose, a.debug_pdus) {
        (true, _, _) => Verbosity::Normal,
        (_, 0, false) => Verbosity::Verbose,
        _ => Verbosity::Debug,
    };
    let config_path = a.common.config.as_deref().map(absolute).transpose()?;
    let config = load(config_path.as_deref(), a.listen_port)?;
    let pid_path = match &a.pid_file {
        Some(p) => absolute(p)?,
        None => config.pid_file.clone(),
    };
    // The PID file is truncated when the daemon starts: it must not be the
    // configuration file under another name (identity, not spelling).
    if !a.kill {
        use crate::shared::file_identity::{check_distinct, RolePath};
        let config_shown = config_path.clone().unwrap_or_else(|| crate::config::DEFAULT_CONFIG_PATH.into());
        // A pid file whose directory does not exist yet cannot be the configuration.
        if let (Ok(c), Ok(p)) = (RolePath::new("configuration", &config_shown), RolePath::new("pid file", &pid_path)) {
            check_distinct(&[c, p])?;
        }
    }
    if a.kill {
        let pid = stop_background(&pid_path, Duration::from_secs(config.drain_timeout_sec + 5))?;
        println!("stopped iscsi-portal (pid {pid})");
        return Ok(exit::OK);
    }
    if a.invalidate {
        let pid = signal_background(&pid_path, Signal::SIGUSR1)?;
        println!("iscsi-portal (pid {pid}) drops its cached portal lists");
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
        for n in config.notes() {
            println!("note: {n}");
        }
        return Ok(exit::OK);
    }
    std::fs::create_dir_all(&config.state_directory)
        .with_context(|| format!("creating state_directory {}", config.state_directory.display()))?;
    // Bind and take the PID file before forking, so an address in use or a
    // running daemon is reported here, on the terminal.
    let listeners = bind(&config.listen)?;
    let mut pid = if a.background || a.pid_file.is_some() { Some(PidFile::create(&pid_path)?) } else { None };
    let mut readiness = None;
    if a.background {
        match daemonize()? {
            Daemonized::Parent { pid: child } => {
                // The child holds the lock now and removes the file at exit.
                std::mem::forget(pid.take());
                println!("iscsi-portal started in the background (pid {child})");
                return Ok(exit::OK);
            }
            Daemonized::Child(r) => readiness = Some(r),
        }
        logging::init_syslog(&config.syslog_prefix, verbosity);
    } else {
        logging::init("iscsi-portal", verbosity);
    }
    let started = start(&mut pid, config, &a, config_path, listeners, readiness.as_mut());
    if let (Err(e), Some(r)) = (&started, readiness.as_mut()) {
        tracing::error!("{e:#}");
        r.failed(&format!("{e:#}"));
    }
    started
}

/// Everything after the fork; an error before readiness reaches the
/// terminal through the start-up pipe.
fn start(
    pid: &mut Option<PidFile>,
    config: PortalConfig,
    a: &PortalArgs,
    config_path: Option<PathBuf>,
    listeners: Vec<std::net::TcpListener>,
    readiness: Option<&mut Readiness>,
) -> anyhow::Result<u8> {
    if let Some(p) = pid.as_mut() {
        p.write_pid().context("writing the pid file")?;
    }
    let coalesce = std::env::var("SANTOOLS_PORTAL_UNCOALESCED").map_or(true, |v| v != "1");
    if !coalesce {
        tracing::warn!("SANTOOLS_PORTAL_UNCOALESCED=1: single flight and node budgets are off (benchmarks only)");
    }
    let portal = Arc::new(Portal::new(config, a.debug_pdus, coalesce));
    let p = Arc::clone(&portal);
    let listen_port = a.listen_port;
    handle_signals(move |c| match c {
        Control::Reload => {
            match load(config_path.as_deref(), listen_port) {
                Ok(new) => {
                    p.reload(new);
                    tracing::info!("configuration reloaded; cached portal lists dropped");
                }
                Err(e) => tracing::error!("reload refused, keeping the running configuration: {e:#}"),
            }
            true
        }
        Control::Invalidate => {
            p.invalidate();
            tracing::info!("cached portal lists dropped (SIGUSR1)");
            true
        }
        Control::Shutdown => {
            tracing::info!("shutting down on signal");
            p.stop.store(true, Ordering::Relaxed);
            false
        }
    })?;
    if let Some(r) = readiness {
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
        command().debug_assert();
    }

    #[test]
    fn daemon_help_describes_v_d_l() {
        let help = command().render_long_help().to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        for want in [
            "Also log debug detail",
            "the access log is always on",
            "Log every PDU",
            "Listen on this port",
            "-f, --foreground",
            "--invalidate",
            "SIGUSR1",
        ] {
            assert!(help.contains(want), "help lacks {want:?}:\n{help}");
        }
        assert!(!help.contains("progress lines"), "the shared -v text does not apply here:\n{help}");
    }
}
