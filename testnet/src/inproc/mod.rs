//! `fraudmesh-testnet inproc`: hundreds of real node stacks (the node's own engine with
//! validation and ledger, its sled store, its libp2p swarm with every behaviour) in one
//! process, over libp2p's memory transport with noise + yamux. With `--baseline`, bare
//! gossipsub swarms then run on the very same connection graph, with the same payload
//! size and publish rate, so the report gives both and their ratio.
//!
//! The baseline's graph is the one our stacks ended the load with (each node keeps its
//! connections within `[net] max_peers`, pruning what Kademlia lookups left behind, so
//! the graph at the end is the one the mesh settles on). Connections per node (max and
//! mean) are counted at the end of the load: ours from each node's connection gauges,
//! the baseline's from the graph.
//!
//! Our latency is report → blocked: the time before `EngineHandle::report` to the
//! `since` each engine records when its decision turns to block (milliseconds, the
//! resolution of `since`). The baseline's is publish → receive, in microseconds.
//!
//! This module owns the arguments, the report, the node stacks' run and what both runs
//! share (graph, schedule, mesh forming, draining, peak RSS); `baseline` owns the
//! bare gossipsub run.

mod baseline;

use crate::report::Percentiles;
use anyhow::{bail, Context};
use fraudmesh::identity::Identity;
use fraudmesh::proto;
use fraudmesh::sighting::{sign, Draft, Evidence, Kind};
use fraudmesh::target::Target;
use fraudmesh_node::daemon::config::{Config, TrustedPeer};
use fraudmesh_node::daemon::Stack;
use fraudmesh_node::engine::store::SledStore;
use fraudmesh_node::metrics::DirectionLabel;
use fraudmesh_node::net::Transport;
use fraudmesh_node::now_ms;
use prost::Message;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// How long the mesh may take to form.
const FORM_DEADLINE: Duration = Duration::from_secs(120);
/// How long deliveries may take after the last publish.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);
/// How long peer counts must stay unchanged before the load starts.
const SETTLED: Duration = Duration::from_secs(2);
/// How long every node must have had enough gossip peers when counts keep moving.
const READY_ENOUGH: Duration = Duration::from_secs(15);
/// After this long, a poll that finds every node ready is enough (a big mesh on two
/// cores may never be ready for many polls in a row while it still connects).
const READY_AT_LAST: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct InprocArgs {
    /// Node stacks.
    pub nodes: usize,
    /// Also run bare gossipsub on the same graph.
    pub baseline: bool,
    /// Sightings per second, all nodes together.
    pub rate: f64,
    /// How long to publish, seconds.
    pub duration_s: f64,
    /// Peers each node dials (its seeds).
    pub degree: usize,
    /// Random seed: identities, graph, publishers.
    pub seed: u64,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    /// Messages published.
    pub published: usize,
    /// Delivered (node, message) pairs / all pairs (publishers excluded).
    pub delivery_ratio: f64,
    /// Latency over every delivered pair, ms.
    pub latency_ms: Percentiles,
    /// Peak resident set size of the process during this run, bytes.
    pub rss_bytes: u64,
    /// The same per node.
    pub rss_bytes_per_node: u64,
    /// Seconds from start until the mesh had formed.
    pub form_s: f64,
    /// Most established connections of one node at the end of the load.
    pub connections_max: usize,
    /// Mean established connections per node at the end of the load.
    pub connections_mean: f64,
}

