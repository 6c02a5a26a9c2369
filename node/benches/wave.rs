//! The engine's cost per received sighting in a steady attack wave: one sighting per
//! gossip message (as `fraudmesh-testnet run --scenario attack-wave` sends them), each
//! from a trusted reporter and new, through the exact gossip path (envelope decode,
//! checks, dedup, signature, merge, re-decide, blocklist snapshot, the writer's sled
//! writes on the store thread, drained before a pass counts as done).
//!
//! The node's whole cost per sighting is larger (libp2p receives and forwards several
//! copies of each message: see the README's testnet section); this is the engine's share,
//! which a change to the engine moves.
//!
//! Criterion: `cargo bench -p fraudmesh-node --bench wave`. Instruction counts, which
//! stay put however loaded the machine is: `WAVE_MESSAGES=2000` runs that many messages
//! once through `run_wave` instead of criterion; under
//! `valgrind --tool=callgrind --separate-threads=yes`, the engine's instructions per
//! message are `run_wave`'s inclusive cost in the main thread's file
//! (`callgrind_annotate --inclusive=yes`) plus the other threads' totals (the store
//! thread and sled's, which do nothing else), over the messages. Measured on this
//! machine: about 487,000 before the record id was hashed once and the writes batched,
//! 457,000 after, of which the signature check is about 386,000.

mod common;

use criterion::{criterion_group, Criterion, Throughput};
use fraudmesh::identity::Identity;
use fraudmesh::proto;
use fraudmesh_node::engine::{Engine, GossipVerdict};
use prost::Message;
use std::time::{Duration, Instant};

/// Messages in one pass of the criterion bench.
const PASS: usize = 2000;

/// `n` single-sighting envelopes, each a new target, from the bench's reporters.
fn envelopes(reporters: &[Identity], n: usize) -> Vec<Vec<u8>> {
    let now = fraudmesh_node::now_ms();
    (0..n)
        .map(|i| {
            proto::Envelope {
                sightings: vec![common::sighting(reporters, i, now, 3600)],
                endorsements: vec![],
            }
            .encode_to_vec()
        })
        .collect()
}

/// Feeds every envelope to the engine one by one, then waits until the store thread has
/// written and flushed them all.
#[inline(never)]
fn run_wave(engine: &mut Engine, envelopes: &[Vec<u8>]) {
    for env in envelopes {
        let v = engine.gossip(env);
        assert_eq!(v, GossipVerdict::Accept);
    }
    engine.flush().expect("flush");
}

fn bench(c: &mut Criterion) {
    let reporters = common::reporters();
    let envs = envelopes(&reporters, PASS);
    let mut g = c.benchmark_group("wave");
    g.throughput(Throughput::Elements(PASS as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("engine gossip, one sighting per message, sled", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let tmp = tempfile::tempdir().expect("tempdir");
                let mut e = common::engine(&reporters, Some(tmp.path()));
                let t = Instant::now();
                run_wave(&mut e, &envs);
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    if let Some(n) = std::env::var("WAVE_MESSAGES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        let reporters = common::reporters();
        let envs = envelopes(&reporters, n);
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut e = common::engine(&reporters, Some(tmp.path()));
        let t = Instant::now();
        run_wave(&mut e, &envs);
        eprintln!(
            "{n} messages in {:.0?} ({:.1} µs each, wall)",
            t.elapsed(),
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
