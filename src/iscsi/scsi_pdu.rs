//! SCSI Command and SCSI Response (RFC 7143 11.3, 11.4): a CDB with its
//! task attributes and expected transfer length, and the status that ends
//! the task (with sense data on CHECK CONDITION and residual counts).

use super::bhs::{Bhs, Opcode};
use super::pdu::Pdu;
use super::FieldError;

/// Task attributes (byte 1, low 3 bits of a SCSI Command).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskAttr {
    Untagged = 0,
    Simple = 1,
    Ordered = 2,
    HeadOfQueue = 3,
    Aca = 4,
}

impl TaskAttr {
    fn from_bits(v: u8) -> Result<TaskAttr, FieldError> {
        Ok(match v & 7 {
            0 => TaskAttr::Untagged,
            1 => TaskAttr::Simple,
            2 => TaskAttr::Ordered,
            3 => TaskAttr::HeadOfQueue,
            4 => TaskAttr::Aca,
            n => return Err(FieldError::Invalid { field: "ATTR", detail: format!("reserved task attribute {n}") }),
        })
    }
}

pub(crate) fn check_op(bhs: &Bhs, expected: Opcode) -> Result<(), FieldError> {
    if bhs.opcode() != Some(expected) {
        return Err(FieldError::WrongOpcode { expected, got: bhs.opcode_raw() });
    }
    Ok(())
}

/// A SCSI Command PDU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScsiCommand {
    pub immediate: bool,
    /// F: no unsolicited Data-Out follows this PDU.
    pub fin: bool,
    pub read: bool,
    pub write: bool,
    pub attr: TaskAttr,
    pub lun: [u8; 8],
    pub itt: u32,
    pub expected_len: u32,
    pub cmdsn: u32,
    pub exp_statsn: u32,
    pub cdb: [u8; 16],
    /// Immediate data (writes, when negotiated).
    pub data: Vec<u8>,
}

impl ScsiCommand {
    pub fn from_pdu(p: &Pdu) -> Result<Self, FieldError> {
        check_op(&p.bhs, Opcode::ScsiCommand)?;
        let f = p.bhs.flags();
        let (read, write) = (f & 0x40 != 0, f & 0x20 != 0);
        if !read && !write && p.bhs.u32_at(20) != 0 {
            return Err(FieldError::Invalid {
                field: "Expected Data Transfer Length",
                detail: "nonzero without R or W".into(),
            });
        }
        if !write && !p.data.is_empty() {
            return Err(FieldError::Invalid { field: "DataSegmentLength", detail: "immediate data without W".into() });
        }
        let mut cdb = [0u8; 16];
        cdb.copy_from_slice(&p.bhs.0[32..48]);
        Ok(ScsiCommand {
            immediate: p.bhs.immediate(),
            fin: f & 0x80 != 0,
            read,
            write,
            attr: TaskAttr::from_bits(f)?,
            lun: p.bhs.lun_bytes(),
            itt: p.bhs.itt(),
            expected_len: p.bhs.u32_at(20),
            cmdsn: p.bhs.u32_at(24),
            exp_statsn: p.bhs.u32_at(28),
            cdb,
            data: p.data.clone(),
        })
    }

    /// The header alone (the data segment may live in a caller's buffer).
    pub fn to_bhs(&self) -> Bhs {
        let mut b = Bhs::new(Opcode::ScsiCommand);
        b.set_immediate(self.immediate);
        let mut f = self.attr as u8;
        if self.fin {
            f |= 0x80;
        }
        if self.read {
            f |= 0x40;
        }
        if self.write {
            f |= 0x20;
        }
        b.set_flags(f);
        b.0[8..16].copy_from_slice(&self.lun);
        b.set_itt(self.itt);
        b.set_u32(20, self.expected_len);
        b.set_u32(24, self.cmdsn);
        b.set_u32(28, self.exp_statsn);
        b.0[32..48].copy_from_slice(&self.cdb);
        b.set_data_len(self.data.len() as u32);
        b
    }

