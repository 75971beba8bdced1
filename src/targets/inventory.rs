//! TOML inventory (`[targets]`, see `config::targets`) to the typed model,
//! with every problem reported as `FILE:LINE: key `KEY`: PROBLEM`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use crate::config::targets::{InventoryFile, RawAccount, RawOption, TargetsConfig};
use crate::shared::text_file::{read_text, MAX_TEXT_BYTES};
use crate::targets::model::*;

/// Where the inventory came from and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: key `{key}`: {problem}", path.display())]
pub struct InventoryError {
    pub path: PathBuf,
    pub line: usize,
    pub key: String,
    pub problem: String,
}

/// A TOML syntax or type error (toml names line and column itself).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading inventory {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("inventory {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Invalid(#[from] InventoryError),
}

/// The 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, key: impl Into<String>, problem: impl Into<String>) -> InventoryError {
        InventoryError {
            path: self.path.to_path_buf(),
            line: line_of(self.text, span.start),
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Reads an inventory file (a `[targets]` section of inventory keys).
pub fn load_file(path: &Path) -> Result<Inventory, LoadError> {
    let text =
        read_text(path, MAX_TEXT_BYTES).map_err(|source| LoadError::Read { path: path.to_path_buf(), source })?;
    parse_file(&text, path)
}

/// Parses the text of an inventory file.
pub fn parse_file(text: &str, path: &Path) -> Result<Inventory, LoadError> {
    let file: InventoryFile = toml::from_str(text)
        .map_err(|e| LoadError::Parse { path: path.to_path_buf(), message: e.to_string().trim_end().to_string() })?;
    let ctx = Ctx { text, path };
    if let Some((key, span)) = file.targets.settings_keys().into_iter().next() {
        return Err(ctx
            .err(
                span,
                format!("targets.{key}"),
                "is a tool setting: it belongs in santools.toml, not in the inventory file",
            )
            .into());
    }
    Ok(build(&file.targets, text, path)?)
}

fn s<T>(v: &Spanned<T>) -> Range<usize> {
    v.span()
}

fn options(
    ctx: &Ctx,
    raw: &Option<Spanned<Vec<RawOption>>>,
    key: &str,
) -> Result<Vec<(String, String)>, InventoryError> {
    let mut out = Vec::new();
    for o in raw.iter().flat_map(|v| v.get_ref()) {
        let (k, v) = o.get_ref();
        check_option(k, v).map_err(|p| ctx.err(s(o), key, p))?;
        out.push((k.clone(), v.clone()));
    }
    Ok(out)
}

fn account(ctx: &Ctx, a: &Spanned<RawAccount>, key: &str) -> Result<Account, InventoryError> {
    let r = a.get_ref();
    check_chap_word("user", r.user.get_ref()).map_err(|p| ctx.err(s(&r.user), format!("{key}.user"), p))?;
    check_chap_word("secret", r.secret.get_ref()).map_err(|p| ctx.err(s(&r.secret), format!("{key}.secret"), p))?;
    let n = r.secret.get_ref().len();
    if !(12..=16).contains(&n) {
        // RFC 3720 wants 12+; IET and some initiators refuse more than 16.
        return Err(ctx.err(
            s(&r.secret),
            format!("{key}.secret"),
            format!("CHAP secrets must be 12-16 characters, got {n}"),
        ));
    }
    Ok(Account { user: r.user.get_ref().clone(), secret: r.secret.get_ref().clone() })
}

fn io_mode(ctx: &Ctx, raw: &Option<Spanned<String>>, key: &str) -> Result<IoMode, InventoryError> {
    match raw {
        None => Ok(IoMode::Blockio),
        Some(v) => match v.get_ref().as_str() {
            "blockio" => Ok(IoMode::Blockio),
            "fileio" => Ok(IoMode::Fileio),
            other => Err(ctx.err(s(v), key, format!("expected \"blockio\" or \"fileio\", got {other:?}"))),
        },
    }
}

/// Splits a device path into (volume group, volume) against the configured
/// groups: `/dev/VG/LV`, or `DIR/NAME` for a file group.
fn locate(inv_vgs: &[VolumeGroup], device: &str) -> Result<(String, String), String> {
    let p = Path::new(device);
    if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir)) {
        return Err(format!("{device:?} must be an absolute path without '.' or '..'"));
    }
    if device.contains("//")
        || device.ends_with('/')
        || device.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',')
    {
        return Err(format!("{device:?} must not contain '//', whitespace or ',' or end in '/'"));
    }
    check_path_chars(device)?;
    let parent = p.parent().unwrap_or(Path::new("/"));
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for vg in inv_vgs {
        let matches = match vg {
            VolumeGroup::Lvm { name: vgname } => parent == Path::new("/dev").join(vgname),
            VolumeGroup::Directory { path, .. } => parent == path,
        };
        if matches {
            check_lvm_name(&name)?;
            return Ok((vg.name().to_string(), name));
        }
    }
    let known: Vec<&str> = inv_vgs.iter().map(VolumeGroup::name).collect();
    Err(format!(
        "{device:?} is not a volume of a configured volume group (/dev/VG/LV for volume_groups {known:?}, or a file directly in a file_groups directory)"
    ))
}

