//! The ddmap file: a 20-byte header then the change bitmap.
//!
//! ```text
//! offset size field
//!      0    8 info      "ddmap" followed by 3 NUL bytes
//!      8    1 version   1
//!      9    1 suspended 1 if IET's map was suspended while it was read
//!     10    2 unused    (zero)
//!     12    4 name_sum  u32 LE, wrapping sum of the bytes of the map's name
//!     16    4 map_size  u32 LE, number of u32 words that follow
//!     20  4*n map       u32 LE words, see [`ChangeMap`]
//! ```
//!
//! Readers take the header first and check it before reading (or
//! allocating for) the data it announces; [`MapReader`] then streams the
//! words, so a map can be dumped, counted or merged in bounded memory.
//!
//! This is what IET exposes under /proc/net/iet/ddmap/<target>.<lun> and
//! what `ddmap -t` stores; see docs/formats.md.

use std::io::{self, Read};
use std::path::Path;

use crate::shared::change_map::{words_for_volume, ChangeMap, BYTES_PER_WORD};
use crate::shared::segment::SEGMENT_SHIFT;

pub const DDMAP_MAGIC: [u8; 8] = *b"ddmap\0\0\0";
pub const DDMAP_VERSION: u32 = 1;
pub const DDMAP_HEADER_SIZE: usize = 20;

const _: () = assert!(DDMAP_HEADER_SIZE == DDMAP_MAGIC.len() + 3 * 4);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DdmapFormatError {
    #[error("too short for a ddmap header: {len} bytes, the header alone is {DDMAP_HEADER_SIZE}")]
    TooShort { len: usize },
    #[error("bad magic {found:02x?}: expected \"ddmap\" and 3 NUL bytes (not a ddmap file?)")]
    BadMagic { found: [u8; 8] },
    #[error("unsupported version {found}: this tool reads version {DDMAP_VERSION}")]
    UnsupportedVersion { found: u32 },
    #[error("header map_size {map_size} words needs {expected} bytes of map data, found {found}")]
    LengthMismatch { map_size: u32, expected: u64, found: u64 },
    #[error("header map_size {map_size} words needs {expected} bytes of map data, found more (not a ddmap, or a map of another volume?)")]
    TrailingData { map_size: u32, expected: u64 },
    #[error("map of {words} words does not fit the u32 map_size field")]
    TooLarge { words: usize },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DdmapMergeError {
    #[error("name_sum mismatch: source 0x{source_sum:08x}, target 0x{target_sum:08x} (maps of different volumes?)")]
    NameMismatch { source_sum: u32, target_sum: u32 },
    #[error("source map_size {source_words} is smaller than target map_size {target_words}")]
    SourceSmaller { source_words: usize, target_words: usize },
}

/// The fixed header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DdmapHeader {
    pub version: u8,
    /// IET sets it when the map was read while suspended (`mapsuspend`).
    pub suspended: u8,
    pub name_sum: u32,
    pub map_size: u32,
}

impl DdmapHeader {
    /// Bytes of map data that follow the header.
    pub fn map_size_bytes(&self) -> u64 {
        u64::from(self.map_size) * 4
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, DdmapFormatError> {
        if bytes.len() < DDMAP_HEADER_SIZE {
            return Err(DdmapFormatError::TooShort { len: bytes.len() });
        }
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&bytes[..8]);
        if magic != DDMAP_MAGIC {
            return Err(DdmapFormatError::BadMagic { found: magic });
        }
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let version = bytes[8];
        if u32::from(version) != DDMAP_VERSION {
            return Err(DdmapFormatError::UnsupportedVersion { found: u32::from(version) });
        }
        Ok(DdmapHeader { version, suspended: bytes[9], name_sum: u32_at(12), map_size: u32_at(16) })
    }

    pub fn to_bytes(&self) -> [u8; DDMAP_HEADER_SIZE] {
        let mut b = [0u8; DDMAP_HEADER_SIZE];
        b[..8].copy_from_slice(&DDMAP_MAGIC);
        b[8] = self.version;
        b[9] = self.suspended;
        b[12..16].copy_from_slice(&self.name_sum.to_le_bytes());
        b[16..20].copy_from_slice(&self.map_size.to_le_bytes());
        b
    }
}

