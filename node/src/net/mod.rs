//! The network: one task owns the libp2p swarm (TCP + noise + yamux; gossipsub,
//! Kademlia, identify, ping). Everyone else holds a [`NetHandle`].
//!
//! Gossip runs with `validate_messages()`: gossipsub forwards nothing until the engine
//! has given each message exactly one verdict. Messages are unsigned at the gossipsub
//! layer (each sighting carries its own signature) and their id is SHA-256 of the data,
//! so any libp2p implementation following `proto/` can join. The node's libp2p key is
//! its sighting key: reporter and sending peer have the same name.

pub mod sync;

use crate::engine::{EngineHandle, Verdict, MAX_ENVELOPE_BYTES};
use crate::metrics::{Metrics, ResultLabel};
use anyhow::Context;
use fraudmesh::proto::{SyncRequest, SyncResponse};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use libp2p::allow_block_list::{self, BlockedPeers};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::identify;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::multiaddr::Protocol;
use libp2p::ping;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identity::Keypair, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sync::{Misbehaved, SessionError, SyncCodec};
use tokio::sync::{mpsc, oneshot, watch};

/// The gossipsub topic of sightings.
pub const TOPIC: &str = "fraudmesh/v1/sightings";
/// The Kademlia protocol: our own DHT, never the public IPFS one.
pub const KAD_PROTOCOL: &str = "/fraudmesh/kad/1.0.0";
/// The identify protocol version string.
pub const ID_PROTOCOL: &str = "/fraudmesh/id/1.0.0";
/// Gossip messages awaiting the engine's verdict; beyond this new ones are ignored.
const MAX_PENDING_VALIDATIONS: usize = 1024;
/// Local envelopes kept for retry while no peer is subscribed yet.
const MAX_UNSENT: usize = 1024;
/// How long an unsent local envelope is retried.
const UNSENT_TTL: Duration = Duration::from_secs(120);
/// How often the node looks for more peers when it has few.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(15);
/// Below this many connections, discovery runs.
const WANTED_PEERS: usize = 8;
/// How often a sync session starts with a random peer (besides one on every connect).
const SYNC_INTERVAL: Duration = Duration::from_secs(30);
/// Least time between two sessions with the same peer.
const SYNC_PEER_GAP: Duration = Duration::from_secs(10);
/// Inbound sync requests answered at once (one per peer); beyond this, new ones are
/// dropped.
const MAX_INBOUND_SYNC: usize = 8;
/// How long a peer that misbehaved is refused.
const BAN: Duration = Duration::from_secs(600);
/// A sync request without an answer after this is a failure.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// The combined behaviour.
#[derive(NetworkBehaviour)]
struct Behaviour {
    /// Peers refused by fault injection (testnets split the mesh with it). First, so
    /// that a refused connection is denied before any other behaviour records it (the
    /// derived behaviour asks its fields in order and stops at the first denial).
    refused: allow_block_list::Behaviour<BlockedPeers>,
    gossipsub: gossipsub::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
}

/// A connected peer, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Its peer id.
    pub peer_id: String,
    /// The address of the connection.
    pub address: String,
    /// The agent it announced through identify.
    pub agent: Option<String>,
    /// Whether it subscribed to the sightings topic.
    pub gossip: bool,
    /// Last ping round trip, ms.
    pub rtt_ms: Option<u64>,
}

