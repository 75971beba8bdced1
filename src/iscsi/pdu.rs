//! PDU framing: BHS, additional header segments, optional header digest,
//! data segment padded to 4 bytes, optional data digest (RFC 7143 11.1).
//!
//! [`decode`] returns `Ok(None)` when more bytes are needed, `Err` when the
//! bytes cannot be a valid PDU (too long a data segment, a digest that does
//! not match). Unknown opcodes are not framing errors: they decode, and the
//! session layer rejects them.

use super::bhs::{Bhs, BHS_LEN};
use super::crc32c::{crc32c, crc32c_append};

/// Which digests are in effect on a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digests {
    pub header: bool,
    pub data: bool,
}

/// What a receiver accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Our MaxRecvDataSegmentLength: longer data segments are refused.
    pub max_data_segment: u32,
    pub digests: Digests,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // RFC 7143's default MaxRecvDataSegmentLength.
        DecodeLimits { max_data_segment: 8192, digests: Digests::default() }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("data segment of {len} bytes exceeds the negotiated maximum of {max}")]
    DataTooLong { len: u32, max: u32 },
    #[error("header digest mismatch: computed 0x{computed:08x}, received 0x{received:08x}")]
    HeaderDigest { computed: u32, received: u32 },
    #[error("data digest mismatch: computed 0x{computed:08x}, received 0x{received:08x}")]
    DataDigest { computed: u32, received: u32 },
}

/// A whole PDU.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Pdu {
    pub bhs: Bhs,
    /// Additional header segments, raw (a multiple of 4 bytes).
    pub ahs: Vec<u8>,
    /// Data segment without padding.
    pub data: Vec<u8>,
}

/// `n` rounded up to the 4-byte PDU alignment.
pub fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// The layout of one PDU on the wire, known from its BHS alone: what a
/// streaming receiver needs to read the rest (into a buffer of its choice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// BHS + AHS + header digest.
    pub header_len: usize,
    /// DataSegmentLength (payload without padding).
    pub data_len: usize,
    /// Padding after the payload (0-3 bytes).
    pub pad_len: usize,
    /// Whether a 4-byte data digest follows the padding.
    pub data_digest: bool,
}

impl Frame {
    /// Bytes after the payload: padding and data digest.
    pub fn trailer_len(&self) -> usize {
        self.pad_len + if self.data_digest { 4 } else { 0 }
    }

    pub fn total(&self) -> usize {
        self.header_len + self.data_len + self.trailer_len()
    }
}

/// The frame of the PDU whose BHS is `bhs`, or `DataTooLong` (checked
/// before a byte of the data is read).
pub fn frame(bhs: &Bhs, limits: &DecodeLimits) -> Result<Frame, DecodeError> {
    let dlen = bhs.data_len();
    if dlen > limits.max_data_segment {
        return Err(DecodeError::DataTooLong { len: dlen, max: limits.max_data_segment });
    }
    let data_len = dlen as usize;
    Ok(Frame {
        header_len: BHS_LEN + bhs.ahs_len() + if limits.digests.header { 4 } else { 0 },
        data_len,
        pad_len: pad4(data_len) - data_len,
        data_digest: data_len > 0 && limits.digests.data,
    })
}

/// Checks the header digest of `header` (BHS + AHS + the 4 digest bytes).
pub fn check_header_digest(header: &[u8]) -> Result<(), DecodeError> {
    let (h, d) = header.split_at(header.len().saturating_sub(4));
    let received = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
    let computed = crc32c(h);
    if computed != received {
        return Err(DecodeError::HeaderDigest { computed, received });
    }
    Ok(())
}

/// Checks a data digest: `payload` and then `trailer` (padding + digest).
pub fn check_data_digest(payload: &[u8], trailer: &[u8]) -> Result<(), DecodeError> {
    let (pad, d) = trailer.split_at(trailer.len().saturating_sub(4));
    let received = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
    let computed = crc32c_append(crc32c(payload), pad);
    if computed != received {
        return Err(DecodeError::DataDigest { computed, received });
    }
    Ok(())
}

/// Encodes a header for a payload of `data_len` bytes that the caller
/// sends from its own buffer, followed by [`data_trailer`].
pub fn encode_header(bhs: &Bhs, data_len: usize, digests: Digests) -> Vec<u8> {
    let mut b = *bhs;
    b.set_ahs_words(0);
    b.set_data_len(data_len.min(0x00ff_ffff) as u32);
    let mut out = Vec::with_capacity(BHS_LEN + 4);
    out.extend_from_slice(&b.0);
    if digests.header {
        let d = crc32c(&out);
        out.extend_from_slice(&d.to_le_bytes());
    }
    out
}

/// Padding and data digest that follow `payload` on the wire.
pub fn data_trailer(payload: &[u8], digests: Digests) -> ([u8; 8], usize) {
    let mut t = [0u8; 8];
    if payload.is_empty() {
        return (t, 0);
    }
    let pad = pad4(payload.len()) - payload.len();
    let mut n = pad;
    if digests.data {
        let d = crc32c_append(crc32c(payload), &t[..pad]);
        t[pad..pad + 4].copy_from_slice(&d.to_le_bytes());
        n += 4;
    }
    (t, n)
}

