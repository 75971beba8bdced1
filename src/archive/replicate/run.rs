//! Carries a copy out: plan from both listings, hold the snapshot being
//! sent, stream send → receive (through this process over ssh, or over a
//! direct TCP connection with a one-time token), confirm the received
//! snapshot by GUID, then move the hold tag `santools-copy-<target>` to the
//! new base on both sides and release it everywhere else. A killed copy
//! leaves no received snapshot (ZFS drops an incomplete stream) and at most
//! a stale hold, which the next run releases.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::AsFd;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use super::endpoint::{Endpoint, Listing, Side};
use super::plan::{plan, Mode, Step};
use super::transport::{accept_with_token, bind_in_range, connect_with_token, new_token, relay};
use super::{CopySettings, Transport};
use crate::archive::job_log::JobLog;
use crate::archive::names::{HoldTag, SnapshotName, VolumeName};
use crate::progress::Progress;
use crate::shared::command::Command;

pub struct CopyRequest {
    pub source: Side,
    pub target: Side,
    pub mode: Mode,
    pub force: bool,
    /// `-p`: the whole tree with properties into the target pool.
    pub tree: bool,
    pub transport: Transport,
    pub dry_run: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct CopyReport {
    pub source: String,
    pub target: String,
    pub transport: Transport,
    pub step: Option<Step>,
    pub dry_run: bool,
    pub bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    pub hold_tag: String,
    pub released: Vec<String>,
}

pub struct CopyContext<'a> {
    pub settings: &'a CopySettings,
    /// Where the lock of each copy target lives (archive.lock_dir).
    pub lock_dir: Option<std::path::PathBuf>,
    pub log: &'a JobLog,
    pub progress: &'a dyn Progress,
}

fn same_host(a: &Side, b: &Side) -> bool {
    a.host.as_deref().map(|h| h.rsplit('@').next().unwrap_or(h))
        == b.host.as_deref().map(|h| h.rsplit('@').next().unwrap_or(h))
}