enum NetCommand {
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    /// Replace the set of refused peers; answers the new set.
    Refuse {
        peers: Vec<PeerId>,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    /// A sync session's request to its peer.
    SyncRequest {
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, SessionError>>,
    },
    /// A sync session ended.
    SessionDone {
        peer: PeerId,
        result: Result<sync::Outcome, SessionError>,
    },
}

/// Sends a session's requests through the swarm task.
struct NetRequester {
    peer: PeerId,
    tx: mpsc::Sender<NetCommand>,
}

impl sync::Requester for NetRequester {
    async fn request(&self, request: SyncRequest) -> Result<SyncResponse, SessionError> {
        let (reply, rx) = oneshot::channel();
        let gone = || SessionError::Failed("network stopped".into());
        self.tx
            .send(NetCommand::SyncRequest {
                peer: self.peer,
                request,
                reply,
            })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// A cloneable handle to the network task.
#[derive(Clone)]
pub struct NetHandle {
    tx: mpsc::Sender<NetCommand>,
    listen: watch::Receiver<Vec<Multiaddr>>,
}

impl NetHandle {
    /// Connected peers.
    pub async fn peers(&self) -> anyhow::Result<Vec<PeerInfo>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(NetCommand::Peers(reply))
            .await
            .map_err(|_| anyhow::anyhow!("network stopped"))?;
        rx.await.map_err(|_| anyhow::anyhow!("network stopped"))
    }

    /// Fault injection: refuse exactly `peers` from now on (connections both ways are
    /// closed and denied); peers no longer in the set are dialled again at once, as when
    /// a broken link comes back. Returns the refused set.
    pub async fn refuse(&self, peers: Vec<PeerId>) -> anyhow::Result<Vec<PeerId>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(NetCommand::Refuse { peers, reply })
            .await
            .map_err(|_| anyhow::anyhow!("network stopped"))?;
        rx.await.map_err(|_| anyhow::anyhow!("network stopped"))
    }

    /// The addresses the swarm listens on (without `/p2p`).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen.borrow().clone()
    }

    /// Waits until the swarm listens on at least `n` addresses, or `timeout` passes.
    pub async fn wait_listening(&mut self, n: usize, timeout: Duration) -> Vec<Multiaddr> {
        let _ = tokio::time::timeout(timeout, self.listen.wait_for(|l| l.len() >= n)).await;
        self.listen_addrs()
    }
}

/// What the network is started with.
pub struct NetConfig {
    /// The node key (same as the sighting key).
    pub keypair: Keypair,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Seed peers.
    pub seeds: Vec<(PeerId, Multiaddr)>,
    /// The transport.
    pub transport: Transport,
}

/// The transport under noise + yamux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP: the daemon.
    Tcp,
    /// libp2p's in-process memory transport (`/memory/N` addresses): many node stacks in
    /// one process (`fraudmesh-testnet inproc`).
    Memory,
}

type BehaviourError = Box<dyn std::error::Error + Send + Sync>;

fn build_swarm(keypair: Keypair, transport: Transport, metrics: Arc<Metrics>) -> anyhow::Result<Swarm<Behaviour>> {
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
            .with_other_transport(|key| -> Result<_, BehaviourError> {
                use libp2p::core::{transport::MemoryTransport, upgrade::Version, Transport as _};
                Ok(MemoryTransport::default()
                    .upgrade(Version::V1)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default())
                    .boxed())
            })?
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
    // Bootstrapping is driven by the discovery timer below (quietly, once there is
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

