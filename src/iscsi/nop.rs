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