/// The word count IET's `ddmap_lun_init` gives a LUN of `volume_size`
/// bytes: segments = size >> 14, words = segments >> 5, both rounding
/// down. The segments past `32 * words` are not tracked by IET and must
/// always be read.
pub fn iet_words_for_volume(volume_size: u64) -> u64 {
    (volume_size >> SEGMENT_SHIFT) >> 5
}

/// The largest volume a ddmap can describe (map_size is a u32 word count).
pub const MAX_MAP_VOLUME_BYTES: u64 = u32::MAX as u64 * BYTES_PER_WORD;

/// A ddmap read from a stream: the header first, then the words in bounded
/// chunks, then a check that nothing follows.
pub struct MapReader<R: Read> {
    inner: R,
    header: DdmapHeader,
    remaining_bytes: u64,
}

/// Reading a ddmap: the stream failed, or it is not a valid ddmap.
#[derive(Debug, thiserror::Error)]
pub enum DdmapReadError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Format(#[from] DdmapFormatError),
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl<R: Read> MapReader<R> {
    /// Reads and checks the 20-byte header (nothing more).
    pub fn open(mut inner: R) -> Result<Self, DdmapReadError> {
        let mut h = [0u8; DDMAP_HEADER_SIZE];
        let n = read_full(&mut inner, &mut h)?;
        let header = DdmapHeader::parse(&h[..n])?;
        Ok(MapReader { inner, header, remaining_bytes: header.map_size_bytes() })
    }

    pub fn header(&self) -> &DdmapHeader {
        &self.header
    }

    /// Appends up to `max_words` further words to `out`; returns how many (0
    /// at the end). A stream that ends early is a format error.
    pub fn read_words(&mut self, out: &mut Vec<u32>, max_words: usize) -> Result<usize, DdmapReadError> {
        let want = (self.remaining_bytes / 4).min(max_words as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let mut buf = vec![0u8; want * 4];
        let n = read_full(&mut self.inner, &mut buf)?;
        if n < buf.len() {
            let expected = self.header.map_size_bytes();
            return Err(DdmapFormatError::LengthMismatch {
                map_size: self.header.map_size,
                expected,
                found: expected - self.remaining_bytes + n as u64,
            }
            .into());
        }
        self.remaining_bytes -= buf.len() as u64;
        out.extend(buf.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
        Ok(want)
    }

    /// Checks that all announced words were read and nothing follows.
    pub fn finish(mut self) -> Result<(), DdmapReadError> {
        let mut skip = Vec::new();
        while self.read_words(&mut skip, 1 << 16)? > 0 {
            skip.clear();
        }
        let mut one = [0u8; 1];
        if read_full(&mut self.inner, &mut one)? != 0 {
            return Err(DdmapFormatError::TrailingData {
                map_size: self.header.map_size,
                expected: self.header.map_size_bytes(),
            }
            .into());
        }
        Ok(())
    }

    /// Reads the whole map (exactly `map_size` words, nothing after).
    pub fn read_all(mut self) -> Result<Ddmap, DdmapReadError> {
        let mut words = Vec::new();
        while self.read_words(&mut words, 1 << 20)? > 0 {}
        let name_sum = self.header.name_sum;
        self.finish()?;
        Ok(Ddmap { name_sum, map: ChangeMap::from_words(words) })
    }
}

/// Opens a ddmap file (or a live proc entry, which reports size 0), checks
/// its header with `check` before any data is read, then reads it whole.
/// For a regular file the length is checked against the header first too.
pub fn load_ddmap_file(path: &Path, check: impl FnOnce(&DdmapHeader) -> anyhow::Result<()>) -> anyhow::Result<Ddmap> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        anyhow::bail!("is a directory, not a ddmap");
    }
    let reader = MapReader::open(io::BufReader::with_capacity(1 << 16, file))?;
    let header = *reader.header();
    check(&header)?;
    if meta.is_file() && meta.len() != 0 && meta.len() != DDMAP_HEADER_SIZE as u64 + header.map_size_bytes() {
        let expected = header.map_size_bytes();
        return Err(DdmapFormatError::LengthMismatch {
            map_size: header.map_size,
            expected,
            found: meta.len().saturating_sub(DDMAP_HEADER_SIZE as u64),
        }
        .into());
    }
    Ok(reader.read_all()?)
}

/// Wrapping sum of the bytes of a map name such as "<target iqn>.<lun>".
pub fn name_sum(name: &[u8]) -> u32 {
    name.iter().fold(0u32, |acc, &b| acc.wrapping_add(u32::from(b)))
}

/// A whole ddmap: its identity and its bitmap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ddmap {
    pub name_sum: u32,
    pub map: ChangeMap,
}

