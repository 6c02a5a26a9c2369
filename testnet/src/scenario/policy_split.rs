//! `policy-split`: the odd nodes run a stricter local policy (`max_ttl = "1day"`,
//! `min_ipv4_prefix = 24`) than the even ones (the defaults: 7 days, /16). Default nodes
//! report hosts with 3-day TTLs and /20 prefixes (each /20 in the same envelope as an
//! ordinary host, its envelope-mate), both sides report ordinary hosts (1 hour), then
//! every reporter retracts everything it reported.
//!
//! Expected: default nodes block everything; strict nodes block every ordinary host and
//! every envelope-mate, and skip the 3-day and /20 records; no node penalises or cuts off
//! a peer for what is only outside its own limits (gossip rejects, sync sessions that
//! ended misbehaved, peers cut off by sync: all zero, from each node's `/metrics`); every
//! retraction lands (afterwards no node blocks anything).

use super::wave::Sent;
use super::{rejected_messages, Blocked, Coverage, Ctx, Outcome, CONVERGE_DEADLINE, POLL};
use crate::client::blocked_since;
use crate::cluster::{NodeSpec, Tweak};
use anyhow::Context;
use fraudmesh_node::http::types::{SightingsRequest, Ttl};
use fraudmesh_node::metrics::Scrape;
use fraudmesh_node::now_ms;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The strict nodes' `max_ttl`.
const STRICT_MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// The strict nodes' `min_ipv4_prefix`.
const STRICT_MIN_IPV4_PREFIX: u8 = 24;
/// TTL of the long reports: over the strict nodes' limit, within the default one.
const LONG_TTL: &str = "3d";
/// TTL of every other report.
const SHORT_TTL: &str = "1h";
/// The /20 prefixes reported lie in 100.64.0.0/10 (shared address space), away from the
/// hosts (198.18.0.0/15).
const PREFIX_NET: u32 = 0x6440_0000;

/// Peers the node cut off or penalised, from its `/metrics` text: gossip messages it
/// rejected (each one a peer-score penalty for the peer that sent it), sync sessions that
/// ended with the peer misbehaving, and peers cut off by sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
struct Blame {
    gossip_rejects: u64,
    sync_misbehaved: u64,
    sync_cut_off: u64,
}

impl Blame {
    fn of(metrics: &Scrape) -> Self {
        let v = |name: &str, labels: &[(&str, &str)]| metrics.value(name, labels).unwrap_or(0.0) as u64;
        Self {
            gossip_rejects: rejected_messages(metrics),
            sync_misbehaved: v("fraudmesh_sync_sessions_total", &[("result", "misbehaved")]),
            sync_cut_off: v("fraudmesh_sync_misbehaving_peers_total", &[]),
        }
    }

    fn total(&self) -> u64 {
        self.gossip_rejects + self.sync_misbehaved + self.sync_cut_off
    }

    fn add(&mut self, other: Blame) {
        self.gossip_rejects += other.gossip_rejects;
        self.sync_misbehaved += other.sync_misbehaved;
        self.sync_cut_off += other.sync_cut_off;
    }
}

/// What a reported target is, for the expectations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// A host reported for an hour, alone.
    Ordinary,
    /// A host reported for an hour in the same envelope as a /20.
    Mate,
    /// A /20 prefix (broader than the strict nodes accept).
    Prefix,
    /// A host reported for 3 days (longer than the strict nodes accept).
    Long,
}

impl Class {
    /// Whether a strict node accepts it.
    fn within_strict(self) -> bool {
        matches!(self, Class::Ordinary | Class::Mate)
    }
}

/// Whether node `i` runs the strict policy.
fn strict(i: usize) -> bool {
    i % 2 == 1
}

/// Odd nodes strict, even nodes default; everyone trusts everyone.
pub(super) fn layout(args: &super::RunArgs) -> Vec<NodeSpec> {
    let tweak: Tweak = Arc::new(|c| {
        c.policy.max_ttl = STRICT_MAX_TTL;
        c.policy.min_ipv4_prefix = STRICT_MIN_IPV4_PREFIX;
    });
    (0..args.nodes)
        .map(|i| NodeSpec {
            tweak: strict(i).then(|| tweak.clone()),
            role: Some(if strict(i) { "strict" } else { "default" }),
            ..NodeSpec::default()
        })
        .collect()
}

/// One `POST /v1/sightings`: its reporter, TTL and targets (one envelope).
struct Request {
    reporter: usize,
    ttl: &'static str,
    targets: Vec<(String, Class)>,
}

