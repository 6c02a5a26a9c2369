//! `flood`: fresh stranger keys (1,000 by default), each publishing a full stranger burst
//! of records (100), flood the mesh through a rogue gossip peer connected to every node
//! but the leaves while trusted reporters report, on a graph where some nodes reach the
//! reporters only through relays that do not trust them.
//!
//! The graph: the last quarter of the nodes are *leaves*, each linked only to one
//! *relay* (the quarter before them). Relays trust nobody, so to them the reporters are
//! strangers like the flood; every other node trusts every other non-relay node at 1.0,
//! except one *half-trusted* node at 0.5. Every node's `max_stranger_records` is half the
//! flood, so the flood overfills every stranger store whatever its size.
//!
//! Expected: every trusted target blocked on every node that trusts its reporter, leaves
//! included (relaying must not depend on whether the relay stored a record); no flood
//! target blocked anywhere; the half-trusted node's report of a victim that ten stranger
//! keys also report blocked nowhere but on its reporter (strangers never complete a
//! block); stranger records within the bound. Each node's memory (RSS), disk (store
//! bytes), CPU time and records before and after the flood are in the report.

use super::{Coverage, Ctx, Outcome, RunArgs, CONVERGE_DEADLINE, MESH_DEADLINE, POLL, SETTLED};
use crate::client::{blocked_since, report_scan};
use crate::cluster::{NodeSpec, Tweak};
use crate::report::{Change, Resources};
use crate::rogue::{self, Rogue};
use anyhow::{bail, Context};
use fraudmesh::identity::Identity;
use fraudmesh_node::daemon::config::LimitsSection;
use fraudmesh_node::now_ms;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The address the half-trusted node and ten stranger keys report (RFC 5737).
const VICTIM: &str = "198.51.100.77";
/// Stranger keys that also report the victim.
const VICTIM_KEYS: usize = 10;
/// The half-trusted node's weight on the nodes that trust it.
const HALF: f64 = 0.5;
/// TTL of the flood's records: the longest a default node accepts.
const FLOOD_TTL_S: u32 = 7 * 24 * 3600;
/// Time between two flood envelopes (each one key's burst): 20,000 records/s.
const FLOOD_PACE: Duration = Duration::from_millis(5);
/// Share of the stranger store every relay must end up holding for the run to count (the
/// wave waits for all of it, or for the flood to stall).
const FULL: f64 = 0.9;
/// How long the flood may go without any node's record count moving before a wait for
/// it gives up (a full-size flood keeps a small machine busy for minutes, so the waits
/// go on while it makes progress).
const STALLED: Duration = Duration::from_secs(60);
/// The longest any flood phase may take, progress or not.
const FLOOD_DEADLINE: Duration = Duration::from_secs(900);

/// Records each stranger key may publish at once: the node's default stranger burst.
fn burst() -> usize {
    LimitsSection::default().stranger_burst as usize
}

/// Records in the whole flood.
fn flood_records(args: &RunArgs) -> usize {
    args.flood_keys * burst()
}

/// Every node's `max_stranger_records`: half the flood.
fn stranger_cap(args: &RunArgs) -> usize {
    (flood_records(args) / 2).max(1)
}

/// Where the flood's targets lie: 100.64.0.0/10 (shared address space), far from the
/// honest targets (198.18.0.0/15) and the victim.
const FLOOD_NET: u32 = 0x6440_0000;

/// The flood's `k`th target (distinct for every record).
fn flood_target(k: usize) -> String {
    Ipv4Addr::from(FLOOD_NET + 1 + k as u32).to_string()
}

/// Whether a blocked target is one of the flood's.
fn is_flood_target(t: &str) -> bool {
    t.parse::<Ipv4Addr>()
        .is_ok_and(|a| u32::from(a) >> 22 == FLOOD_NET >> 22)
}

/// Who is who in the graph.
struct Plan {
    /// Nodes linked to anyone (seeds, reporters, the half-trusted node).
    core: Vec<usize>,
    /// Nodes that trust nobody; relay `k` is leaf `k`'s only link.
    relays: Vec<usize>,
    /// Nodes linked only to their relay.
    leaves: Vec<usize>,
    /// The node the others trust at [`HALF`].
    half: usize,
    /// The trusted reporters.
    reporters: Vec<usize>,
}

