//! `[targets]`: the target inventory (the seed's targets.conf and
//! ietd_config.sh as TOML) and the settings of the target tools. The
//! inventory may live here or in its own file (`inventory = PATH`, a file
//! with the same `[targets]` section holding only inventory keys).
//!
//! ```toml
//! [targets]
//! prefix = "iqn.1990-01.edu.amherst:iet.iscsi-target"
//! hosts = ["iscsi-target-node1", "iscsi-target-node2"]
//! volume_groups = ["vg_dsk_0", "vg_dsk_1"]
//! target_options = [["InitialR2T", "No"], ["ImmediateData", "Yes"]]
//!
//! [targets.portal_groups.pg_vlan10_fabric]
//! iscsi-target-node1 = ["10.0.1.1", "10.0.1.2"]
//! iscsi-target-node2 = ["10.0.1.3", "10.0.1.4"]
//!
//! [targets.initiator_groups]
//! ig_server01_apps = ["iqn.1994-05.com.redhat:swiscsi.server01.apps"]
//!
//! [[targets.target]]
//! state = "up"
//! device = "/dev/vg_dsk_0/lv_server01_apps_vol00"
//! io = "blockio"
//! serial = "AMHDSK-100415-01"
//! portal_group = "pg_vlan10_fabric"
//! initiators = ["@ig_server01_apps"]
//! ```
//!
//! Values are kept with their byte spans so that validation
//! (`targets::inventory`) can name the file, line and key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

/// Addresses per host of one portal group.
pub type RawPortalGroup = Spanned<BTreeMap<String, Spanned<Vec<Spanned<String>>>>>;

/// An option as the seed's `option KEY VALUE`: `["KEY", "VALUE"]`.
pub type RawOption = Spanned<(String, String)>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsConfig {
    // Tool settings (santools.toml only).
    /// The inventory in its own file instead of this section.
    pub inventory: Option<Spanned<PathBuf>>,
    /// Last-applied record, LUN sizes, saved session counts, apply lock.
    pub state_dir: Option<Spanned<PathBuf>>,
    /// This node's name in `hosts` [default: the host name].
    pub node: Option<Spanned<String>>,
    /// tgtd's control port (`tgtadm -C`) [default: tgtadm's, 0].
    pub tgt_control_port: Option<Spanned<u16>>,
    /// The tgtadm program [default: tgtadm from PATH].
    pub tgtadm: Option<Spanned<PathBuf>>,

    // The inventory.
    pub prefix: Option<Spanned<String>>,
    pub iqn_template: Option<Spanned<String>>,
    pub hosts: Option<Spanned<Vec<Spanned<String>>>>,
    pub volume_groups: Option<Spanned<Vec<Spanned<String>>>>,
    /// Directories that play a volume group's role for file-backed LUNs.
    pub file_groups: Option<BTreeMap<String, Spanned<PathBuf>>>,
    pub port: Option<Spanned<u16>>,
    pub global_options: Option<Spanned<Vec<RawOption>>>,
    pub target_options: Option<Spanned<Vec<RawOption>>>,
    pub portal_groups: Option<BTreeMap<String, RawPortalGroup>>,
    pub initiator_groups: Option<BTreeMap<String, Spanned<Vec<Spanned<String>>>>>,
    pub target: Option<Vec<Spanned<RawTarget>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub state: Spanned<String>,
    pub device: Spanned<String>,
    pub io: Option<Spanned<String>>,
    pub serial: Spanned<String>,
    pub portal_group: Spanned<String>,
    pub initiators: Spanned<Vec<Spanned<String>>>,
    /// An explicit IQN instead of the template's.
    pub iqn: Option<Spanned<String>>,
    pub incoming_users: Option<Vec<Spanned<RawAccount>>>,
    pub outgoing_user: Option<Spanned<RawAccount>>,
    pub luns: Option<Vec<Spanned<RawLun>>>,
    pub options: Option<Spanned<Vec<RawOption>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub user: Spanned<String>,
    pub secret: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLun {
    pub device: Spanned<String>,
    pub io: Option<Spanned<String>>,
    pub serial: Spanned<String>,
}

/// A file holding only `[targets]` (the inventory in its own file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryFile {
    pub targets: TargetsConfig,
}

impl TargetsConfig {
    /// Whether this section holds inventory keys (rather than only
    /// settings and a pointer to an inventory file).
    pub fn has_inventory_keys(&self) -> bool {
        self.prefix.is_some()
            || self.hosts.is_some()
            || self.volume_groups.is_some()
            || self.file_groups.is_some()
            || self.portal_groups.is_some()
            || self.initiator_groups.is_some()
            || self.target.is_some()
            || self.global_options.is_some()
            || self.target_options.is_some()
            || self.iqn_template.is_some()
            || self.port.is_some()
    }

    /// Settings keys present (they belong in santools.toml, not in an
    /// inventory file), with their spans.
    pub fn settings_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let mut v = Vec::new();
        if let Some(s) = &self.inventory {
            v.push(("inventory", s.span()));
        }
        if let Some(s) = &self.state_dir {
            v.push(("state_dir", s.span()));
        }
        if let Some(s) = &self.node {
            v.push(("node", s.span()));
        }
        if let Some(s) = &self.tgt_control_port {
            v.push(("tgt_control_port", s.span()));
        }
        if let Some(s) = &self.tgtadm {
            v.push(("tgtadm", s.span()));
        }
        v
    }
}

impl TargetsConfig {
    /// Validates the section as part of santools.toml (`text` is the whole
    /// file, for line numbers): an inline inventory is checked completely;
    /// a section with `inventory = FILE` may not also hold inventory keys.
    pub fn check(&self, text: &str, path: &std::path::Path) -> Result<(), crate::config::ConfigError> {
        let invalid = |e: crate::targets::inventory::InventoryError| crate::config::ConfigError::Invalid {
            path: path.to_path_buf(),
            key: e.key,
            problem: format!("line {}: {}", e.line, e.problem),
        };
        if let Some(inv) = &self.inventory {
            if self.has_inventory_keys() {
                return Err(invalid(crate::targets::inventory::InventoryError {
                    path: path.to_path_buf(),
                    line: crate::targets::inventory::line_of(text, inv.span().start),
                    key: "targets.inventory".into(),
                    problem: "names an inventory file, so this section may hold only tool settings".into(),
                }));
            }
        }
        for (key, v) in [("targets.state_dir", &self.state_dir), ("targets.tgtadm", &self.tgtadm)] {
            if let Some(p) = v {
                if !p.get_ref().is_absolute() {
                    return Err(invalid(crate::targets::inventory::InventoryError {
                        path: path.to_path_buf(),
                        line: crate::targets::inventory::line_of(text, p.span().start),
                        key: key.into(),
                        problem: format!("must be an absolute path, got {}", p.get_ref().display()),
                    }));
                }
            }
        }
        crate::targets::inventory::build(self, text, path).map(|_| ()).map_err(invalid)
    }
}
