//! A rogue gossip peer: a bare libp2p gossipsub peer (not a fraudmesh node) that joins
//! the sightings topic through a few nodes and publishes whatever it is given — valid
//! sightings signed by stranger keys, or invalid messages. The `poison` scenario uses it,
//! and the `flood` scenario publishes a whole flood of stranger records through it. A
//! message gossipsub cannot queue yet (every peer's queue full, or no subscriber yet) is
//! kept and retried, in order, so a burst is delivered rather than dropped here.

use anyhow::Context;
use fraudmesh::identity::Identity;
use fraudmesh::proto;
use fraudmesh::sighting::{sign, Draft, Evidence, Kind};
use fraudmesh::target::{Bounds, Target};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId};
use prost::Message;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The gossip topic (the node's `net::TOPIC`).
const TOPIC: &str = fraudmesh_node::net::TOPIC;

/// Messages held for a retry before [`Rogue::publish`] waits.
const BACKLOG: usize = 1024;
/// How often held messages are retried.
const RETRY: Duration = Duration::from_millis(20);

/// A running rogue peer.
pub struct Rogue {
    /// Its peer id.
    pub peer_id: PeerId,
    /// Messages handed to gossipsub so far.
    published: Arc<AtomicUsize>,
    /// Messages gossipsub refused for good (too large, …).
    failed: Arc<AtomicUsize>,
    tx: mpsc::Sender<Vec<u8>>,
    subscribed: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Rogue {
    /// Starts the peer and dials `nodes`.
    pub fn start(nodes: &[Multiaddr]) -> anyhow::Result<Self> {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
            .with_behaviour(|_| {
                let cfg = gossipsub::ConfigBuilder::default()
                    .validation_mode(ValidationMode::Anonymous)
                    .message_id_fn(|m: &gossipsub::Message| MessageId::from(Sha256::digest(&m.data).to_vec()))
                    .max_transmit_size(128 * 1024)
                    .heartbeat_initial_delay(Duration::from_millis(100))
                    // A flood may wait a while in the queue to the entry node: keep it.
                    .publish_queue_duration(Duration::from_secs(120))
                    .build()?;
                let b: gossipsub::Behaviour = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, cfg)?;
                Ok(b)
            })?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
            .build();
        let peer_id = *swarm.local_peer_id();
        let topic = IdentTopic::new(TOPIC);
        swarm.behaviour_mut().subscribe(&topic).context("subscribing")?;
        for addr in nodes {
            swarm.dial(addr.clone()).with_context(|| format!("dialling {addr}"))?;
        }
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(BACKLOG);
        let (sub_tx, subscribed) = watch::channel(0usize);
        let published = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (p, f) = (published.clone(), failed.clone());
        let task = tokio::spawn(async move {
            let mut backlog: VecDeque<Vec<u8>> = VecDeque::new();
            let mut retry = tokio::time::interval(RETRY);
            loop {
                tokio::select! {
                    Some(data) = rx.recv(), if backlog.len() < BACKLOG => {
                        backlog.push_back(data);
                        drain(&mut swarm, &topic, &mut backlog, &p, &f);
                    }
                    _ = retry.tick(), if !backlog.is_empty() => drain(&mut swarm, &topic, &mut backlog, &p, &f),
                    ev = swarm.select_next_some() => {
                        if let SwarmEvent::Behaviour(gossipsub::Event::Subscribed { .. }) = ev {
                            sub_tx.send_modify(|n| *n += 1);
                        }
                    }
                }
            }
        });
        Ok(Self {
            peer_id,
            published,
            failed,
            tx,
            subscribed,
            task,
        })
    }

    /// Waits until `n` nodes subscribed to the topic through this peer.
    pub async fn wait_subscribed(&mut self, n: usize, deadline: Duration) -> anyhow::Result<()> {
        tokio::time::timeout(deadline, self.subscribed.wait_for(|s| *s >= n))
            .await
            .context("the rogue peer's nodes did not subscribe in time")?
            .context("the rogue peer stopped")?;
        Ok(())
    }

    /// Publishes raw message data (queued; see [`Rogue::wait_published`]).
    pub async fn publish(&self, data: Vec<u8>) -> anyhow::Result<()> {
        self.tx.send(data).await.context("the rogue peer stopped")
    }

    /// Messages handed to gossipsub so far.
    pub fn published(&self) -> usize {
        self.published.load(Ordering::Relaxed)
    }

    /// Messages gossipsub refused for good.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }

    /// Waits until `n` messages were handed to gossipsub or refused for good; returns
    /// how many were handed over.
    pub async fn wait_published(&self, n: usize, deadline: Duration) -> anyhow::Result<usize> {
        let end = Instant::now() + deadline;
        while self.published() + self.failed() < n {
            if Instant::now() > end {
                anyhow::bail!(
                    "the rogue peer handed only {}/{n} messages to gossipsub within {deadline:?}",
                    self.published()
                );
            }
            tokio::time::sleep(RETRY).await;
        }
        Ok(self.published())
    }
}

/// Hands held messages to gossipsub in order until one must wait (every peer's queue
/// full, or nobody subscribed yet).
fn drain(
    swarm: &mut libp2p::Swarm<gossipsub::Behaviour>,
    topic: &IdentTopic,
    backlog: &mut VecDeque<Vec<u8>>,
    published: &AtomicUsize,
    failed: &AtomicUsize,
) {
    while let Some(data) = backlog.front() {
        match swarm.behaviour_mut().publish(topic.clone(), data.clone()) {
            Ok(_) | Err(gossipsub::PublishError::Duplicate) => {
                published.fetch_add(1, Ordering::Relaxed);
            }
            Err(gossipsub::PublishError::AllQueuesFull(_) | gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                return
            }
            Err(e) => {
                tracing::debug!(error = %e, "rogue publish failed");
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        backlog.pop_front();
    }
}

impl Drop for Rogue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An envelope of one sighting of `target` signed by `identity` (a stranger key).
pub fn stranger_sighting(identity: &Identity, target: &str, now_ms: u64) -> anyhow::Result<Vec<u8>> {
    stranger_envelope(identity, &[target], now_ms, 3600)
}

/// An envelope of sightings of each of `targets`, all signed by `identity` (a stranger
/// key), observed now and active for `ttl_s`.
pub fn stranger_envelope(identity: &Identity, targets: &[&str], now_ms: u64, ttl_s: u32) -> anyhow::Result<Vec<u8>> {
    let sightings = targets
        .iter()
        .map(|t| {
            let draft = Draft {
                target: Target::parse(t, Bounds::default()).with_context(|| format!("stranger target {t}"))?,
                kind: Kind::Scan,
                observed_at: now_ms,
                ttl_s,
                count: 1,
                evidence: Evidence::default(),
            };
            Ok(sign(identity, draft).to_proto())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(proto::Envelope {
        sightings,
        endorsements: vec![],
    }
    .encode_to_vec())
}

/// An invalid message: alternately random bytes and a sighting whose signature was
/// tampered with (each distinct, so gossipsub's duplicate filter does not hide them).
pub fn invalid_message(rng: &mut impl Rng, i: usize, now_ms: u64) -> anyhow::Result<Vec<u8>> {
    if i % 2 == 0 {
        let len = rng.gen_range(16..512);
        return Ok((0..len).map(|_| rng.gen()).collect());
    }
    let forger = Identity::from_secret(rng.gen());
    let target = format!("192.0.2.{}", i % 250 + 1);
    let mut env = proto::Envelope::decode(stranger_sighting(&forger, &target, now_ms)?.as_slice())?;
    if let Some(s) = env.sightings.first_mut() {
        let mut sig = s.signature.to_vec();
        if let Some(b) = sig.first_mut() {
            *b ^= 0x55;
        }
        s.signature = sig.into();
    }
    Ok(env.encode_to_vec())
}
