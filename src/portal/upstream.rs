//! The portal's discovery client: log in to a target node's portal as a
//! discovery session under the initiator's own name (so the node's ACLs
//! decide what that initiator may see), ask SendTargets, log out.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::transport::{PduStream, TransportError};
use crate::iscsi::bhs::Opcode;
use crate::iscsi::login::{LoginRequest, LoginResponse, LoginStatus, Stage};
use crate::iscsi::logout::LogoutRequest;
use crate::iscsi::pdu::DecodeLimits;
use crate::iscsi::target_address::TargetAddress;
use crate::iscsi::text::{TextAssembler, TextParams};
use crate::iscsi::text_pdu::{TextRequest, TextResponse};
use crate::iscsi::RESERVED_TAG;

/// What we accept from a node.
const OUR_MAX_RECV: u32 = 262_144;
/// Largest SendTargets answer we assemble (thousands of targets).
const MAX_ANSWER: usize = 16 << 20;

#[derive(Clone, Copy, Debug)]
pub struct UpstreamTimeouts {
    pub connect: Duration,
    pub response: Duration,
}

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
}

/// ISIDs of the random type (0x80 prefix), unique per process.
fn next_isid() -> [u8; 6] {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() as u16;
    let [a, b, c, d] = n.to_be_bytes();
    let [p, q] = pid.to_be_bytes();
    [0x80, p ^ a, q ^ b, c, d, 0]
}

/// Parses a SendTargets answer: each TargetName followed by its addresses.
pub fn parse_send_targets(text: &TextParams) -> Vec<DiscoveredTarget> {
    let mut out: Vec<DiscoveredTarget> = Vec::new();
    for (k, v) in text.pairs() {
        match k.as_str() {
            "TargetName" => out.push(DiscoveredTarget { name: v.clone(), addresses: Vec::new() }),
            "TargetAddress" => {
                if let (Some(t), Some(a)) = (out.last_mut(), TargetAddress::parse(v)) {
                    t.addresses.push(a);
                }
            }
            _ => {}
        }
    }
    out
}

struct Client {
    s: PduStream,
    addr: SocketAddr,
    timeout: Duration,
    itt: u32,
    cmdsn: u32,
    exp_statsn: u32,
}

impl Client {
    fn err(&self, source: TransportError) -> UpstreamError {
        UpstreamError::Transport { addr: self.addr, source }
    }

    fn protocol(&self, detail: impl Into<String>) -> UpstreamError {
        UpstreamError::Protocol { addr: self.addr, detail: detail.into() }
    }

    fn exchange(&mut self, pdu: &crate::iscsi::Pdu) -> Result<crate::iscsi::Pdu, UpstreamError> {
        let deadline = Instant::now() + self.timeout;
        self.s.write_pdu(pdu, deadline).map_err(|e| self.err(e))?;
        self.s.read_pdu(deadline).map_err(|e| self.err(e))
    }

    fn login(&mut self, initiator: &str) -> Result<(), UpstreamError> {
        let isid = next_isid();
        let mut stage = Stage::Security;
        for _ in 0..8 {
            let mut keys = TextParams::new();
            let next = match stage {
                Stage::Security => {
                    keys.push("InitiatorName", initiator);
                    keys.push("SessionType", "Discovery");
                    keys.push("AuthMethod", "None");
                    Stage::Operational
                }
                _ => {
                    keys.push("HeaderDigest", "None");
                    keys.push("DataDigest", "None");
                    keys.push("MaxRecvDataSegmentLength", OUR_MAX_RECV.to_string());
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
            let rsp = self.exchange(&req.to_pdu())?;
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

    fn send_targets(&mut self, query: &str) -> Result<Vec<DiscoveredTarget>, UpstreamError> {
        self.itt = self.itt.wrapping_add(1);
        let mut keys = TextParams::new();
        keys.push("SendTargets", query);
        let mut req = TextRequest::new(self.itt, self.cmdsn, self.exp_statsn, keys.to_bytes());
        let mut asm = TextAssembler::new(MAX_ANSWER);
        for _ in 0..100_000 {
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
        Err(self.protocol("SendTargets answer never ended"))
    }

    fn logout(&mut self) {
        self.itt = self.itt.wrapping_add(1);
        let req = LogoutRequest { reason: 0, itt: self.itt, cid: 0, cmdsn: self.cmdsn, exp_statsn: self.exp_statsn };
        let _ = self.exchange(&req.to_pdu());
        self.s.shutdown();
    }
}

/// `SendTargets=<query>` ("All" or a target name) against the portal at
/// `addr`, logged in as `initiator`.
pub fn send_targets(
    addr: SocketAddr,
    initiator: &str,
    query: &str,
    timeouts: UpstreamTimeouts,
    log_pdus: bool,
) -> Result<Vec<DiscoveredTarget>, UpstreamError> {
    let limits = DecodeLimits { max_data_segment: OUR_MAX_RECV, ..DecodeLimits::default() };
    let mut s =
        PduStream::connect(addr, timeouts.connect, limits).map_err(|source| UpstreamError::Connect { addr, source })?;
    s.log_pdus = log_pdus;
    let mut c = Client { s, addr, timeout: timeouts.response, itt: 1, cmdsn: 1, exp_statsn: 0 };
    c.login(initiator)?;
    let targets = c.send_targets(query)?;
    c.logout();
    Ok(targets)
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
        let got = parse_send_targets(&t);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].addresses.len(), 2);
        assert_eq!(got[0].addresses[1].tpgt, 2);
        assert!(got[1].addresses.is_empty());
    }

    #[test]
    fn isids_differ() {
        assert_ne!(next_isid(), next_isid());
        assert_eq!(next_isid()[0], 0x80);
    }
}