    pub fn to_pdu(&self) -> Pdu {
        Pdu::new(self.to_bhs(), self.data.clone())
    }
}

/// Residual flags and count shared by SCSI Response and Data-In with status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Residual {
    /// U: the target transferred less than the expected length.
    pub underflow: bool,
    /// O: the command wanted more than the expected length.
    pub overflow: bool,
    pub count: u32,
}

impl Residual {
    pub(crate) fn from_flags(f: u8, count: u32) -> Result<Residual, FieldError> {
        let (overflow, underflow) = (f & 0x04 != 0, f & 0x02 != 0);
        if overflow && underflow {
            return Err(FieldError::Invalid { field: "flags", detail: "O and U both set".into() });
        }
        Ok(Residual { underflow, overflow, count: if overflow || underflow { count } else { 0 } })
    }

    pub(crate) fn flags(&self) -> u8 {
        (if self.overflow { 0x04 } else { 0 }) | if self.underflow { 0x02 } else { 0 }
    }
}

/// A SCSI Response PDU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScsiResponse {
    /// iSCSI service response: 0 command completed at target, 1 target failure.
    pub response: u8,
    /// SCSI status byte (valid when `response` is 0).
    pub status: u8,
    pub residual: Residual,
    /// Bidirectional read residual (o/u flags), kept raw.
    pub bidi_flags: u8,
    pub bidi_residual: u32,
    pub itt: u32,
    pub snack_tag: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub exp_datasn: u32,
    /// Sense data (without its 2-byte length).
    pub sense: Vec<u8>,
    /// Response data after the sense data.
    pub response_data: Vec<u8>,
}

impl ScsiResponse {
    pub fn from_pdu(p: &Pdu) -> Result<Self, FieldError> {
        check_op(&p.bhs, Opcode::ScsiResponse)?;
        let f = p.bhs.flags();
        if f & 0x80 == 0 {
            return Err(FieldError::Invalid { field: "flags", detail: "bit 0 of byte 1 must be set".into() });
        }
        let bidi_flags = f & 0x18;
        if bidi_flags == 0x18 {
            return Err(FieldError::Invalid { field: "flags", detail: "o and u both set".into() });
        }
        let (sense, response_data) = split_sense(&p.data)?;
        Ok(ScsiResponse {
            response: p.bhs.0[2],
            status: p.bhs.0[3],
            residual: Residual::from_flags(f, p.bhs.u32_at(44))?,
            bidi_flags,
            bidi_residual: p.bhs.u32_at(40),
            itt: p.bhs.itt(),
            snack_tag: p.bhs.u32_at(20),
            statsn: p.bhs.u32_at(24),
            exp_cmdsn: p.bhs.u32_at(28),
            max_cmdsn: p.bhs.u32_at(32),
            exp_datasn: p.bhs.u32_at(36),
            sense,
            response_data,
        })
    }

    pub fn to_pdu(&self) -> Pdu {
        let mut b = Bhs::new(Opcode::ScsiResponse);
        b.set_flags(0x80 | self.bidi_flags | self.residual.flags());
        b.0[2] = self.response;
        b.0[3] = self.status;
        b.set_itt(self.itt);
        b.set_u32(20, self.snack_tag);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        b.set_u32(36, self.exp_datasn);
        b.set_u32(40, self.bidi_residual);
        b.set_u32(44, self.residual.count);
        let mut data = Vec::new();
        if !self.sense.is_empty() || !self.response_data.is_empty() {
            data.extend_from_slice(&(self.sense.len().min(0xffff) as u16).to_be_bytes());
            data.extend_from_slice(&self.sense[..self.sense.len().min(0xffff)]);
            data.extend_from_slice(&self.response_data);
        }
        Pdu::new(b, data)
    }
}

