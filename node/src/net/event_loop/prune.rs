//! Which connections the node lets go, so that no node connects to every other one.
//!
//! Kademlia queries dial every peer they contact, and gossipsub's streams keep each of
//! those connections open afterwards (the swarm's own idle timeout only closes
//! connections without streams), so without this a node walking the DHT of a 300-node
//! mesh ends up connected to nearly all of it. Two rules, checked every
//! [`PRUNE_INTERVAL`](super::PRUNE_INTERVAL):
//!
//! - **surplus**: beyond [`Limits::max_peers`](crate::net::Limits::max_peers), the least
//!   useful peers go once their connection is older than a short grace (a newcomer
//!   bootstraps through a seed that is full, and the seed's gossip mesh may take it in);
//! - **idle**: beyond [`Limits::target_peers`](crate::net::Limits::target_peers),
//!   strangers this node dialled that stayed outside the gossip mesh (and not syncing)
//!   for [`Limits::idle_timeout`](crate::net::Limits::idle_timeout) go. A connection
//!   is trimmed to target by the side that wanted it: a node below target looks for
//!   peers and dials them; had they closed its connections for being beyond *their*
//!   target, it would fall below again and look again, every lookup interval (seen
//!   in an eight-node mesh with target 3). Connections others dialled are bounded by
//!   the surplus rule only.
//!
//! Never closed: gossipsub mesh peers (gossip flows through them; gossipsub's own mesh
//! bounds are derived from `max_peers`, see [`Limits::gossip_mesh`](crate::net::Limits::gossip_mesh)),
//! seeds, peers a sync session or answer is running with, and NAT-pinned peers (our
//! relays, peers holding a reservation on us, hole punches in progress). Trusted
//! peers' nodes are never closed as idle, and for surplus only after every stranger:
//! they are kept up to `max_peers` (a provider whose 300 sites all trust each other
//! would otherwise be a full mesh again).
//!
//! [`choose`] is the decision, pure; [`Tracker`] keeps the times it needs.

use libp2p::PeerId;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long a new connection is safe from the surplus rule.
pub(super) const GRACE: Duration = Duration::from_secs(10);

/// The bounds the rules apply.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    /// Above this many peers, idle strangers go.
    pub(super) target: usize,
    /// Above this many peers, the least useful go.
    pub(super) max: usize,
    /// How long a stranger may stay idle while the node is above target.
    pub(super) idle_timeout: Duration,
    /// How long a new connection is safe from the surplus rule.
    pub(super) grace: Duration,
}

/// When a connected peer connected, and since when it has been idle (outside the mesh,
/// not syncing, not pinned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tracked {
    /// When its first connection was established.
    pub(super) connected_at: Instant,
    /// Since when it has been idle; reset to now while it is busy.
    pub(super) idle_since: Instant,
    /// Whether this node dialled one of its connections.
    pub(super) outbound: bool,
}

/// What the rules see of the node's peers.
pub(super) struct View<'a> {
    /// The connected peers, with their times.
    pub(super) connected: &'a HashMap<PeerId, Tracked>,
    /// Peers in our gossipsub mesh.
    pub(super) mesh: &'a HashSet<PeerId>,
    /// Peers subscribed to the topic (a peer that is not is the least useful).
    pub(super) gossip: &'a HashSet<PeerId>,
    /// Seeds and peers with a sync session or answer running: never closed.
    pub(super) keep: &'a HashSet<PeerId>,
    /// Trusted peers' nodes: never idle, and surplus only after every stranger.
    pub(super) trusted: &'a HashSet<PeerId>,
    /// NAT-pinned peers: never closed.
    pub(super) pinned: &'a dyn Fn(&PeerId) -> bool,
}

/// Why a connection is closed (the `reason` label of
/// `fraudmesh_connections_pruned_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    /// The node had more than `max_peers`.
    Surplus,
    /// A stranger idle for the idle timeout while the node had more than `target_peers`.
    Idle,
}

impl Reason {
    /// The metric label.
    pub(super) fn label(self) -> &'static str {
        match self {
            Reason::Surplus => "surplus",
            Reason::Idle => "idle",
        }
    }
}

impl View<'_> {
    /// Whether `peer` is never closed.
    fn protected(&self, peer: &PeerId) -> bool {
        self.mesh.contains(peer) || self.keep.contains(peer) || (self.pinned)(peer)
    }
}

