//! The network task: [`EventLoop`] owns the swarm and all network state, and is the
//! only code that touches either. It reacts to four kinds of input, one `select!` away
//! each: commands (from [`NetHandle`](super::NetHandle)s and sync sessions), local
//! envelopes to publish, work it started finishing (gossip verdicts, sync answers), and
//! swarm events; plus three timers (sync, discovery, publish retry). The discovery timer
//! also closes the connections of idle strangers beyond the peers the node wants (see
//! [`EventLoop::close_idle`]).
//!
//! Nothing here awaits: every handler is a plain function that changes state and asks
//! the swarm for something, and slow work (the engine's verdicts and answers, whole
//! sync sessions) runs in futures or tasks whose results come back as input.
//!
//! The loop's side of catch-up sync (starting sessions, answering requests) is in
//! [`sessions`], its per-peer bookkeeping in [`sync_peers`]; its side of NAT traversal
//! (reachability, relay reservations, hole punches) in [`nat`].

mod nat;
mod sessions;
mod sync_peers;

use super::behaviour::{Behaviour, BehaviourEvent};
use super::dial::ip_of;
use super::guard::PerIpExceeded;
use super::nat::{transport_of, Connection, NatState, NatStatus, Reachability};
use super::sync::{Misbehaved, SessionError};
use super::{
    Limits, NetCommand, PeerInfo, DISCOVERY_INTERVAL, KAD_PROTOCOL, MAX_PENDING_VALIDATIONS, MAX_SYNC_PEERS,
    MAX_UNSENT, SYNC_INTERVAL, SYNC_PEER_RETAIN, TOPIC, UNSENT_TTL, WANTED_PEERS,
};
use crate::engine::{EngineHandle, GossipVerdict};
use crate::metrics::{DeniedLabel, DirectionLabel, Metrics};
use fraudmesh::proto::SyncResponse;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId};
use libp2p::identify;
use libp2p::kad;
use libp2p::ping;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::swarm::{ConnectionDenied, DialError, ListenError, SwarmEvent};
use libp2p::{allow_block_list, connection_limits, memory_connection_limits};
use libp2p::{Multiaddr, PeerId, Swarm};
use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sync_peers::SyncPeers;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Interval;

/// A gossip message's verdict from the engine: message, the peer it came from, verdict.
type Validation = (MessageId, PeerId, GossipVerdict);

/// An inbound sync request's answer from the engine, with the peer and the channel to
/// answer on.
type Answer = (
    PeerId,
    ResponseChannel<SyncResponse>,
    Result<Option<SyncResponse>, Misbehaved>,
);

/// Where a pending outbound sync request's response goes (the session waiting for it).
type SyncReply = oneshot::Sender<Result<SyncResponse, SessionError>>;

/// The peers the loop knows from the config, and the bounds it applies.
pub(super) struct Known {
    /// Seed peers, redialled by discovery while the node has few peers.
    pub(super) seeds: Vec<(PeerId, Multiaddr)>,
    /// Trusted peers: never closed for idleness (nor are the seeds).
    pub(super) keep: HashSet<PeerId>,
    /// The network's bounds.
    pub(super) limits: Limits,
    /// Reachability fixed by the config (declared external addresses: public;
    /// `debug.relay_only`: private; the memory transport: public), else None.
    pub(super) reachability: Option<Reachability>,
    /// The operator's external addresses, confirmed at start.
    pub(super) external: Vec<Multiaddr>,
}

/// The channels the loop talks to the rest of the node through.
pub(super) struct Channels {
    /// Commands from the handles and from the sync sessions this loop spawned.
    pub(super) commands: mpsc::Receiver<NetCommand>,
    /// A sender on the command channel, given to each sync session this loop spawns.
    pub(super) sessions: mpsc::Sender<NetCommand>,
    /// Local envelopes to publish.
    pub(super) publish: mpsc::Receiver<Vec<u8>>,
    /// The loop stops when this changes (or its sender is dropped).
    pub(super) shutdown: watch::Receiver<bool>,
    /// The swarm's listen addresses, as the handles read them.
    pub(super) listen: watch::Sender<Vec<Multiaddr>>,
    /// The IP addresses of open connections' remote ends, with how many use each.
    pub(super) peer_ips: watch::Sender<HashMap<std::net::IpAddr, usize>>,
    /// Reachability and relayed addresses, as the API shows them.
    pub(super) nat: watch::Sender<NatStatus>,
}