impl Plan {
    fn of(args: &RunArgs) -> Self {
        let n = args.nodes;
        let l = (n / 4).max(1);
        let core: Vec<usize> = (0..n.saturating_sub(2 * l)).collect();
        let half = core.last().copied().unwrap_or(0);
        let reporters = core
            .iter()
            .copied()
            .filter(|&i| i != half)
            .take(args.reporters)
            .collect();
        Self {
            relays: (n.saturating_sub(2 * l)..n - l).collect(),
            leaves: (n - l..n).collect(),
            core,
            half,
            reporters,
        }
    }

    /// Every node but the relays: they trust the reporters.
    fn trusting(&self) -> Vec<usize> {
        self.core.iter().chain(&self.leaves).copied().collect()
    }

    fn role(&self, i: usize) -> &'static str {
        if self.relays.contains(&i) {
            "relay"
        } else if self.leaves.contains(&i) {
            "leaf"
        } else if i == self.half {
            "half"
        } else if self.reporters.contains(&i) {
            "reporter"
        } else {
            "core"
        }
    }
}

/// Checks the arguments of a flood run.
pub(super) fn validate(args: &RunArgs) -> anyhow::Result<()> {
    if args.nodes < 5 {
        bail!("flood needs at least 5 nodes (a leaf, its relay, a reporter, a half-trusted node, a seed)");
    }
    let plan = Plan::of(args);
    if args.seeds > plan.core.len() - 1 {
        bail!(
            "flood with {} nodes takes at most {} seeds (relays and leaves are never seeds)",
            args.nodes,
            plan.core.len() - 1
        );
    }
    if args.flood_keys < VICTIM_KEYS || args.flood_keys > 100_000 {
        bail!("--flood-keys must be between {VICTIM_KEYS} and 100000");
    }
    // A relay sees the reporters as strangers: each may send at most its burst at once.
    let most = plan.reporters.len() * burst();
    if args.targets > most {
        bail!(
            "flood: --targets must be at most {most} (each of the {} reporters sends at most a stranger burst of {}, \
             which relays that do not trust it pass on)",
            plan.reporters.len(),
            burst()
        );
    }
    Ok(())
}

/// The graph and trust of a flood run; see the module documentation.
pub(super) fn layout(args: &RunArgs) -> Vec<NodeSpec> {
    let plan = Plan::of(args);
    let trusting = plan.trusting();
    let cap = stranger_cap(args);
    let tweak: Tweak = Arc::new(move |c| c.limits.max_stranger_records = cap);
    (0..args.nodes)
        .map(|i| {
            let mut spec = NodeSpec {
                tweak: Some(tweak.clone()),
                role: Some(plan.role(i)),
                ..NodeSpec::default()
            };
            if let Some(k) = plan.leaves.iter().position(|&l| l == i) {
                let relay = plan.relays[k];
                spec.dials = Some(vec![relay]);
                spec.links = Some(vec![relay]);
            }
            if plan.relays.contains(&i) {
                spec.trusts = Some(Vec::new());
                // A relay's leaf may be connected only to it; the relay to anyone.
            } else {
                let weight = |j: usize| if j == plan.half { HALF } else { 1.0 };
                spec.trusts = Some(trusting.iter().filter(|&&j| j != i).map(|&j| (j, weight(j))).collect());
            }
            spec
        })
        .collect()
}

