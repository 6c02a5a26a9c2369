//! The scenarios of `fraudmesh-testnet run`: each starts a cluster of real nodes, forms
//! the mesh, attacks it (and breaks it), checks its expectations and measures how fast
//! and how completely it protects.
//!
//! Latency is measured without polling: the testnet notes the wall-clock time just
//! before each report, every node records when its decision for a target turned to block
//! (`since` in `GET /v1/blocklist`), and all processes share this machine's clock.

use crate::client::{metric_sum, Api};
use crate::cluster::Cluster;
use crate::plot;
use crate::report::{Expectation, NodeReport, Percentiles, Report};
use crate::rogue::{self, Rogue};
use anyhow::{bail, Context};
use fraudmesh::identity::Identity;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the mesh may take to form.
const MESH_DEADLINE: Duration = Duration::from_secs(60);
/// How long convergence may take after the last report (or heal, or restart).
const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);
/// How long connection counts must stay unchanged before the mesh counts as formed.
const SETTLED: Duration = Duration::from_secs(2);
/// Poll period of waits.
const POLL: Duration = Duration::from_millis(50);
/// Stranger identities in `poison`.
const STRANGERS: usize = 20;
/// Invalid messages the flooder sends in `poison`.
const INVALID_MESSAGES: usize = 200;
/// The address the strangers try to get blocked (RFC 5737).
const VICTIM: &str = "198.51.100.66";

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Reports of many targets from several nodes at a steady rate.
    AttackWave,
    /// Nodes started after the attack catch up.
    LateJoin,
    /// kill -9 and restart random nodes during an attack wave.
    Churn,
    /// Split the mesh in two, attack both sides, heal.
    Partition,
    /// Stranger identities report a victim and a peer floods invalid messages.
    Poison,
}

impl Scenario {
    /// The name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::AttackWave => "attack-wave",
            Scenario::LateJoin => "late-join",
            Scenario::Churn => "churn",
            Scenario::Partition => "partition",
            Scenario::Poison => "poison",
        }
    }
}

/// What `run` is asked to do.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// Nodes.
    pub nodes: usize,
    /// Seed peers (the first ones).
    pub seeds: usize,
    /// The scenario.
    pub scenario: Scenario,
    /// Random seed.
    pub seed: u64,
    /// Output directory (node directories, report.json, plots).
    pub out: PathBuf,
    /// The `fraudmesh` binary.
    pub bin: PathBuf,
    /// Targets reported in the attack wave.
    pub targets: usize,
    /// Reports per second.
    pub rate: f64,
    /// Nodes that report.
    pub reporters: usize,
    /// Draw a progress bar.
    pub progress: bool,
    /// After the scenario, keep the nodes running until Ctrl-C.
    pub hold: bool,
}

impl RunArgs {
    /// Checks the arguments before anything starts.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.nodes < 2 {
            bail!("--nodes must be at least 2");
        }
        if self.nodes > 1000 {
            bail!("--nodes above 1000 real processes will not fit one machine; see `fraudmesh-testnet sim`");
        }
        if self.seeds == 0 || self.seeds > self.nodes {
            bail!("--seeds must be between 1 and --nodes ({})", self.nodes);
        }
        if self.targets == 0 || self.targets > 100_000 {
            bail!("--targets must be between 1 and 100000");
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!("--rate must be a positive number");
        }
        if self.reporters == 0 {
            bail!("--reporters must be at least 1");
        }
        if self.scenario == Scenario::Partition && self.nodes < 4 {
            bail!("partition needs at least 4 nodes (two on each side)");
        }
        if self.scenario == Scenario::Poison && self.nodes < 3 {
            bail!("poison needs at least 3 nodes");
        }
        if self.scenario == Scenario::LateJoin && self.nodes < 3 {
            bail!("late-join needs at least 3 nodes");
        }
        Ok(())
    }
}

/// One acknowledged report.
#[derive(Debug, Clone)]
struct Sent {
    target: String,
    reporter: usize,
    at_ms: u64,
}

/// Something the attack wave does at a time.
#[derive(Debug, Clone)]
enum Step {
    /// Report target `i` on the first running node of the list.
    Report(usize, Vec<usize>),
    /// kill -9 a node.
    Kill(usize),
    /// Start it again.
    Restart(usize),
}

fn now_ms() -> u64 {
    fraudmesh_node::now_ms()
}