impl Ddmap {
    /// An all-clear map for a volume of `volume_size` bytes named `name`.
    pub fn for_volume(name: &str, volume_size: u64) -> Self {
        Ddmap { name_sum: name_sum(name.as_bytes()), map: ChangeMap::new(words_for_volume(volume_size) as usize) }
    }

    pub fn header(&self) -> Result<DdmapHeader, DdmapFormatError> {
        let map_size = u32::try_from(self.map.word_count())
            .map_err(|_| DdmapFormatError::TooLarge { words: self.map.word_count() })?;
        Ok(DdmapHeader { version: DDMAP_VERSION as u8, suspended: 0, name_sum: self.name_sum, map_size })
    }

    /// Parses a complete ddmap; the data must be exactly `map_size` words.
    pub fn parse(bytes: &[u8]) -> Result<Self, DdmapFormatError> {
        let header = DdmapHeader::parse(bytes)?;
        let data = &bytes[DDMAP_HEADER_SIZE..];
        if data.len() as u64 != header.map_size_bytes() {
            return Err(DdmapFormatError::LengthMismatch {
                map_size: header.map_size,
                expected: header.map_size_bytes(),
                found: data.len() as u64,
            });
        }
        let words = data.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(Ddmap { name_sum: header.name_sum, map: ChangeMap::from_words(words) })
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, DdmapFormatError> {
        let header = self.header()?;
        let mut out = Vec::with_capacity(DDMAP_HEADER_SIZE + self.map.word_count() * 4);
        out.extend_from_slice(&header.to_bytes());
        for w in self.map.words() {
            out.extend_from_slice(&w.to_le_bytes());
        }
        Ok(out)
    }

    /// Whether this map describes a volume of `volume_size` bytes: santools'
    /// word count (rounded up) or IET's (rounded down).
    pub fn fits_volume(&self, volume_size: u64) -> bool {
        let n = self.map.word_count() as u64;
        n == words_for_volume(volume_size) || n == iet_words_for_volume(volume_size)
    }

    /// Merges `source` into `self` (the stored target map) by bitwise OR.
    /// The names must match and the source may not be smaller; a larger
    /// source grows the target. On error `self` is unchanged.
    pub fn merge_from(&mut self, source: &Ddmap) -> Result<(), DdmapMergeError> {
        if source.name_sum != self.name_sum {
            return Err(DdmapMergeError::NameMismatch { source_sum: source.name_sum, target_sum: self.name_sum });
        }
        if source.map.word_count() < self.map.word_count() {
            return Err(DdmapMergeError::SourceSmaller {
                source_words: source.map.word_count(),
                target_words: self.map.word_count(),
            });
        }
        self.map.merge_or(&source.map);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Ddmap {
        let mut m = Ddmap::for_volume("iqn.1990-01.edu.amherst:my-big-target.10", 3 << 20);
        m.map.mark_write(0, 16384);
        m.map.mark_write(2 << 20, 100_000);
        m
    }

    #[test]
    fn header_layout() {
        let bytes = sample().to_bytes().unwrap();
        assert_eq!(&bytes[..8], b"ddmap\0\0\0");
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(bytes[16..20].try_into().unwrap()), 6);
        assert_eq!(bytes.len(), 20 + 6 * 4);
        assert_eq!(u32::from_le_bytes(bytes[20..24].try_into().unwrap()), 1);
    }

    #[test]
    fn name_sum_wraps() {
        assert_eq!(name_sum(b"abc"), 97 + 98 + 99);
        assert_eq!(name_sum(&vec![0xff; 20_000_000]), (0xffu64 * 20_000_000 % (1 << 32)) as u32);
    }

    #[test]
    fn rejects_bad_input_naming_the_field() {
        let good = sample().to_bytes().unwrap();
        assert_eq!(Ddmap::parse(&good[..10]), Err(DdmapFormatError::TooShort { len: 10 }));
        let mut bad = good.clone();
        bad[0] = b'x';
        assert!(matches!(Ddmap::parse(&bad), Err(DdmapFormatError::BadMagic { .. })));
        let mut bad = good.clone();
        bad[8] = 2;
        assert_eq!(Ddmap::parse(&bad), Err(DdmapFormatError::UnsupportedVersion { found: 2 }));
        // IET's suspended flag (byte 9) is not part of the version.
        let mut suspended = good.clone();
        suspended[9] = 1;
        assert_eq!(DdmapHeader::parse(&suspended).unwrap().suspended, 1);
        assert_eq!(Ddmap::parse(&suspended).unwrap(), sample());
        assert!(matches!(Ddmap::parse(&good[..good.len() - 1]), Err(DdmapFormatError::LengthMismatch { .. })));
        let mut long = good.clone();
        long.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(Ddmap::parse(&long), Err(DdmapFormatError::LengthMismatch { .. })));
        // A header claiming 4G words must not allocate: the length check fails first.
        let mut huge = good[..20].to_vec();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Ddmap::parse(&huge), Err(DdmapFormatError::LengthMismatch { .. })));
    }

    #[test]
    fn merge_rules() {
        let mut target = sample();
        let mut other_name = sample();
        other_name.name_sum ^= 1;
        assert!(matches!(target.merge_from(&other_name), Err(DdmapMergeError::NameMismatch { .. })));
        let mut smaller = sample();
        smaller.map = ChangeMap::new(2);
        assert!(matches!(target.merge_from(&smaller), Err(DdmapMergeError::SourceSmaller { .. })));
        assert_eq!(target, sample());
        let mut larger = sample();
        larger.map = ChangeMap::new(10);
        larger.map.set(300);
        target.merge_from(&larger).unwrap();
        assert_eq!(target.map.word_count(), 10);
        assert!(target.map.is_set(300) && target.map.is_set(0));
    }

    #[test]
    fn iet_rounds_down_santools_up() {
        // The seed's ddmap_lun_init for a 10,000,000-byte LUN: 610 segments, 19 words.
        assert_eq!(iet_words_for_volume(10_000_000), 19);
        assert_eq!(words_for_volume(10_000_000), 20);
        assert_eq!(iet_words_for_volume(1 << 20), words_for_volume(1 << 20));
        let m = Ddmap { name_sum: 0, map: ChangeMap::new(19) };
        assert!(m.fits_volume(10_000_000));
        assert!(!m.fits_volume(20_000_000));
    }

    #[test]
    fn reader_takes_the_header_first_and_refuses_excess() {
        let good = sample().to_bytes().unwrap();
        let r = MapReader::open(&good[..]).unwrap();
        assert_eq!(r.header().map_size, 6);
        assert_eq!(r.read_all().unwrap(), sample());
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            MapReader::open(&long[..]).unwrap().read_all(),
            Err(DdmapReadError::Format(DdmapFormatError::TrailingData { .. }))
        ));
        // An endless stream of zeros is refused after 20 bytes.
        assert!(matches!(
            MapReader::open(io::repeat(0)),
            Err(DdmapReadError::Format(DdmapFormatError::BadMagic { .. }))
        ));
        // A header announcing 4G words on a short stream reads no more than there is.
        let mut huge = good[..20].to_vec();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = MapReader::open(&huge[..]).unwrap().read_all().unwrap_err().to_string();
        assert!(e.contains("found 0"), "{e}");
    }

    proptest! {
        #[test]
        fn round_trip(words in proptest::collection::vec(any::<u32>(), 0..100), sum: u32) {
            let m = Ddmap { name_sum: sum, map: ChangeMap::from_words(words) };
            prop_assert_eq!(Ddmap::parse(&m.to_bytes().unwrap()).unwrap(), m);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Ddmap::parse(&bytes);
        }
    }
}
