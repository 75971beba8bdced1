//! The portal's discovery client: log in to a target node's portal as a
//! discovery session under the initiator's own name (so the node's ACLs
//! decide what that initiator may see), ask SendTargets, log out.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::access_log::Esc;
use super::limits::{
    LOGIN_PDU_DATA, UPSTREAM_LOGOUT_WAIT, UPSTREAM_MAX_ANSWER, UPSTREAM_MAX_LOGIN_ROUNDS, UPSTREAM_MAX_RECV,
    UPSTREAM_MAX_ROUNDS, UPSTREAM_MAX_TARGETS,
};
use super::transport::{PduStream, TransportError};
use crate::iscsi::bhs::Opcode;
use crate::iscsi::login::{LoginRequest, LoginResponse, LoginStatus, Stage};
use crate::iscsi::logout::LogoutRequest;
use crate::iscsi::name::is_valid_name;
use crate::iscsi::pdu::DecodeLimits;
use crate::iscsi::target_address::TargetAddress;
use crate::iscsi::text::{TextAssembler, TextParams};
use crate::iscsi::text_pdu::{TextRequest, TextResponse};
use crate::iscsi::RESERVED_TAG;

/// The vendor key that carries how many portals a discovery login went
/// through (RFC 7143 allows `X-` keys; targets answer NotUnderstood).
pub const HOPS_KEY: &str = "X-org.santools.portal-hops";
/// A discovery login that already went through this many portals is a
/// loop (portal A lists portal B as a node, and B lists A).
pub const MAX_HOPS: u32 = 4;

/// One target in a SendTargets answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiscoveredTarget {
    pub name: String,
    pub addresses: Vec<TargetAddress>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("{addr}: {source}")]
    Transport { addr: SocketAddr, source: TransportError },
    #[error("{addr} refused the discovery login: {status}")]
    LoginRefused { addr: SocketAddr, status: LoginStatus },
    #[error("{addr}: {detail}")]
    Protocol { addr: SocketAddr, detail: String },
    #[error("{addr}: no answer within the node query bound")]
    Deadline { addr: SocketAddr },
    /// The node closed the connection in answer to the discovery login:
    /// what tgt does when it has no target at all.
    #[error("{addr} closed the connection at the discovery login (a node without targets)")]
    ClosedAtLogin { addr: SocketAddr },
}

/// 24 random bits that mark this process's upstream ISIDs, so a discovery
/// login from our own client (the portal listed as its own node, through
/// a forwarder or an address the configuration check could not see) is
/// recognised.
fn process_nonce() -> [u8; 3] {
    static NONCE: OnceLock<[u8; 3]> = OnceLock::new();
    *NONCE.get_or_init(|| {
        let mut b = [0u8; 3];
        if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).is_err() {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let x = t.subsec_nanos() ^ std::process::id().rotate_left(11);
            b.copy_from_slice(&x.to_be_bytes()[1..]);
        }
        b
    })
}

/// ISIDs of the random type (0x80, RFC 7143 11.12.5): B and C carry the
/// process nonce, the qualifier D counts.
fn next_isid() -> [u8; 6] {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) as u16;
    let [a, b, c] = process_nonce();
    let [d0, d1] = n.to_be_bytes();
    [0x80, a, b, c, d0, d1]
}

/// Whether `isid` is one this process uses for its own upstream logins.
pub fn is_own_isid(isid: &[u8; 6]) -> bool {
    isid[0] == 0x80 && isid[1..4] == process_nonce()
}

/// A SendTargets answer: the targets with valid names, and how many
/// entries were dropped because their name is not an iSCSI name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedAnswer {
    pub targets: Vec<DiscoveredTarget>,
    pub invalid: usize,
    /// The first invalid name, escaped, for the log.
    pub first_invalid: Option<String>,
    /// Targets beyond the limit, dropped.
    pub truncated: usize,
}

