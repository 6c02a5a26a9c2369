//! Which addresses learned from other peers this node dials.
//!
//! Identify and Kademlia hand the node addresses that any peer, stranger or not, chose
//! to announce. Dialled unfiltered, they turn the node into a scanner of its own LAN, of
//! loopback services and of link-local neighbours on a stranger's word. [`DialPolicy`]
//! (a pure function of the address and the node's own config) decides; [`DialFilter`]
//! applies it to every address Kademlia supplies for a dial.
//!
//! The rule: unspecified, multicast, broadcast and reserved addresses are never dialled.
//! Loopback, private (RFC 1918, CGNAT 100.64/10, IPv6 unique-local) and link-local
//! addresses are dialled only when the node itself is configured on that kind of range
//! (a listen or seed address in it: the testnet on 127.0.0.1, a provider's PBXs on a
//! private network), when the address is a seed's, or when `net.dial_private` is set.
//! Global addresses and addresses without an IP (`/memory/N`) are dialled. The seeds
//! themselves are dialled from the config, never through this filter.
//!
//! A relayed address (`<relay address>/p2p/<relay>/p2p-circuit/p2p/<peer>`) makes the
//! node dial the relay, so the rule applies to the relay's address; a relayed address
//! without the relay's IP or peer id, or through more than one relay, is never dialled.
//! Addresses a peer asks this node to dial back (AutoNAT's server) pass
//! [`DialBackGuard`]: only the IP the peer connects from (whatever its range: a
//! provider's private network must work too), never a relayed address.

use crate::metrics::Metrics;
use libp2p::autonat;
use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::ConnectionEstablished;
use libp2p::swarm::{
    CloseConnection, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::task::{Context, Poll};

/// The kind of range an IP address is in, as far as dialling goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Never a peer: unspecified, multicast, broadcast, reserved, "this network".
    Never,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// RFC 1918, CGNAT (100.64.0.0/10), IPv6 unique-local (fc00::/7) and site-local.
    Private,
    /// Everything else.
    Global,
}

/// The scope of `ip`; an IPv4-mapped IPv6 address has its IPv4 address's scope.
pub fn scope(ip: IpAddr) -> Scope {
    match ip {
        IpAddr::V4(v4) => scope_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => scope_v4(v4),
            None => scope_v6(v6),
        },
    }
}

fn scope_v4(ip: Ipv4Addr) -> Scope {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || a == 0 || a >= 240 {
        Scope::Never
    } else if ip.is_loopback() {
        Scope::Loopback
    } else if ip.is_link_local() {
        Scope::LinkLocal
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Scope::Private
    } else {
        Scope::Global
    }
}

fn scope_v6(ip: Ipv6Addr) -> Scope {
    let first = ip.segments()[0];
    if ip.is_unspecified() || ip.is_multicast() {
        Scope::Never
    } else if ip.is_loopback() {
        Scope::Loopback
    } else if ip.is_unicast_link_local() {
        Scope::LinkLocal
    } else if ip.is_unique_local() || (first & 0xffc0) == 0xfec0 {
        Scope::Private
    } else {
        Scope::Global
    }
}

/// The first IP address of a multiaddr, if it has one.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// Decides which learned addresses are dialled (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct DialPolicy {
    /// Non-global scopes the node is configured on (its listen and seed addresses).
    scopes: HashSet<Scope>,
    /// The seeds' IPs: dialled whatever their scope.
    seed_ips: HashSet<IpAddr>,
    /// `net.dial_private`: dial every scope but [`Scope::Never`].
    dial_private: bool,
}