/// The state of a run.
struct Ctx {
    args: RunArgs,
    cluster: Cluster,
    rng: StdRng,
    bar: ProgressBar,
    rss_max: Vec<u64>,
    figures: serde_json::Map<String, serde_json::Value>,
    expectations: Vec<Expectation>,
}

impl Ctx {
    fn sample_rss(&mut self) {
        for m in &self.cluster.members {
            if let Some(rss) = m.rss_bytes() {
                self.rss_max[m.index] = self.rss_max[m.index].max(rss);
            }
        }
    }

    fn phase(&self, msg: &str, len: u64) {
        self.bar.set_message(msg.to_string());
        self.bar.set_length(len);
        self.bar.set_position(0);
    }

    fn figure(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.figures.insert(key.to_string(), value.into());
    }

    fn expect(&mut self, name: &str, pass: bool, figure: impl Into<String>) {
        self.expectations.push(Expectation::new(name, pass, figure));
    }

    fn apis(&self, nodes: &[usize]) -> anyhow::Result<Vec<(usize, Api)>> {
        nodes
            .iter()
            .map(|&i| Ok((i, self.cluster.members[i].api()?.clone())))
            .collect()
    }

    /// Starts nodes, seeds first (the others dial them at start).
    async fn start_nodes(&mut self, nodes: &[usize]) -> anyhow::Result<()> {
        let seeds: Vec<usize> = nodes.iter().copied().filter(|&i| i < self.args.seeds).collect();
        let rest: Vec<usize> = nodes.iter().copied().filter(|&i| i >= self.args.seeds).collect();
        self.phase("starting nodes", nodes.len() as u64);
        for group in [seeds, rest] {
            for &i in &group {
                self.cluster.spawn(i)?;
            }
            for &i in &group {
                self.cluster.wait_started(i).await?;
                self.bar.inc(1);
            }
        }
        Ok(())
    }

    /// Waits until every node in `nodes` has enough gossip peers and the connections
    /// have settled (no node's peer count changed for [`SETTLED`]): right after start,
    /// discovery dials and identify/Kademlia exchanges keep a big mesh busy, and an
    /// attack then would measure the start-up rather than the mesh.
    async fn wait_mesh(&mut self, nodes: &[usize]) -> anyhow::Result<()> {
        let want = (nodes.len() - 1).min(3) as u64;
        self.phase("forming the mesh", nodes.len() as u64);
        let apis = self.apis(nodes)?;
        let deadline = Instant::now() + MESH_DEADLINE;
        let mut last: Vec<u64> = Vec::new();
        let mut stable_since = Instant::now();
        loop {
            let mut ready = 0;
            let mut counts = Vec::with_capacity(apis.len());
            for (_, api) in &apis {
                let st = api.status().await?;
                if st["gossip_peers"].as_u64().unwrap_or(0) >= want {
                    ready += 1;
                }
                counts.push(st["peers"].as_u64().unwrap_or(0));
            }
            if counts != last {
                last = counts;
                stable_since = Instant::now();
            }
            self.bar.set_position(ready as u64);
            if ready == apis.len() && stable_since.elapsed() >= SETTLED {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the mesh did not form within {MESH_DEADLINE:?}: {ready}/{} nodes have {want} gossip peers",
                    apis.len()
                );
            }
            self.sample_rss();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs the steps at their times (ms after the start); returns the acknowledged
    /// reports. Reports go out concurrently, so a slow answer delays nothing.
    async fn wave(&mut self, targets: &[String], steps: Vec<(u64, Step)>) -> anyhow::Result<Vec<Sent>> {
        let reports = steps.iter().filter(|(_, s)| matches!(s, Step::Report(..))).count();
        self.phase("attacking", reports as u64);
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        let mut last_rss = Instant::now();
        for (at, step) in steps {
            tokio::time::sleep_until(start + Duration::from_millis(at)).await;
            match step {
                Step::Report(t, candidates) => {
                    let Some(reporter) = candidates
                        .iter()
                        .copied()
                        .find(|&i| self.cluster.members[i].api.is_some())
                    else {
                        continue;
                    };
                    let api = self.cluster.members[reporter].api()?.clone();
                    let target = targets[t].clone();
                    let bar = self.bar.clone();
                    tasks.push(tokio::spawn(async move {
                        let at_ms = now_ms();
                        let ok = api.report(&target, "scan").await;
                        bar.inc(1);
                        ok.ok().map(|()| Sent {
                            target,
                            reporter,
                            at_ms,
                        })
                    }));
                }
                Step::Kill(i) => {
                    tracing::info!(node = i, "kill -9");
                    self.cluster.kill9(i).await?;
                }
                Step::Restart(i) => {
                    tracing::info!(node = i, "restart");
                    self.cluster.spawn(i)?;
                    self.cluster.wait_started(i).await?;
                }
            }
            if last_rss.elapsed() > Duration::from_millis(250) {
                self.sample_rss();
                last_rss = Instant::now();
            }
        }
        let mut sent = Vec::new();
        for t in tasks {
            if let Some(s) = t.await.context("a report task failed")? {
                sent.push(s);
            }
        }
        Ok(sent)
    }

    /// Waits until every node in `nodes` blocks at least `want[node]` targets, then
    /// returns each node's blocked targets with since when. On timeout returns what
    /// there is (the expectations then fail with the figures).
    async fn wait_blocked(
        &mut self,
        nodes: &[usize],
        want: &HashMap<usize, usize>,
        deadline: Duration,
    ) -> anyhow::Result<(bool, HashMap<usize, HashMap<String, u64>>)> {
        let total: usize = nodes.iter().map(|i| want.get(i).copied().unwrap_or(0)).sum();
        self.phase("converging", total as u64);
        let apis = self.apis(nodes)?;
        let end = Instant::now() + deadline;
        let done = loop {
            let mut have = 0usize;
            let mut all = true;
            for (i, api) in &apis {
                let n = api.status().await?["blocked"].as_u64().unwrap_or(0) as usize;
                let w = want.get(i).copied().unwrap_or(0);
                have += n.min(w);
                all &= n >= w;
            }
            self.bar.set_position(have as u64);
            if all {
                break true;
            }
            if Instant::now() > end {
                break false;
            }
            self.sample_rss();
            tokio::time::sleep(POLL).await;
        };
        let mut out = HashMap::new();
        for (i, api) in &apis {
            out.insert(*i, api.blocked_since().await?);
        }
        Ok((done, out))
    }
}

/// Distinct attacker addresses in 198.18.0.0/15 (RFC 2544 benchmarking space).
fn attackers(rng: &mut StdRng, n: usize) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let off: u32 = rng.gen_range(1..(1 << 17) - 1);
        if seen.insert(off) {
            out.push(Ipv4Addr::from((198u32 << 24) | (18 << 16) | off).to_string());
        }
    }
    out
}

