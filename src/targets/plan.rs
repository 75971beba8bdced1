//! `plan(desired, live, last_applied)`: the pure diff behind `targets
//! apply`. Every change carries its exact tgtadm argument vectors, whether
//! it is disruptive, and the sessions it would hit. Disruptive means it
//! would cut a connected initiator off: removing or downing a target, a LUN
//! path/serial/mode change, a resize (tgt learns a new size only by
//! re-adding the LUN), removing a LUN, dropping the ACL of a connected
//! initiator. Only targets this inventory owns (under its prefix, named by
//! it, or recorded at the last apply) are touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::targets::live::tgt::{LiveState, LiveTarget};
use crate::targets::model::{IoMode, NodeView, Target};
use crate::targets::tgtadm::{self, tgt_lun, tgt_params, Acl, Argv};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Kind {
    #[serde(rename = "=")]
    Unchanged,
    #[serde(rename = "+")]
    Create,
    #[serde(rename = "~")]
    Change,
    #[serde(rename = "-")]
    Remove,
}

impl Kind {
    pub fn symbol(self) -> char {
        match self {
            Kind::Unchanged => '=',
            Kind::Create => '+',
            Kind::Change => '~',
            Kind::Remove => '-',
        }
    }
}

/// A session a change would cut.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Session {
    pub initiator: String,
    pub address: String,
}

/// What happens to one target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: Kind,
    pub iqn: String,
    pub tid: u32,
    /// What changes, one phrase each.
    pub what: Vec<String>,
    pub commands: Vec<Argv>,
    pub disruptive: bool,
    /// Sessions the disruptive part would cut (non-empty: refused without
    /// --force).
    pub sessions: Vec<Session>,
}

impl Change {
    pub fn needs_force(&self) -> bool {
        self.disruptive && !self.sessions.is_empty()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Live targets outside the inventory's ownership: left alone.
    pub unmanaged: Vec<String>,
    pub notes: Vec<String>,
}

impl Plan {
    pub fn commands(&self) -> impl Iterator<Item = &Argv> {
        self.changes.iter().flat_map(|c| &c.commands)
    }
    pub fn is_noop(&self) -> bool {
        self.commands().next().is_none()
    }
    pub fn refused(&self) -> Vec<&Change> {
        self.changes.iter().filter(|c| c.needs_force()).collect()
    }
}

/// What the last apply recorded: the targets it created and their LUN sizes
/// (the seed's lunsize/ directory), for ownership and resize detection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastApplied {
    pub version: u32,
    /// IQN -> tgt LUN -> (device, size in bytes).
    pub targets: BTreeMap<String, BTreeMap<u64, RecordedLun>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedLun {
    pub device: PathBuf,
    pub size: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("device {0} of target {1} does not exist or its size cannot be read")]
    MissingDevice(String, String),
    #[error("target {iqn} exists live as tid {tid} with driver {driver}, not iscsi")]
    WrongDriver { iqn: String, tid: u32, driver: String },
}

/// Plan inputs besides the model: each desired device's current size.
pub struct Inputs<'a> {
    pub view: &'a NodeView<'a>,
    pub live: &'a LiveState,
    pub last: &'a LastApplied,
    pub sizes: &'a BTreeMap<PathBuf, u64>,
}

fn sessions_of(l: &LiveTarget, only: Option<&BTreeSet<String>>) -> Vec<Session> {
    l.sessions()
        .into_iter()
        .filter(|(i, _)| only.map_or(true, |set| set.contains(i)))
        .map(|(initiator, address)| Session { initiator, address })
        .collect()
}

fn conn_deletes(l: &LiveTarget, only: Option<&BTreeSet<String>>) -> Vec<Argv> {
    let mut v = Vec::new();
    for n in &l.nexuses {
        if only.map_or(true, |set| set.contains(&n.initiator)) {
            for c in &n.connections {
                v.push(tgtadm::delete_conn(l.tid, n.sid, c.cid));
            }
        }
    }
    v
}

/// tgt's MB figure (decimal megabytes, rounded) matches a byte size.
fn mb_matches(size_mb: u64, bytes: u64) -> bool {
    let floor = bytes / 1_000_000;
    size_mb == floor || size_mb == floor + 1 || size_mb == (bytes + 500_000) / 1_000_000
}

fn flags_for(io: IoMode) -> &'static str {
    match io {
        IoMode::Blockio => "direct",
        IoMode::Fileio => "",
    }
}