/// The swarm and the network's state, driven by [`EventLoop::run`].
pub(super) struct EventLoop {
    /// The swarm: transports, connections, behaviours.
    swarm: Swarm<Behaviour>,
    /// The sightings topic local envelopes are published on.
    topic: IdentTopic,
    /// Seed peers, redialled by discovery while the node has few peers.
    seeds: Vec<(PeerId, Multiaddr)>,
    /// Seeds and trusted peers: never closed for idleness.
    keep: HashSet<PeerId>,
    /// How long a stranger may stay outside the mesh, not syncing, before its
    /// connection is closed while the node has more peers than it wants.
    idle_timeout: Duration,
    /// Since when each connected peer has been idle (outside the mesh, not syncing);
    /// entries go with the peer's connection.
    idle_since: HashMap<PeerId, Instant>,
    /// Gives gossip messages and sync requests their verdicts and answers.
    engine: EngineHandle,
    /// Network metrics (peers, rejects, gossip bytes, sync sessions).
    metrics: Arc<Metrics>,
    /// Commands in, envelopes in, shutdown, listen addresses out.
    channels: Channels,

    /// Gossip messages awaiting the engine's verdict (at most
    /// [`MAX_PENDING_VALIDATIONS`]).
    pending: FuturesUnordered<BoxFuture<'static, Validation>>,
    /// Local envelopes no peer could take yet, with when they arrived (at most
    /// [`MAX_UNSENT`], each retried for [`UNSENT_TTL`]).
    unsent: VecDeque<(Instant, Vec<u8>)>,
    /// Retries `unsent` (its branch is off while `unsent` is empty).
    retry: Interval,

    /// Connected peers, as [`NetHandle::peers`](super::NetHandle::peers) shows them.
    peers: HashMap<PeerId, PeerInfo>,
    /// Looks for more peers while there are fewer than [`WANTED_PEERS`].
    discovery: Interval,
    /// Whether Kademlia was bootstrapped from the first seed that connected.
    bootstrapped: bool,
    /// Peers cut off for misbehaving, with since when (refused for [`BAN`](super::BAN)).
    banned: HashMap<PeerId, Instant>,

    /// Starts a session with a random peer; also lifts expired bans.
    sync_timer: Interval,
    /// Outbound sync requests awaiting a response.
    requests: HashMap<OutboundRequestId, SyncReply>,
    /// Inbound sync requests the engine is answering (at most [`MAX_INBOUND_SYNC`](super::MAX_INBOUND_SYNC)).
    answers: FuturesUnordered<BoxFuture<'static, Answer>>,
    /// Peers with an answer in work (one each).
    answering: HashSet<PeerId>,
    /// The peer of the running session (one at a time: that bounds the work and keeps
    /// two peers from sending the same records).
    syncing: HashSet<PeerId>,
    /// When the last session with each peer started (see [`SYNC_PEER_GAP`](super::SYNC_PEER_GAP))
    /// and its budget of inbound requests; bounded, pruned on the sync timer.
    sync_peers: SyncPeers,
    /// Peers whose session waits for the running one to end: only peers this node
    /// stopped refusing (they hold what the partition kept from it). Any other dial that
    /// finds a session running skips its own: one session catches a node up, and
    /// queueing one per dial had a node in a 100-node mesh sync with every peer its
    /// Kademlia queries touched.
    queued: VecDeque<PeerId>,
    /// Peers no longer refused whose next connection starts a session, queued if busy.
    resync: HashSet<PeerId>,

    /// Reachability, relays, and the peers NAT traversal needs kept (see
    /// [`NatState::is_pinned`]).
    pub(super) nat: NatState,
}