/// Splits a data segment that starts with a 2-byte SenseLength (SCSI
/// Response, Async Message) into sense data and what follows.
pub(crate) fn split_sense(data: &[u8]) -> Result<(Vec<u8>, Vec<u8>), FieldError> {
    if data.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    if data.len() < 2 {
        return Err(FieldError::Invalid { field: "SenseLength", detail: "data segment shorter than 2 bytes".into() });
    }
    let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
    if 2 + len > data.len() {
        return Err(FieldError::Invalid {
            field: "SenseLength",
            detail: format!("{len} bytes of sense in a {}-byte data segment", data.len()),
        });
    }
    Ok((data[2..2 + len].to_vec(), data[2 + len..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::pdu::{decode, encode, DecodeLimits, Digests};

    fn round_trip(p: &Pdu) -> Pdu {
        let d = Digests { header: true, data: true };
        let bytes = encode(p, d);
        let limits = DecodeLimits { max_data_segment: 1 << 20, digests: d };
        decode(&bytes, &limits).unwrap().unwrap().0
    }

    #[test]
    fn command_decode_encode_decode() {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x8a;
        let c = ScsiCommand {
            immediate: false,
            fin: false,
            read: false,
            write: true,
            attr: TaskAttr::Simple,
            lun: [0, 1, 0, 0, 0, 0, 0, 0],
            itt: 0x10,
            expected_len: 65536,
            cmdsn: 7,
            exp_statsn: 3,
            cdb,
            data: vec![0xaa; 8192],
        };
        let p = c.to_pdu();
        assert_eq!((p.bhs.0[0], p.bhs.flags()), (0x01, 0x21));
        let back = ScsiCommand::from_pdu(&round_trip(&p)).unwrap();
        assert_eq!(back, c);
        assert_eq!(ScsiCommand::from_pdu(&back.to_pdu()).unwrap(), c);
        let read = ScsiCommand { write: false, read: true, fin: true, data: vec![], ..c.clone() };
        assert_eq!(read.to_pdu().bhs.flags(), 0xc1);
        let mut bad = read.to_pdu();
        bad.bhs.set_flags(0x87);
        assert!(ScsiCommand::from_pdu(&bad).is_err(), "reserved attribute, and a length without R/W");
        let mut bad = c.to_pdu();
        bad.bhs.set_flags(0xc1);
        assert!(ScsiCommand::from_pdu(&bad).is_err(), "immediate data on a read");
    }

    #[test]
    fn response_with_sense_decode_encode_decode() {
        let r = ScsiResponse {
            response: 0,
            status: 2,
            residual: Residual { underflow: true, overflow: false, count: 512 },
            bidi_flags: 0,
            bidi_residual: 0,
            itt: 5,
            snack_tag: 0,
            statsn: 9,
            exp_cmdsn: 10,
            max_cmdsn: 41,
            exp_datasn: 0,
            sense: vec![0x70, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0, 0, 0, 0, 0],
            response_data: vec![],
        };
        let p = r.to_pdu();
        assert_eq!(p.bhs.flags(), 0x82);
        assert_eq!(&p.data[..2], &[0, 18]);
        let back = ScsiResponse::from_pdu(&round_trip(&p)).unwrap();
        assert_eq!(back, r);
        assert_eq!(ScsiResponse::from_pdu(&back.to_pdu()).unwrap(), r);
    }

    #[test]
    fn response_field_checks() {
        let ok = ScsiResponse::from_pdu(&Pdu::new(
            {
                let mut b = Bhs::new(Opcode::ScsiResponse);
                b.set_flags(0x80);
                b
            },
            vec![],
        ))
        .unwrap();
        assert!(ok.sense.is_empty());
        let mut b = Bhs::new(Opcode::ScsiResponse);
        b.set_flags(0x86);
        assert!(ScsiResponse::from_pdu(&Pdu::new(b, vec![])).is_err(), "O and U");
        b.set_flags(0x80);
        assert!(ScsiResponse::from_pdu(&Pdu::new(b, vec![0, 20, 1, 2])).is_err(), "sense longer than the segment");
        assert!(ScsiResponse::from_pdu(&Pdu::new(b, vec![0])).is_err());
        b.set_flags(0x00);
        assert!(ScsiResponse::from_pdu(&Pdu::new(b, vec![])).is_err());
    }
}
