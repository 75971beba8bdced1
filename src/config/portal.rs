//! `[portal]`: the iSCSI portal daemon (`iscsi-portal`) and its tools.
//!
//! ```toml
//! [portal]
//! listen = ["10.0.1.9:3260", "10.0.2.9:3260"]
//! state_time_sec = 5
//! state_directory = "/var/lib/santools/portal"
//! max_recv_data_segment_length = 262144
//! targets_removed = ["iqn.1990-01.edu.example:old-target"]
//!
//! [[portal.discovery_portals]]
//! address = "10.0.1.9"
//! portal_group_name = "pg_vlan10_fabric"
//! portal_port = 3260
//! [portal.discovery_portals.portal_addresses]
//! "iscsi-target-node1" = ["10.0.1.1", "10.0.1.2"]
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::InvalidValue;
use crate::iscsi::name::is_valid_name;

fn default_state_time() -> u64 {
    5
}
fn default_state_directory() -> PathBuf {
    PathBuf::from("/var/lib/santools/portal")
}
fn default_state_expiry() -> u64 {
    3600
}
fn default_mrdsl() -> u32 {
    262_144
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_connections_per_source() -> usize {
    128
}
fn default_login_timeout() -> u64 {
    15
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_connect_timeout() -> u64 {
    2000
}
fn default_response_timeout() -> u64 {
    3000
}
fn default_node_query_rate() -> u32 {
    100
}
fn default_node_query_concurrency() -> u32 {
    8
}
fn default_redirect_verify() -> u64 {
    1000
}
fn default_failover_wait() -> u64 {
    30
}
fn default_failover_rescan() -> u64 {
    2
}
fn default_drain_timeout() -> u64 {
    10
}
fn default_pid_file() -> PathBuf {
    PathBuf::from("/run/santools/iscsi-portal.pid")
}
fn default_syslog_prefix() -> String {
    "iscsi-portal".to_string()
}
/// A missing `address` reads as 0.0.0.0, which validation refuses with
/// the key's path (serde would name neither the table nor its index).
fn missing_address() -> IpAddr {
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}

/// Most entries a list key may hold (each costs a thread or a socket).
pub const MAX_LISTEN: usize = 64;
pub const MAX_DISCOVERY_PORTALS: usize = 64;
/// Node portals (node x address) behind one discovery portal: each is
/// asked at once, by its own thread.
pub const MAX_NODE_PORTALS: usize = 256;
pub const MAX_TARGETS_REMOVED: usize = 65_536;

/// One portal address initiators connect to, and the target nodes' portals
/// behind it (typically one VLAN).
#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryPortal {
    /// The address initiators use for discovery and login.
    #[serde(default = "missing_address")]
    pub address: IpAddr,
    /// Informational name, shown by `iscsi-portal-sendtargets -l`.
    #[serde(default)]
    pub portal_group_name: String,
    /// TCP port of the target nodes' portals.
    #[serde(default = "default_portal_port")]
    pub portal_port: u16,
    /// Node name -> that node's portal IP addresses on this network.
    #[serde(default)]
    pub portal_addresses: BTreeMap<String, Vec<IpAddr>>,
}

fn default_portal_port() -> u16 {
    3260
}

impl DiscoveryPortal {
    /// Every node portal as (node name, socket address), in config order.
    pub fn node_portals(&self) -> Vec<(String, SocketAddr)> {
        self.portal_addresses
            .iter()
            .flat_map(|(node, ips)| ips.iter().map(move |ip| (node.clone(), SocketAddr::new(*ip, self.portal_port))))
            .collect()
    }

    /// The node a node portal address belongs to, if it is one of ours.
    pub fn node_of(&self, addr: SocketAddr) -> Option<&str> {
        if addr.port() != self.portal_port {
            return None;
        }
        self.portal_addresses.iter().find(|(_, ips)| ips.contains(&addr.ip())).map(|(n, _)| n.as_str())
    }
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PortalConfig {
    /// Addresses the daemon binds.
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// Seconds a discovered target/portal list is trusted.
    #[serde(default = "default_state_time")]
    pub state_time_sec: u64,
    /// Rotation state per (discovery portal, initiator, target), kept
    /// across restarts.
    #[serde(default = "default_state_directory")]
    pub state_directory: PathBuf,
    /// Seconds after which a rotation state entry nobody used is removed.
    #[serde(default = "default_state_expiry")]
    pub state_expiry_sec: u64,
    /// Our MaxRecvDataSegmentLength (after the login phase).
    #[serde(default = "default_mrdsl")]
    pub max_recv_data_segment_length: u32,
    /// Targets answered with "target removed" and left out of discovery.
    #[serde(default)]
    pub targets_removed: Vec<String>,
    #[serde(default)]
    pub discovery_portals: Vec<DiscoveryPortal>,
    /// Connections served at once; more are closed at accept.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections one source address may hold at once (at most
    /// max_connections in effect).
    #[serde(default = "default_max_connections_per_source")]
    pub max_connections_per_source: usize,
    /// Seconds a client has to complete its login.
    #[serde(default = "default_login_timeout")]
    pub login_timeout_sec: u64,
    /// Seconds a discovery session may sit idle.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_sec: u64,
    /// Milliseconds to connect to a target node's portal.
    #[serde(default = "default_connect_timeout")]
    pub upstream_connect_timeout_ms: u64,
    /// Milliseconds a whole discovery exchange with a node portal may take
    /// after connecting (login, SendTargets and its continuations, logout).
    #[serde(default = "default_response_timeout")]
    pub upstream_response_timeout_ms: u64,
    /// Discovery sessions the portal starts per second towards one node,
    /// at most (all its portals together).
    #[serde(default = "default_node_query_rate")]
    pub node_query_rate: u32,
    /// Discovery sessions open towards one node at once, at most.
    #[serde(default = "default_node_query_concurrency")]
    pub node_query_concurrency: u32,
    /// A redirect from a cached portal list goes to a node only if that
    /// node listed the target for the initiator within this many
    /// milliseconds; otherwise the node is asked first (0: always ask).
    #[serde(default = "default_redirect_verify")]
    pub redirect_verify_ms: u64,
    /// Seconds a login for a target found on no node is held while the
    /// nodes are rescanned (a volume-group failover takes 15-20 s).
    #[serde(default = "default_failover_wait")]
    pub failover_wait_sec: u64,
    /// Seconds between those rescans.
    #[serde(default = "default_failover_rescan")]
    pub failover_rescan_sec: u64,
    /// Seconds SIGTERM waits for open connections before exiting.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout_sec: u64,
    /// PID file of the background daemon (-D, -k).
    #[serde(default = "default_pid_file")]
    pub pid_file: PathBuf,
    /// Syslog identity of the background daemon (the seed's key).
    #[serde(default = "default_syslog_prefix")]
    pub syslog_prefix: String,
}

/// Inclusive bounds of every numeric key: (key, value, min, max, unit).
type Bound = (&'static str, u64, u64, u64, &'static str);

impl PortalConfig {
    pub fn state_time(&self) -> Duration {
        Duration::from_secs(self.state_time_sec)
    }
    pub fn state_expiry(&self) -> Duration {
        Duration::from_secs(self.state_expiry_sec)
    }
    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout_sec)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_sec)
    }
    pub fn upstream_connect_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_connect_timeout_ms)
    }
    pub fn upstream_response_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_response_timeout_ms)
    }
    /// The most one node portal can cost a caller, whatever it does:
    /// waiting for the node's query budget, connecting, and the whole
    /// exchange share this one deadline.
    pub fn node_query_bound(&self) -> Duration {
        self.upstream_connect_timeout() + self.upstream_response_timeout()
    }
    pub fn redirect_verify(&self) -> Duration {
        Duration::from_millis(self.redirect_verify_ms)
    }
    pub fn failover_wait(&self) -> Duration {
        Duration::from_secs(self.failover_wait_sec)
    }
    pub fn failover_rescan(&self) -> Duration {
        Duration::from_secs(self.failover_rescan_sec)
    }
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_sec)
    }

    pub fn is_removed(&self, target: &str) -> bool {
        self.targets_removed.iter().any(|t| t.eq_ignore_ascii_case(target))
    }

    /// The discovery portal an initiator reached by connecting to `local`.
    /// With a single discovery portal, that one serves every address.
    pub fn discovery_portal_for(&self, local: IpAddr) -> Option<&DiscoveryPortal> {
        let local = match local {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(local),
            v4 => v4,
        };
        self.discovery_portals.iter().find(|d| d.address == local).or(match self.discovery_portals.as_slice() {
            [only] => Some(only),
            _ => None,
        })
    }

    /// Listens on `port` instead of the configured ports (`-l`), checked
    /// again (the new port may make a node portal this portal itself).
    pub fn with_listen_port(mut self, port: u16) -> Result<PortalConfig, InvalidValue> {
        for l in &mut self.listen {
            l.set_port(port);
        }
        self.validate()?;
        Ok(self)
    }

    fn bounds(&self) -> [Bound; 15] {
        [
            ("state_time_sec", self.state_time_sec, 1, 3600, "seconds (the seed recommends under 20)"),
            ("state_expiry_sec", self.state_expiry_sec, 1, 31_536_000, "seconds"),
            (
                "max_recv_data_segment_length",
                u64::from(self.max_recv_data_segment_length),
                512,
                16_777_215,
                "bytes (RFC 7143)",
            ),
            ("max_connections", self.max_connections as u64, 1, 65_536, "connections"),
            ("max_connections_per_source", self.max_connections_per_source as u64, 1, 65_536, "connections"),
            ("login_timeout_sec", self.login_timeout_sec, 1, 300, "seconds"),
            ("idle_timeout_sec", self.idle_timeout_sec, 1, 86_400, "seconds"),
            ("upstream_connect_timeout_ms", self.upstream_connect_timeout_ms, 1, 60_000, "milliseconds"),
            ("upstream_response_timeout_ms", self.upstream_response_timeout_ms, 1, 300_000, "milliseconds"),
            ("node_query_rate", u64::from(self.node_query_rate), 1, 100_000, "sessions per second"),
            ("node_query_concurrency", u64::from(self.node_query_concurrency), 1, 1024, "sessions"),
            (
                "redirect_verify_ms",
                self.redirect_verify_ms,
                0,
                self.state_time_sec.saturating_mul(1000),
                "milliseconds (at most state_time_sec)",
            ),
            ("failover_wait_sec", self.failover_wait_sec, 0, 3600, "seconds"),
            ("failover_rescan_sec", self.failover_rescan_sec, 1, 3600, "seconds"),
            ("drain_timeout_sec", self.drain_timeout_sec, 0, 3600, "seconds"),
        ]
    }

    pub(crate) fn validate(&self) -> Result<(), InvalidValue> {
        let bad = |k: &str, p: String| Err(InvalidValue::new(format!("portal.{k}"), p));
        if self.listen.is_empty() {
            return bad("listen", "required: at least one address:port to listen on".into());
        }
        if self.listen.len() > MAX_LISTEN {
            return bad("listen", format!("at most {MAX_LISTEN} addresses, got {}", self.listen.len()));
        }
        for (i, l) in self.listen.iter().enumerate() {
            if l.port() == 0 {
                return bad(&format!("listen[{i}]"), format!("{l}: port 0 is not a port initiators can use"));
            }
            if let Some(j) = self.listen[..i].iter().position(|o| o == l) {
                return bad(&format!("listen[{i}]"), format!("{l} is already listed as listen[{j}]"));
            }
        }
        for (k, v, min, max, unit) in self.bounds() {
            if !(min..=max).contains(&v) {
                return bad(k, format!("must be {min}-{max} {unit}, got {v}"));
            }
        }
        if !self.state_directory.is_absolute() {
            return bad("state_directory", format!("must be an absolute path, got {:?}", self.state_directory));
        }
        if self.targets_removed.len() > MAX_TARGETS_REMOVED {
            return bad("targets_removed", format!("at most {MAX_TARGETS_REMOVED} targets"));
        }
        for (i, t) in self.targets_removed.iter().enumerate() {
            if !is_valid_name(t) {
                return bad(
                    &format!("targets_removed[{i}]"),
                    format!("{t:?} is not an iSCSI name (iqn., eui. or naa.)"),
                );
            }
        }
        if self.discovery_portals.is_empty() {
            return bad("discovery_portals", "required: at least one [[portal.discovery_portals]] entry".into());
        }
        if self.discovery_portals.len() > MAX_DISCOVERY_PORTALS {
            return bad("discovery_portals", format!("at most {MAX_DISCOVERY_PORTALS} entries"));
        }
        for (i, d) in self.discovery_portals.iter().enumerate() {
            self.validate_discovery_portal(i, d)?;
        }
        self.validate_listen_is_served()?;
        self.check_not_self(|_| false)?;
        if !self.pid_file.is_absolute() {
            return bad("pid_file", format!("must be an absolute path, got {:?}", self.pid_file));
        }
        if self.syslog_prefix.is_empty()
            || self.syslog_prefix.len() > 64
            || !self.syslog_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return bad(
                "syslog_prefix",
                format!("must be 1-64 characters of A-Z a-z 0-9 . - _, got {:?}", self.syslog_prefix),
            );
        }
        Ok(())
    }

    fn validate_discovery_portal(&self, i: usize, d: &DiscoveryPortal) -> Result<(), InvalidValue> {
        let bad = |k: String, p: String| Err(InvalidValue::new(format!("portal.discovery_portals[{i}].{k}"), p));
        if d.address.is_unspecified() || d.address.is_multicast() {
            return bad(
                "address".into(),
                "required: the specific IP address initiators use for this portal group (not 0.0.0.0)".into(),
            );
        }
        if self.discovery_portals[..i].iter().any(|o| o.address == d.address) {
            return bad("address".into(), format!("{} is listed twice", d.address));
        }
        if d.portal_group_name.is_empty()
            || d.portal_group_name.len() > 255
            || d.portal_group_name.chars().any(|c| c.is_control())
        {
            return bad(
                "portal_group_name".into(),
                format!("required: 1-255 printable characters, got {:?}", d.portal_group_name),
            );
        }
        if d.portal_port == 0 {
            return bad("portal_port".into(), "must be 1-65535, got 0".into());
        }
        if d.portal_addresses.is_empty() {
            return bad("portal_addresses".into(), "required: at least one node with portal addresses".into());
        }
        let mut total = 0usize;
        for (node, ips) in &d.portal_addresses {
            if node.is_empty() || node.len() > 255 || node.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return bad(
                    "portal_addresses".into(),
                    format!("node name {node:?} must be 1-255 printable characters without spaces"),
                );
            }
            let key = format!("portal_addresses.{node}");
            if ips.is_empty() {
                return bad(key, "needs at least one IP address".into());
            }
            for (j, ip) in ips.iter().enumerate() {
                if ip.is_unspecified() || ip.is_multicast() {
                    return bad(format!("{key}[{j}]"), format!("{ip} is not a node portal address"));
                }
                if ips[..j].contains(ip) {
                    return bad(format!("{key}[{j}]"), format!("{ip} is listed twice"));
                }
                if let Some((other, _)) =
                    d.portal_addresses.range::<String, _>(..node.clone()).find(|(_, o)| o.contains(ip))
                {
                    return bad(format!("{key}[{j}]"), format!("{ip} is already a portal of node {other:?}"));
                }
            }
            total += ips.len();
        }
        if total > MAX_NODE_PORTALS {
            return bad(
                "portal_addresses".into(),
                format!("at most {MAX_NODE_PORTALS} node portals per discovery portal, got {total}"),
            );
        }
        Ok(())
    }

    /// With several discovery portals, a login is served by the one whose
    /// address it reached: a specific listen address that is no discovery
    /// portal's would answer every login with 0x0300.
    fn validate_listen_is_served(&self) -> Result<(), InvalidValue> {
        if self.discovery_portals.len() > 1 {
            for (i, l) in self.listen.iter().enumerate() {
                let ip = plain(l.ip());
                if !ip.is_unspecified() && !self.discovery_portals.iter().any(|d| d.address == ip) {
                    return Err(InvalidValue::new(
                        format!("portal.listen[{i}]"),
                        format!(
                            "{l}: no [[portal.discovery_portals]] has address {ip}, so every login there would fail"
                        ),
                    ));
                }
            }
        }
        if self.discovery_portals.len() == 1 {
            // A single discovery portal serves every listen address.
            return Ok(());
        }
        for (i, d) in self.discovery_portals.iter().enumerate() {
            let reachable = self.listen.iter().any(|l| plain(l.ip()) == d.address || l.ip().is_unspecified());
            if !reachable {
                return Err(InvalidValue::new(
                    format!("portal.discovery_portals[{i}].address"),
                    format!("{} is not among the listen addresses, so no initiator can reach it", d.address),
                ));
            }
        }
        Ok(())
    }

    /// Refuses a node portal that is one of this portal's own listen
    /// addresses: the portal would ask itself, recursively. `is_local`
    /// says whether an IP is an address of this host, for wildcard
    /// listen addresses (the daemon passes a real check; pure validation
    /// passes `|_| false`).
    pub fn check_not_self(&self, is_local: impl Fn(IpAddr) -> bool) -> Result<(), InvalidValue> {
        for (i, d) in self.discovery_portals.iter().enumerate() {
            for (node, ips) in &d.portal_addresses {
                for (j, ip) in ips.iter().enumerate() {
                    let node_addr = SocketAddr::new(*ip, d.portal_port);
                    let hit = self.listen.iter().position(|l| {
                        l.port() == d.portal_port
                            && (plain(l.ip()) == plain(*ip) || (l.ip().is_unspecified() && is_local(*ip)))
                    });
                    if let Some(k) = hit {
                        return Err(InvalidValue::new(
                            format!("portal.discovery_portals[{i}].portal_addresses.{node}[{j}]"),
                            format!(
                                "{node_addr} is this portal's own listen address (portal.listen[{k}] = {}): the portal would ask itself",
                                self.listen[k]
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Things `--check` mentions but accepts.
    pub fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.discovery_portals.len() > 1 && self.listen.iter().any(|l| l.ip().is_unspecified()) {
            out.push(
                "a wildcard listen address: logins reaching an address that is no discovery portal's are refused (0x0300)"
                    .to_string(),
            );
        }
        out
    }
}

/// An IPv4-mapped IPv6 address as IPv4.
fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    const GOOD: &str = r#"
[portal]
listen = ["10.0.1.9:3260", "10.0.2.9:3260"]
state_time_sec = 5
state_directory = "/var/lib/santools/portal"
max_recv_data_segment_length = 262144
targets_removed = ["iqn.1990-01.edu.example:old-target"]

[[portal.discovery_portals]]
address = "10.0.1.9"
portal_group_name = "pg_vlan10_fabric"
portal_port = 3260
[portal.discovery_portals.portal_addresses]
"iscsi-target-node1" = ["10.0.1.1", "10.0.1.2"]
"iscsi-target-node2" = ["10.0.1.3", "10.0.1.4"]
"#;

    const SECOND: &str = r#"
[[portal.discovery_portals]]
address = "10.0.2.9"
portal_group_name = "pg_vlan20_fabric"
[portal.discovery_portals.portal_addresses]
"iscsi-target-node1" = ["10.0.2.1", "10.0.2.2"]
"iscsi-target-node2" = ["10.0.2.3", "10.0.2.4"]
"#;

    fn parse(t: &str) -> Result<Config, String> {
        Config::parse(t, Path::new("/etc/santools/santools.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_issue_example_parses_with_defaults() {
        let c = parse(GOOD).unwrap();
        let p = c.portal.unwrap();
        assert_eq!(p.discovery_portals[0].node_portals().len(), 4);
        assert_eq!(p.failover_wait_sec, 30);
        assert!(p.is_removed("IQN.1990-01.edu.example:old-target"));
        assert_eq!(p.discovery_portal_for("10.0.1.9".parse().unwrap()).unwrap().portal_group_name, "pg_vlan10_fabric");
        assert!(p.discovery_portal_for("10.9.9.9".parse().unwrap()).is_some(), "a single portal serves any address");
    }

    #[test]
    fn huge_numeric_values_are_refused_naming_the_key() {
        let huge = "9223372036854775807";
        for key in [
            "state_time_sec",
            "state_expiry_sec",
            "max_connections",
            "max_connections_per_source",
            "login_timeout_sec",
            "idle_timeout_sec",
            "upstream_connect_timeout_ms",
            "upstream_response_timeout_ms",
            "node_query_rate",
            "node_query_concurrency",
            "redirect_verify_ms",
            "failover_wait_sec",
            "failover_rescan_sec",
            "drain_timeout_sec",
            "max_recv_data_segment_length",
        ] {
            let text = GOOD
                .replace("[[portal.discovery_portals]]", &format!("{key} = {huge}\n\n[[portal.discovery_portals]]"));
            let e = parse(&text).unwrap_err();
            assert!(e.contains(key), "{key}: {e}");
            let text =
                GOOD.replace("[[portal.discovery_portals]]", &format!("{key} = -1\n\n[[portal.discovery_portals]]"));
            assert!(parse(&text).unwrap_err().contains(key), "{key} = -1");
        }
        let e = parse(&GOOD.replace("portal_port = 3260", "portal_port = 70000")).unwrap_err();
        assert!(e.contains("portal_port"), "{e}");
        // The upper bounds leave room for every Instant/Duration sum the
        // daemon forms (deadlines are computed with checked arithmetic too).
        let p = parse(&GOOD.replace(
            "state_time_sec = 5",
            "state_time_sec = 3600\nredirect_verify_ms = 3600000\nlogin_timeout_sec = 300\ndrain_timeout_sec = 3600",
        ))
        .unwrap()
        .portal
        .unwrap();
        assert!(std::time::Instant::now()
            .checked_add(p.drain_timeout() + p.login_timeout() + p.node_query_bound())
            .is_some());
    }

    #[test]
    fn check_refuses_duplicate_listen_port_0_unserved_listen_and_names_missing_keys() {
        let cases = [
            (GOOD.replace("\"10.0.2.9:3260\"", "\"10.0.1.9:3260\""), "portal.listen[1]", "already listed"),
            (GOOD.replace("\"10.0.2.9:3260\"", "\"10.0.2.9:0\""), "portal.listen[1]", "port 0"),
            (
                format!("{GOOD}{SECOND}").replace("\"10.0.2.9:3260\"", "\"10.0.3.9:3260\""),
                "portal.listen[1]",
                "no [[portal.discovery_portals]]",
            ),
            (GOOD.replace("address = \"10.0.1.9\"\n", ""), "portal.discovery_portals[0].address", "required"),
            (
                GOOD.replace("portal_group_name = \"pg_vlan10_fabric\"\n", ""),
                "portal.discovery_portals[0].portal_group_name",
                "required",
            ),
            (GOOD.replace("listen = [\"10.0.1.9:3260\", \"10.0.2.9:3260\"]\n", ""), "portal.listen", "required"),
            (
                format!("{GOOD}{SECOND}").replace("\"10.0.2.1\", \"10.0.2.2\"", "\"10.0.2.1\", \"10.0.2.1\""),
                "portal.discovery_portals[1].portal_addresses.iscsi-target-node1[1]",
                "twice",
            ),
        ];
        for (text, key, what) in cases {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(key) && e.contains(what), "want {key} / {what}: {e}");
        }
        let text = format!("{GOOD}{SECOND}")
            .replace("[[portal.discovery_portals]]\naddress = \"10.0.2.9\"\n", "[[portal.discovery_portals]]\n");
        let e = parse(&text).unwrap_err();
        assert!(e.contains("portal.discovery_portals[1].address"), "{e}");
        assert!(parse(&format!("{GOOD}{SECOND}")).is_ok());
    }

    #[test]
    fn a_node_portal_that_is_the_portal_itself_is_refused() {
        let e = parse(&GOOD.replace("\"10.0.1.1\", \"10.0.1.2\"", "\"10.0.1.1\", \"10.0.1.9\"")).unwrap_err();
        assert!(e.contains("portal.discovery_portals[0].portal_addresses.iscsi-target-node1[1]"), "{e}");
        assert!(e.contains("would ask itself"), "{e}");
        // Another port on the same address is another service.
        assert!(parse(
            &GOOD
                .replace("\"10.0.1.1\", \"10.0.1.2\"", "\"10.0.1.1\", \"10.0.1.9\"")
                .replace("portal_port = 3260", "portal_port = 3261")
        )
        .is_ok());
        // A wildcard listen address: the daemon's own check knows which
        // addresses are local.
        let p =
            parse(&GOOD.replace("\"10.0.1.9:3260\", \"10.0.2.9:3260\"", "\"0.0.0.0:3260\"")).unwrap().portal.unwrap();
        assert!(p.check_not_self(|ip| ip.to_string() == "10.0.1.3").is_err());
        assert!(p.check_not_self(|_| false).is_ok());
        // -l moves the listen port onto the nodes' port: refused too.
        let p = parse(
            &GOOD
                .replace("\"10.0.1.1\", \"10.0.1.2\"", "\"10.0.1.1\", \"10.0.1.9\"")
                .replace("portal_port = 3260", "portal_port = 3261"),
        )
        .unwrap()
        .portal
        .unwrap();
        assert!(p.with_listen_port(3261).is_err());
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (GOOD.replace("state_time_sec = 5", "state_time_sec = 0"), "portal.state_time_sec"),
            (
                GOOD.replace("\"10.0.1.1\", \"10.0.1.2\"", ""),
                "portal.discovery_portals[0].portal_addresses.iscsi-target-node1",
            ),
            (GOOD.replace("iqn.1990-01.edu.example:old-target", "old target"), "portal.targets_removed[0]"),
            (GOOD.replace("\"10.0.1.9:3260\", ", "\"10.0.1.9\", "), "listen"),
            (GOOD.replace("portal_port = 3260", "portal_port = 3260\nportal_prot = 1"), "portal_prot"),
            (GOOD.replace("address = \"10.0.1.9\"", "address = \"not-an-ip\""), "address"),
            (
                GOOD.replace("max_recv_data_segment_length = 262144", "max_recv_data_segment_length = 100"),
                "portal.max_recv_data_segment_length",
            ),
        ];
        for (text, key) in cases {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(key), "error for {key} does not name it: {e}");
        }
    }
}
