//! The per-source-IP bound on established incoming connections, which libp2p's
//! `connection_limits` does not have.
//!
//! Connections are counted by source: the IPv4 address, or the /64 of an IPv6 address
//! (one host usually holds a whole /64, so counting single IPv6 addresses would bound
//! nothing). Peers in the bypass set (the configured seeds and trusted peers) are
//! neither checked nor counted: a testnet of many nodes on 127.0.0.1 that trust each
//! other, or a provider's PBXs behind one NAT, connect freely, while strangers from one
//! address get at most `net.max_incoming_per_ip` connections between them. Loopback is
//! not exempt: a local user is a stranger too.

use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint};
use libp2p::swarm::behaviour::ConnectionEstablished;
use libp2p::swarm::{
    dummy, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr};
use std::task::{Context, Poll};

/// A connection refused because its source already holds the most allowed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("at most {limit} established incoming connections from one source ({source_ip})")]
pub struct PerIpExceeded {
    /// The limit.
    pub limit: u32,
    /// The source (IPv6: its /64).
    pub source_ip: IpAddr,
}

/// The source an incoming connection is counted under: its IPv4 address or the /64 of
/// its IPv6 address (an IPv4-mapped IPv6 address counts as the IPv4 one). A relayed
/// connection has none: its address is the relay's, shared by everyone it relays, and
/// the relay bounds its circuits per peer itself.
pub fn source_key(remote: &Multiaddr) -> Option<IpAddr> {
    if remote
        .iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
    {
        return None;
    }
    match super::dial::ip_of(remote)? {
        IpAddr::V6(v6) => Some(match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        }),
        v4 => Some(v4),
    }
}

/// Refuses an established incoming connection from a source that already holds
/// `max_per_ip` of them (see the module doc).
pub struct Behaviour {
    /// Most established incoming connections per source.
    max_per_ip: u32,
    /// Peers neither checked nor counted.
    bypass: HashSet<PeerId>,
    /// Counted connections per source.
    per_source: HashMap<IpAddr, u32>,
    /// The source of each counted connection.
    counted: HashMap<ConnectionId, IpAddr>,
}

impl Behaviour {
    /// At most `max_per_ip` incoming connections per source, except from `bypass`.
    pub fn new(max_per_ip: u32, bypass: impl IntoIterator<Item = PeerId>) -> Self {
        Self {
            max_per_ip,
            bypass: bypass.into_iter().collect(),
            per_source: HashMap::new(),
            counted: HashMap::new(),
        }
    }

    /// Established incoming connections counted for `source` (see [`source_key`]).
    pub fn count(&self, source: IpAddr) -> u32 {
        self.per_source.get(&source).copied().unwrap_or(0)
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.bypass.contains(&peer) {
            if let Some(source_ip) = source_key(remote) {
                if self.count(source_ip) >= self.max_per_ip {
                    return Err(ConnectionDenied::new(PerIpExceeded {
                        limit: self.max_per_ip,
                        source_ip,
                    }));
                }
            }
        }
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint: ConnectedPoint::Listener { send_back_addr, .. },
                ..
            }) if !self.bypass.contains(&peer_id) => {
                if let Some(source) = source_key(send_back_addr) {
                    *self.per_source.entry(source).or_default() += 1;
                    self.counted.insert(connection_id, source);
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                if let Some(source) = self.counted.remove(&connection_id) {
                    if let Some(n) = self.per_source.get_mut(&source) {
                        *n -= 1;
                        if *n == 0 {
                            self.per_source.remove(&source);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        libp2p::core::util::unreachable(event)
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_slash_64s() {
        assert_eq!(
            source_key(&a("/ip4/192.0.2.1/tcp/1")),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            source_key(&a("/ip6/2001:db8:1:2:aaaa::1/tcp/1")),
            Some("2001:db8:1:2::".parse().unwrap())
        );
        assert_eq!(
            source_key(&a("/ip6/::ffff:192.0.2.1/tcp/1")),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(source_key(&a("/memory/5")), None);
        let relay = PeerId::random();
        let relayed = a(&format!("/ip4/192.0.2.1/tcp/1/p2p/{relay}/p2p-circuit"));
        assert_eq!(source_key(&relayed), None, "the relay's IP is not the peer's");
    }

    /// Establishes an incoming connection from `remote` as the swarm would: the check,
    /// then the event. Returns whether it was accepted.
    fn connect(b: &mut Behaviour, id: ConnectionId, peer: PeerId, remote: &str) -> bool {
        let local = a("/ip4/127.0.0.1/tcp/7710");
        let remote = a(remote);
        if b.handle_established_inbound_connection(id, peer, &local, &remote)
            .is_err()
        {
            return false;
        }
        let endpoint = ConnectedPoint::Listener {
            local_addr: local,
            send_back_addr: remote,
        };
        b.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
            peer_id: peer,
            connection_id: id,
            endpoint: &endpoint,
            failed_addresses: &[],
            other_established: 0,
        }));
        true
    }

    fn close(b: &mut Behaviour, id: ConnectionId, peer: PeerId, remote: &str) {
        let endpoint = ConnectedPoint::Listener {
            local_addr: a("/ip4/127.0.0.1/tcp/7710"),
            send_back_addr: a(remote),
        };
        b.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
            peer_id: peer,
            connection_id: id,
            endpoint: &endpoint,
            cause: None,
            remaining_established: 0,
        }));
    }

    #[test]
    fn strangers_from_one_source_are_bounded_and_bypass_peers_are_not() {
        let trusted = PeerId::random();
        let mut b = Behaviour::new(2, [trusted]);
        let ids: Vec<ConnectionId> = (0..8).map(|_| ConnectionId::new_unchecked(rand::random())).collect();
        let from = "/ip6/2001:db8::1/tcp/5000";
        let same_64 = "/ip6/2001:db8::ffff/tcp/5001";
        assert!(connect(&mut b, ids[0], PeerId::random(), from));
        assert!(connect(&mut b, ids[1], PeerId::random(), same_64));
        assert!(
            !connect(&mut b, ids[2], PeerId::random(), from),
            "a third from the same /64"
        );
        assert!(connect(&mut b, ids[3], PeerId::random(), "/ip6/2001:db8:0:1::1/tcp/1"));
        // Trusted peers and seeds are neither refused nor counted.
        assert!(connect(&mut b, ids[4], trusted, from));
        assert!(connect(&mut b, ids[5], trusted, from));
        assert_eq!(b.count("2001:db8::".parse().unwrap()), 2);
        // A closed connection frees its place.
        let p = PeerId::random();
        close(&mut b, ids[0], p, from);
        assert_eq!(b.count("2001:db8::".parse().unwrap()), 1);
        assert!(connect(&mut b, ids[6], PeerId::random(), from));
        // Closing a connection that was never counted changes nothing.
        close(&mut b, ids[4], trusted, from);
        close(&mut b, ids[2], p, from);
        assert_eq!(b.count("2001:db8::".parse().unwrap()), 2);
        // Connections without an IP (the memory transport) are not bounded here.
        for _ in 0..3 {
            let id = ConnectionId::new_unchecked(rand::random());
            assert!(connect(&mut b, id, PeerId::random(), "/memory/9"));
        }
    }
}