/// Total bytes of the PDU whose BHS is `bhs`, or an error if its data
/// segment is longer than the limits allow (checked before reading it).
pub fn frame_len(bhs: &Bhs, limits: &DecodeLimits) -> Result<usize, DecodeError> {
    let dlen = bhs.data_len();
    if dlen > limits.max_data_segment {
        return Err(DecodeError::DataTooLong { len: dlen, max: limits.max_data_segment });
    }
    let mut n = BHS_LEN + bhs.ahs_len();
    if limits.digests.header {
        n += 4;
    }
    if dlen > 0 {
        n += pad4(dlen as usize);
        if limits.digests.data {
            n += 4;
        }
    }
    Ok(n)
}

/// Decodes one PDU from the front of `buf`: `Ok(Some((pdu, consumed)))`,
/// `Ok(None)` if `buf` holds only part of one, `Err` if it is malformed.
pub fn decode(buf: &[u8], limits: &DecodeLimits) -> Result<Option<(Pdu, usize)>, DecodeError> {
    if buf.len() < BHS_LEN {
        return Ok(None);
    }
    let mut raw = [0u8; BHS_LEN];
    raw.copy_from_slice(&buf[..BHS_LEN]);
    let bhs = Bhs(raw);
    let total = frame_len(&bhs, limits)?;
    if buf.len() < total {
        return Ok(None);
    }
    let mut at = BHS_LEN;
    let ahs = buf[at..at + bhs.ahs_len()].to_vec();
    at += bhs.ahs_len();
    if limits.digests.header {
        let computed = crc32c(&buf[..at]);
        let received = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        if computed != received {
            return Err(DecodeError::HeaderDigest { computed, received });
        }
        at += 4;
    }
    let dlen = bhs.data_len() as usize;
    let data = buf[at..at + dlen].to_vec();
    if dlen > 0 {
        let padded = pad4(dlen);
        if limits.digests.data {
            let computed = crc32c(&buf[at..at + padded]);
            let d = at + padded;
            let received = u32::from_le_bytes([buf[d], buf[d + 1], buf[d + 2], buf[d + 3]]);
            if computed != received {
                return Err(DecodeError::DataDigest { computed, received });
            }
        }
    }
    Ok(Some((Pdu { bhs, ahs, data }, total)))
}

/// Encodes `pdu`, setting its length fields from its segments. Digests are
/// CRC32C, sent least significant byte first as Linux initiators do.
pub fn encode(pdu: &Pdu, digests: Digests) -> Vec<u8> {
    let mut bhs = pdu.bhs;
    let ahs_padded = pad4(pdu.ahs.len()).min(255 * 4);
    bhs.set_ahs_words((ahs_padded / 4) as u8);
    let dlen = pdu.data.len().min(0x00ff_ffff);
    bhs.set_data_len(dlen as u32);
    let mut out = Vec::with_capacity(BHS_LEN + ahs_padded + pad4(dlen) + 8);
    out.extend_from_slice(&bhs.0);
    out.extend_from_slice(&pdu.ahs[..pdu.ahs.len().min(ahs_padded)]);
    out.resize(BHS_LEN + ahs_padded, 0);
    if digests.header {
        let d = crc32c(&out);
        out.extend_from_slice(&d.to_le_bytes());
    }
    if dlen > 0 {
        let start = out.len();
        out.extend_from_slice(&pdu.data[..dlen]);
        out.resize(start + pad4(dlen), 0);
        if digests.data {
            let d = crc32c(&out[start..]);
            out.extend_from_slice(&d.to_le_bytes());
        }
    }
    out
}

impl Pdu {
    pub fn new(bhs: Bhs, data: Vec<u8>) -> Pdu {
        Pdu { bhs, ahs: Vec::new(), data }
    }

