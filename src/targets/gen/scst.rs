//! SCST: scst.conf with vdisk_blockio / vdisk_fileio devices (named by
//! serial, `usn` = serial) and per target one GROUP holding its LUNs and
//! initiators, so no other initiator sees them.

use std::fmt::Write;

use super::{header, Files};
use crate::targets::model::{IoMode, NodeView};

/// iscsi-scst target attributes that take IET-named options.
const SCST_TARGET_PARAMS: &[&str] = &[
    "InitialR2T",
    "ImmediateData",
    "MaxRecvDataSegmentLength",
    "MaxXmitDataSegmentLength",
    "MaxBurstLength",
    "FirstBurstLength",
    "MaxOutstandingR2T",
    "HeaderDigest",
    "DataDigest",
    "QueuedCommands",
    "RspTimeout",
    "NopInInterval",
    "NopInTimeout",
];

fn scst_param(iet: &str) -> Option<&'static str> {
    match iet {
        "NOPInterval" => Some("NopInInterval"),
        "NOPTimeout" => Some("NopInTimeout"),
        other => SCST_TARGET_PARAMS.iter().copied().find(|p| *p == other),
    }
}

pub fn scst_conf(view: &NodeView) -> String {
    let mut s = header("#", "scst", &view.node);
    for (handler, mode) in [("vdisk_blockio", IoMode::Blockio), ("vdisk_fileio", IoMode::Fileio)] {
        let luns: Vec<_> = view.targets.iter().flat_map(|t| &t.luns).filter(|l| l.io == mode).collect();
        if luns.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\nHANDLER {handler} {{");
        for l in luns {
            let _ = writeln!(s, "\tDEVICE {} {{", l.serial);
            let _ = writeln!(s, "\t\tfilename {}", l.device.display());
            let _ = writeln!(s, "\t\tusn {}", l.serial);
            let _ = writeln!(s, "\t}}");
        }
        let _ = writeln!(s, "}}");
    }
    let _ = writeln!(s, "\nTARGET_DRIVER iscsi {{");
    let _ = writeln!(s, "\tenabled 1");
    for t in &view.targets {
        let _ = writeln!(s, "\n\tTARGET {} {{", t.iqn);
        for a in view.addresses(&t.portal_group) {
            let _ = writeln!(s, "\t\tallowed_portal {a}");
        }
        for a in &t.incoming_users {
            let _ = writeln!(s, "\t\tIncomingUser \"{} {}\"", a.user, a.secret);
        }
        if let Some(a) = &t.outgoing_user {
            let _ = writeln!(s, "\t\tOutgoingUser \"{} {}\"", a.user, a.secret);
        }
        let mut params: Vec<(&str, &str)> = Vec::new();
        let mut unsupported: Vec<&str> = Vec::new();
        for (k, v) in view.inventory.global_options.iter().chain(&t.options) {
            match scst_param(k) {
                Some(p) => match params.iter_mut().find(|(n, _)| *n == p) {
                    Some(e) => e.1 = v,
                    None => params.push((p, v)),
                },
                None if !unsupported.contains(&k.as_str()) => unsupported.push(k),
                None => {}
            }
        }
        for (k, v) in params {
            let _ = writeln!(s, "\t\t{k} {v}");
        }
        if !unsupported.is_empty() {
            let _ = writeln!(s, "\t\t# not supported by SCST: {}", unsupported.join(", "));
        }
        let _ = writeln!(s, "\n\t\tGROUP allowed {{");
        for (i, l) in t.luns.iter().enumerate() {
            let _ = writeln!(s, "\t\t\tLUN {i} {}", l.serial);
        }
        for n in &t.initiators {
            // SCST's INITIATOR takes wildcards; "*" is every initiator.
            let _ = writeln!(s, "\t\t\tINITIATOR {}", if n == "ALL" { "*" } else { n });
        }
        let _ = writeln!(s, "\t\t}}");
        let _ = writeln!(s, "\n\t\tenabled 1");
        let _ = writeln!(s, "\t}}");
    }
    let _ = writeln!(s, "}}");
    s
}

pub fn generate(view: &NodeView) -> Files {
    vec![("scst.conf".into(), scst_conf(view).into_bytes())]
}
