//! Real storage for the archive tests: a zfs-fuse pool on a file, a btrfs
//! file system on a loop device, a plain directory. Names are unique per
//! process and test; each lab removes exactly what it created.
//!
//! zfs-fuse runs one daemon per machine (its socket is /run/zfs). A test
//! uses the running one, or starts it (`zfs-fuse -p PIDFILE`) and leaves it
//! running for every other test: stopping a shared daemon would break runs
//! that found it running.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::helpers::*;

static SEQ: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

fn must(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Zfs,
    Btrfs,
    Dir,
}

/// A pool for one test.
pub struct PoolLab {
    pub backend: Backend,
    /// The pool's name in the configuration.
    pub name: String,
    /// btrfs / dir: where it lives.
    pub path: Option<PathBuf>,
    _dir: tempfile::TempDir,
    loop_dev: Option<String>,
    mounted: Option<PathBuf>,
}

fn zfs_daemon() -> Result<(), String> {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            if which("zfs-fuse").is_none() || which("zpool").is_none() {
                return Err("zfs-fuse is not installed (apt-get install zfs-fuse)".into());
            }
            if !is_root() {
                return Err("zfs-fuse needs root".into());
            }
            if quiet(Command::new("zpool").arg("list")) {
                return Ok(());
            }
            let pidfile = std::env::temp_dir().join(format!("santools-test-zfs-fuse-{}.pid", std::process::id()));
            if !quiet(Command::new("zfs-fuse").arg("-p").arg(&pidfile)) {
                return Err("zfs-fuse did not start".into());
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if quiet(Command::new("zpool").arg("list")) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err("zfs-fuse started but does not answer zpool list".into())
        })
        .clone()
}

fn btrfs_usable() -> Result<(), String> {
    if !is_root() {
        return Err("btrfs on a loop device needs root".into());
    }
    for t in ["mkfs.btrfs", "btrfs", "losetup", "mount"] {
        if which(t).is_none() {
            return Err(format!("{t} is not installed (btrfs-progs, util-linux)"));
        }
    }
    if !std::fs::read_to_string("/proc/filesystems").unwrap_or_default().contains("btrfs") {
        // The module may still load on mount; try.
        let _ = Command::new("modprobe").arg("btrfs").status();
    }
    Ok(())
}

