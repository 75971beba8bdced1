//! Reject (RFC 7143 11.17): the target refuses a PDU and echoes its header.

use super::bhs::{Bhs, Opcode, BHS_LEN};
use super::pdu::Pdu;
use super::RESERVED_TAG;

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
