//! `poison`: stranger identities (no node trusts them) report a victim through one
//! node while a rogue peer floods another with invalid messages during an honest attack
//! wave; no node may block the victim, invalid messages must be rejected where they
//! enter, and honest traffic must still reach every node.

use super::{rejected_messages, Coverage, Ctx, Outcome, CONVERGE_DEADLINE, MESH_DEADLINE, POLL};
use crate::rogue::{self, Rogue};
use anyhow::Context;
use fraudmesh::identity::Identity;
use fraudmesh_node::metrics::Scrape;
use fraudmesh_node::now_ms;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// Stranger identities.
const STRANGERS: usize = 20;
/// Invalid messages the flooder sends.
const INVALID_MESSAGES: usize = 200;
/// The address the strangers try to get blocked (RFC 5737).
const VICTIM: &str = "198.51.100.66";

/// Runs `poison`.
pub(super) async fn run(ctx: &mut Ctx, targets: &[String]) -> anyhow::Result<Outcome> {
    let all = ctx.all();
    let n = all.len();
    ctx.form(&all).await?;
    // The strangers' peer and the flooder each connect through one node that is not a seed.
    let via_strangers = ctx.args.seeds.min(n - 1);
    let via_flood = n - 1;
    let mut strangers = rogue_via(ctx, via_strangers)?;
    let mut flooder = rogue_via(ctx, via_flood)?;
    strangers.wait_subscribed(1, MESH_DEADLINE).await?;
    flooder.wait_subscribed(1, MESH_DEADLINE).await?;
    strangers_report(ctx, &strangers).await?;
    let fewest = strangers_spread(ctx).await?;
    ctx.expect(
        "stranger sightings of the victim reach every node",
        fewest >= STRANGERS,
        format!("every node holds at least {fewest}/{STRANGERS}"),
    );
    // The flood and an honest attack wave at the same time.
    let reporters = ctx.pick_reporters(&all, ctx.args.reporters);
    let flood = flood(flooder, ctx.rng.gen());
    let (wave_start, sent) = ctx.steady_wave(targets, &reporters).await?;
    let flooder = flood.await.context("the flood task failed")??;
    let (_, blocked) = ctx.converge_all(&sent).await?;
    let acked = sent.len();
    let coverage = Coverage::of(&blocked, &all, &sent);
    let victim_blocked = victim_blocked(ctx).await?;
    let (at_entry, elsewhere) = rejected(ctx, via_flood).await?;
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
    ctx.expect(
        "honest traffic keeps flowing: every node blocks every honest target",
        coverage.complete() && acked == targets.len(),
        coverage.figure(),
    );
    Ok(Outcome::new(wave_start, all, sent, blocked))
}

/// A rogue peer connected to node `i`.
fn rogue_via(ctx: &Ctx, i: usize) -> anyhow::Result<Rogue> {
    let addr: libp2p::Multiaddr = ctx.cluster.members[i].addr().parse().context("node address")?;
    Rogue::start(&[addr])
}

/// Each stranger identity publishes a sighting of the victim.
async fn strangers_report(ctx: &mut Ctx, strangers: &Rogue) -> anyhow::Result<()> {
    ctx.phase("strangers report", STRANGERS as u64);
    for _ in 0..STRANGERS {
        let id = Identity::from_secret(ctx.rng.gen());
        strangers
            .publish(rogue::stranger_sighting(&id, VICTIM, now_ms())?)
            .await?;
        ctx.bar.inc(1);
    }
    Ok(())
}

/// Waits until every honest node holds every stranger sighting (so "not blocked" means
/// something), or the deadline; returns the fewest any node holds.
async fn strangers_spread(ctx: &mut Ctx) -> anyhow::Result<usize> {
    let all = ctx.all();
    ctx.phase("strangers spread", all.len() as u64);
    let deadline = Instant::now() + CONVERGE_DEADLINE;
    let mut held;
    loop {
        held = Vec::new();
        for &i in &all {
            let c = ctx.api(i)?.check(VICTIM).await?;
            held.push(c.reporters.len());
        }
        ctx.bar
            .set_position(held.iter().filter(|&&h| h >= STRANGERS).count() as u64);
        if held.iter().all(|&h| h >= STRANGERS) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(held.iter().copied().min().unwrap_or(0))
}

/// The flooder sends [`INVALID_MESSAGES`] invalid messages, one every 5 ms, in a task of
/// its own; the task hands the flooder back.
fn flood(flooder: Rogue, seed: u64) -> tokio::task::JoinHandle<anyhow::Result<Rogue>> {
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(seed);
        for i in 0..INVALID_MESSAGES {
            let msg = rogue::invalid_message(&mut rng, i, now_ms())?;
            flooder.publish(msg).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::Ok(flooder)
    })
}

/// How many nodes block the victim (or do not answer that they do not).
async fn victim_blocked(ctx: &Ctx) -> anyhow::Result<usize> {
    let mut blocked = 0;
    for i in ctx.all() {
        if ctx.api(i)?.check(VICTIM).await?.blocked {
            blocked += 1;
        }
    }
    Ok(blocked)
}

/// Invalid messages rejected by the node the flood entered through, and by all others.
async fn rejected(ctx: &Ctx, via_flood: usize) -> anyhow::Result<(u64, u64)> {
    let (mut at_entry, mut elsewhere) = (0, 0);
    for i in ctx.all() {
        let r = rejected_messages(&Scrape::parse(&ctx.api(i)?.metrics().await?));
        if i == via_flood {
            at_entry = r;
        } else {
            elsewhere += r;
        }
    }
    Ok((at_entry, elsewhere))
}
