//! The checksum-history delta file: the records by which one snapshot's
//! checksum file differs from the next newer snapshot's (see
//! docs/formats.md, "checksum history").
//!
//! Layout (little-endian):
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0   | 8  | magic `SNTHDLT1` |
//! | 8   | 8  | `segments`: records in this snapshot's checksum file |
//! | 16  | 4  | `digest_crc`: CRC-32 of that checksum file's bytes |
//! | 20  | 8  | `digest_fnv`: FNV-1a-64 over its 8-byte records |
//! | 28  | 8  | `entries`: number of entries that follow the header |
//! | 36  | 64 | this snapshot's name, NUL-padded |
//! | 100 | 64 | the next newer snapshot's name, NUL-padded |
//! | 164 | 16 × entries | `index` u64, then the 8-byte record, indexes strictly increasing and < `segments` |
//! | end | 4  | CRC-32 of every byte before it |
//!
//! A snapshot's checksum file = the next snapshot's, cut or extended to
//! `segments` records, with every entry written over it.

use std::io::{self, BufRead, Read, Write};

use crate::shared::checksum_record::ChecksumRecord;

pub const MAGIC: &[u8; 8] = b"SNTHDLT1";
pub const HEADER_LEN: usize = 164;
pub const ENTRY_LEN: usize = 16;
const NAME_LEN: usize = 64;

/// Digest of a whole checksum file, to prove a reconstruction exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Digest {
    pub crc: u32,
    pub fnv: u64,
}

/// Computes a [`Digest`] over records streamed in order.
#[derive(Clone)]
pub struct DigestBuilder {
    crc: crc32fast::Hasher,
    fnv: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for DigestBuilder {
    fn default() -> Self {
        DigestBuilder { crc: crc32fast::Hasher::new(), fnv: FNV_OFFSET }
    }
}

impl DigestBuilder {
    /// Adds whole 8-byte records (`bytes.len()` must be a multiple of 8).
    pub fn update(&mut self, bytes: &[u8]) {
        self.crc.update(bytes);
        for c in bytes.chunks_exact(8) {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.fnv = (self.fnv ^ w).wrapping_mul(FNV_PRIME);
        }
    }
    pub fn finish(self) -> Digest {
        Digest { crc: self.crc.finalize(), fnv: self.fnv }
    }
}

/// The header of a delta file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaHeader {
    pub snapshot: String,
    pub next: String,
    pub segments: u64,
    pub digest: Digest,
    pub entries: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("not a checksum-history delta (bad magic)")]
    BadMagic,
    #[error("field {field}: {problem}")]
    Field { field: &'static str, problem: String },
    #[error("truncated: {0}")]
    Truncated(&'static str),
    #[error("entry {position}: index {index} {problem}")]
    Entry { position: u64, index: u64, problem: &'static str },
    #[error("file checksum does not match its contents (the history file is damaged)")]
    FileChecksum,
    #[error("{0}")]
    Io(io::Error),
}

// Not #[from]: that would also make the I/O error the source, and every
// report would print it twice.
impl From<io::Error> for DeltaError {
    fn from(e: io::Error) -> Self {
        DeltaError::Io(e)
    }
}

fn put_name(out: &mut [u8], name: &str) -> Result<(), DeltaError> {
    if name.is_empty() || name.len() > NAME_LEN || name.as_bytes().contains(&0) {
        return Err(DeltaError::Field {
            field: "snapshot name",
            problem: format!("{name:?} does not fit 1..=64 bytes"),
        });
    }
    out[..name.len()].copy_from_slice(name.as_bytes());
    Ok(())
}

fn get_name(field: &'static str, raw: &[u8]) -> Result<String, DeltaError> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    if end == 0 || raw[end..].iter().any(|&b| b != 0) {
        return Err(DeltaError::Field { field, problem: "not a NUL-padded name".into() });
    }
    String::from_utf8(raw[..end].to_vec())
        .ok()
        .filter(|s| s.chars().all(|c| c.is_ascii_graphic()))
        .ok_or(DeltaError::Field { field, problem: "not a printable name".into() })
}

impl DeltaHeader {
    pub fn encode(&self) -> Result<[u8; HEADER_LEN], DeltaError> {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8..16].copy_from_slice(&self.segments.to_le_bytes());
        h[16..20].copy_from_slice(&self.digest.crc.to_le_bytes());
        h[20..28].copy_from_slice(&self.digest.fnv.to_le_bytes());
        h[28..36].copy_from_slice(&self.entries.to_le_bytes());
        put_name(&mut h[36..100], &self.snapshot)?;
        put_name(&mut h[100..164], &self.next)?;
        Ok(h)
    }

    pub fn decode(h: &[u8; HEADER_LEN]) -> Result<Self, DeltaError> {
        if &h[0..8] != MAGIC {
            return Err(DeltaError::BadMagic);
        }
        let u64_at =
            |o: usize| u64::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3], h[o + 4], h[o + 5], h[o + 6], h[o + 7]]);
        let segments = u64_at(8);
        let entries = u64_at(28);
        // A checksum file covers at most 2^64 bytes of volume: 2^50 records.
        if segments > 1 << 50 {
            return Err(DeltaError::Field { field: "segments", problem: format!("{segments} is beyond any volume") });
        }
        if entries > segments {
            return Err(DeltaError::Field {
                field: "entries",
                problem: format!("{entries} exceeds segments {segments}"),
            });
        }
        Ok(DeltaHeader {
            segments,
            digest: Digest { crc: u32::from_le_bytes([h[16], h[17], h[18], h[19]]), fnv: u64_at(20) },
            entries,
            snapshot: get_name("snapshot name", &h[36..100])?,
            next: get_name("next snapshot name", &h[100..164])?,
        })
    }
}

