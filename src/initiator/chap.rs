//! CHAP for iSCSI (RFC 1994, RFC 7143 12.1.3): MD5 responses, challenge
//! encoding (0x hex or 0b base64), and the checks that keep mutual CHAP
//! honest (bounded challenge sizes, no reflected challenge). Pure.

use md5::{Digest, Md5};

/// CHAP_A=5: MD5, the only algorithm every target supports.
pub const ALGORITHM_MD5: &str = "5";
/// Challenges we accept: 1 to 1024 bytes (RFC 7143 allows up to 1024).
pub const MAX_CHALLENGE: usize = 1024;

/// MD5(id || secret || challenge).
pub fn response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

/// `0x` followed by lower-case hex.
pub fn to_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn base64_value(c: u8) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    })
}

/// Decodes a CHAP binary value (RFC 7143 6.1: `0x`/`0X` hex, `0b`/`0B`
/// base64), at most [`MAX_CHALLENGE`] bytes.
pub fn parse_binary(v: &str) -> Result<Vec<u8>, String> {
    // Bytes, not str slices: a value may hold any UTF-8 (fuzzing found it).
    let (prefix, body) = v.as_bytes().split_at(v.len().min(2));
    let out = match prefix {
        b"0x" | b"0X" => {
            if body.is_empty() || body.len() > 2 * MAX_CHALLENGE {
                return Err(format!("hex value of {} digits", body.len()));
            }
            // An odd count has an implied leading zero.
            let padded: Vec<u8> = if body.len() % 2 == 1 {
                std::iter::once(b'0').chain(body.iter().copied()).collect()
            } else {
                body.to_vec()
            };
            padded
                .chunks(2)
                .map(|p| {
                    let s = std::str::from_utf8(p).map_err(|_| "non-ASCII hex".to_string())?;
                    u8::from_str_radix(s, 16).map_err(|_| format!("invalid hex digits {s:?}"))
                })
                .collect::<Result<Vec<u8>, String>>()?
        }
        b"0b" | b"0B" => {
            let mut body = body;
            while let [rest @ .., b'='] = body {
                body = rest;
            }
            if body.is_empty() || body.len() > MAX_CHALLENGE * 4 / 3 + 4 {
                return Err(format!("base64 value of {} characters", body.len()));
            }
            let mut out = Vec::with_capacity(body.len() * 3 / 4);
            let (mut acc, mut bits) = (0u32, 0);
            for &c in body {
                acc = (acc << 6) | u32::from(base64_value(c).ok_or("invalid base64 character")?);
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    out.push((acc >> bits) as u8);
                }
            }
            out
        }
        _ => return Err("expected 0x (hex) or 0b (base64)".into()),
    };
    if out.is_empty() || out.len() > MAX_CHALLENGE {
        return Err(format!("{} bytes (1 to {MAX_CHALLENGE} expected)", out.len()));
    }
    Ok(out)
}

/// Random bytes from the kernel.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    let mut got = 0;
    while got < n {
        // SAFETY: writing at most n - got bytes into our own buffer.
        let r = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), n - got, 0) };
        if r > 0 {
            got += r as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // No getrandom: fall back to /dev/urandom.
            if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
                use std::io::Read;
                if f.read_exact(&mut b[got..]).is_ok() {
                    return b;
                }
            }
            panic!("no source of randomness for CHAP challenges");
        }
    }
    b
}

/// Constant-time comparison of two responses.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1994_md5_response() {
        // Known answer: MD5(0x01 || "secret" || 0x00..0f).
        let ch: Vec<u8> = (0..16).collect();
        let r = response(1, b"secret", &ch);
        let mut h = Md5::new();
        h.update([1u8]);
        h.update(b"secret");
        h.update(&ch);
        assert_eq!(r.to_vec(), h.finalize().to_vec());
        assert_eq!(to_hex(&[0xab, 0x01]), "0xab01");
        assert_eq!(to_hex(&response(0, b"", b"")), "0x93b885adfe0da089cdf634904fd59f71");
    }

    #[test]
    fn binary_values() {
        assert_eq!(parse_binary("0xab01").unwrap(), vec![0xab, 0x01]);
        assert_eq!(parse_binary("0XAB1").unwrap(), vec![0x0a, 0xb1]);
        assert_eq!(parse_binary("0bq83v").unwrap(), vec![0xab, 0xcd, 0xef]);
        assert_eq!(parse_binary("0bAQ==").unwrap(), vec![0x01]);
        for bad in ["", "0x", "ab01", "0xzz", "0b*", "\n\u{34d}", "0x\u{34d}", &format!("0x{}", "00".repeat(1025))] {
            assert!(parse_binary(bad).is_err(), "{bad}");
        }
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
        let r = random_bytes(16);
        assert_eq!(r.len(), 16);
        assert_ne!(r, random_bytes(16));
    }
}
