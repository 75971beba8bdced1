//! The iSCSI portal: a daemon that answers discovery on behalf of a cluster
//! of target nodes and redirects every login to a live portal of the node
//! serving the target now, round-robin per (initiator, target). It never
//! carries SCSI traffic.
//!
//! - [`session`]: one initiator connection (login, discovery, redirect);
//! - [`redirect`], [`rotation`], [`state_store`]: where a login goes;
//! - [`nodes`], [`upstream`]: asking the nodes, as the initiator;
//! - [`server`], [`daemon`]: sockets, limits, signals, background mode;
//! - [`cli`]: `iscsi-portal`, `iscsi-portal-query`, `iscsi-portal-sendtargets`.
//!
//! The protocol codec is [`crate::iscsi`].

pub mod access_log;
pub mod cli;
pub mod daemon;
pub mod negotiation;
pub mod nodes;
pub mod redirect;
pub mod rotation;
pub mod server;
pub mod session;
pub mod state_store;
pub mod transport;
pub mod upstream;
