//! Text Request and Text Response (RFC 7143 11.10, 11.11): F (final) and C
//! (continue) bits and the Target Transfer Tag that chains a long answer.

use super::bhs::{Bhs, Opcode};
use super::pdu::Pdu;
use super::{FieldError, RESERVED_TAG};

const F_BIT: u8 = 0x80;
const C_BIT: u8 = 0x40;

fn check(p: &Pdu, expected: Opcode) -> Result<(bool, bool), FieldError> {
    if p.bhs.opcode() != Some(expected) {
        return Err(FieldError::WrongOpcode { expected, got: p.bhs.opcode_raw() });
    }
    let f = p.bhs.flags();
    let (fin, cont) = (f & F_BIT != 0, f & C_BIT != 0);
    if fin && cont {
        return Err(FieldError::Invalid { field: "flags", detail: "F and C both set".into() });
    }
    Ok((fin, cont))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextRequest {
    pub immediate: bool,
    pub fin: bool,
    pub cont: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub cmdsn: u32,
    pub exp_statsn: u32,
    pub data: Vec<u8>,
}

impl TextRequest {
    /// A new, final request (TTT reserved).
    pub fn new(itt: u32, cmdsn: u32, exp_statsn: u32, data: Vec<u8>) -> Self {
        TextRequest {
            immediate: true,
            fin: true,
            cont: false,
            lun: [0; 8],
            itt,
            ttt: RESERVED_TAG,
            cmdsn,
            exp_statsn,
            data,
        }
    }

    pub fn from_pdu(p: &Pdu) -> Result<Self, FieldError> {
        let (fin, cont) = check(p, Opcode::TextRequest)?;
        Ok(TextRequest {
            immediate: p.bhs.immediate(),
            fin,
            cont,
            lun: p.bhs.lun_bytes(),
            itt: p.bhs.itt(),
            ttt: p.bhs.u32_at(20),
            cmdsn: p.bhs.u32_at(24),
            exp_statsn: p.bhs.u32_at(28),
            data: p.data.clone(),
        })
    }

    pub fn to_pdu(&self) -> Pdu {
        let mut b = Bhs::new(Opcode::TextRequest);
        b.set_immediate(self.immediate);
        b.set_flags(if self.fin { F_BIT } else { 0 } | if self.cont { C_BIT } else { 0 });
        b.0[8..16].copy_from_slice(&self.lun);
        b.set_itt(self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(24, self.cmdsn);
        b.set_u32(28, self.exp_statsn);
        Pdu::new(b, self.data.clone())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextResponse {
    pub fin: bool,
    pub cont: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub data: Vec<u8>,
}

impl TextResponse {
    pub fn from_pdu(p: &Pdu) -> Result<Self, FieldError> {
        let (fin, cont) = check(p, Opcode::TextResponse)?;
        Ok(TextResponse {
            fin,
            cont,
            lun: p.bhs.lun_bytes(),
            itt: p.bhs.itt(),
            ttt: p.bhs.u32_at(20),
            statsn: p.bhs.u32_at(24),
            exp_cmdsn: p.bhs.u32_at(28),
            max_cmdsn: p.bhs.u32_at(32),
            data: p.data.clone(),
        })
    }

    pub fn to_pdu(&self) -> Pdu {
        let mut b = Bhs::new(Opcode::TextResponse);
        b.set_flags(if self.fin { F_BIT } else { 0 } | if self.cont { C_BIT } else { 0 });
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

    #[test]
    fn round_trips_and_flag_checks() {
        let r = TextRequest::new(5, 1, 2, b"SendTargets=All\0".to_vec());
        let p = r.to_pdu();
        assert_eq!(p.bhs.0[0], 0x44);
        assert_eq!(p.bhs.flags(), 0x80);
        assert_eq!(TextRequest::from_pdu(&p).unwrap(), r);
        let rsp = TextResponse {
            fin: false,
            cont: true,
            lun: [0; 8],
            itt: 5,
            ttt: 77,
            statsn: 3,
            exp_cmdsn: 2,
            max_cmdsn: 2,
            data: vec![],
        };
        assert_eq!(TextResponse::from_pdu(&rsp.to_pdu()).unwrap(), rsp);
        let mut bad = p.clone();
        bad.bhs.set_flags(0xc0);
        assert!(TextRequest::from_pdu(&bad).is_err());
    }
}