pub fn copy(
    ctx: &CopyContext<'_>,
    src_ep: &Endpoint,
    dst_ep: &Endpoint,
    req: &CopyRequest,
) -> anyhow::Result<CopyReport> {
    for ep in [src_ep, dst_ep] {
        if let Endpoint::Local(store) = ep {
            super::endpoint::check_can_copy(store.as_ref())?;
        }
    }
    let src_vol = req.source.volume.clone().ok_or_else(|| anyhow!("-s needs POOL/VOLUME@SNAPSHOT"))?;
    // -p receives under the source's name (receive -d).
    let dst_vol = if req.tree {
        src_vol.clone()
    } else {
        req.target.volume.clone().ok_or_else(|| anyhow!("-t needs POOL/VOLUME (or POOL with -p)"))?
    };
    if same_host(&req.source, &req.target) && req.source.pool == req.target.pool {
        if req.tree {
            bail!("-p receives the whole tree under the source's names: source and target pool must differ on one host ({})", req.target.describe());
        }
        if src_vol == dst_vol {
            bail!("source and target are the same volume");
        }
    }
    // Archive volumes are named *_bk (the seed's iscsi_<lv>_bk); anything
    // else could be one of the pool's own directories (`ddless`, the
    // checksum histories).
    if !dst_vol.as_str().ends_with("_bk") {
        bail!("target volume {dst_vol}: archive volume names end in _bk");
    }
    let target_name = format!("{}:{}/{dst_vol}", req.target.host.as_deref().unwrap_or("local"), req.target.pool);
    let tag = HoldTag::for_copy_target(&target_name);
    // One copy into a target at a time (this host's runs).
    let _lock = match (&ctx.lock_dir, req.dry_run) {
        (Some(dir), false) => Some(copy_lock(dir, &tag)?),
        _ => None,
    };
    let mut rep = CopyReport {
        source: req.source.describe(),
        target: format!(
            "{}/{dst_vol}",
            match &req.target.host {
                Some(h) => format!("{h}:{}", req.target.pool),
                None => req.target.pool.to_string(),
            }
        ),
        transport: req.transport,
        step: None,
        dry_run: req.dry_run,
        bytes: 0,
        seconds: 0.0,
        mb_per_s: 0.0,
        hold_tag: tag.to_string(),
        released: Vec::new(),
    };
    let src_list = src_ep.list(&src_vol).with_context(|| format!("listing {}", req.source.describe()))?;
    if !src_list.exists {
        bail!("source volume {} does not exist", req.source.describe());
    }
    // `-s POOL/VOLUME` without a snapshot: its newest (the listing is
    // oldest first).
    let snap = match &req.source.snapshot {
        Some(s) => s.clone(),
        None => {
            let newest = src_list
                .snapshots
                .last()
                .ok_or_else(|| anyhow!("{} has no snapshot to copy", req.source.describe()))?;
            let s = SnapshotName::new(&newest.name)?;
            rep.source = format!("{}@{s}", req.source.describe());
            s
        }
    };
    let dst_list = dst_ep.list(&dst_vol).with_context(|| format!("listing the target {}", rep.target))?;
    super::endpoint::check_same_format(&src_list, &dst_list, &rep.source, &rep.target)?;
    if req.tree && src_list.format.as_deref() == Some("btrfs") {
        bail!("-p sends a whole ZFS tree with its properties (zfs send -R); btrfs has no such stream: copy the first snapshot, then the rest with -I");
    }
    let dst_snaps = dst_list.snaps();
    let step =
        plan(&src_list.snaps(), dst_list.exists.then_some(dst_snaps.as_slice()), snap.as_str(), &req.mode, req.force)?;
    rep.step = Some(step.clone());
    if req.dry_run {
        return Ok(rep);
    }
    let newly_held =
        !src_list.snapshots.iter().any(|s| s.name == snap.as_str() && s.holds.iter().any(|t| t == tag.as_str()));
    // The source's snapshots this run holds with our tag; the others that
    // carry it are released at the end. Tracked here instead of listing the
    // source again (each zfs call costs, and only we move this tag).
    let mut held_here: Vec<String> = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        if let Step::UpToDate { .. } = step {
            ctx.log.line("copy", &format!("{} is up to date with {}", rep.target, rep.source));
            src_ep.hold(&src_vol, &snap, &tag)?;
            if let (Endpoint::Local(st), false) = (dst_ep, req.tree) {
                // A crash after an earlier receive may have left its
                // finishing undone (btrfs: the volume's live copy).
                st.finish_receive(Some(&dst_vol))?;
            }
        } else {
            // Held before the stream starts: rotation cannot take it away.
            src_ep.hold(&src_vol, &snap, &tag)?;
            let (from, intermediates, force) = match &step {
                Step::Incremental { from, intermediates, rollback, .. } => {
                    (Some(SnapshotName::new(from)?), *intermediates, *rollback)
                }
                _ => (None, false, false),
            };
            if let Some(f) = &from {
                // The base stays held on both sides while the stream runs.
                src_ep.hold(&src_vol, f, &tag)?;
                held_here.push(f.to_string());
                if let Some(tb) = dst_list.snapshots.iter().find(|t| {
                    t.guid.is_some() && src_list.snapshots.iter().any(|s| s.name == f.as_str() && s.guid == t.guid)
                }) {
                    let base = SnapshotName::new(&tb.name)?;
                    dst_ep.hold(&dst_vol, &base, &tag)?;
                    if force {
                        // -F: the target's snapshots after the base go.
                        ctx.log.line("copy", &format!("{}: rolling back to @{base} (-F)", rep.target));
                        dst_ep.rollback(&dst_vol, &base)?;
                    }
                }
            }
            ctx.log.line("copy", &format!("{} -> {}: {:?} over {:?}", rep.source, rep.target, step, req.transport));
            let started = Instant::now();
            let send = Stream { vol: &src_vol, snap: &snap, from: from.as_ref(), intermediates, tree: req.tree };
            let recv_vol = if req.tree { None } else { Some(&dst_vol) };
            let moved = transfer(ctx, src_ep, dst_ep, &send, recv_vol, force, req.transport);
            if let Endpoint::Local(st) = dst_ep {
                let finished = match &moved {
                    Ok(_) => st.finish_receive(recv_vol).map(|_| ()),
                    Err(_) => Ok(()),
                };
                if moved.is_err() || finished.is_err() {
                    if let Err(e) = st.abort_receive(recv_vol) {
                        ctx.log.error("copy", &format!("{}: cleaning up the failed receive: {e}", rep.target));
                    }
                }
                finished?;
            }
            rep.bytes = moved?;
            rep.seconds = started.elapsed().as_secs_f64();
            rep.mb_per_s = crate::shared::units::mb_per_s(rep.bytes, rep.seconds);
        }
        // Confirmed by GUID, not by name.
        let after = dst_ep.list(&dst_vol)?;
        let want = src_list.snapshots.iter().find(|s| s.name == snap.as_str()).and_then(|s| s.guid.clone());
        let got = after.snapshots.iter().find(|s| s.name == snap.as_str());
        match got {
            Some(g) if g.guid == want => {}
            Some(g) => bail!("{}@{snap} arrived with GUID {:?}, the source's is {:?}", rep.target, g.guid, want),
            None => bail!("{}@{snap} is not on the target after the receive", rep.target),
        }
        dst_ep.hold(&dst_vol, &snap, &tag)?;
        // The new base takes over: release our tag everywhere else.
        let mut src_now = src_list.clone();
        for s in src_now.snapshots.iter_mut().filter(|s| held_here.contains(&s.name)) {
            if !s.holds.iter().any(|t| t == tag.as_str()) {
                s.holds.push(tag.to_string());
            }
        }
        rep.released.extend(release_others(src_ep, &src_vol, &src_now, &snap, &tag, &req.source.describe())?);
        rep.released.extend(release_others(dst_ep, &dst_vol, &after, &snap, &tag, &rep.target)?);
        Ok(())
    })();
    if let Err(e) = result {
        if newly_held {
            let _ = src_ep.release(&src_vol, &snap, &tag);
        }
        // Into the job log only: the caller prints the error itself.
        ctx.log.record("copy", &format!("error: {} -> {}: {e:#}", rep.source, rep.target));
        return Err(e);
    }
    if rep.bytes > 0 {
        ctx.log.line(
            "copy",
            &format!(
                "{} -> {}: {} bytes in {:.1} s ({:.1} MB/s)",
                rep.source, rep.target, rep.bytes, rep.seconds, rep.mb_per_s
            ),
        );
    }
    Ok(rep)
}

