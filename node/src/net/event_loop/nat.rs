//! The loop's side of NAT traversal (the state is [`NatState`]): it learns
//! reachability from AutoNAT and from confirmed external addresses, reserves relayed
//! addresses on connected seeds while the node is not reachable (at most
//! [`MAX_RELAYS`]), gives them up once it is, serves as a relay only while publicly
//! reachable, switches Kademlia between client and server mode, counts hole punches,
//! and publishes the status the API shows.
//!
//! How long it takes: AutoNAT v2 probes a candidate address every 5 s once a peer that
//! serves AutoNAT is connected and identify has reported an observed address, so a node
//! knows within ~10 s of connecting to a seed; a reservation is one round trip to the
//! relay; DCUtR starts as soon as a relayed connection is up and takes one round trip
//! plus the simultaneous dials.

use super::EventLoop;
use crate::metrics::{ConnectionLabel, ResultLabel, StateLabel};
use crate::net::behaviour::BehaviourEvent;
use crate::net::nat::{self, Reachability, MAX_RELAYS};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{autonat, dcutr, kad, relay, upnp, Multiaddr};
use std::time::Instant;

impl EventLoop {
    /// At start: the operator's external addresses are confirmed (reachability is then
    /// public for good) and the status is published.
    pub(super) fn nat_start(&mut self, external: &[Multiaddr]) {
        for addr in external {
            tracing::info!(%addr, "external address (configured)");
            self.swarm.add_external_address(addr.clone());
        }
        self.nat_changed();
    }

