//! A raw libp2p peer (not a fraudmesh node) joins the gossip and misbehaves: a sighting
//! with a bad signature is rejected, not forwarded, and changes nothing; a crowd of
//! freshly minted stranger keys is forwarded and held but never blocks anything.

use crate::common::*;
use fraudmesh::identity::Identity;
use fraudmesh::proto;
use fraudmesh::sighting::{sign, Draft, Evidence, Kind};
use fraudmesh::target::{Bounds, Target};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr};
use prost::Message;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::sync::mpsc;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn draft(target: &str) -> Draft {
    Draft {
        target: Target::parse(target, Bounds::default()).unwrap(),
        kind: Kind::Scan,
        observed_at: now_ms(),
        ttl_s: 3600,
        count: 1,
        evidence: Evidence::default(),
    }
}

/// A bare gossipsub peer speaking the wire format by hand. Returns a sender of raw
/// message data to publish once the node has subscribed.
async fn raw_peer(node: Multiaddr) -> mpsc::Sender<Vec<u8>> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| {
            let cfg = gossipsub::ConfigBuilder::default()
                .validation_mode(ValidationMode::Anonymous)
                .message_id_fn(|m: &gossipsub::Message| MessageId::from(Sha256::digest(&m.data).to_vec()))
                .heartbeat_initial_delay(Duration::from_millis(100))
                .build()
                .unwrap();
            let b: gossipsub::Behaviour = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, cfg).unwrap();
            b
        })
        .unwrap()
        .build();
    let topic = IdentTopic::new("fraudmesh/v1/sightings");
    swarm.behaviour_mut().subscribe(&topic).unwrap();
    swarm.dial(node).unwrap();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        let mut subscribed = false;
        loop {
            tokio::select! {
                Some(data) = rx.recv(), if subscribed => {
                    swarm.behaviour_mut().publish(topic.clone(), data).expect("publish");
                }
                ev = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(gossipsub::Event::Subscribed { .. }) = ev {
                        if !subscribed {
                            subscribed = true;
                            let _ = ready_tx.send(()).await;
                        }
                    }
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), ready_rx.recv())
        .await
        .expect("the node subscribes to the raw peer");
    tx
}

fn envelope(records: Vec<proto::SignedSighting>) -> Vec<u8> {
    proto::Envelope {
        sightings: records,
        endorsements: vec![],
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_sightings_are_not_forwarded_and_strangers_never_block() {
    let (a, b) = tokio::task::spawn_blocking(|| {
        let mut a = Node::init(&[]);
        a.start();
        let mut b = Node::init(&["--seed", &a.addr()]);
        b.start();
        b.wait_gossip_peers(1);
        a.wait_gossip_peers(1);
        (a, b)
    })
    .await
    .unwrap();
    let a_addr: Multiaddr = a.addr().parse().unwrap();
    let publish = raw_peer(a_addr).await;

    // 1. A sighting whose signature was broken after signing.
    let mallory = Identity::from_secret(rand_secret());
    let mut forged = sign(&mallory, draft("198.51.100.9")).to_proto();
    let mut sig = forged.signature.to_vec();
    sig[5] ^= 0x01;
    forged.signature = sig.into();
    publish.send(envelope(vec![forged])).await.unwrap();
    // 2. Garbage that is not even an envelope.
    publish
        .send(b"not a protobuf envelope \xff\xff".to_vec())
        .await
        .unwrap();
    // 3. Twenty freshly minted keys accuse one victim, validly signed.
    let victim = "192.0.2.77";
    let crowd: Vec<_> = (0..20)
        .map(|_| sign(&Identity::from_secret(rand_secret()), draft(victim)).to_proto())
        .collect();
    publish.send(envelope(crowd)).await.unwrap();

    tokio::task::spawn_blocking(move || {
        // The valid crowd crossed A and reached B: gossip keeps flowing past the forgery.
        wait_for("B to hold the 20 strangers' sightings", DEADLINE, || {
            (b.reporters(victim).len() == 20).then_some(())
        });
        for n in [&a, &b] {
            assert!(!n.is_blocked(victim), "strangers alone must never block");
            let m = &n.check(victim)["matches"][0];
            assert_eq!(m["score"], 0.0, "strangers never count toward a block: {m}");
            assert_eq!(m["stranger_score"], 0.5, "strangers are shown, capped: {m}");
            let forged_check = n.check("198.51.100.9");
            assert_eq!(forged_check["reporters"], serde_json::json!([]), "{forged_check}");
            assert!(!forged_check["blocked"].as_bool().unwrap());
        }
        assert_eq!(
            a.metric("fraudmesh_sightings_rejected_total", &[("reason", "invalid_signature")]),
            1.0
        );
        assert_eq!(
            a.metric("fraudmesh_sightings_rejected_total", &[("reason", "envelope_decode")]),
            1.0
        );
        assert!(a.metric("fraudmesh_gossip_messages_total", &[("verdict", "reject")]) >= 2.0);
        // A never forwarded the rejected messages, so B never saw them.
        assert_eq!(b.metric("fraudmesh_sightings_rejected_total", &[]), 0.0);
        assert_eq!(
            b.metric("fraudmesh_gossip_messages_total", &[("verdict", "reject")]),
            0.0
        );
        assert_eq!(a.status()["records"], 20);
        assert_eq!(b.status()["records"], 20);
    })
    .await
    .unwrap();
}

fn rand_secret() -> [u8; 32] {
    rand::random()
}