/// Writes a delta: header, then entries in increasing index order, then the
/// trailing file checksum. The entry count is fixed up front.
pub struct DeltaWriter<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    expected: u64,
    written: u64,
    last: Option<u64>,
    segments: u64,
}

impl<W: Write> DeltaWriter<W> {
    pub fn new(mut out: W, header: &DeltaHeader) -> Result<Self, DeltaError> {
        let h = header.encode()?;
        out.write_all(&h)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&h);
        Ok(DeltaWriter { out, crc, expected: header.entries, written: 0, last: None, segments: header.segments })
    }

    pub fn push(&mut self, index: u64, record: ChecksumRecord) -> Result<(), DeltaError> {
        if self.last.is_some_and(|l| index <= l) || index >= self.segments || self.written >= self.expected {
            return Err(DeltaError::Entry { position: self.written, index, problem: "is out of order or range" });
        }
        let mut e = [0u8; ENTRY_LEN];
        e[..8].copy_from_slice(&index.to_le_bytes());
        e[8..].copy_from_slice(&record.to_bytes());
        self.out.write_all(&e)?;
        self.crc.update(&e);
        self.written += 1;
        self.last = Some(index);
        Ok(())
    }

    pub fn finish(mut self) -> Result<W, DeltaError> {
        if self.written != self.expected {
            return Err(DeltaError::Field {
                field: "entries",
                problem: format!("announced {} but wrote {}", self.expected, self.written),
            });
        }
        let crc = self.crc.finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        Ok(self.out)
    }
}

/// Reads a delta's entries in order, checking order, range and, at the
/// end, the file checksum. Memory stays at one entry.
pub struct DeltaReader<R: BufRead> {
    input: R,
    header: DeltaHeader,
    crc: crc32fast::Hasher,
    read: u64,
    last: Option<u64>,
    checked: bool,
}

