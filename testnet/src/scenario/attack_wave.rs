//! `attack-wave`: every node up, a steady wave of reports from a few reporters; every
//! report must be acknowledged and every node must block every target.

use super::{Coverage, Ctx, Outcome};

/// Runs `attack-wave`.
pub(super) async fn run(ctx: &mut Ctx, targets: &[String]) -> anyhow::Result<Outcome> {
    let all = ctx.all();
    ctx.form(&all).await?;
    let reporters = ctx.pick_reporters(&all, ctx.args.reporters);
    let (wave_start, sent) = ctx.steady_wave(targets, &reporters).await?;
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
