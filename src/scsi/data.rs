//! Parameter data returned by the target: standard INQUIRY, the Block
//! Limits VPD page, READ CAPACITY (10) and (16), REPORT LUNS. Each parser
//! checks lengths and returns a typed error naming what was short.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {got} bytes, need {need}")]
pub struct ShortData {
    pub what: &'static str,
    pub got: usize,
    pub need: usize,
}

fn need(what: &'static str, b: &[u8], n: usize) -> Result<(), ShortData> {
    if b.len() < n {
        return Err(ShortData { what, got: b.len(), need: n });
    }
    Ok(())
}

/// Peripheral device types (SPC-4 table 49), as libiscsi names them.
pub fn device_type_name(t: u8) -> &'static str {
    match t {
        0x00 => "DIRECT_ACCESS",
        0x01 => "SEQUENTIAL_ACCESS",
        0x02 => "PRINTER",
        0x03 => "PROCESSOR",
        0x04 => "WRITE_ONCE",
        0x05 => "MMC",
        0x07 => "OPTICAL_MEMORY",
        0x08 => "MEDIA_CHANGER",
        0x0c => "STORAGE_ARRAY_CONTROLLER",
        0x0d => "ENCLOSURE_SERVICES",
        0x0e => "SIMPLIFIED_DIRECT_ACCESS",
        0x11 => "OSD",
        0x1e => "WELL_KNOWN_LU",
        0x1f => "UNKNOWN",
        _ => "RESERVED",
    }
}

/// Standard INQUIRY data (the fields an operator wants to see).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inquiry {
    /// 0: a device is connected at this LUN; 1: capable but not connected;
    /// 3: no device can be at this LUN.
    pub qualifier: u8,
    pub device_type: u8,
    pub removable: bool,
    pub vendor: String,
    pub product: String,
    pub revision: String,
}

fn ascii(b: &[u8]) -> String {
    b.iter().map(|&c| if (0x20..0x7f).contains(&c) { c as char } else { '?' }).collect::<String>().trim().to_string()
}

impl Inquiry {
    pub fn parse(b: &[u8]) -> Result<Inquiry, ShortData> {
        need("INQUIRY data", b, 5)?;
        let field = |r: std::ops::Range<usize>| ascii(b.get(r.start..r.end.min(b.len())).unwrap_or(&[]));
        Ok(Inquiry {
            qualifier: b[0] >> 5,
            device_type: b[0] & 0x1f,
            removable: b[1] & 0x80 != 0,
            vendor: field(8..16),
            product: field(16..32),
            revision: field(32..36),
        })
    }

    pub fn type_name(&self) -> &'static str {
        device_type_name(self.device_type)
    }
}

/// READ CAPACITY result: the LUN's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Capacity {
    pub blocks: u64,
    pub block_size: u32,
    /// Logical blocks per physical block exponent (RC16 only; 0 otherwise).
    pub lbppbe: u8,
}

impl Capacity {
    pub fn bytes(&self) -> u64 {
        self.blocks.saturating_mul(u64::from(self.block_size))
    }

    /// The capacity in bytes when it fits an i64 (sizes and offsets of
    /// files are off_t): more is a broken or hostile answer, not a disk.
    pub fn checked_bytes(&self) -> Option<u64> {
        self.blocks.checked_mul(u64::from(self.block_size)).filter(|b| *b <= i64::MAX as u64)
    }

    /// READ CAPACITY (10): None when the LUN is too big for it (the
    /// last LBA reads 0xffffffff: ask READ CAPACITY (16)).
    pub fn parse_10(b: &[u8]) -> Result<Option<Capacity>, ShortData> {
        need("READ CAPACITY(10) data", b, 8)?;
        let last = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let block_size = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        if last == u32::MAX {
            return Ok(None);
        }
        Ok(Some(Capacity { blocks: u64::from(last) + 1, block_size, lbppbe: 0 }))
    }

    pub fn parse_16(b: &[u8]) -> Result<Capacity, ShortData> {
        need("READ CAPACITY(16) data", b, 12)?;
        let mut l = [0u8; 8];
        l.copy_from_slice(&b[..8]);
        let last = u64::from_be_bytes(l);
        Ok(Capacity {
            blocks: last.saturating_add(1),
            block_size: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            lbppbe: b.get(13).map_or(0, |v| v & 0x0f),
        })
    }
}

/// The Block Limits VPD page (0xb0): transfer limits, in blocks; 0 means
/// "not reported".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockLimits {
    pub max_transfer_blocks: u32,
    pub optimal_transfer_blocks: u32,
}

