//! Every fixed limit of the portal in one place, with why. Together with
//! the configuration's bounds they cap what one connection, one request
//! and one node can cost (docs/iscsi-portal.md, "Limits").

use std::time::Duration;

/// RFC 7143 13.12: until the login phase ends, MaxRecvDataSegmentLength is
/// 8192 in both directions; longer login PDUs are refused, and our login
/// responses are split (C bit) above it.
pub const LOGIN_PDU_DATA: u32 = 8192;
/// Login text an initiator may send over continued (C bit) login PDUs.
pub const MAX_LOGIN_TEXT: usize = 16 * 1024;
/// Login PDU exchanges before we give up on an initiator that never
/// finishes its login.
pub const MAX_LOGIN_ROUNDS: usize = 16;

/// A text request in a discovery session (assembled over C bits). A real
/// one is `SendTargets=All`: 16 bytes.
pub const MAX_TEXT_REQUEST: usize = 8 * 1024;
/// Keys one text request may carry; more is refused (Reject).
pub const MAX_TEXT_KEYS: usize = 64;
/// SendTargets keys one text request may carry (RFC 7143 offers one).
pub const MAX_SEND_TARGETS_KEYS: usize = 1;
/// Targets one SendTargets answer lists at most.
pub const MAX_ANSWER_TARGETS: usize = 16_384;
/// Targets of one answer named in the access log; the rest are counted.
pub const MAX_LOGGED_TARGETS: usize = 16;

/// Bytes all connections together may hold beyond their small fixed
/// buffers: SendTargets answers being sent, and PDUs larger than a login
/// PDU (an initiator may send up to our MaxRecvDataSegmentLength after
/// login; a discovery session never needs to). A request that would
/// exceed it is refused (Reject) or its connection dropped.
pub const CONNECTION_BUDGET: usize = 128 << 20;
/// Largest Text Response we send, whatever the initiator declared (a
/// longer answer continues in further responses).
pub const MAX_TEXT_RESPONSE: usize = 256 * 1024;

/// What we declare to nodes as our MaxRecvDataSegmentLength, and so the
/// largest PDU a node may send us.
pub const UPSTREAM_MAX_RECV: u32 = 65_536;
/// Largest SendTargets answer we assemble from one node.
pub const UPSTREAM_MAX_ANSWER: usize = 1 << 20;
/// Text Responses one SendTargets answer may take (F=0 continuations).
/// 1 MiB at the smallest legal PDU (512 bytes) would need 2048; a node
/// that sends more is misbehaving.
pub const UPSTREAM_MAX_ROUNDS: usize = 2048;
/// Login exchanges with a node before we give up.
pub const UPSTREAM_MAX_LOGIN_ROUNDS: usize = 8;
/// Targets one node answer may list.
pub const UPSTREAM_MAX_TARGETS: usize = 16_384;
/// The logout at the end of an upstream session is not waited for longer.
pub const UPSTREAM_LOGOUT_WAIT: Duration = Duration::from_millis(200);

/// Node answers cached (per node portal, initiator and query).
pub const NODE_CACHE_ENTRIES: usize = 65_536;
/// Bytes of target names the node cache holds at most.
pub const NODE_CACHE_BYTES: usize = 64 << 20;
/// A node that does not answer a discovery query is represented by its
/// last answer for the initiator, if it is at most this old.
pub const STALE_ANSWER_MAX: Duration = Duration::from_secs(300);

/// Rotation state files kept at most; beyond it the least recently used
/// are removed at the next sweep, whatever their age.
pub const MAX_STATE_FILES: usize = 100_000;
/// How often a refusal summary and the state sweep are considered.
pub const REFUSAL_LOG_WINDOW: Duration = Duration::from_secs(1);
