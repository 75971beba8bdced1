//! `restore`: a snapshot (or the newest one) back onto a new file or,
//! explicitly allowed, a block device or an `iscsi://` LUN (seed chunks
//! 102, 120, 142).
//!
//! Never overwrites: a file target must not exist; a device or LUN is
//! written only with `--overwrite-device`, must hold the snapshot, and a
//! device is refused while mounted or otherwise claimed. The copy goes through ddless with a
//! checksum file kept for the restore, so an interrupted restore resumes
//! where it stopped (a marker file names the snapshot and the target's
//! identity: a rerun resumes only that restore onto that very target). At
//! the end the target is read back and checked against the snapshot's
//! checksum history.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

use super::compare::{compare_files, Comparison};
use super::history::HistoryError;
use super::names::ObjectRef;
use super::settings::ArchiveSettings;
use super::store::ArchiveStore;
use super::volume_lock::lock_volume;
use super::workspace::Workspace;
use crate::ddless::{copy, ChecksumMode, CommitTuning, CopyOptions, ReadOptions};
use crate::initiator::IscsiVolume;
use crate::progress::Progress;
use crate::shared::atomic_file::write_atomic;
use crate::shared::block_device::{device_kind, device_size};
use crate::shared::checksum_record::{checksum_segments, encode_records};
use crate::shared::failpoint;
use crate::volume::{Access, IscsiSpec, VolumeSpec};

#[derive(Clone, Debug)]
pub struct RestoreOptions {
    pub source: ObjectRef,
    /// A path (new file or block device) or an `iscsi://` LUN.
    pub target: VolumeSpec,
    pub overwrite_device: bool,
    pub lock_wait: Duration,
    pub workers: std::num::NonZeroUsize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoreReport {
    pub snapshot: String,
    pub target: String,
    pub size: u64,
    pub resumed: bool,
    pub segments_changed: u64,
    pub bytes_written: u64,
    /// "history" (checked against the snapshot's checksum history) or
    /// "snapshot" (no history: checked against the snapshot's bytes).
    pub verified_against: String,
    pub elapsed_seconds: f64,
}

/// The restore's marker, beside its checksum file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Marker {
    format: String,
    snapshot: String,
    size: u64,
    /// "dev:ino:birth" of a file target, "rdev:N" of a device, "lun:IDENTITY"
    /// of an iSCSI LUN; None between the marker and the target's creation.
    target_identity: Option<String>,
}

const MARKER_FORMAT: &str = "santools-restore-1";

/// A target's identity: a device by its number; a file by device, inode
/// and birth time (an inode number is reused as soon as a file is deleted).
fn identity(meta: &fs::Metadata) -> String {
    if meta.file_type().is_block_device() {
        return format!("rdev:{}", meta.rdev());
    }
    let born = meta
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}:{}:{born}", meta.dev(), meta.ino())
}

/// Where a restore keeps its checksum file and marker: beside a file
/// target; in the state directory for a device.
fn restore_files(settings: &ArchiveSettings, target: &Path, device: Option<u64>) -> (PathBuf, PathBuf) {
    match device {
        Some(rdev) => {
            let d = settings.state_dir.join("restore");
            let stem = format!("dev-{}-{}", libc::major(rdev), libc::minor(rdev));
            (d.join(format!("{stem}.ddless")), d.join(format!("{stem}.restore.json")))
        }
        None => {
            let mut c = target.as_os_str().to_owned();
            c.push(".restore.ddless");
            let mut m = target.as_os_str().to_owned();
            m.push(".restore.json");
            (PathBuf::from(c), PathBuf::from(m))
        }
    }
}

/// Where a restore onto a LUN keeps its checksum file and marker: the
/// state directory, keyed by the LUN's identity (target, LUN, designators;
/// never the URL: a portal and a node address reach the same LUN).
fn lun_restore_files(settings: &ArchiveSettings, identity: &str) -> (PathBuf, PathBuf) {
    use md5::{Digest, Md5};
    let hash: String = Md5::digest(identity.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let d = settings.state_dir.join("restore");
    let stem = format!("lun-{hash}");
    (d.join(format!("{stem}.ddless")), d.join(format!("{stem}.restore.json")))
}

/// The mount point of a file system on block device `rdev`, on a
/// partition of it, on the disk it is a partition of, or on another loop
/// device over the same backing file (each of them shares its bytes).
fn mounted(rdev: u64) -> io::Result<Option<String>> {
    use crate::shared::file_identity::FileIdentity;
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    let family = |id: FileIdentity| {
        let mut v = id.contained_in();
        v.push(id);
        v
    };
    let target = family(FileIdentity::BlockDevice { rdev });
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some((ma, mi)) = f.get(2).and_then(|d| d.split_once(':')) else { continue };
        let (Ok(ma), Ok(mi)) = (ma.parse::<u32>(), mi.parse::<u32>()) else { continue };
        if ma == 0 {
            continue; // no block device (tmpfs, proc, fuse, ...)
        }
        let m = family(FileIdentity::BlockDevice { rdev: libc::makedev(ma, mi) });
        if m.iter().any(|x| target.contains(x)) && f.len() > 4 {
            return Ok(Some(f[4].to_string()));
        }
    }
    Ok(None)
}

