//! ddless: block copy that writes only the 16 KiB segments whose checksum
//! changed since the last run, plus checksum-only, verify, read-test and
//! read-speed-zone modes.
//!
//! The library entry points ([`copy`], [`compute_checksums`], [`verify`],
//! [`check_checksum_file`], [`read_test`], [`speed_zones`], [`parameters`]) take typed options and
//! return typed reports; the archive backup calls them in-process. The
//! command line is in [`cli`].
//!
//! Crash safety rests on one invariant, kept by [`commit`]: for every
//! segment, the checksum file's record either matches what the target holds
//! or is the reserved INVALID record.

mod binding;
mod check;
mod checksum_access;
mod checksum_only;
pub mod cli;
mod commit;
mod copy;
mod lun_lock;
mod options;
mod params;
mod rate;
mod read_test;
mod reader;
mod report;
mod sparse_lun;
mod stats_file;
mod target;
mod verify;
mod volume;
mod zones;

pub use check::{check_checksum_file, ChecksumCheckReport};
pub use checksum_only::compute_checksums;
pub use copy::copy;
pub use lun_lock::LunBusy;
pub use options::{
    ChecksumMode, ChecksumOptions, CommitTuning, CopyOptions, OptionsError, ReadOptions, ReadTestOptions,
    VerifyOptions, ZoneOptions, MAX_WORKERS,
};
pub use params::{parameters, Parameters};
pub use read_test::{read_test, BufferTiming, ReadTestReport};
pub use reader::ReadUnits;
pub use report::{ChecksumReport, CopyReport, MismatchRange, VerifyReport};
pub use stats_file::{stats_path, Binding};
pub use verify::verify;
pub use zones::{speed_zones, ZoneResult};

#[cfg(test)]
mod commit_tests;
