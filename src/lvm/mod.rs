//! LVM helpers (the seed's lvm_tools): snapshot create/remove/copy, copy
//! between file, LVM and device endpoints (local or over ssh), device size,
//! and running LVM commands on the node where a volume group is active.
//! Every LVM call goes through the one command runner with argument vectors
//! and JSON reports; plans are values, printed with `-n` and tested as such.

pub mod cli;
pub mod cluster;
pub mod copy;
pub mod iostat;
pub mod iostat_cli;
pub mod report;
pub mod snap;