    /// Swarm events NAT traversal follows (before the loop's own handling of them).
    pub(super) fn nat_observe(&mut self, event: &SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } if self.nat.add_relayed(address) => {
                tracing::info!(%address, "relayed address held");
                self.nat_changed();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.nat.remove_relayed(address);
                self.nat_changed();
            }
            SwarmEvent::ListenerClosed {
                listener_id, reason, ..
            } => {
                if let Some(relay) = self.nat.listener_closed(*listener_id, Instant::now()) {
                    tracing::info!(%relay, ?reason, "relay reservation ended");
                    self.nat_changed();
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } if !is_relayed(address) => {
                tracing::info!(%address, "external address confirmed");
                self.set_reachability(Reachability::Public);
            }
            SwarmEvent::ExternalAddrExpired { address }
                if !is_relayed(address) && !self.swarm.external_addresses().any(|a| !is_relayed(a)) =>
            {
                self.set_reachability(Reachability::Unknown);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.nat.connected(
                    *peer_id,
                    *connection_id,
                    endpoint.get_remote_address(),
                    !endpoint.is_dialer(),
                );
                if self.seeds.iter().any(|(p, _)| p == peer_id) {
                    if !endpoint.is_relayed() {
                        self.nat.relay_reconnected(peer_id);
                    }
                    self.reserve_relays();
                }
                self.count_peers_by_connection();
            }
            SwarmEvent::ConnectionClosed {
                peer_id, connection_id, ..
            } => {
                if let Some(shown) = self.nat.closed(peer_id, *connection_id) {
                    if let Some(p) = self.peers.get_mut(peer_id) {
                        p.address = shown.to_string();
                        p.connection = nat::Connection::of(&shown).as_str().into();
                        p.transport = nat::transport_of(&shown).into();
                    }
                }
                self.count_peers_by_connection();
            }
            _ => {}
        }
    }

    /// Events of the NAT traversal behaviours.
    pub(super) fn on_nat_behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Autonat(e) => self.on_autonat(e),
            BehaviourEvent::AutonatServer(e) => {
                tracing::debug!(client = %e.client, addr = %e.tested_addr, ok = e.result.is_ok(), "AutoNAT dial-back");
            }
            BehaviourEvent::RelayClient(e) => {
                tracing::debug!(?e, "relay client");
            }
            BehaviourEvent::Relay(e) => self.on_relay_server(e),
            BehaviourEvent::Dcutr(dcutr::Event { remote_peer_id, result }) => {
                self.nat.punch_ended(&remote_peer_id);
                let result = match result {
                    Ok(_) => {
                        tracing::info!(peer = %remote_peer_id, "hole punch succeeded: direct connection");
                        "success"
                    }
                    Err(e) => {
                        tracing::info!(peer = %remote_peer_id, error = %e, "hole punch failed: staying relayed");
                        "failure"
                    }
                };
                self.metrics.hole_punches.get_or_create(&ResultLabel { result }).inc();
            }
            BehaviourEvent::Upnp(e) => match e {
                upnp::Event::NewExternalAddr { external_addr, .. } => {
                    tracing::info!(%external_addr, "UPnP port mapping")
                }
                upnp::Event::ExpiredExternalAddr { external_addr, .. } => {
                    tracing::info!(%external_addr, "UPnP port mapping expired")
                }
                upnp::Event::GatewayNotFound => tracing::info!("UPnP: no gateway found"),
                upnp::Event::NonRoutableGateway => tracing::info!("UPnP: the gateway is not on the public internet"),
            },
            _ => {}
        }
    }

    /// An AutoNAT v2 result: a confirmed address makes the node public (the swarm
    /// reports it as an external address); a failed one makes it private unless another
    /// address is confirmed.
    fn on_autonat(&mut self, e: autonat::v2::client::Event) {
        match e.result {
            Ok(()) => tracing::debug!(addr = %e.tested_addr, server = %e.server, "AutoNAT: reachable"),
            Err(err) => {
                tracing::debug!(addr = %e.tested_addr, server = %e.server, error = %err, "AutoNAT: not reachable");
                if !self.swarm.external_addresses().any(|a| !is_relayed(a)) {
                    self.set_reachability(Reachability::Private);
                }
            }
        }
    }

    /// The relay server's reservations and circuits.
    fn on_relay_server(&mut self, e: relay::Event) {
        match e {
            relay::Event::ReservationReqAccepted { src_peer_id, .. } => self.nat.served(src_peer_id),
            relay::Event::ReservationClosed { src_peer_id } | relay::Event::ReservationTimedOut { src_peer_id } => {
                self.nat.unserved(&src_peer_id)
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => {
                tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, "relaying a circuit");
                self.nat.circuit_opened();
            }
            relay::Event::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error,
            } => {
                tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, ?error, "relayed circuit closed");
                self.nat.circuit_closed();
            }
            relay::Event::ReservationReqDenied { src_peer_id, status } => {
                tracing::debug!(peer = %src_peer_id, ?status, "relay reservation denied");
            }
            relay::Event::CircuitReqDenied {
                src_peer_id,
                dst_peer_id,
                status,
            } => {
                tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, ?status, "relay circuit denied");
            }
            _ => {}
        }
        self.publish_nat_metrics();
    }

    /// Takes a reachability verdict and acts on a change.
    fn set_reachability(&mut self, r: Reachability) {
        if self.nat.set_reachability(r) {
            tracing::info!(reachability = r.as_str(), "reachability changed");
            self.nat_changed();
        }
    }

    /// Every discovery round: reserve relays if the node has waited long enough.
    pub(super) fn nat_tick(&mut self) {
        self.reserve_relays();
        self.publish_nat_metrics();
    }

    /// Reserves relayed addresses on connected seeds while the node wants them (up to
    /// [`MAX_RELAYS`]); gives them all up once it is publicly reachable.
    fn reserve_relays(&mut self) {
        if !self.swarm.behaviour().relay_client.is_enabled() {
            return;
        }
        let now = Instant::now();
        if !self.nat.wants_relays(now) {
            if self.nat.reachability() == Reachability::Public && self.nat.relay_count() > 0 {
                tracing::info!("publicly reachable: giving up relayed addresses");
                for listener in self.nat.take_listeners() {
                    self.swarm.remove_listener(listener);
                }
            }
            return;
        }
        for (relay, addr) in self.seeds.clone() {
            if self.nat.relay_count() >= MAX_RELAYS {
                break;
            }
            if !self.swarm.is_connected(&relay) || !self.nat.may_reserve(&relay, now) {
                continue;
            }
            let circuit = addr.with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    tracing::info!(%relay, "reserving a relayed address");
                    self.nat.reserving(relay, listener);
                }
                Err(e) => tracing::warn!(address = %circuit, error = %e, "listening through a relay failed"),
            }
        }
    }

    /// After any NAT change: relay server on while public, Kademlia mode, reservations,
    /// the API's status and the metrics.
    fn nat_changed(&mut self) {
        let public = self.nat.reachability() == Reachability::Public;
        if let Some(relay) = self.swarm.behaviour_mut().relay.as_mut() {
            relay.set_status(Some(if public {
                relay::Status::Enable
            } else {
                relay::Status::Disable
            }));
        }
        if self.swarm.behaviour().relay_client.is_enabled() {
            let mode = if self.nat.serves_dht() {
                kad::Mode::Server
            } else {
                kad::Mode::Client
            };
            if self.swarm.behaviour().kad.mode() != mode {
                tracing::debug!(?mode, "Kademlia mode");
                self.swarm.behaviour_mut().kad.set_mode(Some(mode));
            }
        }
        self.reserve_relays();
        self.channels.nat.send_replace(self.nat.status());
        self.publish_nat_metrics();
    }

    /// The NAT gauges.
    fn publish_nat_metrics(&self) {
        let m = &self.metrics;
        for r in Reachability::ALL {
            m.reachability
                .get_or_create(&StateLabel { state: r.as_str() })
                .set(i64::from(r == self.nat.reachability()));
        }
        m.relay_reservations.set(self.nat.reservations() as i64);
        m.relay_served_reservations.set(self.nat.served_count() as i64);
        m.relay_circuits.set(self.nat.circuits() as i64);
    }

    /// `fraudmesh_peers_by_connection`.
    fn count_peers_by_connection(&self) {
        let counts = self.nat.by_connection();
        for connection in [nat::Connection::Direct, nat::Connection::Relayed] {
            for transport in ["tcp", "quic", "memory"] {
                let label = ConnectionLabel {
                    connection: connection.as_str(),
                    transport,
                };
                let n = counts.get(&(connection, transport)).copied().unwrap_or(0);
                self.metrics.peers_by_connection.get_or_create(&label).set(n);
            }
        }
    }
}

/// Whether `addr` is a relayed address.
fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}