    /// Additional header segments as (type, payload), each checked against
    /// the space the BHS declared; a malformed list ends the iteration.
    pub fn ahs_entries(&self) -> Vec<(u8, &[u8])> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 4 <= self.ahs.len() {
            let len = usize::from(u16::from_be_bytes([self.ahs[at], self.ahs[at + 1]]));
            let ty = self.ahs[at + 2];
            // AHSLength counts the specific field after the type byte.
            let end = at + 3 + len;
            if end > self.ahs.len() {
                break;
            }
            out.push((ty, &self.ahs[at + 3..end]));
            at = pad4(end);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::bhs::Opcode;
    use proptest::prelude::*;

    fn sample(data: &[u8], ahs: &[u8]) -> Pdu {
        let mut bhs = Bhs::new(Opcode::TextRequest);
        bhs.set_flags(0x80);
        bhs.set_itt(7);
        Pdu { bhs, ahs: ahs.to_vec(), data: data.to_vec() }
    }

    #[test]
    fn padding_and_lengths() {
        let bytes = encode(&sample(b"SendTargets=All\0", &[]), Digests::default());
        assert_eq!(bytes.len(), 48 + 16);
        let bytes = encode(&sample(b"abcde", &[]), Digests::default());
        assert_eq!(bytes.len(), 48 + 8);
        assert_eq!(&bytes[5..8], &[0, 0, 5]);
        let (p, n) = decode(&bytes, &DecodeLimits::default()).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(p.data, b"abcde");
    }

    #[test]
    fn need_more_is_not_an_error() {
        let bytes = encode(&sample(b"abcdef", &[]), Digests::default());
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut], &DecodeLimits::default()), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn oversized_data_is_refused_from_the_header_alone() {
        let mut bhs = Bhs::new(Opcode::TextRequest);
        bhs.set_data_len(1 << 20);
        let limits = DecodeLimits { max_data_segment: 8192, ..Default::default() };
        assert_eq!(decode(&bhs.0, &limits), Err(DecodeError::DataTooLong { len: 1 << 20, max: 8192 }));
    }

    #[test]
    fn digests_are_checked() {
        let d = Digests { header: true, data: true };
        let limits = DecodeLimits { max_data_segment: 8192, digests: d };
        let mut bytes = encode(&sample(b"key=value\0", &[0, 1, 0x55, 9]), d);
        assert!(decode(&bytes, &limits).unwrap().is_some());
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(decode(&bytes, &limits), Err(DecodeError::DataDigest { .. })));
        bytes[last] ^= 1;
        bytes[3] ^= 1;
        assert!(matches!(decode(&bytes, &limits), Err(DecodeError::HeaderDigest { .. })));
    }

    #[test]
    fn ahs_is_skipped_and_listed() {
        // One AHS: length 1 (one specific byte after the type), type 0x02, padded to 4.
        let p = sample(b"x", &[0, 1, 2, 0xAB]);
        let bytes = encode(&p, Digests::default());
        let (q, _) = decode(&bytes, &DecodeLimits::default()).unwrap().unwrap();
        assert_eq!(q.data, b"x");
        assert_eq!(q.ahs_entries(), vec![(2u8, &[0xABu8][..])]);
        let bad = Pdu { ahs: vec![0xff, 0xff, 1, 0], ..q };
        assert!(bad.ahs_entries().is_empty());
    }

    #[test]
    fn streaming_helpers_match_whole_pdu_encoding() {
        for (hd, dd) in [(false, false), (true, false), (false, true), (true, true)] {
            let d = Digests { header: hd, data: dd };
            for len in [0usize, 1, 3, 4, 5, 1000] {
                let p = sample(&vec![0x5a; len], &[]);
                let whole = encode(&p, d);
                let head = encode_header(&p.bhs, len, d);
                let (t, tn) = data_trailer(&p.data, d);
                let mut joined = head.clone();
                joined.extend_from_slice(&p.data);
                joined.extend_from_slice(&t[..tn]);
                assert_eq!(joined, whole, "hd={hd} dd={dd} len={len}");
                let limits = DecodeLimits { max_data_segment: 4096, digests: d };
                let mut wire = [0u8; BHS_LEN];
                wire.copy_from_slice(&whole[..BHS_LEN]);
                let f = frame(&Bhs(wire), &limits).unwrap();
                assert_eq!((f.header_len, f.data_len, f.total()), (head.len(), len, whole.len()));
                if hd {
                    check_header_digest(&whole[..f.header_len]).unwrap();
                    let mut bad = whole[..f.header_len].to_vec();
                    bad[0] ^= 1;
                    assert!(check_header_digest(&bad).is_err());
                }
                if f.data_digest {
                    let at = f.header_len;
                    check_data_digest(&whole[at..at + len], &whole[at + len..]).unwrap();
                    assert!(check_data_digest(&whole[at..at + len - 1], &whole[at + len..]).is_err());
                }
            }
        }
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(data in proptest::collection::vec(any::<u8>(), 0..600), ahs_words in 0usize..4,
                                    hd: bool, dd: bool, flags: u8, itt: u32) {
            let mut p = sample(&data, &vec![0x11u8; ahs_words * 4]);
            p.bhs.set_flags(flags);
            p.bhs.set_itt(itt);
            let d = Digests { header: hd, data: dd };
            let bytes = encode(&p, d);
            let limits = DecodeLimits { max_data_segment: 1024, digests: d };
            let (q, n) = decode(&bytes, &limits).unwrap().unwrap();
            prop_assert_eq!(n, bytes.len());
            prop_assert_eq!(&q.data, &p.data);
            prop_assert_eq!(&q.ahs, &p.ahs);
            prop_assert_eq!(q.bhs.itt(), itt);
            prop_assert_eq!(encode(&q, d), bytes);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), hd: bool, dd: bool) {
            let limits = DecodeLimits { max_data_segment: 64, digests: Digests { header: hd, data: dd } };
            let _ = decode(&bytes, &limits);
        }
    }
}