impl RunFigures {
    /// The figures of `published` messages to `nodes` nodes, of which `latency` holds
    /// one value per delivered pair; `connections` holds each node's at the end.
    fn new(published: usize, nodes: usize, latency: &[f64], peak: &Peak, form_s: f64, connections: &[usize]) -> Self {
        let pairs = published * (nodes - 1);
        Self {
            connections_max: connections.iter().copied().max().unwrap_or(0),
            connections_mean: connections.iter().sum::<usize>() as f64 / connections.len().max(1) as f64,
            published,
            delivery_ratio: latency.len() as f64 / pairs as f64,
            latency_ms: Percentiles::of(latency),
            rss_bytes: peak.0,
            rss_bytes_per_node: peak.0 / nodes as u64,
            form_s,
        }
    }
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct InprocReport {
    /// Node stacks.
    pub nodes: usize,
    /// Connections of the graph both runs used.
    pub edges: usize,
    /// Sightings per second.
    pub rate: f64,
    /// Seconds of publishing.
    pub duration_s: f64,
    /// Bytes of one published message (a one-sighting envelope; the baseline's payload).
    pub payload_bytes: usize,
    /// Seed.
    pub seed: u64,
    /// fraudmesh node stacks.
    pub fraudmesh: RunFigures,
    /// Bare gossipsub on the same graph, when asked for.
    pub baseline: Option<RunFigures>,
    /// Why the baseline has no figures, when it failed (ours are kept).
    pub baseline_error: Option<String>,
    /// Our p99 over the baseline's.
    pub p99_ratio: Option<f64>,
    /// Most established connections of one of our nodes at the end of the load.
    pub connections_max: usize,
    /// Mean established connections per node of ours at the end of the load.
    pub connections_mean: f64,
    /// Our run's peak RSS over the nodes, bytes.
    pub rss_bytes_per_node: u64,
}

impl InprocReport {
    /// A plain summary table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "inproc: {} node stacks, {} connections, {} msg/s for {} s, payload {} bytes, seed {}",
            self.nodes, self.edges, self.rate, self.duration_s, self.payload_bytes, self.seed
        );
        let _ = writeln!(
            s,
            "{:<12} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9} {:>9}",
            "", "delivered", "p50 ms", "p95 ms", "p99 ms", "max ms", "RSS MiB", "KiB/node", "conn max", "conn mean"
        );
        let mut row = |name: &str, f: &RunFigures| {
            let l = &f.latency_ms;
            let _ = writeln!(
                s,
                "{:<12} {:>9.4} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>10.0} {:>10.0} {:>9} {:>9.1}",
                name,
                f.delivery_ratio,
                l.p50,
                l.p95,
                l.p99,
                l.max,
                f.rss_bytes as f64 / 1048576.0,
                f.rss_bytes_per_node as f64 / 1024.0,
                f.connections_max,
                f.connections_mean
            );
        };
        row("fraudmesh", &self.fraudmesh);
        if let Some(b) = &self.baseline {
            row("gossipsub", b);
        }
        if let Some(e) = &self.baseline_error {
            let _ = writeln!(s, "baseline failed: {e}");
        }
        if let Some(r) = self.p99_ratio {
            let _ = writeln!(s, "p99 fraudmesh / gossipsub: {r:.2}");
        }
        s
    }
}

/// Peak resident set size of this process so far (VmHWM) and now (VmRSS), bytes.
fn rss_now() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The peak resident set size of this process seen so far, bytes.
struct Peak(u64);

impl Peak {
    fn new() -> Self {
        Self(rss_now())
    }

    fn sample(&mut self) {
        self.0 = self.0.max(rss_now());
    }
}

/// The random graph: node i dials `degree` distinct others, and i+1 (a ring keeps it
/// connected). Returns each node's dial list.
fn graph(rng: &mut StdRng, n: usize, degree: usize) -> Vec<Vec<usize>> {
    (0..n)
        .map(|i| {
            let mut dials = BTreeSet::new();
            dials.insert((i + 1) % n);
            let mut others: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            others.shuffle(rng);
            for j in others.into_iter().take(degree.saturating_sub(1)) {
                dials.insert(j);
            }
            dials.remove(&i);
            dials.into_iter().collect()
        })
        .collect()
}