/// Held for a whole copy: a second run into the same target is refused
/// instead of racing the first one's receive and holds.
fn copy_lock(dir: &std::path::Path, tag: &HoldTag) -> anyhow::Result<std::fs::File> {
    use crate::shared::file_lock;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{tag}.lock"));
    let f = file_lock::open_or_create(&path).with_context(|| format!("opening {}", path.display()))?;
    file_lock::lock_exclusive(&f, &path).map_err(|e| match e {
        file_lock::LockError::Busy { .. } => anyhow!("another zfs-copy into the same target is running ({e})"),
        e => anyhow!(e),
    })?;
    Ok(f)
}

fn release_others(
    ep: &Endpoint,
    vol: &VolumeName,
    list: &Listing,
    keep: &SnapshotName,
    tag: &HoldTag,
    what: &str,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for s in &list.snapshots {
        if s.name != keep.as_str() && s.holds.iter().any(|t| t == tag.as_str()) {
            ep.release(vol, &SnapshotName::new(&s.name)?, tag)?;
            out.push(format!("{}@{}", what.split('@').next().unwrap_or(what), s.name));
        }
    }
    Ok(out)
}

struct Stream<'a> {
    vol: &'a VolumeName,
    snap: &'a SnapshotName,
    from: Option<&'a SnapshotName>,
    intermediates: bool,
    tree: bool,
}

fn send_command(ep: &Endpoint, s: &Stream<'_>) -> anyhow::Result<Command> {
    Ok(match ep {
        Endpoint::Local(store) => store.send_command(s.vol, s.snap, s.from, s.intermediates, s.tree)?,
        Endpoint::Remote { .. } => ep.agent(ep.send_args(s.vol, s.snap, s.from, s.intermediates, s.tree)),
    })
}