fn read_marker(p: &Path) -> anyhow::Result<Option<Marker>> {
    match fs::read(p) {
        Ok(b) if b.len() < 65536 => {
            let m: Marker =
                serde_json::from_slice(&b).with_context(|| format!("restore marker {} is damaged", p.display()))?;
            if m.format != MARKER_FORMAT {
                bail!("restore marker {} has unknown format {:?}", p.display(), m.format);
            }
            Ok(Some(m))
        }
        Ok(_) => bail!("restore marker {} is too large", p.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

fn write_marker(p: &Path, m: &Marker) -> anyhow::Result<()> {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut b = serde_json::to_vec_pretty(m)?;
    b.push(b'\n');
    write_atomic(p, &b).with_context(|| format!("writing {}", p.display()))
}

/// Checksums the first `size` bytes of a file, device or LUN into a checksum file.
fn checksum_prefix(vol: &VolumeSpec, size: u64, out: &Path, progress: &dyn Progress) -> anyhow::Result<()> {
    let path = vol.display();
    let f = vol.open(Access::ReadOnly).with_context(|| format!("opening {path} to verify it"))?;
    if f.size() < size {
        bail!("{path} holds {} bytes, fewer than the {size} to verify (did it shrink?)", f.size());
    }
    let mut w = io::BufWriter::new(File::create(out).with_context(|| format!("creating {}", out.display()))?);
    let mut buf = vec![0u8; 8 << 20];
    let mut done = 0u64;
    let mut recs = Vec::new();
    while done < size {
        let n = (size - done).min(buf.len() as u64) as usize;
        f.read_at(&mut buf[..n], done).with_context(|| format!("reading {path} at byte {done}"))?;
        recs.clear();
        checksum_segments(&buf[..n], &mut recs);
        io::Write::write_all(&mut w, &encode_records(&recs))?;
        done += n as u64;
        progress.advance(n as u64);
    }
    io::Write::flush(&mut w)?;
    Ok(())
}

/// A LUN target as inspected before the restore: its identity, size and
/// whether it is write-protected (the session is closed again: ddless
/// opens its own).
struct LunTarget {
    identity: String,
    size: u64,
    write_protected: bool,
}

fn inspect_lun(spec: &IscsiSpec) -> anyhow::Result<LunTarget> {
    let v = IscsiVolume::open(&spec.url, &spec.options).with_context(|| format!("opening target {}", spec.url))?;
    let info = v.info();
    Ok(LunTarget { identity: info.identity(), size: v.size(), write_protected: info.write_protected })
}

pub fn restore(
    settings: &ArchiveSettings,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    log: &super::job_log::JobLog,
) -> anyhow::Result<RestoreReport> {
    let started = Instant::now();
    let vol = &opts.source.volume;
    let store = settings
        .store(&vol.pool)
        .ok_or_else(|| anyhow!("pool {} is not configured under [archive.pools]", vol.pool))?;
    store.check()?;
    let info = store.volume(&vol.volume)?.ok_or_else(|| anyhow!("archive volume {vol} does not exist"))?;

    // The target, checked before anything is locked or written.
    let shown = opts.target.display().to_string();
    let (meta, device, lun) = match &opts.target {
        VolumeSpec::Path(target) => {
            if target.as_os_str().is_empty() {
                bail!("no target given");
            }
            let meta = match fs::metadata(target) {
                Ok(m) => Some(m),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).with_context(|| format!("inspecting target {shown}")),
            };
            // A new file goes into an existing directory: a typo in the path
            // must not create directories (a refused run creates nothing).
            if meta.is_none() {
                let dir = match target.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                if !dir.is_dir() {
                    bail!("target {shown}: directory {} does not exist", dir.display());
                }
                if fs::symlink_metadata(target).is_ok() {
                    bail!("target {shown} is a dangling symbolic link; give the path it should create instead");
                }
            }
            let device = match &meta {
                Some(m) if m.file_type().is_block_device() => Some(m.rdev()),
                _ => None,
            };
            if let Some(m) = &meta {
                let data_meta = fs::metadata(&info.data_path).ok();
                if data_meta.is_some_and(|d| d.dev() == m.dev() && d.ino() == m.ino() && device.is_none()) {
                    bail!("target {shown} is the archive volume itself");
                }
            }
            (meta, device, None)
        }
        VolumeSpec::Iscsi(spec) => {
            if !opts.overwrite_device {
                bail!("target {shown} is an iSCSI LUN; restoring onto it destroys its contents: pass --overwrite-device to allow it");
            }
            let l = inspect_lun(spec)?;
            if l.write_protected {
                bail!("target {shown} is write-protected (the target reports the LUN read-only)");
            }
            (None, None, Some(l))
        }
    };
    let (sums, marker_path) = match (&opts.target, &lun) {
        (VolumeSpec::Path(target), _) => restore_files(settings, target, device),
        (VolumeSpec::Iscsi(_), Some(l)) => lun_restore_files(settings, &l.identity),
        (VolumeSpec::Iscsi(_), None) => bail!("target {shown}: not inspected"),
    };

    let _lock = lock_volume(&settings.lock_dir, vol, "restore", opts.lock_wait)?;
    let snaps = store.snapshots(&vol.volume)?;
    let snap = match &opts.source.snapshot {
        Some(s) => {
            snaps.iter().find(|x| &x.name == s).ok_or_else(|| anyhow!("snapshot {vol}@{s} does not exist"))?.clone()
        }
        None => snaps.last().cloned().ok_or_else(|| anyhow!("archive volume {vol} has no snapshots"))?,
    };
    let snap_ref = format!("{vol}@{}", snap.name);
    let view = store.open_snapshot(&vol.volume, &snap.name)?;
    let size = view.size;

    let marker = read_marker(&marker_path)?;
    let resumed = match (&meta, &marker, &lun) {
        (_, Some(mk), Some(l)) => {
            if mk.snapshot != snap_ref {
                bail!(
                    "target {shown} holds an unfinished restore of {}, not {snap_ref}; finish that one or remove {}",
                    mk.snapshot,
                    marker_path.display()
                );
            }
            if mk.target_identity.as_deref() != Some(format!("lun:{}", l.identity).as_str()) {
                bail!("target {shown} is not the LUN the unfinished restore in {} was writing", marker_path.display());
            }
            true
        }
        (_, None, Some(_)) => false,
        (None, Some(_), None) | (None, None, None) => false,
        (Some(m), Some(mk), None) => {
            if mk.snapshot != snap_ref {
                bail!(
                    "target {shown} holds an unfinished restore of {}, not {snap_ref}; finish that one or remove the target and {}",
                    mk.snapshot,
                    marker_path.display()
                );
            }
            match &mk.target_identity {
                Some(id) if *id == identity(m) => true,
                None if device.is_none() && m.len() == 0 => true,
                _ => bail!(
                    "target {shown} is not the file the unfinished restore in {} was writing; refusing to overwrite it",
                    marker_path.display()
                ),
            }
        }
        (Some(_), None, None) if device.is_none() => {
            bail!("target {shown} exists; restore never overwrites a file (choose a new name)")
        }
        (Some(_), None, None) => false,
    };

    if let (Some(rdev), VolumeSpec::Path(target)) = (device, &opts.target) {
        if !opts.overwrite_device {
            bail!("target {shown} is a block device; restoring onto it destroys its contents: pass --overwrite-device to allow it");
        }
        if let Some(mp) = mounted(rdev).context("reading /proc/self/mountinfo")? {
            bail!("target {shown} is mounted on {mp}; unmount it first");
        }
        let dev = File::open(target).with_context(|| format!("opening {shown}"))?;
        let kind = device_kind(&dev.metadata()?).map_err(|e| anyhow!("{shown}: {e}"))?;
        let dev_size = device_size(&dev, kind).with_context(|| format!("reading the size of {shown}"))?;
        if dev_size < size {
            bail!("target {shown} holds {dev_size} bytes, but snapshot {snap_ref} is {size} bytes");
        }
    }
    if let Some(l) = &lun {
        if l.size < size {
            bail!("target {shown} holds {} bytes, but snapshot {snap_ref} is {size} bytes", l.size);
        }
    }

    // Claim the target: marker first, then the file (created exclusively),
    // then the marker learns the target's identity. A device is claimed by
    // ddless itself (an exclusive open, which a mount also conflicts with);
    // a LUN by the lock on the restore's checksum file, keyed by its identity.
    if !resumed {
        // A stale checksum file of an abandoned restore must not vouch for anything.
        let _ = fs::remove_file(&sums);
        write_marker(
            &marker_path,
            &Marker { format: MARKER_FORMAT.into(), snapshot: snap_ref.clone(), size, target_identity: None },
        )?;
        let target_identity = match (&opts.target, &lun) {
            (_, Some(l)) => format!("lun:{}", l.identity),
            (VolumeSpec::Path(target), None) => {
                if device.is_none() {
                    OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(target)
                        .with_context(|| format!("creating target {shown}"))?;
                }
                identity(&fs::metadata(target).with_context(|| format!("inspecting {shown}"))?)
            }
            (VolumeSpec::Iscsi(_), None) => bail!("target {shown}: not inspected"),
        };
        write_marker(
            &marker_path,
            &Marker {
                format: MARKER_FORMAT.into(),
                snapshot: snap_ref.clone(),
                size,
                target_identity: Some(target_identity),
            },
        )?;
    } else {
        log.line("restore", &format!("resuming the restore of {snap_ref} onto {shown}"));
    }
    failpoint::hit("restore.after-claim");

    log.line("restore", &format!("restoring {snap_ref} ({size} bytes) onto {shown}"));
    let copied = copy(
        &CopyOptions {
            source: VolumeSpec::Path(view.data_path.clone()),
            target: opts.target.clone(),
            checksum: ChecksumMode::File(sums.clone()),
            ddmap: None,
            read: ReadOptions { direct_io: false, workers: opts.workers, read_rate_mb_s: None },
            tuning: CommitTuning::default(),
        },
        progress,
    );
    let copied = match copied {
        Ok(c) => c,
        Err(e) => {
            // Another run writes the LUN: ddless refused before writing
            // anything, so this run's fresh claim goes too; left behind it
            // would refuse every restore of another snapshot onto the LUN
            // ("holds an unfinished restore of ...") after a run that said
            // "nothing was changed".
            if !resumed && e.downcast_ref::<crate::ddless::LunBusy>().is_some() {
                let _ = fs::remove_file(&marker_path);
            }
            return Err(e.context(format!("copying {snap_ref} onto {shown}")));
        }
    };
    failpoint::hit("restore.after-copy");

    // Read the target back and check it against the snapshot's history.
    let ws = Workspace::new(store.checksum_dir(false)?, &vol.volume);
    let scratch = ws.scratch().with_context(|| format!("creating scratch space in {}", ws.dir.display()))?;
    let expected = scratch.file("expected.ddless");
    let snapshot_bytes = VolumeSpec::Path(view.data_path.clone());
    let verified_against = match ws.history().reconstruct(snap.name.as_str(), &expected) {
        Ok(r) if r.problems.is_empty() => "history",
        Ok(r) => {
            log.warn(
                "restore",
                &format!(
                    "the checksum history of {snap_ref} is damaged ({}); checking against the snapshot's bytes instead",
                    r.problems.join("; ")
                ),
            );
            checksum_prefix(&snapshot_bytes, size, &expected, progress)?;
            "snapshot"
        }
        Err(HistoryError::NoHistory { reason, .. }) => {
            log.warn(
                "restore",
                &format!(
                    "{snap_ref} has no checksum history ({reason}); checking against the snapshot's bytes instead"
                ),
            );
            checksum_prefix(&snapshot_bytes, size, &expected, progress)?;
            "snapshot"
        }
        Err(e) => return Err(e.into()),
    };
    let actual = scratch.file("target.ddless");
    checksum_prefix(&opts.target, size, &actual, progress)?;
    let cmp: Comparison = compare_files(&expected, &actual, |_| {})?;
    if !cmp.equal() {
        bail!(
            "target {shown} does not match {snap_ref} after the copy: {} segment(s) differ (first: {:?}); the restore state is kept, rerun to repair",
            cmp.differing,
            cmp.first
        );
    }
    // Done: the restore's own files go.
    for p in [&sums, &marker_path] {
        let _ = fs::remove_file(p);
    }
    for suffix in [".stats", ".lock"] {
        let mut p = sums.as_os_str().to_owned();
        p.push(suffix);
        let _ = fs::remove_file(PathBuf::from(p));
    }
    log.line("restore", &format!("restored {snap_ref} onto {shown}: verified against the {verified_against}"));
    Ok(RestoreReport {
        snapshot: snap_ref,
        target: shown,
        size,
        resumed,
        segments_changed: copied.segments_changed,
        bytes_written: copied.bytes_written,
        verified_against: verified_against.into(),
        elapsed_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The store of an archive object, for the CLIs.
pub fn store_of(settings: &ArchiveSettings, obj: &ObjectRef) -> anyhow::Result<std::sync::Arc<dyn ArchiveStore>> {
    settings
        .store(&obj.volume.pool)
        .ok_or_else(|| anyhow!("pool {} is not configured under [archive.pools]", obj.volume.pool))
}