pub fn plan(inp: &Inputs) -> Result<Plan, PlanError> {
    let view = inp.view;
    let live = inp.live;
    let mut plan = Plan::default();
    let mut used_tids: BTreeSet<u32> = live.targets.iter().map(|t| t.tid).collect();
    let mut accounts: BTreeSet<String> = live.accounts.iter().cloned().collect();
    let desired: BTreeSet<String> = view.targets.iter().map(|t| t.iqn.to_ascii_lowercase()).collect();

    for t in &view.targets {
        for lun in &t.luns {
            if !inp.sizes.contains_key(&lun.device) {
                return Err(PlanError::MissingDevice(lun.device.display().to_string(), t.iqn.clone()));
            }
        }
        let (params, unsupported) = tgt_params(&view.inventory.global_options, t);
        if !unsupported.is_empty() {
            plan.notes.push(format!("{}: options tgt does not have, not applied: {}", t.iqn, unsupported.join(", ")));
        }
        match live.target(&t.iqn) {
            None => {
                let tid = (1..).find(|n| !used_tids.contains(n)).expect("a free tid");
                used_tids.insert(tid);
                let mut fresh = |u: &str| accounts.insert(u.to_string());
                let commands = tgtadm::create_target(tid, t, &params, &mut fresh);
                plan.changes.push(Change {
                    kind: Kind::Create,
                    iqn: t.iqn.clone(),
                    tid,
                    what: vec![format!("create with {} LUN(s)", t.luns.len())],
                    commands,
                    disruptive: false,
                    sessions: Vec::new(),
                });
            }
            Some(l) => {
                if l.driver != "iscsi" {
                    return Err(PlanError::WrongDriver { iqn: t.iqn.clone(), tid: l.tid, driver: l.driver.clone() });
                }
                plan.changes.push(diff_target(t, l, &params, &mut accounts, inp));
            }
        }
    }
    for l in &live.targets {
        if desired.contains(&l.iqn.to_ascii_lowercase()) {
            continue;
        }
        let owned = view.inventory.owns(&l.iqn) || inp.last.targets.keys().any(|k| k.eq_ignore_ascii_case(&l.iqn));
        if !owned {
            plan.unmanaged.push(l.iqn.clone());
            continue;
        }
        let sessions = sessions_of(l, None);
        let commands = if sessions.is_empty() {
            vec![tgtadm::delete_target(l.tid, false)]
        } else {
            // offline -> unbind -> delete connections -> delete.
            let mut c = vec![tgtadm::set_state(l.tid, "offline")];
            for a in &l.acl_addresses {
                c.push(tgtadm::unbind(l.tid, &Acl::Address(a.clone())));
            }
            for n in &l.acl_names {
                c.push(tgtadm::unbind(l.tid, &Acl::Name(n.clone())));
            }
            c.extend(conn_deletes(l, None));
            c.push(tgtadm::delete_target(l.tid, true));
            c
        };
        let why = match view.inventory.targets.iter().find(|t| t.iqn.eq_ignore_ascii_case(&l.iqn)) {
            Some(t) if t.state == crate::targets::model::TargetState::Down => "remove (state down)".to_string(),
            Some(_) => "remove (its volume group is not active on this node)".to_string(),
            None => "remove (not in the inventory)".to_string(),
        };
        plan.changes.push(Change {
            kind: Kind::Remove,
            iqn: l.iqn.clone(),
            tid: l.tid,
            what: vec![why],
            commands,
            disruptive: true,
            sessions,
        });
    }
    Ok(plan)
}

