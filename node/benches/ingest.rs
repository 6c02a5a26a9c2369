//! Ingest throughput: signed sightings verified + merged + persisted per second through
//! the engine's real gossip path (envelope decode, cheap checks, batch verification,
//! merge, re-decide, sled write), side by side with raw ed25519-dalek `verify_batch` of
//! the same signatures in the same run. Goal: at least 0.8× of the raw batch rate.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ed25519_dalek::{Signature, VerifyingKey};
use fraudmesh::identity::Identity;
use fraudmesh::policy::{Policy, TrustConfig, FULL};
use fraudmesh::proto;
use fraudmesh::sighting::{sign, Draft, Evidence, Kind, Limits, DOMAIN};
use fraudmesh::target::Target;
use fraudmesh_node::engine::{Engine, EngineConfig, StrangerBounds, Verdict};
use fraudmesh_node::metrics::Metrics;
use fraudmesh_node::store::{SledStore, Store};
use prost::Message;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: usize = 256;
const ENVELOPES: usize = 200;
const REPORTERS: usize = 64;

fn now_ms() -> u64 {
    fraudmesh_node::now_ms()
}

struct Fixture {
    reporters: Vec<Identity>,
    envelopes: Vec<Vec<u8>>,
}

fn fixture() -> Fixture {
    let reporters: Vec<Identity> = (0..REPORTERS)
        .map(|i| Identity::from_secret([i as u8 + 1; 32]))
        .collect();
    let now = now_ms();
    let mut envelopes = Vec::with_capacity(ENVELOPES);
    let mut n: u32 = 0;
    for _ in 0..ENVELOPES {
        let mut sightings = Vec::with_capacity(BATCH);
        for _ in 0..BATCH {
            n += 1;
            let who = &reporters[n as usize % REPORTERS];
            let rec = sign(
                who,
                Draft {
                    target: Target::host(Ipv4Addr::from(0x0b00_0000 + n).into()),
                    kind: Kind::AuthFailure,
                    observed_at: now,
                    ttl_s: 3600,
                    count: 5,
                    evidence: Evidence {
                        method: "REGISTER".into(),
                        user_agent: "friendly-scanner".into(),
                        reason: "5 auth failures in 60s".into(),
                        usernames: vec!["100".into(), "admin".into()],
                    },
                },
            );
            sightings.push(rec.to_proto());
        }
        envelopes.push(proto::Envelope { sightings }.encode_to_vec());
    }
    Fixture { reporters, envelopes }
}

/// A store that keeps nothing: separates the engine's own cost from sled's.
struct NullStore;

impl Store for NullStore {
    fn load(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        Ok(Vec::new())
    }
    fn put(&mut self, _: &[&fraudmesh::sighting::Record]) -> anyhow::Result<()> {
        Ok(())
    }
    fn remove(&mut self, _: &[(fraudmesh::identity::PublicKey, fraudmesh::target::Target)]) -> anyhow::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    fn size_on_disk(&self) -> u64 {
        0
    }
}

fn engine(reporters: &[Identity], dir: Option<&std::path::Path>) -> Engine {
    let local = Identity::from_secret([200; 32]);
    let trusted: HashMap<_, _> = reporters.iter().map(|r| (r.public(), FULL)).collect();
    let policy = Policy::new(
        TrustConfig {
            local: local.public(),
            trusted,
            stranger_weight: 100,
            stranger_cap: 500,
            threshold: FULL,
        },
        vec![],
    )
    .unwrap();
    let store: Box<dyn Store> = match dir {
        Some(dir) => Box::new(SledStore::open(dir, 64 * 1024 * 1024).unwrap()),
        None => Box::new(NullStore),
    };
    let (publish, _rx) = tokio::sync::mpsc::channel(1);
    Engine::new(
        EngineConfig {
            identity: local,
            policy,
            limits: Limits::default(),
            strangers: StrangerBounds {
                rate: 10.0,
                burst: 100,
                max_per_stranger: 1000,
                max_total: 100_000,
            },
        },
        store,
        Arc::new(Metrics::new()),
        publish,
    )
    .unwrap()
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
        ("engine verify+merge+persist (256 per envelope)", true),
        ("engine verify+merge, no store (256 per envelope)", false),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    let tmp = tempfile::tempdir().unwrap();
                    let mut e = engine(&fx.reporters, persist.then_some(tmp.path()));
                    for env in fx.envelopes.iter().take((iters - done) as usize) {
                        let t = Instant::now();
                        let v = e.gossip(env);
                        total += t.elapsed();
                        assert_eq!(v, Verdict::Accept);
                        done += 1;
                    }
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
                let now = now_ms();
                env.sightings
                    .iter()
                    .map(|s| fraudmesh::sighting::Pending::check_cached(s, now, &Limits::default(), &mut keys).is_ok())
                    .count()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
