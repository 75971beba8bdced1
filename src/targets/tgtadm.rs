//! tgtadm argument vectors (pure): what `targets gen tgt --tgtadm` prints,
//! what `targets apply` runs, and what an export of a single volume (the
//! archive's LUN snapshots) needs. The control port and `--lld iscsi` are
//! added by the caller's [`crate::targets::live::tgt::Tgtadm`].
//!
//! tgt's LUN 0 is its controller: the inventory's LUN N (IET numbering,
//! the volume itself is 0) is tgt's LUN N+1.

use crate::targets::model::{IoMode, Target};

/// One tgtadm invocation, without program, control port and lld.
pub type Argv = Vec<String>;

/// Replacement shown for CHAP secrets in printed plans.
pub const SECRET_MASK: &str = "********";

fn v(parts: &[&str]) -> Argv {
    parts.iter().map(|s| s.to_string()).collect()
}

/// The tgt LUN number of the inventory's LUN `index`.
pub fn tgt_lun(index: usize) -> u64 {
    index as u64 + 1
}

/// The ACL address that disables tgt's address match for a name-restricted
/// target: since tgt 1.0.83 a login passes when the address ACL OR the name
/// ACL matches, and no address ACL would mean "any address".
pub const NO_ADDRESS: &str = "0.0.0.0/32";

/// Known tgt target parameters (`tgtadm --op show --mode target --tid N`).
pub const TGT_PARAMS: &[&str] = &[
    "MaxRecvDataSegmentLength",
    "HeaderDigest",
    "DataDigest",
    "InitialR2T",
    "MaxOutstandingR2T",
    "ImmediateData",
    "FirstBurstLength",
    "MaxBurstLength",
    "DataPDUInOrder",
    "DataSequenceInOrder",
    "ErrorRecoveryLevel",
    "IFMarker",
    "OFMarker",
    "DefaultTime2Wait",
    "DefaultTime2Retain",
    "OFMarkInt",
    "IFMarkInt",
    "MaxConnections",
    "RDMAExtensions",
    "TargetRecvDataSegmentLength",
    "InitiatorRecvDataSegmentLength",
    "MaxOutstandingUnexpectedPDUs",
    "MaxXmitDataSegmentLength",
    "MaxQueueCmd",
    "nop_interval",
    "nop_count",
];

/// Maps an IET option to tgt's parameter name (None: tgt has no such knob).
pub fn tgt_param_name(iet: &str) -> Option<&'static str> {
    match iet {
        "NOPInterval" => Some("nop_interval"),
        "QueuedCommands" => Some("MaxQueueCmd"),
        other => TGT_PARAMS.iter().copied().find(|p| *p == other),
    }
}

/// The effective tgt parameters of a target (global options, then the
/// target's, later ones winning), and the options tgt cannot take.
pub fn tgt_params(global: &[(String, String)], target: &Target) -> (Vec<(String, String)>, Vec<String>) {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut unsupported = Vec::new();
    for (k, val) in global.iter().chain(&target.options) {
        match tgt_param_name(k) {
            Some(name) => match out.iter_mut().find(|(n, _)| n == name) {
                Some(e) => e.1 = val.clone(),
                None => out.push((name.to_string(), val.clone())),
            },
            None => {
                if !unsupported.contains(k) {
                    unsupported.push(k.clone())
                }
            }
        }
    }
    (out, unsupported)
}

pub fn new_target(tid: u32, iqn: &str) -> Argv {
    v(&["--op", "new", "--mode", "target", "--tid", &tid.to_string(), "--targetname", iqn])
}

pub fn delete_target(tid: u32, force: bool) -> Argv {
    let mut a = v(&["--op", "delete"]);
    if force {
        a.push("--force".into());
    }
    a.extend(v(&["--mode", "target", "--tid", &tid.to_string()]));
    a
}

/// `state` is `offline` or `ready`.
pub fn set_state(tid: u32, state: &str) -> Argv {
    v(&["--op", "update", "--mode", "target", "--tid", &tid.to_string(), "--name", "state", "--value", state])
}

