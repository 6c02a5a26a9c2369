//! The network: one task owns the libp2p swarm (TCP + noise + yamux and QUIC; gossipsub,
//! Kademlia, identify, ping, sync, NAT traversal). Everyone else holds a [`NetHandle`].
//!
//! Gossip runs with `validate_messages()`: gossipsub forwards nothing until the engine
//! has given each message exactly one verdict. Messages are unsigned at the gossipsub
//! layer (each sighting carries its own signature) and their id is SHA-256 of the data,
//! so any libp2p implementation following `proto/` can join. The node's libp2p key is
//! its sighting key: reporter and sending peer have the same name.
//!
//! Everything a remote can make the node hold is bounded ([`Limits`], the `[net]`
//! config section): connections (libp2p's `connection_limits` for established
//! incoming/outgoing/total/per-peer and pending ones, a per-source-IP bound in
//! [`guard`], `memory_connection_limits` on the process's resident memory), the
//! handshake time of a new connection, how long a connection without streams lives,
//! the peers the node looks for and keeps (`target_peers`, `max_peers`: beyond them
//! connections are pruned, never gossip mesh peers), how soon seeds and lost peers are
//! redialled, and sync work (streams per connection, time and rate of requests per
//! peer, frame sizes read as they arrive). Configured seeds and trusted peers bypass the
//! connection bounds. Addresses learned from other peers are dialled only as
//! [`dial`] allows.
//!
//! Nodes behind NAT (see [`nat`]): AutoNAT v2 tells a node whether its addresses are
//! reachable; one that is not reserves relayed addresses on its seeds (circuit relay
//! v2; seeds serve as relays while publicly reachable), and relayed connections are
//! upgraded to direct ones by hole punching (DCUtR) where the NATs allow. QUIC listens
//! beside TCP: UDP hole punching works far more often.
//!
//! This module is the public face: the limits, [`NetConfig`], the [`NetHandle`] and the
//! commands it sends, and [`start`]. The swarm's make-up is in `behaviour`, the task
//! that drives it in `event_loop`, the catch-up protocol in [`sync`].

mod behaviour;

pub use behaviour::memory_transport;
pub mod dial;
mod event_loop;
pub mod guard;
pub mod nat;
pub mod sync;

use crate::engine::EngineHandle;
use crate::metrics::Metrics;
use anyhow::Context;
use behaviour::build_swarm;
use event_loop::{Channels, EventLoop};
use fraudmesh::proto::{SyncRequest, SyncResponse};
use libp2p::gossipsub::IdentTopic;
use libp2p::{identity::Keypair, Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use sync::SessionError;
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
/// Most sessions queued behind the running one (peers no longer refused).
const MAX_QUEUED_SESSIONS: usize = 32;
/// How often a sync session starts with a random peer (besides one on every connect).
const SYNC_INTERVAL: Duration = Duration::from_secs(30);
/// Least time between two sessions with the same peer.
const SYNC_PEER_GAP: Duration = Duration::from_secs(10);
/// Inbound sync requests answered at once (one per peer); beyond this, new ones are
/// dropped.
const MAX_INBOUND_SYNC: usize = 8;
/// How long a peer that misbehaved is refused.
const BAN: Duration = Duration::from_secs(600);
/// How long the sync bookkeeping of a disconnected peer (last session, request budget)
/// is kept: longer than [`SYNC_PEER_GAP`] and than a request budget takes to refill, so
/// reconnecting gains a peer nothing.
const SYNC_PEER_RETAIN: Duration = Duration::from_secs(120);
/// Most peers whose sync bookkeeping is kept; beyond it the least recently active
/// entry goes.
const MAX_SYNC_PEERS: usize = 1024;

/// The network's bounds: the `[net]` config section as it is read (checked by the
/// config; defaults in [`Limits::default`], fit for a PBX sidecar).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Established incoming connections (`net.max_incoming`, 256).
    pub max_incoming: u32,
    /// Established outgoing connections (`net.max_outgoing`, 64).
    pub max_outgoing: u32,
    /// Established connections both ways (`net.max_connections`, 300).
    pub max_connections: u32,
    /// Established connections per peer (`net.max_per_peer`, 2: a simultaneous dial
    /// from both sides).
    pub max_per_peer: u32,
    /// Incoming connections still in their handshake (`net.max_pending_incoming`, 32).
    pub max_pending_incoming: u32,
    /// Outgoing connections still being dialled (`net.max_pending_outgoing`, 32).
    pub max_pending_outgoing: u32,
    /// Established incoming connections per source IP, IPv6 per /64
    /// (`net.max_incoming_per_ip`, 8; see [`guard`]).
    pub max_incoming_per_ip: u32,
    /// New connections are refused while the process's resident memory exceeds this
    /// share of the host's RAM, percent (`net.max_memory_percent`, 50; 0 = off; always
    /// off on the memory transport, where many nodes share one process).
    pub max_memory_percent: u8,
    /// Longest dial plus noise + yamux (or QUIC) handshake of a new connection
    /// (`net.handshake_timeout`, 5 s). It bounds AutoNAT's dial-backs too, and must stay
    /// below the AutoNAT server's own 10 s limit per test: a dial-back lost in a NAT that
    /// drops packets must fail before it, or the asking node hears nothing and never
    /// learns that it is not reachable.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A connection with no open stream is closed after this; and a stranger outside the
    /// gossip mesh (not syncing) is disconnected after this long while the node has more
    /// than it wants (`net.idle_timeout`, 60 s).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Sync streams open at once per connection, both directions (`net.sync_streams`, 4).
    pub sync_streams: usize,
    /// Longest one sync request may take, sending to answer (`net.sync_timeout`, 15 s).
    #[serde(with = "humantime_serde")]
    pub sync_timeout: Duration,
    /// Sync requests answered per peer and minute, as a budget refilled continuously
    /// (`net.sync_requests_per_minute`, 300: a catch-up of a million records takes
    /// about 260).
    pub sync_requests_per_minute: u32,
    /// Dial learned loopback, private and link-local addresses too (`net.dial_private`,
    /// false; see [`dial`]).
    pub dial_private: bool,
    /// Peers the node looks for (`net.target_peers`, 8): below it, discovery walks the
    /// DHT and lost peers are redialled; above it, strangers outside the gossip mesh are
    /// let go after [`Limits::idle_timeout`].
    pub target_peers: u32,
    /// Peers the node keeps (`net.max_peers`, 32): beyond it, the least useful are
    /// disconnected after a short grace, never gossip mesh peers, seeds or pinned
    /// peers (a soft bound; `max_connections` and the others are the hard ones).
    pub max_peers: u32,
    /// Longest wait between two redials of a seed or a lost peer (`net.redial_max`,
    /// 30 s): the wait doubles from one second on each failure, with jitter.
    #[serde(with = "humantime_serde")]
    pub redial_max: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_incoming: 256,
            max_outgoing: 64,
            max_connections: 300,
            max_per_peer: 2,
            max_pending_incoming: 32,
            max_pending_outgoing: 32,
            max_incoming_per_ip: 8,
            max_memory_percent: 50,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            sync_streams: 4,
            sync_timeout: Duration::from_secs(15),
            sync_requests_per_minute: 300,
            dial_private: false,
            target_peers: 8,
            max_peers: 32,
            redial_max: Duration::from_secs(30),
        }
    }
}

