//! A btrfs subvolume's identity, read with `BTRFS_IOC_GET_SUBVOL_INFO`
//! (Linux 4.18, no privileges needed) instead of parsing the text of
//! `btrfs subvolume show` once per snapshot: listing a year of snapshots
//! stays one ioctl each, not one process each.
//!
//! Replication matches snapshots across hosts by this identity the way ZFS
//! matches GUIDs: a snapshot made here is known by its UUID, a received
//! one by its received UUID (the sender's UUID), which is also what
//! `btrfs receive` looks for when it finds the parent of an incremental
//! stream.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// `struct btrfs_ioctl_timespec` (linux/btrfs.h).
#[repr(C)]
#[derive(Clone, Copy)]
struct Timespec {
    sec: u64,
    nsec: u32,
}

/// `struct btrfs_ioctl_get_subvol_info_args` (linux/btrfs.h), 504 bytes.
#[repr(C)]
struct GetSubvolInfoArgs {
    treeid: u64,
    name: [u8; 256],
    parent_id: u64,
    dirid: u64,
    generation: u64,
    flags: u64,
    uuid: [u8; 16],
    parent_uuid: [u8; 16],
    received_uuid: [u8; 16],
    ctransid: u64,
    otransid: u64,
    stransid: u64,
    rtransid: u64,
    ctime: Timespec,
    otime: Timespec,
    stime: Timespec,
    rtime: Timespec,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<GetSubvolInfoArgs>() == 504);

nix::ioctl_read!(get_subvol_info, 0x94, 60, GetSubvolInfoArgs);

/// `BTRFS_ROOT_SUBVOL_RDONLY`: the ioctl reports the root item's flags
/// (not the `BTRFS_SUBVOL_RDONLY` bit of the snapshot-creation ioctls).
const ROOT_SUBVOL_RDONLY: u64 = 1 << 0;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubvolInfo {
    pub uuid: [u8; 16],
    pub parent_uuid: [u8; 16],
    pub received_uuid: [u8; 16],
    pub read_only: bool,
    /// The subvolume's own root directory was asked (not a directory in it).
    pub is_root: bool,
    /// When the subvolume (snapshot) was made, seconds since the epoch.
    pub otime: i64,
}

impl SubvolInfo {
    /// The identity that survives send/receive: the received UUID of a
    /// received snapshot, else the subvolume's own UUID.
    pub fn identity(&self) -> String {
        if self.received_uuid != [0; 16] {
            format_uuid(&self.received_uuid)
        } else {
            format_uuid(&self.uuid)
        }
    }

    /// A receive that completed: `btrfs receive` sets the received UUID
    /// and makes the subvolume read-only only once the stream ended well.
    pub fn completely_received(&self) -> bool {
        self.read_only && self.received_uuid != [0; 16]
    }
}

/// The subvolume `dir` is the root of (fails on other file systems).
pub fn subvol_info(dir: &Path) -> io::Result<SubvolInfo> {
    let f = File::open(dir)?;
    // SAFETY: all-zero is a valid value of this plain-data struct.
    let mut args: GetSubvolInfoArgs = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl fills a struct of exactly the size its number encodes.
    unsafe { get_subvol_info(f.as_raw_fd(), &mut args) }.map_err(io::Error::from)?;
    use std::os::unix::fs::MetadataExt;
    // The root directory of every subvolume is inode 256.
    let is_root = f.metadata()?.ino() == 256;
    Ok(SubvolInfo {
        uuid: args.uuid,
        parent_uuid: args.parent_uuid,
        received_uuid: args.received_uuid,
        read_only: args.flags & ROOT_SUBVOL_RDONLY != 0,
        is_root,
        otime: args.otime.sec as i64,
    })
}

/// `01234567-89ab-cdef-0123-456789abcdef`
pub fn format_uuid(u: &[u8; 16]) -> String {
    let h: Vec<String> = u.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", h[0..4].concat(), h[4..6].concat(), h[6..8].concat(), h[8..10].concat(), h[10..].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_print_in_the_usual_groups() {
        let u: [u8; 16] = std::array::from_fn(|i| i as u8 * 17);
        assert_eq!(format_uuid(&u), "00112233-4455-6677-8899-aabbccddeeff");
        let mut i = SubvolInfo {
            uuid: u,
            parent_uuid: [0; 16],
            received_uuid: [0; 16],
            read_only: true,
            is_root: true,
            otime: 0,
        };
        assert_eq!(i.identity(), format_uuid(&u));
        assert!(!i.completely_received());
        i.received_uuid = [1; 16];
        assert_eq!(i.identity(), "01010101-0101-0101-0101-010101010101");
        assert!(i.completely_received());
    }

    #[test]
    fn other_file_systems_are_an_error_not_an_identity() {
        // /proc is never btrfs.
        assert!(subvol_info(Path::new("/proc")).is_err());
    }
}
