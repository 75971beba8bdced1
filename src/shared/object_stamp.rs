//! A stable name for the object a record vouches for, that survives a
//! reboot but not a replacement: a file's inode number and birth time, a
//! block device's device-mapper UUID or loop backing file (device numbers
//! of dm and zvol devices change between boots), else its device number.
//!
//! A checksum file records the stamp and size of the target its records
//! describe (see docs/formats.md); a run whose target has another stamp
//! (replaced, recreated) or another size (truncated) treats the affected
//! records as unknown.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::UNIX_EPOCH;

/// What kind of object, and its stable id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectStamp {
    /// `file` or `device`.
    pub kind: &'static str,
    /// `ino:N:birth:NS` (or `dev:D:ino:N` where the file system has no birth
    /// time), `dm:UUID`, `loop:<backing file stamp>`, `rdev:MAJOR:MINOR`.
    pub id: String,
}

fn birth_ns(meta: &Metadata) -> Option<u128> {
    let t = meta.created().ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_nanos()).filter(|&n| n > 0)
}

fn file_id(meta: &Metadata) -> String {
    match birth_ns(meta) {
        Some(ns) => format!("ino:{}:birth:{}", meta.ino(), ns),
        None => format!("dev:{}:ino:{}", meta.dev(), meta.ino()),
    }
}

fn device_id(rdev: u64) -> String {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let sys = format!("/sys/dev/block/{major}:{minor}");
    if let Ok(uuid) = std::fs::read_to_string(format!("{sys}/dm/uuid")) {
        let uuid = uuid.trim();
        if !uuid.is_empty() {
            return format!("dm:{uuid}");
        }
    }
    if let Ok(backing) = std::fs::read_to_string(format!("{sys}/loop/backing_file")) {
        if let Ok(meta) = std::fs::metadata(backing.trim_end_matches('\n')) {
            return format!("loop:{}", file_id(&meta));
        }
    }
    format!("rdev:{major}:{minor}")
}

impl ObjectStamp {
    pub fn of_metadata(meta: &Metadata) -> ObjectStamp {
        if meta.file_type().is_block_device() {
            ObjectStamp { kind: "device", id: device_id(meta.rdev()) }
        } else {
            ObjectStamp { kind: "file", id: file_id(meta) }
        }
    }

    pub fn of_file(file: &File) -> io::Result<ObjectStamp> {
        Ok(Self::of_metadata(&file.metadata()?))
    }

    /// Parses the stored form (`kind` and `id` as written by [`ObjectStamp::of_metadata`]).
    pub fn from_stored(kind: &str, id: &str) -> Option<ObjectStamp> {
        let kind = match kind {
            "file" => "file",
            "device" => "device",
            _ => return None,
        };
        if id.is_empty() || id.contains(['\n', '=']) {
            return None;
        }
        Some(ObjectStamp { kind, id: id.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recreated_file_gets_a_new_stamp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t");
        std::fs::write(&p, b"a").unwrap();
        let first = ObjectStamp::of_metadata(&std::fs::metadata(&p).unwrap());
        std::fs::write(&p, b"b").unwrap();
        assert_eq!(ObjectStamp::of_metadata(&std::fs::metadata(&p).unwrap()), first, "rewriting keeps the stamp");
        std::fs::remove_file(&p).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        std::fs::write(&p, b"a").unwrap();
        let again = ObjectStamp::of_metadata(&std::fs::metadata(&p).unwrap());
        if first.id.contains("birth") {
            assert_ne!(again, first, "a recreated file (maybe with the same inode number) is another object");
        }
        assert_eq!(ObjectStamp::from_stored(first.kind, &first.id), Some(first));
        assert_eq!(ObjectStamp::from_stored("pipe", "x"), None);
    }
}