/// Gossipsub's mesh degrees for a [`Limits`]: (`mesh_outbound_min`, `mesh_n_low`,
/// `mesh_n`, `mesh_n_high`).
pub(crate) type MeshDegrees = (usize, usize, usize, usize);

impl Limits {
    /// Gossipsub's mesh degrees for a node with `seeds` seeds: its defaults (2, 5, 6,
    /// 12) lowered so that the mesh and the seeds fit within `max_peers`. Pruning never
    /// closes a mesh peer or a seed, so a mesh allowed beyond that room would hold the
    /// node above its bound. The mesh aims at half its upper bound, as gossipsub's
    /// defaults do: without that slack a node whose mesh is full refuses a newcomer's
    /// graft, and with every mesh full a newcomer stays an idle stranger everywhere
    /// and is pruned wherever it connects. Keeps gossipsub's own rules (outbound_min ≤
    /// low ≤ n ≤ high, 2 × outbound_min ≤ n).
    pub(crate) fn gossip_mesh(&self, seeds: usize) -> MeshDegrees {
        let room = (self.max_peers as usize).saturating_sub(seeds);
        let high = room.clamp(1, 12);
        let n = (high / 2).clamp(1, 6);
        let low = n.min(5);
        let outbound_min = (n / 2).min(2).min(low);
        (outbound_min, low, n, high)
    }
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
    /// `direct`, or `relayed` through a circuit relay (a peer with both shows direct).
    #[serde(default)]
    pub connection: String,
    /// The transport: `tcp`, `quic` or `memory` (for a relayed connection, the one to
    /// the relay).
    #[serde(default)]
    pub transport: String,
}

/// What the handles and the sync sessions ask of the network task.
enum NetCommand {
    /// The connected peers, sorted by peer id.
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
    /// The session's peer.
    peer: PeerId,
    /// The network task's commands.
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
    /// The network task's commands.
    tx: mpsc::Sender<NetCommand>,
    /// The swarm's listen addresses, as the task reports them.
    listen: watch::Receiver<Vec<Multiaddr>>,
    /// The IP addresses of open connections' remote ends, with how many use each.
    peer_ips: watch::Receiver<HashMap<IpAddr, usize>>,
    /// The seeds' IP addresses (from their multiaddrs).
    seed_ips: Arc<[IpAddr]>,
    /// Reachability and relayed addresses, as the task reports them.
    nat: watch::Receiver<nat::NatStatus>,
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

    /// Whether other nodes can dial this one, and the relayed addresses it holds.
    pub fn nat_status(&self) -> nat::NatStatus {
        self.nat.borrow().clone()
    }

