//! The scenarios of `fraudmesh-testnet run`: each starts a cluster of real nodes, forms
//! the mesh, attacks it (and breaks it), checks its expectations and measures how fast
//! and how completely it protects.
//!
//! Latency is measured without polling: the testnet notes the wall-clock time just
//! before each report, every node records when its decision for a target turned to block
//! (`since` in `GET /v1/blocklist`), and all processes share this machine's clock.
//!
//! This module owns the runner: the arguments, [`run`] (cluster, progress bar, signals,
//! outputs), the run's state `Ctx` with the steps every scenario shares (start, form
//! the mesh, shape the cluster's graph, attack, converge), which layout each scenario
//! gives the cluster, and small helpers. Each scenario lives in its own module named
//! after it; `wave` sends the attack wave, `measure` turns what a scenario found into the
//! report.
//!
//! `spoof` runs inside network namespaces ([`crate::netns::Lab`]): [`isolate`] makes them
//! and moves the calling thread into them, and must run before the async runtime starts
//! (its threads then start inside too).

mod attack_wave;
mod churn;
mod cpu;
mod flood;
mod late_join;
mod measure;
mod org_rollout;
mod partition;
mod poison;
mod policy_split;
mod spoof;
mod wave;

use crate::client::{blocked_since, peer_ids, Api};
use crate::cluster::{Cluster, NodeSpec};
use crate::netns::{self, Lab};
use crate::plot;
use crate::report::{Expectation, Report, Resources};
use anyhow::{bail, Context};
use fraudmesh_node::daemon::terminated;
use fraudmesh_node::metrics::Scrape;
use indicatif::{ProgressBar, ProgressStyle};
use measure::Finished;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wave::Sent;

/// How long the mesh may take to form.
const MESH_DEADLINE: Duration = Duration::from_secs(60);
/// How long convergence may take after the last report (or heal, or restart).
const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);
/// How long connection counts must stay unchanged before the mesh counts as formed.
const SETTLED: Duration = Duration::from_secs(2);
/// Poll period of waits.
const POLL: Duration = Duration::from_millis(50);

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
    /// Forged-source datagrams and crafted log lines against node 0's sensor and log
    /// block nothing; scanners that prove their address are blocked everywhere (root:
    /// runs in network namespaces).
    Spoof,
    /// 1,000 fresh stranger keys at full burst while trusted reporters report, some
    /// nodes reaching them only through relays that do not trust them.
    Flood,
    /// Half the nodes with a shorter max_ttl and a narrower minimum prefix; long and
    /// broad reports, then retractions.
    PolicySplit,
    /// Configs that trust organisations only; endorsements through one node, a late
    /// member, a revocation, a partner organisation at 0.5, bad endorsements.
    OrgRollout,
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
            Scenario::Spoof => "spoof",
            Scenario::Flood => "flood",
            Scenario::PolicySplit => "policy-split",
            Scenario::OrgRollout => "org-rollout",
        }
    }

    /// How the scenario lays the cluster out (by default: everyone dials the seeds and
    /// trusts everyone).
    fn layout(self, args: &RunArgs) -> Vec<NodeSpec> {
        match self {
            Scenario::Flood => flood::layout(args),
            Scenario::PolicySplit => policy_split::layout(args),
            Scenario::OrgRollout => org_rollout::layout(args),
            _ => vec![NodeSpec::default(); args.nodes],
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
    /// The network namespaces the run is in (`spoof`; see [`isolate`]).
    pub lab: Option<Arc<Lab>>,
    /// `flood`: fresh stranger keys, each publishing a full burst of records.
    pub flood_keys: usize,
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
        if self.scenario == Scenario::Spoof && (self.nodes < 4 || self.seeds < 2) {
            bail!("spoof needs at least 4 nodes and 2 seeds (node 0 with its sensor, another seed, a peer per attack)");
        }
        if self.scenario == Scenario::Flood {
            flood::validate(self)?;
        }
        if self.scenario == Scenario::PolicySplit && self.nodes < 4 {
            bail!("policy-split needs at least 4 nodes (two strict, two default)");
        }
        if self.scenario == Scenario::OrgRollout && self.nodes < org_rollout::MIN_NODES {
            bail!(
                "org-rollout needs at least {} nodes (the publisher, a member to revoke, two partner members, a late node)",
                org_rollout::MIN_NODES
            );
        }
        if self.scenario == Scenario::PolicySplit && self.targets < 4 {
            bail!("policy-split needs at least 4 targets (ordinary, 3-day, /20 and its envelope-mate)");
        }
        Ok(())
    }
}

