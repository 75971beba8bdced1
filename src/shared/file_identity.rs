//! Which file a path names, compared by identity, never by spelling.
//!
//! `./vol`, `vol`, a symlink to it, a hard link and `/x/../vol` are one
//! file; two device nodes with the same device number are one device. Every
//! tool that writes compares the identity of every pair of paths a run reads
//! or writes (source, target, checksum file and its sidecars, maps, output
//! files) before it opens anything for writing, so that no spelling of a
//! path can make it overwrite its own input.
//!
//! A path that does not exist yet is identified by the directory it would
//! be created in (after following any dangling symlink) and its file name,
//! so two spellings of the same not-yet-created file also compare equal.

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What a path names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FileIdentity {
    /// An existing file, directory or non-block special file: (st_dev, st_ino).
    Inode { dev: u64, ino: u64 },
    /// A block device, by device number (st_rdev), whichever node names it.
    BlockDevice { rdev: u64 },
    /// A path that does not exist yet: the directory it would be created in
    /// and its file name.
    Planned { dir_dev: u64, dir_ino: u64, name: OsString },
    /// An iSCSI logical unit, by its identity (target name, LUN number,
    /// device designators), however its URL reaches it.
    Lun { identity: String },
}

impl FileIdentity {
    /// The identity of an open file's metadata.
    pub fn of_metadata(meta: &Metadata) -> FileIdentity {
        if meta.file_type().is_block_device() {
            FileIdentity::BlockDevice { rdev: meta.rdev() }
        } else {
            FileIdentity::Inode { dev: meta.dev(), ino: meta.ino() }
        }
    }

    /// The identity of an open file.
    pub fn of_file(file: &File) -> io::Result<FileIdentity> {
        Ok(Self::of_metadata(&file.metadata()?))
    }

    pub fn exists(&self) -> bool {
        !matches!(self, FileIdentity::Planned { .. })
    }

    /// Other identities this one overlaps with: a partition's whole disk, a
    /// loop device's backing file. Writing one of them changes the other.
    pub fn contained_in(&self) -> Vec<FileIdentity> {
        match self {
            FileIdentity::BlockDevice { rdev } => block_device_containers(*rdev),
            _ => Vec::new(),
        }
    }

    /// True when writing `self` could change `other` or the other way round.
    pub fn overlaps(&self, other: &FileIdentity) -> bool {
        self == other || self.contained_in().contains(other) || other.contained_in().contains(self)
    }
}

fn major_minor(rdev: u64) -> (u64, u64) {
    (libc::major(rdev) as u64, libc::minor(rdev) as u64)
}

/// For a block device: the whole disk of a partition, and the backing file
/// of a loop device (read from sysfs; nothing when sysfs does not say).
fn block_device_containers(rdev: u64) -> Vec<FileIdentity> {
    let (major, minor) = major_minor(rdev);
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let mut out = Vec::new();
    if sys.join("partition").exists() {
        if let Ok(text) = std::fs::read_to_string(sys.join("../dev")) {
            if let Some((ma, mi)) = text.trim().split_once(':') {
                if let (Ok(ma), Ok(mi)) = (ma.parse::<u32>(), mi.parse::<u32>()) {
                    out.push(FileIdentity::BlockDevice { rdev: libc::makedev(ma, mi) });
                }
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string(sys.join("loop/backing_file")) {
        if let Ok(meta) = std::fs::metadata(text.trim_end_matches('\n')) {
            out.push(FileIdentity::of_metadata(&meta));
        }
    }
    out
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Follows a chain of symlinks at `path` (which may dangle) to the path a
/// create would make. Gives up after 40 links, as the kernel does (ELOOP).
pub fn resolve_dangling(path: &Path) -> io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let dest = std::fs::read_link(&p)?;
                p = if dest.is_absolute() { dest } else { parent_dir(&p).join(dest) };
            }
            _ => return Ok(p),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ELOOP))
}

/// The effective user id of this process: the owner of what it creates.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Follows the symlinks at `path` like [`resolve_dangling`], but only links
/// this user or root made. A link another user planted in a shared
/// directory (`/tmp/sums.lock -> /etc/nologin`, made before root's run)
/// would have root create or write the file it points to; the kernel's
/// protected_symlinks is off on some hosts and never applies to a link we
/// read ourselves. Open the result with O_NOFOLLOW, so that a link planted
/// after this check is refused too.
pub fn trusted_symlink_target(path: &Path) -> io::Result<PathBuf> {
    let me = euid();
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                if m.uid() != me && m.uid() != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "{} is a symlink of uid {}, not of this user ({me}) or root: refusing to follow it",
                            p.display(),
                            m.uid()
                        ),
                    ));
                }
                let dest = std::fs::read_link(&p)?;
                p = if dest.is_absolute() { dest } else { parent_dir(&p).join(dest) };
            }
            _ => return Ok(p),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ELOOP))
}

