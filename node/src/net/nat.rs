//! Reachability and NAT traversal state: whether other nodes can dial this one
//! (AutoNAT's verdicts, or the operator's declared external addresses), the relayed
//! addresses it holds on its seeds, the peers it must not lose (its relays, the peers
//! holding a reservation on it, peers in a hole punch) and how each connection runs.
//!
//! This is plain state, changed by the event loop's NAT handlers
//! (`event_loop/nat.rs`) and read by the API through a [`NatStatus`] snapshot; nothing
//! here touches the swarm, so the transitions are tested without one.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Whether other nodes can dial this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    /// An address of this node was confirmed reachable from outside (by AutoNAT, or
    /// declared by the operator).
    Public,
    /// AutoNAT found none of this node's addresses reachable: it needs a relay.
    Private,
    /// Not known yet.
    Unknown,
}

impl Reachability {
    /// The name the API and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Unknown => "unknown",
        }
    }

    /// Every state, for the one-hot metric.
    pub const ALL: [Reachability; 3] = [Self::Public, Self::Private, Self::Unknown];
}

/// How a connection reaches its peer, as `peers --json` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Connection {
    /// A connection of its own to the peer.
    Direct,
    /// A circuit through a relay.
    Relayed,
}

impl Connection {
    /// The name the API and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Relayed => "relayed",
        }
    }

    /// The kind of connection at `addr` (the remote address of a connection).
    pub fn of(addr: &Multiaddr) -> Self {
        if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
            Self::Relayed
        } else {
            Self::Direct
        }
    }
}

/// The transport a connection at `addr` runs on (for a relayed one: the transport to
/// the relay, the first one in the address).
pub fn transport_of(addr: &Multiaddr) -> &'static str {
    for p in addr.iter() {
        match p {
            Protocol::QuicV1 | Protocol::Quic => return "quic",
            Protocol::Tcp(_) => return "tcp",
            Protocol::Memory(_) => return "memory",
            Protocol::P2pCircuit => break,
            _ => {}
        }
    }
    "tcp"
}

/// What the API shows of the NAT state (a snapshot the event loop publishes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatStatus {
    /// Whether other nodes can dial this one.
    pub reachability: Reachability,
    /// The relayed listen addresses this node holds, ending `/p2p-circuit/p2p/<self>`.
    pub relays: Vec<String>,
}

impl Default for NatStatus {
    fn default() -> Self {
        Self {
            reachability: Reachability::Unknown,
            relays: Vec::new(),
        }
    }
}

/// The node's reachability and NAT traversal state.
#[derive(Debug)]
pub struct NatState {
    /// This node.
    local: PeerId,
    /// Whether other nodes can dial this one.
    reachability: Reachability,
    /// Pinned by the operator's `external_addresses`: AutoNAT does not demote it.
    declared: bool,
    /// Relayed listen addresses held, by the relay holding each (without `/p2p/<self>`).
    relayed: HashMap<PeerId, BTreeSet<Multiaddr>>,
    /// Relays this node asked for a reservation and has not heard back from.
    reserving: HashSet<PeerId>,
    /// Peers holding a reservation on this node (as a relay server).
    served: HashSet<PeerId>,
    /// Peers in a hole punch with this node.
    punching: HashSet<PeerId>,
}

impl NatState {
    /// The state of a node that knows nothing yet, or that is `public` when the operator
    /// declared external addresses.
    pub fn new(local: PeerId, declared_public: bool) -> Self {
        Self {
            local,
            reachability: if declared_public {
                Reachability::Public
            } else {
                Reachability::Unknown
            },
            declared: declared_public,
            relayed: HashMap::new(),
            reserving: HashSet::new(),
            served: HashSet::new(),
            punching: HashSet::new(),
        }
    }

    /// Whether other nodes can dial this one.
    pub fn reachability(&self) -> Reachability {
        self.reachability
    }

