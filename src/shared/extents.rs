//! Lists of written extents, one "OFFSET LENGTH" pair of byte counts per
//! line, as produced from QEMU dirty bitmaps, dm-era, thin_delta, rbd diff or
//! VMware CBT. Blank lines and lines starting with '#' are skipped.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub length: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}: {text:?}")]
pub struct ExtentParseError {
    pub line: usize,
    pub text: String,
    pub reason: &'static str,
}

fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The longest line an extent list may have (two 64-bit numbers in hex
/// with blanks fit many times over); a longer one is refused instead of
/// being read into memory whole.
pub const MAX_LINE_BYTES: usize = 4096;

/// Parses line `line_no` (1-based) of an extent list: None for a blank or
/// comment line. Every extent must end at or before `volume_size`.
pub fn parse_extent_line(line_no: usize, raw: &str, volume_size: u64) -> Result<Option<Extent>, ExtentParseError> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let err = |reason| ExtentParseError { line: line_no, text: raw.chars().take(80).collect(), reason };
    let mut fields = line.split_whitespace();
    let (Some(o), Some(l), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(err("expected two numbers, OFFSET LENGTH in bytes"));
    };
    let offset = parse_number(o).ok_or_else(|| err("OFFSET is not a non-negative integer"))?;
    let length = parse_number(l).ok_or_else(|| err("LENGTH is not a non-negative integer"))?;
    let end = offset.checked_add(length).ok_or_else(|| err("OFFSET + LENGTH overflows"))?;
    if end > volume_size {
        return Err(err("extent ends past the volume size given by --size"));
    }
    Ok(Some(Extent { offset, length }))
}

/// Parses an extent list; every extent must end at or before `volume_size`.
pub fn parse_extents(text: &str, volume_size: u64) -> Result<Vec<Extent>, ExtentParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        out.extend(parse_extent_line(i + 1, raw, volume_size)?);
    }
    Ok(out)
}

/// Reading an extent list from a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum ExtentReadError {
    #[error(transparent)]
    Parse(#[from] ExtentParseError),
    #[error("line {line}: longer than {MAX_LINE_BYTES} bytes (not an extent list?)")]
    LineTooLong { line: usize },
    #[error("line {line}: not UTF-8 text (not an extent list?)")]
    NotText { line: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Streams an extent list line by line (memory: one line), calling `each`
/// for every extent.
pub fn for_each_extent(
    mut input: impl std::io::BufRead,
    volume_size: u64,
    mut each: impl FnMut(Extent),
) -> Result<u64, ExtentReadError> {
    use std::io::{BufRead, Read};
    let mut line = Vec::with_capacity(128);
    let mut count = 0;
    for line_no in 1.. {
        line.clear();
        let n = (&mut input).take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            return Err(ExtentReadError::LineTooLong { line: line_no });
        }
        let text = std::str::from_utf8(&line).map_err(|_| ExtentReadError::NotText { line: line_no })?;
        if let Some(e) = parse_extent_line(line_no, text, volume_size)? {
            each(e);
            count += 1;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_with_comments_and_hex() {
        let got = parse_extents("# dirty\n0 4096\n\n  0x10000   16384 \n", 1 << 20).unwrap();
        assert_eq!(got, vec![Extent { offset: 0, length: 4096 }, Extent { offset: 65536, length: 16384 }]);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_extents("0 1\nfoo 1\n", 100).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("line 2"));
        assert_eq!(parse_extents("1 2 3", 100).unwrap_err().line, 1);
        assert!(parse_extents("90 20", 100).unwrap_err().reason.contains("past the volume"));
        assert!(parse_extents("18446744073709551615 2", u64::MAX).unwrap_err().reason.contains("overflow"));
        assert!(parse_extents("-1 2", 100).is_err());
    }

    #[test]
    fn streaming_bounds_the_line_length() {
        let mut got = Vec::new();
        let n = for_each_extent(&b"0 1\n# c\n16384 2"[..], 1 << 20, |e| got.push(e)).unwrap();
        assert_eq!((n, got.len()), (2, 2));
        let endless = std::io::BufReader::new(std::io::repeat(b'0'));
        assert!(matches!(for_each_extent(endless, 100, |_| {}), Err(ExtentReadError::LineTooLong { line: 1 })));
    }
}
