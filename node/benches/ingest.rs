//! Ingest throughput: signed sightings verified + merged + persisted per second through
//! the engine's real gossip path (envelope decode, cheap checks, batch verification,
//! merge, re-decide on the engine thread; sled writes on the store thread, drained and
//! flushed before a pass counts as done), side by side with raw ed25519-dalek
//! `verify_batch` of the same signatures in the same run. Goal: at least 0.8× of the raw
//! batch rate.

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ed25519_dalek::{Signature, VerifyingKey};
use fraudmesh::identity::Identity;
use fraudmesh::proto;
use fraudmesh::sighting::{AcceptLimits, DOMAIN};
use fraudmesh_node::engine::GossipVerdict;
use prost::Message;
use std::time::{Duration, Instant};

const BATCH: usize = 256;
const ENVELOPES: usize = 200;

struct Fixture {
    reporters: Vec<Identity>,
    envelopes: Vec<Vec<u8>>,
}

fn fixture() -> Fixture {
    let reporters = common::reporters();
    let now = fraudmesh_node::now_ms();
    let envelopes = (0..ENVELOPES)
        .map(|e| {
            let sightings = (0..BATCH)
                .map(|i| common::sighting(&reporters, e * BATCH + i, now, 3600))
                .collect();
            proto::Envelope { sightings }.encode_to_vec()
        })
        .collect();
    Fixture { reporters, envelopes }
}

/// The inputs of raw `verify_batch` for one envelope, prepared outside the timing.
fn raw_inputs(envelope: &[u8]) -> (Vec<Vec<u8>>, Vec<Signature>, Vec<VerifyingKey>) {
    let env = proto::Envelope::decode(envelope).unwrap();
    let mut msgs = Vec::new();
    let mut sigs = Vec::new();
    let mut keys = Vec::new();
    for s in env.sightings {
        let p = proto::Sighting::decode(s.payload.as_ref()).unwrap();
        let mut m = vec![DOMAIN.len() as u8];
        m.extend_from_slice(DOMAIN);
        m.extend_from_slice(&s.payload);
        msgs.push(m);
        sigs.push(Signature::from_slice(&s.signature).unwrap());
        keys.push(VerifyingKey::from_bytes(p.reporter.as_ref().try_into().unwrap()).unwrap());
    }
    (msgs, sigs, keys)
}

fn bench(c: &mut Criterion) {
    let fx = fixture();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.measurement_time(Duration::from_secs(8));

    let raw = raw_inputs(&fx.envelopes[0]);
    g.bench_function("raw ed25519 verify_batch (256)", |b| {
        b.iter(|| {
            let refs: Vec<&[u8]> = raw.0.iter().map(Vec::as_slice).collect();
            ed25519_dalek::verify_batch(&refs, &raw.1, &raw.2).unwrap();
        })
    });

    for (name, persist) in [
        (
            "engine verify+merge+persist, store thread drained (256 per envelope)",
            true,
        ),
        ("engine verify+merge, no store (256 per envelope)", false),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    let tmp = tempfile::tempdir().unwrap();
                    let mut e = common::engine(&fx.reporters, persist.then_some(tmp.path()));
                    for env in fx.envelopes.iter().take((iters - done) as usize) {
                        let t = Instant::now();
                        let v = e.gossip(env);
                        total += t.elapsed();
                        assert_eq!(v, GossipVerdict::Accept);
                        done += 1;
                    }
                    // Count the store thread's backlog too: the pass ends when all is on disk.
                    let t = Instant::now();
                    e.flush().unwrap();
                    total += t.elapsed();
                }
                total
            })
        });
    }

    let mut keys = fraudmesh::identity::KeyCache::new(1000);
    g.bench_function("decode + checks only (no signature, no merge)", |b| {
        b.iter_batched(
            || fx.envelopes[1].clone(),
            |env| {
                let env = proto::Envelope::decode(env.as_slice()).unwrap();
                let now = fraudmesh_node::now_ms();
                env.sightings
                    .iter()
                    .map(|s| {
                        fraudmesh::sighting::Pending::check_cached(s, now, &AcceptLimits::default(), &mut keys).is_ok()
                    })
                    .count()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
