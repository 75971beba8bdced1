//! The LVM tools' command lines: lvm-snap-create, lvm-snap-remove,
//! lvm-snap-copy, lvm-copy, lvm-devsize, lvm-cluster (seed flags; `_`
//! spellings as aliases). Every tool has `-n` to print its commands.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser};

use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::lvm::cluster;
use crate::lvm::copy::{self, CopyOptions, Endpoint, Method, Step, TargetState};
use crate::lvm::snap::{self, Lvm, SnapSize};
use crate::multicall::Tool;
use crate::shared::block_device::{device_kind, device_size, open_nonblocking};
use crate::shared::command::{Command, SshTarget};
use crate::shared::file_identity::{check_distinct, RolePath};

#[derive(Args, Debug, Clone)]
struct LvmArgs {
    /// Print the commands, run nothing
    #[arg(short = 'N', long = "dry-run")]
    dry_run: bool,
    /// Passed to every LVM command as --config (e.g. a device filter)
    #[arg(long, value_name = "STRING")]
    lvm_config: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

impl LvmArgs {
    fn lvm(&self, host: Option<&str>) -> Lvm {
        Lvm { host: host.map(SshTarget::new), config: self.lvm_config.clone() }
    }
}

pub const SNAP_CREATE: Tool = Tool {
    name: "lvm-snap-create",
    aliases: &["lvm_snap_create"],
    about: "create a snapshot <lv>_<suffix> of a logical volume, sized by the seed's rule",
    command: SnapCreateArgs::command,
    run: run_snap_create,
};

/// Create a snapshot of a logical volume (20% of the origin below 100 GiB, else 15%)
#[derive(Parser, Debug)]
#[command(name = "lvm-snap-create", version)]
struct SnapCreateArgs {
    /// The origin: /dev/VG/LV
    #[arg(short = 's', long = "source")]
    source: String,
    /// Snapshot name suffix
    #[arg(short = 't', long = "suffix", default_value = snap::DEFAULT_SUFFIX)]
    suffix: String,
    /// Snapshot size: N% of the origin or a size (512M, 10G)
    #[arg(short = 'n', long = "size")]
    size: Option<SnapSize>,
    /// LVM chunk size
    #[arg(short = 'c', long = "chunksize")]
    chunk: Option<String>,
    /// Obsolete (blocked iSCSI I/O on CentOS 4); accepted and ignored
    #[arg(short = 'i', long = "io-block", hide = true)]
    io_block: Option<String>,
    #[command(flatten)]
    lvm: LvmArgs,
}

fn run_snap_create(m: &ArgMatches) -> anyhow::Result<u8> {
    let a = SnapCreateArgs::from_arg_matches(m)?;
    logging::init("lvm-snap-create", a.lvm.common.verbosity());
    if a.io_block.is_some() {
        tracing::warn!("-i is obsolete and ignored");
    }
    let lvm = a.lvm.lvm(None);
    let (origin, all) = lvm.find(&a.source)?;
    match snap::create_plan(&origin, &all, &a.suffix, a.size.unwrap_or(SnapSize::Default), a.chunk.as_deref())? {
        None => {
            tracing::warn!("snapshot {} exists already: nothing done", snap::snapshot_name(&origin.name, &a.suffix));
        }
        Some(argv) => {
            println!("{}", lvm.shown(&argv));
            if !a.lvm.dry_run {
                lvm.run(&argv)?;
            }
        }
    }
    println!("/dev/{}/{}", origin.vg, snap::snapshot_name(&origin.name, &a.suffix));
    Ok(exit::OK)
}

pub const SNAP_REMOVE: Tool = Tool {
    name: "lvm-snap-remove",
    aliases: &["lvm_snap_remove"],
    about: "remove a snapshot logical volume (refuses anything that is not a snapshot)",
    command: SnapRemoveArgs::command,
    run: run_snap_remove,
};

/// Remove a snapshot logical volume; an origin or plain volume is refused
#[derive(Parser, Debug)]
#[command(name = "lvm-snap-remove", version)]
struct SnapRemoveArgs {
    /// The snapshot: /dev/VG/LV
    #[arg(short = 's', long = "source")]
    source: String,
    #[command(flatten)]
    lvm: LvmArgs,
}

fn run_snap_remove(m: &ArgMatches) -> anyhow::Result<u8> {
    let a = SnapRemoveArgs::from_arg_matches(m)?;
    logging::init("lvm-snap-remove", a.lvm.common.verbosity());
    let lvm = a.lvm.lvm(None);
    let (lv, _) = lvm.find(&a.source)?;
    let argv = snap::remove_plan(&lv)?;
    println!("{}", lvm.shown(&argv));
    if !a.lvm.dry_run {
        lvm.run(&argv)?;
    }
    Ok(exit::OK)
}

#[derive(Args, Debug, Clone)]
struct CopyArgs {
    /// Target: file:[HOST:]PATH, lvm:[HOST:]/dev/VG/LV or dev:[HOST:]/dev/NAME
    #[arg(short = 't', long = "target")]
    target: String,
    /// Copy with dd (default) or ddless
    #[arg(short = 'm', long = "module", value_enum)]
    method: Option<Method>,
    /// Extra options for the copy module, in one quoted string
    #[arg(short = 'o', long = "module-options", allow_hyphen_values = true)]
    module_options: Option<String>,
    /// Stage the copy: dd into <lv>_stage then swap; ddless under a target snapshot
    #[arg(short = 'g', long = "stage")]
    stage: bool,
    /// Prepare the target only, copy nothing
    #[arg(short = 'p', long = "prepare")]
    prepare: bool,
    /// gzip into a file target
    #[arg(short = 'z', long = "compress")]
    compress: bool,
}

pub const COPY: Tool = Tool {
    name: "lvm-copy",
    aliases: &["lvm_copy"],
    about: "copy a volume between file:, lvm: and dev: endpoints, local or host: over ssh",
    command: CopyToolArgs::command,
    run: run_copy,
};

/// Copy block data between files, logical volumes and devices
#[derive(Parser, Debug)]
#[command(name = "lvm-copy", version)]
struct CopyToolArgs {
    /// Source: file:PATH, lvm:/dev/VG/LV or dev:/dev/NAME (local)
    #[arg(short = 's', long = "source")]
    source: String,
    #[command(flatten)]
    copy: CopyArgs,
    #[command(flatten)]
    lvm: LvmArgs,
}

/// Size of a local file or device.
fn local_size(path: &str) -> anyhow::Result<u64> {
    let f = open_nonblocking(Path::new(path)).with_context(|| format!("opening {path}"))?;
    let kind = device_kind(&f.metadata()?).map_err(|e| anyhow::anyhow!("{path} {e}"))?;
    Ok(device_size(&f, kind)?)
}

fn source_size(src: &Endpoint, lvm: &LvmArgs) -> anyhow::Result<u64> {
    match src {
        Endpoint::Lvm { vg, lv, .. } => {
            let l = lvm.lvm(None);
            let all = l.lvs(Some(vg))?;
            let me = all
                .iter()
                .find(|x| &x.name == lv)
                .with_context(|| format!("logical volume {vg}/{lv} does not exist"))?;
            // A snapshot's lv_size is its copy-on-write space: the data is the origin's size.
            match &me.origin {
                Some(o) => Ok(all
                    .iter()
                    .find(|x| &x.name == o)
                    .with_context(|| format!("origin {o} of {vg}/{lv} not found"))?
                    .size),
                None => Ok(me.size),
            }
        }
        other => local_size(&other.path()),
    }
}

fn target_state(dst: &Endpoint, lvm: &LvmArgs) -> anyhow::Result<TargetState> {
    match dst {
        Endpoint::Lvm { host, vg, lv } => {
            let all = lvm.lvm(host.as_deref()).lvs(Some(vg))?;
            Ok(match all.iter().find(|x| &x.name == lv) {
                Some(x) => TargetState { exists: true, size: x.size },
                None => TargetState { exists: false, size: 0 },
            })
        }
        Endpoint::Dev { host: None, path } => Ok(TargetState { exists: true, size: local_size(path)? }),
        Endpoint::Dev { host: Some(h), path } => {
            let out = Command::new("blockdev")
                .args(["--getsize64", path])
                .ssh(SshTarget::new(h))
                .timeout(Duration::from_secs(60))
                .run()?;
            let size = out.stdout_str()?.trim().parse().context("blockdev --getsize64 printed no number")?;
            Ok(TargetState { exists: true, size })
        }
        Endpoint::File { .. } => Ok(TargetState { exists: false, size: 0 }),
    }
}

fn execute(steps: &[Step], lvm: &LvmArgs) -> anyhow::Result<()> {
    for st in steps {
        println!("{}", copy::render(st));
    }
    if lvm.dry_run {
        return Ok(());
    }
    for st in steps {
        match st {
            Step::Run { host, argv } if argv[0].starts_with("lv") => {
                lvm.lvm(host.as_deref()).run(argv)?;
            }
            Step::Run { host, argv } => {
                Command::new(&argv[0]).args(&argv[1..]).on(host.as_deref().map(SshTarget::new)).run()?;
            }
            Step::Pipe { from, host, to } => {
                let mut src = Command::new(&from[0]).args(&from[1..]).spawn()?;
                let mut dst = Command::new(&to[0]).args(&to[1..]).on(host.as_deref().map(SshTarget::new)).spawn()?;
                let mut r = src.take_stdout().context("source stdout")?;
                let mut w = dst.take_stdin().context("target stdin")?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = r.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    std::io::Write::write_all(&mut w, &buf[..n]).context("writing to the target")?;
                }
                drop(w);
                src.wait()?;
                dst.wait()?;
            }
        }
    }
    Ok(())
}

