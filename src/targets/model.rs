//! The one typed model of a target cluster, built from the inventory
//! (`inventory.rs`) and rendered by every generator (`gen/`), compared with
//! live state (`live/`, `plan.rs`). It maps 1:1 to the seed's targets.conf
//! plus ietd_config.sh: cluster settings, options in order, portal groups,
//! initiator groups, targets.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

/// The default IQN template: the seed's `<prefix>.<portal group>.<vg>.<lv>`.
pub const DEFAULT_IQN_TEMPLATE: &str = "{prefix}.{portal_group}.{vg}.{lv}";
/// The seed's advice: serials of at most 16 characters (SCSI ID and SN).
pub const MAX_SERIAL_LEN: usize = 16;
/// RFC 7143: iSCSI names are at most 223 bytes.
pub const MAX_IQN_LEN: usize = 223;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    Up,
    Down,
}

/// IET's Type: blockio bypasses the page cache, fileio goes through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    Blockio,
    Fileio,
}

impl IoMode {
    pub fn iet_type(self) -> &'static str {
        match self {
            IoMode::Blockio => "blockio",
            IoMode::Fileio => "fileio",
        }
    }
}

/// A CHAP account (user name and secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    pub user: String,
    #[serde(skip_serializing)]
    pub secret: String,
}

/// One LUN: in IET numbering (the seed's LUN 0 is the volume itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lun {
    pub device: PathBuf,
    pub io: IoMode,
    pub serial: String,
}

/// Where a volume lives: a volume group (LVM) or a directory of files that
/// plays the same role (file-backed LUNs, e.g. on btrfs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum VolumeGroup {
    Lvm { name: String },
    Directory { name: String, path: PathBuf },
}

impl VolumeGroup {
    pub fn name(&self) -> &str {
        match self {
            VolumeGroup::Lvm { name } | VolumeGroup::Directory { name, .. } => name,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Target {
    pub iqn: String,
    pub state: TargetState,
    pub vg: String,
    pub lv: String,
    /// LUN 0 is `device`; extra LUNs follow (all on the same volume group,
    /// so the target migrates with it).
    pub luns: Vec<Lun>,
    pub portal_group: String,
    /// As written: initiator names and `@group` references.
    pub initiator_refs: Vec<String>,
    /// Resolved initiator names, in order, without duplicates; `["ALL"]`
    /// for a target open to every initiator.
    pub initiators: Vec<String>,
    pub incoming_users: Vec<Account>,
    pub outgoing_user: Option<Account>,
    /// Cluster-wide target options followed by this target's own, in order.
    pub options: Vec<(String, String)>,
}

impl Target {
    pub fn open_to_all(&self) -> bool {
        self.initiators.iter().any(|i| i == "ALL")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inventory {
    pub prefix: String,
    pub iqn_template: String,
    pub hosts: Vec<String>,
    pub volume_groups: Vec<VolumeGroup>,
    pub port: u16,
    pub global_options: Vec<(String, String)>,
    pub target_options: Vec<(String, String)>,
    /// portal group -> host -> addresses.
    pub portal_groups: BTreeMap<String, BTreeMap<String, Vec<IpAddr>>>,
    pub initiator_groups: BTreeMap<String, Vec<String>>,
    pub targets: Vec<Target>,
}

/// The part of the inventory one node serves: up targets on its active
/// volume groups, in inventory order.
#[derive(Clone, Debug)]
pub struct NodeView<'a> {
    pub inventory: &'a Inventory,
    pub node: String,
    pub active_vgs: BTreeSet<String>,
    pub targets: Vec<&'a Target>,
}

impl Inventory {
    pub fn volume_group(&self, name: &str) -> Option<&VolumeGroup> {
        self.volume_groups.iter().find(|v| v.name() == name)
    }

    /// The targets `node` serves given its active volume groups.
    pub fn node_view(&self, node: &str, active_vgs: BTreeSet<String>) -> NodeView<'_> {
        let targets =
            self.targets.iter().filter(|t| t.state == TargetState::Up && active_vgs.contains(&t.vg)).collect();
        NodeView { inventory: self, node: node.to_string(), active_vgs, targets }
    }

    /// Whether an IQN is one this inventory owns (under the prefix, or
    /// named explicitly by a target).
    pub fn owns(&self, iqn: &str) -> bool {
        let lower = iqn.to_ascii_lowercase();
        lower.starts_with(&format!("{}.", self.prefix.to_ascii_lowercase()))
            || self.targets.iter().any(|t| t.iqn.eq_ignore_ascii_case(iqn))
    }
}

impl NodeView<'_> {
    /// This node's addresses in a portal group.
    pub fn addresses(&self, portal_group: &str) -> &[IpAddr] {
        self.inventory
            .portal_groups
            .get(portal_group)
            .and_then(|hosts| hosts.get(&self.node))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// Turns a template component into IQN form: `_` becomes `-`.
pub fn iqn_component(s: &str) -> String {
    s.replace('_', "-")
}

/// Renders the IQN template for a target.
pub fn render_iqn(template: &str, prefix: &str, portal_group: &str, vg: &str, lv: &str) -> String {
    template
        .replace("{prefix}", prefix)
        .replace("{portal_group}", &iqn_component(portal_group))
        .replace("{vg}", &iqn_component(vg))
        .replace("{lv}", &iqn_component(lv))
}

/// Checks a template: only known placeholders, `{prefix}` first.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').ok_or("unclosed `{`")? + open;
        let name = &rest[open + 1..close];
        if !matches!(name, "prefix" | "portal_group" | "vg" | "lv") {
            return Err(format!(
                "unknown placeholder {{{name}}} (known: {{prefix}}, {{portal_group}}, {{vg}}, {{lv}})"
            ));
        }
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err("stray `}`".into());
    }
    if !template.contains("{lv}") {
        return Err("must contain {lv}, or every volume would get the same name".into());
    }
    Ok(())
}

/// A target IQN: `iqn.YYYY-MM.reversed.domain[:...]`, at most 223 bytes, of
/// characters every target implementation and file system accepts.
pub fn check_target_iqn(iqn: &str) -> Result<(), String> {
    if iqn.len() > MAX_IQN_LEN {
        return Err(format!("is {} bytes long, iSCSI names are at most {MAX_IQN_LEN}", iqn.len()));
    }
    let b = iqn.as_bytes();
    let dated = b.len() > 12
        && iqn.starts_with("iqn.")
        && b[4..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'-'
        && b[9..11].iter().all(u8::is_ascii_digit)
        && b[11] == b'.'
        && b[12].is_ascii_alphanumeric();
    if !dated {
        return Err("is not of the form iqn.YYYY-MM.reversed.domain[:name]".into());
    }
    if let Some(c) = iqn.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))) {
        return Err(format!("contains {c:?} (allowed: letters, digits, '.', '-', ':')"));
    }
    Ok(())
}

