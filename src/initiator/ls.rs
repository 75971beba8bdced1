//! `iscsi-ls` as a library: the targets a portal shows this initiator,
//! and each target's LUNs with type and size.

use serde::Serialize;

use super::discovery::{send_targets, DiscoveredTarget};
use super::error::InitiatorError;
use super::options::InitiatorOptions;
use super::scsi_ops;
use super::session::Session;
use super::url::{IscsiUrl, Portal};
use crate::scsi::data::device_type_name;

#[derive(Clone, Debug, Serialize)]
pub struct LunReport {
    pub lun: u16,
    pub device_type: String,
    pub vendor: String,
    pub product: String,
    pub size_bytes: Option<u64>,
    pub block_size: Option<u32>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    pub name: String,
    /// Portal addresses as the target announced them (`host:port,tpgt`).
    pub addresses: Vec<String>,
    pub luns: Vec<LunReport>,
    /// Why the target's LUNs could not be listed (login refused, ...).
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LsReport {
    pub portal: String,
    pub initiator: String,
    pub targets: Vec<TargetReport>,
}

impl LsReport {
    /// True when some target or LUN could not be examined.
    pub fn has_errors(&self) -> bool {
        self.targets.iter().any(|t| t.error.is_some() || t.luns.iter().any(|l| l.error.is_some()))
    }
}

fn luns_of(session: &Session) -> Result<Vec<LunReport>, InitiatorError> {
    let mut out = Vec::new();
    for lun in scsi_ops::report_luns(session)? {
        let mut r = LunReport {
            lun,
            device_type: String::new(),
            vendor: String::new(),
            product: String::new(),
            size_bytes: None,
            block_size: None,
            error: None,
        };
        match scsi_ops::inquiry(session, lun) {
            Ok(inq) => {
                r.device_type = device_type_name(inq.device_type).to_string();
                r.vendor = inq.vendor;
                r.product = inq.product;
                if inq.device_type == 0x00 || inq.device_type == 0x0e {
                    match scsi_ops::read_capacity(session, lun) {
                        Ok(c) => {
                            r.size_bytes = Some(c.bytes());
                            r.block_size = Some(c.block_size);
                        }
                        Err(e) => r.error = Some(e.to_string()),
                    }
                }
            }
            Err(e) => r.error = Some(e.to_string()),
        }
        out.push(r);
    }
    Ok(out)
}

/// Logs in to `t` at its announced addresses, then at `fallback`.
fn open_target(t: &DiscoveredTarget, fallback: &Portal, opts: &InitiatorOptions) -> Result<Session, InitiatorError> {
    let mut portals: Vec<Portal> = t.addresses.iter().map(|a| Portal { host: a.host.clone(), port: a.port }).collect();
    if !portals.contains(fallback) {
        portals.push(fallback.clone());
    }
    let mut last = None;
    for p in &portals {
        match Session::open(p, &t.name, opts) {
            Ok(s) => return Ok(s),
            // A refusal is the target's answer; an unreachable address is not.
            Err(e @ (InitiatorError::Connect { .. } | InitiatorError::Resolve { .. })) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(InitiatorError::Closed))
}

/// Lists what `url` shows: every target of the portal, or the one the URL
/// names; with `with_luns`, each target's LUNs.
pub fn list(url: &IscsiUrl, opts: &InitiatorOptions, with_luns: bool) -> Result<LsReport, InitiatorError> {
    opts.validate().map_err(InitiatorError::Options)?;
    let query = url.target.as_deref().unwrap_or("All");
    let mut targets = send_targets(&url.portal, opts, query)?;
    if let Some(t) = &url.target {
        if targets.is_empty() {
            // A target discovery does not show may still accept a login.
            targets.push(DiscoveredTarget { name: t.clone(), addresses: Vec::new() });
        }
    }
    let mut out = Vec::new();
    for t in &targets {
        let mut r = TargetReport {
            name: t.name.clone(),
            addresses: t.addresses.iter().map(|a| a.to_string()).collect(),
            luns: Vec::new(),
            error: None,
        };
        if with_luns {
            match open_target(t, &url.portal, opts).and_then(|s| luns_of(&s)) {
                Ok(l) => r.luns = l,
                Err(e) => r.error = Some(e.to_string()),
            }
            if let (Some(want), false) = (url.lun, r.luns.is_empty()) {
                r.luns.retain(|l| l.lun == want);
                if r.luns.is_empty() {
                    // Asked for one LUN: its absence is the answer, not an empty list.
                    r.error = Some(format!("the target reports no LUN {want} to this initiator"));
                }
            }
        }
        out.push(r);
    }
    Ok(LsReport { portal: url.portal.to_string(), initiator: opts.initiator_name.clone(), targets: out })
}
