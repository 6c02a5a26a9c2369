//! The swarm and its behaviours: the transports (TCP under noise + yamux, QUIC, and
//! circuit relay v2 circuits under noise + yamux, all with a handshake timeout; or the
//! in-process memory transport), the connection bounds, NAT traversal (AutoNAT v2
//! client and server, relay client and server, DCUtR hole punching, UPnP) and one
//! configuration of gossipsub, Kademlia, identify, ping, sync and the refused-peer list.
//! Nothing here runs; the event loop drives what this builds.
//!
//! NAT traversal is off on the memory transport: in-process nodes all reach each other,
//! and the testnet measures the mesh, not the traversal.

use super::dial::{self, DialBackGuard, DialFilter, DialPolicy};
use super::nat::RelayConfig;
use super::sync::{self, SyncCodec};
use super::{guard, Limits, NetConfig, Transport, ID_PROTOCOL, KAD_PROTOCOL, TOPIC};
use crate::engine::MAX_ENVELOPE_BYTES;
use crate::metrics::Metrics;
use libp2p::allow_block_list::{self, BlockedPeers};
use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, MemoryTransport};
use libp2p::core::{upgrade::Version, Transport as _};
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::identify;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::memory_connection_limits;
use libp2p::ping;
#[cfg(feature = "quic")]
use libp2p::quic;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{autonat, dcutr, relay, upnp};
use libp2p::{identity::Keypair, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

/// Gossipsub's IP-colocation penalty: each peer beyond
/// [`IP_COLOCATION_THRESHOLD`] on one IP costs every peer there `weight × excess²`, so
/// a dozen sybils on one address score below the gossip threshold (-10) and leave the
/// mesh, and a few more are graylisted (-80).
const IP_COLOCATION_WEIGHT: f64 = -5.0;
/// Peers on one IP before the colocation penalty starts.
const IP_COLOCATION_THRESHOLD: f64 = 10.0;

/// The combined behaviour. The derived behaviour asks its fields in order and stops at
/// the first that denies a connection, so the bounds come first: a connection they deny
/// is never seen by the protocols.
#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    /// Peers refused by fault injection (testnets split the mesh with it).
    pub(super) refused: allow_block_list::Behaviour<BlockedPeers>,
    /// Established and pending connection counts (seeds and trusted peers bypass).
    pub(super) limits: connection_limits::Behaviour,
    /// No new connections while the process uses too much memory (off on the memory
    /// transport, where many nodes share one process).
    pub(super) memory: Toggle<memory_connection_limits::Behaviour>,
    /// Established incoming connections per source IP.
    pub(super) per_ip: guard::Behaviour,
    /// Reservations on relays and the circuits through them (off on memory).
    pub(super) relay_client: Toggle<relay::client::Behaviour>,
    /// This node as a relay for others (`[relay] serve`; enabled by the event loop
    /// only while the node is publicly reachable).
    pub(super) relay: Toggle<relay::Behaviour>,
    /// Asks peers to dial this node's candidate addresses back (AutoNAT v2).
    pub(super) autonat: Toggle<autonat::v2::client::Behaviour>,
    /// Dials peers' candidate addresses back for them, only at the IP they connect
    /// from (see [`DialBackGuard`]).
    pub(super) autonat_server: Toggle<DialBackGuard>,
    /// Hole punching: upgrades a relayed connection to a direct one.
    pub(super) dcutr: Toggle<dcutr::Behaviour>,
    /// Port mappings on the router (`[node] upnp`).
    pub(super) upnp: Toggle<upnp::tokio::Behaviour>,
    /// Sightings gossip, validated by the engine before anything is forwarded.
    pub(super) gossipsub: gossipsub::Behaviour,
    /// Peer discovery over our own DHT; addresses learned from others pass the dial
    /// policy before they are dialled.
    pub(super) kad: DialFilter<kad::Behaviour<MemoryStore>>,
    /// Agent, protocols and listen addresses of each peer (feeds Kademlia).
    pub(super) identify: identify::Behaviour,
    /// Liveness and round-trip times.
    pub(super) ping: ping::Behaviour,
    /// The catch-up protocol (see [`sync`]).
    pub(super) sync: request_response::Behaviour<SyncCodec>,
}