fn diff_target(
    t: &Target,
    l: &LiveTarget,
    params: &[(String, String)],
    accounts: &mut BTreeSet<String>,
    inp: &Inputs,
) -> Change {
    let tid = l.tid;
    let mut what = Vec::new();
    let mut quiet: Vec<Argv> = Vec::new(); // non-disruptive
    let mut lun_ops: Vec<Argv> = Vec::new(); // need the LUN re-added
    let mut acl_cut: Vec<Argv> = Vec::new();
    let mut cut_initiators: BTreeSet<String> = BTreeSet::new();
    let mut disruptive = false;
    let recorded = inp.last.targets.iter().find(|(k, _)| k.eq_ignore_ascii_case(&t.iqn)).map(|(_, v)| v);

    // LUNs.
    for (i, lun) in t.luns.iter().enumerate() {
        let n = tgt_lun(i);
        let dev = lun.device.to_string_lossy().into_owned();
        let size = inp.sizes[&lun.device];
        let add = || vec![tgtadm::new_lun(tid, n, &dev, lun.io), tgtadm::lun_serial(tid, n, &lun.serial)];
        match l.luns.iter().find(|x| x.lun == n) {
            None => {
                what.push(format!("add LUN {n} {dev}"));
                quiet.extend(add());
            }
            Some(x) => {
                let mut reasons = Vec::new();
                if x.backing_path.as_deref() != Some(dev.as_str()) {
                    reasons.push(format!("path {} -> {dev}", x.backing_path.as_deref().unwrap_or("none")));
                }
                if x.scsi_id != lun.serial || x.scsi_sn != lun.serial {
                    reasons.push(format!("serial {} -> {}", x.scsi_id, lun.serial));
                }
                if x.backing_flags != flags_for(lun.io) {
                    reasons.push(format!("io mode -> {}", lun.io.iet_type()));
                }
                if reasons.is_empty() {
                    let rec = recorded.and_then(|r| r.get(&n)).filter(|r| r.device == lun.device);
                    let grown = match rec {
                        Some(r) => r.size != size,
                        None => !mb_matches(x.size_mb, size),
                    };
                    if grown {
                        let was = rec.map(|r| format!("{} bytes", r.size)).unwrap_or(format!("{} MB", x.size_mb));
                        reasons.push(format!("resize {was} -> {size} bytes"));
                    }
                }
                if !reasons.is_empty() {
                    what.push(format!("re-add LUN {n}: {}", reasons.join(", ")));
                    lun_ops.push(tgtadm::delete_lun(tid, n));
                    lun_ops.extend(add());
                    disruptive = true;
                }
            }
        }
    }
    for x in &l.luns {
        if x.kind != "controller" && x.lun > t.luns.len() as u64 {
            what.push(format!("remove LUN {} {}", x.lun, x.backing_path.as_deref().unwrap_or("")));
            lun_ops.push(tgtadm::delete_lun(tid, x.lun));
            disruptive = true;
        }
    }
    // Parameters.
    let live_params = inp.live.params_of(tid);
    for (k, v) in params {
        let cur = live_params.iter().find(|(lk, _)| lk == k).map(|(_, lv)| lv.as_str());
        if !cur.is_some_and(|c| c.eq_ignore_ascii_case(v)) {
            what.push(format!("set {k}={v}"));
            quiet.push(tgtadm::set_param(tid, k, v));
        }
    }
    // Accounts.
    for (users, live_users, outgoing) in [
        (t.incoming_users.iter().collect::<Vec<_>>(), &l.incoming_users, false),
        (t.outgoing_user.iter().collect::<Vec<_>>(), &l.outgoing_users, true),
    ] {
        for a in &users {
            if !live_users.contains(&a.user) {
                if accounts.insert(a.user.clone()) {
                    quiet.push(tgtadm::new_account(&a.user, &a.secret));
                }
                what.push(format!("bind {}account {}", if outgoing { "outgoing " } else { "" }, a.user));
                quiet.push(tgtadm::bind_account(tid, &a.user, outgoing));
            }
        }
        for u in live_users.iter() {
            if !users.iter().any(|a| &a.user == u) {
                what.push(format!("unbind {}account {u}", if outgoing { "outgoing " } else { "" }));
                quiet.push(tgtadm::unbind_account(tid, u, outgoing));
            }
        }
    }
    // ACLs: binds first, so a switch never opens a gap. Kept apart from the
    // other quiet commands: on a target nobody is connected to they go
    // after any LUN re-add (see below).
    let mut acl = Vec::new();
    let want = tgtadm::target_acls(t);
    let have: Vec<Acl> = l
        .acl_addresses
        .iter()
        .map(|a| Acl::Address(a.clone()))
        .chain(l.acl_names.iter().map(|n| Acl::Name(n.clone())))
        .collect();
    for a in &want {
        if !have.contains(a) {
            what.push(format!("allow {}", a.text()));
            acl.push(tgtadm::bind(tid, a));
        }
    }
    let allowed_after: BTreeSet<String> =
        if t.open_to_all() { BTreeSet::new() } else { t.initiators.iter().cloned().collect() };
    for a in &have {
        if want.contains(a) {
            continue;
        }
        what.push(format!("disallow {}", a.text()));
        // Who loses access: the named initiator, or (an address entry) every
        // connected initiator the new ACL does not name.
        let losing: BTreeSet<String> = match a {
            // A target opened to ALL keeps admitting the initiator a dropped
            // name entry named: nobody loses access, no session is cut.
            _ if t.open_to_all() => BTreeSet::new(),
            Acl::Name(n) => [n.clone()].into(),
            Acl::Address(_) => {
                l.nexuses.iter().map(|n| n.initiator.clone()).filter(|i| !allowed_after.contains(i)).collect()
            }
        };
        let connected: BTreeSet<String> =
            l.nexuses.iter().map(|n| n.initiator.clone()).filter(|i| losing.contains(i)).collect();
        if connected.is_empty() {
            acl.push(tgtadm::unbind(tid, a));
        } else {
            disruptive = true;
            acl_cut.push(tgtadm::unbind(tid, a));
            cut_initiators.extend(connected);
        }
    }
    let state_fix = l.state != "ready";
    if state_fix {
        what.push(format!("state {} -> ready", l.state));
    }

    let has_sessions = !l.nexuses.is_empty();
    let mut commands = quiet;
    let mut sessions = Vec::new();
    if !lun_ops.is_empty() {
        if has_sessions {
            commands.append(&mut acl);
            // offline -> delete connections -> re-add LUNs -> ready: the
            // initiators reconnect and see the new LUNs.
            commands.push(tgtadm::set_state(tid, "offline"));
            commands.append(&mut acl_cut);
            commands.extend(conn_deletes(l, None));
            commands.extend(lun_ops);
            commands.push(tgtadm::set_state(tid, "ready"));
            sessions = sessions_of(l, None);
        } else {
            // Nobody is connected: a LUN is re-added before the ACLs open
            // the target, so a target a killed apply left half made (a LUN
            // without its serial, no ACL yet) is complete before anyone
            // may log in, as a new target is.
            commands.extend(lun_ops);
            if state_fix {
                commands.push(tgtadm::set_state(tid, "ready"));
            }
            commands.append(&mut acl);
        }
    } else {
        commands.append(&mut acl);
        if state_fix {
            commands.push(tgtadm::set_state(tid, "ready"));
        }
    }
    if !acl_cut.is_empty() {
        commands.extend(acl_cut);
        commands.extend(conn_deletes(l, Some(&cut_initiators)));
        sessions = sessions_of(l, Some(&cut_initiators));
    }
    let kind = if commands.is_empty() { Kind::Unchanged } else { Kind::Change };
    Change { kind, iqn: t.iqn.clone(), tid, what, commands, disruptive, sessions }
}