impl EventLoop {
    /// A loop over a swarm that already listens and dials its seeds. Its timers start
    /// now (each first ticks at once), so make it inside the task that runs it.
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        known: Known,
        engine: EngineHandle,
        metrics: Arc<Metrics>,
        channels: Channels,
    ) -> Self {
        let discovery = tokio::time::interval(DISCOVERY_INTERVAL);
        let sync_timer = tokio::time::interval(SYNC_INTERVAL);
        let retry = tokio::time::interval(Duration::from_millis(500));
        let nat = NatState::new(*swarm.local_peer_id(), known.reachability);
        let mut keep = known.keep;
        keep.extend(known.seeds.iter().map(|(p, _)| *p));
        let mut this = Self {
            swarm,
            topic: IdentTopic::new(TOPIC),
            seeds: known.seeds,
            keep,
            idle_timeout: known.limits.idle_timeout,
            idle_since: HashMap::new(),
            engine,
            metrics,
            channels,
            pending: FuturesUnordered::new(),
            unsent: VecDeque::new(),
            retry,
            peers: HashMap::new(),
            discovery,
            bootstrapped: false,
            banned: HashMap::new(),
            sync_timer,
            requests: HashMap::new(),
            answers: FuturesUnordered::new(),
            answering: HashSet::new(),
            syncing: HashSet::new(),
            sync_peers: SyncPeers::new(known.limits.sync_requests_per_minute, SYNC_PEER_RETAIN, MAX_SYNC_PEERS),
            queued: VecDeque::new(),
            resync: HashSet::new(),
            nat,
        };
        this.nat_start(&known.external);
        this
    }

    /// Runs until shutdown. Every branch's future is cancel-safe (channel receives,
    /// `FuturesUnordered::next`, timer ticks, the swarm's next event): the branches that
    /// lose a round lose nothing. Branches are polled in random order (not biased).
    pub(super) async fn run(mut self) {
        loop {
            tokio::select! {
                _ = self.channels.shutdown.changed() => break,
                Some(cmd) = self.channels.commands.recv() => self.handle_command(cmd),
                Some((peer, channel, answer)) = self.answers.next(), if !self.answers.is_empty() => {
                    self.send_answer(peer, channel, answer);
                }
                _ = self.sync_timer.tick() => self.on_sync_timer(),
                Some(data) = self.channels.publish.recv() => self.publish_or_queue(data),
                Some((id, source, verdict)) = self.pending.next(), if !self.pending.is_empty() => {
                    self.report_verdict(id, source, verdict);
                }
                _ = self.retry.tick(), if !self.unsent.is_empty() => self.retry_unsent(),
                _ = self.discovery.tick() => self.discover(),
                event = self.swarm.select_next_some() => self.handle_event(event),
            }
        }
        tracing::debug!("network stopped");
    }

    // ---- commands ----

    fn handle_command(&mut self, cmd: NetCommand) {
        match cmd {
            NetCommand::Peers(reply) => {
                let mut list: Vec<PeerInfo> = self.peers.values().cloned().collect();
                list.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
                let _ = reply.send(list);
            }
            NetCommand::Refuse { peers, reply } => {
                let _ = reply.send(self.refuse(peers));
            }
            NetCommand::SyncRequest { peer, request, reply } => {
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.requests.insert(id, reply);
            }
            NetCommand::SessionDone { peer, result } => self.session_done(peer, result),
        }
    }

    /// Fault injection: refuses exactly `wanted` from now on; peers no longer refused are
    /// redialled and resynced. Returns the refused set, sorted.
    fn refuse(&mut self, wanted: Vec<PeerId>) -> Vec<PeerId> {
        let wanted: HashSet<PeerId> = wanted.into_iter().collect();
        let refused = self.swarm.behaviour().refused.blocked_peers().clone();
        for peer in refused.difference(&wanted) {
            self.swarm.behaviour_mut().refused.unblock_peer(*peer);
            self.resync.insert(*peer);
            if let Err(e) = self.swarm.dial(*peer) {
                tracing::debug!(%peer, error = %e, "redialling a peer no longer refused failed");
            }
        }
        for peer in wanted.difference(&refused) {
            self.swarm.behaviour_mut().refused.block_peer(*peer);
        }
        tracing::info!(refused = wanted.len(), "fault injection: refused peers set");
        let mut list: Vec<PeerId> = wanted.into_iter().collect();
        list.sort();
        list
    }

    // ---- gossip ----

    /// The engine's verdict on a gossip message goes to gossipsub.
    fn report_verdict(&mut self, id: MessageId, source: PeerId, verdict: GossipVerdict) {
        let acceptance = match verdict {
            GossipVerdict::Accept => MessageAcceptance::Accept,
            GossipVerdict::Ignore => MessageAcceptance::Ignore,
            GossipVerdict::Reject => MessageAcceptance::Reject,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, acceptance);
    }

    /// Publishes a local envelope; true when done (or a duplicate, which is success).
    fn try_publish(&mut self, data: Vec<u8>) -> bool {
        match self.swarm.behaviour_mut().gossipsub.publish(self.topic.clone(), data) {
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

    /// Publishes a local envelope, or keeps it for retry while no peer can take it.
    fn publish_or_queue(&mut self, data: Vec<u8>) {
        if !self.try_publish(data.clone()) {
            tracing::debug!("no gossip peer yet; will retry publishing");
            if self.unsent.len() >= MAX_UNSENT {
                self.unsent.pop_front();
            }
            self.unsent.push_back((Instant::now(), data));
        }
    }

    /// Retries the unsent envelopes younger than [`UNSENT_TTL`]; drops the older ones.
    fn retry_unsent(&mut self) {
        let queued: Vec<_> = self
            .unsent
            .drain(..)
            .filter(|(t, _)| t.elapsed() < UNSENT_TTL)
            .collect();
        for (t, data) in queued {
            if !self.try_publish(data.clone()) {
                self.unsent.push_back((t, data));
            }
        }
    }

    // ---- discovery ----

    /// Every [`DISCOVERY_INTERVAL`], while below [`WANTED_PEERS`]: redial the seeds and
    /// walk the DHT; above it, close idle strangers.
    fn discover(&mut self) {
        self.nat_tick();
        self.close_idle();
        if self.swarm.connected_peers().count() < WANTED_PEERS {
            for (peer, addr) in &self.seeds {
                if !self.swarm.is_connected(peer) {
                    let _ = self.swarm.dial(addr.clone());
                }
            }
            // Errors only mean nobody is known yet; the seeds are redialled above.
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
            self.swarm.behaviour_mut().kad.get_closest_peers(PeerId::random());
        }
    }

    /// Closes the connections of strangers that have been outside the gossip mesh and
    /// not syncing for [`Limits::idle_timeout`], longest idle first, while the node has
    /// more than [`WANTED_PEERS`] peers. Gossipsub's streams keep every gossip peer's
    /// connection open, so the swarm's own idle timeout never closes these; without this
    /// a seed would hold every node that ever dialled it, and a flood of subscribing
    /// strangers would keep its connection slots.
    fn close_idle(&mut self) {
        let now = Instant::now();
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        let mesh: HashSet<PeerId> = self.swarm.behaviour().gossipsub.all_mesh_peers().copied().collect();
        self.idle_since.retain(|p, _| connected.contains(p));
        let mut idle = Vec::new();
        for peer in &connected {
            let busy = self.keep.contains(peer)
                || self.nat.is_pinned(peer)
                || mesh.contains(peer)
                || self.syncing.contains(peer)
                || self.answering.contains(peer);
            let since = self.idle_since.entry(*peer).or_insert(now);
            if busy {
                *since = now;
            } else if now.saturating_duration_since(*since) >= self.idle_timeout {
                idle.push((*since, *peer));
            }
        }
        idle.sort();
        for (_, peer) in idle.into_iter().take(connected.len().saturating_sub(WANTED_PEERS)) {
            tracing::debug!(%peer, "closing an idle stranger's connection");
            self.metrics.idle_closed.inc();
            self.idle_since.remove(&peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Cuts off a peer that broke the protocol: disconnect, and refuse it (connections
    /// and gossip) for [`BAN`](super::BAN).
    fn cut_off(&mut self, peer: PeerId, why: &str) {
        tracing::warn!(%peer, reason = why, "cutting off a misbehaving peer");
        self.metrics.sync_misbehaving.inc();
        self.banned.insert(peer, Instant::now());
        self.swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    // ---- swarm events ----

    fn handle_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.track_peer_ip(&event);
        let connections_changed = matches!(
            event,
            SwarmEvent::IncomingConnection { .. }
                | SwarmEvent::IncomingConnectionError { .. }
                | SwarmEvent::ConnectionEstablished { .. }
                | SwarmEvent::ConnectionClosed { .. }
                | SwarmEvent::Dialing { .. }
                | SwarmEvent::OutgoingConnectionError { .. }
        );
        self.nat_observe(&event);
        self.dispatch(event);
        if connections_changed {
            self.count_connections();
        }
    }

    /// The connection gauges, from the swarm's own counters.
    fn count_connections(&self) {
        let c = self.swarm.network_info().connection_counters().clone();
        let m = &self.metrics;
        let dir = |direction| DirectionLabel { direction };
        m.connections
            .get_or_create(&dir("in"))
            .set(i64::from(c.num_established_incoming()));
        m.connections
            .get_or_create(&dir("out"))
            .set(i64::from(c.num_established_outgoing()));
        m.connections_pending
            .get_or_create(&dir("in"))
            .set(i64::from(c.num_pending_incoming()));
        m.connections_pending
            .get_or_create(&dir("out"))
            .set(i64::from(c.num_pending_outgoing()));
    }

    /// Counts a connection a bound denied.
    fn count_denied(&self, direction: &'static str, cause: &ConnectionDenied) {
        let reason = denial_reason(cause);
        tracing::debug!(direction, reason, %cause, "connection denied");
        self.metrics
            .connections_denied
            .get_or_create(&DeniedLabel { direction, reason })
            .inc();
    }

    fn dispatch(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.channels.listen.send_modify(|l| l.push(address));
            }
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } if self.banned.contains_key(&peer_id) => {
                tracing::debug!(%peer_id, address = %endpoint.get_remote_address(), "refusing a banned peer");
                let _ = self.swarm.disconnect_peer_id(peer_id);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => self.on_connected(peer_id, &endpoint, num_established),
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::debug!(%peer_id, "disconnected");
                self.peers.remove(&peer_id);
                self.metrics.peers.set(self.swarm.connected_peers().count() as i64);
            }
            SwarmEvent::IncomingConnectionError {
                error: ListenError::Denied { cause },
                ..
            } => self.count_denied("in", &cause),
            SwarmEvent::OutgoingConnectionError {
                error: DialError::Denied { cause },
                ..
            } => self.count_denied("out", &cause),
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "dial failed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.on_gossipsub(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.on_identify(e),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.on_sync(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => self.on_ping(e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.on_kad(e),
            SwarmEvent::Behaviour(
                e @ (BehaviourEvent::Autonat(_)
                | BehaviourEvent::AutonatServer(_)
                | BehaviourEvent::RelayClient(_)
                | BehaviourEvent::Relay(_)
                | BehaviourEvent::Dcutr(_)
                | BehaviourEvent::Upnp(_)),
            ) => self.on_nat_behaviour(e),
            _ => {}
        }
    }

    /// Keeps the remote IP addresses of open connections (every connection, banned
    /// peers' too: each that opens also closes) for [`NetHandle::peer_addresses`](super::NetHandle::peer_addresses).
    fn track_peer_ip(&self, event: &SwarmEvent<BehaviourEvent>) {
        let (endpoint, opened) = match event {
            SwarmEvent::ConnectionEstablished { endpoint, .. } => (endpoint, true),
            SwarmEvent::ConnectionClosed { endpoint, .. } => (endpoint, false),
            _ => return,
        };
        let Some(ip) = ip_of(endpoint.get_remote_address()) else {
            return;
        };
        self.channels.peer_ips.send_modify(|ips| {
            if opened {
                *ips.entry(ip).or_default() += 1;
            } else if let Some(n) = ips.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    ips.remove(&ip);
                }
            }
        });
    }

    /// A connection to a peer that is not banned.
    fn on_connected(&mut self, peer_id: PeerId, endpoint: &ConnectedPoint, num_established: NonZeroU32) {
        tracing::debug!(%peer_id, "connected");
        // The dialling side catches up (a node that starts or rejoins dials its seeds);
        // both sides starting at once would send everything twice.
        if num_established.get() == 1 && endpoint.is_dialer() {
            let healed = self.resync.remove(&peer_id);
            self.start_session(peer_id, healed);
        }
        if !self.bootstrapped && self.seeds.iter().any(|(p, _)| *p == peer_id) {
            // Learn the rest of the mesh from the first seed right away; once, not per
            // seed: each bootstrap walks the whole DHT, and a node with six seeds at
            // start dialled everyone six times.
            self.bootstrapped = true;
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
        let remote = endpoint.get_remote_address();
        let connection = Connection::of(remote);
        let info = self.peers.entry(peer_id).or_insert_with(|| PeerInfo {
            peer_id: peer_id.to_string(),
            address: remote.to_string(),
            agent: None,
            gossip: false,
            rtt_ms: None,
            connection: connection.as_str().into(),
            transport: transport_of(remote).into(),
        });
        // A direct connection beside a relayed one is the one shown (and used).
        if connection == Connection::Direct && info.connection != connection.as_str() {
            info.address = remote.to_string();
            info.connection = connection.as_str().into();
            info.transport = transport_of(remote).into();
        }
        self.metrics.peers.set(self.swarm.connected_peers().count() as i64);
    }

    /// Gossip messages go to the engine for a verdict (within
    /// [`MAX_PENDING_VALIDATIONS`]); subscriptions mark gossip peers.
    fn on_gossipsub(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                if self.pending.len() >= MAX_PENDING_VALIDATIONS {
                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        MessageAcceptance::Ignore,
                    );
                    self.metrics.reject("validation_backlog");
                    return;
                }
                self.metrics.gossip_bytes_received.inc_by(message.data.len() as u64);
                let engine = self.engine.clone();
                self.pending.push(
                    async move {
                        let v = engine.gossip(message.data).await;
                        (message_id, propagation_source, v)
                    }
                    .boxed(),
                );
            }
            gossipsub::Event::Subscribed { peer_id, .. } => {
                if let Some(p) = self.peers.get_mut(&peer_id) {
                    p.gossip = true;
                }
            }
            gossipsub::Event::Unsubscribed { peer_id, .. } => {
                if let Some(p) = self.peers.get_mut(&peer_id) {
                    p.gossip = false;
                }
            }
            _ => {}
        }
    }

    /// A peer's agent, and its dialable addresses for Kademlia if it speaks ours.
    fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        if let Some(p) = self.peers.get_mut(&peer_id) {
            p.agent = Some(info.agent_version.clone());
        }
        if info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL) {
            let policy = self.swarm.behaviour().kad.policy();
            let (dialable, filtered): (Vec<_>, Vec<_>) = info.listen_addrs.into_iter().partition(|a| policy.allows(a));
            if !filtered.is_empty() {
                tracing::debug!(%peer_id, ?filtered, "announced addresses not kept (dial policy)");
                self.metrics.dial_addresses_filtered.inc_by(filtered.len() as u64);
            }
            for addr in dialable {
                self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
            }
        }
    }

    /// A round-trip time for the peer list.
    fn on_ping(&mut self, event: ping::Event) {
        if let ping::Event {
            peer, result: Ok(rtt), ..
        } = event
        {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.rtt_ms = Some(rtt.as_millis() as u64);
            }
        }
    }

    /// A newly discovered peer is dialled while the node wants more. Dials in flight
    /// count too: discovery reports a burst of peers at once, and dialling each while the
    /// first dials are pending connected a 50-node testnet completely (49 peers each,
    /// seven copies of every message) instead of to about WANTED_PEERS each.
    fn on_kad(&mut self, event: kad::Event) {
        if let kad::Event::RoutingUpdated {
            peer,
            is_new_peer: true,
            ..
        } = event
        {
            if !self.swarm.is_connected(&peer) && wants_more_peers(&self.swarm) {
                let _ = self.swarm.dial(peer);
            }
        }
    }
}

