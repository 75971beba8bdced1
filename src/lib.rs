//! santools: the tools of a SAN backup system (ddless, ddmap, and later the
//! iSCSI portal, LVM, ZFS archive and target tools) as a library, with a
//! thin multi-call binary in `main.rs`.
//!
//! - [`shared`]: formats and math every tool uses (segments, checksum file,
//!   ddmap, atomic files, locks).
//! - [`ddless`], [`ddmap`]: the data path, as library functions with typed
//!   options and reports, plus their command-line front ends.
//! - [`iscsi`], [`scsi`]: socket-free protocol codecs; [`initiator`]: a
//!   native iSCSI initiator over them; [`volume`]: files and `iscsi://`
//!   LUNs behind one block-volume trait.
//! - [`multicall`], [`cli`], [`config`]: dispatch, shared front-end
//!   plumbing, the TOML configuration.

pub mod archive;
pub mod cli;
pub mod config;
pub mod cron;
pub mod ddless;
pub mod ddmap;
pub mod initiator;
pub mod iscsi;
pub mod lvm;
pub mod multicall;
pub mod portal;
pub mod progress;
pub mod scsi;
pub mod shared;
pub mod targets;
pub mod volume;