/// Each node's blocked targets, with since when (ms).
type Blocked = HashMap<usize, HashMap<String, u64>>;

/// What a scenario hands to [`measure::finish`].
struct Outcome {
    /// When the attack wave started (ms): time 0 of the convergence curve.
    wave_start: u64,
    /// Which nodes count for latency (present during the wave).
    latency_nodes: Vec<usize>,
    /// The acknowledged reports.
    sent: Vec<Sent>,
    /// The final blocklists.
    blocked: Blocked,
    /// Target → side of its reporter, when only pairs on that side count for latency.
    sides: Option<HashMap<String, usize>>,
    /// The nodes that must block every acknowledged target (`None`: every node).
    blockers: Option<Vec<usize>>,
}

impl Outcome {
    /// An outcome where every pair of a latency node counts for latency.
    fn new(wave_start: u64, latency_nodes: Vec<usize>, sent: Vec<Sent>, blocked: Blocked) -> Self {
        Self {
            wave_start,
            latency_nodes,
            sent,
            blocked,
            sides: None,
            blockers: None,
        }
    }

    /// The nodes that must block every acknowledged target.
    fn blockers(&self, all: &[usize]) -> Vec<usize> {
        self.blockers.clone().unwrap_or_else(|| all.to_vec())
    }
}

/// How many (node, target) pairs of a set of nodes block the acknowledged targets.
struct Coverage {
    missing: usize,
    pairs: usize,
}

impl Coverage {
    fn of(blocked: &Blocked, nodes: &[usize], sent: &[Sent]) -> Self {
        let acked: Vec<&str> = sent.iter().map(|s| s.target.as_str()).collect();
        Self {
            missing: missing(blocked, nodes, &acked),
            pairs: nodes.len() * acked.len(),
        }
    }

    /// Every node blocks every target.
    fn complete(&self) -> bool {
        self.missing == 0
    }

    /// "blocked/all pairs".
    fn figure(&self) -> String {
        format!("{}/{} pairs", self.pairs - self.missing, self.pairs)
    }
}

/// Gossip messages the node rejected (`fraudmesh_gossip_messages_total{verdict="reject"}`),
/// from its `/metrics` text.
fn rejected_messages(metrics: &Scrape) -> u64 {
    let labels = [("verdict", "reject")];
    metrics.value("fraudmesh_gossip_messages_total", &labels).unwrap_or(0.0) as u64
}

/// The state of a run.
struct Ctx {
    args: RunArgs,
    cluster: Cluster,
    rng: StdRng,
    bar: ProgressBar,
    rss_max: Vec<u64>,
    /// What each node spent on the scenario's load, when the scenario measures it.
    resources: Vec<Option<Resources>>,
    /// CPU per received sighting of each node, µs, when the scenario measures it.
    cpu_us_per_sighting: Vec<Option<f64>>,
    figures: serde_json::Map<String, serde_json::Value>,
    expectations: Vec<Expectation>,
}

impl Ctx {
    /// Every node of the cluster.
    fn all(&self) -> Vec<usize> {
        (0..self.args.nodes).collect()
    }

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

    /// The API of a running node.
    fn api(&self, i: usize) -> anyhow::Result<&Api> {
        self.cluster.members[i].api()
    }

    fn apis(&self, nodes: &[usize]) -> anyhow::Result<Vec<(usize, Api)>> {
        nodes.iter().map(|&i| Ok((i, self.api(i)?.clone()))).collect()
    }