/// Validates the section and builds the model.
pub fn build(raw: &TargetsConfig, text: &str, path: &Path) -> Result<Inventory, InventoryError> {
    let ctx = Ctx { text, path };
    let whole = 0..0;
    let need = |what: &str| ctx.err(whole.clone(), format!("targets.{what}"), "is required when targets are defined");

    let prefix = match &raw.prefix {
        Some(p) => {
            check_target_iqn(p.get_ref())
                .map_err(|e| ctx.err(s(p), "targets.prefix", format!("{:?} {e}", p.get_ref())))?;
            p.get_ref().clone()
        }
        None if raw.target.is_some() => return Err(need("prefix")),
        None => String::new(),
    };
    let iqn_template = match &raw.iqn_template {
        Some(t) => {
            check_template(t.get_ref()).map_err(|e| ctx.err(s(t), "targets.iqn_template", e))?;
            t.get_ref().clone()
        }
        None => DEFAULT_IQN_TEMPLATE.to_string(),
    };
    let mut hosts = Vec::new();
    for h in raw.hosts.iter().flat_map(|v| v.get_ref()) {
        let name = h.get_ref();
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            || name.starts_with('-')
        {
            return Err(ctx.err(s(h), "targets.hosts", format!("{name:?} is not a host name")));
        }
        if hosts.contains(name) {
            return Err(ctx.err(s(h), "targets.hosts", format!("{name:?} is listed twice")));
        }
        hosts.push(name.clone());
    }
    if hosts.is_empty() && raw.target.is_some() {
        return Err(need("hosts"));
    }
    let mut volume_groups = Vec::new();
    for v in raw.volume_groups.iter().flat_map(|v| v.get_ref()) {
        check_lvm_name(v.get_ref()).map_err(|e| ctx.err(s(v), "targets.volume_groups", e))?;
        volume_groups.push(VolumeGroup::Lvm { name: v.get_ref().clone() });
    }
    for (name, dir) in raw.file_groups.iter().flatten() {
        let key = format!("targets.file_groups.{name}");
        check_lvm_name(name).map_err(|e| ctx.err(s(dir), &key, e))?;
        let p = dir.get_ref();
        if !p.is_absolute()
            || p.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir))
            || p.as_os_str().len() > 1 && p.to_string_lossy().ends_with('/')
        {
            return Err(ctx.err(
                s(dir),
                &key,
                format!("{} must be an absolute directory path without '.', '..' or a trailing '/'", p.display()),
            ));
        }
        check_path_chars(&p.to_string_lossy()).map_err(|e| ctx.err(s(dir), &key, e))?;
        volume_groups.push(VolumeGroup::Directory { name: name.clone(), path: p.clone() });
    }
    let mut seen_vg = BTreeSet::new();
    for vg in &volume_groups {
        if !seen_vg.insert(vg.name().to_string()) {
            return Err(ctx.err(whole.clone(), "targets.volume_groups", format!("{:?} is defined twice", vg.name())));
        }
    }
    let port = raw.port.as_ref().map(|p| *p.get_ref()).unwrap_or(3260);
    if port == 0 {
        return Err(ctx.err(s(raw.port.as_ref().unwrap()), "targets.port", "must be 1-65535"));
    }
    let global_options = options(&ctx, &raw.global_options, "targets.global_options")?;
    let target_options = options(&ctx, &raw.target_options, "targets.target_options")?;

    let mut portal_groups = BTreeMap::new();
    for (pg, hostmap) in raw.portal_groups.iter().flatten() {
        let key = format!("targets.portal_groups.{pg}");
        check_lvm_name(pg).map_err(|e| ctx.err(s(hostmap), &key, e))?;
        let mut by_host = BTreeMap::new();
        for (host, addrs) in hostmap.get_ref() {
            let hkey = format!("{key}.{host}");
            if !hosts.contains(host) {
                return Err(ctx.err(s(addrs), &hkey, format!("{host:?} is not in targets.hosts {hosts:?}")));
            }
            let mut list: Vec<IpAddr> = Vec::new();
            for a in addrs.get_ref() {
                let ip: IpAddr = a
                    .get_ref()
                    .parse()
                    .map_err(|_| ctx.err(s(a), &hkey, format!("{:?} is not an IP address", a.get_ref())))?;
                if list.contains(&ip) {
                    return Err(ctx.err(s(a), &hkey, format!("{ip} is listed twice")));
                }
                list.push(ip);
            }
            by_host.insert(host.clone(), list);
        }
        portal_groups.insert(pg.clone(), by_host);
    }

    let mut initiator_groups = BTreeMap::new();
    for (ig, names) in raw.initiator_groups.iter().flatten() {
        let key = format!("targets.initiator_groups.{ig}");
        check_lvm_name(ig).map_err(|e| ctx.err(s(names), &key, e))?;
        let mut list: Vec<String> = Vec::new();
        for n in names.get_ref() {
            check_initiator_name(n.get_ref()).map_err(|e| ctx.err(s(n), &key, e))?;
            if !list.contains(n.get_ref()) {
                list.push(n.get_ref().clone());
            }
        }
        initiator_groups.insert(ig.clone(), list);
    }

    let mut targets = Vec::new();
    let mut serials: HashMap<String, (usize, usize)> = HashMap::new();
    let mut iqns: HashMap<String, (usize, String)> = HashMap::new();
    let mut devices: HashMap<PathBuf, usize> = HashMap::new();
    for (i, rt) in raw.target.iter().flatten().enumerate() {
        let t = rt.get_ref();
        let key = |k: &str| format!("targets.target[{i}].{k}");
        let state = match t.state.get_ref().as_str() {
            "up" => TargetState::Up,
            "down" => TargetState::Down,
            other => {
                return Err(ctx.err(s(&t.state), key("state"), format!("expected \"up\" or \"down\", got {other:?}")))
            }
        };
        let (vg, lv) =
            locate(&volume_groups, t.device.get_ref()).map_err(|e| ctx.err(s(&t.device), key("device"), e))?;
        let mut luns = vec![Lun {
            device: PathBuf::from(t.device.get_ref()),
            io: io_mode(&ctx, &t.io, &key("io"))?,
            serial: t.serial.get_ref().clone(),
        }];
        let mut lun_spans = vec![(s(&t.device), s(&t.serial), key("device"), key("serial"))];
        for (j, l) in t.luns.iter().flatten().enumerate() {
            let lk = |k: &str| format!("targets.target[{i}].luns[{j}].{k}");
            let r = l.get_ref();
            let (lvg, _) =
                locate(&volume_groups, r.device.get_ref()).map_err(|e| ctx.err(s(&r.device), lk("device"), e))?;
            if lvg != vg {
                return Err(ctx.err(
                    s(&r.device),
                    lk("device"),
                    format!("is on volume group {lvg:?}, the target's device on {vg:?}: all LUNs of a target must move with one volume group"),
                ));
            }
            luns.push(Lun {
                device: PathBuf::from(r.device.get_ref()),
                io: io_mode(&ctx, &r.io, &lk("io"))?,
                serial: r.serial.get_ref().clone(),
            });
            lun_spans.push((s(&r.device), s(&r.serial), lk("device"), lk("serial")));
        }
        for (lun, (dspan, sspan, dkey, skey)) in luns.iter().zip(lun_spans) {
            check_serial(&lun.serial).map_err(|e| ctx.err(sspan.clone(), &skey, e))?;
            if let Some((other, _)) = serials.get(&lun.serial.to_ascii_lowercase()) {
                return Err(ctx.err(
                    sspan,
                    &skey,
                    format!("serial {:?} is already used by targets.target[{other}]", lun.serial),
                ));
            }
            serials.insert(lun.serial.to_ascii_lowercase(), (i, 0));
            if let Some(other) = devices.get(&lun.device) {
                return Err(ctx.err(
                    dspan,
                    &dkey,
                    format!("{} is already exported by targets.target[{other}]", lun.device.display()),
                ));
            }
            devices.insert(lun.device.clone(), i);
        }
        let pg = t.portal_group.get_ref();
        if !portal_groups.contains_key(pg) {
            let known: Vec<&String> = portal_groups.keys().collect();
            return Err(ctx.err(
                s(&t.portal_group),
                key("portal_group"),
                format!("unknown portal group {pg:?} (defined: {known:?})"),
            ));
        }
        let mut initiators: Vec<String> = Vec::new();
        let mut refs = Vec::new();
        for r in t.initiators.get_ref() {
            let name = r.get_ref();
            refs.push(name.clone());
            let resolved: Vec<String> = if let Some(group) = name.strip_prefix('@') {
                match initiator_groups.get(group) {
                    Some(g) => g.clone(),
                    None => {
                        let known: Vec<&String> = initiator_groups.keys().collect();
                        return Err(ctx.err(
                            s(r),
                            key("initiators"),
                            format!("unknown initiator group {group:?} (defined: {known:?})"),
                        ));
                    }
                }
            } else {
                check_initiator_name(name).map_err(|e| ctx.err(s(r), key("initiators"), e))?;
                vec![name.clone()]
            };
            for n in resolved {
                if !initiators.contains(&n) {
                    initiators.push(n);
                }
            }
        }
        if initiators.is_empty() {
            return Err(ctx.err(
                s(&t.initiators),
                key("initiators"),
                "names no initiator: list initiator names or @groups (or \"ALL\" for a target every initiator may use)",
            ));
        }
        if initiators.len() > 1 && initiators.iter().any(|n| n == "ALL") {
            return Err(ctx.err(
                s(&t.initiators),
                key("initiators"),
                "\"ALL\" cannot be combined with initiator names",
            ));
        }
        let iqn = match &t.iqn {
            Some(q) => q.get_ref().clone(),
            None => render_iqn(&iqn_template, &prefix, pg, &vg, &lv),
        };
        let iqn_span = t.iqn.as_ref().map(s).unwrap_or(s(&t.device));
        check_target_iqn(&iqn).map_err(|e| ctx.err(iqn_span.clone(), key("iqn"), format!("IQN {iqn:?} {e}")))?;
        if let Some((other, other_dev)) = iqns.get(&iqn.to_ascii_lowercase()) {
            return Err(ctx.err(
                iqn_span,
                key("iqn"),
                format!("IQN {iqn} is also the IQN of targets.target[{other}] ({other_dev}): '_' and '-' map to the same name"),
            ));
        }
        iqns.insert(iqn.to_ascii_lowercase(), (i, t.device.get_ref().clone()));
        let mut incoming_users = Vec::new();
        for (j, a) in t.incoming_users.iter().flatten().enumerate() {
            incoming_users.push(account(&ctx, a, &format!("targets.target[{i}].incoming_users[{j}]"))?);
        }
        let outgoing_user = t.outgoing_user.as_ref().map(|a| account(&ctx, a, &key("outgoing_user"))).transpose()?;
        let mut opts = target_options.clone();
        opts.extend(options(&ctx, &t.options, &key("options"))?);
        targets.push(Target {
            iqn,
            state,
            vg,
            lv,
            luns,
            portal_group: pg.clone(),
            initiator_refs: refs,
            initiators,
            incoming_users,
            outgoing_user,
            options: opts,
        });
    }
    // tgt and SCST keep CHAP accounts globally: one secret per user name.
    let mut secrets: HashMap<&str, &str> = HashMap::new();
    for (i, t) in targets.iter().enumerate() {
        for a in t.incoming_users.iter().chain(&t.outgoing_user) {
            if let Some(prev) = secrets.insert(&a.user, &a.secret) {
                if prev != a.secret {
                    let span = raw.target.as_ref().map(|v| s(&v[i])).unwrap_or(whole.clone());
                    return Err(ctx.err(
                        span,
                        format!("targets.target[{i}]"),
                        format!("CHAP user {:?} has different secrets in two places", a.user),
                    ));
                }
            }
        }
    }
    Ok(Inventory {
        prefix,
        iqn_template,
        hosts,
        volume_groups,
        port,
        global_options,
        target_options,
        portal_groups,
        initiator_groups,
        targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SEED: &str = include_str!("../../tests/fixtures/targets/inventory.toml");

    fn parse(text: &str) -> Result<Inventory, LoadError> {
        parse_file(text, Path::new("/etc/santools/targets.toml"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn seed_inventory_builds() {
        let inv = parse(SEED).unwrap();
        let t = &inv.targets[0];
        assert_eq!(t.iqn, "iqn.1990-01.edu.amherst:iet.iscsi-target.pg-vlan10-fabric.vg-dsk-0.lv-server01-apps-vol00");
        assert_eq!(t.initiators, ["iqn.1994-05.com.redhat:swiscsi.server01.apps"]);
        assert_eq!(t.options[0], ("InitialR2T".to_string(), "No".to_string()));
    }

    /// Replaces the first occurrence of `from` in the seed inventory.
    fn with(from: &str, to: &str) -> String {
        assert!(SEED.contains(from), "{from}");
        SEED.replacen(from, to, 1)
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = err(&with("serial = \"AMHDSK-100415-01\"", "serial = \"AMHDSK-100415-01-XX\""));
        let line = line_of(SEED, SEED.find("serial = \"AMHDSK-100415-01\"").unwrap());
        assert!(e.starts_with(&format!("/etc/santools/targets.toml:{line}: key `targets.target[0].serial`")), "{e}");
        assert!(e.contains("at most 16"), "{e}");
    }

    #[test]
    fn validation_table() {
        for (from, to, needle) in [
            ("serial = \"AMHDSK-100415-01\"", "serial = \"AMHDSK-100415-02\"", "already used"),
            ("portal_group = \"pg_vlan10_fabric\"", "portal_group = \"pg_nope\"", "unknown portal group"),
            ("\"@ig_server01_apps\"", "\"@ig_nope\"", "unknown initiator group"),
            ("/dev/vg_dsk_0/lv_server01_apps_vol00", "/dev/vg_other/lv_x", "not a volume of a configured volume group"),
            ("/dev/vg_dsk_0/lv_server01_apps_vol00", "/dev/vg_dsk_0/../x", "'..'"),
            ("state = \"up\"", "state = \"online\"", "expected \"up\" or \"down\""),
            ("io = \"blockio\"", "io = \"nullio\"", "blockio"),
            (
                "prefix = \"iqn.1990-01.edu.amherst:iet.iscsi-target\"",
                "prefix = \"iqn.1990-01.edu.amherst:iet.iscsi target\"",
                "targets.prefix",
            ),
            ("[[targets.target]]", "[[targets.target]]\nbogus = 1", "unknown field `bogus`"),
            ("\"10.0.1.1\"", "\"10.0.1.300\"", "not an IP address"),
            ("iscsi-target-node1 = [", "node9 = [", "not in targets.hosts"),
            // Finding T1-T3 (attack-targets): values tgt-admin would run through a shell.
            ("secret = \"esx-secret-123\"", "secret = \";touch$IFS/tmp/P\"", "shell"),
            ("user = \"esxchap\"", "user = \"u;id>/tmp/x\"", "incoming_users[0].user"),
            ("[\"MaxConnections\", \"1\"]", "[\"MaxConnections\", \"1;reboot\"]", "targets.target[1].options"),
            (
                "volume_groups = [\"vg_dsk_0\", \"vg_dsk_1\"]",
                "volume_groups = [\"vg_dsk_0\", \"vg_dsk_1\"]\nfile_groups = { fg = \"/srv/$(reboot)\" }",
                "targets.file_groups.fg",
            ),
        ] {
            let e = err(&with(from, to));
            assert!(e.contains(needle), "{from} -> {to}: {e}");
        }
    }

    #[test]
    fn underscore_and_dash_collide() {
        let extra = "\n[[targets.target]]\nstate = \"up\"\ndevice = \"/dev/vg_dsk_0/lv_a_b\"\nserial = \"S1\"\nportal_group = \"pg_vlan10_fabric\"\ninitiators = [\"ALL\"]\n\n[[targets.target]]\nstate = \"up\"\ndevice = \"/dev/vg_dsk_0/lv_a-b\"\nserial = \"S2\"\nportal_group = \"pg_vlan10_fabric\"\ninitiators = [\"ALL\"]\n";
        let e = err(&format!("{SEED}{extra}"));
        assert!(e.contains("lv-a-b") && e.contains("same name"), "{e}");
    }

    #[test]
    fn long_iqn_is_refused() {
        let long = format!("iqn.1990-01.edu.amherst:{}", "l".repeat(200));
        let extra = format!("\n[[targets.target]]\niqn = \"{long}\"\nstate = \"up\"\ndevice = \"/dev/vg_dsk_0/lv_x\"\nserial = \"S1\"\nportal_group = \"pg_vlan10_fabric\"\ninitiators = [\"ALL\"]\n");
        let e = err(&format!("{SEED}{extra}"));
        assert!(e.contains("223"), "{e}");
    }

    #[test]
    fn settings_keys_are_refused_in_an_inventory_file() {
        let e = err(&with("[targets]", "[targets]\nstate_dir = \"/x\""));
        assert!(e.contains("targets.state_dir") && e.contains("santools.toml"), "{e}");
    }
}
