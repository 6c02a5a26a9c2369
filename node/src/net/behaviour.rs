//! The swarm and its behaviours: the transports under noise + yamux, and one
//! configuration of gossipsub, Kademlia, identify, ping, sync and the refused-peer list,
//! whatever the transport. Nothing here runs; the event loop drives what this builds.

use super::sync::{self, SyncCodec};
use super::{Transport, ID_PROTOCOL, KAD_PROTOCOL, MAX_INBOUND_SYNC, SYNC_TIMEOUT, TOPIC};
use crate::engine::MAX_ENVELOPE_BYTES;
use crate::metrics::Metrics;
use libp2p::allow_block_list::{self, BlockedPeers};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, MemoryTransport};
use libp2p::core::{upgrade::Version, Transport as _};
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::identify;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::ping;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{identity::Keypair, noise, tcp, yamux, PeerId, StreamProtocol, Swarm};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// The combined behaviour.
#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    /// Peers refused by fault injection (testnets split the mesh with it). First, so
    /// that a refused connection is denied before any other behaviour records it (the
    /// derived behaviour asks its fields in order and stops at the first denial).
    pub(super) refused: allow_block_list::Behaviour<BlockedPeers>,
    /// Sightings gossip, validated by the engine before anything is forwarded.
    pub(super) gossipsub: gossipsub::Behaviour,
    /// Peer discovery over our own DHT.
    pub(super) kad: kad::Behaviour<MemoryStore>,
    /// Agent, protocols and listen addresses of each peer (feeds Kademlia).
    pub(super) identify: identify::Behaviour,
    /// Liveness and round-trip times.
    pub(super) ping: ping::Behaviour,
    /// The catch-up protocol (see [`sync`]).
    pub(super) sync: request_response::Behaviour<SyncCodec>,
}

/// What building a transport or a behaviour can fail with.
pub type BehaviourError = Box<dyn std::error::Error + Send + Sync>;

/// The in-process transport under noise + yamux: what `Transport::Memory` runs on, and
/// the testnet's bare-gossipsub baseline too, so both are measured over the same stack.
pub fn memory_transport(key: &Keypair) -> Result<Boxed<(PeerId, StreamMuxerBox)>, BehaviourError> {
    Ok(MemoryTransport::default()
        .upgrade(Version::V1)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .boxed())
}

/// The swarm over `transport`, with the node's behaviours.
pub(super) fn build_swarm(
    keypair: Keypair,
    transport: Transport,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Swarm<Behaviour>> {
    // Connections are the mesh: keep them while both sides are up.
    let idle = |c: libp2p::swarm::Config| c.with_idle_connection_timeout(Duration::from_secs(3600));
    let builder = libp2p::SwarmBuilder::with_existing_identity(keypair).with_tokio();
    let swarm = match transport {
        Transport::Tcp => builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_behaviour(|key| behaviour(key, metrics))?
            .with_swarm_config(idle)
            .build(),
        Transport::Memory => builder
            .with_other_transport(memory_transport)?
            .with_behaviour(|key| behaviour(key, metrics))?
            .with_swarm_config(idle)
            .build(),
    };
    Ok(swarm)
}

/// The node's behaviours, one configuration whatever the transport.
fn behaviour(key: &Keypair, metrics: Arc<Metrics>) -> Result<Behaviour, BehaviourError> {
    let peer_id = key.public().to_peer_id();
    let gs_config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| MessageId::from(Sha256::digest(&m.data).to_vec()))
        .max_transmit_size(MAX_ENVELOPE_BYTES + 1024)
        .heartbeat_initial_delay(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_secs(1))
        .build()?;
    let mut gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gs_config)?;
    gossipsub.with_peer_score(score_params(), gossipsub::PeerScoreThresholds::default())?;
    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config.set_query_timeout(Duration::from_secs(30));
    // Bootstrapping is driven by the event loop's discovery timer (quietly, once there is
    // someone to ask) rather than by kad's own timer, which warns on a lone node.
    kad_config.set_periodic_bootstrap_interval(None);
    let mut kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
    // Every node listens and serves the DHT; fraudmesh nodes are not light clients.
    kad.set_mode(Some(kad::Mode::Server));
    let identify = identify::Behaviour::new(
        identify::Config::new(ID_PROTOCOL.into(), key.public())
            .with_agent_version(format!("fraudmesh/{}", env!("CARGO_PKG_VERSION"))),
    );
    let sync = request_response::Behaviour::with_codec(
        SyncCodec::new(metrics),
        [(sync::PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(SYNC_TIMEOUT)
            .with_max_concurrent_streams(MAX_INBOUND_SYNC * 2),
    );
    Ok(Behaviour {
        refused: allow_block_list::Behaviour::default(),
        gossipsub,
        kad,
        identify,
        ping: ping::Behaviour::new(ping::Config::new()),
        sync,
    })
}

/// Peer scoring: penalise invalid messages hard; no penalty for quiet mesh peers (a
/// quiet mesh is the normal state) or for many peers behind one address (a testnet, a
/// provider's NAT).
fn score_params() -> gossipsub::PeerScoreParams {
    let topic = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.5,
        ..Default::default()
    };
    let mut params = gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    };
    params.topics.insert(IdentTopic::new(TOPIC).hash(), topic);
    params
}