/// Runs `flood`.
pub(super) async fn run(ctx: &mut Ctx, targets: &[String]) -> anyhow::Result<Outcome> {
    let plan = Plan::of(&ctx.args);
    let all = ctx.all();
    let trusting = plan.trusting();
    let cap = stranger_cap(&ctx.args);
    ctx.form(&all).await?;
    ctx.apply_links().await?;
    report_scan(ctx.api(plan.half)?, VICTIM)
        .await
        .context("the half-trusted node's report")?;
    // Every node holds the half-trusted report before the flood: it is the baseline.
    wait_victim_known(ctx).await?;
    let before = usage(ctx).await?;
    let envelopes = sign_flood(ctx.args.flood_keys, ctx.rng.gen()).await?;
    let sent_envelopes = envelopes.len();
    // The rogue peer connects to every node but the leaves, as a flooder would: each
    // takes the whole flood first-hand, whatever gossip forwards under the load.
    let entries: Vec<libp2p::Multiaddr> = plan
        .core
        .iter()
        .chain(&plan.relays)
        .map(|&i| ctx.cluster.members[i].addr().parse().context("node address"))
        .collect::<anyhow::Result<_>>()?;
    let mut rogue = Rogue::start(&entries)?;
    rogue.wait_subscribed(entries.len(), MESH_DEADLINE).await?;
    let flood_start = Instant::now();
    let publisher = tokio::spawn(async move {
        for env in envelopes {
            rogue.publish(env).await?;
            tokio::time::sleep(FLOOD_PACE).await;
        }
        anyhow::Ok(rogue)
    });
    // The trusted reports start once the flood has filled the relays' stranger stores.
    let mut watch = ApiWatch::default();
    let relay_records = wait_filled(ctx, &plan.relays, cap, &mut watch).await?;
    let filled = relay_records.iter().all(|&h| h as f64 >= cap as f64 * FULL);
    let wave_after_ms = flood_start.elapsed().as_millis() as u64;
    let (wave_start, sent) = ctx.steady_wave(targets, &plan.reporters).await?;
    let rogue = publisher.await.context("the flood task failed")??;
    let published = rogue.wait_published(sent_envelopes, MESH_DEADLINE).await?;
    let settled = settle(ctx, &mut watch).await?;
    let flood_ms = flood_start.elapsed().as_millis() as u64;
    let (_, mut blocked) = ctx
        .wait_blocked(&trusting, &super::want_all(&trusting, sent.len()), CONVERGE_DEADLINE)
        .await?;
    for &i in &plan.relays {
        blocked.insert(i, blocked_since(ctx.api(i)?).await?);
    }
    let after = usage(ctx).await?;
    drop(rogue);
    record_resources(ctx, &before, &after);
    let records_after: Vec<u64> = after.iter().map(|u| u.records).collect();
    let acked = sent.len();
    ctx.figure("flood_keys", ctx.args.flood_keys);
    ctx.figure("flood_records", flood_records(&ctx.args));
    ctx.figure("flood_envelopes_published", published);
    ctx.figure("max_stranger_records", cap);
    ctx.figure("relays", plan.relays.clone());
    ctx.figure("leaves", plan.leaves.clone());
    ctx.figure("half_trusted", plan.half);
    ctx.figure("reports_start_after_flood_ms", wave_after_ms);
    ctx.figure("api_status_slowest_ms_during_flood", watch.slowest_ms);
    ctx.figure("api_status_unanswered_during_flood", watch.unanswered);
    ctx.figure("flood_settled_ms", if settled { Some(flood_ms) } else { None });
    summary_figures(ctx);
    ctx.expect(
        "the flood fills every relay's stranger store (else this run proves nothing)",
        filled,
        format!("relays hold {relay_records:?} records when the reports start, store bound {cap}"),
    );
    ctx.expect(
        "every trusted report acknowledged",
        acked == targets.len(),
        format!("{acked}/{}", targets.len()),
    );
    let core = Coverage::of(&blocked, &plan.core, &sent);
    ctx.expect(
        "every node linked to the reporters blocks every trusted target",
        acked > 0 && core.complete(),
        core.figure(),
    );
    let leaves = Coverage::of(&blocked, &plan.leaves, &sent);
    ctx.expect(
        "every leaf (reaching the reporters only through a relay that does not trust them) blocks every trusted target",
        acked > 0 && leaves.complete(),
        leaves.figure(),
    );
    let flooded: usize = blocked
        .values()
        .map(|b| b.keys().filter(|t| is_flood_target(t)).count())
        .sum();
    let relay_blocks: usize = plan.relays.iter().map(|i| blocked.get(i).map_or(0, HashMap::len)).sum();
    ctx.expect(
        "no node blocks a flood target, and relays (trusting nobody) block nothing",
        flooded == 0 && relay_blocks == 0,
        format!("{flooded} (node, flood target) pairs blocked; {relay_blocks} blocks on relays"),
    );
    let victim = victim_blocked(ctx, plan.half).await?;
    ctx.expect(
        "strangers never complete a block: a half-trusted report plus stranger keys blocks nowhere but on its reporter",
        victim.is_empty(),
        format!("{VICTIM} blocked on nodes {victim:?} ({VICTIM_KEYS} stranger keys + weight {HALF})"),
    );
    // To a relay every record is a stranger's; the others also hold the honest ones (a
    // report whose answer timed out may be held too).
    let honest = targets.len() + 1;
    let bound = |i: usize| (if plan.relays.contains(&i) { cap } else { cap + honest }) as u64;
    let over: Vec<(usize, u64)> = all
        .iter()
        .filter(|&&i| records_after[i] > bound(i))
        .map(|&i| (i, records_after[i]))
        .collect();
    ctx.expect(
        "every node holds at most max_stranger_records strangers' records",
        over.is_empty(),
        format!(
            "bound {cap} on relays, {} ({cap} + {honest} honest) on the others; (node, records) over it: {over:?}",
            cap + honest
        ),
    );
    Ok(Outcome {
        blockers: Some(trusting.clone()),
        ..Outcome::new(wave_start, trusting, sent, blocked)
    })
}