    /// Takes a reachability verdict; true when it changed. Declared reachability stays
    /// public whatever AutoNAT says (an operator's firewall may drop AutoNAT's probes
    /// from strangers while the seeds' peers get through).
    pub fn set_reachability(&mut self, r: Reachability) -> bool {
        if self.declared || self.reachability == r {
            return false;
        }
        self.reachability = r;
        true
    }

    /// Whether `peer`'s connections must be kept: a relay of ours (holding or asked for a
    /// reservation), a peer with a reservation on us, or a peer in a hole punch.
    pub fn is_pinned(&self, peer: &PeerId) -> bool {
        self.relayed.contains_key(peer)
            || self.reserving.contains(peer)
            || self.served.contains(peer)
            || self.punching.contains(peer)
    }

    /// A reservation was asked of `relay`.
    pub fn reserving(&mut self, relay: PeerId) {
        self.reserving.insert(relay);
    }

    /// Whether a reservation on `relay` is held or asked for.
    pub fn has_relay(&self, relay: &PeerId) -> bool {
        self.relayed.contains_key(relay) || self.reserving.contains(relay)
    }

    /// Relays held or asked for.
    pub fn relay_count(&self) -> usize {
        self.relayed.len() + self.reserving.iter().filter(|p| !self.relayed.contains_key(p)).count()
    }

    /// Reservations held (relays with at least one relayed address).
    pub fn reservations(&self) -> usize {
        self.relayed.len()
    }

    /// A relayed listen address is held (`addr` as the swarm reports it, with or without
    /// `/p2p/<self>`); returns false when `addr` names no relay.
    pub fn add_relayed(&mut self, addr: &Multiaddr) -> bool {
        let Some(relay) = relay_of(addr) else {
            return false;
        };
        self.reserving.remove(&relay);
        self.relayed
            .entry(relay)
            .or_default()
            .insert(strip_self(addr, &self.local));
        true
    }

    /// A relayed listen address is gone.
    pub fn remove_relayed(&mut self, addr: &Multiaddr) {
        let Some(relay) = relay_of(addr) else {
            return;
        };
        let addr = strip_self(addr, &self.local);
        if let Some(set) = self.relayed.get_mut(&relay) {
            set.remove(&addr);
            if set.is_empty() {
                self.relayed.remove(&relay);
            }
        }
    }

    /// Everything held on `relay` is gone (its listener closed, its connection lost,
    /// its reservation refused).
    pub fn relay_lost(&mut self, relay: &PeerId) {
        self.relayed.remove(relay);
        self.reserving.remove(relay);
    }

    /// The relayed listen addresses held, full (`…/p2p-circuit/p2p/<self>`), sorted.
    pub fn relays(&self) -> Vec<Multiaddr> {
        let mut out: Vec<Multiaddr> = self
            .relayed
            .values()
            .flatten()
            .map(|a| a.clone().with(Protocol::P2p(self.local)))
            .collect();
        out.sort();
        out
    }

    /// A peer took a reservation on this node (as a relay server), or renewed it.
    pub fn served(&mut self, peer: PeerId) {
        self.served.insert(peer);
    }

    /// A peer's reservation on this node ended.
    pub fn unserved(&mut self, peer: &PeerId) {
        self.served.remove(peer);
    }

    /// Reservations served to others.
    pub fn served_count(&self) -> usize {
        self.served.len()
    }

    /// A hole punch with `peer` started.
    pub fn punch_started(&mut self, peer: PeerId) {
        self.punching.insert(peer);
    }

    /// A hole punch with `peer` ended (either way).
    pub fn punch_ended(&mut self, peer: &PeerId) {
        self.punching.remove(peer);
    }

    /// The API's snapshot.
    pub fn status(&self) -> NatStatus {
        NatStatus {
            reachability: self.reachability,
            relays: self.relays().iter().map(ToString::to_string).collect(),
        }
    }
}

/// The relay of a relayed address: the `/p2p/<relay>` before `/p2p-circuit`.
pub fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut last = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(id) => last = Some(id),
            Protocol::P2pCircuit => return last,
            _ => {}
        }
    }
    None
}

