//! Record-by-record comparison of two ddless checksum files, streamed (a
//! 2 TiB volume's checksum file is 1 GiB).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::Serialize;

use crate::shared::checksum_file::record_count;
use crate::shared::checksum_record::ChecksumRecord;

/// How many differing segment indexes a report lists.
pub const LISTED: usize = 10;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Comparison {
    pub segments_a: u64,
    pub segments_b: u64,
    /// Segments whose records differ (or that only one file has), counting
    /// an INVALID record as different from everything.
    pub differing: u64,
    /// The first [`LISTED`] of them.
    pub first: Vec<u64>,
}

impl Comparison {
    pub fn equal(&self) -> bool {
        self.differing == 0 && self.segments_a == self.segments_b
    }
}

fn open(p: &Path) -> io::Result<(File, u64)> {
    let f = File::open(p)?;
    let len = f.metadata()?.len();
    let n =
        record_count(len).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display())))?;
    Ok((f, n))
}

/// Compares `a` and `b`; `each` is called with every differing index.
pub fn compare_files(a: &Path, b: &Path, mut each: impl FnMut(u64)) -> io::Result<Comparison> {
    let (fa, na) = open(a)?;
    let (fb, nb) = open(b)?;
    const CHUNK: u64 = 64 * 1024;
    let mut ba = vec![0u8; (CHUNK * 8) as usize];
    let mut bb = vec![0u8; (CHUNK * 8) as usize];
    let mut c = Comparison { segments_a: na, segments_b: nb, ..Comparison::default() };
    let total = na.max(nb);
    let mut first = 0u64;
    while first < total {
        let n = (total - first).min(CHUNK);
        let ra = na.saturating_sub(first).min(n);
        let rb = nb.saturating_sub(first).min(n);
        fa.read_exact_at(&mut ba[..(ra * 8) as usize], first * 8)?;
        fb.read_exact_at(&mut bb[..(rb * 8) as usize], first * 8)?;
        for k in 0..n {
            let differs = if k >= ra || k >= rb {
                true
            } else {
                let (x, y) = (&ba[(k * 8) as usize..(k * 8 + 8) as usize], &bb[(k * 8) as usize..(k * 8 + 8) as usize]);
                x != y || x == ChecksumRecord::INVALID.to_bytes()
            };
            if differs {
                let i = first + k;
                c.differing += 1;
                if c.first.len() < LISTED {
                    c.first.push(i);
                }
                each(i);
            }
        }
        first += n;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::checksum_record::encode_records;

    #[test]
    fn differences_and_lengths() {
        let d = tempfile::tempdir().unwrap();
        let r = |i: u32| ChecksumRecord { crc32: i + 1, murmur3: i };
        let a: Vec<_> = (0..100).map(r).collect();
        let mut b = a.clone();
        b[5] = r(999);
        b[7] = ChecksumRecord::INVALID;
        b.truncate(90);
        std::fs::write(d.path().join("a"), encode_records(&a)).unwrap();
        std::fs::write(d.path().join("b"), encode_records(&b)).unwrap();
        let mut all = Vec::new();
        let c = compare_files(&d.path().join("a"), &d.path().join("b"), |i| all.push(i)).unwrap();
        assert_eq!(c.differing, 12);
        assert_eq!(c.first, vec![5, 7, 90, 91, 92, 93, 94, 95, 96, 97]);
        assert_eq!(all.len(), 12);
        assert!(!c.equal());
        assert!(compare_files(&d.path().join("a"), &d.path().join("a"), |_| {}).unwrap().equal());
    }
}