/// One node's figures at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    rss_bytes: u64,
    store_bytes: u64,
    cpu_ms: u64,
    records: u64,
}

/// Every node's figures now.
async fn usage(ctx: &Ctx) -> anyhow::Result<Vec<Usage>> {
    let mut out = Vec::with_capacity(ctx.args.nodes);
    for m in &ctx.cluster.members {
        let st = m.api()?.status().await?;
        out.push(Usage {
            rss_bytes: m.rss_bytes().unwrap_or(0),
            store_bytes: st.store_bytes,
            cpu_ms: m.cpu_ms().unwrap_or(0),
            records: st.records as u64,
        });
    }
    Ok(out)
}

/// Signs the flood in a blocking task: one envelope per fresh key with a full burst of
/// records, the first [`VICTIM_KEYS`] keys reporting the victim among them.
async fn sign_flood(keys: usize, seed: u64) -> anyhow::Result<Vec<Vec<u8>>> {
    tokio::task::spawn_blocking(move || {
        let mut rng = StdRng::seed_from_u64(seed);
        let now = now_ms();
        let b = burst();
        (0..keys)
            .map(|k| {
                let id = Identity::from_secret(rng.gen());
                let mut targets: Vec<String> = (0..b).map(|j| flood_target(k * b + j)).collect();
                if k < VICTIM_KEYS {
                    targets[0] = VICTIM.to_string();
                }
                let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
                rogue::stranger_envelope(&id, &refs, now, FLOOD_TTL_S)
            })
            .collect()
    })
    .await
    .context("the signing task failed")?
}

/// How the nodes' APIs answered `GET /v1/status` while the flood ran.
#[derive(Debug, Default)]
struct ApiWatch {
    /// Slowest answer, ms.
    slowest_ms: u64,
    /// Requests that got no answer (the client gives up after 30 s).
    unanswered: usize,
}

impl ApiWatch {
    /// Node `i`'s record count, or `None` when its API did not answer.
    async fn records(&mut self, ctx: &Ctx, i: usize) -> anyhow::Result<Option<usize>> {
        let t = Instant::now();
        let answer = ctx.api(i)?.status().await;
        self.slowest_ms = self.slowest_ms.max(t.elapsed().as_millis() as u64);
        match answer {
            Ok(st) => Ok(Some(st.records)),
            Err(e) => {
                tracing::warn!(node = i, error = %e, "no status answer during the flood");
                self.unanswered += 1;
                Ok(None)
            }
        }
    }
}

