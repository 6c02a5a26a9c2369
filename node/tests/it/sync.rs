//! Catch-up over `/fraudmesh/sync/1` with real processes: a late joiner converges, a
//! restarted node fetches only what it missed, and peers that answer garbage or give
//! forged records are cut off with nothing merged.

use crate::common::*;
use fraudmesh::identity::Identity;
use fraudmesh::proto::{SyncRequest, SyncResponse};
use fraudmesh::sighting::{sign, Draft, Evidence, Kind};
use fraudmesh::target::{Bounds, Target};
use fraudmesh_node::metrics::Metrics;
use fraudmesh_node::net::sync::{SyncCodec, PROTOCOL};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, StreamProtocol};
use prost::Message;
use std::io;
use std::sync::Arc;
use std::time::Duration;

fn targets(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("10.{}.{}.{}\n", 100 + i / 65536, (i / 256) % 256, i % 256))
        .collect()
}

#[test]
fn late_joiners_converge_and_restarts_fetch_only_what_they_missed() {
    let _exclusive = exclusive();
    let mut a = Node::init(&[]);
    a.start();
    // Bulk records from a stranger are rate-limited by design: B and C trust A.
    let mut b = Node::trusting(&a);
    b.start();
    b.wait_gossip_peers(1);
    let file = a.dir.join("t.txt");
    std::fs::write(&file, targets(0, 5000)).unwrap();
    cli_ok(&a.dir, &["report", "--file", file.to_str().unwrap(), "--kind", "scan"]);
    wait_for("B to hold 5000 records", DEADLINE, || {
        (b.status()["records"] == 5000).then_some(())
    });

    // (a) C joins after the attack: only sync can bring it what happened before.
    let mut c = Node::trusting(&a);
    c.start();
    wait_for("C to catch up 5000 records", DEADLINE, || {
        (c.status()["records"] == 5000).then_some(())
    });
    assert!(
        c.is_blocked("10.100.0.7"),
        "C trusts A, so A's caught-up sightings block"
    );
    assert!(c.metric("fraudmesh_sync_records_fetched_total", &[]) >= 4000.0);

    // (b) C is down while 1000 more arrive; on restart it fetches about those 1000.
    assert!(c.stop().success());
    std::fs::write(&file, targets(5000, 1000)).unwrap();
    cli_ok(&a.dir, &["report", "--file", file.to_str().unwrap(), "--kind", "scan"]);
    wait_for("B to hold 6000 records", DEADLINE, || {
        (b.status()["records"] == 6000).then_some(())
    });
    c.start();
    wait_for("C to catch up to 6000 records", DEADLINE, || {
        (c.status()["records"] == 6000).then_some(())
    });
    let fetched = c.metric("fraudmesh_sync_records_fetched_total", &[]);
    let received = c.metric("fraudmesh_sync_bytes_received_total", &[]);
    eprintln!("restarted C fetched {fetched} records and read {received} bytes through sync");
    assert!(
        (1.0..=1100.0).contains(&fetched),
        "fetched {fetched} records, expected about 1000"
    );
    // 6000 records would be well over 1 MB; 1000 records plus reconciliation stay far below.
    assert!(received < 600_000.0, "sync read {received} bytes");
    assert!(c.is_blocked("10.100.23.100"));
}

/// A codec that reads requests like a node but writes whatever bytes it is given as the
/// response: a peer that answers garbage.
#[derive(Clone, Default)]
struct GarbageCodec;

impl request_response::Codec for GarbageCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let mut buf = vec![0; u32::from_be_bytes(len) as usize];
        io.read_exact(&mut buf).await?;
        Ok(buf)
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> io::Result<Vec<u8>> {
        Ok(Vec::new())
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()> {
        Ok(())
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&res).await?;
        io.close().await
    }
}

/// A raw peer that answers every sync request with `answer`. It listens, a fresh node
/// is started with it as its seed (the dialling side starts the session), and the
/// function returns the node once the node has closed the connection (cut it off).
async fn garbage_seed(answer: Vec<u8>) -> Node {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::<GarbageCodec>::new([(PROTOCOL, ProtocolSupport::Full)], Default::default())
        })
        .unwrap()
        .build();
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break format!("{address}/p2p/{}", swarm.local_peer_id());
        }
    };
    let node = tokio::task::spawn_blocking(move || {
        let mut n = Node::init(&["--seed", &addr]);
        n.start();
        n
    })
    .await
    .unwrap();
    let mut answered = false;
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Request { channel, .. },
                    ..
                }) => {
                    let _ = swarm.behaviour_mut().send_response(channel, answer.clone());
                    answered = true;
                }
                SwarmEvent::ConnectionClosed { num_established: 0, .. } if answered => return,
                _ => {}
            }
        }
    })
    .await
    .expect("the node cuts off a seed that answers garbage");
    node
}

