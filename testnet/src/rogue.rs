//! A rogue gossip peer: a bare libp2p gossipsub peer (not a fraudmesh node) that joins
//! the sightings topic through a few nodes and publishes whatever it is given — valid
//! sightings signed by stranger keys, or invalid messages. The `poison` scenario uses it.

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
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The gossip topic (the node's `net::TOPIC`).
const TOPIC: &str = fraudmesh_node::net::TOPIC;

/// A running rogue peer.
pub struct Rogue {
    /// Its peer id.
    pub peer_id: PeerId,
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
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
        let (sub_tx, subscribed) = watch::channel(0usize);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(data) = rx.recv() => {
                        if let Err(e) = swarm.behaviour_mut().publish(topic.clone(), data) {
                            tracing::debug!(error = %e, "rogue publish failed");
                        }
                    }
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

    /// Publishes raw message data.
    pub async fn publish(&self, data: Vec<u8>) -> anyhow::Result<()> {
        self.tx.send(data).await.context("the rogue peer stopped")
    }
}

impl Drop for Rogue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An envelope of one sighting of `target` signed by `identity` (a stranger key).
pub fn stranger_sighting(identity: &Identity, target: &str, now_ms: u64) -> anyhow::Result<Vec<u8>> {
    let draft = Draft {
        target: Target::parse(target, Bounds::default()).context("victim target")?,
        kind: Kind::Scan,
        observed_at: now_ms,
        ttl_s: 3600,
        count: 1,
        evidence: Evidence::default(),
    };
    let record = sign(identity, draft);
    Ok(proto::Envelope {
        sightings: vec![record.to_proto()],
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
