//! The files of one archive volume in the pool's checksum directory
//! (`<pool>/ddless`, seed chunk 70):
//!
//! ```text
//! <prefix>_<lv>.ddless         live checksum file (vouches for the archive volume)
//! <prefix>_<lv>.ddless.stats   ddless statistics of the last copy
//! <prefix>_<lv>.ddmap          the map the last backup read with
//! <prefix>_<lv>.state.json     archive-side state (DIRTY mark, last result)
//! history/<prefix>_<lv>/       checksum history (see history::store)
//! .santools-tmp-<pid>-<n>/     scratch space of a running tool
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::history::HistoryStore;
use super::names::VolumeName;
use super::store::pid_alive;
use crate::shared::atomic_file::write_atomic;

const TMP_PREFIX: &str = ".santools-tmp-";

pub struct Workspace {
    pub dir: PathBuf,
    pub stem: String,
}

/// Archive-side state of a volume. Unknown keys are ignored: a newer
/// version's additions must not stop an older one's backups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeState {
    /// Why the next backup must read everything (an integrity mismatch, a
    /// repaired checksum file); cleared by a complete full read.
    pub dirty: Option<String>,
    /// The last backup's outcome: "ok", "integrity-mismatch", "failed".
    /// (The newest snapshot and its time are the store's to tell.)
    pub last_result: Option<String>,
}

impl Workspace {
    pub fn new(dir: PathBuf, volume: &VolumeName) -> Self {
        Workspace { dir, stem: volume.checksum_stem().to_string() }
    }

    pub fn checksum(&self) -> PathBuf {
        self.dir.join(format!("{}.ddless", self.stem))
    }
    pub fn ddmap(&self) -> PathBuf {
        self.dir.join(format!("{}.ddmap", self.stem))
    }
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(format!("{}.state.json", self.stem))
    }
    pub fn history(&self) -> HistoryStore {
        HistoryStore::new(self.checksum(), self.dir.join("history").join(&self.stem))
    }

    pub fn state(&self) -> io::Result<VolumeState> {
        match fs::read(self.state_path()) {
            Ok(b) if b.len() <= 64 * 1024 => {
                serde_json::from_slice(&b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
            }
            Ok(_) => Err(io::Error::new(io::ErrorKind::InvalidData, "larger than 64 KiB")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(VolumeState::default()),
            Err(e) => Err(e),
        }
    }

    pub fn save_state(&self, s: &VolumeState) -> io::Result<()> {
        let mut b = serde_json::to_vec_pretty(s).map_err(io::Error::other)?;
        b.push(b'\n');
        write_atomic(&self.state_path(), &b)
    }

    /// A private scratch directory, removed on drop.
    pub fn scratch(&self) -> io::Result<Scratch> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let p = self.dir.join(format!("{TMP_PREFIX}{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        fs::create_dir(&p)?;
        Ok(Scratch { path: p })
    }

    /// Removes what killed runs left here: scratch directories and
    /// atomic-write temporaries (`.<name>.tmp.<pid>.<n>`) of dead processes,
    /// in the checksum directory and in this volume's history.
    pub fn remove_stale(&self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        for dir in [self.dir.clone(), self.dir.join("history").join(&self.stem)] {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = match name.strip_prefix(TMP_PREFIX) {
                    Some(r) => r.split('-').next().and_then(|p| p.parse::<u32>().ok()),
                    None => atomic_temp_owner(&name),
                };
                let Some(pid) = pid else { continue };
                if pid_alive(pid) {
                    continue;
                }
                let p = e.path();
                let gone = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
                if gone.is_ok() {
                    removed.push(p);
                }
            }
        }
        removed
    }
}

/// The pid in an atomic-write temporary's name: `.<name>.tmp.<pid>.<n>`.
fn atomic_temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(".tmp.")?;
    let (pid, n) = tail.split_once('.')?;
    n.parse::<u32>().ok()?;
    pid.parse().ok()
}

pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dead_processes_temporaries_are_removed() {
        assert_eq!(atomic_temp_owner(".iscsi_lv.ddless.stats.tmp.11939.0"), Some(11939));
        assert_eq!(atomic_temp_owner("iscsi_lv.ddless"), None);
        assert_eq!(atomic_temp_owner(".x.tmp.12.y"), None);
        let d = tempfile::tempdir().unwrap();
        let ws = Workspace::new(d.path().to_path_buf(), &VolumeName::new("iscsi_lv_bk").unwrap());
        let mine = format!(".iscsi_lv.ddmap.tmp.{}.0", std::process::id());
        let dead = ".iscsi_lv.ddmap.tmp.999999999.0";
        for n in [mine.as_str(), dead, "iscsi_lv.ddless"] {
            fs::write(d.path().join(n), b"x").unwrap();
        }
        let removed = ws.remove_stale();
        assert_eq!(removed, vec![d.path().join(dead)]);
        assert!(d.path().join(&mine).exists() && d.path().join("iscsi_lv.ddless").exists());
    }
}
