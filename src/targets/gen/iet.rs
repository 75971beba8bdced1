//! IET: ietd.conf, initiators.allow, targets.allow (the seed's
//! ietd_targets.sh output). A down target, or one whose volume group is not
//! active on the node, appears in none of them.

use std::fmt::Write;
use std::net::IpAddr;

use super::{header, Files};
use crate::targets::model::NodeView;

/// Escapes an initiator name for initiators.allow: IET compiles each entry
/// as an anchored POSIX regular expression, so `.` would match any
/// character and a name would admit look-alikes.
pub fn regex_escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if ".[]()*+?{}|^$\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn allow_address(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

pub fn ietd_conf(view: &NodeView) -> String {
    let inv = view.inventory;
    let mut s = header("#", "iet", &view.node);
    for (k, v) in &inv.global_options {
        let _ = writeln!(s, "{k} {v}");
    }
    for t in &view.targets {
        s.push('\n');
        let _ = writeln!(s, "Target {}", t.iqn);
        for a in &t.incoming_users {
            let _ = writeln!(s, "\tIncomingUser {} {}", a.user, a.secret);
        }
        if let Some(a) = &t.outgoing_user {
            let _ = writeln!(s, "\tOutgoingUser {} {}", a.user, a.secret);
        }
        for (i, l) in t.luns.iter().enumerate() {
            let _ = writeln!(
                s,
                "\tLun {i} Path={},Type={},ScsiId={},ScsiSN={}",
                l.device.display(),
                l.io.iet_type(),
                l.serial,
                l.serial
            );
        }
        for (k, v) in &t.options {
            let _ = writeln!(s, "\t{k} {v}");
        }
    }
    s
}

pub fn initiators_allow(view: &NodeView) -> String {
    let mut s = header("#", "iet", &view.node);
    for t in &view.targets {
        let names: Vec<String> =
            t.initiators.iter().map(|n| if n == "ALL" { n.clone() } else { regex_escape(n) }).collect();
        let _ = writeln!(s, "{} {}", t.iqn, names.join(", "));
    }
    s
}

pub fn targets_allow(view: &NodeView) -> Result<String, String> {
    let mut s = header("#", "iet", &view.node);
    for t in &view.targets {
        let addrs = view.addresses(&t.portal_group);
        if addrs.is_empty() {
            return Err(format!(
                "target {}: portal group {} has no addresses on node {}",
                t.iqn, t.portal_group, view.node
            ));
        }
        let list: Vec<String> = addrs.iter().map(allow_address).collect();
        let _ = writeln!(s, "{} {}", t.iqn, list.join(", "));
    }
    Ok(s)
}

pub fn generate(view: &NodeView) -> Result<Files, String> {
    Ok(vec![
        ("ietd.conf".into(), ietd_conf(view).into_bytes()),
        ("initiators.allow".into(), initiators_allow(view).into_bytes()),
        ("targets.allow".into(), targets_allow(view)?.into_bytes()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_names_match_only_themselves() {
        assert_eq!(regex_escape("iqn.1994-05.com.redhat:a"), r"iqn\.1994-05\.com\.redhat:a");
        assert_eq!(regex_escape("naa.1+2"), r"naa\.1\+2");
    }
}