/// Report steps for `targets[range]` at the run's rate, reporters taken in turn from
/// `reporters` (falling back to the next running one).
fn report_steps(range: std::ops::Range<usize>, reporters: &[usize], rate: f64, offset_ms: u64) -> Vec<(u64, Step)> {
    range
        .enumerate()
        .map(|(k, t)| {
            let at = offset_ms + (k as f64 * 1000.0 / rate) as u64;
            let mut order = reporters.to_vec();
            order.rotate_left(k % reporters.len());
            (at, Step::Report(t, order))
        })
        .collect()
}

/// Counts per node of how many targets each must block.
fn want_all(nodes: &[usize], n: usize) -> HashMap<usize, usize> {
    nodes.iter().map(|&i| (i, n)).collect()
}

/// Which (node, target) pairs are missing.
fn missing(blocked: &HashMap<usize, HashMap<String, u64>>, nodes: &[usize], targets: &[&str]) -> usize {
    nodes
        .iter()
        .map(|i| {
            let b = blocked.get(i);
            targets
                .iter()
                .filter(|t| !b.is_some_and(|b| b.contains_key(**t)))
                .count()
        })
        .sum()
}

/// Runs one scenario end to end and writes `report.json` and the plots into `out`.
pub async fn run(args: RunArgs) -> anyhow::Result<Report> {
    args.validate()?;
    if !args.bin.is_file() {
        bail!(
            "no fraudmesh binary at {}: build it (cargo build --release -p fraudmesh-node) or pass --bin",
            args.bin.display()
        );
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let cluster = Cluster::create(&args.bin, &args.out.join("nodes"), args.nodes, args.seeds)?;
    let bar = if args.progress {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {msg:<18} [{bar:40}] {pos}/{len}")
                .map_err(|e| anyhow::anyhow!("progress style: {e}"))?
                .progress_chars("=> "),
        );
        b.enable_steady_tick(Duration::from_millis(120));
        b
    } else {
        ProgressBar::hidden()
    };
    let mut ctx = Ctx {
        rng: StdRng::seed_from_u64(args.seed),
        rss_max: vec![0; args.nodes],
        cluster,
        bar,
        figures: Default::default(),
        expectations: Vec::new(),
        args,
    };
    // Ctrl-C or SIGTERM stops the scenario; every node started is stopped either way.
    let result = tokio::select! {
        r = scenario(&mut ctx) => r,
        s = interrupted() => Err(anyhow::anyhow!("interrupted by {s}")),
    };
    ctx.bar.finish_and_clear();
    let written = match result {
        Ok(finished) => write_outputs(&ctx.args.out, finished),
        Err(e) => Err(e),
    };
    if ctx.args.hold {
        if let Ok(report) = &written {
            print!("{}", report.table());
            hold(&ctx.cluster);
            interrupted().await;
        }
    }
    let killed = ctx.cluster.stop_all().await;
    if killed > 0 {
        tracing::warn!(killed, "nodes did not stop on SIGTERM in time and were killed");
    }
    written
}

