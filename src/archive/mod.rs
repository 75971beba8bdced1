//! The archive: every night each SAN volume is copied into an archive
//! volume with ddless (only changed segments written, only ddmap-flagged
//! segments read), then a date-stamped snapshot is taken. Restore, snapshot
//! verification and checksum maintenance work on the same objects.
//!
//! Layers, lowest first: [`names`] (typed, validated names), the storage
//! backends behind [`store::ArchiveStore`] (zfs, btrfs, dir; the only code
//! that knows their commands), the checksum [`history`], the [`source`]s a
//! backup reads from, then the executors ([`backup`], [`restore`],
//! [`snapcheck`], [`maint`]) and one thin `cli` per tool.

pub mod backup;
pub mod cli;
pub mod compare;
pub mod ddmap_state;
pub mod history;
pub mod job_log;
pub mod maint;
pub mod map_prep;
pub mod names;
pub mod replicate;
pub mod reports;
pub mod restore;
pub mod rotate;
pub mod rotate_apply;
pub mod settings;
pub mod snapcheck;
pub mod snapshot_time;
pub mod source;
pub mod status;
pub mod store;
pub mod volume_lock;
pub mod workspace;
