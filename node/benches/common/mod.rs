//! What the benchmarks share: trusted reporters, a realistic sighting, an engine over
//! sled or over a store that keeps nothing (to separate the engine's cost from sled's).

#![allow(dead_code)]

/// Network namespaces the benches create and remove (the integration tests' harness).
#[path = "../../tests/it/common/netns.rs"]
pub mod netns;

use fraudmesh::identity::{Identity, PublicKey};
use fraudmesh::policy::{Policy, ReputationConfig, TrustConfig, FULL};
use fraudmesh::proto;
use fraudmesh::sighting::{sign, AcceptLimits, Draft, Evidence, Kind, Record};
use fraudmesh::target::Target;
use fraudmesh_node::engine::store::{Scanned, SledStore, Store, Table, TableWrite};
use fraudmesh_node::engine::GossipVerdict;
use fraudmesh_node::engine::{Engine, EngineConfig, StrangerBounds};
use fraudmesh_node::metrics::{Metrics, Scrape};
use prost::Message;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Distinct reporters the sightings come from, all trusted by the engine.
pub const REPORTERS: usize = 64;

/// The reporters' identities.
pub fn reporters() -> Vec<Identity> {
    (0..REPORTERS)
        .map(|i| Identity::from_secret([i as u8 + 1; 32]))
        .collect()
}

/// Sighting number `i`: an auth-failure flood from 11.0.0.0 + i, with typical evidence.
pub fn sighting(reporters: &[Identity], i: usize, now: u64, ttl_s: u32) -> proto::SignedSighting {
    sign(
        &reporters[i % reporters.len()],
        Draft {
            target: Target::host(Ipv4Addr::from(0x0b00_0000 + i as u32).into()),
            kind: Kind::AuthFailure,
            observed_at: now,
            ttl_s,
            count: 5,
            evidence: Evidence {
                method: "REGISTER".into(),
                user_agent: "friendly-scanner".into(),
                reason: "5 auth failures in 60s".into(),
                usernames: vec!["100".into(), "admin".into()],
            },
        },
    )
    .to_proto()
}

/// A store that keeps nothing.
pub struct NullStore;

impl Store for NullStore {
    fn for_each(&self, _: &mut dyn FnMut(&[u8]) -> anyhow::Result<()>) -> anyhow::Result<()> {
        Ok(())
    }
    fn put(&self, _: &[&Record]) -> anyhow::Result<()> {
        Ok(())
    }
    fn get(&self, _: &PublicKey, _: &Target) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(None)
    }
    fn remove(&self, _: &[(PublicKey, Target)]) -> anyhow::Result<()> {
        Ok(())
    }
    fn flush(&self) -> anyhow::Result<()> {
        Ok(())
    }
    fn size_on_disk(&self) -> u64 {
        0
    }
    fn table_scan(&self, _: Table, _: &mut dyn FnMut(Scanned<'_>)) -> anyhow::Result<()> {
        Ok(())
    }
    fn table_write(&self, _: Table, _: &[TableWrite]) -> anyhow::Result<()> {
        Ok(())
    }
}

/// An engine trusting `reporters`, over sled at `dir` (64 MiB cache) or over [`NullStore`].
pub fn engine(reporters: &[Identity], dir: Option<&Path>) -> Engine {
    let local = Identity::from_secret([200; 32]);
    let trusted: HashMap<_, _> = reporters.iter().map(|r| (r.public(), FULL)).collect();
    let policy = Policy::new(
        TrustConfig {
            local: local.public(),
            trusted,
            stranger_weight: 100,
            stranger_cap: 500,
            threshold: FULL,
            orgs: HashMap::new(),
            reputation: ReputationConfig::default(),
        },
        vec![],
    )
    .expect("policy");
    let store: Box<dyn Store> = match dir {
        Some(dir) => Box::new(SledStore::open(dir, 64 * 1024 * 1024).expect("sled")),
        None => Box::new(NullStore),
    };
    let (publish, _rx) = tokio::sync::mpsc::channel(1);
    Engine::new(
        EngineConfig {
            identity: local,
            policy,
            limits: AcceptLimits::default(),
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
    .expect("engine")
}

/// Ingests `n` records through the gossip path into an engine over `dir` (sled) or
/// over nothing.
pub fn ingest(n: usize, dir: Option<&Path>) -> Engine {
    let reporters = reporters();
    let mut engine = engine(&reporters, dir);
    let now = fraudmesh_node::now_ms();
    let start = Instant::now();
    for chunk in 0..n.div_ceil(256) {
        let sightings = (chunk * 256..((chunk + 1) * 256).min(n))
            .map(|i| sighting(&reporters, i, now, 86_400))
            .collect();
        let env = proto::Envelope {
            sightings,
            endorsements: vec![],
        }
        .encode_to_vec();
        assert_eq!(engine.gossip(&env), GossipVerdict::Accept);
        if chunk % 400 == 0 {
            eprintln!("  {} records, {:.0?}", engine.records(), start.elapsed());
        }
    }
    engine.rebuild();
    engine
}

/// Writes `n` records from the bench reporters into a node directory's store.
pub fn fill_dir(dir: &Path, n: usize) {
    let mut e = ingest(n, Some(&dir.join("data")));
    e.flush().expect("flush");
}

/// Reads a running node's `status --json`.
pub fn status(bin: &str, dir: &Path) -> Option<serde_json::Value> {
    let out = std::process::Command::new(bin)
        .args(["--dir", dir.to_str()?, "status", "--json"])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// A metric of a running node, summed over its label sets; 0 when absent or the node
/// does not answer.
pub fn metric(dir: &Path, name: &str) -> f64 {
    let Some(api) = fraudmesh_node::daemon::dir::NodeDir::new(dir)
        .read_runtime()
        .map(|rt| rt.api)
    else {
        return 0.0;
    };
    let Ok(mut s) = std::net::TcpStream::connect(&api) else {
        return 0.0;
    };
    use std::io::{Read, Write};
    let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Scrape::parse(body).sum(name)
}

/// The value at fraction `p` (0.5 = median) of `sorted`, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
