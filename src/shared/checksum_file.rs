//! The ddless checksum file: one 8-byte [`ChecksumRecord`] per segment, no
//! header, so its length is `ceil(volume size / 16384) * 8`.
//!
//! [`ChecksumFile`] reads and writes records in place; it never syncs on its
//! own, because when a record may become durable is the caller's decision
//! (see the ddless commit protocol).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::shared::checksum_record::{decode_records, encode_records, ChecksumRecord};
use crate::shared::segment::SegmentGeometry;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChecksumFileError {
    #[error("length {len} bytes is not a multiple of {record} (not a ddless checksum file?)", record = ChecksumRecord::SIZE)]
    NotWholeRecords { len: u64 },
    #[error("holds {found} records ({found_bytes} bytes of volume) but the source has {expected} segments ({volume_size} bytes)", found_bytes = found * crate::shared::segment::SEGMENT_SIZE)]
    DoesNotFit { found: u64, expected: u64, volume_size: u64 },
}

/// Expected checksum file length for a volume.
pub fn checksum_file_len(geometry: &SegmentGeometry) -> u64 {
    geometry.segment_count() * ChecksumRecord::SIZE as u64
}

/// Number of records in a checksum file of `len` bytes.
pub fn record_count(len: u64) -> Result<u64, ChecksumFileError> {
    if len % ChecksumRecord::SIZE as u64 != 0 {
        return Err(ChecksumFileError::NotWholeRecords { len });
    }
    Ok(len / ChecksumRecord::SIZE as u64)
}

/// Checks that a checksum file of `len` bytes fits a volume exactly.
pub fn check_fits(len: u64, geometry: &SegmentGeometry) -> Result<(), ChecksumFileError> {
    let found = record_count(len)?;
    if found != geometry.segment_count() {
        return Err(ChecksumFileError::DoesNotFit {
            found,
            expected: geometry.segment_count(),
            volume_size: geometry.volume_size(),
        });
    }
    Ok(())
}

/// Record-level access to an open checksum file.
#[derive(Debug)]
pub struct ChecksumFile {
    file: File,
}

impl ChecksumFile {
    pub fn new(file: File) -> Self {
        ChecksumFile { file }
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn records(&self) -> io::Result<u64> {
        let len = self.file.metadata()?.len();
        record_count(len).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Reads `out.len()` records starting at record `first`. Records past the
    /// end of the file read as [`ChecksumRecord::INVALID`].
    pub fn read_records(&self, first: u64, out: &mut Vec<ChecksumRecord>, count: usize) -> io::Result<()> {
        let mut bytes = vec![0u8; count * ChecksumRecord::SIZE];
        let mut done = 0;
        while done < bytes.len() {
            let n = self.file.read_at(&mut bytes[done..], first * ChecksumRecord::SIZE as u64 + done as u64)?;
            if n == 0 {
                break; // past the end: stays zero = INVALID
            }
            done += n;
        }
        decode_records(&bytes, out);
        Ok(())
    }

    /// Writes consecutive records starting at record `first`.
    pub fn write_records(&self, first: u64, records: &[ChecksumRecord]) -> io::Result<()> {
        self.file.write_all_at(&encode_records(records), first * ChecksumRecord::SIZE as u64)
    }

    /// Grows (new records are INVALID, as the file system fills with zeros)
    /// or shrinks the file to `records` records.
    pub fn set_records(&self, records: u64) -> io::Result<()> {
        self.file.set_len(records * ChecksumRecord::SIZE as u64)
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_rules() {
        let g = SegmentGeometry::new(5_368_709_120);
        assert_eq!(checksum_file_len(&g), 2_621_440); // the seed's "checksum file size"
        assert_eq!(record_count(16), Ok(2));
        assert_eq!(record_count(17), Err(ChecksumFileError::NotWholeRecords { len: 17 }));
        assert!(check_fits(2_621_440, &g).is_ok());
        assert!(matches!(check_fits(8, &g), Err(ChecksumFileError::DoesNotFit { found: 1, .. })));
    }

    #[test]
    fn records_past_end_read_as_invalid_and_growth_is_invalid() {
        let f = tempfile::tempfile().unwrap();
        let cf = ChecksumFile::new(f);
        let r = ChecksumRecord::of(b"abc");
        cf.write_records(0, &[r]).unwrap();
        cf.set_records(3).unwrap();
        let mut out = Vec::new();
        cf.read_records(0, &mut out, 4).unwrap();
        assert_eq!(out, vec![r, ChecksumRecord::INVALID, ChecksumRecord::INVALID, ChecksumRecord::INVALID]);
        assert_eq!(cf.records().unwrap(), 3);
    }
}