/// The peers to disconnect now, and why: first the surplus beyond `max` (strangers
/// before trusted peers, peers off the topic before gossip peers, longest idle first),
/// then idle strangers this node dialled, beyond `target`.
pub(super) fn choose(view: &View<'_>, bounds: &Bounds, now: Instant) -> Vec<(PeerId, Reason)> {
    let mut candidates: Vec<(bool, bool, Instant, PeerId)> = view
        .connected
        .iter()
        .filter(|(p, _)| !view.protected(p))
        .map(|(p, t)| (view.trusted.contains(p), view.gossip.contains(p), t.idle_since, *p))
        .collect();
    let outbound = |p: &PeerId| view.connected.get(p).is_some_and(|t| t.outbound);
    // Least useful first; the peer id makes the order total (deterministic tests).
    candidates.sort();
    let mut out = Vec::new();
    let mut left = view.connected.len();
    let mut rest = Vec::new();
    for c @ (_, _, _, peer) in candidates {
        let old_enough = view
            .connected
            .get(&peer)
            .is_some_and(|t| now.saturating_duration_since(t.connected_at) >= bounds.grace);
        if left > bounds.max && old_enough {
            out.push((peer, Reason::Surplus));
            left -= 1;
        } else {
            rest.push(c);
        }
    }
    for (trusted, _, idle_since, peer) in rest {
        if left <= bounds.target {
            break;
        }
        if !trusted && outbound(&peer) && now.saturating_duration_since(idle_since) >= bounds.idle_timeout {
            out.push((peer, Reason::Idle));
            left -= 1;
        }
    }
    out
}

/// The times [`choose`] needs, kept as connections come and go.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    /// Every connected peer's times.
    peers: HashMap<PeerId, Tracked>,
}

impl Tracker {
    /// A connection to `peer` is up (`outbound`: this node dialled it).
    pub(super) fn connected(&mut self, peer: PeerId, now: Instant, outbound: bool) {
        self.peers
            .entry(peer)
            .or_insert(Tracked {
                connected_at: now,
                idle_since: now,
                outbound,
            })
            .outbound |= outbound;
    }