fn receive_command(ep: &Endpoint, v: Option<&VolumeName>, force: bool) -> anyhow::Result<Command> {
    Ok(match ep {
        Endpoint::Local(store) => store.receive_command(v, force)?,
        Endpoint::Remote { .. } => ep.agent(ep.receive_args(v, force)),
    })
}

/// Waits for both ends; the receiver's failure explains more than the
/// sender's broken pipe, so it is reported first.
fn finish(
    sender: crate::shared::command::Running,
    receiver: crate::shared::command::Running,
    relayed: std::io::Result<u64>,
) -> anyhow::Result<u64> {
    let r = receiver.wait();
    let s = sender.wait();
    match (r, s, relayed) {
        (Err(e), _, _) => Err(anyhow!(e).context("receiving")),
        (_, Err(e), _) => Err(anyhow!(e).context("sending")),
        (_, _, Err(e)) => Err(anyhow!(e).context("relaying the stream")),
        (Ok(_), Ok(_), Ok(n)) => Ok(n),
    }
}

fn transfer(
    ctx: &CopyContext<'_>,
    src: &Endpoint,
    dst: &Endpoint,
    s: &Stream<'_>,
    recv_vol: Option<&VolumeName>,
    force: bool,
    transport: Transport,
) -> anyhow::Result<u64> {
    let send = send_command(src, s)?;
    let recv = receive_command(dst, recv_vol, force)?;
    match transport {
        Transport::Ssh => {
            let mut receiver = recv.spawn()?;
            let mut sender = send.spawn()?;
            drop(sender.take_stdin());
            let out = sender.take_stdout().ok_or_else(|| anyhow!("no stdout from the sender"))?;
            let into = receiver.take_stdin().ok_or_else(|| anyhow!("no stdin to the receiver"))?;
            super::transport::widen_pipe(&out);
            super::transport::widen_pipe(&into);
            let relayed = relay(out.as_fd(), into.as_fd(), ctx.progress);
            // Both ends closed before waiting: a receiver that failed early
            // must not leave the sender blocked on a pipe nobody reads.
            drop(into);
            drop(out);
            finish(sender, receiver, relayed)
        }
        Transport::Tcp => tcp_transfer(ctx, src, dst, s, recv_vol, force, send, recv),
    }
}

fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    (host, port).to_socket_addrs()?.next().ok_or_else(|| anyhow!("{host} has no address"))
}

