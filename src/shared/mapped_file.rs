//! Read-only memory mappings of a source volume, so hashing reads the page
//! cache directly instead of copying it first (hot cache: one memory pass
//! instead of two; cold cache: kernel readahead overlaps hashing).
//!
//! A mapped read that fails (media error, or the file shrank) raises SIGBUS
//! instead of returning EIO. The first mapping installs a SIGBUS handler
//! that reports this and exits with status 2; for the writing tools that is
//! the same as a kill, which their commit protocols already survive.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Once, OnceLock};

/// A read-only shared mapping of a whole file or device.
pub struct MappedFile {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and lives until drop; &[u8] views of it
// may be shared between threads like any immutable slice.
unsafe impl Send for MappedFile {}
// SAFETY: as above.
unsafe impl Sync for MappedFile {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Sequential,
    Random,
}

/// The SIGBUS message, built before the handler can run (a handler may only
/// call async-signal-safe functions, so it cannot format).
static SIGBUS_MESSAGE: OnceLock<Vec<u8>> = OnceLock::new();

/// Names the tool in the SIGBUS message (`ddless: error: ...`). Call it
/// before mapping; the first name set stays.
pub fn set_program_name(name: &str) {
    let _ = SIGBUS_MESSAGE.set(
        format!(
            "{name}: error: reading the memory-mapped source failed (SIGBUS: an I/O error, or the source shrank during the run); rerun with -d to see the failing offset\n"
        )
        .into_bytes(),
    );
}

extern "C" fn on_sigbus(_: libc::c_int) {
    const FALLBACK: &[u8] = b"santools: error: reading the memory-mapped source failed (SIGBUS: an I/O error, or the source shrank during the run); rerun with -d to see the failing offset\n";
    let msg: &[u8] = SIGBUS_MESSAGE.get().map_or(FALLBACK, |m| m.as_slice());
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the message was
    // built before the handler was installed and is never changed.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(2);
    }
}

fn install_sigbus_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fix the message now: the handler only reads it.
        set_program_name("santools");
        // SAFETY: installing a handler that only calls async-signal-safe functions.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
        }
    });
}

impl MappedFile {
    /// Maps `len` bytes of `file` read-only. `len` must be > 0.
    pub fn map(file: &File, len: u64, access: Access) -> io::Result<MappedFile> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("volume too large to map"))?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot map an empty volume"));
        }
        install_sigbus_handler();
        // SAFETY: a fresh read-only shared mapping of an open descriptor.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let advice = match access {
            Access::Sequential => libc::MADV_SEQUENTIAL,
            Access::Random => libc::MADV_RANDOM,
        };
        // SAFETY: advice on our own mapping; failure is harmless.
        unsafe {
            libc::madvise(ptr, len, advice);
            // Lets faults read the file into large folios and map them
            // whole: 26x fewer faults than 4 KiB pages (65,686 against
            // 2,504 for a 4 GiB source) and a page cache that stays fast
            // for the next run.
            libc::madvise(ptr, len, libc::MADV_HUGEPAGE);
        }
        Ok(MappedFile { ptr, len })
    }

    /// Drops the mapped pages of `[offset, offset + len)` from this
    /// process (MADV_DONTNEED): its memory use stays at the buffers in
    /// flight instead of growing to the size of the source. The pages stay
    /// in the page cache; reading the range again maps them back.
    pub fn release(&self, offset: u64, len: u64) {
        let page = page_size();
        let start = (offset as usize) / page * page;
        let end = ((offset + len) as usize).min(self.len);
        if start >= end {
            return;
        }
        // SAFETY: advice on a page-aligned range inside our own read-only
        // mapping; for a shared file mapping DONTNEED only drops our page
        // table entries, the data stays in the file and the page cache.
        unsafe { libc::madvise(self.ptr.cast::<u8>().add(start).cast(), end - start, libc::MADV_DONTNEED) };
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: ptr maps len readable bytes until drop.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: unmapping what map() mapped.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Asks the kernel to start reading `[offset, offset + len)` into the page
/// cache now (POSIX_FADV_WILLNEED), so scattered reads overlap.
pub fn prefetch(file: &File, offset: u64, len: u64) {
    // SAFETY: advisory call on an open descriptor; errors are irrelevant.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), offset as libc::off_t, len as libc::off_t, libc::POSIX_FADV_WILLNEED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_file_content() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"hello mapping").unwrap();
        let m = MappedFile::map(&f, 13, Access::Sequential).unwrap();
        assert_eq!(m.bytes(), b"hello mapping");
        assert!(MappedFile::map(&f, 0, Access::Random).is_err());
    }
}
