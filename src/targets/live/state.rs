//! One implementation-neutral view of live target state, built from tgtd
//! (tgtadm) or IET (/proc/net/iet), for `iet-state` and `session-top`.

use serde::{Deserialize, Serialize};

use super::iet::IetTarget;
use super::tgt::LiveTarget;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateLun {
    pub lun: u64,
    pub path: String,
    pub serial: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateConn {
    pub cid: u64,
    pub initiator_ip: String,
    pub target_ip: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSession {
    pub sid: u64,
    pub initiator: String,
    pub connections: Vec<StateConn>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateTarget {
    pub tid: u32,
    pub name: String,
    pub luns: Vec<StateLun>,
    pub sessions: Vec<StateSession>,
}

pub fn from_tgt(targets: &[LiveTarget]) -> Vec<StateTarget> {
    targets
        .iter()
        .map(|t| StateTarget {
            tid: t.tid,
            name: t.iqn.clone(),
            luns: t
                .luns
                .iter()
                .filter(|l| l.kind != "controller")
                .map(|l| StateLun {
                    lun: l.lun,
                    path: l.backing_path.clone().unwrap_or_default(),
                    serial: Some(l.scsi_sn.clone()),
                })
                .collect(),
            sessions: t
                .nexuses
                .iter()
                .map(|n| StateSession {
                    sid: n.sid,
                    initiator: n.initiator.clone(),
                    connections: n
                        .connections
                        .iter()
                        .map(|c| StateConn { cid: c.cid, initiator_ip: c.address.clone(), target_ip: None })
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

pub fn from_iet(targets: &[IetTarget]) -> Vec<StateTarget> {
    targets
        .iter()
        .map(|t| StateTarget {
            tid: t.tid,
            name: t.name.clone(),
            luns: t
                .luns
                .iter()
                .map(|l| StateLun { lun: l.lun.into(), path: l.path.clone(), serial: l.scsi_sn.clone() })
                .collect(),
            sessions: t
                .sessions
                .iter()
                .map(|s| StateSession {
                    sid: s.sid,
                    initiator: s.initiator.clone(),
                    connections: s
                        .conns
                        .iter()
                        .map(|c| StateConn { cid: c.cid, initiator_ip: c.ip.clone(), target_ip: c.target_ip.clone() })
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

/// What `state-diff` compares: targets, their LUN paths and serials, and
/// which initiators are connected (session ids and ports change on every
/// reconnect and are left out).
pub fn tracked(state: &[StateTarget]) -> Vec<String> {
    let mut lines = Vec::new();
    for t in state {
        lines.push(format!("target {}", t.name));
        for l in &t.luns {
            lines.push(format!(
                "target {} lun {} path {} serial {}",
                t.name,
                l.lun,
                l.path,
                l.serial.as_deref().unwrap_or("-")
            ));
        }
        let mut inits: Vec<&str> = t.sessions.iter().map(|s| s.initiator.as_str()).collect();
        inits.sort();
        inits.dedup();
        for i in inits {
            lines.push(format!("target {} initiator {i}", t.name));
        }
    }
    lines.sort();
    lines
}
