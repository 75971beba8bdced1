//! Copy-on-write file clones and their physical layout: `FICLONE` makes a
//! point-in-time copy of a whole file that shares every block with the
//! original (btrfs, XFS with reflink, bcachefs), and `FS_IOC_FIEMAP` lists
//! which physical extents a file's bytes live in. Two clones of one file
//! share a physical block at an offset only while nobody wrote it: a write
//! to a shared block is copied elsewhere. So comparing the layouts of two
//! clones tells which ranges changed between them without reading any data
//! (see `targets::lun_snapshot::changed`).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Makes `dst` (empty, writable) a clone of all of `src`. Atomic with
/// respect to writes to `src`: the file system flushes and locks `src`
/// while it clones.
pub fn clone_file(src: &File, dst: &File) -> io::Result<()> {
    // _IOW(0x94, 9, int)
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: FICLONE takes the source descriptor as its argument.
    let rc = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One mapped extent of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysicalExtent {
    pub logical: u64,
    pub physical: u64,
    pub length: u64,
    /// The `FIEMAP_EXTENT_*` flags.
    pub flags: u32,
}

pub const EXTENT_LAST: u32 = 0x1;
pub const EXTENT_UNKNOWN: u32 = 0x2;
pub const EXTENT_DELALLOC: u32 = 0x4;
pub const EXTENT_ENCODED: u32 = 0x8;
pub const EXTENT_DATA_ENCRYPTED: u32 = 0x80;
pub const EXTENT_NOT_ALIGNED: u32 = 0x100;
pub const EXTENT_DATA_INLINE: u32 = 0x200;
pub const EXTENT_DATA_TAIL: u32 = 0x400;

impl PhysicalExtent {
    /// Whether the extent's bytes lie at `physical + (offset - logical)`:
    /// false for extents whose address says nothing exact about where one
    /// byte is (compressed, inline, tail-packed, not yet allocated).
    pub fn is_linear(&self) -> bool {
        const OPAQUE: u32 = EXTENT_UNKNOWN
            | EXTENT_DELALLOC
            | EXTENT_ENCODED
            | EXTENT_DATA_ENCRYPTED
            | EXTENT_NOT_ALIGNED
            | EXTENT_DATA_INLINE
            | EXTENT_DATA_TAIL;
        self.flags & OPAQUE == 0
    }

    pub fn end(&self) -> u64 {
        self.logical.saturating_add(self.length)
    }
}

/// Most extents one listing may return: beyond this a file is too
/// fragmented to compare cheaply (the caller then reads everything).
pub const MAX_EXTENTS: usize = 8 << 20;

/// The file's extents in logical order, after flushing its dirty pages
/// (`FIEMAP_FLAG_SYNC`), so a clone's layout is final.
pub fn extents(file: &File) -> io::Result<Vec<PhysicalExtent>> {
    // struct fiemap (32 bytes) followed by fm_extent_count struct
    // fiemap_extent (56 bytes each).
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FLAG_SYNC: u32 = 0x1;
    const BATCH: usize = 512;
    const HEADER: usize = 32;
    const EXTENT: usize = 56;
    let mut out = Vec::new();
    let mut start = 0u64;
    // u64 words keep the buffer aligned for the kernel's u64 fields.
    let mut buf = vec![0u64; (HEADER + BATCH * EXTENT) / 8];
    loop {
        buf.iter_mut().for_each(|w| *w = 0);
        {
            // SAFETY: buf is HEADER + BATCH*EXTENT bytes, u64-aligned.
            let bytes = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, buf.len() * 8) };
            bytes[0..8].copy_from_slice(&start.to_ne_bytes());
            bytes[8..16].copy_from_slice(&(u64::MAX - start).to_ne_bytes());
            bytes[16..20].copy_from_slice(&FLAG_SYNC.to_ne_bytes());
            bytes[24..28].copy_from_slice(&(BATCH as u32).to_ne_bytes());
        }
        // SAFETY: FS_IOC_FIEMAP reads the header and fills at most
        // fm_extent_count extents into the buffer that follows it.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP as _, buf.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, buf.len() * 8) };
        let u32_at = |o: usize| u32::from_ne_bytes(bytes[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_ne_bytes(bytes[o..o + 8].try_into().unwrap());
        let mapped = (u32_at(20) as usize).min(BATCH);
        if mapped == 0 {
            return Ok(out);
        }
        let mut last = false;
        for i in 0..mapped {
            let o = HEADER + i * EXTENT;
            let e = PhysicalExtent {
                logical: u64_at(o),
                physical: u64_at(o + 8),
                length: u64_at(o + 16),
                flags: u32_at(o + 40),
            };
            last |= e.flags & EXTENT_LAST != 0;
            start = e.end();
            out.push(e);
        }
        if out.len() > MAX_EXTENTS {
            return Err(io::Error::other(format!("more than {MAX_EXTENTS} extents")));
        }
        if last {
            return Ok(out);
        }
    }
}
