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

/// Targets whose LUNs one listing examines by default. Each costs a login
/// (a connection per announced address until one answers), and a portal
/// may announce any number: a 16 MiB SendTargets answer holds ~300,000.
pub const DEFAULT_MAX_TARGETS: u32 = 1024;
/// Announced addresses tried per target before the portal's own: a
/// target may announce any number, each a connection to wait for.
const MAX_ADDRESSES_TRIED: usize = 4;

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

/// Where to log in to `t`: its first announced addresses, then `fallback`
/// (the portal asked), each once.
fn portals_to_try(t: &DiscoveredTarget, fallback: &Portal) -> Vec<Portal> {
    let mut portals: Vec<Portal> = Vec::new();
    for a in &t.addresses {
        let p = Portal { host: a.host.clone(), port: a.port };
        if !portals.contains(&p) {
            portals.push(p);
        }
        if portals.len() == MAX_ADDRESSES_TRIED {
            break;
        }
    }
    if !portals.contains(fallback) {
        portals.push(fallback.clone());
    }
    portals
}

/// Logs in to `t` at its announced addresses, then at `fallback`.
fn open_target(t: &DiscoveredTarget, fallback: &Portal, opts: &InitiatorOptions) -> Result<Session, InitiatorError> {
    let mut last = None;
    for p in &portals_to_try(t, fallback) {
        match Session::open(p, &t.name, opts) {
            Ok(s) => return Ok(s),
            // A refusal is the target's answer; an unreachable address is not.
            Err(e @ (InitiatorError::Connect { .. } | InitiatorError::Resolve { .. })) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(InitiatorError::Closed))
}

/// The session settings for logging in to a target by name: a target may
/// have credentials of its own (`[initiator.targets."IQN"]`).
pub type OptionsFor<'a> = dyn Fn(&str) -> Result<InitiatorOptions, InitiatorError> + 'a;

/// Lists what `url` shows: every target of the portal, or the one the URL
/// names; with `with_luns`, the LUNs of the first `max_targets` targets
/// (the others are reported as not examined). `opts` is the discovery
/// session's; each target's login takes `options_for(name)`.
pub fn list(
    url: &IscsiUrl,
    opts: &InitiatorOptions,
    options_for: &OptionsFor<'_>,
    with_luns: bool,
    max_targets: usize,
) -> Result<LsReport, InitiatorError> {
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
    let announced = targets.len();
    for (i, t) in targets.iter().enumerate() {
        let mut r = TargetReport {
            name: t.name.clone(),
            addresses: t.addresses.iter().map(|a| a.to_string()).collect(),
            luns: Vec::new(),
            error: None,
        };
        if with_luns && i >= max_targets {
            r.error = Some(format!(
                "not examined: the portal announced {announced} targets and the LUNs of the first {max_targets} \
                 were listed (--max-targets)"
            ));
        } else if with_luns {
            let listed = options_for(&t.name).and_then(|o| open_target(t, &url.portal, &o)).and_then(|s| luns_of(&s));
            match listed {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::target_address::TargetAddress;

    fn target(addresses: &[&str]) -> DiscoveredTarget {
        DiscoveredTarget {
            name: "iqn.2024-01.test:t".into(),
            addresses: addresses.iter().map(|a| TargetAddress::parse(a).unwrap()).collect(),
        }
    }

    #[test]
    fn addresses_tried_are_bounded_unique_and_end_with_the_portal() {
        let portal = Portal { host: "10.0.0.1".into(), port: 3260 };
        let cases: &[(&[&str], &[&str])] = &[
            (&[], &["10.0.0.1:3260"]),
            (&["10.0.0.1:3260,1"], &["10.0.0.1:3260"]),
            (&["10.0.0.2:3260,1", "10.0.0.2:3260,2"], &["10.0.0.2:3260", "10.0.0.1:3260"]),
            (
                &["10.0.0.2:1,1", "10.0.0.3:1,1", "10.0.0.4:1,1", "10.0.0.5:1,1", "10.0.0.6:1,1"],
                &["10.0.0.2:1", "10.0.0.3:1", "10.0.0.4:1", "10.0.0.5:1", "10.0.0.1:3260"],
            ),
        ];
        for (announced, want) in cases {
            let got: Vec<String> = portals_to_try(&target(announced), &portal).iter().map(|p| p.to_string()).collect();
            assert_eq!(&got, want, "announced {announced:?}");
        }
    }
}
