//! The record of one volume's snapshot on the node (`state.json`): written
//! atomically after an export is complete and after a release, so a crash
//! at any step leaves either the previous record or the new one. Every
//! object the record names is also found by its fixed name, so `create`
//! cleans up after a crash even when the record never got written.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::shared::atomic_file::write_atomic;
use crate::shared::file_identity::FileIdentity;
use crate::shared::text_file::{read_text, MAX_TEXT_BYTES};

/// Largest state file read (it holds a few paths and numbers).
const MAX_STATE_BYTES: u64 = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A snapshot is exported and not yet released.
    Exported,
    /// Nothing is exported; a base may be kept.
    Released,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub phase: Phase,
    /// The volume as given, for messages.
    pub volume: String,
    /// The volume's identity (`dev:ino`, or `rdev` of a device) when the
    /// record was written: a replaced volume invalidates the base.
    pub identity: String,
    pub iqn: String,
    pub snapshot: PathBuf,
    pub size: u64,
    /// Unix seconds.
    pub created: u64,
    /// file volumes: the base clone is of this identity and size.
    #[serde(default)]
    pub base_size: Option<u64>,
}

pub fn identity_text(id: &FileIdentity) -> String {
    match id {
        FileIdentity::Inode { dev, ino } => format!("{dev}:{ino}"),
        FileIdentity::BlockDevice { rdev } => format!("rdev:{rdev}"),
        FileIdentity::Planned { .. } => "planned".into(),
        FileIdentity::Lun { identity } => format!("lun:{identity}"),
    }
}

/// Reads `path`: None when missing; a damaged record is an error naming
/// the file (an operator removes it after checking the export by hand).
pub fn load(path: &Path) -> anyhow::Result<Option<VolumeRecord>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if meta.len() > MAX_STATE_BYTES {
        anyhow::bail!("{}: {} bytes, a snapshot record is at most {MAX_STATE_BYTES}", path.display(), meta.len());
    }
    let text = read_text(path, MAX_TEXT_BYTES).with_context(|| format!("reading {}", path.display()))?;
    let rec = serde_json::from_str(&text).with_context(|| {
        format!("{}: not a lun-snapshot record (remove it after checking tgtadm's targets)", path.display())
    })?;
    Ok(Some(rec))
}

pub fn save(path: &Path, rec: &VolumeRecord) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(rec)?;
    text.push('\n');
    write_atomic(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// The files of one volume's snapshot directory.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn record(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    /// Creates the directory and takes the volume's lock, waiting up to
    /// `wait` for another run; held while the returned file is open.
    pub fn lock(&self, wait: std::time::Duration, volume: &str) -> anyhow::Result<std::fs::File> {
        use crate::shared::file_lock::{lock_exclusive_within, open_or_create};
        // The record, maps and lock live here: a directory another user can
        // write (a volume directory they may write, a `.lun-snapshot` they
        // made first) would let them plant symlinks for root to follow.
        let me = crate::shared::file_identity::euid();
        crate::shared::owned_dir::ensure_owned_dir(&self.dir, me, 0o755)
            .with_context(|| format!("preparing {}", self.dir.display()))?;
        if let Some(parent) = self.dir.parent() {
            crate::shared::owned_dir::check_owned_dir(parent, me)
                .with_context(|| format!("preparing {}", self.dir.display()))?;
        }
        let p = self.dir.join("lock");
        let f = open_or_create(&p).with_context(|| format!("opening {}", p.display()))?;
        lock_exclusive_within(&f, &p, wait)
            .map_err(|_| anyhow::anyhow!("another lun-snapshot of {volume} is running (lock {})", p.display()))?;
        Ok(f)
    }
    pub fn map(&self) -> PathBuf {
        self.dir.join("changes.ddmap")
    }
    /// LVM: changes of failed backups kept for the next one.
    pub fn pending_map(&self) -> PathBuf {
        self.dir.join("pending.ddmap")
    }
    /// file volumes: the clone being exported.
    pub fn snapshot(&self) -> PathBuf {
        self.dir.join("snapshot.img")
    }
    /// file volumes: the clone of the last snapshot the archive stored.
    pub fn base(&self) -> PathBuf {
        self.dir.join("base.img")
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_named() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        assert_eq!(load(&p).unwrap(), None);
        let r = VolumeRecord {
            phase: Phase::Exported,
            volume: "/srv/luns/a b.img".into(),
            identity: "1:2".into(),
            iqn: "iqn.2024-01.x:y".into(),
            snapshot: "/srv/luns/.lun-snapshot/a b.img/snapshot.img".into(),
            size: 4096,
            created: 7,
            base_size: None,
        };
        save(&p, &r).unwrap();
        assert_eq!(load(&p).unwrap(), Some(r));
        std::fs::write(&p, "{").unwrap();
        let e = format!("{:#}", load(&p).unwrap_err());
        assert!(e.contains("state.json") && e.contains("not a lun-snapshot record"), "{e}");
    }
}
