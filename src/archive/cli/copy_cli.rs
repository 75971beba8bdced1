//! `zfs-copy` (seed: zfs_copy.plx): copy archive snapshots to another pool
//! or archive host.

use std::io::Write;

use anyhow::bail;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::{load_settings, open_log, Bar};
use crate::archive::names::SnapshotName;
use crate::archive::replicate::endpoint::{Endpoint, Side};
use crate::archive::replicate::plan::Mode;
use crate::archive::replicate::run::{copy, CopyContext, CopyRequest};
use crate::archive::replicate::Transport;
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::multicall::Tool;

pub const TOOL: Tool = Tool {
    name: "zfs-copy",
    aliases: &["zfs_copy", "zfs_copy.plx"],
    about: "copy archive snapshots to another pool or archive host",
    command: CopyArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Examples:
  zfs-copy -s tank/iscsi_lv_mail_bk@2011-03-28_23:00:01 -t zfs-archive2:tank/iscsi_lv_mail_bk
           the first copy: the target volume is created with that snapshot
  zfs-copy -I 2011-03-28_23:00:01 -s tank/iscsi_lv_mail_bk@2011-03-29_23:00:01 \\
           -t zfs-archive2:tank/iscsi_lv_mail_bk --transport tcp
           then incrementally, every snapshot in between too, over a direct TCP connection
  zfs-copy -s tank/iscsi_lv_mail_bk@2011-03-29_23:00:01 -t backup:tank2 -p
           the volume with all its snapshots and properties (zfs send -R, receive -d)

HOST is reached with ssh (BatchMode, host keys checked against known_hosts; user, port,
identity and options in [archive.copy]) and runs `santools zfs-copy-agent` there. The
snapshot sent is held with the tag santools-copy-<target> on both sides, so rotation
keeps the next incremental base; the tag moves to the newest snapshot copied. A target
that has snapshots after the base is refused unless -F rolls them back. zfs-fuse cannot
resume an interrupted receive: a copy that is cut off leaves no snapshot behind and is
simply run again. btrfs pools copy the same way (btrfs send -p / btrfs receive; -p is
ZFS only); a stream is never received by the other backend. Exit codes: 0 success,
2 error.";

/// Copy archive snapshots to another pool or archive host
#[derive(Parser, Debug)]
#[command(name = "zfs-copy", version, after_help = AFTER_HELP)]
pub struct CopyArgs {
    /// Incremental from SNAP (zfs send -i)
    #[arg(short = 'i', value_name = "SNAP", conflicts_with = "intermediates")]
    incremental: Option<String>,
    /// Incremental from SNAP with every snapshot in between (zfs send -I)
    #[arg(short = 'I', value_name = "SNAP")]
    intermediates: Option<String>,
    /// Source: [HOST:]POOL/VOLUME@SNAPSHOT (without @SNAPSHOT: its newest snapshot)
    #[arg(short = 's', long = "source", value_name = "[HOST:]POOL/VOLUME[@SNAP]")]
    source: String,
    /// Target: [HOST:]POOL/VOLUME, or [HOST:]POOL with -p
    #[arg(short = 't', long = "target", value_name = "[HOST:]POOL[/VOLUME]")]
    target: String,
    /// Roll the target back to the incremental base (zfs receive -F)
    #[arg(short = 'F', long = "force")]
    force: bool,
    /// The whole volume with all snapshots and properties (zfs send -R, receive -d)
    #[arg(short = 'p', long = "properties")]
    properties: bool,
    /// Data path: ssh, or tcp (direct connection, one-time token) [default: archive.copy.transport]
    #[arg(long = "transport", value_name = "ssh|tcp")]
    transport: Option<Transport>,
    /// Show the plan, copy nothing
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// Print the report as JSON on stdout
    #[arg(long = "json")]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let args = CopyArgs::from_arg_matches(matches)?;
    logging::init("zfs-copy", args.common.verbosity());
    let source = Side::object(&args.source)?;
    let target = if args.properties { Side::pool(&args.target)? } else { Side::object(&args.target)? };
    if target.snapshot.is_some() {
        bail!("-t names a volume, not a snapshot (the snapshot keeps the source's name)");
    }
    if args.properties && (args.incremental.is_some() || args.intermediates.is_some()) {
        // zfs send -R with -I would work, but the seed keeps -p for first copies.
        bail!("-p copies the whole volume with all its snapshots; it cannot be combined with -i/-I (seed: copy once with -p, then incrementally without it)");
    }
    let mode = match (&args.incremental, &args.intermediates) {
        (Some(b), None) => {
            Mode::Incremental { base: SnapshotName::new(b.trim_start_matches('@'))?.to_string(), intermediates: false }
        }
        (None, Some(b)) => {
            Mode::Incremental { base: SnapshotName::new(b.trim_start_matches('@'))?.to_string(), intermediates: true }
        }
        _ => Mode::Full,
    };
    let settings = load_settings(args.common.config.as_deref())?;
    let cs = &settings.copy;
    let src_ep = Endpoint::new(&source, settings.store(&source.pool).filter(|_| source.host.is_none()), cs)?;
    let dst_ep = Endpoint::new(&target, settings.store(&target.pool).filter(|_| target.host.is_none()), cs)?;
    let log = if args.dry_run { crate::archive::job_log::JobLog::disabled() } else { open_log(&settings, "zfs-copy") };
    let bar = Bar::new(args.common.quiet, "zfs-copy");
    let ctx = CopyContext { settings: cs, lock_dir: Some(settings.lock_dir.clone()), log: &log, progress: bar.get() };
    let req = CopyRequest {
        source,
        target,
        mode,
        force: args.force,
        tree: args.properties,
        transport: args.transport.unwrap_or(cs.transport),
        dry_run: args.dry_run,
    };
    bar.get().start(0);
    let rep = copy(&ctx, &src_ep, &dst_ep, &req)?;
    drop(bar);
    if args.json {
        print_json(&rep)?;
    } else {
        let mut out = std::io::stdout().lock();
        let what = match &rep.step {
            Some(s) => serde_json::to_value(s)?.to_string(),
            None => "-".into(),
        };
        if rep.dry_run {
            writeln!(out, "would copy {} -> {}: {what}", rep.source, rep.target)?;
        } else {
            writeln!(
                out,
                "copied {} -> {}: {what}, {} bytes in {:.1} s ({:.1} MB/s), held as {}",
                rep.source, rep.target, rep.bytes, rep.seconds, rep.mb_per_s, rep.hold_tag
            )?;
            for r in &rep.released {
                writeln!(out, "released {} from {r}", rep.hold_tag)?;
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
        CopyArgs::command().debug_assert();
    }
}