pub fn new_lun(tid: u32, lun: u64, device: &str, io: IoMode) -> Argv {
    let mut a = v(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        &tid.to_string(),
        "--lun",
        &lun.to_string(),
        "--backing-store",
        device,
        "--bstype",
        "rdwr",
    ]);
    if io == IoMode::Blockio {
        a.extend(v(&["--bsoflags", "direct"]));
    }
    a
}

pub fn lun_serial(tid: u32, lun: u64, serial: &str) -> Argv {
    v(&[
        "--op",
        "update",
        "--mode",
        "logicalunit",
        "--tid",
        &tid.to_string(),
        "--lun",
        &lun.to_string(),
        "--params",
        &format!("scsi_id={serial},scsi_sn={serial}"),
    ])
}

pub fn delete_lun(tid: u32, lun: u64) -> Argv {
    v(&["--op", "delete", "--mode", "logicalunit", "--tid", &tid.to_string(), "--lun", &lun.to_string()])
}

/// An ACL entry: an initiator name, or an address (`ALL`, `0.0.0.0/32`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Acl {
    Name(String),
    Address(String),
}

impl Acl {
    pub fn text(&self) -> &str {
        match self {
            Acl::Name(s) | Acl::Address(s) => s,
        }
    }
}

/// The ACL entries a target needs in tgt.
pub fn target_acls(t: &Target) -> Vec<Acl> {
    if t.open_to_all() {
        return vec![Acl::Address("ALL".into())];
    }
    let mut v = vec![Acl::Address(NO_ADDRESS.into())];
    v.extend(t.initiators.iter().map(|n| Acl::Name(n.clone())));
    v
}

pub fn bind(tid: u32, acl: &Acl) -> Argv {
    match acl {
        Acl::Name(n) => v(&["--op", "bind", "--mode", "target", "--tid", &tid.to_string(), "--initiator-name", n]),
        Acl::Address(a) => {
            v(&["--op", "bind", "--mode", "target", "--tid", &tid.to_string(), "--initiator-address", a])
        }
    }
}

pub fn unbind(tid: u32, acl: &Acl) -> Argv {
    let mut a = bind(tid, acl);
    a[1] = "unbind".into();
    a
}

pub fn new_account(user: &str, secret: &str) -> Argv {
    v(&["--op", "new", "--mode", "account", "--user", user, "--password", secret])
}

pub fn bind_account(tid: u32, user: &str, outgoing: bool) -> Argv {
    let mut a = v(&["--op", "bind", "--mode", "account", "--tid", &tid.to_string(), "--user", user]);
    if outgoing {
        a.push("--outgoing".into());
    }
    a
}

pub fn unbind_account(tid: u32, user: &str, outgoing: bool) -> Argv {
    let mut a = bind_account(tid, user, outgoing);
    a[1] = "unbind".into();
    a
}

pub fn set_param(tid: u32, name: &str, value: &str) -> Argv {
    v(&["--op", "update", "--mode", "target", "--tid", &tid.to_string(), "--name", name, "--value", value])
}

pub fn delete_conn(tid: u32, sid: u64, cid: u64) -> Argv {
    v(&[
        "--op",
        "delete",
        "--mode",
        "conn",
        "--tid",
        &tid.to_string(),
        "--sid",
        &sid.to_string(),
        "--cid",
        &cid.to_string(),
    ])
}

