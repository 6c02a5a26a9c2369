//! The engine: the one owner of the ledger and the policy.
//!
//! It runs on its own OS thread (verification is CPU work), takes [`Command`]s from a
//! bounded channel (see `handle`), and answers through oneshot replies. Every received
//! sighting — from gossip or sync — passes the same path (`ingest.rs`, where the order
//! and the relay rules are written down): cheap checks, dedup by record id, the
//! stranger rate limit, batched signature verification, this node's own limits, the
//! strangers' fair-share quota, merge, re-decide the touched targets; then the store's
//! writer thread persists it (received sightings' changes are handed to it in batches:
//! see "Writes" below). Local reports are signed and merged, and published only
//! once the store flushed them. The decided set is published as an immutable
//! [`Blocklist`] snapshot swapped atomically, so hot-path lookups never wait.
//!
//! # Writes
//! Received sightings' changes are queued in the engine and handed to the writer at the
//! next tick (every 50 ms), when [`WRITE_BATCH`] of them are queued, and before
//! every flush, instead of one hand-over per gossip message: each hand-over wakes the
//! store thread, and in a steady wave of one sighting per message those wake-ups cost
//! more than the writes. Durability is unchanged where it is promised: a local report is
//! acknowledged only after a flush, and a flush always hands over everything queued
//! first (so it covers every change made before it, in order). Received sightings were
//! never acknowledged to anyone and sled only makes them durable every 500 ms anyway;
//! a crash now loses at most one tick more of them, which peers still hold and sync
//! brings back.
//!
//! Endorsements (`endorse.rs`) take the same receiving path as sightings, in the same
//! envelopes and sync sessions; the roster of the trusted organisations' records lives in
//! the policy, and a change to it decides the affected targets again at the next tick.
//! The operator's allows and the reporters' reputation (`overrides.rs`) are persistent
//! and loaded at start, like the roster.
//!
//! Work per request is bounded: dedup and sync fetches find records through the
//! ledger's id index (one lookup per id, never a scan), and the reconciliation set is
//! rebuilt at most once per [`SYNC_ITEMS_REFRESH`] — it may lag the ledger by that much,
//! which sync tolerates (a record merged meanwhile is found by the next session; one
//! dropped meanwhile is simply not found when fetched).

mod endorse;
mod ingest;
mod overrides;
mod recent;
pub mod store;

use crate::engine::recent::RecentIds;
use crate::engine::store::{Change, Store, Writer};
use crate::metrics::{Metrics, ReasonLabel, VerdictLabel};
use crate::now_ms;
use anyhow::Context;
use arc_swap::ArcSwap;
use fraudmesh::blocklist::{Blocklist, BlocklistBuilder};
use fraudmesh::decisions::DecisionLog;
use fraudmesh::identity::{Identity, KeyCache, PublicKey};
use fraudmesh::ledger::Ledger;
use fraudmesh::policy::Policy;
use fraudmesh::proto;
use fraudmesh::quota::Quota;
use fraudmesh::rate::RateLimiter;
use fraudmesh::sighting::{self, wire_id, AcceptLimits, Draft, Kind, Record, RecordId};
use fraudmesh::sync::Item;
use fraudmesh::target::Target;
use fraudmesh::Millis;
use prost::Message;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

mod handle;

pub use handle::{
    AllowError, Allowed, Check, Command, EndorseError, Endorsed, EndorsementInfo, EngineHandle, Explained, Fetched,
    GossipVerdict, Listed, Stats, TargetExplained, MAX_ENDORSE, MAX_REASON_BYTES,
};

