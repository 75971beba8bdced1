//! tgt: /etc/tgt/targets.conf (tgt-admin syntax), or the equivalent tgtadm
//! argument vectors. LUN 0 is tgt's controller, so the volume is LUN 1.
//! A target restricted to initiator names also carries
//! `initiator-address 0.0.0.0/32`: tgt admits a login when the address ACL
//! OR the name ACL matches, and tgt-admin binds ALL addresses when a target
//! lists none.

use std::fmt::Write;

use super::{header, Files};
use crate::targets::model::{IoMode, NodeView};
use crate::targets::tgtadm::{self, target_acls, tgt_lun, tgt_params, Acl, Argv};

pub fn targets_conf(view: &NodeView) -> String {
    let mut s = header("#", "tgt", &view.node);
    s.push_str("# LUN 0 of every target is tgt's controller: the volume is LUN 1, extra volumes follow.\n");
    s.push_str("default-driver iscsi\n");
    for t in &view.targets {
        let (params, unsupported) = tgt_params(&view.inventory.global_options, t);
        s.push('\n');
        let _ = writeln!(s, "<target {}>", t.iqn);
        for (i, l) in t.luns.iter().enumerate() {
            let _ = writeln!(s, "\t<backing-store {}>", l.device.display());
            let _ = writeln!(s, "\t\tlun {}", tgt_lun(i));
            let _ = writeln!(s, "\t\tscsi_id {}", l.serial);
            let _ = writeln!(s, "\t\tscsi_sn {}", l.serial);
            let _ = writeln!(s, "\t\tbs-type rdwr");
            if l.io == IoMode::Blockio {
                let _ = writeln!(s, "\t\tbsoflags direct");
            }
            let _ = writeln!(s, "\t</backing-store>");
        }
        for acl in target_acls(t) {
            match acl {
                Acl::Address(a) => {
                    let _ = writeln!(s, "\tinitiator-address {a}");
                }
                Acl::Name(n) => {
                    let _ = writeln!(s, "\tinitiator-name {n}");
                }
            }
        }
        for a in &t.incoming_users {
            let _ = writeln!(s, "\tincominguser {} {}", a.user, a.secret);
        }
        if let Some(a) = &t.outgoing_user {
            let _ = writeln!(s, "\toutgoinguser {} {}", a.user, a.secret);
        }
        for (k, v) in &params {
            let _ = writeln!(s, "\t{k} {v}");
        }
        if !unsupported.is_empty() {
            let _ = writeln!(s, "\t# not supported by tgt: {}", unsupported.join(", "));
        }
        let _ = writeln!(s, "</target>");
    }
    s
}

/// The tgtadm argument vectors that build the same state on an empty tgtd
/// (tids 1, 2, ... in inventory order).
pub fn tgtadm_commands(view: &NodeView) -> Vec<Argv> {
    let mut out = Vec::new();
    let mut accounts: Vec<String> = Vec::new();
    for (i, t) in view.targets.iter().enumerate() {
        let (params, _) = tgt_params(&view.inventory.global_options, t);
        let mut fresh = |u: &str| {
            let new = !accounts.iter().any(|a| a == u);
            if new {
                accounts.push(u.to_string());
            }
            new
        };
        out.extend(tgtadm::create_target(i as u32 + 1, t, &params, &mut fresh));
    }
    out
}

pub fn generate(view: &NodeView) -> Files {
    vec![("targets.conf".into(), targets_conf(view).into_bytes())]
}
