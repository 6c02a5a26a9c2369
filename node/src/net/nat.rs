//! Reachability and NAT traversal state: whether other nodes can dial this one
//! (AutoNAT's verdicts, or the operator's declared external addresses), the relayed
//! addresses it holds on its seeds, the peers it must not lose (its relays, the peers
//! holding a reservation on it, peers in a hole punch) and how each connection runs.
//!
//! This is plain state, changed by the event loop's NAT handlers
//! (`event_loop/nat.rs`) and read by the API through a [`NatStatus`] snapshot; nothing
//! here touches the swarm, so the transitions are tested without one.

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Relays a node behind NAT holds reservations on at once (from its seeds): two, so
/// losing one (a seed restarting) leaves the node reachable through the other.
pub const MAX_RELAYS: usize = 2;
/// How long reachability may stay unknown, with no direct incoming connection, before
/// the node reserves relayed addresses anyway: AutoNAT needs a peer that serves it and
/// an observed address to test, and a node whose seeds do not serve AutoNAT would
/// otherwise stay unreachable.
pub const UNKNOWN_GRACE: Duration = Duration::from_secs(60);
/// How long after losing (or failing to get) a reservation on a relay the node asks that
/// relay again, unless it reconnects to the relay first (a restarted seed is asked at
/// once).
pub const RELAY_RETRY: Duration = Duration::from_secs(10);

/// The `[relay]` config section: this node as a circuit relay v2 server for nodes that
/// cannot be dialled (defaults in [`RelayConfig::default`]).
///
/// A relayed connection is an ordinary libp2p connection to everything above the
/// transport: gossipsub, identify, ping, Kademlia and sync all run over it (rust-libp2p
/// has no notion of a "limited" connection that refuses streams, as go-libp2p has; the
/// only limits are the relay's own, below). What limits it is the relay: a circuit is
/// cut when it has carried `circuit_bytes` or lasted `circuit_duration`, and the two
/// nodes are then disconnected until one redials. libp2p's defaults (2 minutes, 128 KiB)
/// are meant for the few seconds a hole punch takes; a site behind a NAT that cannot be
/// punched lives on its relayed connections, so the defaults here let one circuit carry
/// gossip at attack-wave rates (100 sightings/s of a few hundred bytes is ~100 MB an
/// hour) and a catch-up sync for an hour before it is renewed. The worst a seed relays
/// is then `max_circuits × circuit_bytes` an hour (64 × 256 MiB ≈ 4.6 MB/s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Serve as a relay while publicly reachable (`relay.serve`, true). Only nodes that
    /// reach this one (in practice: that name it as a seed) reserve on it.
    pub serve: bool,
    /// Reservations held for other nodes at once (`relay.max_reservations`, 128).
    pub max_reservations: usize,
    /// Reservations per peer (`relay.max_reservations_per_peer`, 4: one per transport
    /// and address family it reached this node on).
    pub max_reservations_per_peer: usize,
    /// How long a reservation lasts before the node renews it
    /// (`relay.reservation_duration`, 1 h; the client renews it by itself).
    #[serde(with = "humantime_serde")]
    pub reservation_duration: Duration,
    /// Circuits relayed at once (`relay.max_circuits`, 64).
    pub max_circuits: usize,
    /// Circuits at once per peer (`relay.max_circuits_per_peer`, 8).
    pub max_circuits_per_peer: usize,
    /// Longest life of one circuit (`relay.circuit_duration`, 1 h).
    #[serde(with = "humantime_serde")]
    pub circuit_duration: Duration,
    /// Most bytes one circuit carries, both ways (`relay.circuit_bytes`, 256 MiB).
    pub circuit_bytes: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            serve: true,
            max_reservations: 128,
            max_reservations_per_peer: 4,
            reservation_duration: Duration::from_secs(3600),
            max_circuits: 64,
            max_circuits_per_peer: 8,
            circuit_duration: Duration::from_secs(3600),
            circuit_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Smallest `relay.circuit_bytes` (libp2p takes 0 as unlimited, which this config does
/// not allow). Values this small are for tests of the limit: a relayed connection then
/// ends before a catch-up sync does.
pub const MIN_CIRCUIT_BYTES: u64 = 4096;
/// Shortest `relay.circuit_duration` and `relay.reservation_duration` (short ones are
/// for tests of the limits).
pub const MIN_RELAY_DURATION: Duration = Duration::from_secs(1);
/// Longest `relay.circuit_duration` and `relay.reservation_duration` (libp2p sends them
/// as 32-bit seconds; a day is plenty).
pub const MAX_RELAY_DURATION: Duration = Duration::from_secs(24 * 3600);

impl RelayConfig {
    /// Checks the bounds; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("max_reservations", self.max_reservations),
            ("max_reservations_per_peer", self.max_reservations_per_peer),
            ("max_circuits", self.max_circuits),
            ("max_circuits_per_peer", self.max_circuits_per_peer),
        ] {
            if v == 0 {
                return Err(format!(
                    "relay.{key}: must be at least 1 (use relay.serve = false to serve none)"
                ));
            }
        }
        if self.max_reservations_per_peer > self.max_reservations {
            return Err("relay.max_reservations_per_peer: must not exceed relay.max_reservations".into());
        }
        if self.max_circuits_per_peer > self.max_circuits {
            return Err("relay.max_circuits_per_peer: must not exceed relay.max_circuits".into());
        }
        for (key, d) in [
            ("reservation_duration", self.reservation_duration),
            ("circuit_duration", self.circuit_duration),
        ] {
            if !(MIN_RELAY_DURATION..=MAX_RELAY_DURATION).contains(&d) {
                return Err(format!("relay.{key}: must be between 1s and 24h"));
            }
        }
        if self.circuit_bytes < MIN_CIRCUIT_BYTES {
            return Err(format!(
                "relay.circuit_bytes: must be at least {MIN_CIRCUIT_BYTES} (0, unlimited, is not allowed)"
            ));
        }
        Ok(())
    }
}