/// What building a transport or a behaviour can fail with.
pub type BehaviourError = Box<dyn std::error::Error + Send + Sync>;

/// The default handshake timeout of [`memory_transport`].
const MEMORY_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The in-process transport under noise + yamux: what `Transport::Memory` runs on, and
/// the testnet's bare-gossipsub baseline too, so both are measured over the same stack.
pub fn memory_transport(key: &Keypair) -> Result<Boxed<(PeerId, StreamMuxerBox)>, BehaviourError> {
    memory_transport_with(key, MEMORY_HANDSHAKE_TIMEOUT)
}

/// [`memory_transport`] with the given handshake timeout.
fn memory_transport_with(
    key: &Keypair,
    handshake: Duration,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, BehaviourError> {
    Ok(MemoryTransport::default()
        .upgrade(Version::V1)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .timeout(handshake)
        .boxed())
}

/// TCP under noise + yamux. A connection that has not finished its handshake within
/// `handshake` is dropped: without it (`SwarmBuilder::with_tcp` sets none) a silent
/// socket holds a pending-connection slot forever, and 32 of them lock everyone out.
fn tcp_transport(key: &Keypair, handshake: Duration) -> Result<Boxed<(PeerId, StreamMuxerBox)>, BehaviourError> {
    Ok(tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .timeout(handshake)
        .boxed())
}

/// QUIC (its own TLS 1.3 handshake and streams), `handshake` bounding the handshake as
/// on TCP.
#[cfg(feature = "quic")]
fn quic_transport(key: &Keypair, handshake: Duration) -> Boxed<(PeerId, StreamMuxerBox)> {
    let mut config = quic::Config::new(key);
    config.handshake_timeout = handshake;
    quic::tokio::Transport::new(config)
        .map(|(peer, conn), _| (peer, StreamMuxerBox::new(conn)))
        .boxed()
}

/// The daemon's transports: TCP, QUIC, and circuits through relays (each under noise +
/// yamux, as libp2p's relay client expects).
fn network_transport(
    key: &Keypair,
    handshake: Duration,
    relayed: relay::client::Transport,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, BehaviourError> {
    let relayed = relayed
        .upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .timeout(handshake)
        .boxed();
    let direct = tcp_transport(key, handshake)?;
    // Without the `quic` feature, QUIC addresses are not supported: listening on one is
    // a warning (see `net::start`), dialling one fails over to the peer's others.
    #[cfg(feature = "quic")]
    let direct = direct
        .or_transport(quic_transport(key, handshake))
        .map(|either, _| either.into_inner())
        .boxed();
    Ok(direct
        .or_transport(relayed)
        .map(|either, _| either.into_inner())
        .boxed())
}

/// The swarm over the configured transport, with the node's behaviours.
pub(super) fn build_swarm(cfg: &NetConfig, metrics: Arc<Metrics>) -> anyhow::Result<Swarm<Behaviour>> {
    let limits = &cfg.limits;
    // Connections without streams go after the idle timeout; gossipsub's streams keep
    // gossip peers' connections, and the event loop closes idle strangers beyond the
    // peers the node wants.
    let idle_timeout = limits.idle_timeout;
    let idle = move |c: libp2p::swarm::Config| c.with_idle_connection_timeout(idle_timeout);
    let handshake = limits.handshake_timeout;
    let builder = libp2p::SwarmBuilder::with_existing_identity(cfg.keypair.clone()).with_tokio();
    let swarm = match cfg.transport {
        Transport::Tcp => {
            let (relayed, relay_client) = relay::client::new(cfg.keypair.public().to_peer_id());
            builder
                .with_other_transport(|key| network_transport(key, handshake, relayed))?
                .with_behaviour(|key| behaviour(key, cfg, metrics, Some(relay_client)))?
                .with_swarm_config(idle)
                .build()
        }
        Transport::Memory => builder
            .with_other_transport(|key| memory_transport_with(key, handshake))?
            .with_behaviour(|key| behaviour(key, cfg, metrics, None))?
            .with_swarm_config(idle)
            .build(),
    };
    Ok(swarm)
}

/// The connection bounds of `limits`; `bypass` (seeds, trusted peers) is not bounded.
fn connection_limits(limits: &Limits, bypass: &HashSet<PeerId>) -> connection_limits::Behaviour {
    let mut b = connection_limits::Behaviour::new(
        ConnectionLimits::default()
            .with_max_established_incoming(Some(limits.max_incoming))
            .with_max_established_outgoing(Some(limits.max_outgoing))
            .with_max_established(Some(limits.max_connections))
            // Two more than configured: AutoNAT v2 tests an address on a new connection
            // to a peer that is connected already (twice, after a simultaneous dial), one
            // each way when two nodes test each other, and the dial-back connection stays
            // until the idle timeout; without room for them such tests fail.
            .with_max_established_per_peer(Some(limits.max_per_peer.saturating_add(2)))
            .with_max_pending_incoming(Some(limits.max_pending_incoming))
            .with_max_pending_outgoing(Some(limits.max_pending_outgoing)),
    );
    for peer in bypass {
        b.bypass_peer_id(peer);
    }
    b
}

/// The relay server's bounds from `[relay]`; libp2p's rate limits (per peer, one
/// reservation and one circuit every 2 minutes with a burst of 30 an hour; per IP,
/// twice that) stay.
fn relay_config(r: &RelayConfig) -> relay::Config {
    relay::Config {
        max_reservations: r.max_reservations,
        max_reservations_per_peer: r.max_reservations_per_peer,
        reservation_duration: r.reservation_duration,
        max_circuits: r.max_circuits,
        max_circuits_per_peer: r.max_circuits_per_peer,
        max_circuit_duration: r.circuit_duration,
        max_circuit_bytes: r.circuit_bytes,
        ..relay::Config::default()
    }
}

/// The node's behaviours, one configuration whatever the transport; NAT traversal
/// only with a `relay_client` (the network transports).
fn behaviour(
    key: &Keypair,
    cfg: &NetConfig,
    metrics: Arc<Metrics>,
    relay_client: Option<relay::client::Behaviour>,
) -> Result<Behaviour, BehaviourError> {
    let peer_id = key.public().to_peer_id();
    let limits = &cfg.limits;
    let bypass: HashSet<PeerId> = cfg
        .seeds
        .iter()
        .map(|(p, _)| *p)
        .chain(cfg.trusted.iter().copied())
        .collect();
    let memory = (cfg.transport == Transport::Tcp && limits.max_memory_percent > 0).then(|| {
        memory_connection_limits::Behaviour::with_max_percentage(f64::from(limits.max_memory_percent) / 100.0)
    });
    let seed_addrs: Vec<&Multiaddr> = cfg.seeds.iter().map(|(_, a)| a).collect();
    let policy = Arc::new(DialPolicy::new(
        &cfg.listen,
        seed_addrs.iter().copied(),
        limits.dial_private,
    ));
    let gs_config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| MessageId::from(Sha256::digest(&m.data).to_vec()))
        .max_transmit_size(MAX_ENVELOPE_BYTES + 1024)
        .heartbeat_initial_delay(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_secs(1))
        .build()?;
    let mut gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gs_config)?;
    gossipsub.with_peer_score(
        score_params(colocation_whitelist(&cfg.listen, &seed_addrs)),
        gossipsub::PeerScoreThresholds::default(),
    )?;
    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config.set_query_timeout(Duration::from_secs(30));
    // Bootstrapping is driven by the event loop's discovery timer (quietly, once there is
    // someone to ask) rather than by kad's own timer, which warns on a lone node.
    kad_config.set_periodic_bootstrap_interval(None);
    let mut kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
    // A node serves the DHT once others can reach it (publicly, or through a relay):
    // the event loop switches the mode with reachability. On the memory transport every
    // node is reachable.
    kad.set_mode(Some(if relay_client.is_some() {
        kad::Mode::Client
    } else {
        kad::Mode::Server
    }));
    let nat = relay_client.is_some();
    let relay = (nat && cfg.nat.relay.serve && !cfg.nat.relay_only).then(|| {
        let mut relay = relay::Behaviour::new(peer_id, relay_config(&cfg.nat.relay));
        // Not on its own external addresses (a relayed address is one too): the event
        // loop enables it while the node is publicly reachable.
        relay.set_status(Some(relay::Status::Disable));
        relay
    });
    let autonat = nat.then(autonat::v2::client::Behaviour::default);
    let autonat_server = nat.then(|| DialBackGuard::new(autonat::v2::server::Behaviour::default()));
    let dcutr = nat.then(|| dcutr::Behaviour::new(peer_id));
    let upnp = (nat && cfg.nat.upnp).then(upnp::tokio::Behaviour::default);
    // No address cache: identify would hand every address a peer announced to the
    // swarm for dials, around the dial policy. The event loop gives Kademlia the ones
    // the policy allows.
    let identify = identify::Behaviour::new(
        identify::Config::new(ID_PROTOCOL.into(), key.public())
            .with_agent_version(format!("fraudmesh/{}", env!("CARGO_PKG_VERSION")))
            .with_cache_size(0)
            // A relayed address reserved after connecting reaches the peers at once, not
            // at the next periodic identify (5 minutes later).
            .with_push_listen_addr_updates(true),
    );
    let sync = request_response::Behaviour::with_codec(
        SyncCodec::new(metrics.clone()),
        [(sync::PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(limits.sync_timeout)
            .with_max_concurrent_streams(limits.sync_streams),
    );
    Ok(Behaviour {
        refused: allow_block_list::Behaviour::default(),
        limits: connection_limits(limits, &bypass),
        memory: memory.into(),
        per_ip: guard::Behaviour::new(limits.max_incoming_per_ip, bypass),
        relay_client: relay_client.into(),
        relay: relay.into(),
        autonat: autonat.into(),
        autonat_server: autonat_server.into(),
        dcutr: dcutr.into(),
        upnp: upnp.into(),
        gossipsub,
        kad: DialFilter::new(kad, policy, metrics),
        identify,
        ping: ping::Behaviour::new(ping::Config::new()),
        sync,
    })
}

/// IPs exempt from the colocation penalty: loopback (a testnet runs every node on
/// 127.0.0.1), the node's own specific listen IPs and the seeds' IPs (operators put a
/// provider's PBXs behind one NAT there). The whitelist holds single IPs, not ranges.
fn colocation_whitelist(listen: &[Multiaddr], seeds: &[&Multiaddr]) -> HashSet<IpAddr> {
    let mut out: HashSet<IpAddr> = [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)].into();
    out.extend(
        listen
            .iter()
            .chain(seeds.iter().copied())
            .filter_map(dial::ip_of)
            .filter(|ip| !ip.is_unspecified()),
    );
    out
}

/// Peer scoring: penalise invalid messages hard; no penalty for quiet mesh peers (a
/// quiet mesh is the normal state); many peers behind one address are penalised (see
/// [`IP_COLOCATION_WEIGHT`]) unless it is on the `whitelist`.
fn score_params(whitelist: HashSet<IpAddr>) -> gossipsub::PeerScoreParams {
    let topic = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.5,
        ..Default::default()
    };
    let mut params = gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: IP_COLOCATION_WEIGHT,
        ip_colocation_factor_threshold: IP_COLOCATION_THRESHOLD,
        ip_colocation_factor_whitelist: whitelist,
        ..Default::default()
    };
    params.topics.insert(IdentTopic::new(TOPIC).hash(), topic);
    params
}