/// Parses a SendTargets answer: each TargetName followed by its addresses.
/// A name that is not an iSCSI name is dropped (never forwarded to an
/// initiator nor logged raw), with the addresses that follow it.
pub fn parse_send_targets(text: &TextParams) -> ParsedAnswer {
    let mut out = ParsedAnswer::default();
    let mut skipping = false;
    for (k, v) in text.pairs() {
        match k.as_str() {
            "TargetName" => {
                skipping = !is_valid_name(v);
                if skipping {
                    out.invalid += 1;
                    out.first_invalid.get_or_insert_with(|| Esc(v).to_string());
                } else if out.targets.len() >= UPSTREAM_MAX_TARGETS {
                    skipping = true;
                    out.truncated += 1;
                } else {
                    out.targets.push(DiscoveredTarget { name: v.clone(), addresses: Vec::new() });
                }
            }
            "TargetAddress" if !skipping => {
                if let (Some(t), Some(a)) = (out.targets.last_mut(), TargetAddress::parse(v)) {
                    if t.addresses.len() < 64 {
                        t.addresses.push(a);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether the peer closed (or reset) the connection.
fn closed(e: &TransportError) -> bool {
    match e {
        TransportError::Closed | TransportError::Truncated { .. } => true,
        TransportError::Io(io) => {
            matches!(io.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
        }
        _ => false,
    }
}

struct Client {
    s: PduStream,
    addr: SocketAddr,
    /// Everything after connecting must be done by then.
    deadline: Instant,
    itt: u32,
    cmdsn: u32,
    exp_statsn: u32,
}

impl Client {
    fn err(&self, source: TransportError) -> UpstreamError {
        match source {
            TransportError::Timeout => UpstreamError::Deadline { addr: self.addr },
            source => UpstreamError::Transport { addr: self.addr, source },
        }
    }

    fn protocol(&self, detail: impl Into<String>) -> UpstreamError {
        UpstreamError::Protocol { addr: self.addr, detail: detail.into() }
    }

    fn exchange(&mut self, pdu: &crate::iscsi::Pdu) -> Result<crate::iscsi::Pdu, UpstreamError> {
        self.s.write_pdu(pdu, self.deadline).map_err(|e| self.err(e))?;
        self.s.read_pdu(self.deadline).map_err(|e| self.err(e))
    }

    fn login(&mut self, initiator: &str, hops: u32) -> Result<(), UpstreamError> {
        let isid = next_isid();
        let mut stage = Stage::Security;
        for round in 0..UPSTREAM_MAX_LOGIN_ROUNDS {
            let mut keys = TextParams::new();
            let next = match stage {
                Stage::Security => {
                    keys.push("InitiatorName", initiator);
                    keys.push("SessionType", "Discovery");
                    keys.push("AuthMethod", "None");
                    keys.push(HOPS_KEY, hops.to_string());
                    Stage::Operational
                }
                _ => {
                    keys.push("HeaderDigest", "None");
                    keys.push("DataDigest", "None");
                    keys.push("MaxRecvDataSegmentLength", UPSTREAM_MAX_RECV.to_string());
                    keys.push("DefaultTime2Wait", "2");
                    keys.push("DefaultTime2Retain", "0");
                    keys.push("ErrorRecoveryLevel", "0");
                    keys.push("IFMarker", "No");
                    keys.push("OFMarker", "No");
                    Stage::FullFeature
                }
            };
            let req = LoginRequest {
                cmdsn: self.cmdsn,
                exp_statsn: self.exp_statsn,
                ..LoginRequest::opening(isid, self.itt, stage, next, keys.to_bytes())
            };
            let rsp = match self.exchange(&req.to_pdu()) {
                Err(UpstreamError::Transport { source, .. }) if round == 0 && closed(&source) => {
                    return Err(UpstreamError::ClosedAtLogin { addr: self.addr })
                }
                other => other?,
            };
            if rsp.bhs.opcode() != Some(Opcode::LoginResponse) {
                return Err(
                    self.protocol(format!("expected a login response, got opcode 0x{:02x}", rsp.bhs.opcode_raw()))
                );
            }
            let rsp = LoginResponse::from_pdu(&rsp).map_err(|e| self.protocol(e.to_string()))?;
            if rsp.status != LoginStatus::SUCCESS {
                return Err(UpstreamError::LoginRefused { addr: self.addr, status: rsp.status });
            }
            self.exp_statsn = rsp.statsn.wrapping_add(1);
            if rsp.transit {
                if rsp.nsg == Stage::FullFeature {
                    return Ok(());
                }
                stage = rsp.nsg;
            }
        }
        Err(self.protocol("login did not reach the full feature phase"))
    }

    fn send_targets(&mut self, query: &str) -> Result<ParsedAnswer, UpstreamError> {
        self.itt = self.itt.wrapping_add(1);
        let mut keys = TextParams::new();
        keys.push("SendTargets", query);
        let mut req = TextRequest::new(self.itt, self.cmdsn, self.exp_statsn, keys.to_bytes());
        let mut asm = TextAssembler::new(UPSTREAM_MAX_ANSWER);
        for _ in 0..UPSTREAM_MAX_ROUNDS {
            let rsp = self.exchange(&req.to_pdu())?;
            if rsp.bhs.opcode() == Some(Opcode::Reject) {
                return Err(self.protocol(format!("SendTargets rejected (reason 0x{:02x})", rsp.bhs.0[2])));
            }
            let rsp = TextResponse::from_pdu(&rsp).map_err(|e| self.protocol(e.to_string()))?;
            self.exp_statsn = rsp.statsn.wrapping_add(1);
            let whole = asm.push(&rsp.data, !rsp.fin || rsp.cont).map_err(|e| self.protocol(e.to_string()))?;
            if rsp.fin {
                let text = whole.unwrap_or_default();
                let params = TextParams::parse(&text).map_err(|e| self.protocol(format!("SendTargets answer: {e}")))?;
                return Ok(parse_send_targets(&params));
            }
            if rsp.ttt == RESERVED_TAG {
                return Err(self.protocol("non-final text response without a target transfer tag"));
            }
            // Ask for the rest with an empty request carrying the TTT.
            req = TextRequest::new(self.itt, self.cmdsn, self.exp_statsn, Vec::new());
            req.ttt = rsp.ttt;
        }
        Err(self.protocol(format!("SendTargets answer did not end within {UPSTREAM_MAX_ROUNDS} text responses")))
    }

    /// Logs out, waiting briefly for the answer (the node frees the
    /// session either way when we close).
    fn logout(&mut self) {
        self.itt = self.itt.wrapping_add(1);
        self.deadline = self.deadline.min(Instant::now() + UPSTREAM_LOGOUT_WAIT);
        let req = LogoutRequest { reason: 0, itt: self.itt, cid: 0, cmdsn: self.cmdsn, exp_statsn: self.exp_statsn };
        let _ = self.exchange(&req.to_pdu());
        self.s.shutdown();
    }
}

/// How one upstream session may run.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamLimits {
    /// Connecting may take at most this (and not past `deadline`).
    pub connect: Duration,
    /// The whole session must be over by then.
    pub deadline: Instant,
    /// Portals the discovery this serves already went through (0: an
    /// initiator's own).
    pub hops: u32,
    pub log_pdus: bool,
}

/// `SendTargets=<query>` ("All" or a target name) against the portal at
/// `addr`, logged in as `initiator`; the whole session (connect, login,
/// every continuation, logout) ends by `limits.deadline`.
pub fn send_targets(
    addr: SocketAddr,
    initiator: &str,
    query: &str,
    limits: UpstreamLimits,
) -> Result<ParsedAnswer, UpstreamError> {
    let left = limits.deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(UpstreamError::Deadline { addr });
    }
    tracing::debug!("upstream discovery session to {addr} as {initiator} (SendTargets={})", Esc(query));
    // RFC 7143: 8192-byte PDUs until the login ends; ours after it.
    let decode = DecodeLimits { max_data_segment: LOGIN_PDU_DATA, ..DecodeLimits::default() };
    let mut s = PduStream::connect(addr, limits.connect.min(left), decode)
        .map_err(|source| UpstreamError::Connect { addr, source })?;
    s.log_pdus = limits.log_pdus;
    let mut c = Client { s, addr, deadline: limits.deadline, itt: 1, cmdsn: 1, exp_statsn: 0 };
    let answer = c.login(initiator, limits.hops).and_then(|()| {
        c.s.limits.max_data_segment = UPSTREAM_MAX_RECV;
        c.send_targets(query)
    });
    match answer {
        Ok(a) => {
            c.logout();
            Ok(a)
        }
        Err(e) => {
            c.s.shutdown();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_tgt_answer() {
        let t = TextParams::parse(
            b"TargetName=iqn.a\0TargetAddress=127.0.0.2:13260,1\0TargetAddress=10.0.0.1:3260,2\0TargetName=iqn.b\0",
        )
        .unwrap();
        let got = parse_send_targets(&t).targets;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].addresses.len(), 2);
        assert_eq!(got[0].addresses[1].tpgt, 2);
        assert!(got[1].addresses.is_empty());
    }

    #[test]
    fn a_node_returning_hostile_names_is_not_forwarded() {
        let t = TextParams::parse(
            "TargetName=iqn.a\0TargetAddress=127.0.0.2:13260,1\0TargetName=iqn.b\naccess_log => forged\0TargetAddress=6.6.6.6:3260,1\0TargetName=iqn.c\0".as_bytes(),
        )
        .unwrap();
        let got = parse_send_targets(&t);
        assert_eq!(got.targets.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["iqn.a", "iqn.c"]);
        assert!(got.targets[1].addresses.is_empty(), "the hostile entry's address is not given to the next name");
        assert_eq!(got.invalid, 1);
        assert!(!got.first_invalid.unwrap().contains('\n'));
    }

    #[test]
    fn isids_differ_and_are_recognised_as_ours() {
        let (a, b) = (next_isid(), next_isid());
        assert_ne!(a, b);
        assert_eq!(a[0], 0x80);
        assert!(is_own_isid(&a) && is_own_isid(&b));
        let mut other = a;
        other[2] ^= 1;
        assert!(!is_own_isid(&other));
        assert!(!is_own_isid(&[0x00, 0x02, 0x3d, 0, 0, 1]), "open-iscsi's OUI-format ISID");
    }
}