/// Starts listening and dialling and spawns the network task. Local envelopes to publish
/// arrive on `publish`; gossip goes to `engine` for a verdict.
pub fn start(
    cfg: NetConfig,
    engine: EngineHandle,
    mut publish: mpsc::Receiver<Vec<u8>>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(NetHandle, tokio::task::JoinHandle<()>)> {
    let mut swarm = build_swarm(cfg.keypair, cfg.transport, metrics.clone())?;
    let topic = IdentTopic::new(TOPIC);
    swarm.behaviour_mut().gossipsub.subscribe(&topic)?;
    for addr in &cfg.listen {
        swarm
            .listen_on(addr.clone())
            .with_context(|| format!("listening on {addr}"))?;
    }
    for (peer, addr) in &cfg.seeds {
        swarm.behaviour_mut().kad.add_address(peer, addr.clone());
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(%addr, error = %e, "dialling seed failed");
        }
    }
    let (cmd_tx, mut cmd_rx) = mpsc::channel(64);
    let session_tx = cmd_tx.clone();
    let (listen_tx, listen_rx) = watch::channel(Vec::new());
    let seeds = cfg.seeds.clone();
    let task = tokio::spawn(async move {
        let mut pending: FuturesUnordered<BoxFuture<'static, (MessageId, PeerId, Verdict)>> = FuturesUnordered::new();
        let mut unsent: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        let mut peers: HashMap<PeerId, PeerInfo> = HashMap::new();
        let mut discovery = tokio::time::interval(DISCOVERY_INTERVAL);
        let mut sync_timer = tokio::time::interval(SYNC_INTERVAL);
        let mut requests: HashMap<OutboundRequestId, oneshot::Sender<Result<SyncResponse, SessionError>>> =
            HashMap::new();
        type Answer = (
            PeerId,
            ResponseChannel<SyncResponse>,
            Result<Option<SyncResponse>, Misbehaved>,
        );
        let mut answers: FuturesUnordered<BoxFuture<'static, Answer>> = FuturesUnordered::new();
        // Peers with an answer in work.
        let mut answering: HashSet<PeerId> = HashSet::new();
        let mut syncing: HashSet<PeerId> = HashSet::new();
        let mut last_sync: HashMap<PeerId, Instant> = HashMap::new();
        let mut banned: HashMap<PeerId, Instant> = HashMap::new();
        let mut bootstrapped = false;
        // Peers whose session waits for the running one to end: only peers this node
        // stopped refusing (they hold what the partition kept from it). Any other dial
        // that finds a session running skips its own: one session catches a node up, and
        // queueing one per dial had a node in a 100-node mesh sync with every peer its
        // Kademlia queries touched.
        let mut queued: VecDeque<PeerId> = VecDeque::new();
        let mut resync: HashSet<PeerId> = HashSet::new();
        // Starts a session with `peer`, unless one ran moments ago with it. One runs at a
        // time: that bounds the work and keeps two peers from sending the same records.
        let start_session = |peer: PeerId,
                             queue_if_busy: bool,
                             syncing: &mut HashSet<PeerId>,
                             last_sync: &mut HashMap<PeerId, Instant>,
                             queued: &mut VecDeque<PeerId>| {
            if last_sync.get(&peer).is_some_and(|t| t.elapsed() < SYNC_PEER_GAP) {
                return;
            }
            if !syncing.is_empty() {
                if queue_if_busy && !queued.contains(&peer) && queued.len() < WANTED_PEERS * 4 {
                    queued.push_back(peer);
                }
                return;
            }
            syncing.insert(peer);
            last_sync.insert(peer, Instant::now());
            let (engine, metrics, tx) = (engine.clone(), metrics.clone(), session_tx.clone());
            tokio::spawn(async move {
                let requester = NetRequester { peer, tx: tx.clone() };
                let result = sync::run_session(&engine, &requester, &metrics).await;
                let _ = tx.send(NetCommand::SessionDone { peer, result }).await;
            });
        };
        let mut retry = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(cmd) = cmd_rx.recv() => match cmd {
                    NetCommand::Peers(reply) => {
                        let mut list: Vec<PeerInfo> = peers.values().cloned().collect();
                        list.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
                        let _ = reply.send(list);
                    }
                    NetCommand::Refuse { peers: wanted, reply } => {
                        let wanted: HashSet<PeerId> = wanted.into_iter().collect();
                        let refused = swarm.behaviour().refused.blocked_peers().clone();
                        for peer in refused.difference(&wanted) {
                            swarm.behaviour_mut().refused.unblock_peer(*peer);
                            resync.insert(*peer);
                            if let Err(e) = swarm.dial(*peer) {
                                tracing::debug!(%peer, error = %e, "redialling a peer no longer refused failed");
                            }
                        }
                        for peer in wanted.difference(&refused) {
                            swarm.behaviour_mut().refused.block_peer(*peer);
                        }
                        tracing::info!(refused = wanted.len(), "fault injection: refused peers set");
                        let mut list: Vec<PeerId> = wanted.into_iter().collect();
                        list.sort();
                        let _ = reply.send(list);
                    }
                    NetCommand::SyncRequest { peer, request, reply } => {
                        let id = swarm.behaviour_mut().sync.send_request(&peer, request);
                        requests.insert(id, reply);
                    }
                    NetCommand::SessionDone { peer, result } => {
                        syncing.remove(&peer);
                        let label = match &result {
                            Ok(o) => {
                                tracing::debug!(%peer, rounds = o.rounds, fetched = o.fetched, given = o.given, "sync done");
                                "ok"
                            }
                            Err(SessionError::Failed(e)) => {
                                tracing::debug!(%peer, error = %e, "sync failed");
                                "failed"
                            }
                            Err(SessionError::Misbehaved(e)) => {
                                cut_off(&mut swarm, &mut banned, &metrics, peer, e);
                                "misbehaved"
                            }
                        };
                        metrics.sync_sessions.get_or_create(&ResultLabel { result: label }).inc();
                        while syncing.is_empty() {
                            let Some(next) = queued.pop_front() else { break };
                            if swarm.is_connected(&next) {
                                start_session(next, true, &mut syncing, &mut last_sync, &mut queued);
                            }
                        }
                    }
                },
                Some((peer, channel, answer)) = answers.next(), if !answers.is_empty() => {
                    answering.remove(&peer);
                    match answer {
                        Ok(Some(resp)) => {
                            let _ = swarm.behaviour_mut().sync.send_response(channel, resp);
                        }
                        Ok(None) => {}
                        Err(Misbehaved(e)) => cut_off(&mut swarm, &mut banned, &metrics, peer, &e),
                    }
                }
                _ = sync_timer.tick() => {
                    let candidates: Vec<PeerId> = swarm.connected_peers().filter(|p| !syncing.contains(p)).copied().collect();
                    if !candidates.is_empty() {
                        let pick = candidates[rand::random::<usize>() % candidates.len()];
                        start_session(pick, false, &mut syncing, &mut last_sync, &mut queued);
                    }
                    banned.retain(|peer, since| {
                        let keep = since.elapsed() < BAN;
                        if !keep {
                            swarm.behaviour_mut().gossipsub.remove_blacklisted_peer(peer);
                        }
                        keep
                    });
                }
                Some(data) = publish.recv() => {
                    publish_or_queue(&mut swarm, &topic, data, &mut unsent);
                }
                Some((id, source, verdict)) = pending.next(), if !pending.is_empty() => {
                    let acceptance = match verdict {
                        Verdict::Accept => MessageAcceptance::Accept,
                        Verdict::Ignore => MessageAcceptance::Ignore,
                        Verdict::Reject => MessageAcceptance::Reject,
                    };
                    swarm.behaviour_mut().gossipsub.report_message_validation_result(&id, &source, acceptance);
                }
                _ = retry.tick(), if !unsent.is_empty() => {
                    let queued: Vec<_> = unsent.drain(..).filter(|(t, _)| t.elapsed() < UNSENT_TTL).collect();
                    for (t, data) in queued {
                        if !try_publish(&mut swarm, &topic, data.clone()) {
                            unsent.push_back((t, data));
                        }
                    }
                }
                _ = discovery.tick() => {
                    if swarm.connected_peers().count() < WANTED_PEERS {
                        for (peer, addr) in &seeds {
                            if !swarm.is_connected(peer) {
                                let _ = swarm.dial(addr.clone());
                            }
                        }
                        // Errors only mean nobody is known yet; the seeds are redialled above.
                        let _ = swarm.behaviour_mut().kad.bootstrap();
                        swarm.behaviour_mut().kad.get_closest_peers(PeerId::random());
                    }
                }
                event = swarm.select_next_some() => match event {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        tracing::info!(%address, "listening");
                        listen_tx.send_modify(|l| l.push(address));
                    }
                    SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } if banned.contains_key(&peer_id) => {
                        tracing::debug!(%peer_id, address = %endpoint.get_remote_address(), "refusing a banned peer");
                        let _ = swarm.disconnect_peer_id(peer_id);
                    }
                    SwarmEvent::ConnectionEstablished { peer_id, endpoint, num_established, .. } => {
                        tracing::debug!(%peer_id, "connected");
                        // The dialling side catches up (a node that starts or rejoins dials its
                        // seeds); both sides starting at once would send everything twice.
                        if num_established.get() == 1 && endpoint.is_dialer() {
                            let healed = resync.remove(&peer_id);
                            start_session(peer_id, healed, &mut syncing, &mut last_sync, &mut queued);
                        }
                        if !bootstrapped && seeds.iter().any(|(p, _)| *p == peer_id) {
                            // Learn the rest of the mesh from the first seed right away;
                            // once, not per seed: each bootstrap walks the whole DHT, and
                            // a node with six seeds at start dialled everyone six times.
                            bootstrapped = true;
                            let _ = swarm.behaviour_mut().kad.bootstrap();
                        }
                        peers.entry(peer_id).or_insert_with(|| PeerInfo {
                            peer_id: peer_id.to_string(),
                            address: endpoint.get_remote_address().to_string(),
                            agent: None,
                            gossip: false,
                            rtt_ms: None,
                        });
                        metrics.peers.set(swarm.connected_peers().count() as i64);
                    }
                    SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                        tracing::debug!(%peer_id, "disconnected");
                        peers.remove(&peer_id);
                        metrics.peers.set(swarm.connected_peers().count() as i64);
                    }
                    SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                        tracing::debug!(?peer_id, %error, "dial failed");
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => match e {
                        gossipsub::Event::Message { propagation_source, message_id, message } => {
                            if pending.len() >= MAX_PENDING_VALIDATIONS {
                                swarm.behaviour_mut().gossipsub.report_message_validation_result(
                                    &message_id, &propagation_source, MessageAcceptance::Ignore);
                                metrics.reject("validation_backlog");
                                continue;
                            }
                            metrics.gossip_bytes_received.inc_by(message.data.len() as u64);
                            let engine = engine.clone();
                            pending.push(async move {
                                let v = engine.gossip(message.data).await;
                                (message_id, propagation_source, v)
                            }.boxed());
                        }
                        gossipsub::Event::Subscribed { peer_id, .. } => {
                            if let Some(p) = peers.get_mut(&peer_id) { p.gossip = true; }
                        }
                        gossipsub::Event::Unsubscribed { peer_id, .. } => {
                            if let Some(p) = peers.get_mut(&peer_id) { p.gossip = false; }
                        }
                        _ => {}
                    },
                    SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                        if let Some(p) = peers.get_mut(&peer_id) { p.agent = Some(info.agent_version.clone()); }
                        if info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL) {
                            for addr in info.listen_addrs {
                                if is_dialable(&addr) {
                                    swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                                }
                            }
                        }
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => match e {
                        request_response::Event::Message { peer, message: request_response::Message::Request { request, channel, .. }, .. } => {
                            // Sessions ask one thing at a time: a peer gets one answer in
                            // work, and all peers together MAX_INBOUND_SYNC.
                            if answers.len() >= MAX_INBOUND_SYNC || !answering.insert(peer) {
                                tracing::debug!(%peer, "sync request beyond the bounds; dropped");
                                metrics.reject("sync_request_dropped");
                                continue;
                            }
                            let engine = engine.clone();
                            answers.push(async move {
                                let answer = sync::answer(&engine, request).await;
                                (peer, channel, answer)
                            }.boxed());
                        }
                        request_response::Event::Message { message: request_response::Message::Response { request_id, response }, .. } => {
                            if let Some(reply) = requests.remove(&request_id) {
                                let _ = reply.send(Ok(response));
                            }
                        }
                        request_response::Event::OutboundFailure { request_id, error, .. } => {
                            if let Some(reply) = requests.remove(&request_id) {
                                let e = match error {
                                    request_response::OutboundFailure::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                                        SessionError::Misbehaved(format!("malformed answer: {e}"))
                                    }
                                    other => SessionError::Failed(other.to_string()),
                                };
                                let _ = reply.send(Err(e));
                            }
                        }
                        request_response::Event::InboundFailure { peer, error, .. } => {
                            tracing::debug!(%peer, %error, "inbound sync request failed");
                        }
                        request_response::Event::ResponseSent { .. } => {}
                    },
                    SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, result: Ok(rtt), .. })) => {
                        if let Some(p) = peers.get_mut(&peer) { p.rtt_ms = Some(rtt.as_millis() as u64); }
                    }
                    // Dials in flight count too: discovery reports a burst of peers at once,
                    // and dialling each while the first dials are pending connected a
                    // 50-node testnet completely (49 peers each, seven copies of every
                    // message) instead of to about WANTED_PEERS each.
                    SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, is_new_peer: true, .. }))
                        if !swarm.is_connected(&peer) && wants_more_peers(&swarm) =>
                    {
                        let _ = swarm.dial(peer);
                    }
                    _ => {}
                },
            }
        }
        tracing::debug!("network stopped");
    });
    Ok((
        NetHandle {
            tx: cmd_tx,
            listen: listen_rx,
        },
        task,
    ))
}