/// Identifies `path`, existing or not. A path that does not exist must have
/// an existing parent directory (the error says which one is missing), and
/// must not end in `/` (a directory that does not exist).
pub fn identify(path: &Path) -> io::Result<FileIdentity> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(FileIdentity::of_metadata(&meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
                return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
            }
            let resolved = resolve_dangling(path)?;
            let name = resolved
                .file_name()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
                .to_os_string();
            let dir = parent_dir(&resolved);
            let dmeta = std::fs::metadata(dir).map_err(|e| {
                io::Error::new(e.kind(), format!("directory {} does not exist or cannot be read: {e}", dir.display()))
            })?;
            if !dmeta.is_dir() {
                return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} is not a directory", dir.display())));
            }
            Ok(FileIdentity::Planned { dir_dev: dmeta.dev(), dir_ino: dmeta.ino(), name })
        }
        Err(e) => Err(e),
    }
}

/// One path of a run and what it is for ("source", "target", "checksum file").
#[derive(Clone, Debug)]
pub struct RolePath {
    pub role: String,
    pub path: PathBuf,
    pub identity: FileIdentity,
}

impl RolePath {
    pub fn new(role: impl Into<String>, path: &Path) -> io::Result<RolePath> {
        let identity = identify(path)?;
        Ok(RolePath { role: role.into(), path: path.to_path_buf(), identity })
    }

    /// An iSCSI LUN (`name` is its URL, for messages).
    pub fn lun(role: impl Into<String>, name: &str, identity: String) -> RolePath {
        RolePath { role: role.into(), path: PathBuf::from(name), identity: FileIdentity::Lun { identity } }
    }

    /// For a file already open (a source), identified by its descriptor.
    pub fn of_open(role: impl Into<String>, path: &Path, file: &File) -> io::Result<RolePath> {
        Ok(RolePath { role: role.into(), path: path.to_path_buf(), identity: FileIdentity::of_file(file)? })
    }
}

/// Two paths of one run name the same file (or overlapping devices).
#[derive(Debug, thiserror::Error)]
#[error("{first_role} {} and {second_role} {} are the same {what}; refusing to run (nothing was changed)", first.display(), second.display())]
pub struct SameFile {
    pub first_role: String,
    pub first: PathBuf,
    pub second_role: String,
    pub second: PathBuf,
    pub what: &'static str,
}

/// Refuses when any two of `paths` name the same file or overlapping devices.
pub fn check_distinct(paths: &[RolePath]) -> Result<(), SameFile> {
    for (i, a) in paths.iter().enumerate() {
        for b in &paths[i + 1..] {
            if a.identity.overlaps(&b.identity) {
                let what = match (&a.identity, &b.identity) {
                    (FileIdentity::BlockDevice { .. }, FileIdentity::BlockDevice { .. })
                        if a.identity != b.identity =>
                    {
                        "device (one contains the other)"
                    }
                    (FileIdentity::BlockDevice { .. }, _) | (_, FileIdentity::BlockDevice { .. }) => {
                        "device (a loop device and its backing file)"
                    }
                    _ => "file",
                };
                let what = match &a.identity {
                    FileIdentity::BlockDevice { .. } if a.identity == b.identity => "device",
                    FileIdentity::Lun { .. } => "iSCSI LUN (same target name, LUN number and device identifiers)",
                    _ => what,
                };
                return Err(SameFile {
                    first_role: a.role.clone(),
                    first: a.path.clone(),
                    second_role: b.role.clone(),
                    second: b.path.clone(),
                    what,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_file_are_one_identity() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("vol");
        std::fs::write(&f, b"x").unwrap();
        std::os::unix::fs::symlink(&f, d.path().join("link")).unwrap();
        std::fs::hard_link(&f, d.path().join("hard")).unwrap();
        let id = identify(&f).unwrap();
        for other in ["link", "hard", "./vol", "sub/../vol"] {
            if other.starts_with("sub") {
                std::fs::create_dir_all(d.path().join("sub")).unwrap();
            }
            assert_eq!(identify(&d.path().join(other)).unwrap(), id, "{other}");
        }
    }

    #[test]
    fn planned_paths_compare_by_directory_and_name() {
        let d = tempfile::tempdir().unwrap();
        let a = identify(&d.path().join("new")).unwrap();
        let b = identify(&d.path().join(".").join("new")).unwrap();
        assert!(!a.exists());
        assert_eq!(a, b);
        // A dangling symlink names the file a create would make.
        std::os::unix::fs::symlink("elsewhere", d.path().join("dangling")).unwrap();
        assert_eq!(identify(&d.path().join("dangling")).unwrap(), identify(&d.path().join("elsewhere")).unwrap());
        assert!(identify(&d.path().join("nodir/x")).is_err());
        assert!(identify(&d.path().join("newdir/")).is_err());
    }

    #[test]
    fn check_distinct_names_both_roles() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("vol");
        std::fs::write(&f, b"x").unwrap();
        let paths =
            [RolePath::new("source", &f).unwrap(), RolePath::new("checksum file", &d.path().join("./vol")).unwrap()];
        let e = check_distinct(&paths).unwrap_err().to_string();
        assert!(e.contains("source") && e.contains("checksum file") && e.contains("same file"), "{e}");
        let ok = [RolePath::new("source", &f).unwrap(), RolePath::new("target", &d.path().join("t")).unwrap()];
        check_distinct(&ok).unwrap();
    }
}
