//! What a scenario found, measured: report→blocked latencies per node, the convergence
//! curve, each node's figures from its metrics, and the [`Report`] with the raw
//! latencies behind its plots.

use super::wave::Sent;
use super::{rejected_messages, Blocked, Coverage, Ctx, Outcome};
use crate::client::Api;
use crate::report::{NodeReport, Percentiles, Report};
use fraudmesh_node::metrics::Scrape;
use std::collections::HashMap;
use std::time::Instant;

/// A report and the raw latencies behind its plots.
pub(super) struct Finished {
    pub(super) report: Report,
    pub(super) per_node: Vec<NodeLatencies>,
}

/// One node's report→blocked latencies, ms.
pub(super) struct NodeLatencies {
    pub(super) latency_ms_values: Vec<f64>,
}

/// Latencies, convergence curve, per-node figures and the report. With `outcome.sides`
/// (target → side of its reporter), only pairs on the reporter's side count for latency.
pub(super) async fn finish(ctx: &mut Ctx, started: Instant, outcome: &Outcome) -> anyhow::Result<Finished> {
    ctx.sample_rss();
    let n = ctx.args.nodes;
    let blockers = outcome.blockers(&ctx.all());
    let (per_lat, times) = latencies(n, outcome);
    let convergence = convergence(&times, blockers.len() * outcome.sent.len());
    let all_lat: Vec<f64> = per_lat.iter().flatten().copied().collect();
    let per_node = node_reports(ctx, &per_lat, &outcome.blocked).await?;
    let converged = !outcome.sent.is_empty() && Coverage::of(&outcome.blocked, &blockers, &outcome.sent).complete();
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
        targets: outcome.sent.len(),
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

/// Each node's report→blocked latencies (ms; not on the reporter, only on latency
/// nodes, only on the reporter's side when there are sides) and the sorted times (ms
/// after the wave started) at which every (node, target) pair turned to block.
fn latencies(n: usize, outcome: &Outcome) -> (Vec<Vec<f64>>, Vec<u64>) {
    let mut per_lat: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut times = Vec::new();
    for s in &outcome.sent {
        for (&i, b) in &outcome.blocked {
            let Some(&since) = b.get(&s.target) else { continue };
            times.push(since.saturating_sub(outcome.wave_start));
            if counts_for_latency(outcome, s, i) {
                per_lat[i].push(since.saturating_sub(s.at_ms) as f64);
            }
        }
    }
    times.sort_unstable();
    (per_lat, times)
}

/// Whether node `i` blocking `s`'s target counts for latency.
fn counts_for_latency(outcome: &Outcome, s: &Sent, i: usize) -> bool {
    if i == s.reporter || !outcome.latency_nodes.contains(&i) {
        return false;
    }
    let other_side = |sides: &HashMap<String, usize>| sides.get(&s.target).is_some_and(|&side| side != i % 2);
    !outcome.sides.as_ref().is_some_and(other_side)
}

/// The convergence curve from sorted block times: (ms, fraction of `pairs` blocked),
/// at most about 400 points.
fn convergence(times: &[u64], pairs: usize) -> Vec<(u64, f64)> {
    let pairs = pairs.max(1) as f64;
    let step = (times.len() / 400).max(1);
    let mut curve: Vec<(u64, f64)> = vec![(0, 0.0)];
    for (k, t) in times.iter().enumerate() {
        if k % step == 0 || k + 1 == times.len() {
            curve.push((*t, (k + 1) as f64 / pairs));
        }
    }
    curve
}

/// Every node's figures; a stopped node has no metrics.
async fn node_reports(ctx: &Ctx, per_lat: &[Vec<f64>], blocked: &Blocked) -> anyhow::Result<Vec<NodeReport>> {
    let mut per_node = Vec::with_capacity(ctx.args.nodes);
    for m in &ctx.cluster.members {
        let (messages, bytes, rejected) = match &m.api {
            Some(api) => traffic(api).await?,
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
            role: m.role.map(str::to_string),
            resources: ctx.resources[m.index],
            cpu_us_per_sighting: ctx.cpu_us_per_sighting[m.index],
        });
    }
    Ok(per_node)
}

/// A node's gossip messages, bytes received (gossip and sync) and rejected messages.
async fn traffic(api: &Api) -> anyhow::Result<(u64, u64, u64)> {
    let m = Scrape::parse(&api.metrics().await?);
    Ok((
        m.sum("fraudmesh_gossip_messages_total") as u64,
        (m.sum("fraudmesh_gossip_bytes_received_total") + m.sum("fraudmesh_sync_bytes_received_total")) as u64,
        rejected_messages(&m),
    ))
}
