//! Command descriptor blocks (SPC-4, SBC-3), each padded to the 16 bytes
//! of the iSCSI CDB field.

pub const INQUIRY: u8 = 0x12;
pub const TEST_UNIT_READY: u8 = 0x00;
pub const READ_CAPACITY_10: u8 = 0x25;
pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
pub const SA_READ_CAPACITY_16: u8 = 0x10;
pub const READ_16: u8 = 0x88;
pub const WRITE_16: u8 = 0x8a;
pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
pub const REPORT_LUNS: u8 = 0xa0;
pub const MODE_SENSE_6: u8 = 0x1a;

/// VPD page of Block Limits (SBC-3 6.6.3).
pub const VPD_BLOCK_LIMITS: u8 = 0xb0;
/// VPD page of Device Identification (SPC-4 7.8.6).
pub const VPD_DEVICE_IDENTIFICATION: u8 = 0x83;
/// VPD page of the Unit Serial Number (SPC-4 7.8.17).
pub const VPD_UNIT_SERIAL_NUMBER: u8 = 0x80;

pub type Cdb = [u8; 16];

/// INQUIRY: the standard data, or VPD page `page` when `Some`.
pub fn inquiry(page: Option<u8>, alloc: u16) -> Cdb {
    let mut c = [0u8; 16];
    c[0] = INQUIRY;
    if let Some(p) = page {
        c[1] = 1;
        c[2] = p;
    }
    c[3..5].copy_from_slice(&alloc.to_be_bytes());
    c
}

pub fn test_unit_ready() -> Cdb {
    [0u8; 16]
}

pub fn read_capacity_10() -> Cdb {
    let mut c = [0u8; 16];
    c[0] = READ_CAPACITY_10;
    c
}

pub fn read_capacity_16(alloc: u32) -> Cdb {
    let mut c = [0u8; 16];
    c[0] = SERVICE_ACTION_IN_16;
    c[1] = SA_READ_CAPACITY_16;
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

fn rw16(op: u8, lba: u64, blocks: u32) -> Cdb {
    let mut c = [0u8; 16];
    c[0] = op;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

pub fn read_16(lba: u64, blocks: u32) -> Cdb {
    rw16(READ_16, lba, blocks)
}

pub fn write_16(lba: u64, blocks: u32) -> Cdb {
    rw16(WRITE_16, lba, blocks)
}

/// SYNCHRONIZE CACHE(10) of the whole medium (LBA 0, 0 blocks = to the end).
pub fn synchronize_cache_10() -> Cdb {
    let mut c = [0u8; 16];
    c[0] = SYNCHRONIZE_CACHE_10;
    c
}

/// MODE SENSE(6) of all pages, block descriptors disabled: the header's
/// device-specific byte says whether the medium is write-protected.
pub fn mode_sense_6(alloc: u8) -> Cdb {
    let mut c = [0u8; 16];
    c[0] = MODE_SENSE_6;
    c[1] = 0x08;
    c[2] = 0x3f;
    c[4] = alloc;
    c
}

/// REPORT LUNS, select report 0 (all logical units).
pub fn report_luns(alloc: u32) -> Cdb {
    let mut c = [0u8; 16];
    c[0] = REPORT_LUNS;
    c[6..10].copy_from_slice(&alloc.to_be_bytes());
    c
}

/// A short name of the command in `cdb`, for messages.
pub fn name(cdb: &Cdb) -> &'static str {
    match cdb[0] {
        INQUIRY => "INQUIRY",
        TEST_UNIT_READY => "TEST UNIT READY",
        READ_CAPACITY_10 => "READ CAPACITY(10)",
        SERVICE_ACTION_IN_16 if cdb[1] & 0x1f == SA_READ_CAPACITY_16 => "READ CAPACITY(16)",
        READ_16 => "READ(16)",
        WRITE_16 => "WRITE(16)",
        SYNCHRONIZE_CACHE_10 => "SYNCHRONIZE CACHE(10)",
        REPORT_LUNS => "REPORT LUNS",
        MODE_SENSE_6 => "MODE SENSE(6)",
        _ => "SCSI command",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        let r = read_16(0x0102_0304_0506_0708, 0x100);
        assert_eq!(r[0], 0x88);
        assert_eq!(&r[2..10], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&r[10..14], &[0, 0, 1, 0]);
        assert_eq!(name(&r), "READ(16)");
        assert_eq!(&inquiry(Some(0xb0), 64)[..5], &[0x12, 1, 0xb0, 0, 64]);
        assert_eq!(&read_capacity_16(32)[..2], &[0x9e, 0x10]);
        assert_eq!(name(&read_capacity_16(32)), "READ CAPACITY(16)");
        assert_eq!(&report_luns(4096)[6..10], &[0, 0, 0x10, 0]);
    }
}
