//! Unit tests of the engine over a real sled store, or over an in-memory store with
//! injected faults (`store::MemStore`).

use super::*;
use crate::engine::store::{MemStore, Scanned, SledStore, Table, TableWrite};
use crate::metrics::Scrape;
use fraudmesh::endorsement::{self, EndorsementRecord};
use fraudmesh::policy::{OrgTrust, ReputationConfig, TrustConfig, FULL};
use fraudmesh::sighting::{sign, Evidence};
use fraudmesh::target::Bounds;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// The trusted reporter of these tests.
fn trusted() -> Identity {
    Identity::from_secret([50; 32])
}

/// Stranger number `i`.
fn stranger(i: u32) -> Identity {
    let mut secret = [60u8; 32];
    secret[..4].copy_from_slice(&i.to_le_bytes());
    Identity::from_secret(secret)
}

fn config(local: Identity) -> EngineConfig {
    let policy = Policy::new(
        TrustConfig {
            local: local.public(),
            trusted: HashMap::from([(trusted().public(), FULL)]),
            stranger_weight: 100,
            stranger_cap: 500,
            threshold: FULL,
            orgs: HashMap::from([(
                org().public(),
                OrgTrust {
                    name: "acme".into(),
                    weight: FULL,
                },
            )]),
            reputation: ReputationConfig::default(),
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
    record_of(who, target, observed_at, ttl_s, Kind::Scan)
}

fn record_of(who: &Identity, target: &str, observed_at: Millis, ttl_s: u32, kind: Kind) -> Record {
    sign(
        who,
        Draft {
            target: Target::parse(
                target,
                Bounds {
                    min_v4_len: 8,
                    min_v6_len: 16,
                },
            )
            .unwrap(),
            kind,
            observed_at,
            ttl_s,
            count: 1,
            evidence: Evidence::default(),
        },
    )
}

fn envelope(records: &[&Record]) -> Vec<u8> {
    proto::Envelope {
        sightings: records.iter().map(|r| r.to_proto()).collect(),
        endorsements: vec![],
    }
    .encode_to_vec()
}

/// An engine under test, with the other end of its publish channel.
struct Harness {
    engine: Engine,
    published: mpsc::Receiver<Vec<u8>>,
    store: Arc<MemStore>,
    metrics: Arc<Metrics>,
}

impl Harness {
    fn new(cfg: EngineConfig) -> Self {
        Self::over(cfg, MemStore::default())
    }

    fn over(cfg: EngineConfig, store: MemStore) -> Self {
        let store = Arc::new(store);
        let metrics = Arc::new(Metrics::new());
        let (tx, published) = mpsc::channel(16);
        let engine = Engine::new(cfg, Box::new(Shared(store.clone())), metrics.clone(), tx).unwrap();
        Self {
            engine,
            published,
            store,
            metrics,
        }
    }

    /// Envelopes published so far, decoded.
    fn published(&mut self) -> Vec<proto::Envelope> {
        std::iter::from_fn(|| self.published.try_recv().ok())
            .map(|data| proto::Envelope::decode(data.as_slice()).unwrap())
            .collect()
    }

    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        Scrape::parse(&self.metrics.encode()).value(name, labels).unwrap_or(0.0)
    }

    fn holds(&self, r: &Record) -> bool {
        self.engine.ledger.holds(r.id())
    }

    fn stored(&self, r: &Record) -> bool {
        self.store.has(&r.sighting().reporter, &r.sighting().target)
    }
}

/// A store shared with the test, which keeps looking at it.
struct Shared(Arc<MemStore>);

impl Store for Shared {
    fn for_each(&self, f: &mut dyn FnMut(&[u8]) -> anyhow::Result<()>) -> anyhow::Result<()> {
        self.0.for_each(f)
    }
    fn scan(&self, f: &mut dyn FnMut(Scanned<'_>)) -> anyhow::Result<()> {
        self.0.scan(f)
    }
    fn remove_raw(&self, keys: &[Vec<u8>]) -> anyhow::Result<()> {
        self.0.remove_raw(keys)
    }
    fn put(&self, records: &[&Record]) -> anyhow::Result<()> {
        self.0.put(records)
    }
    fn get(&self, reporter: &PublicKey, target: &Target) -> anyhow::Result<Option<Vec<u8>>> {
        self.0.get(reporter, target)
    }
    fn remove(&self, keys: &[(PublicKey, Target)]) -> anyhow::Result<()> {
        self.0.remove(keys)
    }
    fn flush(&self) -> anyhow::Result<()> {
        self.0.flush()
    }
    fn size_on_disk(&self) -> u64 {
        0
    }
    fn table_scan(&self, table: Table, f: &mut dyn FnMut(Scanned<'_>)) -> anyhow::Result<()> {
        self.0.table_scan(table, f)
    }
    fn table_write(&self, table: Table, writes: &[TableWrite]) -> anyhow::Result<()> {
        self.0.table_write(table, writes)
    }
}

fn with_strangers(rate: f64, burst: u32, per: usize, total: usize) -> EngineConfig {
    let mut cfg = config(Identity::from_secret([3; 32]));
    cfg.strangers = StrangerBounds {
        rate,
        burst,
        max_per_stranger: per,
        max_total: total,
    };
    cfg
}

// ---- startup ----

#[test]
fn restart_drops_expired_and_corrupt_records_from_disk() {
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
    let metrics = Arc::new(Metrics::new());
    let engine = Engine::new(config(me), Box::new(store), metrics.clone(), tx).unwrap();
    assert_eq!(engine.records(), 1);
    assert!(engine.blocklist.load().is_blocked("192.0.2.1".parse().unwrap()));
    assert!(!engine.blocklist.load().is_blocked("192.0.2.2".parse().unwrap()));
    let scrape = Scrape::parse(&metrics.encode());
    assert_eq!(
        scrape.value("fraudmesh_store_load_skipped_total", &[("reason", "corrupt")]),
        Some(1.0)
    );
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
        left, 1,
        "only the live record stays; the expired and the corrupt are gone"
    );
}

#[test]
fn an_unreadable_entry_does_not_stop_startup() {
    let me = Identity::from_secret([3; 32]);
    let now = now_ms();
    let store = MemStore {
        unreadable_at: Some(1),
        ..Default::default()
    };
    let records: Vec<Record> = (1..=3)
        .map(|i| record(&me, &format!("192.0.2.{i}"), now, 3600))
        .collect();
    store.put(&records.iter().collect::<Vec<_>>()).unwrap();
    let h = Harness::over(config(me), store);
    assert_eq!(h.engine.records(), 2, "the two readable records are loaded");
    assert_eq!(
        h.metric("fraudmesh_store_load_skipped_total", &[("reason", "unreadable")]),
        1.0
    );
}

// ---- ingest order and relaying ----

#[test]
fn duplicates_are_dropped_before_the_rate_limit_and_only_new_records_are_relayed() {
    let mut h = Harness::new(with_strangers(0.0, 2, 100, 100));
    let s = stranger(1);
    let now = now_ms();
    let (a, b) = (record(&s, "192.0.2.1", now, 600), record(&s, "192.0.2.2", now, 600));
    assert_eq!(h.engine.gossip(&envelope(&[&a])), GossipVerdict::Accept);
    // A again, five times over: duplicates cost no rate token and are not relayed again.
    assert_eq!(h.engine.gossip(&envelope(&[&a, &a, &a])), GossipVerdict::Ignore);
    assert_eq!(h.engine.gossip(&envelope(&[&a, &a, &b])), GossipVerdict::Ignore);
    assert!(h.holds(&b), "B got the stranger's second token");
    assert_eq!(h.metric("fraudmesh_sightings_duplicate_total", &[]), 5.0);
    let published = h.published();
    assert_eq!(published.len(), 1, "only the last message had something new");
    assert_eq!(published[0].sightings, vec![b.to_proto()], "just the relay set");
    assert_eq!(h.metric("fraudmesh_gossip_relay_republished_total", &[]), 1.0);
}

#[test]
fn the_rate_limit_comes_before_the_signature() {
    let mut h = Harness::new(with_strangers(0.0, 1, 100, 100));
    let s = stranger(1);
    let now = now_ms();
    let a = record(&s, "192.0.2.1", now, 600);
    assert_eq!(h.engine.gossip(&envelope(&[&a])), GossipVerdict::Accept);
    // Over its rate, a stranger's record is skipped without verifying it: even a forged
    // one costs no signature check (and so cannot reject its message either).
    let mut forged = record(&s, "192.0.2.2", now, 600).to_proto();
    let mut sig = forged.signature.to_vec();
    sig[3] ^= 1;
    forged.signature = sig.into();
    let data = proto::Envelope {
        sightings: vec![forged],
        endorsements: vec![],
    }
    .encode_to_vec();
    assert_eq!(h.engine.gossip(&data), GossipVerdict::Ignore);
    assert_eq!(
        h.metric("fraudmesh_sightings_rejected_total", &[("reason", "stranger_rate")]),
        1.0
    );
    assert_eq!(
        h.metric("fraudmesh_sightings_rejected_total", &[("reason", "invalid_signature")]),
        0.0
    );
}

#[test]
fn one_forged_sighting_rejects_its_message_and_gives_the_rate_back() {
    let mut h = Harness::new(with_strangers(0.0, 1, 100, 100));
    let s = stranger(1);
    let now = now_ms();
    let good = record(&trusted(), "192.0.2.1", now, 600);
    let strangers = record(&s, "192.0.2.3", now, 600);
    let mut forged = record(&trusted(), "192.0.2.2", now, 600).to_proto();
    forged.payload = {
        let mut p = forged.payload.to_vec();
        let last = p.len() - 1;
        p[last] ^= 1;
        p.into()
    };
    let data = proto::Envelope {
        sightings: vec![good.to_proto(), strangers.to_proto(), forged],
        endorsements: vec![],
    }
    .encode_to_vec();
    assert_eq!(h.engine.gossip(&data), GossipVerdict::Reject);
    assert_eq!(h.engine.records(), 0, "nothing of a rejected message is merged");
    assert!(h.published().is_empty(), "nor relayed");
    // The stranger's token taken for the rejected message was given back.
    assert_eq!(h.engine.gossip(&envelope(&[&strangers])), GossipVerdict::Accept);
}

#[test]
fn a_skipped_sighting_does_not_drop_its_envelope_mates() {
    let mut h = Harness::new(config(Identity::from_secret([3; 32])));
    let now = now_ms();
    let fresh = record(&trusted(), "192.0.2.1", now, 600);
    let expired = record(&trusted(), "192.0.2.2", now - 20_000, 10);
    assert_eq!(h.engine.gossip(&envelope(&[&fresh, &expired])), GossipVerdict::Ignore);
    assert!(h.holds(&fresh));
    assert!(h.engine.check(&fresh.sighting().target).blocked);
    let published = h.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].sightings, vec![fresh.to_proto()]);
}

