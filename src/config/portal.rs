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
use std::net::{IpAddr, SocketAddr};
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
fn default_mrdsl() -> u32 {
    262_144
}
fn default_max_connections() -> usize {
    4096
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

/// One portal address initiators connect to, and the target nodes' portals
/// behind it (typically one VLAN).
#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryPortal {
    /// The address initiators use for discovery and login.
    pub address: IpAddr,
    /// Informational name, shown by `iscsi-portal-sendtargets -l`.
    pub portal_group_name: String,
    /// TCP port of the target nodes' portals.
    #[serde(default = "default_portal_port")]
    pub portal_port: u16,
    /// Node name -> that node's portal IP addresses on this network.
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
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PortalConfig {
    /// Addresses the daemon binds.
    pub listen: Vec<SocketAddr>,
    /// Seconds a discovered target/portal list is trusted.
    #[serde(default = "default_state_time")]
    pub state_time_sec: u64,
    /// Rotation state per (initiator, target), kept across restarts.
    #[serde(default = "default_state_directory")]
    pub state_directory: PathBuf,
    /// Our MaxRecvDataSegmentLength.
    #[serde(default = "default_mrdsl")]
    pub max_recv_data_segment_length: u32,
    /// Targets answered with "target removed" and left out of discovery.
    #[serde(default)]
    pub targets_removed: Vec<String>,
    pub discovery_portals: Vec<DiscoveryPortal>,
    /// Connections served at once; more are closed at accept.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a client has to complete its login.
    #[serde(default = "default_login_timeout")]
    pub login_timeout_sec: u64,
    /// Seconds a discovery session may sit idle.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_sec: u64,
    /// Milliseconds to connect to a target node's portal.
    #[serde(default = "default_connect_timeout")]
    pub upstream_connect_timeout_ms: u64,
    /// Milliseconds to wait for each response from a target node.
    #[serde(default = "default_response_timeout")]
    pub upstream_response_timeout_ms: u64,
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
}

impl PortalConfig {
    pub fn state_time(&self) -> Duration {
        Duration::from_secs(self.state_time_sec)
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

    pub(crate) fn validate(&self) -> Result<(), InvalidValue> {
        let bad = |k: &str, p: String| Err(InvalidValue::new(format!("portal.{k}"), p));
        if self.listen.is_empty() {
            return bad("listen", "needs at least one address:port".into());
        }
        if !(1..=3600).contains(&self.state_time_sec) {
            return bad(
                "state_time_sec",
                format!("must be 1-3600 seconds (the seed recommends under 20), got {}", self.state_time_sec),
            );
        }
        if !self.state_directory.is_absolute() {
            return bad("state_directory", format!("must be an absolute path, got {:?}", self.state_directory));
        }
        if !(512..=16_777_215).contains(&self.max_recv_data_segment_length) {
            return bad(
                "max_recv_data_segment_length",
                format!("must be 512-16777215 (RFC 7143), got {}", self.max_recv_data_segment_length),
            );
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
            return bad("discovery_portals", "needs at least one [[portal.discovery_portals]] entry".into());
        }
        for (i, d) in self.discovery_portals.iter().enumerate() {
            let key = |k: &str| format!("discovery_portals[{i}].{k}");
            if self.discovery_portals[..i].iter().any(|o| o.address == d.address) {
                return bad(&key("address"), format!("{} is listed twice", d.address));
            }
            if d.portal_port == 0 {
                return bad(&key("portal_port"), "must not be 0".into());
            }
            if d.portal_addresses.is_empty() {
                return bad(&key("portal_addresses"), "needs at least one node with portal addresses".into());
            }
            for (node, ips) in &d.portal_addresses {
                if node.is_empty() || node.len() > 255 || node.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return bad(
                        &key("portal_addresses"),
                        format!("node name {node:?} must be 1-255 printable characters without spaces"),
                    );
                }
                if ips.is_empty() {
                    return bad(
                        &format!("discovery_portals[{i}].portal_addresses.{node}"),
                        "needs at least one IP address".into(),
                    );
                }
            }
        }
        let positive = [
            ("max_connections", self.max_connections as u64),
            ("login_timeout_sec", self.login_timeout_sec),
            ("idle_timeout_sec", self.idle_timeout_sec),
            ("upstream_connect_timeout_ms", self.upstream_connect_timeout_ms),
            ("upstream_response_timeout_ms", self.upstream_response_timeout_ms),
            ("failover_rescan_sec", self.failover_rescan_sec),
        ];
        for (k, v) in positive {
            if v == 0 {
                return bad(k, "must be at least 1".into());
            }
        }
        if !self.pid_file.is_absolute() {
            return bad("pid_file", format!("must be an absolute path, got {:?}", self.pid_file));
        }
        Ok(())
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