/// Commands queued to the engine before senders wait.
pub const COMMAND_QUEUE: usize = 1024;
/// Largest gossip message accepted (also gossipsub's transmit limit).
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;
/// Most records (sightings and endorsements together) in one envelope.
pub const MAX_ENVELOPE_SIGHTINGS: usize = 256;
/// Most records one fetch looks up (and one sync request may want or give): 4096
/// records of about 210 bytes stay well inside a 4 MiB sync message.
pub const MAX_FETCH: usize = 4096;
/// Reporters' decompressed keys kept for verification.
const KEY_CACHE: usize = 100_000;
/// How often expired records are dropped from the ledger and the store.
const GC_INTERVAL: Duration = Duration::from_secs(10);
/// Changes of the decision log kept for consumers that ask "what changed since n?"
/// (one further behind gets the full list).
const DECISION_LOG: usize = 100_000;
/// Least time between two rebuilds of the blocklist snapshot.
const REBUILD_INTERVAL: Duration = Duration::from_millis(50);
/// And at least this many times the last rebuild's duration: a rebuild is O(blocked
/// targets), so with a large list the snapshot follows a burst of changes less often
/// instead of taking over the engine thread (at most about a twentieth of its time).
const REBUILD_SHARE: u32 = 20;
/// Least time between two rebuilds of the reconciliation set (a walk of the ledger and
/// a sort: about 0.1 s at a million records); the set served may be this much older
/// than the ledger.
pub const SYNC_ITEMS_REFRESH: Duration = Duration::from_secs(1);
/// Changes queued for the writer before they are handed over at once (see "Writes").
const WRITE_BATCH: usize = 512;
/// Ids of records relayed but not stored, remembered to drop them as duplicates when
/// they come again (32 bytes each, twice: about 4 MiB).
const RECENT_IDS: usize = 65_536;
/// Bounds on what strangers can make this node hold.
#[derive(Debug, Clone)]
pub struct StrangerBounds {
    /// Sightings per second from one stranger.
    pub rate: f64,
    /// Burst from one stranger.
    pub burst: u32,
    /// Active records per stranger (beyond it, its new records are refused).
    pub max_per_stranger: usize,
    /// Active records of all strangers (beyond it, a stranger holding fewer evicts the
    /// oldest record of the one holding most: see `fraudmesh::quota`).
    pub max_total: usize,
}

/// What the engine is built from.
pub struct EngineConfig {
    /// This node's signing identity.
    pub identity: Identity,
    /// The block policy.
    pub policy: Policy,
    /// Acceptance bounds.
    pub limits: AcceptLimits,
    /// Stranger bounds.
    pub strangers: StrangerBounds,
}

/// The engine's state, owned by its thread. Public so benchmarks can drive the exact
/// ingest path without threads; the node only ever uses it through [`start`].
pub struct Engine {
    identity: Identity,
    policy: Policy,
    /// This node's own acceptance bounds, applied after the signature: a record outside
    /// them is relayed but not stored, and never blamed on its sender.
    limits: AcceptLimits,
    rate: RateLimiter,
    keys: KeyCache,
    ledger: Ledger,
    /// The strangers' records held, with their fair shares.
    quota: Quota<PublicKey, QuotaKey>,
    /// Records relayed without being stored, to drop them as duplicates next time.
    recent: RecentIds,
    /// What is blocked (since and until; the details are decided again on demand:
    /// keeping every policy `Verdict` would cost more memory than the ledger) and the
    /// numbered log of its changes that enforcers and bouncers follow.
    decisions: DecisionLog,
    /// The head of `decisions`, for those waiting for changes.
    decisions_head: Arc<watch::Sender<u64>>,
    /// Reads (fetch, size); writes go through `writer`.
    store: Arc<dyn Store>,
    writer: Writer,
    /// Changes not yet handed to `writer`, in order (see "Writes" in the module doc).
    unwritten: Vec<Change>,
    metrics: Arc<Metrics>,
    blocklist: Arc<ArcSwap<Blocklist>>,
    publish: mpsc::Sender<Vec<u8>>,
    dirty: bool,
    /// The reconciliation set, rebuilt at most once per [`SYNC_ITEMS_REFRESH`].
    sync_items: Arc<Vec<Item>>,
    /// Whether the ledger changed since `sync_items` was built.
    sync_items_stale: bool,
    /// When `sync_items` was built (never: `None`).
    sync_items_built: Option<Instant>,
    last_rebuild: Instant,
    /// How long the last rebuild took.
    rebuild_cost: Duration,
    last_gc: Instant,
    /// The per-key rate limit of organisations this node does not trust (their
    /// endorsements are relayed, never stored: see `endorse.rs`).
    org_rate: RateLimiter,
    /// Members whose roster record changed since their records were last decided again
    /// (done at the next tick, or at once for a local change).
    roster_changed: HashSet<PublicKey>,
    /// When the garbage collection last looked for lapsed endorsements.
    roster_checked: Millis,
}

