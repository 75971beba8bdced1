//! `zfs-copy-agent`: the far end of `zfs-copy`, run through ssh on another
//! archive host. Each call does one thing on that host's store and answers
//! in JSON; `send` and `receive` stream through ssh (stdin/stdout) or, with
//! `--connect` / `--listen`, over a direct TCP connection gated by the
//! one-time token read from stdin (never from argv, which `ps` shows).

use std::io::{BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use super::endpoint::list_local;
use super::transport::{
    accept_with_token, bind_in_range, connect_with_token, parse_ports, read_token_line, relay, widen_pipe,
};
use crate::archive::names::{HoldTag, Namespace, PoolName, SnapshotName, VolumeName};
use crate::archive::settings::ArchiveSettings;
use crate::archive::store::zfs::{ZfsMode, ZfsStore};
use crate::archive::store::ArchiveStore;
use crate::cli::exit;
use crate::cli::logging;
use crate::config::{Config, Section};
use crate::multicall::Tool;
use crate::progress::NoProgress;

pub const TOOL: Tool = Tool {
    name: "zfs-copy-agent",
    aliases: &[],
    about: "internal: the far end of zfs-copy on another archive host (run through ssh)",
    command: AgentArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Example (what zfs-copy runs through ssh; by hand only to debug):
  ssh zfs-archive2 santools zfs-copy-agent list tank iscsi_lv_mail_bk
                            the volume's snapshots with GUIDs and holds, as JSON

Every name is validated again here, and the pool is this host's store as its
configuration says (an unconfigured pool is treated as ZFS). Exit codes: 0 success,
2 error.";

/// The far end of zfs-copy on another archive host (run through ssh)
#[derive(Parser, Debug)]
#[command(name = "zfs-copy-agent", version, after_help = AFTER_HELP)]
pub struct AgentArgs {
    /// Configuration file of this host
    #[arg(long = "config", value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    op: Op,
}

#[derive(Subcommand, Debug)]
enum Op {
    /// List a volume's snapshots (JSON)
    List { pool: String, volume: String },
    /// Hold a snapshot with a tag
    Hold { pool: String, volume: String, snapshot: String, tag: String },
    /// Release a hold
    Release { pool: String, volume: String, snapshot: String, tag: String },
    /// Roll a volume back to a snapshot (destroying later ones)
    Rollback { pool: String, volume: String, snapshot: String },
    /// Write a send stream to stdout, or to a TCP receiver (--connect; token on stdin)
    Send {
        pool: String,
        volume: String,
        snapshot: String,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        intermediates: bool,
        #[arg(long)]
        tree: bool,
        #[arg(long, value_name = "ADDR:PORT")]
        connect: Option<SocketAddr>,
        #[arg(long, default_value = "120")]
        timeout: u64,
    },
    /// Receive a stream from stdin, or from a TCP sender (--listen; token on stdin)
    Receive {
        pool: String,
        volume: Option<String>,
        #[arg(long)]
        force: bool,
        #[arg(long, value_name = "ADDR")]
        listen: Option<IpAddr>,
        #[arg(long, default_value = "50100-50199")]
        ports: String,
        #[arg(long, default_value = "120")]
        timeout: u64,
    },
}

/// This host's store for `pool`: as configured, else a ZFS pool in image
/// mode (a plain ZFS host that only receives copies).
fn store_for(config: Option<&std::path::Path>, pool: &PoolName) -> anyhow::Result<Arc<dyn ArchiveStore>> {
    let c = Config::load_for(config, &[Section::Archive])?;
    if let Some(a) = &c.archive {
        let s =
            ArchiveSettings::from_config(a).map_err(|v| anyhow!("configuration: key `{}`: {}", v.key, v.problem))?;
        if let Some(st) = s.store(pool) {
            super::endpoint::check_can_copy(st.as_ref())?;
            return Ok(st);
        }
        return Ok(Arc::new(ZfsStore::new(pool.clone(), ZfsMode::Image, Vec::new(), s.command_timeout, &s.ns)));
    }
    Ok(Arc::new(ZfsStore::new(
        pool.clone(),
        ZfsMode::Image,
        Vec::new(),
        Duration::from_secs(600),
        &Namespace::new("org.santools")?,
    )))
}

/// After the receive command: puts what arrived in place, or drops it.
fn finish_or_abort(st: &dyn ArchiveStore, vol: Option<&VolumeName>, done: anyhow::Result<u64>) -> anyhow::Result<u64> {
    match done {
        Ok(n) => match st.finish_receive(vol) {
            Ok(_) => Ok(n),
            Err(e) => {
                if let Err(c) = st.abort_receive(vol) {
                    tracing::warn!("cleaning up the failed receive: {c}");
                }
                Err(e.into())
            }
        },
        Err(e) => {
            if let Err(c) = st.abort_receive(vol) {
                tracing::warn!("cleaning up the failed receive: {c}");
            }
            Err(e)
        }
    }
}

fn answer(v: serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}")?;
    out.flush()?;
    Ok(())
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let args = AgentArgs::from_arg_matches(matches)?;
    logging::init("zfs-copy-agent", logging::Verbosity::Normal);
    let cfg = args.config.as_deref();
    match args.op {
        Op::List { pool, volume } => {
            let st = store_for(cfg, &PoolName::new(&pool)?)?;
            answer(serde_json::to_value(list_local(st.as_ref(), &VolumeName::new(&volume)?)?)?)?;
        }
        Op::Hold { pool, volume, snapshot, tag } => {
            let st = store_for(cfg, &PoolName::new(&pool)?)?;
            st.hold(&VolumeName::new(&volume)?, &SnapshotName::new(&snapshot)?, &HoldTag::new(&tag)?)?;
            answer(serde_json::json!({ "held": true }))?;
        }
        Op::Release { pool, volume, snapshot, tag } => {
            let st = store_for(cfg, &PoolName::new(&pool)?)?;
            let r = st.release(&VolumeName::new(&volume)?, &SnapshotName::new(&snapshot)?, &HoldTag::new(&tag)?)?;
            answer(serde_json::json!({ "released": r }))?;
        }
        Op::Rollback { pool, volume, snapshot } => {
            let st = store_for(cfg, &PoolName::new(&pool)?)?;
            st.rollback(&VolumeName::new(&volume)?, &SnapshotName::new(&snapshot)?)?;
            answer(serde_json::json!({ "rolled_back": true }))?;
        }
        Op::Send { pool, volume, snapshot, from, intermediates, tree, connect, timeout } => {
            let st = store_for(cfg, &PoolName::new(&pool)?)?;
            let from = from.as_deref().map(SnapshotName::new).transpose()?;
            let cmd = st.send_command(
                &VolumeName::new(&volume)?,
                &SnapshotName::new(&snapshot)?,
                from.as_ref(),
                intermediates,
                tree,
            )?;
            let timeout = Duration::from_secs(timeout.clamp(1, 86_400));
            let token = match connect {
                Some(_) => Some(read_token_line(&mut BufReader::new(std::io::stdin().lock()))?),
                None => None,
            };
            let mut sender = cmd.spawn()?;
            drop(sender.take_stdin());
            let out = sender.take_stdout().ok_or_else(|| anyhow!("no stdout from the sender"))?;
            widen_pipe(&out);
            let relayed = match (connect, token) {
                (Some(addr), Some(token)) => {
                    let sock = connect_with_token(addr, &token, timeout, timeout)
                        .with_context(|| format!("connecting to {addr}"))?;
                    let n = relay(out.as_fd(), sock.as_fd(), &NoProgress);
                    let _ = sock.shutdown(std::net::Shutdown::Write);
                    n
                }
                _ => {
                    let stdout = std::io::stdout().lock();
                    relay(out.as_fd(), stdout.as_fd(), &NoProgress)
                }
            };
            // Closed before waiting: a sender must not block on a pipe nobody reads.
            drop(out);
            sender.wait()?;
            let n = relayed?;
            if connect.is_some() {
                answer(serde_json::json!({ "bytes": n }))?;
            }
        }
        Op::Receive { pool, volume, force, listen, ports, timeout } => {
            let st = store_for(cfg, &PoolName::new(&pool)?)?;
            let vol = volume.as_deref().map(VolumeName::new).transpose()?;
            let cmd = st.receive_command(vol.as_ref(), force)?;
            let timeout = Duration::from_secs(timeout.clamp(1, 86_400));
            match listen {
                Some(ip) => {
                    let token = read_token_line(&mut BufReader::new(std::io::stdin().lock()))?;
                    let ports = parse_ports(&ports).map_err(|e| anyhow!("--ports {e}"))?;
                    let l = bind_in_range(ip, ports)?;
                    answer(serde_json::json!({ "port": l.local_addr()?.port() }))?;
                    // Started while the sender connects (see run.rs).
                    let mut receiver = cmd.spawn()?;
                    let into = receiver.take_stdin().ok_or_else(|| anyhow!("no stdin to the receiver"))?;
                    let sock = match accept_with_token(&l, &token, timeout, timeout) {
                        Ok(s) => s,
                        Err(e) => {
                            drop(into);
                            let _ = receiver.wait();
                            return Err(e.into());
                        }
                    };
                    drop(l);
                    widen_pipe(&into);
                    let relayed = relay(sock.as_fd(), into.as_fd(), &NoProgress);
                    drop(sock);
                    drop(into);
                    // A stalled stream explains the receiver's "short read".
                    let done = match (relayed, receiver.wait()) {
                        (Err(e), _) if e.kind() == std::io::ErrorKind::TimedOut => Err(anyhow::Error::from(e)),
                        (relayed, status) => status.map_err(anyhow::Error::from).and_then(|_| Ok(relayed?)),
                    };
                    let n = finish_or_abort(st.as_ref(), vol.as_ref(), done)?;
                    answer(serde_json::json!({ "bytes": n }))?;
                }
                None => {
                    let mut receiver = cmd.spawn()?;
                    let into = receiver.take_stdin().ok_or_else(|| anyhow!("no stdin to the receiver"))?;
                    widen_pipe(&into);
                    let stdin = std::io::stdin().lock();
                    let relayed = relay(stdin.as_fd(), into.as_fd(), &NoProgress);
                    drop(into);
                    let done = receiver.wait().map_err(anyhow::Error::from).and_then(|_| Ok(relayed?));
                    finish_or_abort(st.as_ref(), vol.as_ref(), done)?;
                }
            }
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_tree_is_consistent() {
        AgentArgs::command().debug_assert();
    }
}
