//! Text key=value lists (RFC 7143 6.1): NUL-terminated `key=value` items,
//! with limits on key and value size and on the number of items, and the
//! helpers that reassemble a list sent over several PDUs (the C bit) and
//! split a long one for a peer's MaxRecvDataSegmentLength.

/// RFC 7143 6.1: key names are at most 63 bytes.
pub const MAX_KEY_LEN: usize = 63;
/// Values are at most 255 bytes, except a few (e.g. TargetAddress lists)
/// that implementations let grow; 8192 is generous and bounded.
pub const MAX_VALUE_LEN: usize = 8192;
/// Items in one list.
pub const MAX_PAIRS: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TextError {
    #[error("text item {index} has no '=': {item:?}")]
    NoEquals { index: usize, item: String },
    #[error("text item {index} has an invalid key {key:?} (1-{MAX_KEY_LEN} characters of A-Z a-z 0-9 . - + @ _)")]
    BadKey { index: usize, key: String },
    #[error("value of key {key} is {len} bytes, more than {MAX_VALUE_LEN}")]
    ValueTooLong { key: String, len: usize },
    #[error("value of key {key} is not valid UTF-8")]
    NotUtf8 { key: String },
    #[error("more than {MAX_PAIRS} text items")]
    TooManyPairs,
    #[error("text of {len} bytes exceeds the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= MAX_KEY_LEN
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'@' | b'_'))
}

/// An ordered key=value list (keys may repeat: TargetName/TargetAddress).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextParams {
    pairs: Vec<(String, String)>,
}

impl TextParams {
    pub fn new() -> Self {
        TextParams::default()
    }

    /// Parses a whole list. Empty items (consecutive NULs, padding) are skipped.
    pub fn parse(data: &[u8]) -> Result<TextParams, TextError> {
        let mut pairs = Vec::new();
        for (index, item) in data.split(|&b| b == 0).enumerate() {
            if item.is_empty() {
                continue;
            }
            if pairs.len() >= MAX_PAIRS {
                return Err(TextError::TooManyPairs);
            }
            let Some(eq) = item.iter().position(|&b| b == b'=') else {
                return Err(TextError::NoEquals {
                    index,
                    item: String::from_utf8_lossy(&item[..item.len().min(64)]).into(),
                });
            };
            let key = std::str::from_utf8(&item[..eq])
                .ok()
                .filter(|k| valid_key(k))
                .ok_or_else(|| TextError::BadKey { index, key: String::from_utf8_lossy(&item[..eq.min(64)]).into() })?;
            let raw = &item[eq + 1..];
            if raw.len() > MAX_VALUE_LEN {
                return Err(TextError::ValueTooLong { key: key.into(), len: raw.len() });
            }
            let value = std::str::from_utf8(raw).map_err(|_| TextError::NotUtf8 { key: key.into() })?;
            pairs.push((key.to_string(), value.to_string()));
        }
        Ok(TextParams { pairs })
    }

    pub fn push(&mut self, key: &str, value: impl Into<String>) {
        self.pairs.push((key.to_string(), value.into()));
    }

    /// Appends every pair of `other`.
    pub fn extend(&mut self, other: &TextParams) {
        self.pairs.extend(other.pairs.iter().cloned());
    }

    /// First value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.pairs {
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }
}

/// Reassembles text sent over several PDUs (C bit set on all but the last).
#[derive(Debug)]
pub struct TextAssembler {
    buf: Vec<u8>,
    max: usize,
}

impl TextAssembler {
    pub fn new(max: usize) -> Self {
        TextAssembler { buf: Vec::new(), max }
    }

    /// Adds one PDU's data; returns the whole text once `cont` is false.
    pub fn push(&mut self, data: &[u8], cont: bool) -> Result<Option<Vec<u8>>, TextError> {
        if self.buf.len() + data.len() > self.max {
            let len = self.buf.len() + data.len();
            self.buf.clear();
            return Err(TextError::TooLong { len, max: self.max });
        }
        self.buf.extend_from_slice(data);
        if cont {
            Ok(None)
        } else {
            Ok(Some(std::mem::take(&mut self.buf)))
        }
    }
}

/// Splits encoded text into chunks of at most `max` bytes. Each chunk is
/// paired with its C bit: true when the chunk ends inside a key=value item.
/// Chunks end at item boundaries whenever an item fits.
pub fn split_text(data: &[u8], max: usize) -> Vec<(&[u8], bool)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let (end, cont) = next_chunk(data, start, max);
        out.push((&data[start..end], cont));
        start = end;
    }
    out
}