/// What the network needs to know about NAT traversal, from the config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NatConfig {
    /// Ask the router for port mappings (UPnP IGD; `node.upnp`).
    pub upnp: bool,
    /// Addresses the operator declares reachable (`node.external_addresses`):
    /// confirmed at start, and reachability is then public for good.
    pub external: Vec<Multiaddr>,
    /// The relay server's bounds.
    pub relay: RelayConfig,
    /// Testing: listen on nothing but relayed addresses, and take reachability as private
    /// from the start (`debug.relay_only`).
    pub relay_only: bool,
}

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
    /// Fixed by the config (declared external addresses: public; `debug.relay_only`:
    /// private): AutoNAT does not change it.
    pinned: bool,
    /// Relayed listen addresses held, by the relay holding each (without `/p2p/<self>`).
    relayed: HashMap<PeerId, BTreeSet<Multiaddr>>,
    /// Relays this node asked for a reservation and has not heard back from.
    reserving: HashSet<PeerId>,
    /// Peers holding a reservation on this node (as a relay server).
    served: HashSet<PeerId>,
    /// Peers in a hole punch with this node.
    punching: HashSet<PeerId>,
    /// The relay listener on each relay reserved on (pending or held).
    listeners: HashMap<PeerId, ListenerId>,
    /// Relays lost or that refused, with when they may be asked again.
    retry_at: HashMap<PeerId, Instant>,
    /// Circuits this node relays now.
    circuits: usize,
    /// Each connected peer's connections, with their remote addresses.
    connections: HashMap<PeerId, Vec<(ConnectionId, Multiaddr)>>,
    /// Since when reachability has been what it is.
    since: Instant,
    /// Whether a peer ever connected to this node directly (not through a relay).
    inbound: bool,
}

impl NatState {
    /// The state of a node that knows nothing yet (`fixed` None: unknown), or whose
    /// reachability the config fixed.
    pub fn new(local: PeerId, fixed: Option<Reachability>) -> Self {
        Self {
            local,
            reachability: fixed.unwrap_or(Reachability::Unknown),
            pinned: fixed.is_some(),
            relayed: HashMap::new(),
            reserving: HashSet::new(),
            served: HashSet::new(),
            punching: HashSet::new(),
            listeners: HashMap::new(),
            retry_at: HashMap::new(),
            circuits: 0,
            connections: HashMap::new(),
            since: Instant::now(),
            inbound: false,
        }
    }

    /// Whether other nodes can dial this one.
    pub fn reachability(&self) -> Reachability {
        self.reachability
    }

    /// Takes a reachability verdict; true when it changed. Reachability the config fixed
    /// stays whatever AutoNAT says (an operator's firewall may drop AutoNAT's probes from
    /// strangers while the seeds' peers get through).
    pub fn set_reachability(&mut self, r: Reachability) -> bool {
        if self.pinned || self.reachability == r {
            return false;
        }
        self.reachability = r;
        self.since = Instant::now();
        true
    }

    /// Whether the node should hold relayed addresses at `now`: while private, or while
    /// unknown for [`UNKNOWN_GRACE`] with no direct incoming connection yet.
    pub fn wants_relays(&self, now: Instant) -> bool {
        match self.reachability {
            Reachability::Private => true,
            Reachability::Public => false,
            Reachability::Unknown => !self.inbound && now.saturating_duration_since(self.since) >= UNKNOWN_GRACE,
        }
    }

