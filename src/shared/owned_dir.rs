//! A state directory only the running user controls.
//!
//! A tool that keeps records and lock files in a directory trusts what it
//! finds there: a record it reads back, a lock file it opens, a file it
//! replaces. If another user may write the directory (a `--state-dir` under
//! /tmp, a directory handed to a service account), that user can plant a
//! symlink where the record goes and make root's run overwrite any file,
//! or pre-create and hold the lock. So a state directory must belong to the
//! running user and be writable by nobody else, as ssh demands of ~/.ssh
//! (ddless's LUN lock directory does the same: `ddless::lun_lock`).

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use crate::shared::file_identity::trusted_symlink_target;

/// Why a directory cannot hold this user's state.
fn refuse(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why)
}

/// Checks that `dir` (followed if it is a symlink of this user or root:
/// [`trusted_symlink_target`]) is a directory of `euid` that neither group
/// nor others may write.
pub fn check_owned_dir(dir: &Path, euid: u32) -> io::Result<()> {
    let m = std::fs::metadata(trusted_symlink_target(dir)?)?;
    if !m.is_dir() {
        return Err(refuse(format!("{} is not a directory", dir.display())));
    }
    if m.uid() != euid {
        return Err(refuse(format!(
            "{} belongs to uid {}, not to this user ({euid}): another user could plant files in it",
            dir.display(),
            m.uid()
        )));
    }
    if m.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "{} is writable by group or others (mode {:o}): another user could plant files in it",
            dir.display(),
            m.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Creates `dir` and missing parents with `mode` (less the umask) unless it
/// exists, then [`check_owned_dir`]s it.
pub fn ensure_owned_dir(dir: &Path, euid: u32, mode: u32) -> io::Result<()> {
    match std::fs::DirBuilder::new().recursive(true).mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    check_owned_dir(dir, euid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::file_identity::euid;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn own_private_directories_pass_others_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let me = euid();
        let dir = d.path().join("a/b/state");
        ensure_owned_dir(&dir, me, 0o755).unwrap();
        ensure_owned_dir(&dir, me, 0o755).unwrap();
        let e = check_owned_dir(&dir, me + 1).unwrap_err();
        assert!(e.to_string().contains("belongs to uid"), "{e}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_owned_dir(&dir, me).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        // An own symlink to an own directory is followed.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        check_owned_dir(&link, me).unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(check_owned_dir(&file, me).unwrap_err().to_string().contains("not a directory"));
    }
}
