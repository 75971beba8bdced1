//! TargetAddress values: `host[:port][,tpgt]`, with IPv6 hosts in brackets
//! (RFC 7143 13.8). The portal always sends the port, because libiscsi only
//! follows a redirect whose address carries one.

use std::net::IpAddr;

/// Default iSCSI port when an address leaves it out.
pub const DEFAULT_PORT: u16 = 3260;

#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TargetAddress {
    pub host: String,
    pub port: u16,
    /// Target portal group tag.
    pub tpgt: u16,
}

impl TargetAddress {
    pub fn new(ip: IpAddr, port: u16, tpgt: u16) -> Self {
        TargetAddress { host: ip.to_string(), port, tpgt }
    }

    /// Parses `host[:port][,tpgt]`; a missing tag is 1 (IET's default).
    pub fn parse(s: &str) -> Option<TargetAddress> {
        let (addr, tpgt) = match s.rsplit_once(',') {
            Some((a, t)) => (a, t.trim().parse().ok()?),
            None => (s, 1),
        };
        let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
            let (h, after) = rest.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().ok()?,
                None if after.is_empty() => DEFAULT_PORT,
                None => return None,
            };
            (h.to_string(), port)
        } else {
            match addr.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().ok()?),
                None => (addr.to_string(), DEFAULT_PORT),
            }
        };
        // An IP address or a DNS name (IPv6 with a zone: `%`): nothing a
        // terminal or a log line could interpret.
        if host.is_empty()
            || host.len() > 255
            || !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_' | b'%'))
        {
            return None;
        }
        Some(TargetAddress { host, port, tpgt })
    }

    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl std::fmt::Display for TargetAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{},{}", self.host, self.port, self.tpgt)
        } else {
            write!(f, "{}:{},{}", self.host, self.port, self.tpgt)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            TargetAddress::parse("10.0.1.1:3260,1"),
            Some(TargetAddress { host: "10.0.1.1".into(), port: 3260, tpgt: 1 })
        );
        assert_eq!(
            TargetAddress::parse("10.0.1.1"),
            Some(TargetAddress { host: "10.0.1.1".into(), port: 3260, tpgt: 1 })
        );
        assert_eq!(TargetAddress::parse("10.0.1.1,7").map(|a| (a.port, a.tpgt)), Some((3260, 7)));
        let v6 = TargetAddress::parse("[fe80::1]:13260,2").unwrap();
        assert_eq!((v6.host.as_str(), v6.port, v6.tpgt), ("fe80::1", 13260, 2));
        assert_eq!(v6.to_string(), "[fe80::1]:13260,2");
        assert_eq!(TargetAddress::parse("127.0.0.2:13260,1").unwrap().to_string(), "127.0.0.2:13260,1");
        for bad in
            ["", ":3260", "h:port", "h:3260,x", "[::1", "[::1]x", "a b:1", "h\x1b[2J:3260", "h\n:3260", "[a\nb]:1"]
        {
            assert_eq!(TargetAddress::parse(bad), None, "{bad}");
        }
    }
}