/// An initiator name: an iSCSI name (iqn., eui., naa.) or `ALL`.
pub fn check_initiator_name(name: &str) -> Result<(), String> {
    if name == "ALL" || crate::iscsi::name::is_valid_name(name) {
        Ok(())
    } else {
        Err(format!("{name:?} is not an iSCSI initiator name (iqn., eui. or naa.) or ALL"))
    }
}

/// A serial: used verbatim as IET ScsiId/ScsiSN, tgt scsi_id/scsi_sn, LIO
/// unit serial and SCST usn, so only characters safe in all of them.
pub fn check_serial(serial: &str) -> Result<(), String> {
    if serial.is_empty() {
        return Err("is empty".into());
    }
    if serial.chars().count() > MAX_SERIAL_LEN {
        return Err(format!("{serial:?} has {} characters, at most {MAX_SERIAL_LEN}", serial.chars().count()));
    }
    if let Some(c) = serial.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(format!("{serial:?} contains {c:?} (allowed: letters, digits, '-', '_', '.')"));
    }
    Ok(())
}

/// An LVM-style name (volume group, logical volume, group names).
pub fn check_lvm_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 127 {
        return Err(format!("{name:?} must be 1-127 characters"));
    }
    if name.starts_with('-') || name == "." || name == ".." {
        return Err(format!("{name:?} may not start with '-' or be '.' or '..'"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '.' | '-'))) {
        return Err(format!("{name:?} contains {c:?} (allowed: letters, digits, '+', '_', '.', '-')"));
    }
    Ok(())
}

/// Characters that mean nothing to a POSIX shell, to tgt-admin's and
/// scstadmin's config parsers, or to ietd.conf. tgt-admin hands every
/// tgtadm line it builds from targets.conf to `system()` unquoted
/// (`--password=$secret`, `--value $value`, `sg_inq "$backing_store"`), so a
/// `;`, `$`, `|`, backquote or redirection in a generated file would run as
/// root when the file is loaded; `#`, `<`, `>` and braces break the parsers.
fn inert(c: char, extra: &str) -> bool {
    c.is_ascii_alphanumeric() || "-_.+:/=%@".contains(c) || extra.contains(c)
}