/// A stranger's record in the quota: `(observed_at, target)`, ordered by age, then target
/// (one stranger holds one record per target, so it names the record).
type QuotaKey = (Millis, Target);

/// The changes one batch makes: what the writer is to apply, in order, and the targets
/// to decide again.
#[derive(Default)]
struct Batch {
    changes: Vec<Change>,
    targets: Vec<Target>,
    /// Records merged (inserted or replacing an older one).
    merged: usize,
}

/// Loads the store into a ledger and starts the engine thread. Published envelopes go
/// to `publish` (the network task).
pub fn start(
    cfg: EngineConfig,
    store: Box<dyn Store>,
    metrics: Arc<Metrics>,
    publish: mpsc::Sender<Vec<u8>>,
) -> anyhow::Result<(EngineHandle, std::thread::JoinHandle<()>)> {
    let mut engine = Engine::new(cfg, store, metrics, publish)?;
    let (tx, mut rx) = mpsc::channel(COMMAND_QUEUE);
    let blocklist = engine.blocklist.clone();
    let decisions = engine.decisions_head.clone();
    let thread = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            crate::priority::background();
            while let Some(cmd) = rx.blocking_recv() {
                engine.handle(cmd);
            }
            // Dropping the engine drains and flushes the writer.
            drop(engine);
            tracing::debug!("engine stopped");
        })
        .context("starting the engine thread")?;
    Ok((
        EngineHandle {
            tx,
            blocklist,
            decisions,
        },
        thread,
    ))
}

/// What loading the store found.
#[derive(Default)]
struct Loaded {
    ledger: Ledger,
    /// Records that expired while the node was down.
    expired: Vec<(PublicKey, Target)>,
    /// Raw keys of entries that do not decode.
    corrupt: Vec<Vec<u8>>,
    /// Entries that could not be read at all.
    unreadable: usize,
}

impl Loaded {
    /// Reads every stored record; nothing read can stop the node from starting (a node
    /// that refuses to start protects nobody, and peers still hold what was lost: sync
    /// brings it back).
    fn read(store: &dyn Store, keys: &mut KeyCache, now: Millis) -> Self {
        let mut out = Self::default();
        let scanned = store.scan(&mut |entry| match entry {
            Ok((key, bytes)) => match Record::decode_stored(bytes, keys) {
                Ok(r) if r.sighting().is_active(now) => {
                    out.ledger.merge(&r);
                }
                Ok(r) => out.expired.push((r.sighting().reporter, r.sighting().target.clone())),
                Err(e) => {
                    tracing::debug!(error = %e, "a stored record does not decode");
                    // An empty key: a store without raw keys; nothing to remove.
                    if !key.is_empty() {
                        out.corrupt.push(key.to_vec());
                    }
                }
            },
            Err(e) => {
                out.unreadable += 1;
                tracing::debug!(error = %e, "a stored entry is unreadable");
            }
        });
        if let Err(e) = scanned {
            tracing::warn!(error = %e, "loading the store stopped early; starting with what was read");
        }
        out
    }
}

