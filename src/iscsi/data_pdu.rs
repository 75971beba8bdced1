//! Data-In, Data-Out and Ready To Transfer (RFC 7143 11.7, 11.8): the
//! data phases of a SCSI task. A Data-In may carry the task's status (S
//! bit, "phase collapse"); an R2T asks for a range of a write's data.

use super::bhs::{Bhs, Opcode};
use super::pdu::Pdu;
use super::scsi_pdu::{check_op, Residual};
use super::FieldError;

/// A Data-In PDU (header fields; the data is the payload at `offset`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataIn {
    pub fin: bool,
    /// A: the target asks for a DataACK SNACK (ERL > 0 only).
    pub ack: bool,
    /// S: `status` and `residual` are valid and this PDU ends the task.
    pub has_status: bool,
    pub status: u8,
    pub residual: Residual,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub datasn: u32,
    pub offset: u32,
    pub data: Vec<u8>,
}

impl DataIn {
    /// Decodes the header fields only (for a receiver that puts the data
    /// straight into its destination buffer).
    pub fn from_bhs(b: &Bhs) -> Result<Self, FieldError> {
        check_op(b, Opcode::DataIn)?;
        let f = b.flags();
        let fin = f & 0x80 != 0;
        let has_status = f & 0x01 != 0;
        if has_status && !fin {
            return Err(FieldError::Invalid { field: "flags", detail: "S set without F".into() });
        }
        if !has_status && f & 0x06 != 0 {
            return Err(FieldError::Invalid { field: "flags", detail: "O or U set without S".into() });
        }
        Ok(DataIn {
            fin,
            ack: f & 0x40 != 0,
            has_status,
            status: if has_status { b.0[3] } else { 0 },
            residual: Residual::from_flags(f, b.u32_at(44))?,
            lun: b.lun_bytes(),
            itt: b.itt(),
            ttt: b.u32_at(20),
            statsn: b.u32_at(24),
            exp_cmdsn: b.u32_at(28),
            max_cmdsn: b.u32_at(32),
            datasn: b.u32_at(36),
            offset: b.u32_at(40),
            data: Vec::new(),
        })
    }

    pub fn from_pdu(p: &Pdu) -> Result<Self, FieldError> {
        Ok(DataIn { data: p.data.clone(), ..DataIn::from_bhs(&p.bhs)? })
    }

    pub fn to_pdu(&self) -> Pdu {
        let mut b = Bhs::new(Opcode::DataIn);
        let mut f = self.residual.flags();
        if self.fin {
            f |= 0x80;
        }
        if self.ack {
            f |= 0x40;
        }
        if self.has_status {
            f |= 0x01;
            b.0[3] = self.status;
        } else {
            f &= !0x06;
        }
        b.set_flags(f);
        b.0[8..16].copy_from_slice(&self.lun);
        b.set_itt(self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        b.set_u32(36, self.datasn);
        b.set_u32(40, self.offset);
        b.set_u32(44, self.residual.count);
        Pdu::new(b, self.data.clone())
    }
}

/// A Data-Out PDU's header (the payload is a slice of the task's buffer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataOut {
    pub fin: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub exp_statsn: u32,
    pub datasn: u32,
    pub offset: u32,
    pub data: Vec<u8>,
}

impl DataOut {
    pub fn from_pdu(p: &Pdu) -> Result<Self, FieldError> {
        check_op(&p.bhs, Opcode::DataOut)?;
        Ok(DataOut {
            fin: p.bhs.flags() & 0x80 != 0,
            lun: p.bhs.lun_bytes(),
            itt: p.bhs.itt(),
            ttt: p.bhs.u32_at(20),
            exp_statsn: p.bhs.u32_at(28),
            datasn: p.bhs.u32_at(36),
            offset: p.bhs.u32_at(40),
            data: p.data.clone(),
        })
    }

    /// The header for a payload of `data_len` bytes.
    pub fn to_bhs(&self, data_len: u32) -> Bhs {
        let mut b = Bhs::new(Opcode::DataOut);
        b.set_flags(if self.fin { 0x80 } else { 0 });
        b.0[8..16].copy_from_slice(&self.lun);
        b.set_itt(self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(28, self.exp_statsn);
        b.set_u32(36, self.datasn);
        b.set_u32(40, self.offset);
        b.set_data_len(data_len);
        b
    }

    pub fn to_pdu(&self) -> Pdu {
        Pdu::new(self.to_bhs(self.data.len() as u32), self.data.clone())
    }
}

/// Ready To Transfer: send `desired_len` bytes of the write at `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct R2t {
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub r2tsn: u32,
    pub offset: u32,
    pub desired_len: u32,
}