/// The record to write after a successful apply.
pub fn record(view: &NodeView, sizes: &BTreeMap<PathBuf, u64>) -> LastApplied {
    let mut targets = BTreeMap::new();
    for t in &view.targets {
        let luns = t
            .luns
            .iter()
            .enumerate()
            .map(|(i, l)| {
                (tgt_lun(i), RecordedLun { device: l.device.clone(), size: sizes.get(&l.device).copied().unwrap_or(0) })
            })
            .collect();
        targets.insert(t.iqn.clone(), luns);
    }
    LastApplied { version: 1, targets }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::inventory::parse_file;
    use crate::targets::live::tgt::{Connection, LiveLun, Nexus};
    use crate::targets::model::Inventory;

    const INV: &str = r#"
[targets]
prefix = "iqn.2024-01.test:t"
hosts = ["n1"]
file_groups = { vg_f = "/srv/luns" }
target_options = [["ImmediateData", "No"], ["NOPTimeout", "5"]]
[targets.portal_groups.pg]
n1 = ["127.0.0.1"]
[[targets.target]]
state = "up"
device = "/srv/luns/lv_a"
io = "fileio"
serial = "SA"
portal_group = "pg"
initiators = ["iqn.2024-01.test:i1"]
"#;

    fn inv(text: &str) -> Inventory {
        parse_file(text, std::path::Path::new("inv.toml")).unwrap()
    }

    fn sizes() -> BTreeMap<PathBuf, u64> {
        [(PathBuf::from("/srv/luns/lv_a"), 16 << 20)].into()
    }

    fn live_a(sessions: bool) -> LiveState {
        let t = LiveTarget {
            tid: 1,
            iqn: "iqn.2024-01.test:t.pg.vg-f.lv-a".into(),
            driver: "iscsi".into(),
            state: "ready".into(),
            nexuses: if sessions {
                vec![Nexus {
                    sid: 7,
                    initiator: "iqn.2024-01.test:i1".into(),
                    alias: None,
                    connections: vec![Connection { cid: 0, address: "127.0.0.9".into() }],
                }]
            } else {
                vec![]
            },
            luns: vec![LiveLun {
                lun: 1,
                kind: "disk".into(),
                scsi_id: "SA".into(),
                scsi_sn: "SA".into(),
                size_mb: 17,
                block_size: 512,
                online: true,
                readonly: false,
                backing_type: "rdwr".into(),
                backing_path: Some("/srv/luns/lv_a".into()),
                backing_flags: "".into(),
            }],
            incoming_users: vec![],
            outgoing_users: vec![],
            acl_addresses: vec!["0.0.0.0/32".into()],
            acl_names: vec!["iqn.2024-01.test:i1".into()],
        };
        LiveState { targets: vec![t], params: vec![(1, vec![("ImmediateData".into(), "No".into())])], accounts: vec![] }
    }

    fn run(inventory: &Inventory, live: &LiveState, s: &BTreeMap<PathBuf, u64>) -> Plan {
        let view = inventory.node_view("n1", ["vg_f".to_string()].into());
        plan(&Inputs { view: &view, live, last: &LastApplied::default(), sizes: s }).unwrap()
    }

    #[test]
    fn from_empty_creates_with_acl_last() {
        let i = inv(INV);
        let p = run(&i, &LiveState { targets: vec![], params: vec![], accounts: vec![] }, &sizes());
        assert_eq!(p.changes.len(), 1);
        let c = &p.changes[0];
        assert_eq!(c.kind, Kind::Create);
        assert_eq!(c.commands[0], tgtadm::new_target(1, "iqn.2024-01.test:t.pg.vg-f.lv-a"));
        assert_eq!(c.commands.last().unwrap(), &tgtadm::bind(1, &Acl::Name("iqn.2024-01.test:i1".into())));
        assert!(p.notes[0].contains("NOPTimeout"));
    }

    /// Finding T11 (attack-targets): after an apply killed between a LUN's
    /// creation and its serial (no ACL bound yet), the rerun bound the ACL
    /// first, so initiators could log in to the half-made target and see the
    /// LUN with tgt's default serial, which was then deleted under them.
    #[test]
    fn a_half_made_target_is_completed_before_its_acl_opens_it() {
        let i = inv(INV);
        let mut live = live_a(false);
        let t = &mut live.targets[0];
        t.acl_addresses.clear();
        t.acl_names.clear();
        t.luns[0].scsi_id = "IET     00010001".into();
        t.luns[0].scsi_sn = "beaf11".into();
        let p = run(&i, &live, &sizes());
        let c = &p.changes[0];
        let serial = c.commands.iter().position(|a| a == &tgtadm::lun_serial(1, 1, "SA")).expect("serial fixed");
        let first_bind = c.commands.iter().position(|a| a[1] == "bind").expect("ACL bound");
        assert!(serial < first_bind, "{:#?}", c.commands);
        assert_eq!(c.commands.last().unwrap(), &tgtadm::bind(1, &Acl::Name("iqn.2024-01.test:i1".into())));
    }

    /// Finding T15 (attack-targets): opening a target to ALL dropped its
    /// initiator-name entries as if those initiators lost access: refused
    /// (exit 3) with a session, and with --force the session was cut,
    /// although ALL still admits it.
    #[test]
    fn opening_a_target_to_all_cuts_no_session() {
        let i = inv(&INV.replace(r#"initiators = ["iqn.2024-01.test:i1"]"#, r#"initiators = ["ALL"]"#));
        let p = run(&i, &live_a(true), &sizes());
        let c = &p.changes[0];
        assert!(!c.disruptive && !c.needs_force(), "{c:#?}");
        assert!(c.sessions.is_empty(), "{c:#?}");
        assert_eq!(c.commands[0], tgtadm::bind(1, &Acl::Address("ALL".into())));
        assert!(c.commands.contains(&tgtadm::unbind(1, &Acl::Name("iqn.2024-01.test:i1".into()))));
        assert!(!c.commands.iter().any(|a| a.contains(&"connection".to_string())), "{:#?}", c.commands);
    }

    #[test]
    fn matching_live_state_is_a_noop() {
        let i = inv(INV);
        let p = run(&i, &live_a(true), &sizes());
        assert!(p.is_noop(), "{p:#?}");
        assert_eq!(p.changes[0].kind, Kind::Unchanged);
    }

    #[test]
    fn adding_an_initiator_is_not_disruptive() {
        let i = inv(&INV.replace(
            r#"initiators = ["iqn.2024-01.test:i1"]"#,
            r#"initiators = ["iqn.2024-01.test:i1", "iqn.2024-01.test:i2"]"#,
        ));
        let p = run(&i, &live_a(true), &sizes());
        let c = &p.changes[0];
        assert_eq!(c.commands, [tgtadm::bind(1, &Acl::Name("iqn.2024-01.test:i2".into()))]);
        assert!(!c.needs_force());
    }

    #[test]
    fn disruptive_changes_name_the_session() {
        let table: Vec<(&str, &str, &str)> = vec![
            (
                r#"initiators = ["iqn.2024-01.test:i1"]"#,
                r#"initiators = ["iqn.2024-01.test:i2"]"#,
                "disallow iqn.2024-01.test:i1",
            ),
            (r#"serial = "SA""#, r#"serial = "SB""#, "serial SA -> SB"),
            (r#"state = "up""#, r#"state = "down""#, "remove (state down)"),
            (r#"io = "fileio""#, r#"io = "blockio""#, "io mode"),
        ];
        for (from, to, needle) in table {
            let i = inv(&INV.replace(from, to));
            let p = run(&i, &live_a(true), &sizes());
            let c = p.changes.iter().find(|c| c.disruptive).unwrap_or_else(|| panic!("{to}: {p:#?}"));
            assert!(c.what.iter().any(|w| w.contains(needle)), "{to}: {:?}", c.what);
            assert_eq!(c.sessions, [Session { initiator: "iqn.2024-01.test:i1".into(), address: "127.0.0.9".into() }]);
            assert!(c.needs_force());
            // Without sessions the same change goes through.
            let p = run(&i, &live_a(false), &sizes());
            assert!(p.refused().is_empty(), "{to}");
        }
    }

    #[test]
    fn resize_is_detected_and_sequenced() {
        let i = inv(INV);
        let big: BTreeMap<PathBuf, u64> = [(PathBuf::from("/srv/luns/lv_a"), 32 << 20)].into();
        let p = run(&i, &live_a(true), &big);
        let c = &p.changes[0];
        assert!(c.what[0].contains("resize"), "{:?}", c.what);
        assert_eq!(
            c.commands,
            [
                tgtadm::set_state(1, "offline"),
                tgtadm::delete_conn(1, 7, 0),
                tgtadm::delete_lun(1, 1),
                tgtadm::new_lun(1, 1, "/srv/luns/lv_a", IoMode::Fileio),
                tgtadm::lun_serial(1, 1, "SA"),
                tgtadm::set_state(1, "ready"),
            ]
        );
        // Against a recorded size a growth below tgt's MB resolution counts.
        let view = i.node_view("n1", ["vg_f".to_string()].into());
        let last = record(&view, &sizes());
        let tiny: BTreeMap<PathBuf, u64> = [(PathBuf::from("/srv/luns/lv_a"), (16 << 20) + 4096)].into();
        let p = plan(&Inputs { view: &view, live: &live_a(false), last: &last, sizes: &tiny }).unwrap();
        assert!(p.changes[0].what[0].contains("resize"));
    }

    #[test]
    fn foreign_targets_are_left_alone_and_owned_ones_removed() {
        let i = inv(INV);
        let mut live = live_a(false);
        let mut foreign = live.targets[0].clone();
        foreign.tid = 2;
        foreign.iqn = "iqn.2024-01.other:x".into();
        let mut stale = live.targets[0].clone();
        stale.tid = 3;
        stale.iqn = "iqn.2024-01.test:t.pg.vg-f.lv-gone".into();
        live.targets.push(foreign);
        live.targets.push(stale);
        let p = run(&i, &live, &sizes());
        assert_eq!(p.unmanaged, ["iqn.2024-01.other:x"]);
        let rm = p.changes.iter().find(|c| c.kind == Kind::Remove).unwrap();
        assert_eq!(rm.commands, [tgtadm::delete_target(3, false)]);
    }

    #[test]
    fn a_missing_device_refuses_the_plan() {
        let i = inv(INV);
        let view = i.node_view("n1", ["vg_f".to_string()].into());
        let e =
            plan(&Inputs { view: &view, live: &live_a(false), last: &LastApplied::default(), sizes: &BTreeMap::new() });
        assert!(matches!(e, Err(PlanError::MissingDevice(..))));
    }
}
