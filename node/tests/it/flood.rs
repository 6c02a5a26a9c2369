//! A connection flood against a real node on 127.0.0.1: one process makes 2,000
//! connection attempts (1,000 libp2p dials from 50 fresh identities, 1,000 raw TCP
//! sockets that stay silent or send garbage). The node stays within its connection
//! bounds (its `/metrics`), keeps gossiping with the honest peer it had, accepts a new
//! honest peer once the flood is gone, and the latency of `GET /v1/status` during the
//! flood is printed beside the same figure without it (a measurement, not an assertion).

use crate::common::*;
use futures::StreamExt;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{dummy, SwarmEvent};
use libp2p::{noise, tcp, yamux, Multiaddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

/// Fresh identities dialling, and dials each.
const IDENTITIES: usize = 50;
const DIALS_EACH: usize = 20;
/// Raw TCP sockets (half silent, half sending garbage).
const RAW: usize = 1000;
/// The node's defaults the flood runs into (`[net]`).
const MAX_INCOMING_PER_IP: f64 = 8.0;
const MAX_PENDING_INCOMING: f64 = 32.0;

/// What the libp2p dialers saw.
#[derive(Debug, Default)]
struct Dials {
    established: usize,
    failed: usize,
    closed: usize,
}

/// One fresh identity dialling `addr` `n` times (no peer id in the dial, so each is a
/// new connection attempt), holding what it gets until `stop` changes.
async fn dialer(addr: Multiaddr, n: usize, mut stop: watch::Receiver<bool>) -> Dials {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| dummy::Behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    for _ in 0..n {
        let _ = swarm.dial(DialOpts::unknown_peer_id().address(addr.clone()).build());
    }
    let mut seen = Dials::default();
    loop {
        tokio::select! {
            _ = stop.changed() => return seen,
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { .. } => seen.established += 1,
                SwarmEvent::OutgoingConnectionError { .. } => seen.failed += 1,
                SwarmEvent::ConnectionClosed { .. } => seen.closed += 1,
                _ => {}
            },
        }
    }
}

/// `RAW` TCP connections to `addr`, odd ones sending garbage; held until `stop` changes.
/// Returns how many connected.
async fn raw_sockets(addr: std::net::SocketAddr, mut stop: watch::Receiver<bool>) -> usize {
    let connects = (0..RAW).map(|i| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        if i % 2 == 1 {
            let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\xff\x13garbage").await;
        }
        Some(s)
    });
    let held: Vec<_> = futures::future::join_all(connects)
        .await
        .into_iter()
        .flatten()
        .collect();
    let n = held.len();
    let _ = stop.changed().await;
    drop(held);
    n
}

/// Latencies of `GET /v1/status` until `stop` is set.
fn api_latencies(api: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let (code, _) = http(&api, "GET", "/v1/status", &[], "");
            assert_eq!(code, 200);
            out.push(t.elapsed());
        }
        out
    })
}

/// "n=…, p50=…, p99=…, max=…" of `samples`.
fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let q = |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1];
    format!(
        "n={}, p50={:?}, p99={:?}, max={:?}",
        samples.len(),
        q(0.5),
        q(0.99),
        samples[samples.len() - 1]
    )
}