impl Engine {
    /// Restores the ledger from the store and decides everything once. Unreadable and
    /// corrupt entries are skipped and counted; corrupt and expired ones are removed.
    pub fn new(
        cfg: EngineConfig,
        store: Box<dyn Store>,
        metrics: Arc<Metrics>,
        publish: mpsc::Sender<Vec<u8>>,
    ) -> anyhow::Result<Self> {
        let now = now_ms();
        let store: Arc<dyn Store> = Arc::from(store);
        let mut keys = KeyCache::new(KEY_CACHE);
        let loaded = Loaded::read(&*store, &mut keys, now);
        // Records that expired while the node was down are collected now, or they would
        // stay on disk forever (the ledger never saw them); corrupt ones likewise.
        let cleaned = store
            .remove(&loaded.expired)
            .and_then(|()| store.remove_raw(&loaded.corrupt))
            .and_then(|()| store.flush());
        if let Err(e) = cleaned {
            tracing::warn!(error = %e, "removing expired and corrupt records failed; retried at the next start");
        }
        let (corrupt, unreadable) = (loaded.corrupt.len(), loaded.unreadable);
        for (reason, n) in [("corrupt", corrupt), ("unreadable", unreadable)] {
            if n > 0 {
                metrics
                    .store_load_skipped
                    .get_or_create(&ReasonLabel { reason })
                    .inc_by(n as u64);
            }
        }
        if corrupt + unreadable > 0 {
            tracing::warn!(
                corrupt,
                unreadable,
                "skipped stored records that could not be read; corrupt ones were removed"
            );
        }
        let mut engine = Engine {
            org_rate: RateLimiter::new(endorse::ORG_RATE, endorse::ORG_BURST),
            roster_changed: HashSet::new(),
            roster_checked: now,
            identity: cfg.identity,
            rate: RateLimiter::new(cfg.strangers.rate, cfg.strangers.burst),
            keys,
            policy: cfg.policy,
            limits: cfg.limits,
            ledger: loaded.ledger,
            quota: Quota::new(cfg.strangers.max_total, cfg.strangers.max_per_stranger),
            recent: RecentIds::new(RECENT_IDS),
            decisions: DecisionLog::new(DECISION_LOG),
            decisions_head: Arc::new(watch::channel(0).0),
            writer: Writer::start(store.clone(), metrics.clone())?,
            unwritten: Vec::new(),
            store,
            metrics,
            blocklist: Arc::new(ArcSwap::from_pointee(Blocklist::default())),
            publish,
            dirty: true,
            sync_items: Arc::default(),
            sync_items_stale: true,
            sync_items_built: None,
            last_rebuild: Instant::now(),
            rebuild_cost: Duration::ZERO,
            last_gc: Instant::now(),
        };
        // The roster first: who is a stranger depends on it.
        engine.load_roster(now);
        engine.load_overrides(now);
        let dropped = engine.admit_loaded_strangers(now);
        tracing::info!(
            records = engine.ledger.len(),
            strangers = engine.quota.total(),
            expired = loaded.expired.len(),
            corrupt,
            unreadable,
            over_quota = dropped,
            "ledger restored from the store"
        );
        engine.decide_everything(now);
        engine.rebuild();
        Ok(engine)
    }

    /// Puts the strangers' records loaded from the store into the quota, oldest first;
    /// those the quota does not keep (its bounds were lowered) are dropped from the ledger
    /// and the store. Returns how many were dropped.
    fn admit_loaded_strangers(&mut self, now: Millis) -> usize {
        let strangers: Vec<(QuotaKey, PublicKey)> = self
            .ledger
            .by_target()
            .flat_map(|(t, entries)| {
                entries
                    .filter(|e| self.policy.is_stranger(e.reporter(), now))
                    .map(|e| ((e.observed_at(), t.clone()), *e.reporter()))
            })
            .collect();
        let dropped = self.admit_to_quota(strangers);
        self.hand_over_writes();
        dropped.len()
    }

    /// Admits strangers' records held in the ledger (not in the quota) to the quota,
    /// oldest first; those it evicts or refuses are dropped from the ledger and the store.
    /// Returns the targets of the dropped records.
    fn admit_to_quota(&mut self, mut strangers: Vec<(QuotaKey, PublicKey)>) -> Vec<Target> {
        strangers.sort_unstable();
        let mut drop = Vec::new();
        for (key, reporter) in strangers {
            let target = key.1.clone();
            match self.quota.admit(&reporter, key) {
                Ok(None) => {}
                Ok(Some((victim, (_, t)))) => drop.push((victim, t)),
                Err(_) => drop.push((reporter, target)),
            }
        }
        for (reporter, target) in &drop {
            if let Some(gone) = self.ledger.remove(reporter, target) {
                self.recent.insert(*gone.id());
            }
        }
        let targets = drop.iter().map(|(_, t)| t.clone()).collect();
        self.queue_writes(drop.into_iter().map(|(r, t)| Change::Remove(r, t)));
        targets
    }

