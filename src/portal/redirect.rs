//! Where a normal-session login for target T goes: the decision shared by
//! the daemon and `iscsi-portal-query`.
//!
//! 1. T on `targets_removed`: refuse as removed.
//! 2. Fresh state for (initiator, T): next portal in rotation.
//! 3. Otherwise ask every node now; if some serve T, remember their
//!    portals for state_time_sec and take the next one.
//! 4. Found nowhere (a volume group failing over): remember nothing, and
//!    (daemon only) rescan every failover_rescan_sec until a node serves T
//!    or failover_wait_sec have passed; then "service unavailable".

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::nodes::{portals_for, query_nodes, NodeQuery};
use super::rotation::PortalState;
use super::state_store::{StateError, StateStore};
use super::upstream::UpstreamTimeouts;
use crate::config::{DiscoveryPortal, PortalConfig};
use crate::iscsi::target_address::TargetAddress;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedirectDecision {
    /// Send the initiator there (status 0x0101).
    Redirect(TargetAddress),
    /// On targets_removed (status 0x0204).
    Removed,
    /// Found on no node (after the failover wait, if any) (status 0x0301).
    NotFound { waited: Duration },
}

pub struct RedirectRequest<'a> {
    pub config: &'a PortalConfig,
    pub portal: &'a DiscoveryPortal,
    pub store: &'a StateStore,
    pub initiator: &'a str,
    pub target: &'a str,
    pub log_pdus: bool,
    /// Hold and rescan when the target is found nowhere (the daemon does;
    /// the query tool answers at once).
    pub wait_for_failover: bool,
    /// Set when the daemon is shutting down: stop waiting.
    pub stop: &'a AtomicBool,
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl RedirectRequest<'_> {
    fn scan(&self) -> Vec<TargetAddress> {
        let q = NodeQuery {
            portal: self.portal,
            initiator: self.initiator,
            timeouts: UpstreamTimeouts {
                connect: self.config.upstream_connect_timeout(),
                response: self.config.upstream_response_timeout(),
            },
            log_pdus: self.log_pdus,
            cache: None,
        };
        portals_for(&query_nodes(&q), self.target)
    }

    /// Longest a scan can take, to bound how long others wait for the lock.
    fn lock_wait(&self) -> Duration {
        self.config.upstream_connect_timeout() + self.config.upstream_response_timeout() * 6 + Duration::from_secs(1)
    }

    /// One attempt: the next portal from fresh state or a new scan.
    fn attempt(&self) -> Result<Option<TargetAddress>, StateError> {
        let lock = self.store.lock(self.initiator, self.target, self.lock_wait())?;
        let mut state = lock.load().unwrap_or_else(|| PortalState::new(self.initiator, self.target));
        if !state.is_fresh(now_unix(), self.config.state_time_sec) {
            let portals = self.scan();
            if portals.is_empty() {
                // Do not cache "nowhere": the next login must scan again.
                if !state.portals.is_empty() {
                    state.invalidate();
                    lock.save(&state)?;
                }
                return Ok(None);
            }
            state.refresh(portals, now_unix());
        }
        let next = state.next_portal();
        lock.save(&state)?;
        Ok(next)
    }

    pub fn decide(&self) -> Result<RedirectDecision, StateError> {
        if self.config.is_removed(self.target) {
            return Ok(RedirectDecision::Removed);
        }
        let started = Instant::now();
        if let Some(a) = self.attempt()? {
            return Ok(RedirectDecision::Redirect(a));
        }
        if !self.wait_for_failover {
            return Ok(RedirectDecision::NotFound { waited: Duration::ZERO });
        }
        let deadline = started + self.config.failover_wait();
        tracing::info!(target: "access_log", "target {} found on no node, holding the login up to {}s while rescanning", self.target, self.config.failover_wait_sec);
        while Instant::now() < deadline && !self.stop.load(Ordering::Relaxed) {
            let pause = self.config.failover_rescan().min(deadline.saturating_duration_since(Instant::now()));
            let wake = Instant::now() + pause;
            while Instant::now() < wake && !self.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50).min(wake.saturating_duration_since(Instant::now())));
            }
            if let Some(a) = self.attempt()? {
                return Ok(RedirectDecision::Redirect(a));
            }
        }
        Ok(RedirectDecision::NotFound { waited: started.elapsed() })
    }
}
