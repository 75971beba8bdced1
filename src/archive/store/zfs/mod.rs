//! ZFS backend. Every `zfs` call goes through the command runner as an
//! argument vector; output is read with `-H -p` and parsed by [`parse`].
//!
//! Image mode (any ZFS, including zfs-fuse, which has no zvols): a
//! filesystem dataset per archive volume holding one sparse file `image`;
//! a snapshot is read through a temporary read-only clone (zfs-fuse has no
//! `.zfs/snapshot` directory). Zvol mode (the seed's layout): `zfs create
//! -V`, written through `/dev/zvol/POOL/VOLUME`. Both share this command
//! layer; zvol mode cannot run on this project's test machines (docs/archive.md).

pub mod parse;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use self::parse::{
    classify_stderr, hold_tags, number, parse_get, parse_name_value, parse_names, ratio, user_properties, ZfsFailure,
};
use super::{
    pid_alive, temp_name, temp_owner, ArchiveStore, Capabilities, CloneInfo, SnapshotId, SnapshotInfo, SnapshotView,
    SpaceInfo, StoreError, VolumeInfo,
};
use crate::archive::names::{HoldTag, Namespace, PoolName, PropertyName, SnapshotName, VolumeName};
use crate::shared::command::{Command, CommandError};

/// The snapshots of dataset `ds` among `zfs get -r -d 1` rows, with
/// names santools can handle (others are skipped with a warning).
fn snapshot_rows<'t>(
    ds: &str,
    t: &'t parse::PropTable,
) -> impl Iterator<Item = (&'t String, SnapshotName, &'t BTreeMap<String, parse::PropLine>)> {
    let prefix = format!("{ds}@");
    t.iter().filter_map(move |(name, props)| {
        let snap = name.strip_prefix(&prefix)?;
        match SnapshotName::new(snap) {
            Ok(s) => Some((name, s, props)),
            Err(_) => {
                tracing::warn!("ignoring snapshot {name}: its name is not one santools can handle");
                None
            }
        }
    })
}

/// The image file inside a volume's dataset.
pub const IMAGE_FILE: &str = "image";

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ZfsMode {
    Image,
    Zvol,
}

#[derive(Clone, Debug)]
pub struct ZfsStore {
    pool: PoolName,
    mode: ZfsMode,
    /// `-o key=value` options for `zfs create` of a volume (the seed's zfs_options).
    create_options: Vec<String>,
    timeout: Duration,
    /// `<ns>:holds` records the tags of the holds santools placed:
    /// zfs-fuse has `zfs hold` and the `userrefs` count but no working
    /// `zfs holds` to list them.
    holds_prop: String,
}

impl ZfsStore {
    pub fn new(pool: PoolName, mode: ZfsMode, create_options: Vec<String>, timeout: Duration, ns: &Namespace) -> Self {
        ZfsStore { pool, mode, create_options, timeout, holds_prop: ns.prop("holds").to_string() }
    }

