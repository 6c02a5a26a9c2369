//! `attack-wave`: every node up, a steady wave of reports from a few reporters; every
//! report must be acknowledged and every node must block every target. It also measures
//! the CPU each node spends per received sighting (`cpu.rs`): an idle window of the
//! wave's length right before it, then the wave's own.

use super::cpu::SETTLE;
use super::{Coverage, Ctx, Outcome};
use std::time::Duration;

/// Runs `attack-wave`.
pub(super) async fn run(ctx: &mut Ctx, targets: &[String]) -> anyhow::Result<Outcome> {
    let all = ctx.all();
    ctx.form(&all).await?;
    let reporters = ctx.pick_reporters(&all, ctx.args.reporters);
    let planned = Duration::from_secs_f64(targets.len() as f64 / ctx.args.rate) + SETTLE;
    let idle = ctx.idle_window(planned).await;
    let wave_cpu_start = ctx.cpu_sample();
    let started = tokio::time::Instant::now();
    let (wave_start, sent) = ctx.steady_wave(targets, &reporters).await?;
    // The window closes SETTLE after the last acknowledgement (and not before the planned
    // length), before the convergence check polls the nodes.
    let close = tokio::time::Instant::now() + SETTLE;
    tokio::time::sleep_until(close.max(started + planned)).await;
    let wave = (wave_cpu_start, ctx.cpu_sample());
    ctx.record_cpu(&idle, &wave, &sent);
    let (_, blocked) = ctx.converge_all(&sent).await?;
    let acked = sent.len();
    let coverage = Coverage::of(&blocked, &all, &sent);
    ctx.expect(
        "every report acknowledged",
        acked == targets.len(),
        format!("{acked}/{}", targets.len()),
    );
    ctx.expect("every node blocks every target", coverage.complete(), coverage.figure());
    Ok(Outcome::new(wave_start, all, sent, blocked))
}
