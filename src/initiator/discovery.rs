//! A discovery session: SendTargets (RFC 7143 12.3, appendix C) as this
//! initiator, so the target's ACLs decide what it is shown.

use std::time::Instant;

use serde::Serialize;

use super::error::InitiatorError;
use super::login::{login, new_isid, FIRST_CMDSN};
use super::options::InitiatorOptions;
use super::url::Portal;
use crate::iscsi::bhs::Opcode;
use crate::iscsi::logout::LogoutRequest;
use crate::iscsi::target_address::TargetAddress;
use crate::iscsi::text::{TextAssembler, TextParams};
use crate::iscsi::text_pdu::{TextRequest, TextResponse};
use crate::iscsi::RESERVED_TAG;

/// Largest SendTargets answer we assemble.
const MAX_ANSWER: usize = 16 << 20;
/// Text Response PDUs one answer may span: 16 MiB in 4 KiB pieces.
const MAX_PIECES: usize = MAX_ANSWER / 4096;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiscoveredTarget {
    pub name: String,
    pub addresses: Vec<TargetAddress>,
}

/// Each TargetName with the TargetAddress lines that follow it.
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

/// `SendTargets=<query>` ("All" or one target name) at `portal`.
pub fn send_targets(
    portal: &Portal,
    opts: &InitiatorOptions,
    query: &str,
) -> Result<Vec<DiscoveredTarget>, InitiatorError> {
    let est = login(portal, None, new_isid(), opts)?;
    let mut conn = est.conn;
    let mut exp_statsn = est.exp_statsn;
    let itt = 1;
    let mut keys = TextParams::new();
    keys.push("SendTargets", query);
    let mut req = TextRequest::new(itt, FIRST_CMDSN, exp_statsn, keys.to_bytes());
    let mut asm = TextAssembler::new(MAX_ANSWER);
    let mut pieces = 0usize;
    let secs = opts.io_timeout.as_secs();
    let answer = loop {
        let deadline = Instant::now() + opts.io_timeout;
        conn.send(&req.to_pdu(), deadline)?;
        let pdu = conn.recv_or(deadline, secs, "SendTargets answer")?;
        if pdu.bhs.opcode() == Some(Opcode::Reject) {
            return Err(InitiatorError::Protocol {
                peer: conn.label.clone(),
                detail: format!("SendTargets rejected (reason 0x{:02x})", pdu.bhs.0[2]),
            });
        }
        let rsp = TextResponse::from_pdu(&pdu)
            .map_err(|e| InitiatorError::Protocol { peer: conn.label.clone(), detail: e.to_string() })?;
        exp_statsn = rsp.statsn.wrapping_add(1);
        let proto = |d: String| InitiatorError::Protocol { peer: conn.label.clone(), detail: d };
        if !rsp.fin || rsp.cont {
            // A target cannot keep us asking for the rest forever.
            pieces += 1;
            if rsp.data.is_empty() {
                return Err(proto("a non-final SendTargets answer without any text".into()));
            }
            if pieces > MAX_PIECES {
                return Err(proto(format!("the SendTargets answer went on for more than {MAX_PIECES} PDUs")));
            }
        }
        let whole = asm.push(&rsp.data, !rsp.fin || rsp.cont).map_err(|e| proto(e.to_string()))?;
        if rsp.fin {
            let text = whole.unwrap_or_default();
            break TextParams::parse(&text).map_err(|e| proto(format!("SendTargets answer: {e}")))?;
        }
        if rsp.ttt == RESERVED_TAG {
            return Err(proto("a non-final text response without a target transfer tag".into()));
        }
        req = TextRequest::new(itt, FIRST_CMDSN, exp_statsn, Vec::new());
        req.ttt = rsp.ttt;
    };
    let logout = LogoutRequest { reason: 0, itt: itt + 1, cid: 0, cmdsn: FIRST_CMDSN, exp_statsn };
    let deadline = Instant::now() + std::time::Duration::from_secs(2);
    if conn.send(&logout.to_pdu(), deadline).is_ok() {
        let _ = conn.recv(deadline);
    }
    let _ = conn.stream.shutdown(std::net::Shutdown::Both);
    Ok(parse_send_targets(&answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_tgt_answer() {
        let t = TextParams::parse(
            b"TargetName=iqn.a\0TargetAddress=127.0.0.2:13260,1\0TargetAddress=[::1]:3260,2\0TargetName=iqn.b\0",
        )
        .unwrap();
        let got = parse_send_targets(&t);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].addresses[1].host, "::1");
        assert!(got[1].addresses.is_empty());
    }
}
