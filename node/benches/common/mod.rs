//! What the benchmarks share: trusted reporters, a realistic sighting, an engine over
//! sled or over a store that keeps nothing (to separate the engine's cost from sled's).

#![allow(dead_code)]

use fraudmesh::identity::{Identity, PublicKey};
use fraudmesh::policy::{Policy, TrustConfig, FULL};
use fraudmesh::proto;
use fraudmesh::sighting::{sign, Draft, Evidence, Kind, Limits, Record};
use fraudmesh::target::Target;
use fraudmesh_node::engine::{Engine, EngineConfig, StrangerBounds};
use fraudmesh_node::metrics::Metrics;
use fraudmesh_node::store::{SledStore, Store};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

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
    fn put(&mut self, _: &[&Record]) -> anyhow::Result<()> {
        Ok(())
    }
    fn get(&self, _: &PublicKey, _: &Target) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(None)
    }
    fn remove(&mut self, _: &[(PublicKey, Target)]) -> anyhow::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    fn size_on_disk(&self) -> u64 {
        0
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
    .expect("engine")
}