/// Writes the plots and report.json into `out`.
fn write_outputs(out: &std::path::Path, mut finished: Finished) -> anyhow::Result<Report> {
    let lat: Vec<Vec<f64>> = finished.per_node.iter().map(|n| n.latency_ms_values.clone()).collect();
    let report = &mut finished.report;
    let mut plots = Vec::new();
    if lat.iter().any(|l| !l.is_empty()) {
        let title = format!("{}: report → blocked, {} nodes", report.scenario, report.nodes);
        plot::latency_cdf(&out.join("latency_cdf.svg"), &lat, &title)?;
        plots.push("latency_cdf.svg".to_string());
    }
    if !report.convergence.is_empty() {
        let title = format!("{}: convergence, {} nodes", report.scenario, report.nodes);
        plot::convergence(&out.join("convergence.svg"), &report.convergence, &title)?;
        plots.push("convergence.svg".to_string());
    }
    report.plots = plots;
    let path = out.join("report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(finished.report)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, naming it.
async fn interrupted() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term => "SIGTERM",
    }
}

/// Tells how to poke the running mesh.
fn hold(cluster: &Cluster) {
    let bin = cluster.bin().display().to_string();
    let first = &cluster.members[0];
    let last = &cluster.members[cluster.members.len() - 1];
    eprintln!("\nThe mesh keeps running (Ctrl-C stops every node). Poke it from another terminal:\n");
    eprintln!(
        "  {bin} --dir {} report 198.51.100.7 --kind auth-failure",
        first.dir.display()
    );
    eprintln!("  {bin} --dir {} check 198.51.100.7", last.dir.display());
    eprintln!("  {bin} --dir {} status", last.dir.display());
    eprintln!("  {bin} --dir {} peers\n", last.dir.display());
    eprintln!("Every node trusts every other one; logs are node.log in each directory.");
}

/// A report and the raw latencies behind its plots.
struct Finished {
    report: Report,
    per_node: Vec<NodeLatencies>,
}

struct NodeLatencies {
    latency_ms_values: Vec<f64>,
}

