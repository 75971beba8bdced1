//! Sense data (SPC-4 4.5): fixed (0x70/0x71) and descriptor (0x72/0x73)
//! formats, decoded into key, ASC and ASCQ, and said in words.

/// Sense keys (SPC-4 table 48).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenseKey {
    NoSense,
    RecoveredError,
    NotReady,
    MediumError,
    HardwareError,
    IllegalRequest,
    UnitAttention,
    DataProtect,
    BlankCheck,
    VendorSpecific,
    CopyAborted,
    AbortedCommand,
    VolumeOverflow,
    Miscompare,
    Completed,
    Reserved(u8),
}

impl SenseKey {
    pub fn from_u8(v: u8) -> SenseKey {
        match v & 0x0f {
            0x0 => SenseKey::NoSense,
            0x1 => SenseKey::RecoveredError,
            0x2 => SenseKey::NotReady,
            0x3 => SenseKey::MediumError,
            0x4 => SenseKey::HardwareError,
            0x5 => SenseKey::IllegalRequest,
            0x6 => SenseKey::UnitAttention,
            0x7 => SenseKey::DataProtect,
            0x8 => SenseKey::BlankCheck,
            0x9 => SenseKey::VendorSpecific,
            0xa => SenseKey::CopyAborted,
            0xb => SenseKey::AbortedCommand,
            0xd => SenseKey::VolumeOverflow,
            0xe => SenseKey::Miscompare,
            0xf => SenseKey::Completed,
            n => SenseKey::Reserved(n),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SenseKey::NoSense => "NO SENSE",
            SenseKey::RecoveredError => "RECOVERED ERROR",
            SenseKey::NotReady => "NOT READY",
            SenseKey::MediumError => "MEDIUM ERROR",
            SenseKey::HardwareError => "HARDWARE ERROR",
            SenseKey::IllegalRequest => "ILLEGAL REQUEST",
            SenseKey::UnitAttention => "UNIT ATTENTION",
            SenseKey::DataProtect => "DATA PROTECT",
            SenseKey::BlankCheck => "BLANK CHECK",
            SenseKey::VendorSpecific => "VENDOR SPECIFIC",
            SenseKey::CopyAborted => "COPY ABORTED",
            SenseKey::AbortedCommand => "ABORTED COMMAND",
            SenseKey::VolumeOverflow => "VOLUME OVERFLOW",
            SenseKey::Miscompare => "MISCOMPARE",
            SenseKey::Completed => "COMPLETED",
            SenseKey::Reserved(_) => "RESERVED SENSE KEY",
        }
    }
}

/// Decoded sense data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sense {
    pub key: SenseKey,
    pub asc: u8,
    pub ascq: u8,
    /// The INFORMATION field (e.g. the failing LBA), when valid.
    pub information: Option<u64>,
}

/// ASC/ASCQ in words for the codes an initiator of block storage meets
/// (SPC-4 table D.1, abridged). Unknown pairs are shown as numbers.
fn asc_words(asc: u8, ascq: u8) -> Option<&'static str> {
    Some(match (asc, ascq) {
        (0x00, 0x00) => "no additional sense information",
        (0x04, 0x00) => "logical unit not ready, cause not reportable",
        (0x04, 0x01) => "logical unit is in process of becoming ready",
        (0x04, 0x02) => "logical unit not ready, initializing command required",
        (0x04, 0x03) => "logical unit not ready, manual intervention required",
        (0x04, 0x0a) => "logical unit not accessible, asymmetric access state transition",
        (0x04, 0x0b) => "logical unit not accessible, target port in standby state",
        (0x04, 0x0c) => "logical unit not accessible, target port in unavailable state",
        (0x08, 0x00) => "logical unit communication failure",
        (0x0c, 0x00) => "write error",
        (0x0c, 0x02) => "write error, auto reallocation failed",
        (0x11, 0x00) => "unrecovered read error",
        (0x1a, 0x00) => "parameter list length error",
        (0x20, 0x00) => "invalid command operation code",
        (0x21, 0x00) => "logical block address out of range",
        (0x24, 0x00) => "invalid field in CDB",
        (0x25, 0x00) => "logical unit not supported",
        (0x26, 0x00) => "invalid field in parameter list",
        (0x27, 0x00) => "write protected",
        (0x27, 0x01) => "hardware write protected",
        (0x27, 0x02) => "logical unit software write protected",
        (0x28, 0x00) => "not ready to ready change, medium may have changed",
        (0x29, 0x00) => "power on, reset, or bus device reset occurred",
        (0x29, 0x01) => "power on occurred",
        (0x29, 0x02) => "SCSI bus reset occurred",
        (0x29, 0x03) => "bus device reset function occurred",
        (0x29, 0x04) => "device internal reset",
        (0x29, 0x07) => "I_T nexus loss occurred",
        (0x2a, 0x01) => "mode parameters changed",
        (0x2a, 0x03) => "reservations preempted",
        (0x2a, 0x06) => "asymmetric access state changed",
        (0x2a, 0x09) => "capacity data has changed",
        (0x2f, 0x00) => "commands cleared by another initiator",
        (0x31, 0x00) => "medium format corrupted",
        (0x3a, 0x00) => "medium not present",
        (0x3f, 0x01) => "microcode has been changed",
        (0x3f, 0x03) => "inquiry data has changed",
        (0x3f, 0x0e) => "reported LUNs data has changed",
        (0x44, 0x00) => "internal target failure",
        (0x47, 0x00) => "SCSI parity error",
        (0x47, 0x05) => "protocol service CRC error",
        (0x49, 0x00) => "invalid message error",
        (0x4b, 0x00) => "data phase error",
        (0x4b, 0x04) => "NAK received",
        (0x4e, 0x00) => "overlapped commands attempted",
        (0x55, 0x03) => "insufficient resources",
        (0x5d, 0x00) => "failure prediction threshold exceeded",
        _ => return None,
    })
}

