//! `targets`: import the seed's targets.conf, check the inventory, generate
//! IET/tgt/LIO/SCST configuration, plan and apply it to a live tgtd.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::config::targets::TargetsConfig;
use crate::config::{Config, Section, DEFAULT_CONFIG_PATH};
use crate::multicall::Tool;
use crate::shared::command::Command;
use crate::shared::text_file::{read_text, MAX_CONFIG_BYTES, MAX_TEXT_BYTES};
use crate::targets::apply::{self, ApplyOptions, Outcome};
use crate::targets::gen;
use crate::targets::import;
use crate::targets::inventory;
use crate::targets::live::iet;
use crate::targets::live::tgt::Tgtadm;
use crate::targets::model::{Inventory, VolumeGroup};
use crate::targets::plan::Plan;
use crate::targets::plan_iet;
use crate::targets::tgtadm::masked;

pub const TOOL: Tool = Tool {
    name: "targets",
    aliases: &["targets_update", "targets-update"],
    about: "target inventory: import targets.conf, generate IET/tgt/LIO/SCST config, apply to tgtd",
    command: TargetsArgs::command,
    run,
};

/// Exit code of `apply` when disruptive changes were refused.
pub const REFUSED: u8 = 3;

const AFTER_HELP: &str = "\
The inventory is [targets] in santools.toml, the file its `inventory` key names, or --inventory FILE.
Exit codes: 0 success, 2 error, 3 (apply) disruptive changes on targets with sessions refused: nothing changed.";

/// Target inventory: import, check, generate, plan and apply
#[derive(Parser, Debug)]
#[command(name = "targets", version, after_help = AFTER_HELP)]
pub struct TargetsArgs {
    #[command(subcommand)]
    cmd: Cmd,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Convert the seed's targets.conf (bash, never executed) to an inventory
    Import(ImportArgs),
    /// Validate the inventory and list what each node serves
    Check(NodeArgs),
    /// Write IET, tgt, LIO or SCST configuration for one node
    Gen(GenArgs),
    /// Print what apply would do (tgt), or the ietadm commands (IET)
    Plan(PlanArgs),
    /// Bring a live tgtd to the inventory without dropping sessions
    Apply(ApplyArgs),
}

