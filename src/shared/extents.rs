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

/// Parses an extent list; every extent must end at or before `volume_size`.
pub fn parse_extents(text: &str, volume_size: u64) -> Result<Vec<Extent>, ExtentParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason| ExtentParseError { line: i + 1, text: raw.chars().take(80).collect(), reason };
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
        out.push(Extent { offset, length });
    }
    Ok(out)
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
}
