//! Where a normal-session login for target T, reaching discovery portal P
//! (a VLAN, a fabric), goes: the decision shared by the daemon and
//! `iscsi-portal-query`. Only P's node portals are ever handed out.
//!
//! 1. T on `targets_removed`: refuse as removed.
//! 2. State for (P, initiator, T) younger than state_time_sec and than the
//!    last invalidation (reload, SIGUSR1): the next portal in rotation,
//!    but only after its node confirmed T for the initiator within
//!    `redirect_verify_ms` (a cached answer) or now (SendTargets=T to that
//!    one node). A node that no longer lists T means the list is stale:
//!    go on with 3.
//! 3. Otherwise ask every node of P; if some serve T, remember their
//!    portals for state_time_sec and take the next one.
//! 4. Found nowhere (a volume group failing over), or no node answered:
//!    remember nothing, and (daemon only) rescan every
//!    failover_rescan_sec until a node serves T or failover_wait_sec have
//!    passed; then "service unavailable".

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::access_log::{access, Esc};
use super::node_budget::Priority;
use super::nodes::{portals_for, silent_nodes, NodeQuery, Nodes, BUDGET_BUSY};
use super::rotation::PortalState;
use super::state_store::{StateError, StateStore};
use crate::config::{DiscoveryPortal, PortalConfig};
use crate::iscsi::target_address::TargetAddress;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedirectDecision {
    /// Send the initiator there (status 0x0101).
    Redirect(TargetAddress),
    /// On targets_removed (status 0x0204).
    Removed,
    /// Found on no node (after the failover wait, if any) (status 0x0301).
    /// `no_answer` says that at the last scan no node answered at all.
    NotFound { waited: Duration, no_answer: Option<String> },
}

pub struct RedirectRequest<'a> {
    pub config: &'a PortalConfig,
    pub portal: &'a DiscoveryPortal,
    pub store: &'a StateStore,
    pub nodes: &'a Nodes,
    pub initiator: &'a str,
    pub target: &'a str,
    pub log_pdus: bool,
    /// Hold and rescan when the target is found nowhere (the daemon does;
    /// the query tool answers at once).
    pub wait_for_failover: bool,
    /// Set when the daemon is shutting down: stop waiting.
    pub stop: &'a AtomicBool,
    /// Unix second of the last invalidation (reload, SIGUSR1): portal
    /// lists refreshed then or before are not trusted.
    pub invalidated_at: u64,
    /// The initiator's IP, for access-log lines (None: the query tool).
    pub client: Option<IpAddr>,
}

/// Why one attempt found no portal.
enum Nowhere {
    NotListed,
    NoAnswer(String),
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl RedirectRequest<'_> {
    fn note(&self, msg: std::fmt::Arguments<'_>) {
        match self.client {
            Some(ip) => access(ip, msg),
            None => tracing::info!("{msg}"),
        }
    }