#[derive(Args, Debug)]
struct ImportArgs {
    /// The seed's targets.conf
    file: PathBuf,
    /// The seed's ietd_config.sh (IET_TARGET_PREFIX, IET_TARGET_HOSTS, IET_VGS, IPTABLES_PORT)
    #[arg(long, value_name = "FILE")]
    ietd_config: Option<PathBuf>,
    /// Target prefix (overrides IET_TARGET_PREFIX)
    #[arg(long)]
    prefix: Option<String>,
    /// Cluster host (repeat; overrides IET_TARGET_HOSTS)
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Volume group (repeat; overrides IET_VGS)
    #[arg(long = "vg", value_name = "VG")]
    vgs: Vec<String>,
    /// An interface file of a host, for portal-group addresses (repeat)
    #[arg(long = "ifcfg", value_name = "HOST=FILE")]
    ifcfg: Vec<String>,
    /// Write the inventory here (atomically) instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct NodeArgs {
    /// The inventory file [default: from santools.toml]
    #[arg(short = 'i', long, value_name = "FILE")]
    inventory: Option<PathBuf>,
    /// This node's name in the inventory's hosts [default: [targets] node, else the host name]
    #[arg(long)]
    node: Option<String>,
    /// A volume group active on this node (repeat) [default: detected: LVM groups with an active volume, file groups whose directory exists]
    #[arg(long = "active-vg", value_name = "VG")]
    active_vgs: Vec<String>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Flavour {
    Iet,
    Tgt,
    Lio,
    Scst,
}

#[derive(Args, Debug)]
struct GenArgs {
    #[arg(value_enum)]
    flavour: Flavour,
    #[command(flatten)]
    node: NodeArgs,
    /// Directory to write into (atomically, mode 0600); default: print to stdout
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// (tgt) print the equivalent tgtadm argument vectors instead
    #[arg(long)]
    tgtadm: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Backend {
    Tgt,
    Iet,
}

#[derive(Args, Debug, Clone)]
struct TgtArgs {
    /// tgtd's control port (tgtadm -C) [default: [targets] tgt_control_port, else tgtadm's]
    #[arg(short = 'C', long)]
    control_port: Option<u16>,
    /// The tgtadm program [default: [targets] tgtadm, else from PATH]
    #[arg(long, value_name = "PATH")]
    tgtadm_path: Option<PathBuf>,
    /// Where the last-applied record and lock live [default: [targets] state_dir, else /var/lib/santools/targets]
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct PlanArgs {
    #[command(flatten)]
    node: NodeArgs,
    #[arg(long, value_enum, default_value = "tgt")]
    backend: Backend,
    /// (iet) the /proc/net/iet directory to read
    #[arg(long, value_name = "DIR", default_value = "/proc/net/iet")]
    proc: PathBuf,
    #[command(flatten)]
    tgt: TgtArgs,
}

#[derive(Args, Debug)]
struct ApplyArgs {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    tgt: TgtArgs,
    /// Carry out disruptive changes on targets with sessions (they are cut; initiators reconnect)
    #[arg(short = 'f', long)]
    force: bool,
    /// Print the plan, change nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
}

/// The inventory and the settings that came with it.
pub struct Loaded {
    pub inventory: Inventory,
    pub settings: TargetsConfig,
    /// The files read: santools.toml (when it exists) and the inventory file.
    pub read: Vec<PathBuf>,
}

/// Loads the inventory: `--inventory`, else santools.toml's `[targets]`
/// (`inventory = FILE`, or inline).
pub fn load(config: Option<&Path>, inventory_file: Option<&Path>) -> anyhow::Result<Loaded> {
    let (cfg_path, required) = match config {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    let text = match read_text(&cfg_path, MAX_CONFIG_BYTES) {
        Ok(t) => Some(t),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading configuration {}", cfg_path.display())),
    };
    // Errors in other tools' sections are warnings here (a typo in
    // [archive] must not stop a target node's apply).
    let section = match &text {
        Some(t) => {
            let c = Config::parse_for(t, &cfg_path, &[Section::Targets])?;
            for w in &c.warnings {
                tracing::warn!("{w}");
            }
            c.targets
        }
        None => None,
    };
    let settings = section.unwrap_or_default();
    let mut read: Vec<PathBuf> = text.as_ref().map(|_| cfg_path.clone()).into_iter().collect();
    let inventory = if let Some(f) = inventory_file {
        read.push(f.to_path_buf());
        inventory::load_file(f)?
    } else if let Some(f) = &settings.inventory {
        read.push(f.get_ref().clone());
        inventory::load_file(f.get_ref())?
    } else if settings.has_inventory_keys() {
        inventory::build(&settings, text.as_deref().unwrap_or(""), &cfg_path)?
    } else {
        bail!("no target inventory: pass --inventory FILE, or set [targets] inventory = FILE (or the inventory itself) in {}", cfg_path.display());
    };
    Ok(Loaded { inventory, settings, read })
}

/// Refuses output files that are one of the run's inputs however spelled
/// (`./`, a symlink, a hard link): `gen tgt --out /etc/tgt` next to an
/// inventory named targets.conf, or `import x.conf -o x.conf`, replaced the
/// file the run had just read, which was then lost.
fn check_outputs_are_not_inputs(inputs: &[PathBuf], outputs: &[PathBuf]) -> anyhow::Result<()> {
    use crate::shared::file_identity::{check_distinct, RolePath};
    let mut paths = Vec::new();
    for p in inputs {
        // An input that cannot be identified now (a pipe's /dev/fd/N that is gone) cannot be overwritten.
        if let Ok(r) = RolePath::new("input", p) {
            paths.push(r);
        }
    }
    for p in outputs {
        paths.push(RolePath::new("output", p).with_context(|| format!("output {}", p.display()))?);
    }
    check_distinct(&paths)?;
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

fn node_of(a: &NodeArgs, l: &Loaded) -> anyhow::Result<String> {
    let node =
        a.node.clone().or_else(|| l.settings.node.as_ref().map(|n| n.get_ref().clone())).unwrap_or_else(hostname);
    if !l.inventory.hosts.contains(&node) {
        bail!("node {node:?} is not in the inventory's hosts {:?} (use --node)", l.inventory.hosts);
    }
    Ok(node)
}

/// Volume groups active here: LVM groups with at least one active volume
/// (`lvs --reportformat json`), file groups whose directory exists.
fn detect_active(inv: &Inventory) -> anyhow::Result<BTreeSet<String>> {
    let mut active = BTreeSet::new();
    let lvm: Vec<&str> = inv
        .volume_groups
        .iter()
        .filter_map(|v| match v {
            VolumeGroup::Lvm { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    if !lvm.is_empty() {
        let out = Command::new("lvs")
            .args(["--reportformat", "json", "--units", "b", "--nosuffix", "-o", crate::lvm::report::LV_FIELDS])
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .timeout(Duration::from_secs(60))
            .run()
            .context("detecting active volume groups (or pass --active-vg)")?;
        for lv in crate::lvm::report::parse_lvs(out.stdout_str()?)? {
            if lv.is_active() && lvm.contains(&lv.vg.as_str()) {
                active.insert(lv.vg);
            }
        }
    }
    for v in &inv.volume_groups {
        if let VolumeGroup::Directory { name, path } = v {
            if path.is_dir() {
                active.insert(name.clone());
            }
        }
    }
    Ok(active)
}

fn active_of(a: &NodeArgs, inv: &Inventory) -> anyhow::Result<BTreeSet<String>> {
    if a.active_vgs.is_empty() {
        return detect_active(inv);
    }
    for v in &a.active_vgs {
        if inv.volume_group(v).is_none() {
            bail!("--active-vg {v:?} is not a volume group of the inventory");
        }
    }
    Ok(a.active_vgs.iter().cloned().collect())
}

fn tgtadm_of(a: &TgtArgs, l: &Loaded) -> Tgtadm {
    Tgtadm {
        program: a
            .tgtadm_path
            .clone()
            .or_else(|| l.settings.tgtadm.as_ref().map(|p| p.get_ref().clone()))
            .unwrap_or_else(|| "tgtadm".into()),
        control_port: a.control_port.or_else(|| l.settings.tgt_control_port.as_ref().map(|p| *p.get_ref())),
        ..Tgtadm::default()
    }
}

fn state_dir_of(a: &TgtArgs, l: &Loaded) -> PathBuf {
    a.state_dir
        .clone()
        .or_else(|| l.settings.state_dir.as_ref().map(|p| p.get_ref().clone()))
        .unwrap_or_else(|| "/var/lib/santools/targets".into())
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let a = TargetsArgs::from_arg_matches(matches)?;
    logging::init("targets", a.common.verbosity());
    let cfg = a.common.config.as_deref();
    match a.cmd {
        Cmd::Import(i) => run_import(&i),
        Cmd::Check(n) => {
            let l = load(cfg, n.inventory.as_deref())?;
            run_check(&n, &l)
        }
        Cmd::Gen(g) => {
            let l = load(cfg, g.node.inventory.as_deref())?;
            run_gen(&g, &l)
        }
        Cmd::Plan(p) => {
            let l = load(cfg, p.node.inventory.as_deref())?;
            run_plan(&p, &l)
        }
        Cmd::Apply(ap) => {
            let l = load(cfg, ap.node.inventory.as_deref())?;
            run_apply(&ap, &l)
        }
    }
}

fn run_import(a: &ImportArgs) -> anyhow::Result<u8> {
    let text = read_text(&a.file, MAX_TEXT_BYTES).with_context(|| format!("reading {}", a.file.display()))?;
    let mut cluster = import::Cluster::default();
    if let Some(f) = &a.ietd_config {
        let t = read_text(f, MAX_TEXT_BYTES).with_context(|| format!("reading {}", f.display()))?;
        let v = import::read_assignments(&f.display().to_string(), &t)?;
        cluster.prefix = v.get("IET_TARGET_PREFIX").cloned().unwrap_or_default();
        cluster.hosts =
            v.get("IET_TARGET_HOSTS").map(|s| s.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
        cluster.volume_groups =
            v.get("IET_VGS").map(|s| s.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
        cluster.port = v.get("IPTABLES_PORT").map(|p| p.parse()).transpose().context("IPTABLES_PORT is not a port")?;
    }
    if let Some(p) = &a.prefix {
        cluster.prefix = p.clone();
    }
    if !a.hosts.is_empty() {
        cluster.hosts = a.hosts.clone();
    }
    if !a.vgs.is_empty() {
        cluster.volume_groups = a.vgs.clone();
    }
    if cluster.prefix.is_empty() || cluster.hosts.is_empty() || cluster.volume_groups.is_empty() {
        bail!("import needs the cluster settings: --ietd-config ietd_config.sh, or --prefix, --host and --vg");
    }
    for spec in &a.ifcfg {
        let (host, file) = spec.split_once('=').with_context(|| format!("--ifcfg {spec:?}: expected HOST=FILE"))?;
        let t = read_text(file.as_ref(), MAX_TEXT_BYTES).with_context(|| format!("reading {file}"))?;
        if let Some(i) = import::read_ifcfg(file, &t)? {
            if let Some(pg) = i.portal_group {
                cluster.portal_groups.entry(pg).or_default().entry(host.to_string()).or_default().push(i.address);
            }
        }
    }
    let mut vars = BTreeMap::new();
    let imp = import::import_targets_conf(&a.file.display().to_string(), &text, &mut vars)?;
    for (name, line) in &imp.skipped {
        tracing::warn!("{}:{line}: callback {name} skipped: callbacks are not run", a.file.display());
    }
    let toml_text = import::to_toml(&cluster, &imp);
    // The result must load as an inventory (portal groups left empty are
    // valid: the operator fills them in). An invalid one was written with a
    // warning naming a line of the generated TOML; it is an error naming the
    // targets.conf line it came from, and nothing is written.
    if let Err(e) = inventory::parse_file(&toml_text, Path::new("(imported)")) {
        return Err(import_error(&a.file, &imp, e));
    }
    match &a.out {
        Some(p) => {
            // The inventory holds CHAP secrets: written like generated files (0600, atomically).
            let name = p
                .file_name()
                .with_context(|| format!("{} has no file name", p.display()))?
                .to_string_lossy()
                .into_owned();
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let mut inputs = vec![a.file.clone()];
            inputs.extend(a.ietd_config.iter().cloned());
            inputs.extend(a.ifcfg.iter().filter_map(|s| s.split_once('=').map(|(_, f)| PathBuf::from(f))));
            check_outputs_are_not_inputs(&inputs, &[dir.join(&name)])?;
            gen::write_files(dir, &vec![(name, toml_text.clone().into_bytes())])
                .with_context(|| format!("writing {}", p.display()))?;
        }
        None => std::io::stdout().lock().write_all(toml_text.as_bytes())?,
    }
    Ok(exit::OK)
}

/// An imported inventory's validation error, located in targets.conf: a
/// target's key is reported at that target's `target` line.
fn import_error(file: &Path, imp: &import::Imported, e: inventory::LoadError) -> anyhow::Error {
    if let inventory::LoadError::Invalid(ie) = &e {
        let index = ie
            .key
            .strip_prefix("targets.target[")
            .and_then(|k| k.split(']').next())
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(t) = index.and_then(|i| imp.targets.get(i)) {
            return anyhow::anyhow!(
                "{}:{}: target {}: {} (as inventory key `{}`); nothing was written",
                file.display(),
                t.line,
                t.device,
                ie.problem,
                ie.key
            );
        }
        return anyhow::anyhow!(
            "{}: the imported inventory is invalid: key `{}`: {}; nothing was written",
            file.display(),
            ie.key,
            ie.problem
        );
    }
    anyhow::anyhow!("{}: the imported inventory is invalid: {e}; nothing was written", file.display())
}

#[derive(serde::Serialize)]
struct CheckReport<'a> {
    node: &'a str,
    active_volume_groups: &'a BTreeSet<String>,
    targets: Vec<CheckTarget<'a>>,
}

#[derive(serde::Serialize)]
struct CheckTarget<'a> {
    iqn: &'a str,
    serves: bool,
    state: crate::targets::model::TargetState,
    volume_group: &'a str,
    addresses: &'a [IpAddr],
}

fn run_check(n: &NodeArgs, l: &Loaded) -> anyhow::Result<u8> {
    let node = node_of(n, l)?;
    let active = active_of(n, &l.inventory)?;
    let view = l.inventory.node_view(&node, active.clone());
    let report = CheckReport {
        node: &node,
        active_volume_groups: &active,
        targets: l
            .inventory
            .targets
            .iter()
            .map(|t| CheckTarget {
                iqn: &t.iqn,
                serves: view.targets.iter().any(|v| v.iqn == t.iqn),
                state: t.state,
                volume_group: &t.vg,
                addresses: view.addresses(&t.portal_group),
            })
            .collect(),
    };
    if n.json {
        print_json(&report)?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "inventory is valid: {} targets, {} hosts", l.inventory.targets.len(), l.inventory.hosts.len())?;
        for t in &report.targets {
            let state = if t.state == crate::targets::model::TargetState::Up { "up" } else { "down" };
            writeln!(out, "{} {} ({state}, {})", if t.serves { "serve" } else { "skip " }, t.iqn, t.volume_group)?;
        }
    }
    Ok(exit::OK)
}

fn run_gen(g: &GenArgs, l: &Loaded) -> anyhow::Result<u8> {
    let node = node_of(&g.node, l)?;
    let active = active_of(&g.node, &l.inventory)?;
    let view = l.inventory.node_view(&node, active);
    if g.tgtadm {
        if !matches!(g.flavour, Flavour::Tgt) {
            bail!("--tgtadm goes with `gen tgt`");
        }
        let t = Tgtadm::default();
        let mut out = std::io::stdout().lock();
        for argv in gen::tgt::tgtadm_commands(&view) {
            let quoted: Vec<String> =
                t.full_argv(&argv).iter().map(|s| crate::shared::command::shell_quote(s)).collect();
            writeln!(out, "{}", quoted.join(" "))?;
        }
        return Ok(exit::OK);
    }
    let files = match g.flavour {
        Flavour::Iet => gen::iet::generate(&view).map_err(anyhow::Error::msg)?,
        Flavour::Tgt => gen::tgt::generate(&view),
        Flavour::Lio => gen::lio::generate(&view),
        Flavour::Scst => gen::scst::generate(&view),
    };
    match &g.out {
        Some(dir) => {
            let outputs: Vec<PathBuf> = files.iter().map(|(name, _)| dir.join(name)).collect();
            check_outputs_are_not_inputs(&l.read, &outputs)?;
            let written = gen::write_files(dir, &files).with_context(|| format!("writing into {}", dir.display()))?;
            for (name, _) in &files {
                let state = if written.contains(name) { "written" } else { "unchanged" };
                tracing::info!("{} {state}", dir.join(name).display());
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            for (name, bytes) in &files {
                if files.len() > 1 {
                    writeln!(out, "==> {name} <==")?;
                }
                out.write_all(bytes)?;
            }
        }
    }
    Ok(exit::OK)
}

/// The plan as text: one line per target, its commands indented.
pub fn render_plan(p: &Plan, t: &Tgtadm) -> String {
    let mut s = String::new();
    for c in &p.changes {
        let what = if c.what.is_empty() { String::new() } else { format!(": {}", c.what.join("; ")) };
        let mut flags = String::new();
        if c.disruptive {
            flags.push_str(" [disruptive");
            if c.sessions.is_empty() {
                flags.push_str(", no sessions");
            } else {
                let list: Vec<String> =
                    c.sessions.iter().map(|x| format!("{} from {}", x.initiator, x.address)).collect();
                flags.push_str(&format!("; sessions: {}", list.join(", ")));
            }
            flags.push(']');
        }
        s.push_str(&format!("{} {} (tid {}){what}{flags}\n", c.kind.symbol(), c.iqn, c.tid));
        for argv in &c.commands {
            let quoted: Vec<String> =
                masked(&t.full_argv(argv)).iter().map(|a| crate::shared::command::shell_quote(a)).collect();
            s.push_str(&format!("    {}\n", quoted.join(" ")));
        }
    }
    for u in &p.unmanaged {
        s.push_str(&format!("  {u}: not owned by this inventory, left alone\n"));
    }
    for n in &p.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    s
}

fn run_plan(a: &PlanArgs, l: &Loaded) -> anyhow::Result<u8> {
    let node = node_of(&a.node, l)?;
    let active = active_of(&a.node, &l.inventory)?;
    let view = l.inventory.node_view(&node, active);
    match a.backend {
        Backend::Iet => {
            let files = iet::read_dir(&a.proc).with_context(|| format!("reading {}", a.proc.display()))?;
            let live = iet::parse(&files)?;
            let sizes = apply::device_sizes(&view);
            let changes = plan_iet::plan(&view, &live, &sizes);
            if a.node.json {
                let mut changes = changes;
                for c in &mut changes {
                    for argv in &mut c.commands {
                        *argv = plan_iet::masked(argv);
                    }
                }
                print_json(&changes)?;
            } else {
                let mut out = std::io::stdout().lock();
                for c in &changes {
                    let flags = if c.disruptive && !c.sessions.is_empty() {
                        let list: Vec<String> =
                            c.sessions.iter().map(|x| format!("{} from {}", x.initiator, x.address)).collect();
                        format!(" [disruptive; sessions: {}]", list.join(", "))
                    } else {
                        String::new()
                    };
                    writeln!(out, "{} {} (tid {}): {}{flags}", c.kind.symbol(), c.iqn, c.tid, c.what.join("; "))?;
                    for argv in &c.commands {
                        let q: Vec<String> =
                            plan_iet::masked(argv).iter().map(|s| crate::shared::command::shell_quote(s)).collect();
                        writeln!(out, "    {}", q.join(" "))?;
                    }
                }
                writeln!(out, "note: ACLs are initiators.allow and targets.allow: write them with `targets gen iet`")?;
            }
            Ok(exit::OK)
        }
        Backend::Tgt => {
            let t = tgtadm_of(&a.tgt, l);
            let last = apply::read_last_applied(&state_dir_of(&a.tgt, l))?;
            let live = t.read_state().context("reading tgtd's live state")?;
            let sizes = apply::device_sizes(&view);
            let p = crate::targets::plan::plan(&crate::targets::plan::Inputs {
                view: &view,
                live: &live,
                last: &last,
                sizes: &sizes,
            })?;
            if a.node.json {
                print_json(&mask_plan(&p))?;
            } else {
                std::io::stdout().lock().write_all(render_plan(&p, &t).as_bytes())?;
            }
            Ok(exit::OK)
        }
    }
}

fn mask_plan(p: &Plan) -> Plan {
    let mut p = p.clone();
    for c in &mut p.changes {
        for argv in &mut c.commands {
            *argv = masked(argv);
        }
    }
    p
}

fn run_apply(a: &ApplyArgs, l: &Loaded) -> anyhow::Result<u8> {
    let node = node_of(&a.node, l)?;
    let active = active_of(&a.node, &l.inventory)?;
    let view = l.inventory.node_view(&node, active);
    let t = tgtadm_of(&a.tgt, l);
    let opts =
        ApplyOptions { state_dir: state_dir_of(&a.tgt, l), tgtadm: t.clone(), force: a.force, dry_run: a.dry_run };
    let json = a.node.json;
    let mut shown = String::new();
    let outcome = apply::apply(&view, &opts, &mut |p| {
        if !json {
            shown = render_plan(p, &t);
            print!("{shown}");
        }
    })?;
    let (label, p, code) = match &outcome {
        Outcome::NoOp(p) => ("unchanged", p, exit::OK),
        Outcome::Applied(p) => ("applied", p, exit::OK),
        Outcome::DryRun(p) => ("dry-run", p, exit::OK),
        Outcome::Refused(p) => ("refused", p, REFUSED),
    };
    if json {
        #[derive(serde::Serialize)]
        struct Report {
            outcome: &'static str,
            plan: Plan,
        }
        print_json(&Report { outcome: label, plan: mask_plan(p) })?;
    }
    if let Outcome::Refused(p) = &outcome {
        for c in p.refused() {
            let list: Vec<String> = c.sessions.iter().map(|x| format!("{} from {}", x.initiator, x.address)).collect();
            tracing::error!(
                "refusing to {} on {}: it would cut session(s) of {}; nothing was changed (use --force to cut them)",
                c.what.join("; "),
                c.iqn,
                list.join(", ")
            );
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    /// Every tool of the target side: its clap tree is consistent, and it
    /// answers --help under each of its names.
    #[test]
    fn target_side_command_trees_are_valid() {
        let tools = [
            super::TOOL,
            crate::targets::state_cli::TOOL,
            crate::targets::session_top::TOOL,
            crate::targets::routing_cli::ROUTING,
            crate::targets::routing_cli::IPTABLES,
            crate::lvm::iostat_cli::TOOL,
            crate::lvm::cli::SNAP_CREATE,
            crate::lvm::cli::SNAP_REMOVE,
            crate::lvm::cli::SNAP_COPY,
            crate::lvm::cli::COPY,
            crate::lvm::cli::DEVSIZE,
            crate::lvm::cli::CLUSTER,
        ];
        for t in tools {
            (t.command)().debug_assert();
            for name in t.names() {
                let e = (t.command)().try_get_matches_from([name, "--help"]).unwrap_err();
                assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{name}");
                assert!(crate::multicall::find_tool(name).is_some(), "{name} is not in the tool table");
            }
        }
    }
}