#[test]
fn records_outside_local_limits_are_relayed_not_stored_and_retractions_always_land() {
    let mut cfg = config(Identity::from_secret([3; 32]));
    cfg.limits.max_ttl_s = 86_400;
    cfg.limits.bounds.min_v4_len = 24;
    let mut h = Harness::new(cfg);
    let now = now_ms();
    let t = trusted();
    let long = record(&t, "192.0.2.1", now, 3 * 86_400);
    let broad = record(&t, "10.16.0.0/20", now, 600);
    let ok = record(&t, "192.0.2.3", now, 600);
    assert_eq!(
        h.engine.gossip(&envelope(&[&long, &broad, &ok])),
        GossipVerdict::Accept,
        "valid on the wire: the whole message is relayed"
    );
    assert!(!h.holds(&long) && !h.holds(&broad));
    assert!(h.holds(&ok));
    assert_eq!(
        h.metric(
            "fraudmesh_sightings_rejected_total",
            &[("reason", "outside_local_limits")]
        ),
        2.0
    );
    // The same records again: remembered as relayed, dropped as duplicates.
    assert_eq!(h.engine.gossip(&envelope(&[&long, &broad])), GossipVerdict::Ignore);
    assert_eq!(h.metric("fraudmesh_sightings_duplicate_total", &[]), 2.0);
    // A retraction signed with a TTL above this node's max_ttl still lands.
    let retract = record_of(&t, "192.0.2.3", now + 1, 3 * 86_400, Kind::Retract);
    assert_eq!(h.engine.gossip(&envelope(&[&retract])), GossipVerdict::Accept);
    assert!(h.holds(&retract));
    assert!(!h.engine.check(&ok.sighting().target).blocked);
}