    fn node_query(&self, query: &'static str, priority: Priority) -> NodeQuery<'_> {
        NodeQuery {
            config: self.config,
            portal: self.portal,
            initiator: self.initiator,
            query,
            max_age: self.config.redirect_verify(),
            priority,
            hops: 0,
            log_pdus: self.log_pdus,
        }
    }

    /// Longest one attempt can take (a confirmation and a scan), to bound
    /// how long other logins of the same entry wait for its lock.
    fn lock_wait(&self) -> Duration {
        self.config.node_query_bound() * 2 + Duration::from_secs(1)
    }

    /// Whether the cached portal `p` may be handed out: its node listed T
    /// for the initiator recently enough, or does now. When the node's
    /// query budget has no room right now (a login storm), the cached list
    /// is trusted as it is: waiting would hold every login of the storm.
    fn confirmed(&self, p: &TargetAddress) -> bool {
        let Some(addr) = p.ip().map(|ip| SocketAddr::new(ip, p.port)) else { return false };
        let Some(node) = self.portal.node_of(addr) else { return false };
        match self.nodes.confirm(&self.node_query("All", Priority::IfFree), node, addr, self.target) {
            Ok(true) => true,
            Err(e) if e.starts_with(BUDGET_BUSY) => {
                tracing::debug!("node {node} budget busy: redirecting to {addr} on the cached list");
                true
            }
            Ok(false) => {
                self.note(format_args!(
                    "node {node} portal {addr} no longer lists {} for this initiator: rescanning",
                    Esc(self.target)
                ));
                false
            }
            Err(e) => {
                self.note(format_args!(
                    "node {node} portal {addr} could not confirm {} ({}): rescanning",
                    Esc(self.target),
                    Esc(&e)
                ));
                false
            }
        }
    }

    /// One attempt: the next portal from confirmed fresh state or a new
    /// scan.
    fn attempt(&self, priority: Priority) -> Result<Result<TargetAddress, Nowhere>, StateError> {
        let lock = self.store.lock(self.portal.address, self.initiator, self.target, self.lock_wait())?;
        let mut state = lock.load().unwrap_or_else(|| PortalState::new(self.initiator, self.target));
        if state.discovery_portal.is_empty() {
            state.discovery_portal = self.portal.address.to_string();
        }
        // Only this portal group's node portals, as configured now (a
        // reload may have removed a node).
        let dropped = state
            .retain_portals(|p| p.ip().is_some_and(|ip| self.portal.node_of(SocketAddr::new(ip, p.port)).is_some()));
        let now = now_unix();
        let fresh =
            !dropped && state.is_fresh(now, self.config.state_time_sec) && state.last_refresh > self.invalidated_at;
        if fresh {
            if let Some(i) = state.next_index() {
                if self.confirmed(&state.portals[i]) {
                    let next = state.hand_out(i);
                    lock.save(&state)?;
                    return Ok(next.ok_or(Nowhere::NotListed));
                }
            }
        }
        let answers = self.nodes.query(&self.node_query("All", priority));
        let portals = portals_for(&answers, self.target);
        let silent = silent_nodes(&answers);
        if portals.is_empty() {
            // Do not cache "nowhere": the next login must scan again.
            if !state.portals.is_empty() {
                state.invalidate();
                lock.save(&state)?;
            }
            let all_silent = answers.iter().all(|a| a.targets.is_err());
            return Ok(Err(match silent {
                Some(s) if all_silent => Nowhere::NoAnswer(s),
                _ => Nowhere::NotListed,
            }));
        }
        if let Some(s) = silent {
            self.note(format_args!(
                "partial scan for {}: no answer from {s}; choosing among the {} portals that list it",
                Esc(self.target),
                portals.len()
            ));
        }
        state.refresh(portals, now);
        let next = state.next_portal();
        lock.save(&state)?;
        Ok(next.ok_or(Nowhere::NotListed))
    }

    pub fn decide(&self) -> Result<RedirectDecision, StateError> {
        if self.config.is_removed(self.target) {
            return Ok(RedirectDecision::Removed);
        }
        let started = Instant::now();
        let mut last = match self.attempt(Priority::Interactive)? {
            Ok(a) => return Ok(RedirectDecision::Redirect(a)),
            Err(why) => why,
        };
        if !self.wait_for_failover || self.config.failover_wait_sec == 0 {
            return Ok(not_found(started, last));
        }
        let deadline = started.checked_add(self.config.failover_wait()).unwrap_or(started);
        match &last {
            Nowhere::NoAnswer(s) => self.note(format_args!(
                "target {}: no node answered ({s}), holding the login up to {}s while rescanning",
                Esc(self.target),
                self.config.failover_wait_sec
            )),
            Nowhere::NotListed => self.note(format_args!(
                "target {} found on no node, holding the login up to {}s while rescanning",
                Esc(self.target),
                self.config.failover_wait_sec
            )),
        }
        while Instant::now() < deadline && !self.stop.load(Ordering::Relaxed) {
            let pause = self.config.failover_rescan().min(deadline.saturating_duration_since(Instant::now()));
            let wake = Instant::now() + pause;
            while Instant::now() < wake && !self.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50).min(wake.saturating_duration_since(Instant::now())));
            }
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            match self.attempt(Priority::Background)? {
                Ok(a) => return Ok(RedirectDecision::Redirect(a)),
                Err(why) => last = why,
            }
        }
        Ok(not_found(started, last))
    }
}

fn not_found(started: Instant, why: Nowhere) -> RedirectDecision {
    RedirectDecision::NotFound {
        waited: started.elapsed(),
        no_answer: match why {
            Nowhere::NoAnswer(s) => Some(s),
            Nowhere::NotListed => None,
        },
    }
}