    /// `k` reporters (at least one) drawn at random from `pool`.
    fn pick_reporters(&mut self, pool: &[usize], k: usize) -> Vec<usize> {
        let mut p = pool.to_vec();
        p.shuffle(&mut self.rng);
        p.truncate(k.clamp(1, pool.len()));
        p
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

    /// Starts `nodes` and waits until they form the mesh.
    async fn form(&mut self, nodes: &[usize]) -> anyhow::Result<()> {
        self.start_nodes(nodes).await?;
        self.wait_mesh(nodes).await
    }

    /// Waits until every node in `nodes` has enough gossip peers (three, or every node
    /// its links allow when fewer) and the connections have settled (no node's peer
    /// count changed for [`SETTLED`]): right after start, discovery dials and
    /// identify/Kademlia exchanges keep a big mesh busy, and an attack then would measure
    /// the start-up rather than the mesh.
    async fn wait_mesh(&mut self, nodes: &[usize]) -> anyhow::Result<()> {
        let live = nodes.len().saturating_sub(1);
        let want: Vec<usize> = nodes
            .iter()
            .map(|&i| live.min(self.cluster.possible_peers(i)).min(3))
            .collect();
        self.phase("forming the mesh", nodes.len() as u64);
        let apis = self.apis(nodes)?;
        let deadline = Instant::now() + MESH_DEADLINE;
        let mut last: Vec<u64> = Vec::new();
        let mut stable_since = Instant::now();
        loop {
            let mut ready = 0;
            let mut counts = Vec::with_capacity(apis.len());
            for ((_, api), &w) in apis.iter().zip(&want) {
                let st = api.status().await?;
                if st.gossip_peers >= w {
                    ready += 1;
                }
                counts.push(st.peers as u64);
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
                    "the mesh did not form within {MESH_DEADLINE:?}: {ready}/{} nodes have their gossip peers",
                    apis.len()
                );
            }
            self.sample_rss();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Makes every running node refuse the peers its links exclude (the cluster's
    /// graph), waits until no connection breaks the graph, then until the mesh settles.
    async fn apply_links(&mut self) -> anyhow::Result<()> {
        let running = self.cluster.running();
        self.phase("shaping the graph", running.len() as u64);
        let refusals: Vec<(usize, Vec<String>)> = running.iter().map(|&i| (i, self.cluster.refusals(i))).collect();
        for (i, refused) in &refusals {
            if !refused.is_empty() {
                self.api(*i)?.refuse(refused).await?;
            }
            self.bar.inc(1);
        }
        let deadline = Instant::now() + MESH_DEADLINE;
        loop {
            let mut breaking = 0;
            for (i, refused) in &refusals {
                let peers = peer_ids(self.api(*i)?).await?;
                breaking += peers.iter().filter(|p| refused.contains(p)).count();
            }
            if breaking == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("{breaking} connections still break the cluster's graph after {MESH_DEADLINE:?}");
            }
            tokio::time::sleep(POLL).await;
        }
        self.wait_mesh(&running).await
    }

    /// Waits until every node blocks every acknowledged target (or the deadline).
    async fn converge_all(&mut self, sent: &[Sent]) -> anyhow::Result<(bool, Blocked)> {
        let all = self.all();
        self.wait_blocked(&all, &want_all(&all, sent.len()), CONVERGE_DEADLINE)
            .await
    }

    /// Waits until every node in `nodes` blocks at least `want[node]` targets, then
    /// returns each node's blocked targets with since when. On timeout returns what
    /// there is (the expectations then fail with the figures).
    async fn wait_blocked(
        &mut self,
        nodes: &[usize],
        want: &HashMap<usize, usize>,
        deadline: Duration,
    ) -> anyhow::Result<(bool, Blocked)> {
        let total: usize = nodes.iter().map(|i| want.get(i).copied().unwrap_or(0)).sum();
        self.phase("converging", total as u64);
        let apis = self.apis(nodes)?;
        let end = Instant::now() + deadline;
        let done = loop {
            let mut have = 0usize;
            let mut all = true;
            for (i, api) in &apis {
                let n = api.status().await?.blocked;
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
            out.insert(*i, blocked_since(api).await?);
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

/// Counts per node of how many targets each must block.
fn want_all(nodes: &[usize], n: usize) -> HashMap<usize, usize> {
    nodes.iter().map(|&i| (i, n)).collect()
}

/// Which (node, target) pairs are missing.
fn missing(blocked: &Blocked, nodes: &[usize], targets: &[&str]) -> usize {
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

/// For `spoof`: makes the network namespaces of [`Lab`] (after removing those of runs
/// that were killed) and moves the calling thread into its `lab` namespace, where the
/// testnet then runs and starts its nodes; `None` for every other scenario. Call it
/// before the async runtime starts, and keep the `Lab` until the run is over: dropping it
/// removes the namespaces. Fails clearly without root.
pub fn isolate(args: &RunArgs) -> anyhow::Result<Option<Arc<Lab>>> {
    if args.scenario != Scenario::Spoof {
        return Ok(None);
    }
    netns::require_root("the spoof scenario")?;
    let stale = netns::remove_stale();
    if stale > 0 {
        tracing::info!(stale, "removed network namespaces of killed runs");
    }
    let lab = Lab::create(args.nodes)?;
    lab.lab.enter()?;
    Ok(Some(Arc::new(lab)))
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
    if args.scenario == Scenario::Spoof && args.lab.is_none() {
        bail!("spoof runs in network namespaces: call scenario::isolate before the runtime starts");
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut layout = args.scenario.layout(&args);
    if let Some(lab) = &args.lab {
        for (i, spec) in layout.iter_mut().enumerate() {
            spec.placement = lab.placement(i);
        }
    }
    let cluster = Cluster::create_laid_out(&args.bin, &args.out.join("nodes"), args.seeds, layout)?;
    let mut ctx = Ctx {
        rng: StdRng::seed_from_u64(args.seed),
        rss_max: vec![0; args.nodes],
        resources: vec![None; args.nodes],
        cpu_us_per_sighting: vec![None; args.nodes],
        cluster,
        bar: progress_bar(args.progress)?,
        figures: Default::default(),
        expectations: Vec::new(),
        args,
    };
    // Ctrl-C or SIGTERM stops the scenario; every node started is stopped either way.
    let result = tokio::select! {
        r = scenario(&mut ctx) => r,
        s = terminated() => Err(anyhow::anyhow!("interrupted by {s}")),
    };
    ctx.bar.finish_and_clear();
    let written = match result {
        Ok(finished) => write_outputs(&ctx.args.out, finished),
        Err(e) => Err(e),
    };
    if ctx.args.hold {
        if let Ok(report) = &written {
            print!("{}", report.table());
            hold(&ctx.cluster, ctx.args.lab.as_deref());
            terminated().await;
        }
    }
    let killed = ctx.cluster.stop_all().await;
    if killed > 0 {
        tracing::warn!(killed, "nodes did not stop on SIGTERM in time and were killed");
    }
    written
}

/// The progress bar on stderr, or a hidden one.
fn progress_bar(progress: bool) -> anyhow::Result<ProgressBar> {
    if !progress {
        return Ok(ProgressBar::hidden());
    }
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg:<18} [{bar:40}] {pos}/{len}")
            .map_err(|e| anyhow::anyhow!("progress style: {e}"))?
            .progress_chars("=> "),
    );
    b.enable_steady_tick(Duration::from_millis(120));
    Ok(b)
}

/// Runs the scenario the arguments name and measures what it found.
async fn scenario(ctx: &mut Ctx) -> anyhow::Result<Finished> {
    let started = Instant::now();
    let targets = attackers(&mut ctx.rng, ctx.args.targets);
    let outcome = match ctx.args.scenario {
        Scenario::AttackWave => attack_wave::run(ctx, &targets).await?,
        Scenario::LateJoin => late_join::run(ctx, &targets).await?,
        Scenario::Churn => churn::run(ctx, &targets).await?,
        Scenario::Partition => partition::run(ctx, &targets).await?,
        Scenario::Poison => poison::run(ctx, &targets).await?,
        Scenario::Spoof => spoof::run(ctx).await?,
        Scenario::Flood => flood::run(ctx, &targets).await?,
        Scenario::PolicySplit => policy_split::run(ctx, &targets).await?,
        Scenario::OrgRollout => org_rollout::run(ctx).await?,
    };
    measure::finish(ctx, started, &outcome).await
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

/// Tells how to poke the running mesh.
fn hold(cluster: &Cluster, lab: Option<&Lab>) {
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
    eprintln!(
        "Every node trusts every other one unless the scenario laid the cluster out otherwise (see each \
         config.toml); logs are node.log in each directory."
    );
    if let Some(lab) = lab {
        eprintln!(
            "The nodes run in network namespaces: prefix each command with `ip netns exec {}`.",
            lab.lab.name
        );
    }
}