    /// Whether `relay` may be asked for a reservation at `now`: not held or asked for,
    /// and not lost or refused within [`RELAY_RETRY`].
    pub fn may_reserve(&self, relay: &PeerId, now: Instant) -> bool {
        !self.has_relay(relay) && self.retry_at.get(relay).is_none_or(|t| now >= *t)
    }

    /// Kademlia serves (server mode) when others can reach this node: publicly, through a
    /// relay, or as far as it knows yet (unknown: AutoNAT answers within seconds, and a
    /// node that turns out private switches to client mode then).
    pub fn serves_dht(&self) -> bool {
        self.reachability != Reachability::Private || self.reservations() > 0
    }

    /// A connection was established; `remote` is its remote address. Returns the
    /// address the peer's entry shows: a direct connection's if it has one.
    pub fn connected(&mut self, peer: PeerId, id: ConnectionId, remote: &Multiaddr, inbound: bool) -> Multiaddr {
        let relayed = Connection::of(remote) == Connection::Relayed;
        if inbound && !relayed {
            self.inbound = true;
        }
        if relayed {
            // DCUtR starts on every new relayed connection: keep it while it runs.
            self.punching.insert(peer);
        }
        let conns = self.connections.entry(peer).or_default();
        conns.push((id, remote.clone()));
        best(conns)
    }

    /// A connection closed. Returns the address the peer's entry shows now, or None
    /// when it has no connection left (everything pinned for it goes too, but its
    /// reservations on us: the relay server reports their end itself).
    pub fn closed(&mut self, peer: &PeerId, id: ConnectionId) -> Option<Multiaddr> {
        let conns = self.connections.get_mut(peer)?;
        conns.retain(|(c, _)| *c != id);
        if conns.is_empty() {
            self.connections.remove(peer);
            self.punching.remove(peer);
            return None;
        }
        Some(best(conns))
    }

    /// Connected peers by how each is shown: (connection, transport) → peers.
    pub fn by_connection(&self) -> HashMap<(Connection, &'static str), i64> {
        let mut out = HashMap::new();
        for conns in self.connections.values() {
            let addr = best(conns);
            *out.entry((Connection::of(&addr), transport_of(&addr))).or_default() += 1;
        }
        out
    }

    /// Whether `peer`'s connections must be kept: a relay of ours (holding or asked for a
    /// reservation), a peer with a reservation on us, or a peer in a hole punch.
    pub fn is_pinned(&self, peer: &PeerId) -> bool {
        self.relayed.contains_key(peer)
            || self.reserving.contains(peer)
            || self.served.contains(peer)
            || self.punching.contains(peer)
    }

    /// A reservation was asked of `relay` (by listening through it on `listener`).
    pub fn reserving(&mut self, relay: PeerId, listener: ListenerId) {
        self.reserving.insert(relay);
        self.listeners.insert(relay, listener);
    }

    /// A listener closed; if it was a relay's, everything held there is gone and the
    /// relay is asked again after [`RELAY_RETRY`]. Returns the relay.
    pub fn listener_closed(&mut self, listener: ListenerId, now: Instant) -> Option<PeerId> {
        let relay = self.listeners.iter().find(|(_, l)| **l == listener).map(|(p, _)| *p)?;
        self.relay_lost(&relay);
        self.retry_at.insert(relay, now + RELAY_RETRY);
        Some(relay)
    }

    /// A new connection to `relay`: it may be asked for a reservation at once.
    pub fn relay_reconnected(&mut self, relay: &PeerId) {
        self.retry_at.remove(relay);
    }