impl DialPolicy {
    /// The policy of a node listening on `listen` with seeds at `seeds`.
    pub fn new<'a>(
        listen: impl IntoIterator<Item = &'a Multiaddr>,
        seeds: impl IntoIterator<Item = &'a Multiaddr>,
        dial_private: bool,
    ) -> Self {
        let seed_ips: HashSet<IpAddr> = seeds.into_iter().filter_map(ip_of).collect();
        let scopes = listen
            .into_iter()
            .filter_map(ip_of)
            .chain(seed_ips.iter().copied())
            .map(scope)
            .filter(|s| !matches!(s, Scope::Never | Scope::Global))
            .collect();
        Self {
            scopes,
            seed_ips,
            dial_private,
        }
    }

    /// Whether a learned `addr` may be dialled.
    pub fn allows(&self, addr: &Multiaddr) -> bool {
        let circuits = addr.iter().filter(|p| matches!(p, Protocol::P2pCircuit)).count();
        if circuits > 1 || (circuits == 1 && (crate::net::nat::relay_of(addr).is_none() || ip_of(addr).is_none())) {
            return false;
        }
        let Some(ip) = ip_of(addr) else {
            return true;
        };
        match scope(ip) {
            Scope::Never => false,
            Scope::Global => true,
            s => self.dial_private || self.seed_ips.contains(&ip) || self.scopes.contains(&s),
        }
    }
}

/// A behaviour (Kademlia) whose addresses for outgoing dials pass a [`DialPolicy`]
/// first; everything else is the inner behaviour's. Dereferences to the inner one.
pub struct DialFilter<B> {
    /// The wrapped behaviour.
    inner: B,
    /// What may be dialled.
    policy: Arc<DialPolicy>,
    /// Counts the addresses dropped.
    metrics: Arc<Metrics>,
}

impl<B> DialFilter<B> {
    /// `inner` with its dial addresses filtered by `policy`.
    pub fn new(inner: B, policy: Arc<DialPolicy>, metrics: Arc<Metrics>) -> Self {
        Self { inner, policy, metrics }
    }

    /// The policy applied.
    pub fn policy(&self) -> Arc<DialPolicy> {
        self.policy.clone()
    }
}

impl<B> std::ops::Deref for DialFilter<B> {
    type Target = B;
    fn deref(&self) -> &B {
        &self.inner
    }
}

