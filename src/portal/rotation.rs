//! Which portal a login gets: per (discovery portal, initiator, target),
//! rotate through the target's live portals behind that discovery portal,
//! so consecutive logins (one per initiator IP with multipath) land on
//! different portals. Pure state and policy; stored by `state_store`.

use serde::{Deserialize, Serialize};

use crate::iscsi::target_address::TargetAddress;

/// The seed's per-(initiator, target) state, per discovery portal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalState {
    /// The discovery portal address (portal group) this rotation is for.
    #[serde(default)]
    pub discovery_portal: String,
    pub initiator: String,
    pub target: String,
    /// Unix seconds of the last node scan that found the target (0: never).
    pub last_refresh: u64,
    /// The target's portals as of that scan.
    pub portals: Vec<TargetAddress>,
    /// Index into `portals` handed out last.
    pub last_portal_index: Option<usize>,
    /// Logins redirected for this pair, ever.
    #[serde(default)]
    pub redirects: u64,
}

impl PortalState {
    pub fn new(initiator: &str, target: &str) -> Self {
        PortalState {
            discovery_portal: String::new(),
            initiator: initiator.to_string(),
            target: target.to_string(),
            last_refresh: 0,
            portals: Vec::new(),
            last_portal_index: None,
            redirects: 0,
        }
    }

    /// Whether the portal list may be used without asking the nodes again.
    pub fn is_fresh(&self, now: u64, state_time_sec: u64) -> bool {
        !self.portals.is_empty() && now >= self.last_refresh && now - self.last_refresh < state_time_sec
    }

    /// Replaces the portal list after a scan; the rotation continues.
    pub fn refresh(&mut self, portals: Vec<TargetAddress>, now: u64) {
        self.portals = portals;
        self.last_refresh = now;
    }

    /// Forgets the portal list (the target was found nowhere), keeping the
    /// rotation position, so the next login scans again.
    pub fn invalidate(&mut self) {
        self.portals.clear();
        self.last_refresh = 0;
    }

    /// Index of the portal the next login gets, or None without portals.
    pub fn next_index(&self) -> Option<usize> {
        if self.portals.is_empty() {
            return None;
        }
        Some(self.last_portal_index.map_or(0, |last| (last + 1) % self.portals.len()))
    }

    /// Records that portal `i` was handed out.
    pub fn hand_out(&mut self, i: usize) -> Option<TargetAddress> {
        let p = self.portals.get(i)?.clone();
        self.last_portal_index = Some(i);
        self.redirects += 1;
        Some(p)
    }

    /// The next portal in rotation, or None without portals.
    pub fn next_portal(&mut self) -> Option<TargetAddress> {
        self.next_index().and_then(|i| self.hand_out(i))
    }

    /// Keeps only portals `allowed` accepts (those of the discovery portal
    /// as configured now); true if any were dropped.
    pub fn retain_portals(&mut self, allowed: impl Fn(&TargetAddress) -> bool) -> bool {
        let before = self.portals.len();
        self.portals.retain(|p| allowed(p));
        self.portals.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<TargetAddress> {
        list.iter().map(|a| TargetAddress::parse(a).unwrap()).collect()
    }

    #[test]
    fn rotation_table() {
        // (portals, last index before, expected choice)
        let cases: &[(&[&str], Option<usize>, Option<&str>)] = &[
            (&[], None, None),
            (&["10.0.1.1:3260,1"], None, Some("10.0.1.1:3260,1")),
            (&["10.0.1.1:3260,1"], Some(0), Some("10.0.1.1:3260,1")),
            (&["10.0.1.1:3260,1", "10.0.1.3:3260,1"], None, Some("10.0.1.1:3260,1")),
            (&["10.0.1.1:3260,1", "10.0.1.3:3260,1"], Some(0), Some("10.0.1.3:3260,1")),
            (&["10.0.1.1:3260,1", "10.0.1.3:3260,1"], Some(1), Some("10.0.1.1:3260,1")),
            // The list shrank (a node went down): wrap, do not index past the end.
            (&["10.0.1.3:3260,1"], Some(3), Some("10.0.1.3:3260,1")),
        ];
        for (portals, last, want) in cases {
            let mut s = PortalState::new("iqn.i", "iqn.t");
            s.portals = addrs(portals);
            s.last_portal_index = *last;
            assert_eq!(s.next_portal().map(|a| a.to_string()).as_deref(), *want, "{portals:?} after {last:?}");
        }
    }

    #[test]
    fn consecutive_logins_alternate_and_freshness() {
        let mut s = PortalState::new("iqn.i", "iqn.t");
        assert!(!s.is_fresh(100, 5));
        s.refresh(addrs(&["10.0.1.1:3260,1", "10.0.1.3:3260,1"]), 100);
        assert!(s.is_fresh(104, 5) && !s.is_fresh(105, 5) && !s.is_fresh(99, 5));
        let picks: Vec<String> = (0..4).map(|_| s.next_portal().unwrap().host).collect();
        assert_eq!(picks, ["10.0.1.1", "10.0.1.3", "10.0.1.1", "10.0.1.3"]);
        s.invalidate();
        assert!(!s.is_fresh(100, 5) && s.next_portal().is_none());
        assert_eq!(s.last_portal_index, Some(1), "rotation position survives");
    }

    #[test]
    fn portals_outside_the_group_are_dropped() {
        let mut s = PortalState::new("iqn.i", "iqn.t");
        s.refresh(addrs(&["10.0.1.1:3260,1", "10.0.2.1:3260,1", "10.0.1.3:3260,1"]), 100);
        assert!(s.retain_portals(|p| p.host.starts_with("10.0.1.")));
        assert_eq!(s.portals, addrs(&["10.0.1.1:3260,1", "10.0.1.3:3260,1"]));
        assert!(!s.retain_portals(|_| true));
        assert_eq!(s.next_index(), Some(0));
        assert_eq!(s.redirects, 0, "choosing is not handing out");
    }
}
