//! The access log, one line per event with the initiator's IP, as the
//! seed's: `access_log => 10.0.1.90 connect to 10.0.1.9`.

use std::net::IpAddr;

/// Logs one access-log line for the initiator at `ip`.
pub fn access(ip: IpAddr, msg: std::fmt::Arguments<'_>) {
    tracing::info!(target: "access_log", "{ip} {msg}");
}

/// An IPv4-mapped IPv6 address shown as IPv4.
pub fn plain_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