#[test]
fn over_the_protocol_bounds_blames_the_sender() {
    let mut h = Harness::new(config(Identity::from_secret([3; 32])));
    let now = now_ms();
    let too_long = record(&trusted(), "192.0.2.1", now, 31 * 86_400);
    assert_eq!(h.engine.gossip(&envelope(&[&too_long])), GossipVerdict::Reject);
}

// ---- the strangers' quota ----

#[test]
fn the_per_stranger_cap_holds_within_one_batch_and_relaying_does_not_depend_on_storage() {
    let mut h = Harness::new(with_strangers(0.0, 100, 3, 100));
    let s = stranger(1);
    let now = now_ms();
    let records: Vec<Record> = (0..10).map(|i| record(&s, &format!("192.0.2.{i}"), now, 600)).collect();
    let refs: Vec<&Record> = records.iter().collect();
    assert_eq!(
        h.engine.gossip(&envelope(&refs)),
        GossipVerdict::Accept,
        "every record is verified and within rate: all relayed"
    );
    assert_eq!(h.engine.stranger_records(), 3, "no overshoot within the batch");
    assert_eq!(h.engine.records(), 3);
    assert_eq!(
        h.metric("fraudmesh_sightings_rejected_total", &[("reason", "stranger_records")]),
        7.0
    );
}

#[test]
fn a_newcomer_evicts_the_oldest_record_of_the_most_prolific_stranger() {
    let mut h = Harness::new(with_strangers(0.0, 100, 100, 4));
    let now = now_ms();
    let (x, y) = (stranger(1), stranger(2));
    let xs: Vec<Record> = (0..4)
        .map(|i| record(&x, &format!("192.0.2.{i}"), now - 1000 + i, 600))
        .collect();
    assert_eq!(
        h.engine.gossip(&envelope(&xs.iter().collect::<Vec<_>>())),
        GossipVerdict::Accept
    );
    h.engine.flush().unwrap();
    assert!(h.stored(&xs[0]));
    let newcomer = record(&y, "198.51.100.1", now, 600);
    assert_eq!(h.engine.gossip(&envelope(&[&newcomer])), GossipVerdict::Accept);
    h.engine.flush().unwrap();
    assert!(h.holds(&newcomer) && h.stored(&newcomer));
    assert!(!h.holds(&xs[0]), "X's oldest record left the ledger");
    assert!(!h.stored(&xs[0]), "and the store");
    assert!(xs[1..].iter().all(|r| h.holds(r)));
    assert_eq!(h.engine.stranger_records(), 4);
    assert_eq!(h.metric("fraudmesh_stranger_evictions_total", &[]), 1.0);
    // The evicted record arriving again is a duplicate, not a newcomer.
    assert_eq!(h.engine.gossip(&envelope(&[&xs[0]])), GossipVerdict::Ignore);
    assert!(!h.holds(&xs[0]));
}

#[test]
fn a_flood_of_fresh_keys_never_displaces_trusted_records() {
    let mut h = Harness::new(with_strangers(0.0, 5, 5, 50));
    let now = now_ms();
    let mut trusted_records = Vec::new();
    for k in 0..40u32 {
        let s = stranger(k);
        let flood: Vec<Record> = (0..5).map(|i| record(&s, &format!("10.{k}.0.{i}"), now, 600)).collect();
        assert_eq!(
            h.engine.gossip(&envelope(&flood.iter().collect::<Vec<_>>())),
            GossipVerdict::Accept
        );
        let r = record(&trusted(), &format!("192.0.2.{k}"), now, 600);
        assert_eq!(h.engine.gossip(&envelope(&[&r])), GossipVerdict::Accept);
        trusted_records.push(r);
        assert!(h.engine.stranger_records() <= 50);
    }
    assert!(trusted_records.iter().all(|r| h.holds(r)));
    assert_eq!(h.engine.records(), 40 + 50);
    // Shares converged: 40 strangers in 50 places, nobody above 2.
    assert!((0..40).all(|k| h.engine.quota.count_of(&stranger(k).public()) <= 2));
}

