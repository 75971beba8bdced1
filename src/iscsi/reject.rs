//! Reject (RFC 7143 11.17): the target refuses a PDU and echoes its header.

use super::bhs::{Bhs, Opcode, BHS_LEN};
use super::pdu::Pdu;
use super::{FieldError, RESERVED_TAG};

/// Reject reasons used by the portal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    DataDigestError = 0x02,
    ProtocolError = 0x04,
    CommandNotSupported = 0x05,
    InvalidPduField = 0x09,
    /// "Long operation reject: out of resources": used when the portal
    /// cannot answer a SendTargets now (no node answered, or no memory
    /// budget for the answer).
    OutOfResources = 0x0a,
}

/// Words for a Reject reason code (RFC 7143 11.17.1).
pub fn reason_name(code: u8) -> &'static str {
    match code {
        0x02 => "data (payload) digest error",
        0x03 => "SNACK reject",
        0x04 => "protocol error",
        0x05 => "command not supported",
        0x06 => "immediate command rejected (too many immediate commands)",
        0x07 => "task in progress",
        0x08 => "invalid data ACK",
        0x09 => "invalid PDU field",
        0x0a => "long operation reject (out of resources)",
        0x0b => "negotiation reset",
        0x0c => "waiting for logout",
        _ => "reserved reason",
    }
}

/// A Reject as an initiator receives it: any reason code, and the header
/// of the PDU it refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectNotice {
    pub reason: u8,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub datasn: u32,
    /// The rejected PDU's BHS, when the data segment holds a whole one.
    pub rejected: Option<Bhs>,
}

impl RejectNotice {
    pub fn from_pdu(p: &Pdu) -> Result<Self, FieldError> {
        if p.bhs.opcode() != Some(Opcode::Reject) {
            return Err(FieldError::WrongOpcode { expected: Opcode::Reject, got: p.bhs.opcode_raw() });
        }
        let rejected = (p.data.len() >= BHS_LEN).then(|| {
            let mut raw = [0u8; BHS_LEN];
            raw.copy_from_slice(&p.data[..BHS_LEN]);
            Bhs(raw)
        });
        Ok(RejectNotice {
            reason: p.bhs.0[2],
            statsn: p.bhs.u32_at(24),
            exp_cmdsn: p.bhs.u32_at(28),
            max_cmdsn: p.bhs.u32_at(32),
            datasn: p.bhs.u32_at(36),
            rejected,
        })
    }

    pub fn to_pdu(&self) -> Pdu {
        let mut b = Bhs::new(Opcode::Reject);
        b.set_flags(0x80);
        b.0[2] = self.reason;
        b.set_itt(RESERVED_TAG);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        b.set_u32(36, self.datasn);
        Pdu::new(b, self.rejected.map(|h| h.0.to_vec()).unwrap_or_default())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub reason: RejectReason,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    /// Header of the rejected PDU.
    pub rejected: [u8; BHS_LEN],
}

impl Reject {
    pub fn to_pdu(&self) -> Pdu {
        let mut b = Bhs::new(Opcode::Reject);
        b.set_flags(0x80);
        b.0[2] = self.reason as u8;
        b.set_itt(RESERVED_TAG);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        Pdu::new(b, self.rejected.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_decode_encode_decode() {
        let mut h = Bhs::new(Opcode::ScsiCommand);
        h.set_itt(42);
        let r = Reject { reason: RejectReason::InvalidPduField, statsn: 1, exp_cmdsn: 2, max_cmdsn: 3, rejected: h.0 };
        let n = RejectNotice::from_pdu(&r.to_pdu()).unwrap();
        assert_eq!(n.reason, 9);
        assert_eq!(n.rejected.unwrap().itt(), 42);
        assert_eq!(RejectNotice::from_pdu(&n.to_pdu()).unwrap(), n);
        assert_eq!(reason_name(n.reason), "invalid PDU field");
        let short = RejectNotice::from_pdu(&Pdu::new(r.to_pdu().bhs, vec![1, 2])).unwrap();
        assert!(short.rejected.is_none());
    }
}
