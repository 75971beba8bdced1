//! The 48-byte Basic Header Segment: opcode, flags, lengths and the fields
//! shared by every PDU. Offsets are RFC 7143 section 11.

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;

/// PDU opcodes (RFC 7143 11.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    NopOut,
    ScsiCommand,
    TaskMgmtRequest,
    LoginRequest,
    TextRequest,
    DataOut,
    LogoutRequest,
    Snack,
    NopIn,
    ScsiResponse,
    TaskMgmtResponse,
    LoginResponse,
    TextResponse,
    DataIn,
    LogoutResponse,
    R2t,
    AsyncMessage,
    Reject,
}

impl Opcode {
    pub fn from_u8(v: u8) -> Option<Opcode> {
        Some(match v & 0x3f {
            0x00 => Opcode::NopOut,
            0x01 => Opcode::ScsiCommand,
            0x02 => Opcode::TaskMgmtRequest,
            0x03 => Opcode::LoginRequest,
            0x04 => Opcode::TextRequest,
            0x05 => Opcode::DataOut,
            0x06 => Opcode::LogoutRequest,
            0x10 => Opcode::Snack,
            0x20 => Opcode::NopIn,
            0x21 => Opcode::ScsiResponse,
            0x22 => Opcode::TaskMgmtResponse,
            0x23 => Opcode::LoginResponse,
            0x24 => Opcode::TextResponse,
            0x25 => Opcode::DataIn,
            0x26 => Opcode::LogoutResponse,
            0x31 => Opcode::R2t,
            0x32 => Opcode::AsyncMessage,
            0x3f => Opcode::Reject,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        match self {
            Opcode::NopOut => 0x00,
            Opcode::ScsiCommand => 0x01,
            Opcode::TaskMgmtRequest => 0x02,
            Opcode::LoginRequest => 0x03,
            Opcode::TextRequest => 0x04,
            Opcode::DataOut => 0x05,
            Opcode::LogoutRequest => 0x06,
            Opcode::Snack => 0x10,
            Opcode::NopIn => 0x20,
            Opcode::ScsiResponse => 0x21,
            Opcode::TaskMgmtResponse => 0x22,
            Opcode::LoginResponse => 0x23,
            Opcode::TextResponse => 0x24,
            Opcode::DataIn => 0x25,
            Opcode::LogoutResponse => 0x26,
            Opcode::R2t => 0x31,
            Opcode::AsyncMessage => 0x32,
            Opcode::Reject => 0x3f,
        }
    }
}

/// A Basic Header Segment with typed accessors over the raw bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bhs(pub [u8; BHS_LEN]);

impl Default for Bhs {
    fn default() -> Self {
        Bhs([0; BHS_LEN])
    }
}

impl std::fmt::Debug for Bhs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Bhs(op=0x{:02x} flags=0x{:02x} itt=0x{:08x} dlen={})",
            self.opcode_raw(),
            self.flags(),
            self.itt(),
            self.data_len()
        )
    }
}

impl Bhs {
    pub fn new(op: Opcode) -> Self {
        let mut b = Bhs::default();
        b.0[0] = op.code();
        b
    }

    pub fn opcode_raw(&self) -> u8 {
        self.0[0] & 0x3f
    }

    pub fn opcode(&self) -> Option<Opcode> {
        Opcode::from_u8(self.0[0])
    }

    /// The I bit (immediate delivery), initiator PDUs only.
    pub fn immediate(&self) -> bool {
        self.0[0] & 0x40 != 0
    }

    pub fn set_immediate(&mut self, on: bool) {
        if on {
            self.0[0] |= 0x40;
        } else {
            self.0[0] &= !0x40;
        }
    }

    pub fn flags(&self) -> u8 {
        self.0[1]
    }

    pub fn set_flags(&mut self, f: u8) {
        self.0[1] = f;
    }

    /// TotalAHSLength in bytes (the field counts 4-byte words).
    pub fn ahs_len(&self) -> usize {
        usize::from(self.0[4]) * 4
    }

    pub fn set_ahs_words(&mut self, words: u8) {
        self.0[4] = words;
    }

    /// DataSegmentLength, without padding.
    pub fn data_len(&self) -> u32 {
        u32::from_be_bytes([0, self.0[5], self.0[6], self.0[7]])
    }

    /// Sets DataSegmentLength; callers keep it below 2^24.
    pub fn set_data_len(&mut self, len: u32) {
        let b = len.min(0x00ff_ffff).to_be_bytes();
        self.0[5..8].copy_from_slice(&b[1..]);
    }

    pub fn u16_at(&self, off: usize) -> u16 {
        u16::from_be_bytes([self.0[off], self.0[off + 1]])
    }

    pub fn set_u16(&mut self, off: usize, v: u16) {
        self.0[off..off + 2].copy_from_slice(&v.to_be_bytes());
    }

    pub fn u32_at(&self, off: usize) -> u32 {
        u32::from_be_bytes([self.0[off], self.0[off + 1], self.0[off + 2], self.0[off + 3]])
    }

    pub fn set_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Initiator Task Tag (bytes 16-19, every PDU).
    pub fn itt(&self) -> u32 {
        self.u32_at(16)
    }

    pub fn set_itt(&mut self, v: u32) {
        self.set_u32(16, v);
    }

    /// Bytes 8-15: LUN, or ISID + TSIH in login PDUs.
    pub fn lun_bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[8..16]);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_round_trip_and_unknown_are_none() {
        for v in 0..=0xffu8 {
            if let Some(op) = Opcode::from_u8(v) {
                assert_eq!(op.code(), v & 0x3f);
            }
        }
        assert_eq!(Opcode::from_u8(0x43), Some(Opcode::LoginRequest), "the I bit is not part of the opcode");
        assert_eq!(Opcode::from_u8(0x07), None);
    }

    #[test]
    fn data_length_is_24_bit_big_endian() {
        let mut b = Bhs::new(Opcode::TextRequest);
        b.set_data_len(0x0001_0203);
        assert_eq!(&b.0[5..8], &[1, 2, 3]);
        assert_eq!(b.data_len(), 0x0001_0203);
        b.set_data_len(u32::MAX);
        assert_eq!(b.data_len(), 0x00ff_ffff);
    }
}
