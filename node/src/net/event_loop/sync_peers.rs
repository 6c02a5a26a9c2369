//! What the loop remembers per peer for sync, bounded: when this node last started a
//! session with it (sessions are spaced by [`SYNC_PEER_GAP`](super::super::SYNC_PEER_GAP)),
//! and its budget of inbound requests (a token bucket refilled continuously at
//! `net.sync_requests_per_minute`, holding at most one minute's worth).
//!
//! Entries of peers that disconnected go after [`SYNC_PEER_RETAIN`](super::super::SYNC_PEER_RETAIN)
//! (long enough that reconnecting does not refill a budget faster than waiting would),
//! and the table never holds more than [`MAX_SYNC_PEERS`](super::super::MAX_SYNC_PEERS):
//! beyond it the least recently active entry goes. Time is a parameter, so all of it is
//! tested without a clock.

use fraudmesh::rate::TokenBucket;
use libp2p::PeerId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One peer's sync bookkeeping.
#[derive(Debug, Clone)]
struct Entry {
    /// When this node last started a session with it.
    last_session: Option<Instant>,
    /// Inbound requests it may still send (time in ms since the table's `epoch`).
    budget: TokenBucket,
    /// When it was last active (a session, a request): the eviction order.
    touched: Instant,
    /// Since when a prune found it disconnected.
    gone_since: Option<Instant>,
}

/// The per-peer sync bookkeeping (see the module doc).
#[derive(Debug)]
pub(super) struct SyncPeers {
    entries: HashMap<PeerId, Entry>,
    /// Requests per minute (also the bucket's size).
    per_minute: f64,
    /// Where the buckets' millisecond clock starts: the first instant the table is given.
    epoch: Option<Instant>,
    /// How long entries of disconnected peers are kept.
    retain: Duration,
    /// Most entries.
    cap: usize,
}

impl SyncPeers {
    /// A table granting each peer `per_minute` requests a minute, keeping entries of
    /// disconnected peers for `retain`, and at most `cap` entries.
    pub(super) fn new(per_minute: u32, retain: Duration, cap: usize) -> Self {
        Self {
            entries: HashMap::new(),
            per_minute: f64::from(per_minute),
            epoch: None,
            retain,
            cap: cap.max(1),
        }
    }

    /// Entries held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry of `peer`, made (with a full budget) if it has none.
    fn entry(&mut self, peer: PeerId, now: Instant) -> &mut Entry {
        if !self.entries.contains_key(&peer) && self.entries.len() >= self.cap {
            let oldest = self.entries.iter().min_by_key(|(_, e)| e.touched).map(|(p, _)| *p);
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        let budget = TokenBucket::full(self.per_minute, self.millis(now));
        let e = self.entries.entry(peer).or_insert_with(|| Entry {
            last_session: None,
            budget,
            touched: now,
            gone_since: None,
        });
        e.touched = now;
        e
    }

    /// Whether a session with `peer` started less than `gap` before `now`.
    pub(super) fn synced_within(&self, peer: &PeerId, gap: Duration, now: Instant) -> bool {
        self.entries
            .get(peer)
            .and_then(|e| e.last_session)
            .is_some_and(|t| now.saturating_duration_since(t) < gap)
    }

    /// A session with `peer` starts `now`.
    pub(super) fn session_started(&mut self, peer: PeerId, now: Instant) {
        self.entry(peer, now).last_session = Some(now);
    }

    /// Takes one request from `peer`'s budget; false when it has none left.
    pub(super) fn take_request(&mut self, peer: PeerId, now: Instant) -> bool {
        let (per_minute, at) = (self.per_minute, self.millis(now));
        self.entry(peer, now)
            .budget
            .take(1.0, per_minute / 60.0, per_minute, at)
    }

    /// `now` on the buckets' clock: ms since the first instant the table was given
    /// (earlier ones count as that start).
    fn millis(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        now.saturating_duration_since(epoch).as_millis() as u64
    }

    /// Drops the entries of peers that `connected` says are gone and have been for
    /// longer than the retention time (a peer is first seen gone by a prune).
    pub(super) fn prune(&mut self, now: Instant, connected: impl Fn(&PeerId) -> bool) {
        let retain = self.retain;
        self.entries.retain(|peer, e| {
            if connected(peer) {
                e.gone_since = None;
                return true;
            }
            let since = *e.gone_since.get_or_insert(now);
            now.saturating_duration_since(since) < retain
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn a_peer_gets_its_budget_per_minute_and_no_more() {
        let mut t = SyncPeers::new(6, MIN, 10);
        let (p, q) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        for _ in 0..6 {
            assert!(t.take_request(p, t0));
        }
        assert!(!t.take_request(p, t0), "the burst is one minute's budget");
        assert!(t.take_request(q, t0), "budgets are per peer");
        // One request every 10 s comes back.
        assert!(!t.take_request(p, t0 + Duration::from_secs(9)));
        assert!(t.take_request(p, t0 + Duration::from_secs(10)));
        assert!(!t.take_request(p, t0 + Duration::from_secs(11)));
        // A long silence refills at most one minute's worth.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..6 {
            assert!(t.take_request(p, later));
        }
        assert!(!t.take_request(p, later));
    }

    #[test]
    fn sessions_are_spaced_per_peer() {
        let mut t = SyncPeers::new(6, MIN, 10);
        let p = PeerId::random();
        let t0 = Instant::now();
        let gap = Duration::from_secs(10);
        assert!(!t.synced_within(&p, gap, t0));
        t.session_started(p, t0);
        assert!(t.synced_within(&p, gap, t0 + Duration::from_secs(9)));
        assert!(!t.synced_within(&p, gap, t0 + gap));
        assert!(!t.synced_within(&PeerId::random(), gap, t0));
    }

    #[test]
    fn disconnected_peers_are_forgotten_after_the_retention_and_connected_ones_kept() {
        let mut t = SyncPeers::new(6, MIN, 10);
        let (stays, leaves) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        t.session_started(stays, t0);
        for _ in 0..6 {
            assert!(t.take_request(leaves, t0));
        }
        let connected = |p: &PeerId| *p == stays;
        t.prune(t0 + Duration::from_secs(1), connected);
        assert_eq!(t.len(), 2, "first seen gone: kept for the retention");
        t.prune(t0 + Duration::from_secs(60), connected);
        assert_eq!(t.len(), 2);
        t.prune(t0 + Duration::from_secs(62), connected);
        assert_eq!(t.len(), 1);
        assert!(t.synced_within(&stays, Duration::from_secs(3600), t0));
        // Reconnecting within the retention keeps the spent budget.
        let mut t = SyncPeers::new(6, MIN, 10);
        for _ in 0..6 {
            assert!(t.take_request(leaves, t0));
        }
        t.prune(t0, |_| false);
        t.prune(t0 + Duration::from_secs(1), |_| true);
        assert!(!t.take_request(leaves, t0 + Duration::from_secs(2)));
    }

    #[test]
    fn the_table_never_exceeds_its_cap_and_evicts_the_least_recently_active() {
        let mut t = SyncPeers::new(6, MIN, 3);
        let t0 = Instant::now();
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        for (i, p) in peers.iter().enumerate() {
            t.session_started(*p, t0 + Duration::from_secs(i as u64));
            assert!(t.len() <= 3);
        }
        let at = t0 + Duration::from_secs(5);
        let gap = Duration::from_secs(3600);
        assert!(!t.synced_within(&peers[0], gap, at));
        assert!(!t.synced_within(&peers[1], gap, at));
        assert!(peers[2..].iter().all(|p| t.synced_within(p, gap, at)));
    }
}