impl<B> std::ops::DerefMut for DialFilter<B> {
    fn deref_mut(&mut self) -> &mut B {
        &mut self.inner
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for DialFilter<B> {
    type ConnectionHandler = B::ConnectionHandler;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner.handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_inbound_connection(id, peer, local, remote)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        let mut out = self
            .inner
            .handle_pending_outbound_connection(id, peer, addresses, role)?;
        let before = out.len();
        out.retain(|a| self.policy.allows(a));
        let dropped = before - out.len();
        if dropped > 0 {
            tracing::debug!(?peer, dropped, "learned addresses not dialled (dial policy)");
            self.metrics.dial_addresses_filtered.inc_by(dropped as u64);
        }
        Ok(out)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_outbound_connection(id, peer, addr, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event)
    }

    fn on_connection_handler_event(&mut self, peer: PeerId, id: ConnectionId, event: THandlerOutEvent<Self>) {
        self.inner.on_connection_handler_event(peer, id, event)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}

/// A dial-back refused by [`DialBackGuard`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("dial-back to {addr} refused: not the asking peer's IP")]
pub struct DialBackRefused {
    /// The address asked for.
    pub addr: Multiaddr,
}

/// AutoNAT's server dials back whatever address a peer asks it to test (the v2 protocol
/// only makes the peer send some data first when the address is not the one it
/// connects from). Unguarded, any peer could have this node dial any host and port.
/// This wrapper lets a dial-back through only to the IP of one of the asking peer's
/// direct connections (the peer, or the NAT it is behind: nobody else). It also closes each
/// dial-back connection once its test is answered: gossipsub and the other protocols
/// would keep it open for good, and two nodes testing each other would soon fill their
/// connections-per-peer bound.
pub struct DialBackGuard {
    /// The AutoNAT server.
    inner: autonat::v2::server::Behaviour,
    /// The remote IPs of each peer's direct connections.
    peer_ips: HashMap<PeerId, HashMap<ConnectionId, IpAddr>>,
    /// Dial-backs the server asked for and the swarm has not yet handed to the guard.
    dialbacks: HashMap<ConnectionId, Option<PeerId>>,
    /// Dial-back connections let through (pending or open), with their peer.
    open: HashMap<ConnectionId, PeerId>,
    /// Dial-back connections to close.
    to_close: VecDeque<(PeerId, ConnectionId)>,
}

impl DialBackGuard {
    /// The AutoNAT server's dials checked against the peers' IPs.
    pub fn new(inner: autonat::v2::server::Behaviour) -> Self {
        Self {
            inner,
            peer_ips: HashMap::new(),
            dialbacks: HashMap::new(),
            open: HashMap::new(),
            to_close: VecDeque::new(),
        }
    }

    /// Whether a dial-back to `addr` for `peer` may go out.
    fn allows(&self, peer: Option<PeerId>, addr: &Multiaddr) -> bool {
        let (Some(peer), Some(ip)) = (peer, ip_of(addr)) else {
            return false;
        };
        let at_peer = self
            .peer_ips
            .get(&peer)
            .is_some_and(|ips| ips.values().any(|i| *i == ip));
        at_peer && scope(ip) != Scope::Never && !addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
    }
}

impl NetworkBehaviour for DialBackGuard {
    type ConnectionHandler = THandler<autonat::v2::server::Behaviour>;
    type ToSwarm = autonat::v2::server::Event;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner.handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_inbound_connection(id, peer, local, remote)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(client) = self.dialbacks.remove(&id) {
            if let Some(bad) = addresses.iter().find(|a| !self.allows(client, a)) {
                tracing::debug!(?client, addr = %bad, "AutoNAT dial-back refused");
                return Err(ConnectionDenied::new(DialBackRefused { addr: bad.clone() }));
            }
            if let Some(client) = client {
                self.open.insert(id, client);
            }
        }
        self.inner.handle_pending_outbound_connection(id, peer, addresses, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_outbound_connection(id, peer, addr, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match &event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            }) if !endpoint.is_relayed() && !self.open.contains_key(connection_id) => {
                if let Some(ip) = ip_of(endpoint.get_remote_address()) {
                    self.peer_ips.entry(*peer_id).or_default().insert(*connection_id, ip);
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id, connection_id, ..
            }) => {
                self.open.remove(connection_id);
                if let Some(ips) = self.peer_ips.get_mut(peer_id) {
                    ips.remove(connection_id);
                    if ips.is_empty() {
                        self.peer_ips.remove(peer_id);
                    }
                }
            }
            FromSwarm::DialFailure(f) => {
                self.dialbacks.remove(&f.connection_id);
                self.open.remove(&f.connection_id);
            }
            _ => {}
        }
        self.inner.on_swarm_event(event)
    }

