//! SCSI commands and data as an initiator needs them (SPC-4, SBC-3): CDB
//! builders, the parsers of what the target answers (INQUIRY, READ
//! CAPACITY, REPORT LUNS, Block Limits), sense data in words, and the LUN
//! field of iSCSI PDUs. Pure: bytes in, typed values out; no input makes
//! it panic (fuzz target `iscsi_initiator_pdu`).

pub mod cdb;
pub mod data;
pub mod sense;

/// SCSI status byte (SAM-5 5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Good,
    CheckCondition,
    ConditionMet,
    Busy,
    ReservationConflict,
    TaskSetFull,
    AcaActive,
    TaskAborted,
    Other(u8),
}

impl Status {
    pub fn from_u8(v: u8) -> Status {
        match v {
            0x00 => Status::Good,
            0x02 => Status::CheckCondition,
            0x04 => Status::ConditionMet,
            0x08 => Status::Busy,
            0x18 => Status::ReservationConflict,
            0x28 => Status::TaskSetFull,
            0x30 => Status::AcaActive,
            0x40 => Status::TaskAborted,
            n => Status::Other(n),
        }
    }

    pub fn name(self) -> String {
        match self {
            Status::Good => "GOOD".into(),
            Status::CheckCondition => "CHECK CONDITION".into(),
            Status::ConditionMet => "CONDITION MET".into(),
            Status::Busy => "BUSY".into(),
            Status::ReservationConflict => "RESERVATION CONFLICT (another initiator holds a reservation)".into(),
            Status::TaskSetFull => "TASK SET FULL".into(),
            Status::AcaActive => "ACA ACTIVE".into(),
            Status::TaskAborted => "TASK ABORTED".into(),
            Status::Other(n) => format!("status 0x{n:02x}"),
        }
    }
}

/// Largest LUN the iSCSI LUN field carries here (flat space addressing).
pub const MAX_LUN: u16 = 16383;

/// The 8-byte LUN field for `lun` (SAM-5 4.7): peripheral device
/// addressing below 256, flat space addressing up to 16383, as libiscsi
/// and the Linux initiator send it.
pub fn encode_lun(lun: u16) -> [u8; 8] {
    let mut b = [0u8; 8];
    if lun < 256 {
        b[1] = lun as u8;
    } else {
        let l = lun.min(MAX_LUN);
        b[0] = 0x40 | (l >> 8) as u8;
        b[1] = l as u8;
    }
    b
}

/// The LUN number of a REPORT LUNS entry in peripheral or flat space
/// addressing; other address methods are returned as None.
pub fn decode_lun(b: &[u8; 8]) -> Option<u16> {
    match b[0] >> 6 {
        0 if b[0] == 0 => Some(u16::from(b[1])),
        1 => Some((u16::from(b[0] & 0x3f) << 8) | u16::from(b[1])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lun_fields() {
        for lun in [0u16, 1, 255, 256, 1000, MAX_LUN] {
            assert_eq!(decode_lun(&encode_lun(lun)), Some(lun), "{lun}");
        }
        assert_eq!(encode_lun(1), [0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode_lun(256), [0x41, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_lun(&[0xc0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(Status::from_u8(2), Status::CheckCondition);
        assert_eq!(Status::from_u8(0x99).name(), "status 0x99");
    }
}