/// A raw peer that, as initiator, gives the node a forged record.
async fn forging_peer(node: Multiaddr) {
    let metrics = Arc::new(Metrics::new());
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                SyncCodec::new(metrics),
                [(PROTOCOL, ProtocolSupport::Full)],
                Default::default(),
            )
        })
        .unwrap()
        .build();
    let peer_id: libp2p::PeerId = match node.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
        _ => panic!("address without peer id"),
    };
    swarm.dial(node).unwrap();
    let mallory = Identity::from_secret([66; 32]);
    let mut forged = sign(
        &mallory,
        Draft {
            target: Target::parse("198.51.100.200", Bounds::default()).unwrap(),
            kind: Kind::Scan,
            observed_at: fraudmesh_node::now_ms(),
            ttl_s: 600,
            count: 1,
            evidence: Evidence::default(),
        },
    )
    .to_proto();
    let mut sig = forged.signature.to_vec();
    sig[3] ^= 0x10;
    forged.signature = sig.into();
    let mut sent = false;
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } if !sent => {
                    swarm.behaviour_mut().send_request(
                        &peer_id,
                        SyncRequest {
                            give: vec![forged.clone()],
                            ..Default::default()
                        },
                    );
                    sent = true;
                }
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Request { channel, request, .. },
                    ..
                }) => {
                    // Answer the node's own session correctly, as a peer holding nothing,
                    // so that only the forged record can be the reason to cut it off.
                    let reconcile = if request.reconcile.is_empty() {
                        Vec::new()
                    } else {
                        fraudmesh::sync::Responder::new(&[], 0)
                            .unwrap()
                            .respond(&request.reconcile)
                            .unwrap()
                    };
                    let resp = SyncResponse {
                        reconcile: reconcile.into(),
                        records: vec![],
                        endorsements: vec![],
                    };
                    let _ = swarm.behaviour_mut().send_response(channel, resp);
                }
                SwarmEvent::ConnectionClosed { num_established: 0, .. } if sent => return,
                _ => {}
            }
        }
    })
    .await
    .expect("the node cuts off a peer that gives forged records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_answering_garbage_or_giving_forgeries_are_cut_off() {
    // A well-framed answer that is not a SyncResponse.
    let mut garbage = 8u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(b"\xff\xff\xff\xffjunk");
    // A length prefix far over the 4 MiB bound.
    let oversized = u32::MAX.to_be_bytes().to_vec();
    // A response that decodes but whose reconcile message is nonsense.
    let nonsense = SyncResponse {
        reconcile: b"\x61\x00\x02nonsense".to_vec().into(),
        records: vec![],
        endorsements: vec![],
    }
    .encode_to_vec();
    let mut framed = (nonsense.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&nonsense);
    for answer in [garbage, oversized, framed] {
        let node = garbage_seed(answer).await;
        tokio::task::spawn_blocking(move || {
            assert_eq!(
                node.metric("fraudmesh_sync_misbehaving_peers_total", &[]),
                1.0,
                "{}",
                node.log()
            );
            assert_eq!(
                node.metric("fraudmesh_sync_sessions_total", &[("result", "misbehaved")]),
                1.0
            );
            assert_eq!(node.status()["records"], 0, "nothing was merged from the bad seed");
        })
        .await
        .unwrap();
    }

    // A peer that dials in and gives a forged record.
    let n = tokio::task::spawn_blocking(|| {
        let mut n = Node::init(&[]);
        n.start();
        cli_ok(&n.dir, &["report", "192.0.2.10"]);
        n
    })
    .await
    .unwrap();
    forging_peer(n.addr().parse().unwrap()).await;
    tokio::task::spawn_blocking(move || {
        assert_eq!(
            n.metric("fraudmesh_sync_misbehaving_peers_total", &[]),
            1.0,
            "{}",
            n.log()
        );
        assert_eq!(n.status()["records"], 1, "nothing was merged from the forger");
        assert_eq!(n.check("198.51.100.200")["reporters"], serde_json::json!([]));
        assert_eq!(
            n.metric("fraudmesh_sightings_rejected_total", &[("reason", "invalid_signature")]),
            1.0
        );
    })
    .await
    .unwrap();
}
