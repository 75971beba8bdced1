//! The access log, one line per event with the initiator's IP, as the
//! seed's: `access_log => 10.0.1.90 connect to 10.0.1.9`.
//!
//! Whatever came from the network (names, key values, a node's answer) is
//! shown through [`Esc`]: a newline or other control character in a
//! TargetName must not be able to write a second, forged log line.

use std::fmt;
use std::net::IpAddr;

/// Logs one access-log line for the initiator at `ip`.
pub fn access(ip: IpAddr, msg: fmt::Arguments<'_>) {
    tracing::info!(target: "access_log", "{ip} {msg}");
}

/// An IPv4-mapped IPv6 address shown as IPv4.
pub fn plain_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Most characters of one untrusted value shown in a log line.
const MAX_SHOWN: usize = 256;

/// Untrusted text for a log line: printable ASCII as it is, a backslash
/// doubled, everything else (control characters, DEL, non-ASCII) as
/// `\xNN` / `\u{...}`, and at most [`MAX_SHOWN`] characters.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, c) in self.0.chars().enumerate() {
            if n == MAX_SHOWN {
                return write!(f, "...({} bytes)", self.0.len());
            }
            match c {
                '\\' => f.write_str("\\\\")?,
                ' '..='~' => write!(f, "{c}")?,
                c if (c as u32) < 0x100 => write!(f, "\\x{:02x}", c as u32)?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
        }
        Ok(())
    }
}

/// Untrusted bytes for a log line (lossy UTF-8, then as [`Esc`]).
pub fn esc_bytes(b: &[u8]) -> String {
    Esc(&String::from_utf8_lossy(&b[..b.len().min(MAX_SHOWN * 4)])).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_stays_on_one_line() {
        let forged = "iqn.x\naccess_log => 10.6.6.6 redirect to 6.6.6.6:3260,1 REDIR_NORMAL";
        let shown = Esc(forged).to_string();
        assert!(!shown.contains('\n'), "{shown}");
        assert!(shown.starts_with("iqn.x\\x0aaccess_log"), "{shown}");
        assert_eq!(Esc("a\\b\r\t\u{7f}é\u{2028}").to_string(), "a\\\\b\\x0d\\x09\\x7f\\xe9\\u{2028}");
        assert_eq!(Esc("iqn.1990-01.edu.amherst:vol0").to_string(), "iqn.1990-01.edu.amherst:vol0");
        let long = "a".repeat(1000);
        assert!(Esc(&long).to_string().ends_with("...(1000 bytes)"));
        assert_eq!(esc_bytes(b"x\0y\xff"), "x\\x00y\\u{fffd}");
    }
}