    /// A peer's last connection is gone.
    pub(super) fn disconnected(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// Marks the peers `busy` says are (in the mesh, syncing, pinned) as not idle now.
    pub(super) fn touch(&mut self, now: Instant, busy: impl Fn(&PeerId) -> bool) {
        for (peer, t) in &mut self.peers {
            if busy(peer) {
                t.idle_since = now;
            }
        }
    }

    /// The connected peers' times.
    pub(super) fn peers(&self) -> &HashMap<PeerId, Tracked> {
        &self.peers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn bounds(target: usize, max: usize) -> Bounds {
        Bounds {
            target,
            max,
            idle_timeout: 60 * S,
            grace: 10 * S,
        }
    }

    /// `n` peers connected at `t0`, idle since `t0 + i s` (peer 0 idle longest).
    fn peers(n: usize, t0: Instant) -> (Vec<PeerId>, HashMap<PeerId, Tracked>) {
        let ids: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
        let map = ids
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    *p,
                    Tracked {
                        connected_at: t0,
                        idle_since: t0 + i as u32 * S,
                        outbound: true,
                    },
                )
            })
            .collect();
        (ids, map)
    }

    struct Sets {
        mesh: HashSet<PeerId>,
        gossip: HashSet<PeerId>,
        keep: HashSet<PeerId>,
        trusted: HashSet<PeerId>,
        pinned: HashSet<PeerId>,
    }

    impl Sets {
        fn new() -> Self {
            Self {
                mesh: HashSet::new(),
                gossip: HashSet::new(),
                keep: HashSet::new(),
                trusted: HashSet::new(),
                pinned: HashSet::new(),
            }
        }

        fn choose(&self, connected: &HashMap<PeerId, Tracked>, b: Bounds, now: Instant) -> Vec<(PeerId, Reason)> {
            let pinned = |p: &PeerId| self.pinned.contains(p);
            let view = View {
                connected,
                mesh: &self.mesh,
                gossip: &self.gossip,
                keep: &self.keep,
                trusted: &self.trusted,
                pinned: &pinned,
            };
            choose(&view, &b, now)
        }
    }

    #[test]
    fn nothing_goes_at_or_below_target_or_before_the_timeouts() {
        let t0 = Instant::now();
        let (_, connected) = peers(8, t0);
        let s = Sets::new();
        // At target, even long idle strangers stay.
        assert!(s.choose(&connected, bounds(8, 32), t0 + 3600 * S).is_empty());
        // Above target but not idle long enough (the newest is idle since t0 + 7 s).
        assert!(s.choose(&connected, bounds(4, 32), t0 + 30 * S).is_empty());
        // Above max but within the grace: a newcomer gets its chance.
        assert!(s.choose(&connected, bounds(2, 4), t0 + 5 * S).is_empty());
    }

    #[test]
    fn surplus_goes_after_the_grace_least_useful_first() {
        let t0 = Instant::now();
        let (ids, connected) = peers(10, t0);
        let mut s = Sets::new();
        s.gossip.extend(ids[..5].iter().copied());
        let got = s.choose(&connected, bounds(2, 7), t0 + 11 * S);
        // Three go, all surplus: peers off the topic (5..10) before gossip peers, the
        // longest idle of them first.
        assert_eq!(got, [ids[5], ids[6], ids[7]].map(|p| (p, Reason::Surplus)));
    }

    #[test]
    fn idle_strangers_go_beyond_target_after_the_idle_timeout() {
        let t0 = Instant::now();
        let (ids, connected) = peers(6, t0);
        let s = Sets::new();
        // Idle since t0 + i s; at t0 + 62 s peers 0..=2 have been idle for 60 s.
        let got = s.choose(&connected, bounds(2, 32), t0 + 62 * S);
        assert_eq!(got, [ids[0], ids[1], ids[2]].map(|p| (p, Reason::Idle)));
        // Later all are idle, but only down to target.
        let got = s.choose(&connected, bounds(2, 32), t0 + 600 * S);
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|(p, r)| *r == Reason::Idle && !ids[4..].contains(p)));
    }

    #[test]
    fn connections_others_dialled_are_not_idle_only_surplus() {
        let t0 = Instant::now();
        let (ids, mut connected) = peers(6, t0);
        for p in &ids[..3] {
            connected.get_mut(p).unwrap().outbound = false;
        }
        let s = Sets::new();
        // Everyone idle for ages, target 2: only our own dials go (3, 4, 5) though the
        // inbound ones are idle longer; 3 peers stay, above target.
        let got = s.choose(&connected, bounds(2, 32), t0 + 3600 * S);
        assert_eq!(got, [ids[3], ids[4], ids[5]].map(|p| (p, Reason::Idle)));
        // Beyond max, inbound ones go too.
        let got = s.choose(&connected, bounds(2, 4), t0 + 3600 * S);
        assert_eq!(&got[..2], &[(ids[0], Reason::Surplus), (ids[1], Reason::Surplus)]);
    }

    #[test]
    fn mesh_seeds_busy_and_pinned_peers_are_never_closed() {
        let t0 = Instant::now();
        let (ids, connected) = peers(8, t0);
        let mut s = Sets::new();
        s.mesh.extend(&ids[0..2]);
        s.keep.extend(&ids[2..4]);
        s.pinned.extend(&ids[4..6]);
        // Far above both bounds, long idle: only the two unprotected go.
        let got = s.choose(&connected, bounds(1, 1), t0 + 3600 * S);
        let mut gone: Vec<PeerId> = got.iter().map(|(p, _)| *p).collect();
        gone.sort();
        let mut want = vec![ids[6], ids[7]];
        want.sort();
        assert_eq!(gone, want);
        assert!(got.iter().all(|(_, r)| *r == Reason::Surplus));
    }

    #[test]
    fn trusted_peers_are_never_idle_and_surplus_only_after_strangers() {
        let t0 = Instant::now();
        let (ids, connected) = peers(6, t0);
        let mut s = Sets::new();
        // The longest idle three are trusted.
        s.trusted.extend(&ids[0..3]);
        // Above target, everyone idle for ages: only strangers go, down to target.
        let got = s.choose(&connected, bounds(2, 32), t0 + 3600 * S);
        assert_eq!(got, [ids[3], ids[4], ids[5]].map(|p| (p, Reason::Idle)));
        // Above max: strangers first, then trusted ones, longest idle first.
        let got = s.choose(&connected, bounds(1, 2), t0 + 11 * S);
        let want = [ids[3], ids[4], ids[5], ids[0]].map(|p| (p, Reason::Surplus));
        assert_eq!(got, want);
    }

    #[test]
    fn surplus_and_idle_together_never_go_below_target() {
        let t0 = Instant::now();
        let (ids, connected) = peers(12, t0);
        let mut s = Sets::new();
        s.gossip.extend(&ids);
        // 12 peers, max 10, target 8: two surplus, then two idle.
        let got = s.choose(&connected, bounds(8, 10), t0 + 100 * S);
        assert_eq!(got.len(), 4);
        assert_eq!(&got[..2], &[(ids[0], Reason::Surplus), (ids[1], Reason::Surplus)]);
        assert_eq!(&got[2..], &[(ids[2], Reason::Idle), (ids[3], Reason::Idle)]);
    }

    #[test]
    fn the_tracker_keeps_busy_peers_fresh() {
        let t0 = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut t = Tracker::default();
        t.connected(a, t0, false);
        t.connected(b, t0, false);
        t.connected(a, t0 + 5 * S, true);
        assert!(t.peers()[&a].outbound, "either connection dialled by us");
        assert!(!t.peers()[&b].outbound);
        assert_eq!(
            t.peers()[&a].connected_at,
            t0,
            "a second connection keeps the first's time"
        );
        t.touch(t0 + 30 * S, |p| *p == a);
        assert_eq!(t.peers()[&a].idle_since, t0 + 30 * S);
        assert_eq!(t.peers()[&b].idle_since, t0);
        t.disconnected(&a);
        assert!(!t.peers().contains_key(&a));
    }
}