impl BlockLimits {
    pub fn parse(b: &[u8]) -> Result<BlockLimits, ShortData> {
        need("Block Limits VPD page", b, 16)?;
        if b[1] != 0xb0 {
            return Err(ShortData { what: "Block Limits VPD page (wrong page code)", got: 0, need: 16 });
        }
        Ok(BlockLimits {
            max_transfer_blocks: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            optimal_transfer_blocks: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
        })
    }
}

/// One designator of the Device Identification VPD page (0x83, SPC-4
/// 7.8.6): what names a logical unit (or its port or target).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Designator {
    /// 0: the logical unit, 1: the target port, 2: the target device.
    pub association: u8,
    /// 1: T10 vendor ID, 2: EUI-64, 3: NAA, 8: SCSI name string, 0xa: UUID, ...
    pub designator_type: u8,
    /// 1: binary, 2: ASCII, 3: UTF-8.
    pub code_set: u8,
    pub value: Vec<u8>,
}

impl Designator {
    /// Short name of the designator type, for identities and messages.
    pub fn type_name(&self) -> &'static str {
        match self.designator_type {
            0 => "vendor",
            1 => "t10",
            2 => "eui",
            3 => "naa",
            4 => "port",
            5 => "tpg",
            6 => "lug",
            7 => "md5",
            8 => "name",
            9 => "pcie",
            0xa => "uuid",
            _ => "other",
        }
    }

    /// `naa:600140...`: the type and the value in hex (ASCII values too,
    /// so the result never holds spaces, `=` or newlines).
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(5 + 2 * self.value.len());
        s.push_str(self.type_name());
        s.push(':');
        for b in &self.value {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

/// The designators of a Device Identification VPD page (0x83). Entries
/// running past the page are an error; the page length is trusted only as
/// far as the bytes go.
pub fn parse_device_identification(b: &[u8]) -> Result<Vec<Designator>, ShortData> {
    need("Device Identification VPD page", b, 4)?;
    if b[1] != 0x83 {
        return Err(ShortData { what: "Device Identification VPD page (wrong page code)", got: 0, need: 4 });
    }
    let page_len = u16::from_be_bytes([b[2], b[3]]) as usize;
    let end = b.len().min(4 + page_len);
    let mut out = Vec::new();
    let mut at = 4;
    while at + 4 <= end {
        let len = b[at + 3] as usize;
        let value = b.get(at + 4..at + 4 + len).filter(|_| at + 4 + len <= end).ok_or(ShortData {
            what: "Device Identification designator",
            got: end - at,
            need: 4 + len,
        })?;
        out.push(Designator {
            association: (b[at + 1] >> 4) & 0x3,
            designator_type: b[at + 1] & 0x0f,
            code_set: b[at] & 0x0f,
            value: value.to_vec(),
        });
        at += 4 + len;
    }
    Ok(out)
}

/// The designators that name the logical unit itself (association 0) and
/// identify it globally (T10 vendor ID, EUI-64, NAA, SCSI name string,
/// UUID), rendered and sorted: the LUN's name however it is reached.
pub fn lun_identifiers(designators: &[Designator]) -> Vec<String> {
    let mut ids: Vec<String> = designators
        .iter()
        .filter(|d| d.association == 0 && matches!(d.designator_type, 1 | 2 | 3 | 8 | 0xa) && !d.value.is_empty())
        .map(Designator::render)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// REPORT LUNS: the LUN numbers (entries in other address methods are
/// skipped), and the list length the target announced (to ask again with
/// a larger allocation when it did not fit).
pub fn parse_report_luns(b: &[u8]) -> Result<(Vec<u16>, usize), ShortData> {
    need("REPORT LUNS data", b, 8)?;
    let list_len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let mut luns = Vec::new();
    let end = b.len().min(8usize.saturating_add(list_len));
    let mut at = 8;
    while at + 8 <= end {
        let mut e = [0u8; 8];
        e.copy_from_slice(&b[at..at + 8]);
        if let Some(l) = super::decode_lun(&e) {
            luns.push(l);
        }
        at += 8;
    }
    Ok((luns, list_len + 8))
}

#[cfg(test)]
mod tests {

    #[test]
    fn capacities_past_an_i64_are_refused() {
        let c = |blocks, block_size| Capacity { blocks, block_size, lbppbe: 0 };
        assert_eq!(c(2048, 512).checked_bytes(), Some(1 << 20));
        // Exactly 2^63 bytes: one past i64::MAX.
        assert_eq!(c(1 << 54, 512).checked_bytes(), None);
        assert_eq!(c((i64::MAX as u64) / 512, 512).checked_bytes(), Some((i64::MAX as u64) / 512 * 512));
        assert_eq!(c((i64::MAX as u64) / 512 + 1, 512).checked_bytes(), None);
        // READ CAPACITY(16) with last LBA 2^64-1: the block count saturates.
        let mut saturated = Capacity::parse_16(&[0xff; 12]).unwrap();
        saturated.block_size = 512;
        assert_eq!(saturated.checked_bytes(), None);
        assert_eq!(c(u64::MAX, 4096).checked_bytes(), None);
    }
    use super::*;

    #[test]
    fn tgt_answers() {
        let mut inq = vec![0u8; 36];
        inq[0] = 0x00;
        inq[8..16].copy_from_slice(b"IET     ");
        inq[16..32].copy_from_slice(b"VIRTUAL-DISK    ");
        inq[32..36].copy_from_slice(b"0001");
        let i = Inquiry::parse(&inq).unwrap();
        assert_eq!((i.type_name(), i.vendor.as_str(), i.product.as_str()), ("DIRECT_ACCESS", "IET", "VIRTUAL-DISK"));
        let ctl = Inquiry::parse(&[0x0c, 0, 5, 0x12, 31]).unwrap();
        assert_eq!((ctl.type_name(), ctl.vendor.as_str()), ("STORAGE_ARRAY_CONTROLLER", ""));
        assert!(Inquiry::parse(&[0]).is_err());

        let rc16 = [0, 0, 0, 0, 0, 0, 0x0f, 0xff, 0, 0, 0x10, 0, 0, 3, 0, 0];
        let c = Capacity::parse_16(&rc16).unwrap();
        assert_eq!((c.blocks, c.block_size, c.bytes(), c.lbppbe), (4096, 4096, 16 << 20, 3));
        let rc10 = [0, 0, 0x7f, 0xff, 0, 0, 2, 0];
        assert_eq!(Capacity::parse_10(&rc10).unwrap().unwrap().bytes(), 16 << 20);
        assert_eq!(Capacity::parse_10(&[0xff, 0xff, 0xff, 0xff, 0, 0, 2, 0]).unwrap(), None);
        assert!(Capacity::parse_16(&rc16[..8]).is_err());
    }

    #[test]
    fn device_identification_as_tgt_answers_it() {
        // tgt 1.0.85, LUN 1 of tid 1: two NAA designators and a T10 vendor ID.
        let mut page = vec![0x00, 0x83, 0, 0];
        page.extend_from_slice(&[0x01, 0x03, 0, 8, 0x60, 0, 0x0e, 0x10, 0, 0, 0, 0]);
        page.extend_from_slice(&[0x01, 0x03, 0, 4, 0x30, 0, 0, 1]);
        page.extend_from_slice(&[0x02, 0x01, 0, 16]);
        page.extend_from_slice(b"IET     00010001");
        page.extend_from_slice(&[0x61, 0x93, 0, 4, 0, 0, 0, 1]); // a target port: not the LUN's name
        let n = (page.len() - 4) as u16;
        page[2..4].copy_from_slice(&n.to_be_bytes());
        let d = parse_device_identification(&page).unwrap();
        assert_eq!(d.len(), 4);
        assert_eq!((d[2].designator_type, d[2].code_set, d[2].association), (1, 2, 0));
        assert_eq!(d[3].association, 1);
        let ids = lun_identifiers(&d);
        assert_eq!(ids, vec!["naa:30000001", "naa:60000e1000000000", "t10:49455420202020203030303130303031"]);
        assert!(ids.iter().all(|i| !i.contains(['=', ' ', '\n'])));
        // A designator running past the page is refused, a short page too.
        let mut bad = page.clone();
        bad[7] = 200;
        assert!(parse_device_identification(&bad).is_err());
        assert!(parse_device_identification(&page[..3]).is_err());
        page[1] = 0x80;
        assert!(parse_device_identification(&page).is_err());
    }

    #[test]
    fn report_luns_and_limits() {
        let b = [0, 0, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, 0x00, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_report_luns(&b).unwrap(), (vec![0, 1, 256], 32));
        // A list longer than the buffer: what fits, and the length to ask for.
        let (l, want) = parse_report_luns(&b[..16]).unwrap();
        assert_eq!((l, want), (vec![0], 32));
        let mut vpd = [0u8; 64];
        vpd[1] = 0xb0;
        vpd[8..12].copy_from_slice(&2048u32.to_be_bytes());
        assert_eq!(BlockLimits::parse(&vpd).unwrap().max_transfer_blocks, 2048);
        vpd[1] = 0x80;
        assert!(BlockLimits::parse(&vpd).is_err());
    }
}