    /// Makes everything stored so far durable, and waits for it.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.hand_over_writes();
        self.writer.flush_wait()
    }

    /// Queues changes for the writer, in order; hands them over once [`WRITE_BATCH`] are
    /// queued (else at the next tick or flush).
    pub(super) fn queue_writes(&mut self, changes: impl IntoIterator<Item = Change>) {
        self.unwritten.extend(changes);
        if self.unwritten.len() >= WRITE_BATCH {
            self.hand_over_writes();
        }
    }

    /// Hands every queued change to the writer (one wake-up of the store thread).
    fn hand_over_writes(&mut self) {
        if !self.unwritten.is_empty() {
            self.writer.apply(std::mem::take(&mut self.unwritten));
        }
    }

    /// Records held.
    pub fn records(&self) -> usize {
        self.ledger.len()
    }

    /// Records of strangers held.
    pub fn stranger_records(&self) -> usize {
        self.quota.total()
    }

    /// Reporters the stranger rate limiter tracks.
    pub fn rate_tracked(&self) -> usize {
        self.rate.tracked()
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Gossip { data, reply } => {
                let v = self.gossip(&data);
                self.metrics
                    .gossip
                    .get_or_create(&VerdictLabel { verdict: v.label() })
                    .inc();
                let _ = reply.send(v);
            }
            Command::Report { drafts, reply } => {
                // Acknowledged and published from the store thread once flushed; the
                // engine goes on. A failed flush publishes nothing.
                let out = self.sign_and_merge(drafts);
                let envelopes = envelopes(&out);
                let publish = self.publish.clone();
                // The flush covers everything queued so far, these records included.
                self.hand_over_writes();
                self.writer.flush_then(Box::new(move |r| {
                    let r = r.map(|()| {
                        publish_all(&publish, envelopes);
                        out
                    });
                    let _ = reply.send(r);
                }));
            }
            Command::Check { target, reply } => {
                let _ = reply.send(self.check(&target));
            }
            Command::List { reply } => {
                let now = now_ms();
                let list = self
                    .decisions
                    .active()
                    .map(|d| Listed {
                        target: d.target.clone(),
                        decision: self.policy.decide(&d.target, self.ledger.for_target(&d.target), now),
                        since: d.since,
                    })
                    .collect();
                let _ = reply.send(list);
            }
            Command::Stats { reply } => {
                let _ = reply.send(Stats {
                    records: self.ledger.len(),
                    blocked: self.decisions.len(),
                    store_bytes: self.store.size_on_disk(),
                });
            }
            Command::Ingest {
                sightings,
                endorsements,
                reply,
            } => {
                let v = self.ingest(&sightings, &endorsements, "sync");
                let _ = reply.send(v);
            }
            Command::Endorse { records, reply } => self.endorse_command(records, reply),
            Command::Endorsements { reply } => {
                let _ = reply.send(self.endorsement_infos());
            }
            Command::Explain { target, reply } => {
                let _ = reply.send(self.explain(&target));
            }
            Command::Allow {
                target,
                until,
                reason,
                reply,
            } => self.allow_command(target, until, reason, reply),
            Command::Unallow { target, reply } => self.unallow_command(target, reply),
            Command::Allows { reply } => {
                let _ = reply.send(self.allows());
            }
            Command::SyncItems { reply } => {
                let _ = reply.send(self.sync_items());
            }
            Command::Decisions { after, reply } => {
                let _ = reply.send(self.decisions.since(after));
            }
            Command::DecisionsFor { target, reply } => {
                let found = target
                    .covering()
                    .iter()
                    .filter_map(|t| self.decisions.get(t).cloned())
                    .collect();
                let _ = reply.send(found);
            }
            Command::Fetch { ids, reply } => {
                let _ = reply.send(self.fetch(ids));
            }
            Command::Tick => self.tick(),
        }
    }

    /// The reconciliation set: rebuilt when the ledger changed, at most once per
    /// [`SYNC_ITEMS_REFRESH`]; in between, the last one built.
    fn sync_items(&mut self) -> Arc<Vec<Item>> {
        let due = self.sync_items_built.is_none_or(|t| t.elapsed() >= SYNC_ITEMS_REFRESH);
        if self.sync_items_stale && due {
            let now = now_ms();
            let mut items = fraudmesh::sync::items(&self.ledger, now);
            // Endorsements share the set (their item is (issued_at, id)).
            items.extend(self.policy.roster().items(now));
            items.sort_unstable();
            items.dedup();
            self.sync_items = Arc::new(items);
            self.sync_items_stale = false;
            self.sync_items_built = Some(Instant::now());
        }
        self.sync_items.clone()
    }

    /// Signs and merges local sightings, and publishes them once durable.
    pub fn report(&mut self, drafts: Vec<Draft>) -> anyhow::Result<Vec<Record>> {
        let out = self.sign_and_merge(drafts);
        self.hand_over_writes();
        self.writer.flush_wait()?;
        publish_all(&self.publish, envelopes(&out));
        Ok(out)
    }

    /// Signs local drafts and merges them (queued for the store). The caller publishes
    /// and acknowledges them only after a successful flush.
    fn sign_and_merge(&mut self, drafts: Vec<Draft>) -> Vec<Record> {
        let now = now_ms();
        let me = self.identity.public();
        let records: Vec<Record> = drafts
            .into_iter()
            .map(|mut d| {
                // A new local record must supersede this node's older one of the same
                // target, even within the same millisecond (report, then retract).
                if let Some(held) = self.ledger.get(&me, &d.target) {
                    d.observed_at = d.observed_at.max(held.observed_at() + 1);
                }
                sighting::sign(&self.identity, d)
            })
            .collect();
        // Each is newer than this node's previous record of its target (see above); a
        // draft repeated within the batch merges idempotently.
        let mut batch = Batch::default();
        for r in &records {
            self.admit(r.clone(), now, "local", &mut batch);
        }
        self.commit(batch, now, "local");
        records
    }

    /// Looks records up by id: endorsements in the roster (held in memory), sightings
    /// through the ledger's id index, then read from the store. A sighting merged moments
    /// ago may still sit in the engine's or the writer's queue (the store then holds an
    /// older record of its key, or none) and is skipped: the peer gets it by gossip or its
    /// next session, and never a record it did not ask for.
    fn fetch(&self, ids: Vec<RecordId>) -> Fetched {
        let mut seen = HashSet::new();
        let mut out = Fetched::default();
        for id in ids.into_iter().take(MAX_FETCH) {
            if !seen.insert(id) {
                continue;
            }
            if let Some(e) = self.policy.roster().by_id(&id) {
                out.endorsements.push(e.to_proto());
                continue;
            }
            let Some((reporter, target)) = self.ledger.locate(&id) else {
                continue;
            };
            match self.store.get(reporter, target) {
                Ok(Some(bytes)) => match proto::SignedSighting::decode(bytes.as_slice()) {
                    Ok(s) if wire_id(&s) == id => out.sightings.push(s),
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "a stored record does not decode"),
                },
                Ok(None) => {}
                Err(err) => tracing::warn!(error = %err, "reading a stored record failed"),
            }
        }
        out
    }

    fn check(&self, target: &Target) -> Check {
        let now = now_ms();
        let mut matches = Vec::new();
        for t in target.covering() {
            let mut records = self.ledger.for_target(&t).peekable();
            // (Allowed targets decide as not blocked: `Verdict::allowed`.)
            if records.peek().is_some() {
                let d = self.policy.decide(&t, records, now);
                matches.push((t, d));
            }
        }
        Check {
            blocked: matches.iter().any(|(_, d)| d.blocked),
            matches,
        }
    }

    /// Decides `targets` again; those waiting on the decision log are woken once.
    fn redecide<'a>(&mut self, targets: impl IntoIterator<Item = &'a Target>, now: Millis) {
        let head = self.decisions.head();
        for target in targets {
            let d = self.policy.decide(target, self.ledger.for_target(target), now);
            let was_blocked = self.decisions.get(target).is_some();
            if self.decisions.set(target, d.until.filter(|_| d.blocked), now).is_some()
                && was_blocked != self.decisions.get(target).is_some()
            {
                self.dirty = true;
            }
        }
        if self.decisions.head() != head {
            self.decisions_head.send_replace(self.decisions.head());
            self.metrics.blocked.set(self.decisions.len() as i64);
        }
    }

    fn decide_everything(&mut self, now: Millis) {
        // Every target with records, and every target blocked now (its records may be
        // gone; deciding it again ends the block).
        let mut targets: Vec<Target> = self.ledger.by_target().map(|(t, _)| t.clone()).collect();
        targets.extend(self.decisions.active().map(|d| d.target.clone()));
        targets.sort_unstable();
        targets.dedup();
        self.redecide(&targets, now);
        self.metrics.records.set(self.ledger.len() as i64);
        self.metrics.stranger_records.set(self.quota.total() as i64);
        self.metrics.blocked.set(self.decisions.len() as i64);
    }

    fn tick(&mut self) {
        let now = now_ms();
        let due = self.decisions.due(now);
        self.redecide(&due, now);
        self.expire_allows(now);
        if self.last_gc.elapsed() >= GC_INTERVAL {
            self.last_gc = Instant::now();
            let gone = self.ledger.expire(now);
            if !gone.is_empty() {
                self.sync_items_stale = true;
                let mut keys = Vec::with_capacity(gone.len());
                for (t, e) in gone {
                    // Whatever the reporter is now: a record not in the quota is no-op.
                    self.quota.remove(e.reporter(), &(e.observed_at(), t.clone()));
                    keys.push((*e.reporter(), t));
                }
                tracing::debug!(expired = keys.len(), "expired records collected");
                self.queue_writes(keys.into_iter().map(|(r, t)| Change::Remove(r, t)));
                self.metrics.records.set(self.ledger.len() as i64);
                self.metrics.stranger_records.set(self.quota.total() as i64);
            }
            self.metrics.stranger_rate_tracked.set(self.rate.tracked() as i64);
            self.expire_roster(now);
            self.recover_reputation(now);
        }
        self.apply_roster_changes(now);
        self.hand_over_writes();
        self.rebuild_if_due();
    }

    /// Rebuilds the snapshot if the blocked set changed and the last rebuild is at least
    /// [`REBUILD_INTERVAL`] and [`REBUILD_SHARE`] times its own duration ago (otherwise a
    /// later merge or tick does: a burst costs one rebuild per interval).
    fn rebuild_if_due(&mut self) {
        let interval = REBUILD_INTERVAL.max(self.rebuild_cost * REBUILD_SHARE);
        if self.dirty && self.last_rebuild.elapsed() >= interval {
            self.rebuild();
        }
    }

    /// Publishes a fresh blocklist snapshot of the blocked set.
    pub fn rebuild(&mut self) {
        let started = Instant::now();
        let mut b = BlocklistBuilder::new();
        for d in self.decisions.active() {
            b.insert_target(&d.target);
        }
        self.blocklist.store(Arc::new(b.build()));
        self.dirty = false;
        self.last_rebuild = Instant::now();
        self.rebuild_cost = self.last_rebuild - started;
    }
}

