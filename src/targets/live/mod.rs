//! Live state of a target daemon, read into plain types: tgtd through
//! tgtadm ([`tgt`]), IET through /proc/net/iet ([`iet`]), and one
//! implementation-neutral view of both for the state tools ([`state`]).

pub mod iet;
pub mod state;
pub mod tgt;