    /// The relay listeners, to close when the node no longer needs them; forgets them.
    pub fn take_listeners(&mut self) -> Vec<ListenerId> {
        let out = self.listeners.drain().map(|(_, l)| l).collect();
        self.relayed.clear();
        self.reserving.clear();
        out
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
        self.listeners.remove(relay);
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

    /// A circuit through this node opened.
    pub fn circuit_opened(&mut self) {
        self.circuits += 1;
    }

    /// A circuit through this node closed.
    pub fn circuit_closed(&mut self) {
        self.circuits = self.circuits.saturating_sub(1);
    }

    /// Circuits this node relays now.
    pub fn circuits(&self) -> usize {
        self.circuits
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

/// The address a peer's entry shows among its connections: the first direct one, else
/// the first.
fn best(conns: &[(ConnectionId, Multiaddr)]) -> Multiaddr {
    conns
        .iter()
        .find(|(_, a)| Connection::of(a) == Connection::Direct)
        .or(conns.first())
        .map(|(_, a)| a.clone())
        .unwrap_or_else(Multiaddr::empty)
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
        let mut s = NatState::new(PeerId::random(), None);
        assert_eq!(s.reachability(), Reachability::Unknown);
        assert!(s.set_reachability(Reachability::Private));
        assert!(!s.set_reachability(Reachability::Private), "no change, no news");
        assert!(s.set_reachability(Reachability::Public));
        assert_eq!(s.status().reachability.as_str(), "public");

        let mut declared = NatState::new(PeerId::random(), Some(Reachability::Public));
        assert_eq!(declared.reachability(), Reachability::Public);
        assert!(!declared.set_reachability(Reachability::Private));
        assert_eq!(declared.reachability(), Reachability::Public);
    }

    #[test]
    fn relays_pinned_while_reserving_and_holding() {
        let local = PeerId::random();
        let (relay, other) = (PeerId::random(), PeerId::random());
        let mut s = NatState::new(local, None);
        assert!(!s.is_pinned(&relay));
        let listener = ListenerId::next();
        s.reserving(relay, listener);
        assert!(s.is_pinned(&relay) && s.has_relay(&relay));
        assert!(!s.may_reserve(&relay, Instant::now()));
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

        let now = Instant::now();
        let other_listener = ListenerId::next();
        s.reserving(other, other_listener);
        assert_eq!(s.listener_closed(ListenerId::next(), now), None, "not a relay's");
        assert_eq!(s.listener_closed(other_listener, now), Some(other));
        assert!(!s.is_pinned(&other));
        assert!(!s.may_reserve(&other, now), "asked again only after a while");
        assert!(s.may_reserve(&other, now + RELAY_RETRY));
        s.relay_reconnected(&other);
        assert!(s.may_reserve(&other, now), "a relay reconnected to is asked at once");
        assert!(
            s.may_reserve(&relay, now),
            "a relay whose addresses went is asked again"
        );
    }

    #[test]
    fn relays_are_wanted_while_private_or_unknown_too_long_without_inbound() {
        let mut s = NatState::new(PeerId::random(), None);
        let now = Instant::now();
        assert!(!s.wants_relays(now));
        assert!(s.wants_relays(now + UNKNOWN_GRACE));
        assert!(s.serves_dht(), "unknown: serves until found private");
        s.set_reachability(Reachability::Private);
        assert!(s.wants_relays(Instant::now()));
        assert!(!s.serves_dht());
        s.add_relayed(&circuit(&PeerId::random(), 1));
        assert!(s.serves_dht(), "reachable through its relay");
        s.set_reachability(Reachability::Public);
        assert!(!s.wants_relays(Instant::now() + UNKNOWN_GRACE));

        let mut reached = NatState::new(PeerId::random(), None);
        let addr = "/ip4/192.0.2.9/tcp/1".parse().unwrap();
        reached.connected(PeerId::random(), ConnectionId::new_unchecked(1), &addr, true);
        assert!(
            !reached.wants_relays(now + UNKNOWN_GRACE),
            "someone reached it directly"
        );

        let forced = NatState::new(PeerId::random(), Some(Reachability::Private));
        assert!(forced.wants_relays(now));
    }

    #[test]
    fn a_peer_shows_its_direct_connection_and_falls_back_to_the_relayed_one() {
        let (relay, peer) = (PeerId::random(), PeerId::random());
        let mut s = NatState::new(PeerId::random(), None);
        let relayed = circuit(&relay, 5).with(Protocol::P2p(peer));
        let direct: Multiaddr = "/ip4/192.0.2.7/udp/9/quic-v1".parse().unwrap();
        let (c1, c2) = (ConnectionId::new_unchecked(1), ConnectionId::new_unchecked(2));
        assert_eq!(s.connected(peer, c1, &relayed, false), relayed);
        assert!(s.is_pinned(&peer), "a hole punch runs on a new relayed connection");
        assert_eq!(s.connected(peer, c2, &direct, false), direct);
        assert_eq!(s.by_connection().get(&(Connection::Direct, "quic")), Some(&1));
        s.punch_ended(&peer);
        assert_eq!(s.closed(&peer, c2), Some(relayed.clone()));
        assert_eq!(s.by_connection().get(&(Connection::Relayed, "quic")), Some(&1));
        assert_eq!(s.closed(&peer, c1), None);
        assert!(s.by_connection().is_empty());
        assert!(!s.is_pinned(&peer));
    }

    #[test]
    fn served_and_punching_peers_are_pinned() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut s = NatState::new(PeerId::random(), None);
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