/// Runs the node stacks (and the baseline).
pub async fn run(args: &InprocArgs) -> anyhow::Result<InprocReport> {
    if args.nodes < 2 {
        bail!("--nodes must be at least 2");
    }
    if args.degree == 0 || args.degree >= args.nodes {
        bail!("--degree must be between 1 and --nodes - 1");
    }
    if !(args.rate.is_finite() && args.rate > 0.0 && args.duration_s.is_finite() && args.duration_s > 0.0) {
        bail!("--rate and --duration must be positive");
    }
    let mut rng = StdRng::seed_from_u64(args.seed);
    let n = args.nodes;
    let dials = graph(&mut rng, n, args.degree);
    let identities: Vec<Identity> = (0..n).map(|_| Identity::from_secret(rng.gen())).collect();
    let peer_ids: Vec<String> = identities.iter().map(|i| i.public().peer_id()).collect();
    let payload_bytes = proto::Envelope {
        sightings: vec![sign(&identities[0], draft(0, now_ms())).to_proto()],
        endorsements: vec![],
    }
    .encode_to_vec()
    .len();

    let (ours, edges) = run_stacks(args, &mut rng, &identities, &peer_ids, &dials).await?;
    let (baseline, baseline_error) = if args.baseline {
        match baseline::run(args, &mut rng, &edges, payload_bytes).await {
            Ok(b) => (Some(b), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        }
    } else {
        (None, None)
    };
    let p99_ratio = baseline
        .as_ref()
        .filter(|b| b.latency_ms.p99 > 0.0)
        .map(|b| ours.latency_ms.p99 / b.latency_ms.p99);
    Ok(InprocReport {
        nodes: n,
        edges: edges.len(),
        rate: args.rate,
        duration_s: args.duration_s,
        payload_bytes,
        seed: args.seed,
        baseline,
        baseline_error,
        p99_ratio,
        connections_max: ours.connections_max,
        connections_mean: ours.connections_mean,
        rss_bytes_per_node: ours.rss_bytes_per_node,
        fraudmesh: ours,
    })
}

/// Sighting `k`'s draft: a distinct address in 198.18.0.0/15.
fn draft(k: usize, now: u64) -> Draft {
    let ip = Ipv4Addr::from(0xC612_0000u32 + 1 + k as u32);
    Draft {
        target: Target::Ip(IpAddr::V4(ip).into()),
        kind: Kind::Scan,
        observed_at: now,
        ttl_s: 3600,
        count: 1,
        evidence: Evidence::default(),
    }
}

/// The publish schedule: (ms after start, publishing node).
fn schedule(args: &InprocArgs, rng: &mut StdRng) -> Vec<(u64, usize)> {
    let count = (args.rate * args.duration_s).round().max(1.0) as usize;
    (0..count)
        .map(|k| ((k as f64 * 1000.0 / args.rate) as u64, rng.gen_range(0..args.nodes)))
        .collect()
}

/// Waits until every node has `want` peers and the counts have been still for
/// [`SETTLED`]; `counts` reads (peers, gossip peers) of every node.
async fn wait_formed<F, Fut>(want: usize, mut counts: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<(usize, usize)>>>,
{
    let start = Instant::now();
    let mut last = Vec::new();
    let mut still = Instant::now();
    let mut all_ready: Option<Instant> = None;
    loop {
        let c = counts().await?;
        if c != last {
            last = c.clone();
            still = Instant::now();
        }
        let ready = c.iter().filter(|(_, g)| *g >= want).count();
        if ready < c.len() {
            all_ready = None;
        } else if all_ready.is_none() {
            all_ready = Some(Instant::now());
        }
        // Settled, or ready long enough: hundreds of nodes keep discovering each other
        // for a while, and their counts need not stop moving for the mesh to work.
        if all_ready.is_some_and(|t| {
            still.elapsed() >= SETTLED || t.elapsed() >= READY_ENOUGH || start.elapsed() >= READY_AT_LAST
        }) {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > FORM_DEADLINE {
            bail!(
                "the mesh did not form within {FORM_DEADLINE:?}: {ready}/{} nodes have {want} gossip peers",
                c.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (sampling the peak RSS) until `done` or [`DRAIN_DEADLINE`].
async fn drain<F, Fut>(peak: &mut Peak, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let drained = Instant::now();
    loop {
        let all = done().await?;
        peak.sample();
        if all || drained.elapsed() > DRAIN_DEADLINE {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Our node stacks: start, form the mesh, report on schedule, drain, measure, stop.
/// Returns the figures and the connection graph the mesh formed.
async fn run_stacks(
    args: &InprocArgs,
    rng: &mut StdRng,
    identities: &[Identity],
    peer_ids: &[String],
    dials: &[Vec<usize>],
) -> anyhow::Result<(RunFigures, Vec<(usize, usize)>)> {
    let n = args.nodes;
    let tmp = tempfile::tempdir().context("a temporary directory for the stores")?;
    let start = Instant::now();
    let mut peak = Peak::new();
    let stacks = start_stacks(tmp.path(), identities, peer_ids, dials, start)?;
    let form_s = wait_formed(args.degree.min(4), || stack_counts(&stacks)).await?;
    tracing::info!(nodes = n, form_s, "node stacks formed a mesh");
    let plan = schedule(args, rng);
    let sent_at = report_on_schedule(&stacks, &plan, &mut peak).await?;
    // Drain: until every node blocks every target, or the deadline.
    drain(&mut peak, || async {
        let mut all = true;
        for s in &stacks {
            all &= s.engine.stats().await?.blocked >= plan.len();
        }
        Ok(all)
    })
    .await?;
    let connections = stack_connections(&stacks);
    let edges = stack_edges(&stacks, peer_ids).await?;
    let lat = stack_latencies(&stacks, &plan, &sent_at).await?;
    let figures = RunFigures::new(plan.len(), n, &lat, &peak, form_s, &connections);
    tracing::info!(
        edges = edges.len(),
        connections_max = figures.connections_max,
        connections_mean = figures.connections_mean,
        "node stacks at the end of the load"
    );
    tracing::info!(elapsed_s = start.elapsed().as_secs_f64(), "node stacks done; stopping");
    for s in stacks {
        s.stop().await;
    }
    Ok((figures, edges.into_iter().collect()))
}

/// Node `i`'s configuration: listens on `/memory/i+1`, dials its seeds, trusts every
/// other node, a small store cache.
fn stack_config(i: usize, peer_ids: &[String], dials: &[Vec<usize>]) -> Config {
    let mut c = Config::default();
    c.node.listen = vec![format!("/memory/{}", i + 1)];
    c.node.seeds = dials[i]
        .iter()
        .map(|&j| format!("/memory/{}/p2p/{}", j + 1, peer_ids[j]))
        .collect();
    c.trust.peers = peer_ids
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, p)| TrustedPeer {
            peer_id: p.clone(),
            weight: 1.0,
        })
        .collect();
    c.store.cache_mb = 2;
    c
}

/// Starts every node stack, each with its sled store in `dir`.
fn start_stacks(
    dir: &std::path::Path,
    identities: &[Identity],
    peer_ids: &[String],
    dials: &[Vec<usize>],
    start: Instant,
) -> anyhow::Result<Vec<Stack>> {
    let mut stacks = Vec::with_capacity(identities.len());
    for (i, identity) in identities.iter().enumerate() {
        let settings = stack_config(i, peer_ids, dials)
            .settings(identity.public())
            .context("node settings")?;
        let store = SledStore::open(&dir.join(format!("n{i}")), settings.cache_bytes)?;
        if i % 50 == 49 {
            tracing::info!(
                started = i + 1,
                elapsed_s = start.elapsed().as_secs_f64(),
                "starting node stacks"
            );
        }
        let stack = Stack::start(
            Identity::from_secret(identity.secret_bytes()),
            &settings,
            Box::new(store),
            Transport::Memory,
        )?;
        stacks.push(stack);
    }
    Ok(stacks)
}

/// (peers, gossip peers) of every stack.
async fn stack_counts(stacks: &[Stack]) -> anyhow::Result<Vec<(usize, usize)>> {
    let mut out = Vec::with_capacity(stacks.len());
    for s in stacks {
        let p = s.net.peers().await?;
        out.push((p.len(), p.iter().filter(|p| p.gossip).count()));
    }
    Ok(out)
}

/// Each stack's established connections (both directions), from its gauges.
fn stack_connections(stacks: &[Stack]) -> Vec<usize> {
    stacks
        .iter()
        .map(|s| {
            ["in", "out"]
                .into_iter()
                .map(|direction| s.metrics.connections.get_or_create(&DirectionLabel { direction }).get())
                .sum::<i64>()
                .max(0) as usize
        })
        .collect()
}

/// Each node's connections in a graph of `n` nodes given as edges.
fn graph_degrees(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut d = vec![0; n];
    for &(a, b) in edges {
        d[a] += 1;
        d[b] += 1;
    }
    d
}

/// The connections between stacks, each once as (lower, higher) index.
async fn stack_edges(stacks: &[Stack], peer_ids: &[String]) -> anyhow::Result<BTreeSet<(usize, usize)>> {
    let index: HashMap<&str, usize> = peer_ids.iter().enumerate().map(|(i, p)| (p.as_str(), i)).collect();
    let mut edges = BTreeSet::new();
    for (i, s) in stacks.iter().enumerate() {
        for p in s.net.peers().await? {
            if let Some(&j) = index.get(p.peer_id.as_str()) {
                edges.insert((i.min(j), i.max(j)));
            }
        }
    }
    Ok(edges)
}

/// Reports sighting `k` on its node at its time, each in a task of its own; returns
/// when each was reported (ms).
async fn report_on_schedule(stacks: &[Stack], plan: &[(u64, usize)], peak: &mut Peak) -> anyhow::Result<Vec<u64>> {
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(plan.len());
    for (k, (at, node)) in plan.iter().enumerate() {
        tokio::time::sleep_until(t0 + Duration::from_millis(*at)).await;
        let engine = stacks[*node].engine.clone();
        tasks.push(tokio::spawn(async move {
            let sent = now_ms();
            engine.report(vec![draft(k, sent)]).await.map(|_| sent)
        }));
        if k % 64 == 0 {
            peak.sample();
        }
    }
    let mut sent_at = Vec::with_capacity(tasks.len());
    for t in tasks {
        sent_at.push(t.await.context("a report task")??);
    }
    Ok(sent_at)
}

/// Report→blocked latency (ms) of every (node, sighting) pair blocked, the publisher's
/// own excluded.
async fn stack_latencies(stacks: &[Stack], plan: &[(u64, usize)], sent_at: &[u64]) -> anyhow::Result<Vec<f64>> {
    let targets: HashMap<String, usize> = (0..plan.len()).map(|k| (draft(k, 0).target.to_string(), k)).collect();
    let mut lat = Vec::new();
    for (i, s) in stacks.iter().enumerate() {
        for l in s.engine.list().await? {
            if let Some(&k) = targets.get(&l.target.to_string()) {
                if plan[k].1 != i {
                    lat.push(l.since.saturating_sub(sent_at[k]) as f64);
                }
            }
        }
    }
    Ok(lat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degrees_count_both_ends_of_each_edge() {
        assert_eq!(graph_degrees(4, &[(0, 1), (0, 2), (2, 3)]), [2, 1, 2, 1]);
    }

    #[test]
    fn the_graph_is_connected_and_has_no_self_loops() {
        let mut rng = StdRng::seed_from_u64(1);
        let g = graph(&mut rng, 50, 4);
        for (i, d) in g.iter().enumerate() {
            assert!(!d.contains(&i));
            assert!(d.contains(&((i + 1) % 50)), "the ring");
            assert!(d.len() <= 4);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dozen_stacks_and_the_baseline_deliver_everything() {
        let r = run(&InprocArgs {
            nodes: 12,
            baseline: true,
            rate: 20.0,
            duration_s: 1.0,
            degree: 4,
            seed: 3,
        })
        .await
        .unwrap();
        assert_eq!(r.fraudmesh.published, 20);
        assert_eq!(r.fraudmesh.delivery_ratio, 1.0, "{r:?}");
        let b = r.baseline.as_ref().unwrap();
        assert_eq!(b.delivery_ratio, 1.0, "{r:?}");
        assert!(r.edges >= 12, "at least the ring");
        assert!(r.p99_ratio.is_some());
        assert!(r.payload_bytes > 100 && r.payload_bytes < 400, "{}", r.payload_bytes);
        assert!(r.table().contains("gossipsub"));
        // Connections, not peers: a pair may hold two for a while (both dialled at once,
        // or an AutoNAT dial-back beside the connection it tests).
        assert!(r.connections_max >= 2 && r.connections_max <= 2 * 11, "{r:?}");
        assert!(r.connections_mean >= 2.0 && r.connections_mean <= r.connections_max as f64);
        let b = r.baseline.as_ref().unwrap();
        assert_eq!(b.connections_mean, 2.0 * r.edges as f64 / 12.0, "the graph's degree");
        assert!(r.rss_bytes_per_node > 0);
    }
}