// ---- local reports and the store ----

fn draft(target: &str) -> Draft {
    Draft {
        target: Target::parse(target, Bounds::default()).unwrap(),
        kind: Kind::Manual,
        observed_at: now_ms(),
        ttl_s: 600,
        count: 1,
        evidence: Evidence::default(),
    }
}

/// Sends a report command through the engine's command path and waits for its answer.
fn report_command(engine: &mut Engine, drafts: Vec<Draft>) -> anyhow::Result<Vec<Record>> {
    let (reply, mut rx) = tokio::sync::oneshot::channel();
    engine.handle(Command::Report { drafts, reply });
    loop {
        match rx.try_recv() {
            Ok(r) => return r,
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => std::thread::yield_now(),
            Err(e) => panic!("no answer: {e}"),
        }
    }
}

#[test]
fn own_reports_are_published_only_after_a_successful_flush() {
    let mut h = Harness::new(config(Identity::from_secret([3; 32])));
    h.store.fail_puts.store(true, Ordering::SeqCst);
    let err = report_command(&mut h.engine, vec![draft("192.0.2.1")]).unwrap_err();
    assert!(format!("{err:#}").contains("disk full"), "{err:#}");
    assert!(h.engine.report(vec![draft("192.0.2.2")]).is_err());
    assert!(h.published().is_empty(), "a failed flush publishes nothing");
    h.store.fail_puts.store(false, Ordering::SeqCst);
    let out = report_command(&mut h.engine, vec![draft("192.0.2.3")]).unwrap();
    let published = h.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].sightings, vec![out[0].to_proto()]);
    // The earlier records were kept and written by the retry, just never published.
    let me = Identity::from_secret([3; 32]).public();
    for t in ["192.0.2.1", "192.0.2.2"] {
        assert!(h.store.has(&me, &Target::parse(t, Bounds::default()).unwrap()));
    }
}

#[test]
fn a_failed_gossip_write_is_not_forgotten_and_does_not_fail_a_later_report_once_written() {
    let mut h = Harness::new(config(Identity::from_secret([3; 32])));
    let now = now_ms();
    h.store.fail_puts.store(true, Ordering::SeqCst);
    let r = record(&trusted(), "192.0.2.1", now, 600);
    assert_eq!(h.engine.gossip(&envelope(&[&r])), GossipVerdict::Accept);
    // While the disk refuses, every flush covering the write says so.
    assert!(h.engine.flush().is_err());
    h.store.fail_puts.store(false, Ordering::SeqCst);
    // The disk is back: the report's flush writes the gossip record first, and succeeds.
    report_command(&mut h.engine, vec![draft("192.0.2.9")]).unwrap();
    assert!(h.stored(&r), "the failed write was retried");
    assert_eq!(h.metric("fraudmesh_store_unwritten_records", &[]), 0.0);
    assert!(h.metric("fraudmesh_store_write_errors_total", &[]) >= 1.0);
}

#[test]
fn a_local_record_supersedes_the_previous_one_within_the_same_millisecond() {
    let mut h = Harness::new(config(Identity::from_secret([4; 32])));
    let target = Target::parse("192.0.2.9", Bounds::default()).unwrap();
    let now = now_ms();
    let mut d = draft("192.0.2.9");
    d.observed_at = now;
    h.engine.report(vec![d]).unwrap();
    assert!(h.engine.check(&target).blocked);
    h.engine.report(vec![retraction(target.clone(), now, 3600)]).unwrap();
    assert!(
        !h.engine.check(&target).blocked,
        "the retraction wins even at the same ms"
    );
}

// ---- sync ----

#[test]
fn fetch_finds_records_by_id_and_never_gives_one_not_asked_for() {
    let mut h = Harness::new(config(Identity::from_secret([3; 32])));
    let now = now_ms();
    let t = trusted();
    let (a, b) = (record(&t, "192.0.2.1", now, 600), record(&t, "192.0.2.2", now, 600));
    h.engine.gossip(&envelope(&[&a, &b]));
    h.engine.flush().unwrap();
    let got = h.engine.fetch(vec![*b.id(), [7; 32], *a.id(), *b.id()]);
    assert_eq!(
        got.sightings,
        vec![b.to_proto(), a.to_proto()],
        "in asked order, once each"
    );
    // Endorsements are found by id too, in the same request.
    let e = endorsed(&org(), &stranger(1), now, endorsement::DEFAULT_TTL_MS);
    h.engine.gossip(&endorsements_envelope(&[&e], &[]));
    let got = h.engine.fetch(vec![*e.id(), *a.id()]);
    assert_eq!(got.sightings, vec![a.to_proto()]);
    assert_eq!(got.endorsements, vec![e.to_proto()]);
    // A newer record of A's key is merged but not yet on disk: neither id is answered
    // with the other's bytes.
    let newer = record(&t, "192.0.2.1", now + 1, 600);
    h.store.fail_puts.store(true, Ordering::SeqCst);
    h.engine.gossip(&envelope(&[&newer]));
    let _ = h.engine.flush();
    assert!(h.engine.fetch(vec![*newer.id(), *a.id()]).is_empty());
}