impl R2t {
    pub fn from_pdu(p: &Pdu) -> Result<Self, FieldError> {
        check_op(&p.bhs, Opcode::R2t)?;
        if !p.data.is_empty() {
            return Err(FieldError::Invalid { field: "DataSegmentLength", detail: "an R2T carries no data".into() });
        }
        let desired_len = p.bhs.u32_at(44);
        if desired_len == 0 {
            return Err(FieldError::Invalid { field: "Desired Data Transfer Length", detail: "zero".into() });
        }
        Ok(R2t {
            lun: p.bhs.lun_bytes(),
            itt: p.bhs.itt(),
            ttt: p.bhs.u32_at(20),
            statsn: p.bhs.u32_at(24),
            exp_cmdsn: p.bhs.u32_at(28),
            max_cmdsn: p.bhs.u32_at(32),
            r2tsn: p.bhs.u32_at(36),
            offset: p.bhs.u32_at(40),
            desired_len,
        })
    }

    pub fn to_pdu(&self) -> Pdu {
        let mut b = Bhs::new(Opcode::R2t);
        b.set_flags(0x80);
        b.0[8..16].copy_from_slice(&self.lun);
        b.set_itt(self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        b.set_u32(36, self.r2tsn);
        b.set_u32(40, self.offset);
        b.set_u32(44, self.desired_len);
        Pdu::new(b, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::pdu::{decode, encode, DecodeLimits, Digests};

    fn round_trip(p: &Pdu) -> Pdu {
        let d = Digests { header: true, data: true };
        let limits = DecodeLimits { max_data_segment: 1 << 20, digests: d };
        decode(&encode(p, d), &limits).unwrap().unwrap().0
    }

    #[test]
    fn data_in_with_and_without_status() {
        let d = DataIn {
            fin: true,
            ack: false,
            has_status: true,
            status: 0,
            residual: Residual { underflow: true, overflow: false, count: 4096 },
            lun: [0; 8],
            itt: 3,
            ttt: 0xffff_ffff,
            statsn: 4,
            exp_cmdsn: 5,
            max_cmdsn: 36,
            datasn: 2,
            offset: 16384,
            data: vec![7; 1000],
        };
        let p = d.to_pdu();
        assert_eq!(p.bhs.flags(), 0x83);
        let back = DataIn::from_pdu(&round_trip(&p)).unwrap();
        assert_eq!(back, d);
        assert_eq!(DataIn::from_pdu(&back.to_pdu()).unwrap(), d);
        let mid = DataIn { fin: false, has_status: false, residual: Residual::default(), ..d.clone() };
        assert_eq!(DataIn::from_pdu(&round_trip(&mid.to_pdu())).unwrap(), mid);
        let mut bad = p.clone();
        bad.bhs.set_flags(0x01);
        assert!(DataIn::from_pdu(&bad).is_err(), "S without F");
        bad.bhs.set_flags(0x82);
        assert!(DataIn::from_pdu(&bad).is_err(), "U without S");
    }

    #[test]
    fn data_out_and_r2t() {
        let o = DataOut {
            fin: true,
            lun: [0, 2, 0, 0, 0, 0, 0, 0],
            itt: 9,
            ttt: 0x55,
            exp_statsn: 8,
            datasn: 1,
            offset: 262_144,
            data: vec![1; 333],
        };
        let p = o.to_pdu();
        assert_eq!((p.bhs.0[0], p.bhs.flags()), (0x05, 0x80));
        let back = DataOut::from_pdu(&round_trip(&p)).unwrap();
        assert_eq!(back, o);
        assert_eq!(DataOut::from_pdu(&back.to_pdu()).unwrap(), o);
        let r = R2t {
            lun: [0; 8],
            itt: 9,
            ttt: 0x55,
            statsn: 8,
            exp_cmdsn: 10,
            max_cmdsn: 40,
            r2tsn: 0,
            offset: 65536,
            desired_len: 196_608,
        };
        let back = R2t::from_pdu(&round_trip(&r.to_pdu())).unwrap();
        assert_eq!(back, r);
        assert_eq!(R2t::from_pdu(&back.to_pdu()).unwrap(), r);
        let mut bad = r.to_pdu();
        bad.bhs.set_u32(44, 0);
        assert!(R2t::from_pdu(&bad).is_err());
        assert!(R2t::from_pdu(&Pdu::new(r.to_pdu().bhs, vec![1, 2, 3, 4])).is_err());
    }
}