#[allow(clippy::too_many_arguments)]
fn tcp_transfer(
    ctx: &CopyContext<'_>,
    src: &Endpoint,
    dst: &Endpoint,
    s: &Stream<'_>,
    recv_vol: Option<&VolumeName>,
    force: bool,
    send: Command,
    recv: Command,
) -> anyhow::Result<u64> {
    let cs = ctx.settings;
    let token = new_token()?;
    let timeout = cs.timeout;
    std::thread::scope(|scope| -> anyhow::Result<u64> {
        // The receiving side listens first.
        let (addr, receiver): (SocketAddr, Box<dyn FnOnce() -> anyhow::Result<u64> + Send + '_>) = match dst {
            Endpoint::Local(_) => {
                let ip: IpAddr = match (&cs.data_address, src.is_local()) {
                    (Some(a), _) => a.parse()?,
                    (None, true) => IpAddr::from([127, 0, 0, 1]),
                    (None, false) => bail!("the TCP data path into this host needs archive.copy.data_address (this host's address the source can reach)"),
                };
                let listener = bind_in_range(ip, cs.ports).with_context(|| format!("listening on {ip}"))?;
                let addr = listener.local_addr()?;
                let token = token.clone();
                let progress = if src.is_local() { None } else { Some(ctx.progress) };
                let h = scope.spawn(move || -> anyhow::Result<u64> {
                    // The receive starts while the sender connects (as in
                    // a shell pipeline): zfs receive takes a while to get
                    // going, and only the connection with the token feeds
                    // it. No sender: it sees an empty stream and fails,
                    // leaving nothing.
                    let mut receiver = recv.spawn()?;
                    let into = receiver.take_stdin().ok_or_else(|| anyhow!("no stdin to the receiver"))?;
                    let sock = match accept_with_token(&listener, &token, timeout, timeout) {
                        Ok(s) => s,
                        Err(e) => {
                            drop(into);
                            let _ = receiver.wait();
                            return Err(e.into());
                        }
                    };
                    drop(listener);
                    super::transport::widen_pipe(&into);
                    let relayed = relay(sock.as_fd(), into.as_fd(), progress.unwrap_or(&crate::progress::NoProgress));
                    drop(sock);
                    drop(into);
                    let st = receiver.wait();
                    let n = relayed.context("receiving the stream")?;
                    st.context("receiving")?;
                    Ok(n)
                });
                (addr, Box::new(move || h.join().map_err(|_| anyhow!("receiver thread panicked"))?))
            }
            Endpoint::Remote { .. } => {
                let mut args = dst.receive_args(recv_vol, force);
                let listen = cs.data_address.clone().map(Ok).unwrap_or_else(|| -> anyhow::Result<String> {
                    Ok(resolve(dst.host().unwrap_or("localhost"), 0)?.ip().to_string())
                })?;
                args.extend([
                    "--listen".into(),
                    listen.clone(),
                    "--ports".into(),
                    format!("{}-{}", cs.ports.0, cs.ports.1),
                    "--timeout".into(),
                    timeout.as_secs().to_string(),
                ]);
                let mut agent = dst.agent(args).spawn()?;
                let mut stdin = agent.take_stdin().ok_or_else(|| anyhow!("no stdin to the agent"))?;
                stdin.write_all(format!("{token}\n").as_bytes())?;
                drop(stdin);
                let mut out = BufReader::new(agent.take_stdout().ok_or_else(|| anyhow!("no stdout from the agent"))?);
                let mut line = String::new();
                out.read_line(&mut line)?;
                let v: serde_json::Value = match serde_json::from_str(line.trim()) {
                    Ok(v) => v,
                    Err(_) => {
                        let e = agent.wait().err().map(|e| e.to_string()).unwrap_or_default();
                        bail!("the receiving agent did not start listening: {e}");
                    }
                };
                let port = v["port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| anyhow!("bad agent answer {line:?}"))?;
                let addr = resolve(&listen, port)?;
                (
                    addr,
                    Box::new(move || {
                        let mut rest = String::new();
                        std::io::Read::read_to_string(&mut out, &mut rest)?;
                        agent.wait().context("receiving on the target host")?;
                        let v: serde_json::Value = serde_json::from_str(rest.trim()).unwrap_or_default();
                        Ok(v["bytes"].as_u64().unwrap_or(0))
                    }),
                )
            }
        };
        let sent = match src {
            Endpoint::Local(_) => (|| -> anyhow::Result<u64> {
                let mut sender = send.spawn()?;
                drop(sender.take_stdin());
                let out = sender.take_stdout().ok_or_else(|| anyhow!("no stdout from the sender"))?;
                super::transport::widen_pipe(&out);
                let sock = connect_with_token(addr, &token, timeout, timeout)
                    .with_context(|| format!("connecting to {addr}"))?;
                let relayed = relay(out.as_fd(), sock.as_fd(), ctx.progress);
                let _ = sock.shutdown(std::net::Shutdown::Write);
                // The sender gets EPIPE instead of blocking if the relay stopped early.
                drop(out);
                let st = sender.wait();
                let n = relayed.context("sending the stream")?;
                st.context("sending")?;
                Ok(n)
            })(),
            Endpoint::Remote { .. } => (|| -> anyhow::Result<u64> {
                let mut args = src.send_args(s.vol, s.snap, s.from, s.intermediates, s.tree);
                args.extend(["--connect".into(), addr.to_string(), "--timeout".into(), timeout.as_secs().to_string()]);
                let out = src.agent(args).stdin_bytes(format!("{token}\n")).run()?;
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                Ok(v["bytes"].as_u64().unwrap_or(0))
            })(),
        };
        if sent.is_err() {
            // Wake the listener with an empty stream so the receive ends
            // now instead of at its accept timeout.
            if let Ok(c) = connect_with_token(addr, &token, timeout, timeout) {
                drop(c);
            }
        }
        let received = receiver();
        match (received, sent) {
            (Err(e), _) => Err(e),
            (_, Err(e)) => Err(e),
            (Ok(r), Ok(s)) => Ok(s.max(r)),
        }
    })
}