fn copy_options(c: &CopyArgs) -> CopyOptions {
    CopyOptions {
        method: c.method,
        module_options: c
            .module_options
            .as_deref()
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        stage: c.stage,
        prepare_only: c.prepare,
        compress: c.compress,
    }
}

/// Refuses a local target that is the source, however spelled (`./`, a
/// symlink, a hard link, another device node, a loop device over the file):
/// dd opens its output with O_TRUNC, so a copy onto its own source empties
/// it before reading it.
fn check_not_source(src: &Endpoint, dst: &Endpoint) -> anyhow::Result<()> {
    if dst.host().is_some() {
        return Ok(());
    }
    // Without device-mapper an LV has no device node to compare: by name.
    if let (Endpoint::Lvm { vg, lv, .. }, Endpoint::Lvm { vg: tvg, lv: tlv, .. }) = (src, dst) {
        if vg == tvg && lv == tlv {
            bail!("source and target are the same logical volume {vg}/{lv}; refusing to run (nothing was changed)");
        }
    }
    let (s, t) = (src.path(), dst.path());
    // A target that cannot be identified yet (its directory or VG node is
    // not there) cannot be the source.
    if let (Ok(s), Ok(t)) = (RolePath::new("source", Path::new(&s)), RolePath::new("target", Path::new(&t))) {
        check_distinct(&[s, t])?;
    }
    Ok(())
}

