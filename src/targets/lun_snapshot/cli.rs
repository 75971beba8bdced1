//! `lun-snapshot create|release|map VOLUME`: see the module docs and
//! docs/targets.md ("LUN snapshots for the archive").

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use super::lvm_volume::LvmOptions;
use super::remote::{self, Remote};
use super::{file_volume, lvm_volume, NodeOptions, Outcome, DEFAULT_EXPORT_PREFIX};
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::config::{Config, Section};
use crate::lvm::snap::{Lvm, SnapSize};
use crate::multicall::Tool;
use crate::shared::command::SshTarget;
use crate::targets::live::tgt::Tgtadm;

pub const TOOL: Tool = Tool {
    name: "lun-snapshot",
    aliases: &["lun_snapshot", "zfs_tools"],
    about: "snapshot a LUN, export it to the archive host only, hand back the archive's source JSON; release it",
    command: LunSnapshotArgs::command,
    run,
};

const AFTER_HELP: &str = "\
VOLUME is a file-backed LUN on btrfs/XFS (the snapshot is a reflink clone; the change map comes from the clones' layouts) or an LVM volume VG/LV.

Examples (archive [[archive.volumes]] source = { kind = \"command\", ... }):
  prepare = [\"santools\", \"lun-snapshot\", \"create\", \"--node\", \"node1\", \"--initiator\", \"iqn.2011-01.edu.example:archive1\", \"--portal\", \"10.0.1.1\", \"{volume}\"]
  finish  = [\"santools\", \"lun-snapshot\", \"release\", \"--node\", \"node1\", \"{volume}\"]
On the node itself:
  lun-snapshot create /srv/luns/vm1.img --initiator iqn.2011-01.edu.example:archive1 --json
  lun-snapshot release /srv/luns/vm1.img --status success

release reads how the backup ended from --status, else SANTOOLS_BACKUP_STATUS, else the archive's JSON on stdin.
Only success consumes the changes; anything else keeps them for the next snapshot.
Exit codes: 0 success, 2 error (nothing left exported by a failed create).";

/// LUN snapshots exported for the archive host
#[derive(Parser, Debug)]
#[command(name = "lun-snapshot", version, after_help = AFTER_HELP)]
pub struct LunSnapshotArgs {
    #[command(subcommand)]
    cmd: Cmd,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Snapshot VOLUME, export it to the archive's initiator, print the source JSON
    Create(CreateArgs),
    /// Remove the export and the snapshot; on success the changes are consumed
    Release(ReleaseArgs),
    /// Write the current snapshot's change map (ddmap format) to stdout
    Map(MapArgs),
}

#[derive(Args, Debug, Clone)]
struct NodeArgs {
    /// The archive host's initiator name: the only one the export admits
    #[arg(long, value_name = "IQN")]
    initiator: Option<String>,
    /// HOST[:PORT] of this node's tgtd as the archive host reaches it (prints an iscsi:// URL)
    #[arg(long, value_name = "HOST[:PORT]")]
    portal: Option<String>,
    /// Export IQNs are PREFIX.<volume>.<checksum>
    #[arg(long, value_name = "IQN", default_value = DEFAULT_EXPORT_PREFIX)]
    export_prefix: String,
    /// tgtd's control port (tgtadm -C) [default: [targets] tgt_control_port]
    #[arg(short = 'C', long, value_name = "PORT")]
    control_port: Option<u16>,
    /// Records of LVM volumes [default: [targets] state_dir, else /var/lib/santools/targets]
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Wait this long for another lun-snapshot of the volume (at most 604800, a week)
    #[arg(long, value_name = "SECONDS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=604_800))]
    wait: u64,
    /// LVM: snapshot name suffix (<lv>_<suffix>)
    #[arg(long, default_value = "archive")]
    lvm_suffix: String,
    /// LVM: snapshot size, N% or 10G [default: the seed's 20%/15%]
    #[arg(long)]
    snap_size: Option<SnapSize>,
    /// LVM on IET with ddmap: the volume's proc entry name (<target iqn>.<lun>)
    #[arg(long, value_name = "NAME")]
    ddmap_entry: Option<String>,
    /// LVM on IET with ddmap: the proc directory
    #[arg(long, value_name = "DIR", default_value = "/proc/net/iet/ddmap")]
    ddmap_proc_dir: PathBuf,
    /// Run on this target node through ssh (from the archive host)
    #[arg(long, value_name = "HOST")]
    node: Option<String>,
    #[arg(long, value_name = "USER")]
    ssh_user: Option<String>,
    #[arg(long, value_name = "PORT")]
    ssh_port: Option<u16>,
    #[arg(long, value_name = "FILE")]
    ssh_identity: Option<PathBuf>,
    /// An ssh -o KEY=VALUE option (repeat)
    #[arg(long = "ssh-option", value_name = "KEY=VALUE")]
    ssh_options: Vec<String>,
    /// The santools program on the node
    #[arg(long, value_name = "PATH", default_value = "santools")]
    remote_santools: String,
    /// --config for santools on the node
    #[arg(long, value_name = "FILE")]
    remote_config: Option<String>,
    /// --node: where fetched change maps are kept on this host
    #[arg(long, value_name = "DIR", default_value = "/var/lib/santools/lun-snapshot-maps")]
    map_dir: PathBuf,
}

#[derive(Args, Debug)]
struct CreateArgs {
    volume: String,
    #[command(flatten)]
    node: NodeArgs,
    /// Print JSON (the archive's source protocol; this is the default when stdout is not a terminal)
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ReleaseArgs {
    volume: String,
    #[command(flatten)]
    node: NodeArgs,
    /// How the backup ended [default: SANTOOLS_BACKUP_STATUS, else the JSON on stdin]
    #[arg(long, value_name = "success|failure")]
    status: Option<Outcome>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct MapArgs {
    volume: String,
    #[command(flatten)]
    node: NodeArgs,
}

fn node_options(a: &NodeArgs, config: Option<&Path>, need_initiator: bool) -> anyhow::Result<NodeOptions> {
    let cfg = Config::load_for(config, &[Section::Targets])?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let t = cfg.targets.unwrap_or_default();
    let initiator = match (&a.initiator, need_initiator) {
        (Some(i), _) => i.clone(),
        (None, true) => {
            bail!("--initiator IQN is required: the archive host's initiator name, the only one the export admits")
        }
        (None, false) => String::new(),
    };
    if !initiator.is_empty()
        && (!initiator.starts_with("iqn.") && !initiator.starts_with("eui.")
            || initiator.len() > 223
            || initiator.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        bail!("--initiator {initiator:?}: expected an iSCSI name (iqn.YYYY-MM.domain:name or eui.HEX)");
    }
    if let Some(p) = &a.portal {
        if p.is_empty() || p.contains('/') || p.contains('@') || p.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            bail!("--portal {p:?}: expected HOST or HOST:PORT");
        }
    }
    Ok(NodeOptions {
        state_dir: a
            .state_dir
            .clone()
            .or_else(|| t.state_dir.as_ref().map(|p| p.get_ref().clone()))
            .unwrap_or_else(|| "/var/lib/santools/targets".into()),
        tgtadm: Tgtadm {
            program: t.tgtadm.as_ref().map(|p| p.get_ref().clone()).unwrap_or_else(|| "tgtadm".into()),
            control_port: a.control_port.or_else(|| t.tgt_control_port.as_ref().map(|p| *p.get_ref())),
            ..Tgtadm::default()
        },
        initiator,
        portal: a.portal.clone(),
        export_prefix: a.export_prefix.clone(),
        lock_wait: Duration::from_secs(a.wait),
        lvm: LvmOptions {
            lvm: Lvm::default(),
            suffix: a.lvm_suffix.clone(),
            size: a.snap_size.unwrap_or(SnapSize::Default),
            ddmap_proc: a.ddmap_entry.as_ref().map(|e| (a.ddmap_proc_dir.clone(), e.clone())),
            settle: Duration::from_secs(5),
        },
    })
}

fn remote_of(a: &NodeArgs) -> Option<Remote> {
    let host = a.node.as_ref()?;
    let mut ssh = SshTarget::new(host.clone());
    ssh.user = a.ssh_user.clone();
    ssh.port = a.ssh_port;
    ssh.identity = a.ssh_identity.clone();
    ssh.options = a.ssh_options.clone();
    let mut f: Vec<String> = Vec::new();
    let mut opt = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            f.extend([k.to_string(), v]);
        }
    };
    opt("--initiator", a.initiator.clone());
    opt("--portal", a.portal.clone());
    opt("--export-prefix", Some(a.export_prefix.clone()));
    opt("--control-port", a.control_port.map(|p| p.to_string()));
    opt("--state-dir", a.state_dir.as_ref().map(|p| p.display().to_string()));
    opt("--wait", Some(a.wait.to_string()));
    opt("--lvm-suffix", Some(a.lvm_suffix.clone()));
    opt("--ddmap-entry", a.ddmap_entry.clone());
    opt("--ddmap-proc-dir", Some(a.ddmap_proc_dir.display().to_string()));
    opt("--config", a.remote_config.clone());
    if a.snap_size.is_some() {
        tracing::warn!("--snap-size is not passed to the node; set it there");
    }
    Some(Remote {
        ssh,
        santools: a.remote_santools.clone(),
        forwarded: f,
        map_dir: a.map_dir.clone(),
        timeout: Duration::from_secs(900),
    })
}

fn is_file_volume(volume: &str) -> bool {
    Path::new(volume).is_file()
}

/// How the backup ended: --status, SANTOOLS_BACKUP_STATUS, or the
/// archive's finish JSON on stdin (`{"status": "success", ...}`).
fn outcome_of(flag: Option<Outcome>) -> anyhow::Result<Outcome> {
    if let Some(o) = flag {
        return Ok(o);
    }
    if let Ok(s) = std::env::var("SANTOOLS_BACKUP_STATUS") {
        return s.parse().map_err(|e| anyhow::anyhow!("SANTOOLS_BACKUP_STATUS {e}"));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        bail!("say how the backup ended: --status success|failure");
    }
    let mut text = String::new();
    stdin.lock().take(64 * 1024).read_to_string(&mut text).context("reading the backup status from stdin")?;
    #[derive(serde::Deserialize)]
    struct Finish {
        status: String,
    }
    let f: Finish = serde_json::from_str(&text)
        .context("stdin: expected the archive's finish JSON ({\"status\": \"success\"|\"failure\", ...})")?;
    f.status.parse().map_err(|e| anyhow::anyhow!("stdin status {e}"))
}

fn run(m: &ArgMatches) -> anyhow::Result<u8> {
    let a = LunSnapshotArgs::from_arg_matches(m)?;
    logging::init("lun-snapshot", a.common.verbosity());
    let config = a.common.config.as_deref();
    match a.cmd {
        Cmd::Create(c) => {
            let p = match remote_of(&c.node) {
                Some(r) => remote::create(&r, &c.volume)?,
                None => {
                    let o = node_options(&c.node, config, true)?;
                    if is_file_volume(&c.volume) {
                        file_volume::create(&o, Path::new(&c.volume))?
                    } else {
                        lvm_volume::create(&o, &c.volume)?
                    }
                }
            };
            if c.json || !std::io::stdout().is_terminal() {
                print_json(&p)?;
            } else {
                println!("{} exported as {} ({} bytes)", p.snapshot.display(), p.iqn, p.size);
                match (&p.ddmap, p.changed_segments) {
                    (Some(m), Some(n)) => println!("change map {} ({n} segments)", m.display()),
                    (Some(m), None) => println!("change map {}", m.display()),
                    _ => println!("no change map: the archive reads everything"),
                }
                if let Some(u) = &p.url {
                    println!("{u}");
                }
            }
            Ok(exit::OK)
        }
        Cmd::Release(r) => {
            let outcome = outcome_of(r.status)?;
            let rel = match remote_of(&r.node) {
                Some(rem) => remote::release(&rem, &r.volume, outcome)?,
                None => {
                    let o = node_options(&r.node, config, false)?;
                    if is_file_volume(&r.volume) {
                        file_volume::release(&o, Path::new(&r.volume), outcome)?
                    } else {
                        lvm_volume::release(&o, &r.volume, outcome)?
                    }
                }
            };
            if r.json {
                print_json(&rel)?;
            } else {
                let what = if rel.changes_consumed { "changes consumed" } else { "changes kept for the next snapshot" };
                println!("{}: released ({:?}), {what}", rel.volume, rel.outcome);
            }
            Ok(exit::OK)
        }
        Cmd::Map(mp) => {
            let o = node_options(&mp.node, config, false)?;
            if !is_file_volume(&mp.volume) {
                bail!(
                    "map: {} is not a file volume (an LVM volume's map is the pending map in its state directory)",
                    mp.volume
                );
            }
            let path = file_volume::map_path(&o, Path::new(&mp.volume))?;
            let bytes = std::fs::read(&path)
                .with_context(|| format!("no change map for {} ({})", mp.volume, path.display()))?;
            std::io::stdout().lock().write_all(&bytes)?;
            Ok(exit::OK)
        }
    }
}