#[test]
fn the_reconciliation_set_is_rebuilt_at_most_once_per_interval() {
    let mut h = Harness::new(config(Identity::from_secret([3; 32])));
    let now = now_ms();
    let a = record(&trusted(), "192.0.2.1", now, 600);
    h.engine.gossip(&envelope(&[&a]));
    let first = h.engine.sync_items();
    assert_eq!(*first, vec![(now, *a.id())]);
    let b = record(&trusted(), "192.0.2.2", now, 600);
    h.engine.gossip(&envelope(&[&b]));
    // Built "just now" (in the future, so no clock can make it due): served as it was.
    h.engine.sync_items_built = Some(Instant::now() + Duration::from_secs(3600));
    assert!(Arc::ptr_eq(&first, &h.engine.sync_items()));
    // Once the interval has passed, the change shows.
    h.engine.sync_items_built = Instant::now().checked_sub(SYNC_ITEMS_REFRESH);
    assert_eq!(h.engine.sync_items().len(), 2);
    // No change since: the same set, however much time passes.
    h.engine.sync_items_built = Instant::now().checked_sub(SYNC_ITEMS_REFRESH);
    let again = h.engine.sync_items();
    assert!(Arc::ptr_eq(&again, &h.engine.sync_items()));
}

// ---- endorsements ----

/// The organisation these tests' nodes trust (at [`FULL`], see [`config`]).
fn org() -> Identity {
    Identity::from_secret([70; 32])
}

/// An organisation nobody here trusts.
fn other_org() -> Identity {
    Identity::from_secret([71; 32])
}

fn endorsed(org: &Identity, member: &Identity, issued_at: Millis, ttl_ms: Millis) -> EndorsementRecord {
    endorsement::endorse(org, member.public(), "pbx-baden-01", issued_at, ttl_ms).unwrap()
}

fn endorsements_envelope(records: &[&EndorsementRecord], sightings: &[&Record]) -> Vec<u8> {
    proto::Envelope {
        sightings: sightings.iter().map(|r| r.to_proto()).collect(),
        endorsements: records.iter().map(|r| r.to_proto()).collect(),
    }
    .encode_to_vec()
}

impl Harness {
    /// Whether `target` is in the decided set (what enforcers follow).
    fn decided(&self, target: &Target) -> bool {
        self.engine.decisions.get(target).is_some()
    }

    /// Entries of a table in the store (after a flush).
    fn table_len(&mut self, table: Table) -> usize {
        self.engine.flush().unwrap();
        self.store
            .tables
            .lock()
            .unwrap()
            .keys()
            .filter(|(t, _)| *t == table)
            .count()
    }
}

#[test]
fn an_endorsement_from_gossip_makes_a_members_sightings_count_and_a_revocation_lifts_them_at_once() {
    let mut h = Harness::new(config(Identity::from_secret([3; 32])));
    let now = now_ms();
    let member = stranger(7);
    let s = record(&member, "192.0.2.9", now, 600);
    let target = s.sighting().target.clone();
    assert_eq!(h.engine.gossip(&envelope(&[&s])), GossipVerdict::Accept);
    assert!(!h.decided(&target), "a stranger's sighting never blocks");
    assert_eq!(h.engine.stranger_records(), 1);

    let e = endorsed(&org(), &member, now, endorsement::DEFAULT_TTL_MS);
    assert_eq!(
        h.engine.gossip(&endorsements_envelope(&[&e], &[])),
        GossipVerdict::Accept
    );
    h.engine.tick();
    assert!(h.decided(&target), "the member's existing sighting counts at once");
    assert_eq!(h.engine.stranger_records(), 0, "and leaves the strangers' quota");
    assert_eq!(h.table_len(Table::Endorsements), 1, "stored");
    assert_eq!(h.metric("fraudmesh_endorsements", &[("state", "active")]), 1.0);

    let r = endorsement::revoke(&org(), member.public(), now + 1).unwrap();
    assert_eq!(
        h.engine.gossip(&endorsements_envelope(&[&r], &[])),
        GossipVerdict::Accept
    );
    h.engine.tick();
    assert!(!h.decided(&target), "lifted at the next tick");
    assert!(!h.engine.check(&target).blocked);
    assert_eq!(h.engine.stranger_records(), 1, "a stranger again, in the quota again");
    assert_eq!(
        h.table_len(Table::Endorsements),
        1,
        "the revocation replaced the endorsement"
    );
    assert_eq!(h.metric("fraudmesh_endorsements", &[("state", "revoked")]), 1.0);
    assert_eq!(
        h.metric("fraudmesh_endorsements_received_total", &[("verdict", "merged")]),
        2.0
    );
    // The endorsement, older than the revocation, comes again (another peer): a duplicate
    // of nothing held, superseded, and nothing changes.
    let mut h2 = Harness::new(config(Identity::from_secret([3; 32])));
    assert_eq!(
        h2.engine.gossip(&endorsements_envelope(&[&r], &[&s])),
        GossipVerdict::Accept
    );
    assert_eq!(
        h2.engine.gossip(&endorsements_envelope(&[&e], &[])),
        GossipVerdict::Accept
    );
    h2.engine.tick();
    assert!(
        !h2.decided(&target),
        "a revocation outlives the endorsement it withdraws"
    );
}

#[test]
fn a_member_endorsed_in_the_same_message_as_its_sighting_counts() {
    let mut h = Harness::new(config(Identity::from_secret([3; 32])));
    let now = now_ms();
    let member = stranger(8);
    let s = record(&member, "192.0.2.10", now, 600);
    let e = endorsed(&org(), &member, now, endorsement::DEFAULT_TTL_MS);
    assert_eq!(
        h.engine.gossip(&endorsements_envelope(&[&e], &[&s])),
        GossipVerdict::Accept
    );
    assert!(h.decided(&s.sighting().target), "decided as trusted on arrival");
    assert_eq!(h.engine.stranger_records(), 0);
}