#[test]
fn a_connection_flood_leaves_the_node_within_its_bounds_and_gossiping() {
    let _exclusive = exclusive();
    let mut a = Node::init(&[]);
    a.start();
    // B is an honest stranger to A (not trusted, so not exempt from any bound).
    let mut b = Node::init(&["--seed", &a.addr()]);
    b.start();
    a.wait_gossip_peers(1);
    b.wait_gossip_peers(1);

    // The API without a flood, for comparison.
    let stop = Arc::new(AtomicBool::new(false));
    let quiet = api_latencies(a.api(), stop.clone());
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let quiet = quiet.join().unwrap();

    let p2p: Multiaddr = a.addr().parse().unwrap();
    let tcp_addr: Multiaddr = p2p.iter().take(2).collect();
    let sock: std::net::SocketAddr = {
        let mut it = tcp_addr.iter();
        match (it.next(), it.next()) {
            (Some(libp2p::multiaddr::Protocol::Ip4(ip)), Some(libp2p::multiaddr::Protocol::Tcp(port))) => {
                (ip, port).into()
            }
            other => panic!("unexpected address {other:?}"),
        }
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (release, hold) = watch::channel(false);
    let stop = Arc::new(AtomicBool::new(false));
    let during = api_latencies(a.api(), stop.clone());
    let flood_start = Instant::now();
    let dialers: Vec<_> = (0..IDENTITIES)
        .map(|_| rt.spawn(dialer(tcp_addr.clone(), DIALS_EACH, hold.clone())))
        .collect();

    // While the flood holds what it got: the node stays within its bounds, and B's
    // report still reaches it.
    let (mut max_in, mut max_pending) = (0.0f64, 0.0f64);
    let mut sample = |a: &Node| {
        let s = a.scrape();
        let v = |name, dir| s.value(name, &[("direction", dir)]).unwrap_or(0.0);
        max_in = max_in.max(v("fraudmesh_connections", "in"));
        max_pending = max_pending.max(v("fraudmesh_connections_pending", "in"));
        s
    };
    let denied = |s: &fraudmesh_node::metrics::Scrape, reason| {
        s.value("fraudmesh_connections_denied_total", &[("reason", reason)])
            .unwrap_or(0.0)
    };
    // The dials first (so that they, not the silent sockets, take the handshake slots
    // and some get far enough to meet the per-IP bound), then the raw sockets.
    wait_for("the dials to meet the per-IP bound", DEADLINE, || {
        let s = sample(&a);
        (denied(&s, "per_ip") > 0.0).then_some(())
    });
    let raw = rt.spawn(raw_sockets(sock, hold.clone()));
    wait_for("the raw sockets to meet the handshake bound", DEADLINE, || {
        let s = sample(&a);
        (denied(&s, "pending_incoming") > 0.0).then_some(())
    });
    let target = "198.51.100.99";
    b.report(&[target, "--kind", "scan"]);
    wait_for("B's report to reach A during the flood", DEADLINE, || {
        sample(&a);
        (a.reporters(target) == vec![b.peer_id.clone()]).then_some(())
    });
    // Keep measuring while the silent sockets hold their handshake slots.
    while flood_start.elapsed() < Duration::from_secs(8) {
        sample(&a);
    }
    stop.store(true, Ordering::Relaxed);
    let during = during.join().unwrap();
    let scrape = a.scrape();

    release.send(true).unwrap();
    let dials: Vec<Dials> = rt.block_on(async {
        let mut out = Vec::new();
        for d in dialers {
            out.push(d.await.unwrap());
        }
        out
    });
    let raw_connected = rt.block_on(raw).unwrap();
    drop(rt);

    let sum = |f: fn(&Dials) -> usize| dials.iter().map(f).sum::<usize>();
    eprintln!(
        "flood: {} libp2p dials ({} established, {} failed, {} closed by the node), {RAW} raw sockets ({raw_connected} connected)",
        IDENTITIES * DIALS_EACH,
        sum(|d| d.established),
        sum(|d| d.failed),
        sum(|d| d.closed),
    );
    for s in scrape.samples("fraudmesh_connections_denied_total") {
        eprintln!("  denied {:?}: {}", s.labels, s.value);
    }
    eprintln!("GET /v1/status without flood: {}", summary(quiet));
    eprintln!("GET /v1/status during flood:  {}", summary(during));
    eprintln!("most established incoming seen: {max_in}, most pending incoming: {max_pending}");

    // B's connection counts toward 127.0.0.1's share like the flood's.
    assert!(max_in <= MAX_INCOMING_PER_IP, "{max_in} established incoming");
    assert!(max_pending <= MAX_PENDING_INCOMING, "{max_pending} pending incoming");
    assert!(
        sum(|d| d.established) >= 1,
        "some dials got through the handshake and were bounded after it"
    );
    assert!(b.status()["peers"].as_u64().unwrap_or(0) >= 1, "B kept its connection");

    // Once the flood is gone, a new honest peer gets in.
    let mut c = Node::init(&["--seed", &a.addr()]);
    c.start();
    c.wait_gossip_peers(1);
    let target2 = "198.51.100.100";
    c.report(&[target2, "--kind", "scan"]);
    wait_for("C's report to reach A after the flood", DEADLINE, || {
        (a.reporters(target2) == vec![c.peer_id.clone()]).then_some(())
    });
}
