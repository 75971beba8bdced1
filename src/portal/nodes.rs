//! Asking the target nodes behind a discovery portal what an initiator may
//! see, as that initiator.
//!
//! - Every node portal is asked at once; each costs its caller at most
//!   `upstream_connect_timeout_ms + upstream_response_timeout_ms` in total,
//!   whatever the node does (waiting for the node's budget included).
//! - Answers are cached per (node portal, initiator, query); a caller says
//!   how old an answer it accepts.
//! - Identical queries in flight are asked once (single flight): the
//!   first caller asks, the others wait for its answer.
//! - Each node has a budget of sessions per second and at once
//!   ([`super::node_budget`]), shared by every caller.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::access_log::Esc;
use super::limits::{NODE_CACHE_BYTES, NODE_CACHE_ENTRIES, STALE_ANSWER_MAX};
use super::node_budget::{Budgets, Priority};
use super::throttle::{Throttle, Verdict};
use super::upstream::{send_targets, DiscoveredTarget, UpstreamError, UpstreamLimits};
use crate::config::{DiscoveryPortal, PortalConfig};
use crate::iscsi::target_address::TargetAddress;

/// A node's list of targets, shared between the cache and its readers.
pub type Targets = Arc<Vec<DiscoveredTarget>>;

/// One node portal's answer.
#[derive(Clone, Debug)]
pub struct NodeAnswer {
    pub node: String,
    pub addr: SocketAddr,
    pub targets: Result<Targets, String>,
}

/// (node portal, hash of (initiator, query)): looked up without
/// allocating on every login; the entry holds the [`Who`] it is for, and
/// a hash collision is a miss, never another initiator's answer.
type Key = (SocketAddr, u64);

/// Whose answer an entry is: the initiator, and the query ("All" or a
/// target name) lower-cased.
struct Who {
    initiator: Box<str>,
    query: Box<str>,
}

impl Who {
    fn new(initiator: &str, query: &str) -> Who {
        Who { initiator: initiator.into(), query: query.to_ascii_lowercase().into() }
    }

    fn is(&self, initiator: &str, query: &str) -> bool {
        &*self.initiator == initiator && self.query.eq_ignore_ascii_case(query)
    }
}

struct CacheEntry {
    at: Instant,
    targets: Targets,
    bytes: usize,
    who: Who,
}

/// A query being asked right now; later callers wait for its answer.
struct Flight {
    who: Who,
    result: Mutex<Option<Result<Targets, String>>>,
    done: Condvar,
}

/// What to ask, and how fresh an answer must be.
pub struct NodeQuery<'a> {
    pub config: &'a PortalConfig,
    pub portal: &'a DiscoveryPortal,
    pub initiator: &'a str,
    /// "All", or one target name.
    pub query: &'a str,
    /// Cached answers younger than this are used (ZERO: always ask).
    pub max_age: Duration,
    pub priority: Priority,
    /// Portals the request this serves already went through.
    pub hops: u32,
    pub log_pdus: bool,
}

/// The portal's view of its nodes: cache, flights, budgets.
pub struct Nodes {
    cache: Mutex<HashMap<Key, CacheEntry>>,
    cache_bytes: Mutex<usize>,
    flights: Mutex<HashMap<Key, Arc<Flight>>>,
    budgets: Budgets,
    failures: Mutex<HashMap<SocketAddr, Throttle>>,
    hasher: RandomState,
    /// Single flight and node budgets on (off only to measure without
    /// them: `SANTOOLS_PORTAL_UNCOALESCED=1`, docs/performance.md).
    coalesce: bool,
}

impl Default for Nodes {
    fn default() -> Self {
        Nodes::new(true)
    }
}

fn size_of(targets: &[DiscoveredTarget]) -> usize {
    targets.iter().map(|t| 64 + t.name.len() + t.addresses.iter().map(|a| 40 + a.host.len()).sum::<usize>()).sum()
}

/// The error text of a query the node's budget did not allow now (not a
/// failure of the node).
pub const BUDGET_BUSY: &str = "node query budget busy";

/// Failures of one node portal are logged once per this window.
const FAILURE_LOG_WINDOW: Duration = Duration::from_secs(10);

impl Nodes {
    pub fn new(coalesce: bool) -> Nodes {
        Nodes {
            cache: Mutex::default(),
            cache_bytes: Mutex::new(0),
            flights: Mutex::default(),
            budgets: Budgets::default(),
            failures: Mutex::default(),
            hasher: RandomState::new(),
            coalesce,
        }
    }