#[test]
fn an_untrusted_organisations_endorsement_is_relayed_but_stored_nowhere() {
    let mut h = Harness::new(config(Identity::from_secret([3; 32])));
    let now = now_ms();
    let member = stranger(9);
    let s = record(&member, "192.0.2.11", now, 600);
    let e = endorsed(&other_org(), &member, now, endorsement::DEFAULT_TTL_MS);
    assert_eq!(
        h.engine.gossip(&endorsements_envelope(&[&e], &[&s])),
        GossipVerdict::Accept,
        "valid: forwarded, whatever this node trusts"
    );
    h.engine.tick();
    assert!(!h.decided(&s.sighting().target));
    assert!(h.engine.policy.roster().is_empty());
    assert_eq!(h.table_len(Table::Endorsements), 0);
    // Sync does not serve it either, and it comes again as a duplicate.
    assert!(h.engine.fetch(vec![*e.id()]).endorsements.is_empty());
    assert_eq!(
        h.engine.gossip(&endorsements_envelope(&[&e], &[])),
        GossipVerdict::Ignore
    );
    assert_eq!(
        h.metric("fraudmesh_endorsements_received_total", &[("verdict", "untrusted_org")]),
        1.0
    );
    assert_eq!(
        h.metric("fraudmesh_endorsements_received_total", &[("verdict", "duplicate")]),
        1.0
    );
}

#[test]
fn a_forged_endorsement_rejects_its_whole_message() {
    let mut h = Harness::new(config(Identity::from_secret([3; 32])));
    let now = now_ms();
    let member = stranger(10);
    let good = record(&trusted(), "192.0.2.12", now, 600);
    let valid = endorsed(&org(), &member, now, endorsement::DEFAULT_TTL_MS);
    let mut forged = endorsed(&org(), &stranger(11), now, endorsement::DEFAULT_TTL_MS).to_proto();
    let mut sig = forged.signature.to_vec();
    sig[5] ^= 1;
    forged.signature = sig.into();
    let data = proto::Envelope {
        sightings: vec![good.to_proto()],
        endorsements: vec![valid.to_proto(), forged],
    }
    .encode_to_vec();
    assert_eq!(h.engine.gossip(&data), GossipVerdict::Reject);
    assert_eq!(h.engine.records(), 0, "nothing of a rejected message is merged");
    assert!(h.engine.policy.roster().is_empty());
    assert!(h.published().is_empty(), "nor relayed");
    // The same through sync: the peer is at fault.
    let data = proto::Envelope::decode(data.as_slice()).unwrap();
    assert_eq!(
        h.engine.ingest(&data.sightings, &data.endorsements, "sync"),
        GossipVerdict::Reject
    );
    assert!(h.engine.policy.roster().is_empty());
}

#[test]
fn an_expired_endorsement_is_skipped_without_blame() {
    let mut h = Harness::new(config(Identity::from_secret([3; 32])));
    let now = now_ms();
    let member = stranger(12);
    let s = record(&member, "192.0.2.13", now, 600);
    let e = endorsed(&org(), &member, now - 20_000, 10_000);
    assert_eq!(
        h.engine.gossip(&endorsements_envelope(&[&e], &[&s])),
        GossipVerdict::Ignore,
        "not relayed, not blamed; its envelope mate lands"
    );
    h.engine.tick();
    assert!(h.holds(&s));
    assert!(!h.decided(&s.sighting().target), "the member stays a stranger");
    assert!(h.engine.policy.roster().is_empty());
    let published = h.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].sightings, vec![s.to_proto()]);
    assert!(published[0].endorsements.is_empty());
}