/// An option name or value as written into ietd.conf / targets.conf /
/// scst.conf: one word each, of characters no consumer treats specially.
pub fn check_option(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("option name {key:?} must be letters, digits and '_'"));
    }
    if value.is_empty() || !value.chars().all(|c| inert(c, "")) {
        return Err(format!(
            "option {key} value {value:?} must be one word of letters, digits and '-', '_', '.', '+', ':', '/', '=', '%', '@' (tgt-admin runs it through a shell)"
        ));
    }
    Ok(())
}

/// A CHAP user or secret: one word of characters that are safe in every
/// generated file and in tgt-admin's shell lines.
pub fn check_chap_word(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 255 || !s.chars().all(|c| inert(c, "^,!")) {
        return Err(format!(
            "CHAP {what} must be 1-255 characters of letters, digits and '-', '_', '.', '+', ':', '/', '=', '%', '@', '^', ',', '!' (no spaces, quotes or shell characters: tgt-admin runs it through a shell)"
        ));
    }
    Ok(())
}

/// A device path as written into every generated file: `/dev/VG/LV`, or a
/// file in a file group's directory.
pub fn check_path_chars(path: &str) -> Result<(), String> {
    match path.chars().find(|&c| !inert(c, "")) {
        Some(c) => Err(format!(
            "{path:?} contains {c:?} (allowed in a device path: letters, digits and '/', '-', '_', '.', '+', ':', '=', '%', '@': tgt-admin runs it through a shell)"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_iqn_is_rendered() {
        assert_eq!(
            render_iqn(
                DEFAULT_IQN_TEMPLATE,
                "iqn.1990-01.edu.amherst:iet.iscsi-target",
                "pg_vlan10_fabric",
                "vg_dsk_0",
                "lv_server01_apps_vol00"
            ),
            "iqn.1990-01.edu.amherst:iet.iscsi-target.pg-vlan10-fabric.vg-dsk-0.lv-server01-apps-vol00"
        );
    }

    #[test]
    fn iqn_checks() {
        assert!(check_target_iqn("iqn.1990-01.edu.amherst:iet.x").is_ok());
        for bad in
            ["iqn.90-01.x", "eui.1234", "iqn.1990-01.", "iqn.1990-01.a b", &format!("iqn.1990-01.a{}", "b".repeat(220))]
        {
            assert!(check_target_iqn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serial_checks() {
        assert!(check_serial("AMHDSK-100415-01").is_ok());
        assert!(check_serial("AMHDSK-100415-012").unwrap_err().contains("17 characters"));
        assert!(check_serial("a,b").is_err());
        assert!(check_serial("").is_err());
    }

    /// Finding T1/T2/T3 (attack-targets): shell characters in a CHAP word,
    /// an option value or a device path reached tgt-admin's system() when it
    /// loaded a generated targets.conf, and ran as root.
    #[test]
    fn shell_characters_are_refused_in_generated_values() {
        for bad in
            ["u;id", "s$(reboot)1234", "a`b`", "a|b", "a&b", "a>b", "a<b", "a{b}", "a b", "a\nb", "a'b", "a\"b", "a#b"]
        {
            assert!(check_chap_word("secret", bad).is_err(), "{bad}");
            assert!(check_option("ImmediateData", bad).is_err(), "{bad}");
            assert!(check_path_chars(&format!("/srv/{bad}/lv")).is_err(), "{bad}");
        }
        assert!(check_chap_word("secret", "esx-secret-123").is_ok());
        assert!(check_chap_word("user", "iqn.1994-05.com.redhat:a").is_ok());
        assert!(check_option("MaxRecvDataSegmentLength", "262144").is_ok());
        assert!(check_path_chars("/srv/luns+1/vol_a-b.img").is_ok());
        assert!(check_path_chars("/srv/l\u{e4}/x").unwrap_err().contains("device path"));
    }

    #[test]
    fn template_checks() {
        assert!(check_template(DEFAULT_IQN_TEMPLATE).is_ok());
        assert!(check_template("{prefix}.{lv}").is_ok());
        assert!(check_template("{prefix}.{host}.{lv}").unwrap_err().contains("{host}"));
        assert!(check_template("{prefix}.{vg}").is_err());
    }
}
