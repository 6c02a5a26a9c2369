//! `partition`: the mesh split in two (even and odd nodes refuse each other), both
//! sides attacked at once, then healed; each side must converge on its own attacks, no
//! target may cross before the heal, and every node must block every target after it.

use super::wave::{report_steps, Sent};
use super::{Blocked, Coverage, Ctx, Outcome, CONVERGE_DEADLINE, MESH_DEADLINE, POLL};
use crate::client::peer_ids;
use anyhow::bail;
use fraudmesh_node::now_ms;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// Runs `partition`.
pub(super) async fn run(ctx: &mut Ctx, targets: &[String]) -> anyhow::Result<Outcome> {
    let all = ctx.all();
    ctx.form(&all).await?;
    let side_a: Vec<usize> = all.iter().copied().filter(|i| i % 2 == 0).collect();
    let side_b: Vec<usize> = all.iter().copied().filter(|i| i % 2 == 1).collect();
    split(ctx, &side_a, &side_b).await?;
    let (wave_start, sent) = attack_both_sides(ctx, targets, &side_a, &side_b).await?;
    let (on_a, on_b) = (reported_on(&sent, 0), reported_on(&sent, 1));
    let mut want = HashMap::new();
    for &i in &side_a {
        want.insert(i, on_a.len());
    }
    for &i in &side_b {
        want.insert(i, on_b.len());
    }
    let (sides_done, split) = ctx.wait_blocked(&all, &want, CONVERGE_DEADLINE).await?;
    let leaked = crossed(&split, &on_a, &on_b).count();
    ctx.expect("each side converges on its own attacks", sides_done, "");
    ctx.expect(
        "the partition holds: no node blocks the other side's targets before the heal",
        leaked == 0,
        format!("{leaked} pairs crossed"),
    );
    let healed_at = heal(ctx).await?;
    let (_, blocked) = ctx.converge_all(&sent).await?;
    let coverage = Coverage::of(&blocked, &all, &sent);
    // The last cross-side block anywhere, after the heal.
    let heal_ms = crossed(&blocked, &on_a, &on_b)
        .max()
        .map_or(0, |t| t.saturating_sub(healed_at));
    ctx.figure("side_a", side_a.len());
    ctx.figure("side_b", side_b.len());
    ctx.figure("heal_to_converged_ms", heal_ms);
    ctx.expect(
        "after the heal every node blocks every target",
        coverage.complete(),
        format!("{}, {heal_ms} ms after the heal", coverage.figure()),
    );
    // Latency only within a side: across it, the partition is the delay.
    let sides = sent.iter().map(|s| (s.target.clone(), s.reporter % 2)).collect();
    Ok(Outcome {
        sides: Some(sides),
        ..Outcome::new(wave_start, all, sent, blocked)
    })
}

/// Every node refuses the other side's peers; returns once no connection crosses.
async fn split(ctx: &mut Ctx, side_a: &[usize], side_b: &[usize]) -> anyhow::Result<()> {
    let ids =
        |side: &[usize]| -> Vec<String> { side.iter().map(|&i| ctx.cluster.members[i].peer_id.clone()).collect() };
    let (ids_a, ids_b) = (ids(side_a), ids(side_b));
    ctx.phase("splitting", ctx.args.nodes as u64);
    let halves = [(side_a, &ids_b), (side_b, &ids_a)];
    for (side, other) in halves {
        for &i in side {
            ctx.api(i)?.refuse(other).await?;
            ctx.bar.inc(1);
        }
    }
    // The split holds once no node has a peer on the other side.
    let deadline = Instant::now() + MESH_DEADLINE;
    loop {
        let mut crossing = 0;
        for (side, other) in halves {
            for &i in side {
                let peers = peer_ids(ctx.api(i)?).await?;
                crossing += peers.iter().filter(|p| other.contains(p)).count();
            }
        }
        if crossing == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{crossing} connections still cross the partition");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Half the targets reported on each side, each at half the rate, at the same time.
async fn attack_both_sides(
    ctx: &mut Ctx,
    targets: &[String],
    side_a: &[usize],
    side_b: &[usize],
) -> anyhow::Result<(u64, Vec<Sent>)> {
    let half = targets.len() / 2;
    let rep_a = ctx.pick_reporters(side_a, ctx.args.reporters.div_ceil(2));
    let rep_b = ctx.pick_reporters(side_b, ctx.args.reporters.div_ceil(2));
    let mut steps = report_steps(0..half, &rep_a, ctx.args.rate / 2.0, 0);
    steps.extend(report_steps(half..targets.len(), &rep_b, ctx.args.rate / 2.0, 0));
    steps.sort_by_key(|(t, _)| *t);
    let wave_start = now_ms();
    let sent = ctx.wave(targets, steps).await?;
    Ok((wave_start, sent))
}

/// The targets reported on one side (0: even nodes, 1: odd nodes).
fn reported_on(sent: &[Sent], side: usize) -> HashSet<&str> {
    sent.iter()
        .filter(|s| s.reporter % 2 == side)
        .map(|s| s.target.as_str())
        .collect()
}

/// Since when each node blocks each target reported on the other side.
fn crossed<'a>(
    blocked: &'a Blocked,
    on_a: &'a HashSet<&str>,
    on_b: &'a HashSet<&str>,
) -> impl Iterator<Item = u64> + 'a {
    blocked.iter().flat_map(move |(i, b)| {
        let other = if i % 2 == 0 { on_b } else { on_a };
        b.iter().filter(|(t, _)| other.contains(t.as_str())).map(|(_, s)| *s)
    })
}

/// Every node accepts every peer again; returns when (ms).
async fn heal(ctx: &mut Ctx) -> anyhow::Result<u64> {
    ctx.phase("healing", ctx.args.nodes as u64);
    let healed_at = now_ms();
    let apis = ctx.apis(&ctx.all())?;
    let heals = apis
        .into_iter()
        .map(|(_, api)| async move { api.refuse(&[]).await.map(drop) });
    for r in futures::future::join_all(heals).await {
        r?;
    }
    Ok(healed_at)
}
