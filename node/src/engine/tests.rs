//! Unit tests of the engine over a real sled store.

use super::*;
use crate::engine::store::SledStore;
use fraudmesh::policy::{TrustConfig, FULL};
use fraudmesh::sighting::{sign, Evidence};
use fraudmesh::target::Bounds;

fn config(local: Identity) -> EngineConfig {
    let policy = Policy::new(
        TrustConfig {
            local: local.public(),
            trusted: Default::default(),
            stranger_weight: 100,
            stranger_cap: 500,
            threshold: FULL,
        },
        vec![],
    )
    .unwrap();
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
    }
}

fn record(who: &Identity, target: &str, observed_at: Millis, ttl_s: u32) -> Record {
    sign(
        who,
        Draft {
            target: Target::parse(target, Bounds::default()).unwrap(),
            kind: Kind::Scan,
            observed_at,
            ttl_s,
            count: 1,
            evidence: Evidence::default(),
        },
    )
}

#[test]
fn restart_drops_expired_records_from_disk_and_skips_corrupt_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let me = Identity::from_secret([3; 32]);
    let now = now_ms();
    {
        let store = SledStore::open(tmp.path(), 1 << 20).unwrap();
        let live = record(&me, "192.0.2.1", now, 3600);
        let dead = record(&me, "192.0.2.2", now - 20_000, 10);
        store.put(&[&live, &dead]).unwrap();
        store.put_raw(b"garbage-key", b"\xff\xff not a record").unwrap();
        store.flush().unwrap();
    }
    let store = SledStore::open(tmp.path(), 1 << 20).unwrap();
    let (tx, _rx) = mpsc::channel(1);
    let engine = Engine::new(
        config(Identity::from_secret([3; 32])),
        Box::new(store),
        Arc::default(),
        tx,
    )
    .unwrap();
    assert_eq!(engine.records(), 1);
    assert!(engine.blocklist.load().is_blocked("192.0.2.1".parse().unwrap()));
    assert!(!engine.blocklist.load().is_blocked("192.0.2.2".parse().unwrap()));
    drop(engine);
    let store = SledStore::open(tmp.path(), 1 << 20).unwrap();
    let mut left = 0;
    store
        .for_each(&mut |_| {
            left += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(
        left, 2,
        "the live record and the unreadable one stay; the expired one is gone"
    );
}

#[test]
fn a_local_record_supersedes_the_previous_one_within_the_same_millisecond() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SledStore::open(tmp.path(), 1 << 20).unwrap();
    let (tx, _rx) = mpsc::channel(16);
    let mut engine = Engine::new(
        config(Identity::from_secret([4; 32])),
        Box::new(store),
        Arc::default(),
        tx,
    )
    .unwrap();
    let target = Target::parse("192.0.2.9", Bounds::default()).unwrap();
    let now = now_ms();
    let d = Draft {
        target: target.clone(),
        kind: Kind::Manual,
        observed_at: now,
        ttl_s: 600,
        count: 1,
        evidence: Evidence::default(),
    };
    engine.report(vec![d]).unwrap();
    assert!(engine.check(&target).blocked);
    engine.report(vec![retraction(target.clone(), now, 3600)]).unwrap();
    assert!(
        !engine.check(&target).blocked,
        "the retraction wins even at the same ms"
    );
}