fn run_copy(m: &ArgMatches) -> anyhow::Result<u8> {
    let a = CopyToolArgs::from_arg_matches(m)?;
    logging::init("lvm-copy", a.lvm.common.verbosity());
    let src: Endpoint = a.source.parse()?;
    let dst: Endpoint = a.copy.target.parse()?;
    check_not_source(&src, &dst)?;
    let size = source_size(&src, &a.lvm)?;
    let steps = copy::plan(&src, size, &dst, target_state(&dst, &a.lvm)?, &copy_options(&a.copy), &copy::self_exe())?;
    execute(&steps, &a.lvm)?;
    Ok(exit::OK)
}

pub const SNAP_COPY: Tool = Tool {
    name: "lvm-snap-copy",
    aliases: &["lvm_snap_copy"],
    about: "snapshot a logical volume, copy the snapshot (lvm-copy), remove the snapshot",
    command: SnapCopyArgs::command,
    run: run_snap_copy,
};

/// Snapshot an LVM volume, copy the snapshot, remove it
#[derive(Parser, Debug)]
#[command(name = "lvm-snap-copy", version)]
struct SnapCopyArgs {
    /// Source: lvm:/dev/VG/LV (a snapshot needs LVM)
    #[arg(short = 's', long = "source")]
    source: String,
    #[command(flatten)]
    copy: CopyArgs,
    /// Snapshot name suffix
    #[arg(long = "suffix", default_value = snap::DEFAULT_SUFFIX)]
    suffix: String,
    #[command(flatten)]
    lvm: LvmArgs,
}