    /// The recorded hold tags of a snapshot (local value only: a record
    /// received with `send -p` describes the sender's holds, not ours).
    fn recorded_holds(&self, props: &BTreeMap<String, parse::PropLine>) -> Vec<String> {
        match props.get(&self.holds_prop) {
            Some(p) if p.source == "local" && p.value != "-" => {
                p.value.split(',').filter(|t| !t.is_empty()).map(str::to_string).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Name, creation, holds and guid of one snapshot's `zfs get` rows.
    fn snapshot_id(
        &self,
        object: &str,
        name: SnapshotName,
        props: &BTreeMap<String, parse::PropLine>,
        guid: Option<&String>,
    ) -> Result<SnapshotId, StoreError> {
        let bad = |p: String| StoreError::Parse { what: object.to_string(), problem: p };
        Ok(SnapshotId {
            name,
            creation: number(props, "creation").map_err(bad)?.unwrap_or(0) as i64,
            holds: hold_tags(number(props, "userrefs").map_err(bad)?.unwrap_or(0), self.recorded_holds(props)),
            guid: guid.cloned().filter(|g| g != "-" && !g.is_empty()),
        })
    }

    fn snapshot_props(&self, obj: &str) -> Result<BTreeMap<String, parse::PropLine>, StoreError> {
        let t = self.get_all(obj, None)?;
        t.get(obj).cloned().ok_or_else(|| StoreError::NotFound { object: obj.to_string() })
    }

    fn write_hold_record(&self, obj: &str, tags: &[String]) -> Result<(), StoreError> {
        if tags.is_empty() {
            self.zfs(["inherit", &self.holds_prop, obj], obj).map(|_| ())
        } else {
            self.zfs(["set", &format!("{}={}", self.holds_prop, tags.join(",")), obj], obj).map(|_| ())
        }
    }

    fn origins(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let pool = self.pool.to_string();
        let origins = self.zfs(["get", "-Hp", "-o", "name,value", "-r", "origin", &pool], &pool)?;
        parse_name_value(&origins)
            .map_err(|e| StoreError::Parse { what: "zfs get origin".into(), problem: e.to_string() })
    }

    fn dataset(&self, v: &VolumeName) -> String {
        format!("{}/{}", self.pool, v)
    }

    fn snapshot(&self, v: &VolumeName, s: &SnapshotName) -> String {
        format!("{}/{}@{}", self.pool, v, s)
    }

    fn zfs<I, S>(&self, args: I, object: &str) -> Result<String, StoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let cmd = Command::new("zfs").args(args).timeout(self.timeout);
        match cmd.run() {
            Ok(out) => Ok(out.stdout_str()?.to_string()),
            Err(e @ CommandError::Failed { .. }) => Err(match classify_stderr(e.stderr_tail()) {
                ZfsFailure::DoesNotExist => StoreError::NotFound { object: object.to_string() },
                ZfsFailure::AlreadyExists => StoreError::AlreadyExists { object: object.to_string() },
                ZfsFailure::Busy(reason) => StoreError::Busy { object: object.to_string(), reason },
                ZfsFailure::Other => StoreError::Command(e),
            }),
            Err(e) => Err(StoreError::Command(e)),
        }
    }

    fn get_all(&self, object: &str, recursive_depth: Option<u32>) -> Result<parse::PropTable, StoreError> {
        let mut args: Vec<String> = vec!["get".into(), "-Hp".into(), "-o".into(), "name,property,value,source".into()];
        if let Some(d) = recursive_depth {
            args.extend(["-r".into(), "-d".into(), d.to_string()]);
        }
        args.extend(["all".into(), object.to_string()]);
        let out = self.zfs(&args, object)?;
        parse_get(&out).map_err(|e| StoreError::Parse { what: format!("zfs get all {object}"), problem: e.to_string() })
    }

    /// Mountpoint of a mounted filesystem dataset.
    fn mountpoint(&self, dataset: &str, props: &BTreeMap<String, parse::PropLine>) -> Result<PathBuf, StoreError> {
        let mp = props.get("mountpoint").map(|p| p.value.as_str()).unwrap_or("-");
        let mounted = props.get("mounted").map(|p| p.value.as_str()).unwrap_or("-");
        if !mp.starts_with('/') || mounted != "yes" {
            return Err(StoreError::Invalid(format!(
                "dataset {dataset} is not mounted (mountpoint {mp}, mounted {mounted}); image mode needs it mounted"
            )));
        }
        Ok(PathBuf::from(mp))
    }

    fn volume_info(&self, v: &VolumeName, props: &BTreeMap<String, parse::PropLine>) -> Result<VolumeInfo, StoreError> {
        let ds = self.dataset(v);
        let kind = props.get("type").map(|p| p.value.as_str()).unwrap_or("-");
        let (data_path, size) = match (self.mode, kind) {
            (ZfsMode::Image, "filesystem") => {
                let image = self.mountpoint(&ds, props)?.join(IMAGE_FILE);
                let size = match std::fs::metadata(&image) {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                    Err(e) => return Err(StoreError::Io { what: "reading", path: image, cause: e }),
                };
                (image, size)
            }
            (ZfsMode::Zvol, "volume") => {
                let size = number(props, "volsize")
                    .map_err(|p| StoreError::Parse { what: ds.clone(), problem: p })?
                    .unwrap_or(0);
                (PathBuf::from(format!("/dev/zvol/{ds}")), size)
            }
            (mode, other) => {
                return Err(StoreError::Invalid(format!(
                    "{ds} is a ZFS {other}, but the pool is configured for {} mode",
                    if mode == ZfsMode::Image { "image" } else { "zvol" }
                )))
            }
        };
        Ok(VolumeInfo { name: v.clone(), size, data_path, properties: user_properties(props) })
    }

    fn wait_for_device(path: &Path) -> Result<(), StoreError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !path.exists() {
            if Instant::now() > deadline {
                return Err(StoreError::Invalid(format!("device node {} did not appear within 30 s", path.display())));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn prop_args(props: &[(PropertyName, String)]) -> Vec<String> {
        props.iter().flat_map(|(k, v)| ["-o".to_string(), format!("{k}={v}")]).collect()
    }

    fn destroy_temp_clone(&self, clone: &str) -> Result<(), StoreError> {
        // A FUSE unmount can lag the last close briefly.
        let mut last = None;
        for _ in 0..20 {
            match self.zfs(["destroy", clone], clone) {
                Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(()),
                Err(e @ StoreError::Busy { .. }) => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Invalid(format!("cannot destroy {clone}"))))
    }
}

impl ArchiveStore for ZfsStore {
    fn describe(&self) -> String {
        format!("zfs ({} mode) {}", if self.mode == ZfsMode::Image { "image" } else { "zvol" }, self.pool)
    }

    fn pool(&self) -> &PoolName {
        &self.pool
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            zvols: self.mode == ZfsMode::Zvol,
            native_holds: true,
            clones_block_origin: true,
            send_receive: true,
            // zfs-fuse (pool version 23) has no resumable receive; kernel
            // OpenZFS does. Probed by part 2's replication, not assumed here.
            resumable_receive: false,
            snapshot_read_needs_clone: true,
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        let pool = self.pool.to_string();
        match self.zfs(["get", "-Hp", "-o", "name,property,value,source", "type", &pool], &pool) {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound { .. }) => {
                Err(StoreError::NotFound { object: format!("ZFS pool or dataset {pool}") })
            }
            Err(e) => Err(e),
        }
    }

    fn checksum_dir(&self, create: bool) -> Result<PathBuf, StoreError> {
        let ds = format!("{}/ddless", self.pool);
        let props = match self.get_all(&ds, None) {
            Ok(t) => t,
            Err(StoreError::NotFound { .. }) if create => {
                // Two volumes' first backups may race to create it.
                match self.zfs(["create", &ds], &ds) {
                    Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
                self.get_all(&ds, None)?
            }
            Err(e) => return Err(e),
        };
        let p = props.get(&ds).ok_or_else(|| StoreError::NotFound { object: ds.clone() })?;
        self.mountpoint(&ds, p)
    }

    fn volumes(&self) -> Result<Vec<VolumeName>, StoreError> {
        let pool = self.pool.to_string();
        let out = self.zfs(["list", "-H", "-o", "name", "-d", "1", "-t", "filesystem,volume", &pool], &pool)?;
        let names = parse_names(&out)
            .map_err(|e| StoreError::Parse { what: format!("zfs list {pool}"), problem: e.to_string() })?;
        Ok(names
            .iter()
            .filter_map(|n| n.strip_prefix(&format!("{pool}/")))
            .filter(|n| n.ends_with("_bk") && !n.contains('/'))
            .filter_map(|n| VolumeName::new(n).ok())
            .collect())
    }

    fn volume(&self, v: &VolumeName) -> Result<Option<VolumeInfo>, StoreError> {
        let ds = self.dataset(v);
        let t = match self.get_all(&ds, None) {
            Ok(t) => t,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let props = t.get(&ds).ok_or_else(|| StoreError::Parse {
            what: format!("zfs get all {ds}"),
            problem: "dataset missing from the output".into(),
        })?;
        self.volume_info(v, props).map(Some)
    }

    fn create_volume(
        &self,
        v: &VolumeName,
        size: u64,
        props: &[(PropertyName, String)],
    ) -> Result<VolumeInfo, StoreError> {
        let ds = self.dataset(v);
        let mut args: Vec<String> = vec!["create".into()];
        if self.mode == ZfsMode::Zvol {
            args.extend(["-V".into(), size.max(1).to_string()]);
        }
        for o in &self.create_options {
            args.extend(["-o".into(), o.clone()]);
        }
        args.extend(Self::prop_args(props));
        args.push(ds.clone());
        match self.zfs(&args, &ds) {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        let info = self.volume(v)?.ok_or_else(|| StoreError::NotFound { object: ds.clone() })?;
        match self.mode {
            ZfsMode::Image => {
                // An empty image; the first copy grows it (ddless, through
                // its commit protocol).
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&info.data_path)
                    .map_err(StoreError::io("creating", &info.data_path))?;
                crate::shared::atomic_file::sync_parent_dir(&info.data_path)
                    .map_err(StoreError::io("syncing", &info.data_path))?;
            }
            ZfsMode::Zvol => Self::wait_for_device(&info.data_path)?,
        }
        Ok(info)
    }

    fn prepare_size(&self, v: &VolumeName, size: u64) -> Result<(), StoreError> {
        if self.mode == ZfsMode::Zvol {
            let info = self.volume(v)?.ok_or_else(|| StoreError::NotFound { object: self.dataset(v) })?;
            if size > info.size {
                let ds = self.dataset(v);
                self.zfs(["set", &format!("volsize={size}"), &ds], &ds)?;
            }
        }
        Ok(())
    }

    fn snapshots(&self, v: &VolumeName) -> Result<Vec<SnapshotInfo>, StoreError> {
        let ds = self.dataset(v);
        let t = self.get_all(&ds, Some(1))?;
        let origins = self.origins()?;
        // zfs-fuse leaves guid out of `get all`: ask for it by name.
        let guids = self.zfs(["get", "-Hp", "-o", "name,value", "-r", "-d", "1", "guid", &ds], &ds)?;
        let guids = parse_name_value(&guids)
            .map_err(|e| StoreError::Parse { what: "zfs get guid".into(), problem: e.to_string() })?;
        let mut clones: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (name, origin) in &origins {
            if origin != "-" {
                clones.entry(origin.as_str()).or_default().push(name.clone());
            }
        }
        let mut out = Vec::new();
        for (name, snap_name, props) in snapshot_rows(&ds, &t) {
            let id = self.snapshot_id(name, snap_name, props, guids.get(name.as_str()))?;
            out.push(SnapshotInfo {
                name: id.name,
                creation: id.creation,
                properties: user_properties(props),
                holds: id.holds,
                clones: clones.get(name.as_str()).cloned().unwrap_or_default(),
                used: number(props, "used").map_err(|p| StoreError::Parse { what: name.clone(), problem: p })?,
                guid: id.guid,
            });
        }
        out.sort_by(|a, b| (a.creation, &a.name).cmp(&(b.creation, &b.name)));
        Ok(out)
    }

    /// One `zfs get` of the four properties replication needs, instead
    /// of the full listing's three calls (a copy lists each side twice).
    fn snapshot_ids(&self, v: &VolumeName) -> Result<Option<Vec<SnapshotId>>, StoreError> {
        let ds = self.dataset(v);
        let props = format!("creation,guid,userrefs,{}", self.holds_prop);
        let out = match self.zfs(["get", "-Hp", "-o", "name,property,value,source", "-r", "-d", "1", &props, &ds], &ds)
        {
            Ok(o) => o,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let t = parse_get(&out)
            .map_err(|e| StoreError::Parse { what: format!("zfs get {props} {ds}"), problem: e.to_string() })?;
        if !t.contains_key(&ds) {
            return Ok(None);
        }
        let mut out = Vec::new();
        for (name, snap_name, props) in snapshot_rows(&ds, &t) {
            out.push(self.snapshot_id(name, snap_name, props, props.get("guid").map(|p| &p.value))?);
        }
        out.sort_by(|a, b| (a.creation, &a.name).cmp(&(b.creation, &b.name)));
        Ok(Some(out))
    }

    fn create_snapshot(
        &self,
        v: &VolumeName,
        s: &SnapshotName,
        props: &[(PropertyName, String)],
    ) -> Result<(), StoreError> {
        let obj = self.snapshot(v, s);
        let mut args: Vec<String> = vec!["snapshot".into()];
        args.extend(Self::prop_args(props));
        args.push(obj.clone());
        self.zfs(&args, &obj).map(|_| ())
    }

    fn destroy_snapshot(&self, v: &VolumeName, s: &SnapshotName) -> Result<(), StoreError> {
        let obj = self.snapshot(v, s);
        match self.zfs(["destroy", &obj], &obj) {
            Ok(_) => Ok(()),
            Err(StoreError::Busy { object, reason }) => {
                // zfs says "dataset is busy" for a hold and for a mounted
                // clone alike: ask which it is.
                let clones: Vec<String> =
                    self.origins()?.into_iter().filter(|(_, o)| o == &obj).map(|(n, _)| n).collect();
                if !clones.is_empty() {
                    return Err(StoreError::HasClones { object, clones });
                }
                let props = self.snapshot_props(&obj)?;
                let refs =
                    number(&props, "userrefs").map_err(|p| StoreError::Parse { what: obj.clone(), problem: p })?;
                match refs {
                    Some(n) if n > 0 => {
                        Err(StoreError::Held { object, tags: hold_tags(n, self.recorded_holds(&props)) })
                    }
                    _ => Err(StoreError::Busy { object, reason }),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn hold(&self, v: &VolumeName, s: &SnapshotName, tag: &HoldTag) -> Result<(), StoreError> {
        let obj = self.snapshot(v, s);
        match self.zfs(["hold", tag.as_str(), &obj], &obj) {
            Ok(_) => {}
            // Already held with this tag ("tag already exists on this
            // dataset"): one hold, as asked.
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(StoreError::Command(e)) if e.stderr_tail().contains("tag already exists") => {}
            Err(e) => return Err(e),
        }
        let mut tags = self.recorded_holds(&self.snapshot_props(&obj)?);
        if !tags.iter().any(|t| t == tag.as_str()) {
            tags.push(tag.to_string());
            tags.sort();
            self.write_hold_record(&obj, &tags)?;
        }
        Ok(())
    }

    fn release(&self, v: &VolumeName, s: &SnapshotName, tag: &HoldTag) -> Result<bool, StoreError> {
        let obj = self.snapshot(v, s);
        let released = match self.zfs(["release", tag.as_str(), &obj], &obj) {
            Ok(_) => true,
            Err(StoreError::Command(e)) if e.stderr_tail().contains("no such tag") => false,
            Err(e) => return Err(e),
        };
        let tags = self.recorded_holds(&self.snapshot_props(&obj)?);
        if tags.iter().any(|t| t == tag.as_str()) {
            let rest: Vec<String> = tags.into_iter().filter(|t| t != tag.as_str()).collect();
            self.write_hold_record(&obj, &rest)?;
        }
        Ok(released)
    }

    fn clone_snapshot(&self, v: &VolumeName, s: &SnapshotName, clone: &VolumeName) -> Result<(), StoreError> {
        let snap = self.snapshot(v, s);
        let target = self.dataset(clone);
        self.zfs(["clone", &snap, &target], &target).map(|_| ())
    }

    fn destroy_clone(&self, clone: &VolumeName) -> Result<(), StoreError> {
        let ds = self.dataset(clone);
        match self.origins()?.get(&ds) {
            Some(o) if o != "-" => self.destroy_temp_clone(&ds),
            Some(_) => Err(StoreError::Invalid(format!("{ds} is not a clone"))),
            None => Err(StoreError::NotFound { object: ds }),
        }
    }

    fn clones(&self) -> Result<Vec<CloneInfo>, StoreError> {
        Ok(self
            .origins()?
            .into_iter()
            .filter(|(n, o)| o != "-" && temp_owner(n).is_none())
            .map(|(name, origin)| CloneInfo { name, origin })
            .collect())
    }

    fn remove_property(&self, v: &VolumeName, s: Option<&SnapshotName>, p: &PropertyName) -> Result<(), StoreError> {
        let obj = match s {
            Some(s) => self.snapshot(v, s),
            None => self.dataset(v),
        };
        self.zfs(["inherit", p.as_str(), &obj], &obj).map(|_| ())
    }

    fn send_command(
        &self,
        v: &VolumeName,
        s: &SnapshotName,
        from: Option<&SnapshotName>,
        intermediates: bool,
        tree: bool,
    ) -> Result<Command, StoreError> {
        let mut args: Vec<String> = vec!["send".into()];
        if tree {
            args.push("-R".into());
        }
        if let Some(f) = from {
            args.push(if intermediates { "-I" } else { "-i" }.into());
            args.push(format!("@{f}"));
        }
        args.push(self.snapshot(v, s));
        // No timeout: a stream may take hours; its data path has its own.
        Ok(Command::new("zfs").args(args))
    }

    fn stream_format(&self) -> Option<&'static str> {
        Some("zfs")
    }

    fn rollback(&self, v: &VolumeName, s: &SnapshotName) -> Result<(), StoreError> {
        let obj = self.snapshot(v, s);
        self.zfs(["rollback", "-r", &obj], &obj).map(|_| ())
    }

    fn receive_command(&self, v: Option<&VolumeName>, force: bool) -> Result<Command, StoreError> {
        let mut args: Vec<String> = vec!["receive".into()];
        if force {
            args.push("-F".into());
        }
        match v {
            Some(v) => args.push(self.dataset(v)),
            None => args.extend(["-d".into(), self.pool.to_string()]),
        }
        Ok(Command::new("zfs").args(args))
    }

    fn space(&self, v: &VolumeName) -> Result<SpaceInfo, StoreError> {
        let ds = self.dataset(v);
        let props = self.snapshot_props(&ds)?;
        let n = |k: &str| number(&props, k).map_err(|p| StoreError::Parse { what: ds.clone(), problem: p });
        let volsize = match self.mode {
            ZfsMode::Zvol => n("volsize")?,
            ZfsMode::Image => Some(self.volume_info(v, &props)?.size),
        };
        Ok(SpaceInfo {
            volsize,
            refreservation: n("refreservation")?,
            compressratio: props.get("compressratio").and_then(|p| ratio(&p.value)),
            used_by_dataset: n("usedbydataset")?,
            used_by_snapshots: n("usedbysnapshots")?,
            used_by_refreservation: n("usedbyrefreservation")?,
            used_by_children: n("usedbychildren")?,
            used: n("used")?,
            reservation: n("reservation")?,
        })
    }

    fn set_property(
        &self,
        v: &VolumeName,
        s: Option<&SnapshotName>,
        p: &PropertyName,
        value: &str,
    ) -> Result<(), StoreError> {
        let obj = match s {
            Some(s) => self.snapshot(v, s),
            None => self.dataset(v),
        };
        self.zfs(["set", &format!("{p}={value}"), &obj], &obj).map(|_| ())
    }

    fn open_snapshot(&self, v: &VolumeName, s: &SnapshotName) -> Result<SnapshotView, StoreError> {
        let snap = self.snapshot(v, s);
        let clone = format!("{}/{}", self.pool, temp_name());
        self.zfs(["clone", "-o", "readonly=on", &snap, &clone], &snap)?;
        let me = self.clone();
        let clone_for_drop = clone.clone();
        let cleanup: Box<dyn FnOnce() + Send> = Box::new(move || {
            if let Err(e) = me.destroy_temp_clone(&clone_for_drop) {
                tracing::warn!("could not remove temporary clone {clone_for_drop}: {e} (the next run removes it)");
            }
        });
        let opened = (|| {
            let t = self.get_all(&clone, None)?;
            let props = t.get(&clone).ok_or_else(|| StoreError::NotFound { object: clone.clone() })?;
            match self.mode {
                ZfsMode::Image => {
                    let image = self.mountpoint(&clone, props)?.join(IMAGE_FILE);
                    let size = std::fs::metadata(&image).map_err(StoreError::io("reading", &image))?.len();
                    Ok((image, size))
                }
                ZfsMode::Zvol => {
                    let dev = PathBuf::from(format!("/dev/zvol/{clone}"));
                    Self::wait_for_device(&dev)?;
                    let size = number(props, "volsize")
                        .map_err(|p| StoreError::Parse { what: clone.clone(), problem: p })?
                        .unwrap_or(0);
                    Ok((dev, size))
                }
            }
        })();
        match opened {
            Ok((path, size)) => Ok(SnapshotView::new(path, size, Some(cleanup))),
            Err(e) => {
                cleanup();
                Err(e)
            }
        }
    }

    fn cleanup_stale(&self, _v: &VolumeName) -> Result<Vec<String>, StoreError> {
        let pool = self.pool.to_string();
        let out = self.zfs(["list", "-H", "-o", "name", "-d", "1", "-t", "filesystem,volume", &pool], &pool)?;
        let names = parse_names(&out)
            .map_err(|e| StoreError::Parse { what: format!("zfs list {pool}"), problem: e.to_string() })?;
        let mut removed = Vec::new();
        for n in names {
            if let Some(pid) = temp_owner(&n) {
                if n.starts_with(&format!("{pool}/")) && !pid_alive(pid) {
                    self.destroy_temp_clone(&n)?;
                    removed.push(n);
                }
            }
        }
        Ok(removed)
    }
}