impl PoolLab {
    /// A pool on `backend`, or None when the component is missing (skipped
    /// loudly; a failure under SANTOOLS_REQUIRE_REAL=1).
    pub fn new(backend: Backend) -> Option<PoolLab> {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Dir => {
                let path = dir.path().join("pool");
                std::fs::create_dir(&path).unwrap();
                Some(PoolLab {
                    backend,
                    name: "dirpool".into(),
                    path: Some(path),
                    _dir: dir,
                    loop_dev: None,
                    mounted: None,
                })
            }
            Backend::Zfs => {
                if let Err(why) = zfs_daemon() {
                    real_component("zfs-fuse", false, &why);
                    return None;
                }
                let name = unique("santest");
                let file = dir.path().join("pool.img");
                must(Command::new("truncate").arg("-s").arg("512M").arg(&file));
                must(Command::new("zpool").args(["create", "-m"]).arg(dir.path().join("mnt")).arg(&name).arg(&file));
                Some(PoolLab { backend, name, path: None, _dir: dir, loop_dev: None, mounted: None })
            }
            Backend::Btrfs => {
                if let Err(why) = btrfs_usable() {
                    real_component("btrfs", false, &why);
                    return None;
                }
                let file = dir.path().join("btrfs.img");
                must(Command::new("truncate").arg("-s").arg("512M").arg(&file));
                let dev = must(Command::new("losetup").args(["--find", "--show"]).arg(&file)).trim().to_string();
                let mnt = dir.path().join("mnt");
                std::fs::create_dir(&mnt).unwrap();
                let mut lab = PoolLab {
                    backend,
                    name: "btpool".into(),
                    path: Some(mnt.clone()),
                    _dir: dir,
                    loop_dev: Some(dev.clone()),
                    mounted: None,
                };
                must(Command::new("mkfs.btrfs").arg("-q").arg(&dev));
                must(Command::new("mount").arg(&dev).arg(&mnt));
                lab.mounted = Some(mnt);
                Some(lab)
            }
        }
    }

    /// The `[archive.pools.NAME]` table.
    pub fn pool_toml(&self) -> String {
        match self.backend {
            Backend::Zfs => {
                format!("[archive.pools.{}]\nbackend = \"zfs\"\nzfs_options = [\"compression=on\"]\n", self.name)
            }
            Backend::Btrfs => format!(
                "[archive.pools.{}]\nbackend = \"btrfs\"\npath = {:?}\n",
                self.name,
                self.path.as_ref().unwrap()
            ),
            Backend::Dir => {
                format!("[archive.pools.{}]\nbackend = \"dir\"\npath = {:?}\n", self.name, self.path.as_ref().unwrap())
            }
        }
    }

    /// Where the volume's data (image file) lives.
    pub fn image(&self, volume: &str) -> PathBuf {
        match self.backend {
            Backend::Zfs => self._dir.path().join("mnt").join(volume).join("image"),
            _ => self.path.as_ref().unwrap().join(volume).join("image"),
        }
    }

    /// The checksum directory (`<pool>/ddless`).
    pub fn ddless_dir(&self) -> PathBuf {
        match self.backend {
            Backend::Zfs => self._dir.path().join("mnt").join("ddless"),
            _ => self.path.as_ref().unwrap().join("ddless"),
        }
    }

    /// Snapshot names of a volume, oldest first (by name: managed names sort by time).
    pub fn snapshots(&self, volume: &str) -> Vec<String> {
        let mut v: Vec<String> = match self.backend {
            Backend::Zfs => {
                let o = Command::new("zfs")
                    .args(["list", "-H", "-o", "name", "-t", "snapshot", "-r"])
                    .arg(format!("{}/{volume}", self.name))
                    .output()
                    .unwrap();
                if !o.status.success() {
                    assert!(
                        String::from_utf8_lossy(&o.stderr).contains("does not exist"),
                        "{}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                    return Vec::new();
                }
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter_map(|l| l.split_once('@').map(|(_, s)| s.to_string()))
                    .collect()
            }
            _ => std::fs::read_dir(self.path.as_ref().unwrap().join(".snapshots").join(volume))
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| !n.starts_with('.') && !n.ends_with(".props.json"))
                        .collect()
                })
                .unwrap_or_default(),
        };
        v.sort();
        v
    }

    /// Destroys a snapshot behind santools' back (as an operator would).
    pub fn destroy_snapshot(&self, volume: &str, snap: &str) {
        match self.backend {
            Backend::Zfs => {
                must(Command::new("zfs").arg("destroy").arg(format!("{}/{volume}@{snap}", self.name)));
            }
            Backend::Btrfs => {
                let p = self.path.as_ref().unwrap().join(".snapshots").join(volume).join(snap);
                must(Command::new("btrfs").args(["subvolume", "delete"]).arg(&p));
            }
            Backend::Dir => {
                let p = self.path.as_ref().unwrap().join(".snapshots").join(volume).join(snap);
                let _ = Command::new("chmod").arg("-R").arg("u+w").arg(&p).status();
                std::fs::remove_dir_all(&p).unwrap();
            }
        }
    }

    /// A user property of a snapshot, as the backend stores it.
    pub fn snapshot_prop(&self, volume: &str, snap: &str, prop: &str) -> Option<String> {
        match self.backend {
            Backend::Zfs => {
                let out = must(
                    Command::new("zfs")
                        .args(["get", "-Hp", "-o", "value", prop])
                        .arg(format!("{}/{volume}@{snap}", self.name)),
                );
                let v = out.trim().to_string();
                (v != "-").then_some(v)
            }
            _ => {
                let dir = self.path.as_ref().unwrap().join(".snapshots").join(volume);
                let mut found = None;
                for f in [dir.join(snap).join(".santools-snapshot.json"), dir.join(format!("{snap}.props.json"))] {
                    if let Ok(text) = std::fs::read_to_string(&f) {
                        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                        if let Some(x) = v["properties"][prop].as_str() {
                            found = Some(x.to_string());
                        }
                    }
                }
                found
            }
        }
    }
}