impl<R: BufRead> DeltaReader<R> {
    pub fn open(mut input: R) -> Result<Self, DeltaError> {
        let mut h = [0u8; HEADER_LEN];
        read_exact_or(&mut input, &mut h, "header")?;
        let header = DeltaHeader::decode(&h)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&h);
        Ok(DeltaReader { input, header, crc, read: 0, last: None, checked: false })
    }

    pub fn header(&self) -> &DeltaHeader {
        &self.header
    }

    /// The next entry, or None after the last one (whose trailer was checked).
    pub fn next_entry(&mut self) -> Result<Option<(u64, ChecksumRecord)>, DeltaError> {
        if self.read == self.header.entries {
            if !self.checked {
                let mut t = [0u8; 4];
                read_exact_or(&mut self.input, &mut t, "file checksum")?;
                if self.crc.clone().finalize() != u32::from_le_bytes(t) {
                    return Err(DeltaError::FileChecksum);
                }
                let mut extra = [0u8; 1];
                if self.input.read(&mut extra)? != 0 {
                    return Err(DeltaError::Field { field: "length", problem: "bytes after the file checksum".into() });
                }
                self.checked = true;
            }
            return Ok(None);
        }
        let mut e = [0u8; ENTRY_LEN];
        read_exact_or(&mut self.input, &mut e, "entries")?;
        self.crc.update(&e);
        let index = u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
        if self.last.is_some_and(|l| index <= l) {
            return Err(DeltaError::Entry { position: self.read, index, problem: "is not above the previous one" });
        }
        if index >= self.header.segments {
            return Err(DeltaError::Entry { position: self.read, index, problem: "is beyond the snapshot's segments" });
        }
        self.last = Some(index);
        self.read += 1;
        Ok(Some((index, ChecksumRecord::from_bytes([e[8], e[9], e[10], e[11], e[12], e[13], e[14], e[15]]))))
    }
}

fn read_exact_or(input: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<(), DeltaError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => DeltaError::Truncated(what),
        _ => DeltaError::Io(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(i: u64) -> ChecksumRecord {
        ChecksumRecord { crc32: i as u32 ^ 0xdead_beef, murmur3: (i * 7) as u32 }
    }

    fn header(entries: u64) -> DeltaHeader {
        DeltaHeader {
            snapshot: "2011-03-28_23:00:01".into(),
            next: "2011-03-29_23:00:01".into(),
            segments: 100,
            digest: Digest { crc: 1, fnv: 2 },
            entries,
        }
    }

    fn encode(idx: &[u64]) -> Vec<u8> {
        let mut w = DeltaWriter::new(Vec::new(), &header(idx.len() as u64)).unwrap();
        for &i in idx {
            w.push(i, rec(i)).unwrap();
        }
        w.finish().unwrap()
    }

    fn decode(bytes: &[u8]) -> Result<Vec<(u64, ChecksumRecord)>, DeltaError> {
        let mut r = DeltaReader::open(bytes)?;
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            out.push(e);
        }
        Ok(out)
    }

    #[test]
    fn round_trip_and_every_flipped_byte_is_caught() {
        let bytes = encode(&[0, 5, 99]);
        assert_eq!(decode(&bytes).unwrap(), vec![(0, rec(0)), (5, rec(5)), (99, rec(99))]);
        for pos in 0..bytes.len() {
            let mut b = bytes.clone();
            b[pos] ^= 0x10;
            assert!(decode(&b).is_err(), "flip at {pos} not detected");
        }
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "truncation to {len} not detected");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn writer_refuses_disorder_and_wrong_counts() {
        let mut w = DeltaWriter::new(Vec::new(), &header(2)).unwrap();
        w.push(5, rec(5)).unwrap();
        assert!(w.push(5, rec(5)).is_err());
        assert!(w.push(100, rec(1)).is_err());
        assert!(w.finish().is_err());
        let mut h = header(0);
        h.snapshot = "x".repeat(65);
        assert!(DeltaWriter::new(Vec::new(), &h).is_err());
    }

    #[test]
    fn absurd_headers_are_refused_before_any_allocation() {
        let mut h = header(0).encode().unwrap();
        h[28..36].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(DeltaHeader::decode(&h).is_err());
        h[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(DeltaHeader::decode(&h).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&bytes);
        }
    }
}