impl Sense {
    /// Parses sense data; None when it is too short or not a known format.
    pub fn parse(b: &[u8]) -> Option<Sense> {
        let code = b.first()? & 0x7f;
        match code {
            0x70 | 0x71 => {
                let key = SenseKey::from_u8(*b.get(2)?);
                let (asc, ascq) = (b.get(12).copied().unwrap_or(0), b.get(13).copied().unwrap_or(0));
                let information =
                    (b[0] & 0x80 != 0 && b.len() >= 7).then(|| u64::from(u32::from_be_bytes([b[3], b[4], b[5], b[6]])));
                Some(Sense { key, asc, ascq, information })
            }
            0x72 | 0x73 => {
                let key = SenseKey::from_u8(*b.get(1)?);
                let (asc, ascq) = (b.get(2).copied().unwrap_or(0), b.get(3).copied().unwrap_or(0));
                // Descriptors follow byte 8; type 0 is Information.
                let mut information = None;
                let end = b.len().min(8 + usize::from(b.get(7).copied().unwrap_or(0)));
                let mut at = 8;
                while at + 2 <= end {
                    let (ty, len) = (b[at], usize::from(b[at + 1]));
                    if ty == 0 && len >= 10 && at + 12 <= end && b[at + 2] & 0x80 != 0 {
                        let mut v = [0u8; 8];
                        v.copy_from_slice(&b[at + 4..at + 12]);
                        information = Some(u64::from_be_bytes(v));
                    }
                    at += 2 + len;
                }
                Some(Sense { key, asc, ascq, information })
            }
            _ => None,
        }
    }

    pub fn is_unit_attention(&self) -> bool {
        self.key == SenseKey::UnitAttention
    }

    /// ASC/ASCQ in words, or the numbers.
    pub fn description(&self) -> String {
        match asc_words(self.asc, self.ascq) {
            Some(w) => w.to_string(),
            None => format!("additional sense 0x{:02x}/0x{:02x}", self.asc, self.ascq),
        }
    }
}

impl std::fmt::Display for Sense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} (ASC 0x{:02x}, ASCQ 0x{:02x})", self.key.name(), self.description(), self.asc, self.ascq)?;
        if let Some(i) = self.information {
            write!(f, ", information 0x{i:x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_as_tgt_sends_it() {
        // tgt's answer to a READ past the end: ILLEGAL REQUEST, 21/00.
        let b = [0x70, 0, 5, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x21, 0x00, 0, 0, 0, 0];
        let s = Sense::parse(&b).unwrap();
        assert_eq!((s.key, s.asc, s.ascq, s.information), (SenseKey::IllegalRequest, 0x21, 0, None));
        assert_eq!(s.to_string(), "ILLEGAL REQUEST: logical block address out of range (ASC 0x21, ASCQ 0x00)");
        let ua = Sense::parse(&[0xf0, 0, 6, 0, 0, 0x10, 0, 0x0a, 0, 0, 0, 0, 0x29, 0]).unwrap();
        assert!(ua.is_unit_attention());
        assert_eq!(ua.information, Some(0x1000));
        assert!(ua.to_string().contains("power on, reset"));
    }

    #[test]
    fn descriptor_format_and_garbage() {
        let b = [0x72, 0x03, 0x11, 0x00, 0, 0, 0, 12, 0x00, 0x0a, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
        let s = Sense::parse(&b).unwrap();
        assert_eq!((s.key, s.asc, s.information), (SenseKey::MediumError, 0x11, Some(0x1234)));
        assert_eq!(Sense::parse(&[]), None);
        assert_eq!(Sense::parse(&[0x70]), None);
        assert_eq!(Sense::parse(&[0x12, 1, 2, 3]), None);
        let odd = Sense::parse(&[0x72, 0x05, 0x99, 0x42]).unwrap();
        assert_eq!(odd.description(), "additional sense 0x99/0x42");
        // Descriptor lengths that overrun the buffer end the walk.
        let _ = Sense::parse(&[0x72, 0x05, 0, 0, 0, 0, 0, 250, 0x00, 200, 0x80]);
    }
}