impl Drop for PoolLab {
    fn drop(&mut self) {
        match self.backend {
            Backend::Zfs => {
                for _ in 0..10 {
                    if quiet(Command::new("zpool").args(["destroy", "-f", &self.name])) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
            Backend::Btrfs => {
                if let Some(m) = &self.mounted {
                    for _ in 0..10 {
                        if quiet(Command::new("umount").arg(m)) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(300));
                    }
                }
                if let Some(d) = &self.loop_dev {
                    let _ = Command::new("losetup").arg("-d").arg(d).status();
                }
            }
            Backend::Dir => {}
        }
    }
}

/// A configured archive in a temp directory: config file, log and lock
/// directories, source files.
pub struct Archive {
    pub pool: PoolLab,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub namespace: &'static str,
}

pub const NS: &str = "edu.test";

impl Archive {
    /// `volumes`: extra TOML for `[[archive.volumes]]` entries (use
    /// `{pool}` and `{dir}` placeholders).
    pub fn new(pool: PoolLab, volumes: &str) -> Archive {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("santools.toml");
        let a = Archive { pool, dir, config, namespace: NS };
        a.write_config(volumes);
        a
    }

    pub fn write_config(&self, volumes: &str) {
        let d = self.dir.path();
        let text = format!(
            "[archive]\nnamespace = \"{NS}\"\nlog_dir = {:?}\nlock_dir = {:?}\nstate_dir = {:?}\nconcurrent_workers = 2\nddless_workers = 2\n\n{}\n{}",
            d.join("log"),
            d.join("lock"),
            d.join("state"),
            self.pool.pool_toml(),
            volumes.replace("{pool}", &self.pool.name).replace("{dir}", &d.display().to_string())
        );
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `santools TOOL --config CONFIG ARGS...`
    pub fn tool(&self, name: &str) -> Command {
        let mut c = tool(name);
        c.arg("--config").arg(&self.config);
        c
    }

    /// The pool's storage backend, through the library (for setting up
    /// states the tools only reach over time: a year of snapshots, holds,
    /// clones).
    pub fn store(&self) -> std::sync::Arc<dyn santools::archive::store::ArchiveStore> {
        let c = santools::config::Config::load(Some(&self.config)).unwrap();
        let s = santools::archive::settings::ArchiveSettings::from_config(c.archive.as_ref().unwrap())
            .unwrap_or_else(|e| panic!("{}: {}", e.key, e.problem));
        let pool = santools::archive::names::PoolName::new(&self.pool.name).unwrap();
        s.store(&pool).unwrap()
    }

    /// Runs backup with --json and returns the report of the one volume.
    pub fn backup_json(&self, args: &[&str]) -> (Option<i32>, serde_json::Value) {
        let o = run(self.tool("backup").args(args).arg("--json"));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("backup {args:?}: bad JSON ({e}): {}\nstderr: {}", stdout(&o), stderr(&o)));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        (o.status.code(), v)
    }
}

/// A ddmap file for a volume of `size` bytes flagging `segments`.
pub fn ddmap_bytes(size: u64, segments: &[u64]) -> Vec<u8> {
    let words = size.div_ceil(512 * 1024) as usize;
    let mut map = vec![0u32; words];
    for &s in segments {
        map[(s / 32) as usize] |= 1 << (s % 32);
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"ddmap\0\0\0");
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(words as u32).to_le_bytes());
    for w in map {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

pub fn image_of(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