/// `addr` without a trailing `/p2p/<local>`.
fn strip_self(addr: &Multiaddr, local: &PeerId) -> Multiaddr {
    let mut a = addr.clone();
    if matches!(a.iter().last(), Some(Protocol::P2p(id)) if id == *local) {
        a.pop();
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circuit(relay: &PeerId, port: u16) -> Multiaddr {
        format!("/ip4/192.0.2.1/udp/{port}/quic-v1/p2p/{relay}/p2p-circuit")
            .parse()
            .unwrap()
    }

    #[test]
    fn reachability_moves_with_verdicts_unless_declared() {
        let mut s = NatState::new(PeerId::random(), false);
        assert_eq!(s.reachability(), Reachability::Unknown);
        assert!(s.set_reachability(Reachability::Private));
        assert!(!s.set_reachability(Reachability::Private), "no change, no news");
        assert!(s.set_reachability(Reachability::Public));
        assert_eq!(s.status().reachability.as_str(), "public");

        let mut declared = NatState::new(PeerId::random(), true);
        assert_eq!(declared.reachability(), Reachability::Public);
        assert!(!declared.set_reachability(Reachability::Private));
        assert_eq!(declared.reachability(), Reachability::Public);
    }

    #[test]
    fn relays_pinned_while_reserving_and_holding() {
        let local = PeerId::random();
        let (relay, other) = (PeerId::random(), PeerId::random());
        let mut s = NatState::new(local, false);
        assert!(!s.is_pinned(&relay));
        s.reserving(relay);
        assert!(s.is_pinned(&relay) && s.has_relay(&relay));
        assert_eq!((s.relay_count(), s.reservations()), (1, 0));
        let with_self = circuit(&relay, 1).with(Protocol::P2p(local));
        assert!(s.add_relayed(&with_self));
        assert!(s.add_relayed(&circuit(&relay, 1)), "the same address twice is one");
        assert!(s.add_relayed(&circuit(&relay, 2)));
        assert_eq!((s.relay_count(), s.reservations()), (1, 1));
        assert_eq!(
            s.status().relays,
            vec![
                with_self.to_string(),
                circuit(&relay, 2).with(Protocol::P2p(local)).to_string()
            ]
        );
        assert!(!s.add_relayed(&"/ip4/192.0.2.1/tcp/1".parse().unwrap()), "not relayed");
        s.remove_relayed(&with_self);
        assert!(s.is_pinned(&relay));
        s.remove_relayed(&circuit(&relay, 2));
        assert!(!s.is_pinned(&relay));
        assert!(s.relays().is_empty());

        s.reserving(other);
        s.relay_lost(&other);
        assert!(!s.is_pinned(&other));
    }

    #[test]
    fn served_and_punching_peers_are_pinned() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut s = NatState::new(PeerId::random(), false);
        s.served(a);
        s.punch_started(b);
        assert!(s.is_pinned(&a) && s.is_pinned(&b));
        assert_eq!(s.served_count(), 1);
        s.unserved(&a);
        s.punch_ended(&b);
        assert!(!s.is_pinned(&a) && !s.is_pinned(&b));
    }

    #[test]
    fn connections_and_transports_are_named_from_the_address() {
        let relay = PeerId::random();
        let a = |s: &str| s.parse::<Multiaddr>().unwrap();
        assert_eq!(Connection::of(&a("/ip4/192.0.2.1/tcp/1")), Connection::Direct);
        assert_eq!(Connection::of(&circuit(&relay, 3)), Connection::Relayed);
        assert_eq!(transport_of(&a("/ip6/::1/tcp/1")), "tcp");
        assert_eq!(transport_of(&circuit(&relay, 3)), "quic");
        assert_eq!(transport_of(&a("/memory/5")), "memory");
        assert_eq!(relay_of(&circuit(&relay, 3)), Some(relay));
        assert_eq!(relay_of(&a("/ip4/192.0.2.1/tcp/1")), None);
    }
}