/// The chunk of `data` starting at `start` (< data.len()) that fits `max`
/// bytes: its end, and its C bit. One step of [`split_text`], for senders
/// that produce chunks as the peer asks for them.
pub fn next_chunk(data: &[u8], start: usize, max: usize) -> (usize, bool) {
    let max = max.max(1);
    let limit = start.saturating_add(max).min(data.len());
    if limit == data.len() {
        return (limit, false);
    }
    // Last NUL within the window: end the chunk after it.
    match data[start..limit].iter().rposition(|&b| b == 0) {
        Some(p) => (start + p + 1, false),
        None => (limit, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_libiscsi_login() {
        let t = TextParams::parse(
            b"InitiatorName=iqn.2024-01.test:initiator-a\0SessionType=Discovery\0HeaderDigest=None,CRC32C\0\0\0",
        )
        .unwrap();
        assert_eq!(t.get("InitiatorName"), Some("iqn.2024-01.test:initiator-a"));
        assert_eq!(t.get("HeaderDigest"), Some("None,CRC32C"));
        assert_eq!(t.pairs().len(), 3);
    }

    #[test]
    fn refuses_bad_items() {
        assert!(matches!(TextParams::parse(b"novalue\0"), Err(TextError::NoEquals { index: 0, .. })));
        assert!(matches!(TextParams::parse(b"=x\0"), Err(TextError::BadKey { .. })));
        assert!(matches!(TextParams::parse(b"a b=x\0"), Err(TextError::BadKey { .. })));
        let long_key = format!("{}=1\0", "k".repeat(64));
        assert!(matches!(TextParams::parse(long_key.as_bytes()), Err(TextError::BadKey { .. })));
        let long_val = format!("k={}\0", "v".repeat(MAX_VALUE_LEN + 1));
        assert!(matches!(TextParams::parse(long_val.as_bytes()), Err(TextError::ValueTooLong { .. })));
        assert!(matches!(TextParams::parse(b"k=\xff\0"), Err(TextError::NotUtf8 { .. })));
        let many: Vec<u8> = (0..=MAX_PAIRS).flat_map(|_| b"k=v\0".to_vec()).collect();
        assert_eq!(TextParams::parse(&many), Err(TextError::TooManyPairs));
    }

    #[test]
    fn assembler_bounds_and_joins() {
        let mut a = TextAssembler::new(10);
        assert_eq!(a.push(b"Send", true), Ok(None));
        assert_eq!(a.push(b"T=A\0", false), Ok(Some(b"SendT=A\0".to_vec())));
        assert!(matches!(a.push(b"0123456789X", false), Err(TextError::TooLong { .. })));
    }

    #[test]
    fn split_prefers_item_boundaries() {
        let t = b"TargetName=a\0TargetAddress=1.2.3.4:3260,1\0";
        let parts = split_text(t, 20);
        assert_eq!(parts[0], (&b"TargetName=a\0"[..], false));
        assert!(parts[1].1, "a 29-byte item cannot fit 20 bytes: C bit");
        let joined: Vec<u8> = parts.iter().flat_map(|(c, _)| c.to_vec()).collect();
        assert_eq!(joined, t.to_vec());
        assert_eq!(split_text(t, 1000), vec![(&t[..], false)]);
    }

    proptest! {
        #[test]
        fn split_then_join_is_identity(items in proptest::collection::vec("[a-z]{1,10}=[a-z0-9:.,]{0,30}", 0..30), max in 1usize..80) {
            let mut p = TextParams::new();
            for it in &items { let (k, v) = it.split_once('=').unwrap(); p.push(k, v); }
            let bytes = p.to_bytes();
            let parts = split_text(&bytes, max);
            prop_assert!(parts.iter().all(|(c, _)| c.len() <= max && !c.is_empty()));
            let mut asm = TextAssembler::new(1 << 20);
            let mut whole = None;
            for (i, (c, cbit)) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                whole = asm.push(c, !last || *cbit).unwrap();
            }
            if !bytes.is_empty() { prop_assert_eq!(TextParams::parse(&whole.unwrap()).unwrap(), p); }
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = TextParams::parse(&bytes);
        }
    }
}
