//! `lun-snapshot`: the target-node half of a backup (the seed's
//! zfs_tools.sh). `create` takes a point-in-time snapshot of a volume,
//! works out which 16 KiB segments changed since the snapshot the archive
//! last stored, exports the snapshot as its own tgt target that only the
//! archive host's initiator may see, and prints the archive's source
//! protocol JSON (`archive::source::protocol`). `release` removes the
//! export and the snapshot; only a `success` status consumes the changes
//! (the snapshot becomes the base the next map is computed against).
//!
//! Volumes: file-backed LUNs on a reflink file system (btrfs, XFS): the
//! snapshot is a clone, and the change map comes from comparing the
//! clones' physical layouts ([`changed`]), no kernel map needed; and LVM
//! logical volumes: `lvcreate --snapshot`, with IET's ddmap proc entry
//! suspended around it when one is configured ([`lvm_volume`]).
//!
//! Layers: [`changed`] and [`lvm_volume::create_plan`] are pure; [`state`]
//! is the per-volume record; [`export`] talks to tgtd through
//! `targets::live::tgt::Tgtadm`; [`remote`] runs all of it on a node
//! through ssh for the archive host; [`cli`] is the front end.

pub mod changed;
pub mod cli;
pub mod export;
pub mod file_volume;
pub mod lvm_volume;
pub mod remote;
pub mod state;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::archive::ddmap_state::DdmapState;
use crate::targets::live::tgt::Tgtadm;

/// What `create` prints: the archive's source protocol (`path` or `url`,
/// `size`, `ddmap`, `ddmap_state`, `token`) plus what an operator wants to
/// see (`iqn`, `kind`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Prepared {
    /// `iscsi://PORTAL/IQN/1` when the node's portal is known; else `path`
    /// (the archive protocol takes exactly one of them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The snapshot on the node (for operators; the archive ignores it).
    pub snapshot: PathBuf,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ddmap: Option<PathBuf>,
    /// Present exactly when `ddmap` is (the protocol refuses a state
    /// without a map): without a map the archive reads everything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ddmap_state: Option<DdmapState>,
    /// The export's IQN; handed back to `release` by the archive.
    pub token: String,
    pub iqn: String,
    pub kind: String,
    /// Segments the map flags (absent without a map).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_segments: Option<u64>,
}

/// How the archive's backup ended, as `release` is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
}

impl std::str::FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "success" => Ok(Outcome::Success),
            "failure" => Ok(Outcome::Failure),
            _ => Err(format!("{s:?}: expected success or failure")),
        }
    }
}

/// What `release` did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Released {
    pub volume: String,
    pub outcome: Outcome,
    /// Whether an export was removed (false: none was left).
    pub export_removed: bool,
    /// Whether a snapshot was removed or kept as the next base.
    pub snapshot_removed: bool,
    /// Whether the changes were consumed (the map starts afresh).
    pub changes_consumed: bool,
}

/// Settings of the node side.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Per-volume records of LVM volumes (file volumes keep theirs beside
    /// the volume, on the same file system as the clones).
    pub state_dir: PathBuf,
    pub tgtadm: Tgtadm,
    /// The archive host's initiator name: the only one the export admits.
    pub initiator: String,
    /// `HOST[:PORT]` the archive host reaches this node's tgtd on; with it
    /// `create` prints an `iscsi://` URL.
    pub portal: Option<String>,
    /// Export IQNs are `<prefix>.<volume>`.
    pub export_prefix: String,
    /// Wait this long for the volume's lock.
    pub lock_wait: std::time::Duration,
    pub lvm: lvm_volume::LvmOptions,
}

pub const DEFAULT_EXPORT_PREFIX: &str = "iqn.2024-01.org.santools.lun-snapshot";