async fn scenario(ctx: &mut Ctx) -> anyhow::Result<Finished> {
    let n = ctx.args.nodes;
    let all: Vec<usize> = (0..n).collect();
    let started = Instant::now();
    let sent_all: Vec<Sent>;
    // Which nodes count for latency (present during the wave), and the final blocklists.
    let mut latency_nodes: Vec<usize> = all.clone();
    let blocked: HashMap<usize, HashMap<String, u64>>;
    let targets = attackers(&mut ctx.rng, ctx.args.targets);
    let pick_reporters = |rng: &mut StdRng, pool: &[usize], k: usize| -> Vec<usize> {
        let mut p = pool.to_vec();
        p.shuffle(rng);
        p.truncate(k.clamp(1, pool.len()));
        p
    };
    let wave_start;
    match ctx.args.scenario {
        Scenario::AttackWave => {
            ctx.start_nodes(&all).await?;
            ctx.wait_mesh(&all).await?;
            let reporters = pick_reporters(&mut ctx.rng, &all, ctx.args.reporters);
            wave_start = now_ms();
            let steps = report_steps(0..targets.len(), &reporters, ctx.args.rate, 0);
            sent_all = ctx.wave(&targets, steps).await?;
            let (_, b) = ctx
                .wait_blocked(&all, &want_all(&all, sent_all.len()), CONVERGE_DEADLINE)
                .await?;
            blocked = b;
            let acked: Vec<&str> = sent_all.iter().map(|s| s.target.as_str()).collect();
            let miss = missing(&blocked, &all, &acked);
            let pairs = n * acked.len();
            ctx.expect(
                "every report acknowledged",
                acked.len() == targets.len(),
                format!("{}/{}", acked.len(), targets.len()),
            );
            ctx.expect(
                "every node blocks every target",
                miss == 0,
                format!("{}/{} pairs", pairs - miss, pairs),
            );
        }
        Scenario::LateJoin => {
            let late_n = (n / 4).max(1);
            let early: Vec<usize> = (0..n - late_n).collect();
            let late: Vec<usize> = (n - late_n..n).collect();
            latency_nodes = early.clone();
            ctx.start_nodes(&early).await?;
            ctx.wait_mesh(&early).await?;
            let reporters = pick_reporters(&mut ctx.rng, &early, ctx.args.reporters);
            wave_start = now_ms();
            let steps = report_steps(0..targets.len(), &reporters, ctx.args.rate, 0);
            sent_all = ctx.wave(&targets, steps).await?;
            let (early_done, _) = ctx
                .wait_blocked(&early, &want_all(&early, sent_all.len()), CONVERGE_DEADLINE)
                .await?;
            ctx.expect("the early nodes converge before the late ones start", early_done, "");
            let joined_at = now_ms();
            ctx.start_nodes(&late).await?;
            let (_, b) = ctx
                .wait_blocked(&all, &want_all(&all, sent_all.len()), CONVERGE_DEADLINE)
                .await?;
            blocked = b;
            let acked: Vec<&str> = sent_all.iter().map(|s| s.target.as_str()).collect();
            let miss = missing(&blocked, &late, &acked);
            let catch_up = late
                .iter()
                .filter_map(|i| blocked.get(i)?.values().max().copied())
                .max()
                .map_or(0, |t| t.saturating_sub(joined_at));
            ctx.figure("late_nodes", late.len());
            ctx.figure("catch_up_ms", catch_up);
            let pairs = late.len() * acked.len();
            ctx.expect(
                "late nodes block every target",
                miss == 0,
                format!(
                    "{}/{} pairs, caught up {catch_up} ms after starting",
                    pairs - miss,
                    pairs
                ),
            );
        }
        Scenario::Churn => {
            ctx.start_nodes(&all).await?;
            ctx.wait_mesh(&all).await?;
            let reporters = pick_reporters(&mut ctx.rng, &all, ctx.args.reporters);
            let mut steps = report_steps(0..targets.len(), &reporters, ctx.args.rate, 0);
            let wave_ms = (targets.len() as f64 * 1000.0 / ctx.args.rate) as u64;
            let kills = (n / 3).max(2);
            let gap = (wave_ms / (kills as u64 + 1)).max(600);
            let mut victims = Vec::new();
            for k in 0..kills {
                let victim = ctx.rng.gen_range(0..n);
                let at = gap * (k as u64 + 1) / 2 + gap * k as u64 / 2;
                steps.push((at, Step::Kill(victim)));
                steps.push((at + 300, Step::Restart(victim)));
                victims.push(victim);
            }
            steps.sort_by_key(|(t, _)| *t);
            wave_start = now_ms();
            sent_all = ctx.wave(&targets, steps).await?;
            let last_restart = now_ms();
            let (_, b) = ctx
                .wait_blocked(&all, &want_all(&all, sent_all.len()), CONVERGE_DEADLINE)
                .await?;
            blocked = b;
            let acked: Vec<&str> = sent_all.iter().map(|s| s.target.as_str()).collect();
            let miss = missing(&blocked, &all, &acked);
            let after = blocked
                .values()
                .flat_map(|b| b.values())
                .max()
                .map_or(0, |t| t.saturating_sub(last_restart));
            let victims: BTreeSet<usize> = victims.into_iter().collect();
            ctx.figure("kills", kills);
            ctx.figure("killed_nodes", victims.iter().copied().collect::<Vec<_>>());
            ctx.figure("converged_after_churn_ms", after);
            let pairs = n * acked.len();
            ctx.expect(
                "most reports acknowledged despite kills",
                acked.len() * 2 >= targets.len(),
                format!("{}/{}", acked.len(), targets.len()),
            );
            ctx.expect(
                "no acknowledged report lost: every node blocks every one",
                miss == 0,
                format!("{}/{} pairs after {kills} kill -9s", pairs - miss, pairs),
            );
        }
        Scenario::Partition => {
            ctx.start_nodes(&all).await?;
            ctx.wait_mesh(&all).await?;
            let side_a: Vec<usize> = all.iter().copied().filter(|i| i % 2 == 0).collect();
            let side_b: Vec<usize> = all.iter().copied().filter(|i| i % 2 == 1).collect();
            let ids = |side: &[usize], c: &Cluster| -> Vec<String> {
                side.iter().map(|&i| c.members[i].peer_id.clone()).collect()
            };
            let (ids_a, ids_b) = (ids(&side_a, &ctx.cluster), ids(&side_b, &ctx.cluster));
            ctx.phase("splitting", n as u64);
            for (side, other) in [(&side_a, &ids_b), (&side_b, &ids_a)] {
                for &i in side.iter() {
                    ctx.cluster.members[i].api()?.refuse(other).await?;
                    ctx.bar.inc(1);
                }
            }
            // The split holds once no node has a peer on the other side.
            let deadline = Instant::now() + MESH_DEADLINE;
            loop {
                let mut crossing = 0;
                for (side, other) in [(&side_a, &ids_b), (&side_b, &ids_a)] {
                    for &i in side.iter() {
                        let peers = ctx.cluster.members[i].api()?.peers().await?;
                        crossing += peers.iter().filter(|p| other.contains(p)).count();
                    }
                }
                if crossing == 0 {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{crossing} connections still cross the partition");
                }
                tokio::time::sleep(POLL).await;
            }
            let half = targets.len() / 2;
            let rep_a = pick_reporters(&mut ctx.rng, &side_a, ctx.args.reporters.div_ceil(2));
            let rep_b = pick_reporters(&mut ctx.rng, &side_b, ctx.args.reporters.div_ceil(2));
            let mut steps = report_steps(0..half, &rep_a, ctx.args.rate / 2.0, 0);
            steps.extend(report_steps(half..targets.len(), &rep_b, ctx.args.rate / 2.0, 0));
            steps.sort_by_key(|(t, _)| *t);
            wave_start = now_ms();
            sent_all = ctx.wave(&targets, steps).await?;
            let on_a: HashSet<&str> = sent_all
                .iter()
                .filter(|s| s.reporter % 2 == 0)
                .map(|s| s.target.as_str())
                .collect();
            let on_b: HashSet<&str> = sent_all
                .iter()
                .filter(|s| s.reporter % 2 == 1)
                .map(|s| s.target.as_str())
                .collect();
            let mut want = HashMap::new();
            for &i in &side_a {
                want.insert(i, on_a.len());
            }
            for &i in &side_b {
                want.insert(i, on_b.len());
            }
            let (sides_done, split) = ctx.wait_blocked(&all, &want, CONVERGE_DEADLINE).await?;
            let leaked: usize = split
                .iter()
                .map(|(i, b)| {
                    let other = if i % 2 == 0 { &on_b } else { &on_a };
                    b.keys().filter(|t| other.contains(t.as_str())).count()
                })
                .sum();
            ctx.expect("each side converges on its own attacks", sides_done, "");
            ctx.expect(
                "the partition holds: no node blocks the other side's targets before the heal",
                leaked == 0,
                format!("{leaked} pairs crossed"),
            );
            ctx.phase("healing", n as u64);
            let healed_at = now_ms();
            let heals: Vec<_> = all
                .iter()
                .map(|&i| ctx.cluster.members[i].api().cloned())
                .collect::<anyhow::Result<_>>()?;
            let heals = heals.into_iter().map(|api| async move { api.refuse(&[]).await });
            for r in futures::future::join_all(heals).await {
                r?;
            }
            let (_, b) = ctx
                .wait_blocked(&all, &want_all(&all, sent_all.len()), CONVERGE_DEADLINE)
                .await?;
            blocked = b;
            let acked: Vec<&str> = sent_all.iter().map(|s| s.target.as_str()).collect();
            let miss = missing(&blocked, &all, &acked);
            // The last cross-side block anywhere, after the heal.
            let heal_ms = blocked
                .iter()
                .flat_map(|(i, b)| {
                    let other = if i % 2 == 0 { &on_b } else { &on_a };
                    b.iter().filter(|(t, _)| other.contains(t.as_str())).map(|(_, s)| *s)
                })
                .max()
                .map_or(0, |t| t.saturating_sub(healed_at));
            ctx.figure("side_a", side_a.len());
            ctx.figure("side_b", side_b.len());
            ctx.figure("heal_to_converged_ms", heal_ms);
            let pairs = n * acked.len();
            ctx.expect(
                "after the heal every node blocks every target",
                miss == 0,
                format!("{}/{} pairs, {heal_ms} ms after the heal", pairs - miss, pairs),
            );
            // Latency only within a side: across it, the partition is the delay.
            let cross: HashMap<String, usize> = sent_all.iter().map(|s| (s.target.clone(), s.reporter % 2)).collect();
            return finish(
                ctx,
                started,
                wave_start,
                &latency_nodes,
                &sent_all,
                &blocked,
                Some(&cross),
            )
            .await;
        }
        Scenario::Poison => {
            ctx.start_nodes(&all).await?;
            ctx.wait_mesh(&all).await?;
            let honest_reporters: Vec<usize> = all.clone();
            // The strangers' peer and the flooder each connect through one node that is not a seed.
            let via_strangers = ctx.args.seeds.min(n - 1);
            let via_flood = n - 1;
            let addr = |i: usize, c: &Cluster| -> anyhow::Result<libp2p::Multiaddr> {
                c.members[i].addr().parse().context("node address")
            };
            let mut strangers = Rogue::start(&[addr(via_strangers, &ctx.cluster)?])?;
            let mut flooder = Rogue::start(&[addr(via_flood, &ctx.cluster)?])?;
            strangers.wait_subscribed(1, MESH_DEADLINE).await?;
            flooder.wait_subscribed(1, MESH_DEADLINE).await?;
            ctx.phase("strangers report", STRANGERS as u64);
            for _ in 0..STRANGERS {
                let id = Identity::from_secret(ctx.rng.gen());
                strangers
                    .publish(rogue::stranger_sighting(&id, VICTIM, now_ms())?)
                    .await?;
                ctx.bar.inc(1);
            }
            // Every honest node must hold all of them (so "not blocked" means something).
            ctx.phase("strangers spread", n as u64);
            let deadline = Instant::now() + CONVERGE_DEADLINE;
            let mut held;
            loop {
                held = Vec::new();
                for &i in &all {
                    let c = ctx.cluster.members[i].api()?.check(VICTIM).await?;
                    held.push(c["reporters"].as_array().map_or(0, Vec::len));
                }
                ctx.bar
                    .set_position(held.iter().filter(|&&h| h >= STRANGERS).count() as u64);
                if held.iter().all(|&h| h >= STRANGERS) || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
            let fewest = held.iter().copied().min().unwrap_or(0);
            ctx.expect(
                "stranger sightings of the victim reach every node",
                fewest >= STRANGERS,
                format!("every node holds at least {fewest}/{STRANGERS}"),
            );
            // The flood and an honest attack wave at the same time.
            let reporters = pick_reporters(&mut ctx.rng, &honest_reporters, ctx.args.reporters);
            let flood_seed: u64 = ctx.rng.gen();
            let flood = tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(flood_seed);
                for i in 0..INVALID_MESSAGES {
                    let msg = rogue::invalid_message(&mut rng, i, now_ms())?;
                    flooder.publish(msg).await?;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                anyhow::Ok(flooder)
            });
            wave_start = now_ms();
            let steps = report_steps(0..targets.len(), &reporters, ctx.args.rate, 0);
            sent_all = ctx.wave(&targets, steps).await?;
            let flooder = flood.await.context("the flood task failed")??;
            let (_, b) = ctx
                .wait_blocked(&all, &want_all(&all, sent_all.len()), CONVERGE_DEADLINE)
                .await?;
            blocked = b;
            let acked: Vec<&str> = sent_all.iter().map(|s| s.target.as_str()).collect();
            let miss = missing(&blocked, &all, &acked);
            let mut victim_blocked = 0;
            for &i in &all {
                if ctx.cluster.members[i].api()?.check(VICTIM).await?["blocked"].as_bool() != Some(false) {
                    victim_blocked += 1;
                }
            }
            let mut rejected = HashMap::new();
            for &i in &all {
                let m = ctx.cluster.members[i].api()?.metrics().await?;
                rejected.insert(
                    i,
                    metric_sum(&m, "fraudmesh_gossip_messages_total{verdict=\"reject\"") as u64,
                );
            }
            let at_entry = rejected.get(&via_flood).copied().unwrap_or(0);
            let elsewhere: u64 = rejected.iter().filter(|(i, _)| **i != via_flood).map(|(_, r)| r).sum();
            drop(flooder);
            drop(strangers);
            ctx.figure("strangers", STRANGERS);
            ctx.figure("invalid_messages_sent", INVALID_MESSAGES);
            ctx.figure("rejected_at_entry_node", at_entry);
            ctx.figure("rejected_elsewhere", elsewhere);
            ctx.expect(
                "no honest node blocks the victim",
                victim_blocked == 0,
                format!("{victim_blocked}/{n} nodes block {VICTIM}"),
            );
            ctx.expect(
                "invalid messages are rejected where they enter and not forwarded",
                at_entry > 0 && elsewhere == 0,
                format!("rejected at the entry node: {at_entry}, by all others: {elsewhere}"),
            );
            let pairs = n * acked.len();
            ctx.expect(
                "honest traffic keeps flowing: every node blocks every honest target",
                miss == 0 && acked.len() == targets.len(),
                format!("{}/{} pairs", pairs - miss, pairs),
            );
        }
    }
    finish(ctx, started, wave_start, &latency_nodes, &sent_all, &blocked, None).await
}