/// Everything that creates `t` as tid `tid` on an empty tgtd (accounts are
/// created first where `create_accounts` says they are missing).
pub fn create_target(
    tid: u32,
    t: &Target,
    params: &[(String, String)],
    create_accounts: &mut dyn FnMut(&str) -> bool,
) -> Vec<Argv> {
    let mut out = vec![new_target(tid, &t.iqn)];
    for (i, lun) in t.luns.iter().enumerate() {
        let dev = lun.device.to_string_lossy();
        out.push(new_lun(tid, tgt_lun(i), &dev, lun.io));
        out.push(lun_serial(tid, tgt_lun(i), &lun.serial));
    }
    for (k, val) in params {
        out.push(set_param(tid, k, val));
    }
    for a in &t.incoming_users {
        if create_accounts(&a.user) {
            out.push(new_account(&a.user, &a.secret));
        }
        out.push(bind_account(tid, &a.user, false));
    }
    if let Some(a) = &t.outgoing_user {
        if create_accounts(&a.user) {
            out.push(new_account(&a.user, &a.secret));
        }
        out.push(bind_account(tid, &a.user, true));
    }
    // ACLs last: the target is reachable only once it is complete.
    for acl in target_acls(t) {
        out.push(bind(tid, &acl));
    }
    out
}

/// An argv for printing: CHAP passwords masked.
pub fn masked(argv: &[String]) -> Vec<String> {
    let mut out = argv.to_vec();
    for i in 1..out.len() {
        if out[i - 1] == "--password" {
            out[i] = SECRET_MASK.to_string();
        }
    }
    out
}

/// Exporting one volume (e.g. a LUN snapshot for the archive host) as its
/// own target, visible to one initiator only: target, LUN 1 with
/// `serial`, `0.0.0.0/32` plus the initiator's name (see [`NO_ADDRESS`]).
pub fn export_single(tid: u32, iqn: &str, device: &str, io: IoMode, serial: &str, initiator: &str) -> Vec<Argv> {
    vec![
        new_target(tid, iqn),
        new_lun(tid, 1, device, io),
        lun_serial(tid, 1, serial),
        bind(tid, &Acl::Address(NO_ADDRESS.into())),
        bind(tid, &Acl::Name(initiator.into())),
    ]
}

/// Removing an export whatever its sessions: offline, unbind, delete its
/// connections, delete (the forced removal sequence of `targets apply`).
pub fn remove_export(t: &crate::targets::live::tgt::LiveTarget) -> Vec<Argv> {
    let mut c = vec![set_state(t.tid, "offline")];
    c.extend(t.acl_addresses.iter().map(|a| unbind(t.tid, &Acl::Address(a.clone()))));
    c.extend(t.acl_names.iter().map(|n| unbind(t.tid, &Acl::Name(n.clone()))));
    for n in &t.nexuses {
        for conn in &n.connections {
            c.push(delete_conn(t.tid, n.sid, conn.cid));
        }
    }
    c.push(delete_target(t.tid, true));
    c
}

/// The lowest tid no live target uses.
pub fn free_tid(live: &[crate::targets::live::tgt::LiveTarget]) -> u32 {
    (1..).find(|n| !live.iter().any(|t| t.tid == *n)).expect("a free tid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_export_is_name_restricted_and_removal_cuts_sessions() {
        let c =
            export_single(4, "iqn.2024-01.x:snap", "/srv/snap.img", IoMode::Fileio, "SNAP1", "iqn.2024-01.x:archive");
        assert_eq!(c.len(), 5);
        assert_eq!(c[3], bind(4, &Acl::Address("0.0.0.0/32".into())));
        let live = crate::targets::live::tgt::parse_show_targets(include_str!(
            "../../tests/fixtures/tgt/1.0.85/show-target.txt"
        ))
        .unwrap();
        let r = remove_export(&live[0]);
        assert_eq!(r.first().unwrap(), &set_state(1, "offline"));
        assert!(r.contains(&delete_conn(1, 1, 0)));
        assert_eq!(r.last().unwrap(), &delete_target(1, true));
        assert_eq!(free_tid(&live), 3);
    }

    #[test]
    fn secrets_are_masked_and_params_mapped() {
        assert_eq!(masked(&new_account("u", "s3cret-s3cret")).last().unwrap(), SECRET_MASK);
        assert_eq!(tgt_param_name("NOPInterval"), Some("nop_interval"));
        assert_eq!(tgt_param_name("NOPTimeout"), None);
    }
}
