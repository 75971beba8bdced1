//! Asking every target node behind a discovery portal what an initiator
//! may see, concurrently, with each node bounded by the upstream timeouts:
//! a node that is down costs at most those and does not fail the answer.
//! Answers are cached per (node portal, initiator) for state_time_sec.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::upstream::{send_targets, DiscoveredTarget, UpstreamTimeouts};
use crate::config::DiscoveryPortal;
use crate::iscsi::target_address::TargetAddress;

/// One node portal's answer.
#[derive(Clone, Debug)]
pub struct NodeAnswer {
    pub node: String,
    pub addr: SocketAddr,
    pub targets: Result<Vec<DiscoveredTarget>, String>,
}

/// Entries kept at most (one per node portal and initiator).
const CACHE_LIMIT: usize = 65_536;

/// (node portal, initiator name).
type CacheKey = (SocketAddr, String);

struct CacheEntry {
    at: Instant,
    targets: Vec<DiscoveredTarget>,
}

#[derive(Default)]
pub struct NodeCache {
    entries: Mutex<HashMap<CacheKey, CacheEntry>>,
}

impl NodeCache {
    fn get(&self, addr: SocketAddr, initiator: &str, ttl: Duration) -> Option<Vec<DiscoveredTarget>> {
        let map = self.entries.lock().ok()?;
        map.get(&(addr, initiator.to_string())).filter(|e| e.at.elapsed() < ttl).map(|e| e.targets.clone())
    }

    fn put(&self, addr: SocketAddr, initiator: &str, ttl: Duration, targets: Vec<DiscoveredTarget>) {
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= CACHE_LIMIT {
                map.retain(|_, e| e.at.elapsed() < ttl);
                if map.len() >= CACHE_LIMIT {
                    map.clear();
                }
            }
            map.insert((addr, initiator.to_string()), CacheEntry { at: Instant::now(), targets });
        }
    }
}

/// How to query.
pub struct NodeQuery<'a> {
    pub portal: &'a DiscoveryPortal,
    pub initiator: &'a str,
    pub timeouts: UpstreamTimeouts,
    pub log_pdus: bool,
    /// Use and fill this cache, trusting entries for the duration.
    pub cache: Option<(&'a NodeCache, Duration)>,
}

/// Asks every node portal of `q.portal`, all at once. Cached answers are
/// taken as they are: a fully cached query starts no thread.
pub fn query_nodes(q: &NodeQuery<'_>) -> Vec<NodeAnswer> {
    let portals = q.portal.node_portals();
    std::thread::scope(|scope| {
        let pending: Vec<_> = portals
            .iter()
            .map(|(node, addr)| match q.cache.and_then(|(cache, ttl)| cache.get(*addr, q.initiator, ttl)) {
                Some(targets) => Ok(targets),
                None => Err(scope.spawn(move || ask_node(q, node, *addr))),
            })
            .collect();
        pending
            .into_iter()
            .zip(&portals)
            .map(|(p, (node, addr))| {
                let targets = p.or_else(|h| h.join().unwrap_or_else(|_| Err("query thread failed".into())));
                NodeAnswer { node: node.clone(), addr: *addr, targets }
            })
            .collect()
    })
}

/// One node portal's SendTargets=All as the initiator, cached on success.
fn ask_node(q: &NodeQuery<'_>, node: &str, addr: SocketAddr) -> Result<Vec<DiscoveredTarget>, String> {
    match send_targets(addr, q.initiator, "All", q.timeouts, q.log_pdus) {
        Ok(targets) => {
            if let Some((cache, ttl)) = q.cache {
                cache.put(addr, q.initiator, ttl, targets.clone());
            }
            Ok(targets)
        }
        Err(e) => {
            tracing::warn!("node {node} portal {addr}: {e}");
            Err(e.to_string())
        }
    }
}

/// Unique target names across all answers, in first-seen order.
pub fn merged_target_names(answers: &[NodeAnswer]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for a in answers {
        for t in a.targets.iter().flatten() {
            if seen.insert(t.name.to_ascii_lowercase()) {
                out.push(t.name.clone());
            }
        }
    }
    out
}

/// The node portals that serve `target`, as redirect addresses: the node
/// portal's IP and port, with the portal group tag the node reported for
/// that address (or for its first address, or 1).
pub fn portals_for(answers: &[NodeAnswer], target: &str) -> Vec<TargetAddress> {
    let mut out = Vec::new();
    for a in answers {
        let Ok(targets) = &a.targets else { continue };
        if let Some(t) = targets.iter().find(|t| t.name.eq_ignore_ascii_case(target)) {
            let tpgt =
                t.addresses.iter().find(|x| x.ip() == Some(a.addr.ip())).or(t.addresses.first()).map_or(1, |x| x.tpgt);
            let addr = TargetAddress::new(a.addr.ip(), a.addr.port(), tpgt);
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(node: &str, addr: &str, targets: &[(&str, &[&str])]) -> NodeAnswer {
        NodeAnswer {
            node: node.into(),
            addr: addr.parse().unwrap(),
            targets: Ok(targets
                .iter()
                .map(|(n, a)| DiscoveredTarget {
                    name: n.to_string(),
                    addresses: a.iter().filter_map(|x| TargetAddress::parse(x)).collect(),
                })
                .collect()),
        }
    }

    #[test]
    fn merge_and_portals() {
        let answers = vec![
            answer(
                "n1",
                "10.0.1.1:3260",
                &[("iqn.a", &["10.0.1.1:3260,1", "10.0.2.1:3260,1"]), ("iqn.b", &["10.0.1.1:3260,3"])],
            ),
            NodeAnswer { node: "n2".into(), addr: "10.0.1.3:3260".parse().unwrap(), targets: Err("down".into()) },
            answer("n3", "10.0.1.5:3260", &[("IQN.A", &["10.0.2.5:3260,2"])]),
        ];
        assert_eq!(merged_target_names(&answers), vec!["iqn.a", "iqn.b"]);
        let p = portals_for(&answers, "iqn.a");
        assert_eq!(p.iter().map(|a| a.to_string()).collect::<Vec<_>>(), vec!["10.0.1.1:3260,1", "10.0.1.5:3260,2"]);
        assert_eq!(portals_for(&answers, "iqn.b")[0].tpgt, 3);
        assert!(portals_for(&answers, "iqn.none").is_empty());
    }
}