/// Runs `policy-split`.
pub(super) async fn run(ctx: &mut Ctx, hosts: &[String]) -> anyhow::Result<Outcome> {
    let all = ctx.all();
    ctx.form(&all).await?;
    let defaults: Vec<usize> = all.iter().copied().filter(|&i| !strict(i)).collect();
    let stricts: Vec<usize> = all.iter().copied().filter(|&i| strict(i)).collect();
    let k = ctx.args.reporters;
    let default_reporters = ctx.pick_reporters(&defaults, k.div_ceil(2));
    let strict_reporters = ctx.pick_reporters(&stricts, k / 2);
    let requests = plan(hosts, &default_reporters, &strict_reporters);
    let wave_start = now_ms();
    let sent = report_all(ctx, &requests).await?;
    let class: HashMap<&str, Class> = requests
        .iter()
        .flat_map(|r| r.targets.iter().map(|(t, c)| (t.as_str(), *c)))
        .collect();
    let of = |c: Class| sent.iter().filter(|s| class[s.target.as_str()] == c).count();
    let (ordinary, mates, prefixes, long) = (of(Class::Ordinary), of(Class::Mate), of(Class::Prefix), of(Class::Long));
    ctx.figure("ordinary", ordinary);
    ctx.figure("envelope_mates", mates);
    ctx.figure("prefixes_20", prefixes);
    ctx.figure("ttl_3d", long);
    let within: Vec<Sent> = sent
        .iter()
        .filter(|s| class[s.target.as_str()].within_strict())
        .cloned()
        .collect();
    let want: HashMap<usize, usize> = all
        .iter()
        .map(|&i| (i, if strict(i) { within.len() } else { sent.len() }))
        .collect();
    let (_, blocked) = ctx.wait_blocked(&all, &want, CONVERGE_DEADLINE).await?;
    let planned: usize = requests.iter().map(|r| r.targets.len()).sum();
    ctx.expect(
        "every report acknowledged",
        sent.len() == planned,
        format!("{}/{planned}", sent.len()),
    );
    let on_defaults = Coverage::of(&blocked, &defaults, &sent);
    ctx.expect(
        "default nodes block every report (3-day and /20 ones too)",
        on_defaults.complete(),
        on_defaults.figure(),
    );
    let on_stricts = Coverage::of(&blocked, &stricts, &within);
    ctx.expect(
        "strict nodes block every report within their limits, envelope-mates of skipped records too",
        on_stricts.complete(),
        on_stricts.figure(),
    );
    let outside = outside_held(&blocked, &stricts, &class);
    ctx.expect(
        "strict nodes skip the 3-day and /20 records",
        outside == 0,
        format!("{outside} (strict node, 3-day or /20 target) pairs blocked"),
    );
    let (retracted, retract_ms, left) = retract_all(ctx, &sent).await?;
    ctx.figure("retract_to_unblocked_ms", retract_ms);
    ctx.expect(
        "every retraction lands: afterwards no node blocks any reported target",
        retracted == sent.len() && left.values().all(|&n| n == 0),
        format!(
            "{retracted}/{} retracted; still blocked per node: {:?}",
            sent.len(),
            left.iter().filter(|(_, &n)| n > 0).collect::<BTreeMap<_, _>>()
        ),
    );
    blame(ctx).await?;
    Ok(Outcome::new(wave_start, all, within, blocked))
}

/// The requests: a quarter of the hosts each paired with a /20 (default reporters), a
/// quarter reported for 3 days (default reporters), the rest ordinary (reporters of both
/// sides in turn).
fn plan(hosts: &[String], default_reporters: &[usize], strict_reporters: &[usize]) -> Vec<Request> {
    let q = (hosts.len() / 4).max(1).min(hosts.len() / 2);
    let both: Vec<usize> = default_reporters.iter().chain(strict_reporters).copied().collect();
    let mut out = Vec::with_capacity(hosts.len());
    for (k, host) in hosts.iter().enumerate() {
        let on_default = default_reporters[k % default_reporters.len()];
        out.push(if k < q {
            let prefix = format!("{}/20", Ipv4Addr::from(PREFIX_NET + ((k as u32) << 12)));
            Request {
                reporter: on_default,
                ttl: SHORT_TTL,
                targets: vec![(prefix, Class::Prefix), (host.clone(), Class::Mate)],
            }
        } else if k < 2 * q {
            Request {
                reporter: on_default,
                ttl: LONG_TTL,
                targets: vec![(host.clone(), Class::Long)],
            }
        } else {
            Request {
                reporter: both[k % both.len()],
                ttl: SHORT_TTL,
                targets: vec![(host.clone(), Class::Ordinary)],
            }
        });
    }
    // Interleave the kinds so that each arrives during the others.
    out.sort_by_key(|r| r.targets.last().map(|(t, _)| t.clone()));
    out
}