impl Drop for Engine {
    /// Hands the queued changes to the writer, whose own drop then writes and flushes
    /// them: stopping the node loses nothing merged.
    fn drop(&mut self) {
        self.hand_over_writes();
    }
}

/// Local records as envelopes of at most [`MAX_ENVELOPE_SIGHTINGS`].
fn envelopes(records: &[Record]) -> Vec<Vec<u8>> {
    records
        .chunks(MAX_ENVELOPE_SIGHTINGS)
        .map(|chunk| {
            proto::Envelope {
                sightings: chunk.iter().map(Record::to_proto).collect(),
                endorsements: Vec::new(),
            }
            .encode_to_vec()
        })
        .collect()
}

/// Hands local envelopes to the network task, waiting for room: this node's own
/// reports are never dropped. Called off the async runtime (the engine or store thread).
fn publish_all(publish: &mpsc::Sender<Vec<u8>>, envelopes: Vec<Vec<u8>>) {
    for env in envelopes {
        if publish.blocking_send(env).is_err() {
            tracing::warn!("network task gone; sightings stored but not published");
            return;
        }
    }
}

/// The reporter's peer id text, for JSON.
pub fn peer_ids(keys: &[PublicKey]) -> Vec<String> {
    keys.iter().map(PublicKey::peer_id).collect()
}

/// A retraction draft for `target`: kind retract, signed with the maximum TTL so that it
/// outlives every older sighting it withdraws.
pub fn retraction(target: Target, now: Millis, max_ttl_s: u32) -> Draft {
    Draft {
        target,
        kind: Kind::Retract,
        observed_at: now,
        ttl_s: max_ttl_s,
        count: 1,
        evidence: Default::default(),
    }
}

#[cfg(test)]
mod tests;
