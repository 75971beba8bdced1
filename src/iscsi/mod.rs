//! iSCSI (RFC 7143) protocol codec: PDU framing, the messages a portal and
//! an initiator exchange (login, text, logout, SCSI Command and Response,
//! Data-In/Out, R2T, Async Message, NOP-Out/In, Reject), and text
//! key=value lists. Bytes in, bytes out: nothing here touches a socket.
//! "Need more bytes" and "malformed" are different results, and no input
//! makes it panic (fuzz targets `fuzz/fuzz_targets/iscsi_pdu.rs` and
//! `iscsi_initiator_pdu.rs`).

pub mod async_message;
pub mod bhs;
pub mod crc32c;
pub mod data_pdu;
pub mod login;
pub mod logout;
pub mod name;
pub mod nop;
pub mod pdu;
pub mod reject;
pub mod scsi_pdu;
pub mod target_address;
pub mod text;
pub mod text_pdu;

pub use bhs::{Bhs, Opcode, BHS_LEN};
pub use pdu::{decode, encode, DecodeError, DecodeLimits, Digests, Pdu};

/// The reserved "no task" tag.
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// Errors of typed message views: which field was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldError {
    #[error("expected opcode {expected:?}, got 0x{got:02x}")]
    WrongOpcode { expected: Opcode, got: u8 },
    #[error("invalid {field}: {detail}")]
    Invalid { field: &'static str, detail: String },
}