/// Cuts off a peer that broke the protocol: disconnect, and refuse it (connections and
/// gossip) for [`BAN`].
fn cut_off(
    swarm: &mut Swarm<Behaviour>,
    banned: &mut HashMap<PeerId, Instant>,
    metrics: &Metrics,
    peer: PeerId,
    why: &str,
) {
    tracing::warn!(%peer, reason = why, "cutting off a misbehaving peer");
    metrics.sync_misbehaving.inc();
    banned.insert(peer, Instant::now());
    swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
    let _ = swarm.disconnect_peer_id(peer);
}

/// Whether connected peers plus dials in flight are still below [`WANTED_PEERS`].
fn wants_more_peers(swarm: &Swarm<Behaviour>) -> bool {
    let pending = swarm.network_info().connection_counters().num_pending_outgoing() as usize;
    swarm.connected_peers().count() + pending < WANTED_PEERS
}

/// Unspecified addresses (0.0.0.0) are not dialable by others.
fn is_dialable(addr: &Multiaddr) -> bool {
    !addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// Publishes; true when done (or a duplicate, which is success).
fn try_publish(swarm: &mut Swarm<Behaviour>, topic: &IdentTopic, data: Vec<u8>) -> bool {
    match swarm.behaviour_mut().gossipsub.publish(topic.clone(), data) {
        Ok(_) | Err(gossipsub::PublishError::Duplicate) => true,
        Err(gossipsub::PublishError::NoPeersSubscribedToTopic) | Err(gossipsub::PublishError::AllQueuesFull(_)) => {
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "publish failed");
            true
        }
    }
}

