//! Reading a text file the user names (a configuration, an inventory, a
//! saved state) with a bound: `--config /dev/zero`, a FIFO fed forever or
//! a multi-gigabyte file is refused after `max` bytes instead of growing
//! memory until the kernel kills the tool.

use std::io::Read;
use std::path::Path;

/// Bound for a configuration file: far above any real one.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// Bound for other text inputs (tgt inventories, saved counters,
/// /proc/diskstats): generous for thousands of targets or disks.
pub const MAX_TEXT_BYTES: u64 = 64 << 20;

/// The text of `path`, read through once (a pipe such as `<(...)` too).
/// Errors keep the `io::ErrorKind` (NotFound stays NotFound); longer than
/// `max` or not UTF-8 is `InvalidData`, with the reason in words.
pub fn read_text(path: &Path, max: u64) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("longer than {} MiB: not a text file this tool reads", max.div_ceil(1 << 20)),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8 text ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_typed() {
        let e = read_text(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("longer than"), "{e}");
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_text(&d.path().join("absent"), 10).unwrap_err().kind(), std::io::ErrorKind::NotFound);
        let f = d.path().join("f");
        std::fs::write(&f, "0123456789").unwrap();
        assert_eq!(read_text(&f, 10).unwrap(), "0123456789");
        assert!(read_text(&f, 9).is_err());
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(read_text(&f, 10).unwrap_err().to_string().contains("not UTF-8"));
    }
}
