//! The SCSI commands a volume and `iscsi-ls` need, over a session: each
//! checks the status and turns CHECK CONDITION into an error in words.

use super::error::InitiatorError;
use super::session::Session;
use super::task::{Command, DataBuf, Outcome};
use crate::scsi::cdb::{self, Cdb};
use crate::scsi::data::{
    lun_identifiers, parse_device_identification, parse_report_luns, BlockLimits, Capacity, Inquiry,
};
use crate::scsi::sense::SenseKey;
use crate::scsi::Status;

/// The error for a command that did not end GOOD.
pub fn status_error(cdb: &Cdb, lun: u16, o: &Outcome) -> InitiatorError {
    let detail = match (&o.status, &o.sense) {
        (Status::CheckCondition, Some(s)) => format!("CHECK CONDITION, {s}"),
        (s, _) => s.name(),
    };
    InitiatorError::Scsi { command: cdb::name(cdb), lun, status: o.status, sense: o.sense, detail }
}

/// Runs a command that reads up to `alloc` bytes; returns what arrived.
pub fn data_in(session: &Session, lun: u16, cdb: Cdb, alloc: usize) -> Result<Vec<u8>, InitiatorError> {
    let mut buf = vec![0u8; alloc];
    let o = session.execute_one(Command { lun, cdb, data: DataBuf::In(&mut buf) })?;
    if !o.is_good() {
        return Err(status_error(&cdb, lun, &o));
    }
    buf.truncate(o.transferred.min(alloc));
    Ok(buf)
}

pub fn no_data(session: &Session, lun: u16, cdb: Cdb) -> Result<(), InitiatorError> {
    let o = session.execute_one(Command { lun, cdb, data: DataBuf::None })?;
    if !o.is_good() {
        return Err(status_error(&cdb, lun, &o));
    }
    Ok(())
}

fn short(what: impl std::fmt::Display) -> InitiatorError {
    InitiatorError::Volume(what.to_string())
}

pub fn inquiry(session: &Session, lun: u16) -> Result<Inquiry, InitiatorError> {
    let b = data_in(session, lun, cdb::inquiry(None, 96), 96)?;
    Inquiry::parse(&b).map_err(short)
}

pub fn test_unit_ready(session: &Session, lun: u16) -> Result<(), InitiatorError> {
    no_data(session, lun, cdb::test_unit_ready())
}

/// Block Limits, or the default (nothing reported) when the page is absent.
pub fn block_limits(session: &Session, lun: u16) -> BlockLimits {
    data_in(session, lun, cdb::inquiry(Some(cdb::VPD_BLOCK_LIMITS), 64), 64)
        .ok()
        .and_then(|b| BlockLimits::parse(&b).ok())
        .unwrap_or_default()
}

/// What names the LUN globally: its logical-unit designators from the
/// Device Identification VPD page (0x83), else its Unit Serial Number
/// (0x80) as `serial:HEX`; empty when the target reports neither.
pub fn lun_identity(session: &Session, lun: u16) -> Vec<String> {
    let ids = data_in(session, lun, cdb::inquiry(Some(cdb::VPD_DEVICE_IDENTIFICATION), 1024), 1024)
        .ok()
        .and_then(|b| parse_device_identification(&b).ok())
        .map(|d| lun_identifiers(&d))
        .unwrap_or_default();
    if !ids.is_empty() {
        return ids;
    }
    match data_in(session, lun, cdb::inquiry(Some(cdb::VPD_UNIT_SERIAL_NUMBER), 256), 256) {
        Ok(b) if b.len() > 4 && b[1] == cdb::VPD_UNIT_SERIAL_NUMBER => {
            let n = (b[3] as usize).min(b.len() - 4);
            let serial: Vec<u8> = b[4..4 + n].iter().copied().filter(|c| *c != b' ' && *c != 0).collect();
            if serial.is_empty() {
                Vec::new()
            } else {
                vec![format!("serial:{}", serial.iter().map(|c| format!("{c:02x}")).collect::<String>())]
            }
        }
        _ => Vec::new(),
    }
}

/// Whether the LUN is write-protected (the WP bit of the MODE SENSE(6)
/// header); false when the target does not say.
pub fn write_protected(session: &Session, lun: u16) -> bool {
    data_in(session, lun, cdb::mode_sense_6(255), 255).ok().is_some_and(|b| b.len() >= 3 && b[2] & 0x80 != 0)
}

fn is_unsupported(e: &InitiatorError) -> bool {
    e.sense().is_some_and(|s| s.key == SenseKey::IllegalRequest && matches!(s.asc, 0x20 | 0x24))
}

/// READ CAPACITY (16), or (10) for a target that does not know (16).
pub fn read_capacity(session: &Session, lun: u16) -> Result<Capacity, InitiatorError> {
    let c = match data_in(session, lun, cdb::read_capacity_16(32), 32) {
        Ok(b) => Capacity::parse_16(&b).map_err(short)?,
        Err(e) if is_unsupported(&e) => {
            let b = data_in(session, lun, cdb::read_capacity_10(), 8)?;
            Capacity::parse_10(&b).map_err(short)?.ok_or_else(|| {
                short(format!(
                    "LUN {lun} is too big for READ CAPACITY(10), and the target does not support READ CAPACITY(16)"
                ))
            })?
        }
        Err(e) => return Err(e),
    };
    if !c.block_size.is_power_of_two() || !(512..=65536).contains(&c.block_size) {
        return Err(short(format!("LUN {lun} reports an unsupported block size of {} bytes", c.block_size)));
    }
    // Sizes and offsets are i64 in files (off_t): a LUN larger than that is
    // a broken or hostile answer, not a disk (2^63 bytes is 8 EiB).
    if c.checked_bytes().is_none() {
        return Err(short(format!(
            "LUN {lun} reports an impossible capacity of {} blocks of {} bytes (more than 2^63 bytes)",
            c.blocks, c.block_size
        )));
    }
    Ok(c)
}

/// REPORT LUNS, asking again with room for the whole list if needed.
pub fn report_luns(session: &Session) -> Result<Vec<u16>, InitiatorError> {
    let mut alloc = 4096usize;
    loop {
        let b = data_in(session, 0, cdb::report_luns(alloc as u32), alloc)?;
        let (luns, want) = parse_report_luns(&b).map_err(short)?;
        if want <= alloc || alloc >= 1 << 20 {
            return Ok(luns);
        }
        alloc = want.min(1 << 20);
    }
}
