//! `churn`: an attack wave during which random nodes are killed with SIGKILL and
//! restarted; no acknowledged report may be lost.

use super::wave::{report_steps, Step};
use super::{Coverage, Ctx, Outcome};
use fraudmesh_node::now_ms;
use rand::Rng;
use std::collections::BTreeSet;

/// Runs `churn`.
pub(super) async fn run(ctx: &mut Ctx, targets: &[String]) -> anyhow::Result<Outcome> {
    let all = ctx.all();
    ctx.form(&all).await?;
    let reporters = ctx.pick_reporters(&all, ctx.args.reporters);
    let mut steps = report_steps(0..targets.len(), &reporters, ctx.args.rate, 0);
    let (kills, victims) = kill_and_restart(ctx, targets.len(), &mut steps);
    steps.sort_by_key(|(t, _)| *t);
    let wave_start = now_ms();
    let sent = ctx.wave(targets, steps).await?;
    let last_restart = now_ms();
    let (_, blocked) = ctx.converge_all(&sent).await?;
    let acked = sent.len();
    let coverage = Coverage::of(&blocked, &all, &sent);
    let after = blocked
        .values()
        .flat_map(|b| b.values())
        .max()
        .map_or(0, |t| t.saturating_sub(last_restart));
    ctx.figure("kills", kills);
    ctx.figure("killed_nodes", victims.into_iter().collect::<Vec<_>>());
    ctx.figure("converged_after_churn_ms", after);
    ctx.expect(
        "most reports acknowledged despite kills",
        acked * 2 >= targets.len(),
        format!("{acked}/{}", targets.len()),
    );
    ctx.expect(
        "no acknowledged report lost: every node blocks every one",
        coverage.complete(),
        format!("{} after {kills} kill -9s", coverage.figure()),
    );
    Ok(Outcome::new(wave_start, all, sent, blocked))
}

/// Adds a third of the nodes' worth (at least two) of kill -9s of random nodes, each
/// restarted 300 ms later, spread over the wave of `targets` reports; returns how many
/// and which nodes.
fn kill_and_restart(ctx: &mut Ctx, targets: usize, steps: &mut Vec<(u64, Step)>) -> (usize, BTreeSet<usize>) {
    let n = ctx.args.nodes;
    let wave_ms = (targets as f64 * 1000.0 / ctx.args.rate) as u64;
    let kills = (n / 3).max(2);
    let gap = (wave_ms / (kills as u64 + 1)).max(600);
    let mut victims = BTreeSet::new();
    for k in 0..kills {
        let victim = ctx.rng.gen_range(0..n);
        let at = gap * (k as u64 + 1) / 2 + gap * k as u64 / 2;
        steps.push((at, Step::Kill(victim)));
        steps.push((at + 300, Step::Restart(victim)));
        victims.insert(victim);
    }
    (kills, victims)
}