    fn key(&self, addr: SocketAddr, initiator: &str, query: &str) -> Key {
        let mut h = self.hasher.build_hasher();
        h.write(initiator.as_bytes());
        h.write_u8(0xff);
        for b in query.bytes() {
            h.write_u8(b.to_ascii_lowercase());
        }
        (addr, h.finish())
    }

    /// Forgets every cached answer (reload, SIGUSR1): the next caller asks.
    pub fn clear(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
        *self.cache_bytes.lock().unwrap_or_else(|p| p.into_inner()) = 0;
    }

    fn cached(&self, addr: SocketAddr, initiator: &str, query: &str, max_age: Duration) -> Option<(Targets, Duration)> {
        let k = self.key(addr, initiator, query);
        let map = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.get(&k).filter(|e| e.who.is(initiator, query))?;
        let age = e.at.elapsed();
        (age < max_age).then(|| (Arc::clone(&e.targets), age))
    }

    fn store(&self, k: Key, who: Who, targets: &Targets) {
        let bytes = size_of(targets);
        let mut map = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = self.cache_bytes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = map.remove(&k) {
            *total -= old.bytes.min(*total);
        }
        if map.len() >= NODE_CACHE_ENTRIES || *total + bytes > NODE_CACHE_BYTES {
            map.retain(|_, e| e.at.elapsed() < STALE_ANSWER_MAX);
            if map.len() >= NODE_CACHE_ENTRIES
                || map.values().map(|e| e.bytes).sum::<usize>() + bytes > NODE_CACHE_BYTES
            {
                // Still full: drop the older half.
                let mut ages: Vec<Instant> = map.values().map(|e| e.at).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                map.retain(|_, e| e.at > cut);
            }
            *total = map.values().map(|e| e.bytes).sum();
        }
        if bytes <= NODE_CACHE_BYTES / 4 {
            *total += bytes;
            map.insert(k, CacheEntry { at: Instant::now(), targets: Arc::clone(targets), bytes, who });
        }
    }

    /// The node portal's last answer for (initiator, query), however old
    /// (up to [`STALE_ANSWER_MAX`]), with its age.
    pub fn last_answer(&self, addr: SocketAddr, initiator: &str, query: &str) -> Option<(Targets, Duration)> {
        self.cached(addr, initiator, query, STALE_ANSWER_MAX)
    }

