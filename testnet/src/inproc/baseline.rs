//! The `--baseline` of `fraudmesh-testnet inproc`: bare gossipsub swarms (no engine, no
//! validation, no store) on the very connection graph our node stacks formed, with the
//! same payload size and publish schedule; latency is publish → receive, µs.

use super::{drain, graph_degrees, schedule, wait_formed, InprocArgs, Peak, RunFigures};
use anyhow::Context;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::swarm::SwarmEvent;
use libp2p::Multiaddr;
use rand::rngs::StdRng;
use rand::Rng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Memory addresses of the baseline start here (ours start at 1).
const BASELINE_ADDR: u64 = 1_000_000;

/// A bare gossipsub node: its publish channel and what it received.
struct Bare {
    publish: mpsc::Sender<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

/// Every (node, sequence number, µs since the clock started) received.
type Received = Arc<Mutex<Vec<(usize, u32, u64)>>>;

/// Each bare node's subscribed peers.
type Subscribed = Arc<Vec<AtomicUsize>>;

/// The baseline: bare gossipsub swarms on the same graph, the same payload size and
/// schedule.
pub(super) async fn run(
    args: &InprocArgs,
    rng: &mut StdRng,
    edges: &[(usize, usize)],
    payload_bytes: usize,
) -> anyhow::Result<RunFigures> {
    let n = args.nodes;
    let start = Instant::now();
    let clock = Instant::now();
    let received: Received = Arc::new(Mutex::new(Vec::new()));
    let subscribed: Subscribed = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
    let mut peak = Peak::new();
    let swarms = bare_swarms(n, edges)?;
    let bare: Vec<Bare> = swarms
        .into_iter()
        .enumerate()
        .map(|(i, swarm)| spawn_bare(i, swarm, received.clone(), subscribed.clone(), clock))
        .collect();
    let form_s = wait_formed(args.degree.min(4), || {
        let c: Vec<(usize, usize)> = subscribed
            .iter()
            .map(|s| {
                let v = s.load(Ordering::Relaxed);
                (v, v)
            })
            .collect();
        async move { Ok(c) }
    })
    .await?;
    tracing::info!(form_s, "baseline formed a mesh");
    let plan = schedule(args, rng);
    let sent = publish_on_schedule(&bare, &plan, payload_bytes, rng, clock, &mut peak).await?;
    let expected = plan.len() * (n - 1);
    drain(&mut peak, || {
        let got = received.lock().map(|r| r.len()).unwrap_or(0);
        async move { Ok(got >= expected) }
    })
    .await?;
    let lat: Vec<f64> = received
        .lock()
        .map_err(|_| anyhow::anyhow!("a baseline task panicked"))?
        .iter()
        .filter(|(node, seq, _)| plan.get(*seq as usize).is_some_and(|(_, p)| p != node))
        .map(|(_, seq, at)| at.saturating_sub(sent[*seq as usize]) as f64 / 1000.0)
        .collect();
    for b in bare {
        b.task.abort();
    }
    tracing::info!(elapsed_s = start.elapsed().as_secs_f64(), "baseline done");
    let connections = graph_degrees(n, edges);
    Ok(RunFigures::new(plan.len(), n, &lat, &peak, form_s, &connections))
}

/// `n` bare gossipsub swarms subscribed to one topic, listening on memory addresses
/// from [`BASELINE_ADDR`], dialling exactly `edges`.
fn bare_swarms(n: usize, edges: &[(usize, usize)]) -> anyhow::Result<Vec<libp2p::Swarm<gossipsub::Behaviour>>> {
    let mut ids = Vec::with_capacity(n);
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let mut swarm = bare_swarm()?;
        swarm
            .behaviour_mut()
            .subscribe(&IdentTopic::new("baseline"))
            .context("subscribing")?;
        let addr: Multiaddr = format!("/memory/{}", BASELINE_ADDR + i as u64).parse()?;
        swarm.listen_on(addr).context("listening")?;
        ids.push(*swarm.local_peer_id());
        nodes.push(swarm);
    }
    // Dial exactly the edges the node stacks had.
    for &(a, b) in edges {
        let addr: Multiaddr = format!("/memory/{}/p2p/{}", BASELINE_ADDR + b as u64, ids[b]).parse()?;
        nodes[a].dial(addr).context("dialling")?;
    }
    Ok(nodes)
}

/// One bare gossipsub swarm over the memory transport with noise and yamux.
fn bare_swarm() -> anyhow::Result<libp2p::Swarm<gossipsub::Behaviour>> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(fraudmesh_node::net::memory_transport)?
        .with_behaviour(|key| {
            let cfg = gossipsub::ConfigBuilder::default()
                .heartbeat_initial_delay(Duration::from_millis(100))
                .heartbeat_interval(Duration::from_secs(1))
                .build()?;
            let b: gossipsub::Behaviour = gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), cfg)?;
            Ok(b)
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build())
}

/// Drives bare node `i` in a task: publishes what comes on its channel, records what it
/// receives and counts its subscribed peers.
fn spawn_bare(
    i: usize,
    mut swarm: libp2p::Swarm<gossipsub::Behaviour>,
    received: Received,
    subscribed: Subscribed,
    clock: Instant,
) -> Bare {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
    let topic = IdentTopic::new("baseline");
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(data) = rx.recv() => {
                    let _ = swarm.behaviour_mut().publish(topic.clone(), data);
                }
                ev = swarm.select_next_some() => match ev {
                    SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) => {
                        let at = clock.elapsed().as_micros() as u64;
                        if message.data.len() >= 4 {
                            let seq = u32::from_be_bytes([message.data[0], message.data[1], message.data[2], message.data[3]]);
                            if let Ok(mut r) = received.lock() {
                                r.push((i, seq, at));
                            }
                        }
                    }
                    SwarmEvent::Behaviour(gossipsub::Event::Subscribed { .. }) => {
                        subscribed[i].fetch_add(1, Ordering::Relaxed);
                    }
                    SwarmEvent::Behaviour(gossipsub::Event::Unsubscribed { .. }) => {
                        subscribed[i].fetch_sub(1, Ordering::Relaxed);
                    }
                    _ => {}
                },
            }
        }
    });
    Bare { publish: tx, task }
}

/// Publishes message `k` (its number, then random bytes up to the payload size) on its
/// node at its time; returns when each was published (µs on `clock`).
async fn publish_on_schedule(
    bare: &[Bare],
    plan: &[(u64, usize)],
    payload_bytes: usize,
    rng: &mut StdRng,
    clock: Instant,
    peak: &mut Peak,
) -> anyhow::Result<Vec<u64>> {
    let t0 = tokio::time::Instant::now();
    let mut sent = Vec::with_capacity(plan.len());
    for (k, (at, node)) in plan.iter().enumerate() {
        tokio::time::sleep_until(t0 + Duration::from_millis(*at)).await;
        let mut data = vec![0u8; payload_bytes.max(4)];
        data[..4].copy_from_slice(&(k as u32).to_be_bytes());
        // The rest random, like a signature: nothing compresses or repeats.
        rng.fill(&mut data[4..]);
        sent.push(clock.elapsed().as_micros() as u64);
        bare[*node]
            .publish
            .send(data)
            .await
            .context("a baseline node stopped")?;
        if k % 64 == 0 {
            peak.sample();
        }
    }
    Ok(sent)
}