#[test]
fn a_block_through_an_endorsement_ends_when_it_expires_and_the_member_becomes_a_stranger() {
    let mut h = Harness::new(config(Identity::from_secret([3; 32])));
    let now = now_ms();
    let member = stranger(16);
    let s = record(&member, "192.0.2.16", now, 600);
    let e = endorsed(&org(), &member, now, 300);
    assert_eq!(
        h.engine.gossip(&endorsements_envelope(&[&e], &[&s])),
        GossipVerdict::Accept
    );
    assert!(h.decided(&s.sighting().target));
    assert_eq!(h.engine.stranger_records(), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while now_ms() <= e.endorsement().expires_at {
        assert!(Instant::now() < deadline, "the clock did not pass the expiry");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The block ends at the endorsement's expiry through the decision log (no GC needed).
    h.engine.tick();
    assert!(!h.decided(&s.sighting().target), "lifted when the endorsement expired");
    // The next garbage collection moves the lapsed member's records into the quota; the
    // record stays in the roster (inactive) as the roster's retention says.
    h.engine.last_gc = Instant::now().checked_sub(GC_INTERVAL).unwrap();
    h.engine.tick();
    assert_eq!(h.engine.stranger_records(), 1);
    assert_eq!(h.engine.policy.roster().len(), 1);
    assert_eq!(h.metric("fraudmesh_endorsements", &[("state", "expired")]), 1.0);
    assert_eq!(h.metric("fraudmesh_endorsements", &[("state", "active")]), 0.0);
}

#[test]
fn endorsements_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let me = Identity::from_secret([3; 32]);
    let now = now_ms();
    let member = stranger(13);
    let s = record(&member, "192.0.2.14", now, 600);
    let e = endorsed(&org(), &member, now, endorsement::DEFAULT_TTL_MS);
    // One that expires while the node is down (kept inactive: the roster's rule), and one
    // of an organisation this node no longer trusts (dropped from disk at start).
    let lapsed = endorsed(&org(), &stranger(14), now - 20_000, 10_000);
    let foreign = endorsed(&other_org(), &stranger(15), now, endorsement::DEFAULT_TTL_MS);
    let lapsed_s = record(&stranger(14), "192.0.2.15", now, 600);
    {
        let store = SledStore::open(tmp.path(), 1 << 20).unwrap();
        let row = |r: &EndorsementRecord| {
            let e = r.endorsement();
            (
                [e.org.as_bytes().as_slice(), e.member.as_bytes()].concat(),
                Some(r.encode()),
            )
        };
        store
            .table_write(Table::Endorsements, &[row(&lapsed), row(&foreign)])
            .unwrap();
        let (tx, _rx) = mpsc::channel(16);
        let mut engine = Engine::new(
            config(Identity::from_secret([3; 32])),
            Box::new(store),
            Arc::default(),
            tx,
        )
        .unwrap();
        assert_eq!(
            engine.gossip(&endorsements_envelope(&[&e], &[&s, &lapsed_s])),
            GossipVerdict::Accept
        );
        engine.flush().unwrap();
    }
    let store = SledStore::open(tmp.path(), 1 << 20).unwrap();
    let (tx, _rx) = mpsc::channel(16);
    let mut engine = Engine::new(config(me), Box::new(store), Arc::default(), tx).unwrap();
    assert_eq!(engine.policy.roster().len(), 2, "the live and the lapsed endorsement");
    assert!(
        engine.decisions.get(&s.sighting().target).is_some(),
        "the member is trusted at start"
    );
    assert!(
        engine.decisions.get(&lapsed_s.sighting().target).is_none(),
        "a lapsed member is a stranger"
    );
    assert_eq!(engine.stranger_records(), 1);
    assert_eq!(
        engine.fetch(vec![*e.id()]).endorsements,
        vec![e.to_proto()],
        "and served to sync"
    );
    let items = engine.sync_items();
    assert!(items.iter().any(|(_, id)| id == e.id()));
    assert!(!items.iter().any(|(_, id)| id == lapsed.id()), "expired: not offered");
    engine.flush().unwrap();
    drop(engine);
    let store = SledStore::open(tmp.path(), 1 << 20).unwrap();
    let mut left = 0;
    store.table_scan(Table::Endorsements, &mut |_| left += 1).unwrap();
    assert_eq!(
        left, 2,
        "the untrusted organisation's record was removed from disk at start"
    );
}

#[test]
fn the_operators_endorsements_are_checked_all_first_and_refused_clearly() {
    let mut h = Harness::new(config(Identity::from_secret([3; 32])));
    let now = now_ms();
    let member = stranger(15);
    let s = record(&member, "192.0.2.15", now, 600);
    assert_eq!(h.engine.gossip(&envelope(&[&s])), GossipVerdict::Accept);
    let good = endorsed(&org(), &member, now, endorsement::DEFAULT_TTL_MS);
    let foreign = endorsed(&other_org(), &member, now, endorsement::DEFAULT_TTL_MS);
    let err = h.engine.endorse_local(vec![good.clone(), foreign]).unwrap_err();
    assert_eq!(
        err,
        EndorseError::UntrustedOrg {
            org: other_org().public()
        }
    );
    assert!(err.is_bad_input());
    assert!(h.engine.policy.roster().is_empty(), "nothing of the call changed");
    // A revocation by the wrong organisation key: nothing to revoke.
    let wrong = endorsement::revoke(&other_org(), member.public(), now).unwrap();
    assert!(matches!(
        h.engine.endorse_local(vec![wrong]),
        Err(EndorseError::UntrustedOrg { .. })
    ));
    let early = endorsement::revoke(&org(), member.public(), now).unwrap();
    assert_eq!(
        h.engine.endorse_local(vec![early]).unwrap_err(),
        EndorseError::NothingToRevoke {
            org: org().public(),
            member: member.public()
        }
    );
    let (out, envelopes) = h.engine.endorse_local(vec![good.clone()]).unwrap();
    assert!(out[0].changed);
    assert_eq!(envelopes.len(), 1);
    assert!(h.decided(&s.sighting().target), "decided again before the answer");
    let (again, envelopes) = h.engine.endorse_local(vec![good]).unwrap();
    assert!(
        !again[0].changed && envelopes.is_empty(),
        "held already: nothing published"
    );
    let revoke = endorsement::revoke(&org(), member.public(), now + 1).unwrap();
    let (out, _) = h.engine.endorse_local(vec![revoke]).unwrap();
    assert!(out[0].changed);
    assert!(!h.decided(&s.sighting().target));
    let infos = h.engine.endorsement_infos();
    assert_eq!(infos.len(), 1);
    assert!(!infos[0].active);
    assert_eq!(infos[0].org_name, "acme");
}

#[test]
fn an_endorsement_is_acknowledged_and_published_only_once_durable() {
    let mut h = Harness::new(config(Identity::from_secret([3; 32])));
    let now = now_ms();
    let e = endorsed(&org(), &stranger(17), now, endorsement::DEFAULT_TTL_MS);
    h.store.fail_tables.store(true, Ordering::SeqCst);
    let (reply, rx) = tokio::sync::oneshot::channel();
    h.engine.handle(Command::Endorse {
        records: vec![e.clone()],
        reply,
    });
    let answer = rx.blocking_recv().expect("an answer");
    assert!(
        matches!(&answer, Err(EndorseError::Store(m)) if m.contains("disk full")),
        "{answer:?}"
    );
    assert!(h.published().is_empty(), "not durable: not published");
    // The write is kept and retried: once the disk recovers, a flush makes it durable.
    h.store.fail_tables.store(false, Ordering::SeqCst);
    assert_eq!(h.table_len(Table::Endorsements), 1);
    // An allow is acknowledged only once flushed too.
    let (reply, rx) = tokio::sync::oneshot::channel();
    h.engine.handle(Command::Allow {
        target: Target::parse("192.0.2.30", Bounds::default()).unwrap(),
        until: None,
        reason: "known customer".into(),
        reply,
    });
    assert!(rx.blocking_recv().expect("an answer").is_ok());
    assert_eq!(
        h.store
            .tables
            .lock()
            .unwrap()
            .keys()
            .filter(|(t, _)| *t == Table::Allows)
            .count(),
        1
    );
}

// ---- allows and reputation ----

#[test]
fn an_allow_overrides_a_block_persists_and_penalises_the_reporter() {
    let tmp = tempfile::tempdir().unwrap();
    let me = Identity::from_secret([3; 32]);
    let now = now_ms();
    let peer = record(&trusted(), "192.0.2.20", now, 3600);
    let target = peer.sighting().target.clone();
    let prefix = Target::parse("192.0.2.0/24", Bounds::default()).unwrap();
    let metrics = Arc::new(Metrics::new());
    let start = |tmp: &std::path::Path| {
        let store = SledStore::open(tmp, 1 << 20).unwrap();
        let (tx, rx) = mpsc::channel(16);
        (
            Engine::new(
                config(Identity::from_secret([3; 32])),
                Box::new(store),
                metrics.clone(),
                tx,
            )
            .unwrap(),
            rx,
        )
    };
    {
        let (mut engine, _rx) = start(tmp.path());
        assert_eq!(engine.gossip(&envelope(&[&peer])), GossipVerdict::Accept);
        engine.report(vec![draft("192.0.2.20")]).unwrap();
        assert!(engine.decisions.get(&target).is_some());
        assert_eq!(
            engine.allow_local(prefix.clone(), None, " ".into()).unwrap_err(),
            AllowError::NoReason
        );
        let allowed = engine
            .allow_local(prefix.clone(), None, "our customer's PBX range".into())
            .unwrap();
        assert_eq!(allowed.penalised, vec![trusted().public()], "never this node itself");
        assert!(engine.decisions.get(&target).is_none(), "the allow wins over the mesh");
        assert!(!engine.check(&target).blocked);
        assert!(engine.policy.reputation_of(&trusted().public(), now_ms()) < FULL);
        let renewed = engine.allow_local(prefix.clone(), None, "renewed".into()).unwrap();
        assert!(renewed.penalised.is_empty(), "renewing penalises nobody again");
        let explained = engine.explain(&target);
        assert!(!explained.blocked);
        assert!(explained.targets[0].explanation.allowed.is_some());
        assert_eq!(explained.targets[0].evidence.len(), 2);
        engine.flush().unwrap();
        let _ = me;
    }
    let (mut engine, _rx) = start(tmp.path());
    assert_eq!(engine.allows().len(), 1, "the allow persisted");
    assert_eq!(engine.allows()[0].1.reason, "renewed");
    assert!(engine.decisions.get(&target).is_none());
    let rep = engine.policy.reputation_of(&trusted().public(), now_ms());
    assert!(rep < FULL, "the penalty persisted: {rep}");
    let scrape = Scrape::parse(&metrics.encode());
    let shown = scrape
        .value(
            "fraudmesh_reporter_reputation",
            &[("reporter", trusted().public().peer_id().as_str())],
        )
        .unwrap();
    assert!((shown - f64::from(rep) / 1000.0).abs() < 0.01, "shown {shown}");
    assert_eq!(scrape.value("fraudmesh_allows", &[]), Some(1.0));
    assert!(engine.unallow_local(&prefix));
    assert!(!engine.unallow_local(&prefix), "once");
    assert!(
        engine.decisions.get(&target).is_some(),
        "blocked again by this node's own report"
    );
    engine.flush().unwrap();
    drop(engine);
    let (engine, _rx) = start(tmp.path());
    assert!(engine.allows().is_empty(), "the unallow persisted");
}

#[test]
fn an_allow_ends_at_its_time() {
    let mut h = Harness::new(config(Identity::from_secret([3; 32])));
    let now = now_ms();
    // This node's own report: it is never penalised, so the block comes back in full.
    let own = h.engine.report(vec![draft("192.0.2.21")]).unwrap();
    let target = own[0].sighting().target.clone();
    assert!(matches!(
        h.engine.allow_local(target.clone(), Some(now - 1), "late".into()),
        Err(AllowError::UntilPassed { .. })
    ));
    let allowed = h
        .engine
        .allow_local(target.clone(), Some(now + 200), "for a moment".into())
        .unwrap();
    assert!(allowed.penalised.is_empty());
    assert!(!h.decided(&target));
    assert_eq!(h.table_len(Table::Allows), 1);
    assert_eq!(h.metric("fraudmesh_allows", &[]), 1.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while now_ms() <= now + 200 {
        assert!(Instant::now() < deadline, "the clock did not pass the allow's end");
        std::thread::sleep(Duration::from_millis(20));
    }
    h.engine.tick();
    assert!(h.decided(&target), "blocked again once the allow ended");
    assert_eq!(h.table_len(Table::Allows), 0);
}