/// Whether connected peers plus dials in flight are still below [`WANTED_PEERS`].
fn wants_more_peers(swarm: &Swarm<Behaviour>) -> bool {
    let pending = swarm.network_info().connection_counters().num_pending_outgoing() as usize;
    swarm.connected_peers().count() + pending < WANTED_PEERS
}

/// The `reason` label of a denied connection: which bound denied it.
fn denial_reason(cause: &ConnectionDenied) -> &'static str {
    if let Some(e) = cause.downcast_ref::<connection_limits::Exceeded>() {
        // `Exceeded` names its kind only in its message.
        let text = e.to_string();
        [
            ("pending incoming", "pending_incoming"),
            ("pending outgoing", "pending_outgoing"),
            ("established incoming", "incoming"),
            ("established outgoing", "outgoing"),
            ("per peer", "per_peer"),
        ]
        .into_iter()
        .find(|(needle, _)| text.contains(needle))
        .map_or("total", |(_, reason)| reason)
    } else if cause.downcast_ref::<PerIpExceeded>().is_some() {
        "per_ip"
    } else if cause
        .downcast_ref::<memory_connection_limits::MemoryUsageLimitExceeded>()
        .is_some()
    {
        "memory"
    } else if cause.downcast_ref::<allow_block_list::Blocked>().is_some() {
        "refused"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::connection_limits::ConnectionLimits;
    use libp2p::core::transport::PortUse;
    use libp2p::core::Endpoint;
    use libp2p::swarm::{ConnectionId, NetworkBehaviour};

    #[test]
    fn each_bound_that_denies_a_connection_is_named() {
        let id = ConnectionId::new_unchecked(1);
        let (peer, addr) = (PeerId::random(), "/ip4/192.0.2.1/tcp/1".parse::<Multiaddr>().unwrap());
        let bounded = |l: ConnectionLimits| connection_limits::Behaviour::new(l);
        let none = ConnectionLimits::default;
        let e = bounded(none().with_max_pending_incoming(Some(0)))
            .handle_pending_inbound_connection(id, &addr, &addr)
            .unwrap_err();
        assert_eq!(denial_reason(&e), "pending_incoming");
        let e = bounded(none().with_max_pending_outgoing(Some(0)))
            .handle_pending_outbound_connection(id, Some(peer), &[], Endpoint::Dialer)
            .unwrap_err();
        assert_eq!(denial_reason(&e), "pending_outgoing");
        for (limits, want) in [
            (none().with_max_established_incoming(Some(0)), "incoming"),
            (none().with_max_established_per_peer(Some(0)), "per_peer"),
            (none().with_max_established(Some(0)), "total"),
        ] {
            let e = bounded(limits)
                .handle_established_inbound_connection(id, peer, &addr, &addr)
                .err()
                .unwrap();
            assert_eq!(denial_reason(&e), want);
        }
        let e = bounded(none().with_max_established_outgoing(Some(0)))
            .handle_established_outbound_connection(id, peer, &addr, Endpoint::Dialer, PortUse::New)
            .err()
            .unwrap();
        assert_eq!(denial_reason(&e), "outgoing");
        let e = super::super::guard::Behaviour::new(0, [])
            .handle_established_inbound_connection(id, peer, &addr, &addr)
            .err()
            .unwrap();
        assert_eq!(denial_reason(&e), "per_ip");
    }
}