/// Latencies, convergence curve, per-node figures and the report. With `sides`
/// (target → side of its reporter), only pairs on the reporter's side count for latency.
async fn finish(
    ctx: &mut Ctx,
    started: Instant,
    wave_start: u64,
    latency_nodes: &[usize],
    sent: &[Sent],
    blocked: &HashMap<usize, HashMap<String, u64>>,
    sides: Option<&HashMap<String, usize>>,
) -> anyhow::Result<Finished> {
    ctx.sample_rss();
    let n = ctx.args.nodes;
    let mut per_lat: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut times = Vec::new();
    for s in sent {
        for (&i, b) in blocked {
            let Some(&since) = b.get(&s.target) else { continue };
            times.push(since.saturating_sub(wave_start));
            if i == s.reporter || !latency_nodes.contains(&i) {
                continue;
            }
            if sides.is_some_and(|sd| sd.get(&s.target).is_some_and(|&side| side != i % 2)) {
                continue;
            }
            per_lat[i].push(since.saturating_sub(s.at_ms) as f64);
        }
    }
    times.sort_unstable();
    let pairs = (n * sent.len()).max(1) as f64;
    let step = (times.len() / 400).max(1);
    let mut convergence: Vec<(u64, f64)> = vec![(0, 0.0)];
    for (k, t) in times.iter().enumerate() {
        if k % step == 0 || k + 1 == times.len() {
            convergence.push((*t, (k + 1) as f64 / pairs));
        }
    }
    let all_lat: Vec<f64> = per_lat.iter().flatten().copied().collect();
    let mut per_node = Vec::with_capacity(n);
    for m in &ctx.cluster.members {
        let (messages, bytes, rejected) = match &m.api {
            Some(api) => {
                let text = api.metrics().await?;
                (
                    metric_sum(&text, "fraudmesh_gossip_messages_total") as u64,
                    (metric_sum(&text, "fraudmesh_gossip_bytes_received_total")
                        + metric_sum(&text, "fraudmesh_sync_bytes_received_total")) as u64,
                    metric_sum(&text, "fraudmesh_gossip_messages_total{verdict=\"reject\"") as u64,
                )
            }
            None => (0, 0, 0),
        };
        per_node.push(NodeReport {
            index: m.index,
            peer_id: m.peer_id.clone(),
            latency_ms: Percentiles::of(&per_lat[m.index]),
            blocked: blocked.get(&m.index).map_or(0, HashMap::len),
            messages,
            bytes,
            rejected,
            rss_bytes_max: ctx.rss_max[m.index],
            starts: m.starts,
        });
    }
    let acked: Vec<&str> = sent.iter().map(|s| s.target.as_str()).collect();
    let all: Vec<usize> = (0..n).collect();
    let converged = !acked.is_empty() && missing(blocked, &all, &acked) == 0;
    let mean = |f: fn(&NodeReport) -> u64| per_node.iter().map(|p| f(p) as f64).sum::<f64>() / n as f64;
    let report = Report {
        nodes: n,
        seeds: ctx.args.seeds,
        scenario: ctx.args.scenario.name().to_string(),
        seed: ctx.args.seed,
        converged,
        latency_ms: Percentiles::of(&all_lat),
        messages_per_node: mean(|p| p.messages),
        bytes_per_node: mean(|p| p.bytes),
        rss_bytes_max: ctx.rss_max.iter().copied().max().unwrap_or(0),
        targets: sent.len(),
        duration_s: started.elapsed().as_secs_f64(),
        expectations: std::mem::take(&mut ctx.expectations),
        figures: std::mem::take(&mut ctx.figures),
        convergence,
        per_node,
        plots: Vec::new(),
    };
    Ok(Finished {
        report,
        per_node: per_lat
            .into_iter()
            .map(|latency_ms_values| NodeLatencies { latency_ms_values })
            .collect(),
    })
}
