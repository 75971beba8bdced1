//! Asynchronous Message (RFC 7143 11.9): events the target announces on
//! its own: a SCSI asynchronous event (sense data, e.g. capacity changed),
//! a request to log out, a connection or session about to be dropped, a
//! request to renegotiate.

use super::bhs::{Bhs, Opcode};
use super::pdu::Pdu;
use super::scsi_pdu::{check_op, split_sense};
use super::{FieldError, RESERVED_TAG};

/// AsyncEvent codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsyncEvent {
    /// 0: a SCSI asynchronous event; the sense data says which.
    ScsiEvent,
    /// 1: log out within Parameter3 seconds.
    LogoutRequested,
    /// 2: the target will drop connection Parameter1 (wait Parameter2 s).
    ConnectionDropped,
    /// 3: the target will drop all connections of the session.
    SessionDropped,
    /// 4: renegotiate operational parameters.
    Renegotiate,
    /// 5: tasks waiting for a connection may be reassigned.
    TaskReassignment,
    /// 248-255: vendor specific; others reserved.
    Other(u8),
}

impl AsyncEvent {
    pub fn from_code(c: u8) -> AsyncEvent {
        match c {
            0 => AsyncEvent::ScsiEvent,
            1 => AsyncEvent::LogoutRequested,
            2 => AsyncEvent::ConnectionDropped,
            3 => AsyncEvent::SessionDropped,
            4 => AsyncEvent::Renegotiate,
            5 => AsyncEvent::TaskReassignment,
            n => AsyncEvent::Other(n),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            AsyncEvent::ScsiEvent => 0,
            AsyncEvent::LogoutRequested => 1,
            AsyncEvent::ConnectionDropped => 2,
            AsyncEvent::SessionDropped => 3,
            AsyncEvent::Renegotiate => 4,
            AsyncEvent::TaskReassignment => 5,
            AsyncEvent::Other(n) => n,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsyncMessage {
    pub lun: [u8; 8],
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub event: AsyncEvent,
    pub vcode: u8,
    pub param1: u16,
    pub param2: u16,
    pub param3: u16,
    pub sense: Vec<u8>,
    /// iSCSI event data after the sense data.
    pub event_data: Vec<u8>,
}

impl AsyncMessage {
    pub fn from_pdu(p: &Pdu) -> Result<Self, FieldError> {
        check_op(&p.bhs, Opcode::AsyncMessage)?;
        if p.bhs.itt() != RESERVED_TAG {
            return Err(FieldError::Invalid { field: "Initiator Task Tag", detail: "must be 0xffffffff".into() });
        }
        let (sense, event_data) = split_sense(&p.data)?;
        Ok(AsyncMessage {
            lun: p.bhs.lun_bytes(),
            statsn: p.bhs.u32_at(24),
            exp_cmdsn: p.bhs.u32_at(28),
            max_cmdsn: p.bhs.u32_at(32),
            event: AsyncEvent::from_code(p.bhs.0[36]),
            vcode: p.bhs.0[37],
            param1: p.bhs.u16_at(38),
            param2: p.bhs.u16_at(40),
            param3: p.bhs.u16_at(42),
            sense,
            event_data,
        })
    }

    pub fn to_pdu(&self) -> Pdu {
        let mut b = Bhs::new(Opcode::AsyncMessage);
        b.set_flags(0x80);
        b.0[8..16].copy_from_slice(&self.lun);
        b.set_itt(RESERVED_TAG);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        b.0[36] = self.event.code();
        b.0[37] = self.vcode;
        b.set_u16(38, self.param1);
        b.set_u16(40, self.param2);
        b.set_u16(42, self.param3);
        let mut data = Vec::new();
        if !self.sense.is_empty() || !self.event_data.is_empty() {
            data.extend_from_slice(&(self.sense.len().min(0xffff) as u16).to_be_bytes());
            data.extend_from_slice(&self.sense[..self.sense.len().min(0xffff)]);
            data.extend_from_slice(&self.event_data);
        }
        Pdu::new(b, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::pdu::{decode, encode, DecodeLimits, Digests};

    #[test]
    fn decode_encode_decode() {
        let m = AsyncMessage {
            lun: [0, 1, 0, 0, 0, 0, 0, 0],
            statsn: 11,
            exp_cmdsn: 12,
            max_cmdsn: 43,
            event: AsyncEvent::ScsiEvent,
            vcode: 0,
            param1: 0,
            param2: 0,
            param3: 0,
            sense: vec![0x70, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x2a, 0x09, 0, 0, 0, 0],
            event_data: vec![],
        };
        let d = Digests { header: true, data: false };
        let bytes = encode(&m.to_pdu(), d);
        let limits = DecodeLimits { max_data_segment: 8192, digests: d };
        let back = AsyncMessage::from_pdu(&decode(&bytes, &limits).unwrap().unwrap().0).unwrap();
        assert_eq!(back, m);
        assert_eq!(AsyncMessage::from_pdu(&back.to_pdu()).unwrap(), m);
        let drop = AsyncMessage { event: AsyncEvent::ConnectionDropped, param2: 2, sense: vec![], ..m.clone() };
        assert_eq!(AsyncMessage::from_pdu(&drop.to_pdu()).unwrap(), drop);
        assert_eq!(AsyncEvent::from_code(250), AsyncEvent::Other(250));
        let mut bad = m.to_pdu();
        bad.bhs.set_itt(1);
        assert!(AsyncMessage::from_pdu(&bad).is_err());
    }
}
