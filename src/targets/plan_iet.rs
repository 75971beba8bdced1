//! `targets plan --backend iet`: the ietadm commands that bring a running
//! IET (read from /proc/net/iet) to the inventory, in the same order and
//! with the same disruptive rules as the tgt plan. Printed, never run:
//! there is no IET on current kernels, so this is tested on fixtures.
//! IET's ACLs live in initiators.allow / targets.allow, which
//! `targets gen iet` writes; IET reads them at each login.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::targets::live::iet::IetTarget;
use crate::targets::model::NodeView;
use crate::targets::plan::{Kind, Session};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IetChange {
    pub kind: Kind,
    pub iqn: String,
    pub tid: u32,
    pub what: Vec<String>,
    pub commands: Vec<Vec<String>>,
    pub disruptive: bool,
    pub sessions: Vec<Session>,
}

fn cmd(parts: &[String]) -> Vec<String> {
    std::iter::once("ietadm".to_string()).chain(parts.iter().cloned()).collect()
}

fn lun_params(path: &str, io: &str, serial: &str) -> String {
    format!("Path={path},Type={io},ScsiId={serial},ScsiSN={serial}")
}

/// An ietadm argv for printing: `Password=` values masked.
pub fn masked(argv: &[String]) -> Vec<String> {
    argv.iter()
        .map(|a| match a.find("Password=") {
            Some(i) => format!("{}Password={}", &a[..i], crate::targets::tgtadm::SECRET_MASK),
            None => a.clone(),
        })
        .collect()
}

pub fn plan(view: &NodeView, live: &[IetTarget], sizes: &BTreeMap<PathBuf, u64>) -> Vec<IetChange> {
    let mut out = Vec::new();
    let mut used: BTreeSet<u32> = live.iter().map(|t| t.tid).collect();
    let desired: BTreeSet<String> = view.targets.iter().map(|t| t.iqn.to_ascii_lowercase()).collect();
    for t in &view.targets {
        let sessions_of = |l: &IetTarget| -> Vec<Session> {
            l.sessions
                .iter()
                .flat_map(|s| {
                    s.conns.iter().map(move |c| Session { initiator: s.initiator.clone(), address: c.ip.clone() })
                })
                .collect()
        };
        match live.iter().find(|l| l.name.eq_ignore_ascii_case(&t.iqn)) {
            None => {
                let tid = (1..).find(|n| !used.contains(n)).expect("free tid");
                used.insert(tid);
                let tids = format!("--tid={tid}");
                let mut c = vec![cmd(&[
                    "--op".into(),
                    "new".into(),
                    tids.clone(),
                    "--params".into(),
                    format!("Name={}", t.iqn),
                ])];
                for (i, l) in t.luns.iter().enumerate() {
                    c.push(cmd(&[
                        "--op".into(),
                        "new".into(),
                        tids.clone(),
                        format!("--lun={i}"),
                        "--params".into(),
                        lun_params(&l.device.to_string_lossy(), l.io.iet_type(), &l.serial),
                    ]));
                }
                for a in &t.incoming_users {
                    c.push(cmd(&[
                        "--op".into(),
                        "new".into(),
                        tids.clone(),
                        "--user".into(),
                        "--params".into(),
                        format!("IncomingUser={},Password={}", a.user, a.secret),
                    ]));
                }
                if let Some(a) = &t.outgoing_user {
                    c.push(cmd(&[
                        "--op".into(),
                        "new".into(),
                        tids.clone(),
                        "--user".into(),
                        "--params".into(),
                        format!("OutgoingUser={},Password={}", a.user, a.secret),
                    ]));
                }
                for (k, v) in &t.options {
                    c.push(cmd(&["--op".into(), "update".into(), tids.clone(), "--params".into(), format!("{k}={v}")]));
                }
                out.push(IetChange {
                    kind: Kind::Create,
                    iqn: t.iqn.clone(),
                    tid,
                    what: vec!["create".into()],
                    commands: c,
                    disruptive: false,
                    sessions: vec![],
                });
            }
            Some(l) => {
                let tids = format!("--tid={}", l.tid);
                let mut what = Vec::new();
                let mut c = Vec::new();
                let mut disruptive = false;
                for (i, lun) in t.luns.iter().enumerate() {
                    let path = lun.device.to_string_lossy().into_owned();
                    let add = cmd(&[
                        "--op".into(),
                        "new".into(),
                        tids.clone(),
                        format!("--lun={i}"),
                        "--params".into(),
                        lun_params(&path, lun.io.iet_type(), &lun.serial),
                    ]);
                    match l.luns.iter().find(|x| x.lun == i as u32) {
                        None => {
                            what.push(format!("add LUN {i}"));
                            c.push(add);
                        }
                        Some(x) => {
                            let live_size = x.blocks.zip(x.blocksize).map(|(b, s)| b * s);
                            let mut reasons = Vec::new();
                            if x.path != path {
                                reasons.push(format!("path {} -> {path}", x.path));
                            }
                            if x.scsi_sn.as_ref().is_some_and(|s| s != &lun.serial) {
                                reasons.push(format!("serial -> {}", lun.serial));
                            }
                            if x.iotype.as_ref().is_some_and(|s| s != lun.io.iet_type()) {
                                reasons.push(format!("type -> {}", lun.io.iet_type()));
                            }
                            if let (Some(now), Some(was)) = (sizes.get(&lun.device), live_size) {
                                if *now != was {
                                    reasons.push(format!("resize {was} -> {now} bytes"));
                                }
                            }
                            if !reasons.is_empty() {
                                what.push(format!("re-add LUN {i}: {}", reasons.join(", ")));
                                disruptive = true;
                                for s in &l.sessions {
                                    for cn in &s.conns {
                                        c.push(cmd(&[
                                            "--op".into(),
                                            "delete".into(),
                                            tids.clone(),
                                            format!("--sid={}", s.sid),
                                            format!("--cid={}", cn.cid),
                                        ]));
                                    }
                                }
                                c.push(cmd(&["--op".into(), "delete".into(), tids.clone(), format!("--lun={i}")]));
                                c.push(add);
                            }
                        }
                    }
                }
                let kind = if c.is_empty() { Kind::Unchanged } else { Kind::Change };
                let sessions = if disruptive { sessions_of(l) } else { vec![] };
                out.push(IetChange { kind, iqn: t.iqn.clone(), tid: l.tid, what, commands: c, disruptive, sessions });
            }
        }
    }
    for l in live {
        if desired.contains(&l.name.to_ascii_lowercase()) || !view.inventory.owns(&l.name) {
            continue;
        }
        let tids = format!("--tid={}", l.tid);
        let mut c = Vec::new();
        let mut sessions = Vec::new();
        for s in &l.sessions {
            for cn in &s.conns {
                c.push(cmd(&[
                    "--op".into(),
                    "delete".into(),
                    tids.clone(),
                    format!("--sid={}", s.sid),
                    format!("--cid={}", cn.cid),
                ]));
                sessions.push(Session { initiator: s.initiator.clone(), address: cn.ip.clone() });
            }
        }
        c.push(cmd(&["--op".into(), "delete".into(), tids]));
        out.push(IetChange {
            kind: Kind::Remove,
            iqn: l.name.clone(),
            tid: l.tid,
            what: vec!["remove".into()],
            commands: c,
            disruptive: true,
            sessions,
        });
    }
    out
}
