//! NOP-Out and NOP-In (RFC 7143 11.18, 11.19): pings, answered with the
//! same data when the ITT asks for an answer.

use super::bhs::{Bhs, Opcode};
use super::pdu::Pdu;
use super::FieldError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NopOut {
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub cmdsn: u32,
    pub exp_statsn: u32,
    pub data: Vec<u8>,
}

impl NopOut {
    pub fn from_pdu(p: &Pdu) -> Result<Self, FieldError> {
        if p.bhs.opcode() != Some(Opcode::NopOut) {
            return Err(FieldError::WrongOpcode { expected: Opcode::NopOut, got: p.bhs.opcode_raw() });
        }
        Ok(NopOut {
            lun: p.bhs.lun_bytes(),
            itt: p.bhs.itt(),
            ttt: p.bhs.u32_at(20),
            cmdsn: p.bhs.u32_at(24),
            exp_statsn: p.bhs.u32_at(28),
            data: p.data.clone(),
        })
    }

    /// An initiator's NOP-Out: a ping (ITT set, TTT reserved) or the answer
    /// to a target's ping (ITT reserved, TTT echoed). Always immediate.
    pub fn to_pdu(&self) -> Pdu {
        let mut b = Bhs::new(Opcode::NopOut);
        b.set_immediate(true);
        b.set_flags(0x80);
        b.0[8..16].copy_from_slice(&self.lun);
        b.set_itt(self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(24, self.cmdsn);
        b.set_u32(28, self.exp_statsn);
        Pdu::new(b, self.data.clone())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NopIn {
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub data: Vec<u8>,
}

impl NopIn {
    pub fn from_pdu(p: &Pdu) -> Result<Self, FieldError> {
        if p.bhs.opcode() != Some(Opcode::NopIn) {
            return Err(FieldError::WrongOpcode { expected: Opcode::NopIn, got: p.bhs.opcode_raw() });
        }
        let (itt, ttt) = (p.bhs.itt(), p.bhs.u32_at(20));
        if itt == crate::iscsi::RESERVED_TAG && ttt == crate::iscsi::RESERVED_TAG {
            return Err(FieldError::Invalid { field: "ITT/TTT", detail: "both reserved".into() });
        }
        Ok(NopIn {
            lun: p.bhs.lun_bytes(),
            itt,
            ttt,
            statsn: p.bhs.u32_at(24),
            exp_cmdsn: p.bhs.u32_at(28),
            max_cmdsn: p.bhs.u32_at(32),
            data: p.data.clone(),
        })
    }

    /// True when this is the target's own ping, which needs an answer.
    pub fn is_ping(&self) -> bool {
        self.ttt != crate::iscsi::RESERVED_TAG
    }

    pub fn to_pdu(&self) -> Pdu {
        let mut b = Bhs::new(Opcode::NopIn);
        b.set_flags(0x80);
        b.0[8..16].copy_from_slice(&self.lun);
        b.set_itt(self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        Pdu::new(b, self.data.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::pdu::{decode, encode, DecodeLimits, Digests};
    use crate::iscsi::RESERVED_TAG;

    fn round_trip(p: &Pdu) -> Pdu {
        let d = Digests { header: true, data: true };
        decode(&encode(p, d), &DecodeLimits { max_data_segment: 8192, digests: d }).unwrap().unwrap().0
    }

    #[test]
    fn ping_and_answer_decode_encode_decode() {
        let ping = NopIn {
            lun: [0; 8],
            itt: RESERVED_TAG,
            ttt: 0x1234,
            statsn: 5,
            exp_cmdsn: 6,
            max_cmdsn: 37,
            data: b"ping".to_vec(),
        };
        let back = NopIn::from_pdu(&round_trip(&ping.to_pdu())).unwrap();
        assert_eq!(back, ping);
        assert!(back.is_ping());
        assert_eq!(NopIn::from_pdu(&back.to_pdu()).unwrap(), ping);
        let answer =
            NopOut { lun: [0; 8], itt: RESERVED_TAG, ttt: 0x1234, cmdsn: 6, exp_statsn: 5, data: ping.data.clone() };
        let p = answer.to_pdu();
        assert_eq!((p.bhs.0[0], p.bhs.flags()), (0x40, 0x80));
        let back = NopOut::from_pdu(&round_trip(&p)).unwrap();
        assert_eq!(back, answer);
        assert_eq!(NopOut::from_pdu(&back.to_pdu()).unwrap(), answer);
        let mut bad = ping.to_pdu();
        bad.bhs.set_u32(20, RESERVED_TAG);
        assert!(NopIn::from_pdu(&bad).is_err());
    }
}