    /// The addresses the swarm listens on (without `/p2p`).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen.borrow().clone()
    }

    /// The IP addresses of the fraudmesh peers this node knows: the remote ends of its
    /// open connections and its seeds (read-only; for the detectors' never-report set).
    pub fn peer_addresses(&self) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self.peer_ips.borrow().keys().copied().collect();
        ips.extend(self.seed_ips.iter().copied());
        ips
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
    /// Trusted peers: like the seeds, they bypass the connection bounds and keep their
    /// connections outside the gossip mesh.
    pub trusted: Vec<PeerId>,
    /// The bounds.
    pub limits: Limits,
    /// The transport.
    pub transport: Transport,
    /// NAT traversal (UPnP, declared external addresses, relay bounds).
    pub nat: nat::NatConfig,
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

/// Starts listening and dialling and spawns the network task. Local envelopes to publish
/// arrive on `publish`; gossip goes to `engine` for a verdict. The task ends when
/// `shutdown` changes.
pub fn start(
    cfg: NetConfig,
    engine: EngineHandle,
    publish: mpsc::Receiver<Vec<u8>>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(NetHandle, tokio::task::JoinHandle<()>)> {
    let mut swarm = build_swarm(&cfg, metrics.clone())?;
    swarm.behaviour_mut().gossipsub.subscribe(&IdentTopic::new(TOPIC))?;
    listen(&mut swarm, &cfg)?;
    for (peer, addr) in &cfg.seeds {
        swarm.behaviour_mut().kad.add_address(peer, addr.clone());
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(%addr, error = %e, "dialling seed failed");
        }
    }
    let (cmd_tx, commands) = mpsc::channel(64);
    let (listen_tx, listen_rx) = watch::channel(Vec::new());
    let (peer_ips_tx, peer_ips) = watch::channel(HashMap::new());
    let (nat_tx, nat_rx) = watch::channel(nat::NatStatus::default());
    let seed_ips: Arc<[IpAddr]> = cfg.seeds.iter().filter_map(|(_, a)| dial::ip_of(a)).collect();
    let channels = Channels {
        commands,
        sessions: cmd_tx.clone(),
        publish,
        shutdown,
        listen: listen_tx,
        peer_ips: peer_ips_tx,
        nat: nat_tx,
    };
    let peers = event_loop::Known {
        seeds: cfg.seeds,
        keep: cfg.trusted.into_iter().collect(),
        limits: cfg.limits,
        reachability: if cfg.transport == Transport::Memory || !cfg.nat.external.is_empty() {
            Some(nat::Reachability::Public)
        } else if cfg.nat.relay_only {
            Some(nat::Reachability::Private)
        } else {
            None
        },
        external: cfg.nat.external,
    };
    // The loop is made inside the task: its timers start when the task does.
    let task = tokio::spawn(async move { EventLoop::new(swarm, peers, engine, metrics, channels).run().await });
    Ok((
        NetHandle {
            tx: cmd_tx,
            listen: listen_rx,
            peer_ips,
            seed_ips,
            nat: nat_rx,
        },
        task,
    ))
}

/// Listens on the configured addresses: one that fails (IPv6 on a host without it, a
/// port taken for one protocol) is a warning while another listens; all failing is an
/// error. With `debug.relay_only` the node listens on nothing of its own.
fn listen(swarm: &mut libp2p::Swarm<behaviour::Behaviour>, cfg: &NetConfig) -> anyhow::Result<()> {
    if cfg.nat.relay_only {
        tracing::warn!("debug.relay_only: listening on relayed addresses only");
        return Ok(());
    }
    let mut failed = Vec::new();
    for addr in &cfg.listen {
        if let Err(e) = swarm.listen_on(addr.clone()) {
            tracing::warn!(%addr, error = %e, "cannot listen on this address");
            failed.push(format!("{addr}: {e}"));
        }
    }
    if failed.len() == cfg.listen.len() {
        anyhow::bail!("cannot listen on any address: {}", failed.join("; "));
    }
    Ok(())
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
    fn the_gossip_mesh_fits_within_max_peers_and_keeps_gossipsubs_rules() {
        let with = |max_peers| Limits {
            max_peers,
            ..Limits::default()
        };
        assert_eq!(Limits::default().gossip_mesh(0), (2, 5, 6, 12), "gossipsub's defaults");
        assert_eq!(
            Limits::default().gossip_mesh(6),
            (2, 5, 6, 12),
            "room enough beside six seeds"
        );
        assert_eq!(with(5).gossip_mesh(0), (1, 2, 2, 5));
        assert_eq!(with(5).gossip_mesh(1), (1, 2, 2, 4), "the seed takes one place");
        for max in 1..=40 {
            for seeds in 0..4 {
                let (out, low, n, high) = with(max).gossip_mesh(seeds);
                assert!(out <= low && low <= n && n <= high && 2 * out <= n && low >= 1);
                assert!(n <= high.div_ceil(2), "slack for newcomers' grafts");
                assert!(high + seeds <= max as usize || high == 1);
            }
        }
    }

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
