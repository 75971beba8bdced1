//! The iSCSI portal: a daemon that answers discovery on behalf of a cluster
//! of target nodes and redirects every login to a live portal of the node
//! serving the target now, round-robin per (discovery portal, initiator,
//! target). It never carries SCSI traffic.
//!
//! - [`session`]: one initiator connection (login, discovery, redirect);
//! - [`redirect`], [`rotation`], [`state_store`]: where a login goes;
//! - [`nodes`], [`upstream`], [`node_budget`]: asking the nodes, as the
//!   initiator, once per identical query and within each node's budget;
//! - [`server`], [`daemon`]: sockets, limits, signals, background mode;
//! - [`limits`], [`memory`], [`throttle`]: what a client may cost;
//! - [`cli`]: `iscsi-portal`, `iscsi-portal-query`, `iscsi-portal-sendtargets`.
//!
//! The protocol codec is [`crate::iscsi`].

pub mod access_log;
pub mod cli;
pub mod daemon;
pub mod limits;
pub mod memory;
pub mod negotiation;
pub mod node_budget;
pub mod nodes;
pub mod redirect;
pub mod rotation;
pub mod server;
pub mod session;
pub mod state_store;
pub mod throttle;
pub mod transport;
pub mod upstream;