fn publish_or_queue(
    swarm: &mut Swarm<Behaviour>,
    topic: &IdentTopic,
    data: Vec<u8>,
    unsent: &mut VecDeque<(Instant, Vec<u8>)>,
) {
    if !try_publish(swarm, topic, data.clone()) {
        tracing::debug!("no gossip peer yet; will retry publishing");
        if unsent.len() >= MAX_UNSENT {
            unsent.pop_front();
        }
        unsent.push_back((Instant::now(), data));
    }
}

/// The libp2p keypair of an identity (the same ed25519 key).
pub fn keypair(identity: &fraudmesh::identity::Identity) -> anyhow::Result<Keypair> {
    let mut secret = identity.secret_bytes();
    Keypair::ed25519_from_bytes(&mut secret).context("converting the identity to a libp2p key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use fraudmesh::identity::{Identity, PublicKey};

    #[test]
    fn the_core_names_keys_exactly_as_libp2p_does() {
        for seed in [[0u8; 32], [7; 32], [255; 32]] {
            let id = Identity::from_secret(seed);
            let libp2p_id = keypair(&id).unwrap().public().to_peer_id();
            assert_eq!(id.public().peer_id(), libp2p_id.to_string());
            assert_eq!(libp2p_id.to_string().parse::<PublicKey>().unwrap(), id.public());
        }
    }
}