    fn on_connection_handler_event(&mut self, peer: PeerId, id: ConnectionId, event: THandlerOutEvent<Self>) {
        self.inner.on_connection_handler_event(peer, id, event)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some((peer_id, id)) = self.to_close.pop_front() {
            return Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection: CloseConnection::One(id),
            });
        }
        let event = self.inner.poll(cx);
        match &event {
            Poll::Ready(ToSwarm::Dial { opts }) => {
                self.dialbacks.insert(opts.connection_id(), opts.get_peer_id());
            }
            // The test is answered: its dial-back connections have done their work.
            Poll::Ready(ToSwarm::GenerateEvent(e)) => {
                let done: Vec<ConnectionId> = self
                    .open
                    .iter()
                    .filter(|(_, p)| **p == e.client)
                    .map(|(c, _)| *c)
                    .collect();
                for id in done {
                    self.open.remove(&id);
                    self.to_close.push_back((e.client, id));
                }
                cx.waker().wake_by_ref();
            }
            _ => {}
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn scopes_of_the_special_ranges() {
        let cases = [
            ("0.0.0.0", Scope::Never),
            ("0.1.2.3", Scope::Never),
            ("224.0.0.1", Scope::Never),
            ("255.255.255.255", Scope::Never),
            ("240.0.0.1", Scope::Never),
            ("127.0.0.1", Scope::Loopback),
            ("127.8.9.10", Scope::Loopback),
            ("169.254.1.1", Scope::LinkLocal),
            ("10.1.2.3", Scope::Private),
            ("172.16.0.1", Scope::Private),
            ("172.31.255.255", Scope::Private),
            ("172.32.0.1", Scope::Global),
            ("192.168.1.1", Scope::Private),
            ("100.64.0.1", Scope::Private),
            ("100.127.255.255", Scope::Private),
            ("100.128.0.1", Scope::Global),
            ("203.0.113.5", Scope::Global),
            ("::", Scope::Never),
            ("ff02::1", Scope::Never),
            ("::1", Scope::Loopback),
            ("fe80::1", Scope::LinkLocal),
            ("fd00::1", Scope::Private),
            ("fc00::1", Scope::Private),
            ("fec0::1", Scope::Private),
            ("2001:db8::1", Scope::Global),
            ("::ffff:10.0.0.1", Scope::Private),
            ("::ffff:127.0.0.1", Scope::Loopback),
            ("::ffff:8.8.8.8", Scope::Global),
        ];
        for (ip, want) in cases {
            assert_eq!(scope(ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn a_public_node_dials_only_global_addresses_and_its_seeds() {
        let listen = [a("/ip4/0.0.0.0/tcp/7710"), a("/ip6/::/tcp/7710")];
        let seeds = [
            a("/ip4/198.51.100.7/tcp/7710"),
            a("/ip4/10.9.9.9/tcp/7710/p2p/12D3KooWGzR5iPWw8Fv1CEkYPQxVBJJJy8NXnG96vTuzMu2p9ny9"),
        ];
        let p = DialPolicy::new(&listen, &seeds, false);
        assert!(p.allows(&a("/ip4/203.0.113.5/tcp/7710")));
        assert!(p.allows(&a("/ip6/2001:db8::5/tcp/7710")));
        assert!(p.allows(&a("/ip4/10.9.9.9/tcp/4001")), "a seed's IP, any port");
        // A seed on a private network makes the node part of one: other private
        // addresses are its neighbours, loopback is still not.
        assert!(p.allows(&a("/ip4/10.1.1.1/tcp/7710")));
        assert!(p.allows(&a("/ip4/192.168.0.5/tcp/7710")));
        for bad in [
            "/ip4/127.0.0.1/tcp/7710",
            "/ip4/169.254.3.4/tcp/7710",
            "/ip6/::1/tcp/7710",
            "/ip6/fe80::1/tcp/7710",
            "/ip4/0.0.0.0/tcp/7710",
            "/ip4/239.1.1.1/tcp/7710",
            "/ip6/::/tcp/7710",
        ] {
            assert!(!p.allows(&a(bad)), "{bad}");
        }

        let public_only = DialPolicy::new(&listen, &[a("/ip4/198.51.100.7/tcp/7710")], false);
        for bad in [
            "/ip4/10.1.1.1/tcp/7710",
            "/ip4/100.64.0.9/tcp/7710",
            "/ip6/fd12::1/tcp/7710",
        ] {
            assert!(!public_only.allows(&a(bad)), "{bad}");
        }
        assert!(public_only.allows(&a("/ip4/198.51.100.7/tcp/7710")));
    }

    #[test]
    fn a_node_on_loopback_dials_loopback_and_dial_private_dials_all_but_never() {
        // The testnet: every node on 127.0.0.1.
        let p = DialPolicy::new(&[a("/ip4/127.0.0.1/tcp/0")], &[], false);
        assert!(p.allows(&a("/ip4/127.0.0.1/tcp/40001")));
        assert!(!p.allows(&a("/ip4/10.0.0.1/tcp/40001")));
        assert!(!p.allows(&a("/ip4/0.0.0.0/tcp/40001")));

        let all = DialPolicy::new(&[a("/ip4/0.0.0.0/tcp/7710")], &[], true);
        assert!(all.allows(&a("/ip4/192.168.1.1/tcp/7710")));
        assert!(all.allows(&a("/ip6/fe80::1/tcp/7710")));
        assert!(!all.allows(&a("/ip4/0.0.0.0/tcp/7710")));
        assert!(!all.allows(&a("/ip6/ff02::1/tcp/7710")));
    }

    #[test]
    fn addresses_without_an_ip_pass() {
        let p = DialPolicy::new(&[a("/memory/1")], &[], false);
        assert!(p.allows(&a("/memory/42")));
        assert!(p.allows(&a(
            "/memory/42/p2p/12D3KooWGzR5iPWw8Fv1CEkYPQxVBJJJy8NXnG96vTuzMu2p9ny9"
        )));
    }

    #[test]
    fn relayed_addresses_pass_as_their_relay_and_only_through_one() {
        let relay = PeerId::random();
        let target = PeerId::random();
        let policy = DialPolicy::new(&[a("/ip4/0.0.0.0/tcp/7710")], &[a("/ip4/10.0.0.1/tcp/7710")], false);
        let via = |host: &str| a(&format!("/ip4/{host}/tcp/7710/p2p/{relay}/p2p-circuit/p2p/{target}"));
        assert!(policy.allows(&via("192.0.2.1")), "through a public relay");
        assert!(policy.allows(&via("10.0.0.1")), "through a seed");
        assert!(!policy.allows(&via("169.254.0.9")), "through a link-local host");
        assert!(
            !policy.allows(&a(&format!("/p2p-circuit/p2p/{target}"))),
            "no relay named"
        );
        assert!(
            !policy.allows(&a(&format!("/ip4/192.0.2.1/tcp/1/p2p-circuit/p2p/{target}"))),
            "no relay id"
        );
        let twice = a(&format!(
            "/ip4/192.0.2.1/tcp/1/p2p/{relay}/p2p-circuit/p2p/{target}/p2p-circuit/p2p/{target}"
        ));
        assert!(!policy.allows(&twice), "through two relays");
    }

    #[test]
    fn dial_backs_go_only_to_the_asking_peers_ip() {
        use libp2p::core::ConnectedPoint;
        let mut guard = DialBackGuard::new(autonat::v2::server::Behaviour::default());
        let (peer, stranger) = (PeerId::random(), PeerId::random());
        let endpoint = ConnectedPoint::Listener {
            local_addr: a("/ip4/192.0.2.1/tcp/7710"),
            send_back_addr: a("/ip4/198.51.100.4/tcp/40000"),
        };
        guard.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
            peer_id: peer,
            connection_id: ConnectionId::new_unchecked(1),
            endpoint: &endpoint,
            failed_addresses: &[],
            other_established: 0,
        }));
        assert!(guard.allows(Some(peer), &a("/ip4/198.51.100.4/udp/7710/quic-v1")));
        assert!(
            !guard.allows(Some(peer), &a("/ip4/198.51.100.5/tcp/7710")),
            "another host"
        );
        assert!(
            !guard.allows(Some(stranger), &a("/ip4/198.51.100.4/tcp/7710")),
            "not its IP"
        );
        assert!(!guard.allows(None, &a("/ip4/198.51.100.4/tcp/7710")));
        // A peer on a private network (behind a provider's NAT) is tested too.
        let lan = ConnectedPoint::Listener {
            local_addr: a("/ip4/10.0.0.1/tcp/7710"),
            send_back_addr: a("/ip4/10.9.8.7/tcp/40000"),
        };
        guard.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
            peer_id: stranger,
            connection_id: ConnectionId::new_unchecked(2),
            endpoint: &lan,
            failed_addresses: &[],
            other_established: 0,
        }));
        assert!(guard.allows(Some(stranger), &a("/ip4/10.9.8.7/tcp/7710")));
        assert!(!guard.allows(Some(stranger), &a("/ip4/10.9.8.8/tcp/7710")));

        // Through the swarm's hook: a dial the guarded behaviour asked for is denied.
        let id = ConnectionId::new_unchecked(7);
        guard.dialbacks.insert(id, Some(peer));
        let denied =
            guard.handle_pending_outbound_connection(id, Some(peer), &[a("/ip4/203.0.113.1/tcp/22")], Endpoint::Dialer);
        assert!(denied.is_err());
        let other = ConnectionId::new_unchecked(8);
        let passed =
            guard.handle_pending_outbound_connection(other, None, &[a("/ip4/203.0.113.1/tcp/22")], Endpoint::Dialer);
        assert!(passed.is_ok(), "other dials are not the guard's business");
    }
}