    fn log_failure(&self, node: &str, addr: SocketAddr, e: &str) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 4096 {
            map.clear();
        }
        let t = map.entry(addr).or_insert_with(|| Throttle::new(FAILURE_LOG_WINDOW));
        let earlier = t.summary(now);
        if t.note(now) == Verdict::Log {
            match earlier {
                Some(n) => tracing::warn!(
                    "node {node} portal {addr}: {e} ({n} more failures of this portal in the last {}s not logged)",
                    FAILURE_LOG_WINDOW.as_secs()
                ),
                None => tracing::warn!("node {node} portal {addr}: {e}"),
            }
        }
    }

    /// One node portal's answer to `q`: from the cache, from a flight in
    /// progress, or asked now (within the node's budget), by `deadline`.
    pub fn fetch(&self, q: &NodeQuery<'_>, node: &str, addr: SocketAddr, deadline: Instant) -> Result<Targets, String> {
        if let Some((t, _)) = self.cached(addr, q.initiator, q.query, q.max_age) {
            return Ok(t);
        }
        let k = self.key(addr, q.initiator, q.query);
        if !self.coalesce {
            return self.ask(q, node, addr, deadline, k);
        }
        let flight = loop {
            let (flight, leader) = {
                let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
                match flights.get(&k) {
                    Some(f) if f.who.is(q.initiator, q.query) => (Arc::clone(f), false),
                    // Another query with the same hash is in flight: ask
                    // without coalescing.
                    Some(_) => {
                        drop(flights);
                        return self.ask(q, node, addr, deadline, k);
                    }
                    None => {
                        let f = Arc::new(Flight {
                            who: Who::new(q.initiator, q.query),
                            result: Mutex::new(None),
                            done: Condvar::new(),
                        });
                        flights.insert(k, Arc::clone(&f));
                        (f, true)
                    }
                }
            };
            if leader {
                break flight;
            }
            let res = {
                let mut r = flight.result.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if let Some(res) = r.as_ref() {
                        break res.clone();
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err("no answer within the node query bound (waiting for the same query)".into());
                    }
                    r = flight.done.wait_timeout(r, left).unwrap_or_else(|p| p.into_inner()).0;
                }
            };
            match res {
                // The leader was a query that does not wait for the node's
                // budget; one that does asks itself.
                Err(e) if e.starts_with(BUDGET_BUSY) && q.priority == Priority::Interactive => continue,
                res => return res,
            }
        };
        // The leader: ask, then publish the answer and retire the flight
        // (also if asking panics).
        struct Retire<'a> {
            nodes: &'a Nodes,
            k: &'a Key,
            flight: &'a Flight,
            result: Option<Result<Targets, String>>,
        }
        impl Drop for Retire<'_> {
            fn drop(&mut self) {
                let res = self.result.take().unwrap_or_else(|| Err("query failed".into()));
                *self.flight.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(res);
                self.nodes.flights.lock().unwrap_or_else(|p| p.into_inner()).remove(self.k);
                self.flight.done.notify_all();
            }
        }
        let mut retire = Retire { nodes: self, k: &k, flight: &flight, result: None };
        let res = self.ask(q, node, addr, deadline, k);
        retire.result = Some(res.clone());
        drop(retire);
        res
    }

    fn ask(
        &self,
        q: &NodeQuery<'_>,
        node: &str,
        addr: SocketAddr,
        deadline: Instant,
        k: Key,
    ) -> Result<Targets, String> {
        let _permit = if self.coalesce {
            let budget = self.budgets.of(node, q.config.node_query_rate, q.config.node_query_concurrency);
            match budget.acquire(q.priority, deadline) {
                Ok(p) => Some(p),
                Err(e) => {
                    if q.priority == Priority::Interactive {
                        self.log_failure(node, addr, &e.to_string());
                    }
                    return Err(e.to_string());
                }
            }
        } else {
            None
        };
        let limits = UpstreamLimits {
            connect: q.config.upstream_connect_timeout(),
            deadline,
            hops: q.hops.saturating_add(1),
            log_pdus: q.log_pdus,
        };
        match send_targets(addr, q.initiator, q.query, limits) {
            Ok(answer) => {
                if answer.invalid > 0 || answer.truncated > 0 {
                    self.log_failure(
                        node,
                        addr,
                        &format!(
                            "answer for {} had {} target names that are not iSCSI names (first: {}) and {} targets over the limit; those were left out",
                            Esc(q.initiator),
                            answer.invalid,
                            answer.first_invalid.as_deref().unwrap_or("-"),
                            answer.truncated
                        ),
                    );
                }
                let targets = Arc::new(answer.targets);
                self.store(k, Who::new(q.initiator, q.query), &targets);
                Ok(targets)
            }
            Err(UpstreamError::ClosedAtLogin { .. }) => {
                // tgt refuses discovery when it has no target at all (a
                // standby node): an empty answer, not a silent node.
                tracing::debug!("node {node} portal {addr} has no targets (closed the discovery login)");
                let targets: Targets = Arc::default();
                self.store(k, Who::new(q.initiator, q.query), &targets);
                Ok(targets)
            }
            Err(e) => {
                let e = e.to_string();
                self.log_failure(node, addr, &e);
                Err(e)
            }
        }
    }

    /// Asks every node portal of `q.portal`, all at once; a fully cached
    /// query starts no thread. Returns when every node portal answered or
    /// its bound passed.
    pub fn query(&self, q: &NodeQuery<'_>) -> Vec<NodeAnswer> {
        let portals = q.portal.node_portals();
        let deadline = deadline_after(q.config.node_query_bound());
        std::thread::scope(|scope| {
            let pending: Vec<_> = portals
                .iter()
                .map(|(node, addr)| match self.cached(*addr, q.initiator, q.query, q.max_age) {
                    Some((t, _)) => Ok(t),
                    None => Err(scope.spawn(move || self.fetch(q, node, *addr, deadline))),
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

    /// Whether the node at `addr` lists `target` for `q.initiator`, on
    /// evidence at most `q.max_age` old: a cached SendTargets=All or
    /// SendTargets=<target> answer, else the node is asked for the target.
    pub fn confirm(&self, q: &NodeQuery<'_>, node: &str, addr: SocketAddr, target: &str) -> Result<bool, String> {
        let lists = |t: &Targets| t.iter().any(|x| x.name.eq_ignore_ascii_case(target));
        if let Some((t, _)) = self.cached(addr, q.initiator, "All", q.max_age) {
            if lists(&t) {
                return Ok(true);
            }
        }
        let one = NodeQuery { query: target, ..*q };
        let deadline = deadline_after(q.config.node_query_bound());
        self.fetch(&one, node, addr, deadline).map(|t| lists(&t))
    }
}

/// `now + d`, saturating far in the future instead of panicking.
pub fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// The nodes that did not answer, as a log phrase ("node2 (10.0.1.3:3260:
/// connection refused)"), or None if all answered.
pub fn silent_nodes(answers: &[NodeAnswer]) -> Option<String> {
    let failed: Vec<String> = answers
        .iter()
        .filter_map(|a| a.targets.as_ref().err().map(|e| format!("{} ({}: {})", a.node, a.addr, Esc(e))))
        .collect();
    (!failed.is_empty()).then(|| failed.join(", "))
}

/// Unique target names across all answers, in first-seen order.
pub fn merged_target_names(answers: &[NodeAnswer]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for a in answers {
        for t in a.targets.iter().flat_map(|t| t.iter()) {
            if seen.insert(t.name.to_ascii_lowercase()) {
                out.push(t.name.clone());
            }
        }
    }
    out
}

/// The node portals that serve `target`, as redirect addresses: the node
/// portal's IP and port (always one of the discovery portal's own node
/// portals: never an address a node reports for another network), with
/// the portal group tag the node reported for that address (or for its
/// first address, or 1).
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
            targets: Ok(Arc::new(
                targets
                    .iter()
                    .map(|(n, a)| DiscoveredTarget {
                        name: n.to_string(),
                        addresses: a.iter().filter_map(|x| TargetAddress::parse(x)).collect(),
                    })
                    .collect(),
            )),
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
        assert_eq!(silent_nodes(&answers).as_deref(), Some("n2 (10.0.1.3:3260: down)"));
        assert_eq!(silent_nodes(&answers[..1]), None);
    }

    #[test]
    fn the_cache_stays_within_its_byte_budget() {
        let nodes = Nodes::new(true);
        let big: Targets = Arc::new(
            (0..2000)
                .map(|i| DiscoveredTarget { name: format!("iqn.2024-01.x:{i:0>200}"), addresses: Vec::new() })
                .collect(),
        );
        for i in 0..400 {
            let (addr, init) = ("10.0.0.1:3260".parse().unwrap(), format!("iqn.i{i}"));
            nodes.store(nodes.key(addr, &init, "All"), Who::new(&init, "All"), &big);
            assert!(*nodes.cache_bytes.lock().unwrap() <= NODE_CACHE_BYTES, "after {i}");
        }
        nodes.clear();
        assert_eq!(nodes.cache.lock().unwrap().len(), 0);
    }

    #[test]
    fn answers_are_kept_per_initiator_and_query() {
        let nodes = Nodes::new(true);
        let addr: SocketAddr = "10.0.0.1:3260".parse().unwrap();
        let one: Targets = Arc::new(vec![DiscoveredTarget { name: "iqn.a".into(), addresses: Vec::new() }]);
        nodes.store(nodes.key(addr, "iqn.i1", "All"), Who::new("iqn.i1", "All"), &one);
        let hour = Duration::from_secs(3600);
        assert!(nodes.cached(addr, "iqn.i1", "all", hour).is_some(), "the query is case-insensitive");
        assert!(nodes.cached(addr, "iqn.i2", "All", hour).is_none(), "never another initiator's answer");
        assert!(nodes.cached(addr, "iqn.i1", "iqn.a", hour).is_none());
        assert!(nodes.cached("10.0.0.2:3260".parse().unwrap(), "iqn.i1", "All", hour).is_none());
        assert!(nodes.cached(addr, "iqn.i1", "All", Duration::ZERO).is_none(), "too old");
        // A colliding key (forced here) is a miss, not a wrong answer.
        nodes.store(nodes.key(addr, "iqn.i3", "All"), Who::new("iqn.i1", "All"), &one);
        assert!(nodes.cached(addr, "iqn.i3", "All", hour).is_none());
    }

    #[test]
    fn deadlines_never_overflow() {
        assert!(deadline_after(Duration::from_secs(u64::MAX)) > Instant::now());
    }
}
