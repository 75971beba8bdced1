//! Logout Request and Response (RFC 7143 11.14, 11.15).

use super::bhs::{Bhs, Opcode};
use super::pdu::Pdu;
use super::FieldError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutRequest {
    /// 0 close the session, 1 close the connection, 2 remove it for recovery.
    pub reason: u8,
    pub itt: u32,
    pub cid: u16,
    pub cmdsn: u32,
    pub exp_statsn: u32,
}

impl LogoutRequest {
    pub fn from_pdu(p: &Pdu) -> Result<Self, FieldError> {
        if p.bhs.opcode() != Some(Opcode::LogoutRequest) {
            return Err(FieldError::WrongOpcode { expected: Opcode::LogoutRequest, got: p.bhs.opcode_raw() });
        }
        Ok(LogoutRequest {
            reason: p.bhs.flags() & 0x7f,
            itt: p.bhs.itt(),
            cid: p.bhs.u16_at(20),
            cmdsn: p.bhs.u32_at(24),
            exp_statsn: p.bhs.u32_at(28),
        })
    }

    pub fn to_pdu(&self) -> Pdu {
        let mut b = Bhs::new(Opcode::LogoutRequest);
        b.set_immediate(true);
        b.set_flags(0x80 | (self.reason & 0x7f));
        b.set_itt(self.itt);
        b.set_u16(20, self.cid);
        b.set_u32(24, self.cmdsn);
        b.set_u32(28, self.exp_statsn);
        Pdu::new(b, Vec::new())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutResponse {
    /// 0 closed successfully.
    pub response: u8,
    pub itt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
}

impl LogoutResponse {
    pub fn from_pdu(p: &Pdu) -> Result<Self, FieldError> {
        if p.bhs.opcode() != Some(Opcode::LogoutResponse) {
            return Err(FieldError::WrongOpcode { expected: Opcode::LogoutResponse, got: p.bhs.opcode_raw() });
        }
        Ok(LogoutResponse {
            response: p.bhs.0[2],
            itt: p.bhs.itt(),
            statsn: p.bhs.u32_at(24),
            exp_cmdsn: p.bhs.u32_at(28),
            max_cmdsn: p.bhs.u32_at(32),
        })
    }

    pub fn to_pdu(&self) -> Pdu {
        let mut b = Bhs::new(Opcode::LogoutResponse);
        b.set_flags(0x80);
        b.0[2] = self.response;
        b.set_itt(self.itt);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        Pdu::new(b, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = LogoutRequest { reason: 0, itt: 9, cid: 0, cmdsn: 4, exp_statsn: 2 };
        let p = r.to_pdu();
        assert_eq!((p.bhs.0[0], p.bhs.flags()), (0x46, 0x80));
        assert_eq!(LogoutRequest::from_pdu(&p).unwrap(), r);
        let s = LogoutResponse { response: 0, itt: 9, statsn: 2, exp_cmdsn: 5, max_cmdsn: 5 };
        assert_eq!(LogoutResponse::from_pdu(&s.to_pdu()).unwrap(), s);
    }
}
