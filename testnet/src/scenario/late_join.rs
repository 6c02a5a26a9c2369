//! `late-join`: three quarters of the nodes take the attack wave; the last quarter
//! starts only after they converged and must catch up on every target.

use super::{want_all, Coverage, Ctx, Outcome, CONVERGE_DEADLINE};
use fraudmesh_node::now_ms;

/// Runs `late-join`.
pub(super) async fn run(ctx: &mut Ctx, targets: &[String]) -> anyhow::Result<Outcome> {
    let n = ctx.args.nodes;
    let late_n = (n / 4).max(1);
    let early: Vec<usize> = (0..n - late_n).collect();
    let late: Vec<usize> = (n - late_n..n).collect();
    ctx.form(&early).await?;
    let reporters = ctx.pick_reporters(&early, ctx.args.reporters);
    let (wave_start, sent) = ctx.steady_wave(targets, &reporters).await?;
    let (early_done, _) = ctx
        .wait_blocked(&early, &want_all(&early, sent.len()), CONVERGE_DEADLINE)
        .await?;
    ctx.expect("the early nodes converge before the late ones start", early_done, "");
    let joined_at = now_ms();
    ctx.start_nodes(&late).await?;
    let (_, blocked) = ctx.converge_all(&sent).await?;
    let coverage = Coverage::of(&blocked, &late, &sent);
    let catch_up = late
        .iter()
        .filter_map(|i| blocked.get(i)?.values().max().copied())
        .max()
        .map_or(0, |t| t.saturating_sub(joined_at));
    ctx.figure("late_nodes", late.len());
    ctx.figure("catch_up_ms", catch_up);
    ctx.expect(
        "late nodes block every target",
        coverage.complete(),
        format!("{}, caught up {catch_up} ms after starting", coverage.figure()),
    );
    Ok(Outcome::new(wave_start, early, sent, blocked))
}