fn run_snap_copy(m: &ArgMatches) -> anyhow::Result<u8> {
    let a = SnapCopyArgs::from_arg_matches(m)?;
    logging::init("lvm-snap-copy", a.lvm.common.verbosity());
    let Endpoint::Lvm { host: None, vg, lv } = a.source.parse::<Endpoint>()? else {
        bail!("the source of lvm-snap-copy must be a local lvm: volume (only LVM can snapshot)");
    };
    let dst: Endpoint = a.copy.target.parse()?;
    // Copying a snapshot onto its own origin rewrites the origin under it.
    check_not_source(&Endpoint::Lvm { host: None, vg: vg.clone(), lv: lv.clone() }, &dst)?;
    let lvm = a.lvm.lvm(None);
    let (origin, all) = lvm.find(&format!("{vg}/{lv}"))?;
    let snap_name = snap::snapshot_name(&lv, &a.suffix);
    let create = snap::create_plan(&origin, &all, &a.suffix, SnapSize::Default, None)?;
    let snap_src = Endpoint::Lvm { host: None, vg: vg.clone(), lv: snap_name.clone() };
    let mut steps = Vec::new();
    if let Some(argv) = create {
        steps.push(Step::Run { host: None, argv });
    } else {
        bail!("snapshot {vg}/{snap_name} exists already: another copy may be running; remove it with lvm-snap-remove if not");
    }
    steps.extend(copy::plan(
        &snap_src,
        origin.size,
        &dst,
        target_state(&dst, &a.lvm)?,
        &copy_options(&a.copy),
        &copy::self_exe(),
    )?);
    steps.push(Step::Run { host: None, argv: vec!["lvremove".into(), "--force".into(), format!("{vg}/{snap_name}")] });
    execute(&steps, &a.lvm)?;
    Ok(exit::OK)
}

pub const DEVSIZE: Tool = Tool {
    name: "lvm-devsize",
    aliases: &["lvm_devsize"],
    about: "print the size in bytes of a block device or file",
    command: DevsizeArgs::command,
    run: run_devsize,
};

/// Print the size in bytes of a block device or file
#[derive(Parser, Debug)]
#[command(name = "lvm-devsize", version)]
struct DevsizeArgs {
    device: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

fn run_devsize(m: &ArgMatches) -> anyhow::Result<u8> {
    let a = DevsizeArgs::from_arg_matches(m)?;
    logging::init("lvm-devsize", a.common.verbosity());
    println!("{}", local_size(&a.device.to_string_lossy())?);
    Ok(exit::OK)
}

pub const CLUSTER: Tool = Tool {
    name: "lvm-cluster",
    aliases: &["lvm_cluster"],
    about: "run an LVM command on the cluster node where its volume group is active",
    command: ClusterArgs::command,
    run: run_cluster,
};

/// Run an LVM command on the node where its volume group is active (reports on every node)
#[derive(Parser, Debug)]
#[command(name = "lvm-cluster", version)]
struct ClusterArgs {
    /// A cluster node (repeat) [default: the target inventory's hosts]
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// The inventory whose hosts to use
    #[arg(long, value_name = "FILE")]
    inventory: Option<PathBuf>,
    /// vgs, vgdisplay, lvs, lvscan, lvcreate, lvextend, lvremove, ...
    command: String,
    /// Its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
    #[command(flatten)]
    lvm: LvmArgs,
}

fn run_cluster(m: &ArgMatches) -> anyhow::Result<u8> {
    let a = ClusterArgs::from_arg_matches(m)?;
    logging::init("lvm-cluster", a.lvm.common.verbosity());
    let hosts = if a.hosts.is_empty() {
        crate::targets::cli::load(a.lvm.common.config.as_deref(), a.inventory.as_deref())?.inventory.hosts
    } else {
        a.hosts.clone()
    };
    let argv: Vec<String> = std::iter::once(a.command.clone()).chain(a.args.iter().cloned()).collect();
    if cluster::EVERYWHERE.contains(&a.command.as_str()) {
        for h in &hosts {
            let lvm = a.lvm.lvm(Some(h));
            println!("iet_host: {h}");
            if a.lvm.dry_run {
                println!("{}", lvm.shown(&argv));
            } else {
                print!("{}", lvm.run(&argv)?);
            }
        }
        return Ok(exit::OK);
    }
    let vg = cluster::vg_of(&a.command, &a.args)?;
    let mut reports = Vec::new();
    for h in &hosts {
        let lvs = a.lvm.lvm(Some(h)).lvs(Some(&vg)).with_context(|| format!("asking {h} about {vg}"))?;
        reports.push((h.clone(), lvs));
    }
    let host = cluster::choose(&vg, &reports)?.to_string();
    let lvm = a.lvm.lvm(Some(&host));
    println!("iet_host: {host}");
    println!("{}", lvm.shown(&argv));
    if !a.lvm.dry_run {
        print!("{}", lvm.run(&argv)?);
    }
    Ok(exit::OK)
}