/// Waits until every relay holds `cap` records (all strangers' to a relay: its stranger
/// store is full), or until the relays' records stall; returns what each holds.
async fn wait_filled(ctx: &mut Ctx, relays: &[usize], cap: usize, watch: &mut ApiWatch) -> anyhow::Result<Vec<usize>> {
    ctx.phase("flooding", relays.len() as u64);
    let mut progress = Progress::new();
    let mut held = vec![0; relays.len()];
    loop {
        let mut now = Vec::with_capacity(relays.len());
        for (k, &i) in relays.iter().enumerate() {
            let r = watch.records(ctx, i).await?;
            held[k] = r.unwrap_or(held[k]);
            now.push(r);
        }
        let full = held.iter().filter(|&&h| h >= cap).count();
        ctx.bar.set_position(full as u64);
        if full == relays.len() || progress.stalled(&now) {
            return Ok(held);
        }
        ctx.sample_rss();
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until every node answered with the same record count for [`SETTLED`] (the
/// flood has been taken in or refused everywhere), or until it stalls without settling;
/// returns whether it settled.
async fn settle(ctx: &mut Ctx, watch: &mut ApiWatch) -> anyhow::Result<bool> {
    ctx.phase("flood settling", ctx.args.nodes as u64);
    let mut progress = Progress::new();
    let mut last = Vec::new();
    let mut since = Instant::now();
    loop {
        let mut counts = Vec::with_capacity(ctx.args.nodes);
        for i in ctx.all() {
            counts.push(watch.records(ctx, i).await?);
        }
        if counts != last || counts.contains(&None) {
            last = counts.clone();
            since = Instant::now();
        }
        if since.elapsed() >= SETTLED {
            return Ok(true);
        }
        if progress.stalled(&counts) {
            return Ok(false);
        }
        ctx.sample_rss();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A deadline that moves while the flood makes progress: [`STALLED`] after the last
/// change of the figures watched (a node too busy to answer counts as progress), and
/// never beyond [`FLOOD_DEADLINE`].
struct Progress {
    start: Instant,
    last_change: Instant,
    last: Vec<Option<usize>>,
}

impl Progress {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_change: Instant::now(),
            last: Vec::new(),
        }
    }

    /// Notes the figures now (`None`: no answer); whether the wait should give up.
    fn stalled(&mut self, now: &[Option<usize>]) -> bool {
        if now != self.last.as_slice() || now.contains(&None) {
            self.last = now.to_vec();
            self.last_change = Instant::now();
        }
        self.last_change.elapsed() > STALLED || self.start.elapsed() > FLOOD_DEADLINE
    }
}

/// Waits until every node holds the half-trusted node's report of the victim.
async fn wait_victim_known(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.phase("victim reported", ctx.args.nodes as u64);
    let deadline = Instant::now() + CONVERGE_DEADLINE;
    loop {
        let mut known = 0;
        for i in ctx.all() {
            if !ctx.api(i)?.check(VICTIM).await?.reporters.is_empty() {
                known += 1;
            }
        }
        ctx.bar.set_position(known as u64);
        if known == ctx.args.nodes {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the half-trusted report of {VICTIM} reached only {known}/{} nodes",
                ctx.args.nodes
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The nodes other than `reporter` that block the victim.
async fn victim_blocked(ctx: &Ctx, reporter: usize) -> anyhow::Result<Vec<usize>> {
    let mut out = Vec::new();
    for i in ctx.all() {
        if i != reporter && ctx.api(i)?.check(VICTIM).await?.blocked {
            out.push(i);
        }
    }
    Ok(out)
}

/// Each node's figures before and after the flood, for the report.
fn record_resources(ctx: &mut Ctx, before: &[Usage], after: &[Usage]) {
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        ctx.resources[i] = Some(Resources {
            rss_bytes: Change::new(b.rss_bytes, a.rss_bytes),
            store_bytes: Change::new(b.store_bytes, a.store_bytes),
            cpu_ms: Change::new(b.cpu_ms, a.cpu_ms),
            records: Change::new(b.records, a.records),
        });
    }
}

/// The largest growth of any node and the total CPU, as summary figures.
fn summary_figures(ctx: &mut Ctx) {
    let rs: Vec<Resources> = ctx.resources.iter().flatten().copied().collect();
    let max = |f: fn(&Resources) -> i64| rs.iter().map(f).max().unwrap_or(0);
    let rss = max(|r| r.rss_bytes.growth);
    let store = max(|r| r.store_bytes.growth);
    let cpu = max(|r| r.cpu_ms.growth);
    let cpu_total: i64 = rs.iter().map(|r| r.cpu_ms.growth).sum();
    ctx.figure("rss_growth_max_bytes", rss);
    ctx.figure("store_growth_max_bytes", store);
    ctx.figure("cpu_growth_max_ms", cpu);
    ctx.figure("cpu_growth_total_ms", cpu_total);
}
