//! Checksum history: each snapshot's checksum file as it was when the
//! snapshot was taken, kept as reverse deltas (see [`store`]).

pub mod delta;
pub mod store;

pub use delta::Digest;
pub use store::{HistoryError, HistoryStore, Preserved, Reconstruction};