/// Sends every request at the run's rate; returns the acknowledged targets.
async fn report_all(ctx: &mut Ctx, requests: &[Request]) -> anyhow::Result<Vec<Sent>> {
    ctx.phase("reporting", requests.len() as u64);
    let gap = Duration::from_secs_f64(1.0 / ctx.args.rate);
    let start = tokio::time::Instant::now();
    let mut sent = Vec::new();
    for (k, r) in requests.iter().enumerate() {
        tokio::time::sleep_until(start + gap * k as u32).await;
        let request = SightingsRequest {
            targets: r.targets.iter().map(|(t, _)| t.clone()).collect(),
            kind: Some("scan".to_string()),
            ttl: Some(Ttl::Text(r.ttl.to_string())),
            reason: Some("testnet policy-split".to_string()),
            ..Default::default()
        };
        let at_ms = now_ms();
        match ctx.api(r.reporter)?.report(&request).await {
            Ok(_) => sent.extend(r.targets.iter().map(|(t, _)| Sent {
                target: t.clone(),
                reporter: r.reporter,
                at_ms,
            })),
            Err(e) => tracing::warn!(error = %e, reporter = r.reporter, "a report was refused"),
        }
        ctx.bar.inc(1);
    }
    Ok(sent)
}

/// How many (strict node, 3-day or /20 target) pairs are blocked.
fn outside_held(blocked: &Blocked, stricts: &[usize], class: &HashMap<&str, Class>) -> usize {
    stricts
        .iter()
        .filter_map(|i| blocked.get(i))
        .map(|b| {
            b.keys()
                .filter(|t| class.get(t.as_str()).is_some_and(|c| !c.within_strict()))
                .count()
        })
        .sum()
}

/// Each reporter retracts what it reported; waits until no node blocks anything (or the
/// deadline). Returns how many retractions were acknowledged, how long the blocks took
/// to go (ms after the first retraction) and what each node still blocks.
async fn retract_all(ctx: &mut Ctx, sent: &[Sent]) -> anyhow::Result<(usize, u64, HashMap<usize, usize>)> {
    ctx.phase("retracting", sent.len() as u64);
    let started = Instant::now();
    let mut retracted = 0;
    for s in sent {
        match ctx.api(s.reporter)?.retract(&s.target).await {
            Ok(_) => retracted += 1,
            Err(e) => tracing::warn!(error = %e, target = %s.target, "a retraction was refused"),
        }
        ctx.bar.inc(1);
    }
    ctx.phase("retractions land", ctx.args.nodes as u64);
    let apis = ctx.apis(&ctx.all())?;
    let deadline = Instant::now() + CONVERGE_DEADLINE;
    loop {
        let mut clear = 0;
        for (_, api) in &apis {
            if api.status().await?.blocked == 0 {
                clear += 1;
            }
        }
        ctx.bar.set_position(clear as u64);
        if clear == apis.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let took = started.elapsed().as_millis() as u64;
    let mut left = HashMap::new();
    for (i, api) in &apis {
        let still = blocked_since(api).await?;
        left.insert(*i, sent.iter().filter(|s| still.contains_key(&s.target)).count());
    }
    Ok((retracted, took, left))
}

/// Reads every node's metrics: peers penalised or cut off (an expectation: none), and the
/// sightings each refused, by reason (a figure).
async fn blame(ctx: &mut Ctx) -> anyhow::Result<()> {
    let mut total = Blame::default();
    let mut by_node = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for i in ctx.all() {
        let m = Scrape::parse(&ctx.api(i)?.metrics().await.context("reading metrics")?);
        let b = Blame::of(&m);
        if b.total() > 0 {
            by_node.insert(i, b);
        }
        total.add(b);
        for s in m.samples("fraudmesh_sightings_rejected_total") {
            let reason = s.label("reason").unwrap_or("?").to_string();
            *reasons.entry(reason).or_default() += s.value as u64;
        }
    }
    ctx.figure("gossip_rejects", total.gossip_rejects);
    ctx.figure("sync_sessions_misbehaved", total.sync_misbehaved);
    ctx.figure("sync_peers_cut_off", total.sync_cut_off);
    ctx.figure("sightings_refused_by_reason", serde_json::to_value(&reasons)?);
    ctx.figure("blame_by_node", serde_json::to_value(&by_node)?);
    ctx.expect(
        "no peer penalised or cut off (gossip rejects, misbehaved sync sessions, sync cut-offs)",
        total.total() == 0,
        format!(
            "gossip rejects {}, misbehaved sync sessions {}, peers cut off {}",
            total.gossip_rejects, total.sync_misbehaved, total.sync_cut_off
        ),
    );
    Ok(())
}
