//! The engine: the one owner of the ledger and the policy.
//!
//! It runs on its own OS thread (verification is CPU work), takes [`Command`]s from a
//! bounded channel (see `handle`), and answers through oneshot replies. Every sighting —
//! from the API, gossip or sync — passes the same path: cheap checks, stranger rate and
//! capacity bounds, batched signature verification, merge, re-decide the touched
//! targets, then the store's writer thread persists it. The decided set is published as
//! an immutable [`Blocklist`] snapshot swapped atomically, so hot-path lookups never wait.

pub mod store;

use crate::engine::store::{Store, Writer};
use crate::metrics::{Metrics, SourceLabel, VerdictLabel};
use crate::now_ms;
use anyhow::Context;
use arc_swap::ArcSwap;
use fraudmesh::blocklist::{Blocklist, BlocklistBuilder};
use fraudmesh::decisions::DecisionLog;
use fraudmesh::identity::{Identity, KeyCache, PublicKey};
use fraudmesh::ledger::{Ledger, Merge};
use fraudmesh::policy::Policy;
use fraudmesh::proto;
use fraudmesh::rate::RateLimiter;
use fraudmesh::sighting::{self, AcceptLimits, Draft, Kind, Pending, Record, RecordId};
use fraudmesh::sync::Item;
use fraudmesh::target::Target;
use fraudmesh::Millis;
use prost::Message;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

mod handle;

pub use handle::{Check, Command, EngineHandle, GossipVerdict, Listed, Stats};

/// Commands queued to the engine before senders wait.
pub const COMMAND_QUEUE: usize = 1024;
/// Largest gossip message accepted (also gossipsub's transmit limit).
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;
/// Most sightings in one envelope.
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

/// Bounds on what strangers can make this node hold.
#[derive(Debug, Clone)]
pub struct StrangerBounds {
    /// Sightings per second from one stranger.
    pub rate: f64,
    /// Burst from one stranger.
    pub burst: u32,
    /// Active records per stranger.
    pub max_per_stranger: usize,
    /// Active records of all strangers.
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
    limits: AcceptLimits,
    strangers: StrangerBounds,
    rate: RateLimiter,
    keys: KeyCache,
    ledger: Ledger,
    stranger_records: usize,
    /// What is blocked (since and until; the details are decided again on demand:
    /// keeping every policy `Verdict` would cost more memory than the ledger) and the
    /// numbered log of its changes that enforcers and bouncers follow.
    decisions: DecisionLog,
    /// The head of `decisions`, for those waiting for changes.
    decisions_head: Arc<watch::Sender<u64>>,
    /// Reads (fetch, size); writes go through `writer`.
    store: Arc<dyn Store>,
    writer: Writer,
    metrics: Arc<Metrics>,
    blocklist: Arc<ArcSwap<Blocklist>>,
    publish: mpsc::Sender<Vec<u8>>,
    dirty: bool,
    /// The reconciliation set, cached until the ledger changes.
    sync_items: Option<Arc<Vec<Item>>>,
    last_rebuild: Instant,
    last_gc: Instant,
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

impl Engine {
    /// Restores the ledger from the store and decides everything once.
    pub fn new(
        cfg: EngineConfig,
        store: Box<dyn Store>,
        metrics: Arc<Metrics>,
        publish: mpsc::Sender<Vec<u8>>,
    ) -> anyhow::Result<Self> {
        let now = now_ms();
        let mut ledger = Ledger::new();
        let store: Arc<dyn Store> = Arc::from(store);
        let mut keys = KeyCache::new(KEY_CACHE);
        let mut expired: Vec<(PublicKey, Target)> = Vec::new();
        let mut corrupt = 0usize;
        store.for_each(&mut |bytes| {
            match Record::decode_stored(bytes, &mut keys) {
                Ok(r) if r.sighting().is_active(now) => {
                    ledger.merge(&r);
                }
                Ok(r) => expired.push((r.sighting().reporter, r.sighting().target.clone())),
                // Not fatal: a node that refuses to start protects nobody. Peers still
                // hold the record and sync brings it back.
                Err(e) => {
                    corrupt += 1;
                    tracing::warn!(error = %e, "skipping a corrupt stored record");
                }
            }
            Ok(())
        })?;
        // Records that expired while the node was down are collected now, or they would
        // stay on disk forever (the ledger never saw them).
        if !expired.is_empty() {
            store.remove(&expired)?;
            store.flush()?;
        }
        let expired = expired.len();
        let stranger_records = ledger
            .entries()
            .filter(|e| cfg.policy.is_stranger(e.reporter()))
            .count();
        tracing::info!(
            records = ledger.len(),
            expired,
            corrupt,
            "ledger restored from the store"
        );
        let mut engine = Engine {
            identity: cfg.identity,
            rate: RateLimiter::new(cfg.strangers.rate, cfg.strangers.burst),
            keys,
            policy: cfg.policy,
            limits: cfg.limits,
            strangers: cfg.strangers,
            ledger,
            stranger_records,
            decisions: DecisionLog::new(DECISION_LOG),
            decisions_head: Arc::new(watch::channel(0).0),
            writer: Writer::start(store.clone())?,
            store,
            metrics,
            blocklist: Arc::new(ArcSwap::from_pointee(Blocklist::default())),
            publish,
            dirty: true,
            sync_items: None,
            last_rebuild: Instant::now(),
            last_gc: Instant::now(),
        };
        engine.decide_everything(now);
        engine.rebuild();
        Ok(engine)
    }

    /// Makes everything stored so far durable, and waits for it.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.writer.flush_wait()
    }

    /// Records held.
    pub fn records(&self) -> usize {
        self.ledger.len()
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
                // Acknowledged from the store thread once flushed; the engine goes on.
                let out = self.sign_and_merge(drafts);
                self.writer.flush_then(Box::new(move |r| {
                    let _ = reply.send(r.map(|()| out));
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
            Command::Ingest { records, reply } => {
                let v = self.ingest(&records, "sync");
                let _ = reply.send(v);
            }
            Command::SyncItems { reply } => {
                let now = now_ms();
                let items = self
                    .sync_items
                    .get_or_insert_with(|| Arc::new(fraudmesh::sync::items(&self.ledger, now)))
                    .clone();
                let _ = reply.send(items);
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

    /// The whole path of one gossip message: decode, cheap checks, batch verification,
    /// stranger bounds, merge, re-decide, persist (not flushed: nothing is acknowledged).
    pub fn gossip(&mut self, data: &[u8]) -> GossipVerdict {
        if data.len() > MAX_ENVELOPE_BYTES {
            self.metrics.reject("envelope_oversized");
            return GossipVerdict::Reject;
        }
        let env = match proto::Envelope::decode(data) {
            Ok(env) if !env.sightings.is_empty() && env.sightings.len() <= MAX_ENVELOPE_SIGHTINGS => env,
            Ok(_) => {
                self.metrics.reject("envelope_size");
                return GossipVerdict::Reject;
            }
            Err(_) => {
                self.metrics.reject("envelope_decode");
                return GossipVerdict::Reject;
            }
        };
        self.ingest(&env.sightings, "gossip")
    }

    /// The one path every received sighting takes, from gossip or sync: cheap checks,
    /// batch verification, stranger bounds, merge, persist. Any invalid sighting rejects
    /// the whole batch and nothing in it is merged.
    pub fn ingest(&mut self, sightings: &[proto::SignedSighting], source: &'static str) -> GossipVerdict {
        let now = now_ms();
        let mut pending = Vec::with_capacity(sightings.len());
        for s in sightings {
            match Pending::check_cached(s, now, &self.limits, &mut self.keys) {
                Ok(p) => pending.push(p),
                Err(e) => {
                    self.metrics.reject(e.label());
                    if e.blames_sender() {
                        tracing::debug!(error = %e, source, "sighting rejected");
                        return GossipVerdict::Reject;
                    }
                }
            }
        }
        let mut records = Vec::with_capacity(pending.len());
        for r in sighting::verify_batch(pending) {
            match r {
                Ok(r) => records.push(r),
                Err(e) => {
                    // Any forged sighting condemns the whole message: nothing in it is merged.
                    self.metrics.reject(e.label());
                    tracing::debug!(error = %e, source, "sighting rejected");
                    return GossipVerdict::Reject;
                }
            }
        }
        let mut admitted = Vec::with_capacity(records.len());
        for r in records {
            match self.admit(&r, now) {
                Ok(()) => admitted.push(r),
                Err(reason) => self.metrics.reject(reason),
            }
        }
        if self.merge(admitted, now, source) > 0 {
            GossipVerdict::Accept
        } else {
            GossipVerdict::Ignore
        }
    }

    /// Stranger bounds: rate, records per stranger, records of all strangers.
    fn admit(&mut self, r: &Record, now: Millis) -> Result<(), &'static str> {
        let reporter = r.sighting().reporter;
        if !self.policy.is_stranger(&reporter) || !self.ledger.would_change(r) {
            return Ok(());
        }
        if !self.rate.allow(&reporter, now) {
            return Err("stranger_rate");
        }
        if self.ledger.count_of(&reporter) >= self.strangers.max_per_stranger {
            return Err("stranger_records");
        }
        if self.stranger_records >= self.strangers.max_total {
            return Err("strangers_full");
        }
        Ok(())
    }

    /// Merges records, queues the ones that changed the ledger for the store, re-decides
    /// their targets, and returns how many changed. Records that change the ledger are
    /// each newer than what was held, so within one batch the store's last write for a
    /// key is the newest.
    fn merge(&mut self, records: Vec<Record>, now: Millis, source: &'static str) -> usize {
        let mut changed = Vec::new();
        for r in records {
            let s = r.sighting();
            let stranger = self.policy.is_stranger(&s.reporter);
            let outcome = self.ledger.merge(&r);
            if outcome == Merge::Inserted && stranger {
                self.stranger_records += 1;
            }
            if outcome.changed() {
                if source != "local" {
                    let delay_s = now.saturating_sub(s.observed_at) as f64 / 1000.0;
                    self.metrics.propagation.observe(delay_s);
                }
                changed.push(r);
            }
        }
        if changed.is_empty() {
            return 0;
        }
        self.sync_items = None;
        self.metrics
            .accepted
            .get_or_create(&SourceLabel { source })
            .inc_by(changed.len() as u64);
        let mut targets: Vec<Target> = changed.iter().map(|r| r.sighting().target.clone()).collect();
        targets.sort();
        targets.dedup();
        for t in &targets {
            self.redecide(t, now);
        }
        self.metrics.records.set(self.ledger.len() as i64);
        // Enforcers read the snapshot: publish it now unless one went out moments ago
        // (then the next tick does, so a burst costs one rebuild per interval).
        if self.dirty && self.last_rebuild.elapsed() >= REBUILD_INTERVAL {
            self.rebuild();
        }
        let n = changed.len();
        self.writer.put(changed);
        n
    }

    /// Signs, merges and publishes local sightings and returns them once durable.
    pub fn report(&mut self, drafts: Vec<Draft>) -> anyhow::Result<Vec<Record>> {
        let out = self.sign_and_merge(drafts);
        self.writer.flush_wait()?;
        Ok(out)
    }

    /// Signs local drafts, merges them (queued for the store) and publishes them. The
    /// caller acknowledges only after a flush.
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
        self.merge(records.clone(), now, "local");
        let out = records;
        for chunk in out.chunks(MAX_ENVELOPE_SIGHTINGS) {
            let env = proto::Envelope {
                sightings: chunk.iter().map(Record::to_proto).collect(),
            };
            if self.publish.blocking_send(env.encode_to_vec()).is_err() {
                tracing::warn!("network task gone; sightings stored but not published");
            }
        }
        out
    }

    /// Looks records up by id: one pass over the ledger for their keys, then the store.
    /// A record merged moments ago may still sit in the writer's queue and be skipped;
    /// the peer gets it by gossip or its next session.
    fn fetch(&self, ids: Vec<RecordId>) -> Vec<proto::SignedSighting> {
        let wanted: std::collections::HashSet<RecordId> = ids.into_iter().take(MAX_FETCH).collect();
        let mut out = Vec::with_capacity(wanted.len());
        for (target, entries) in self.ledger.by_target() {
            for e in entries {
                if !wanted.contains(e.id()) {
                    continue;
                }
                match self.store.get(e.reporter(), target) {
                    Ok(Some(bytes)) => match proto::SignedSighting::decode(bytes.as_slice()) {
                        Ok(s) => out.push(s),
                        Err(err) => tracing::warn!(error = %err, "a stored record does not decode"),
                    },
                    Ok(None) => {}
                    Err(err) => tracing::warn!(error = %err, "reading a stored record failed"),
                }
                if out.len() == wanted.len() {
                    return out;
                }
            }
        }
        out
    }

    fn check(&self, target: &Target) -> Check {
        let now = now_ms();
        let mut matches = Vec::new();
        for t in target.covering() {
            let mut records = self.ledger.for_target(&t).peekable();
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

    fn redecide(&mut self, target: &Target, now: Millis) {
        let d = self.policy.decide(target, self.ledger.for_target(target), now);
        let was_blocked = self.decisions.get(target).is_some();
        if self.decisions.set(target, d.until.filter(|_| d.blocked), now).is_none() {
            return;
        }
        self.decisions_head.send_replace(self.decisions.head());
        if was_blocked != self.decisions.get(target).is_some() {
            self.dirty = true;
            self.metrics.blocked.set(self.decisions.len() as i64);
        }
    }

    fn decide_everything(&mut self, now: Millis) {
        let targets: Vec<Target> = self.ledger.by_target().map(|(t, _)| t.clone()).collect();
        for t in targets {
            self.redecide(&t, now);
        }
        self.metrics.records.set(self.ledger.len() as i64);
        self.metrics.blocked.set(self.decisions.len() as i64);
    }

    fn tick(&mut self) {
        let now = now_ms();
        for t in self.decisions.due(now) {
            self.redecide(&t, now);
        }
        if self.last_gc.elapsed() >= GC_INTERVAL {
            self.last_gc = Instant::now();
            let gone = self.ledger.expire(now);
            if !gone.is_empty() {
                self.sync_items = None;
                self.stranger_records -= gone
                    .iter()
                    .filter(|(_, e)| self.policy.is_stranger(e.reporter()))
                    .count()
                    .min(self.stranger_records);
                let keys: Vec<(PublicKey, Target)> = gone.iter().map(|(t, e)| (*e.reporter(), t.clone())).collect();
                self.writer.remove(keys);
                tracing::debug!(expired = gone.len(), "expired records collected");
                self.metrics.records.set(self.ledger.len() as i64);
            }
        }
        if self.dirty && self.last_rebuild.elapsed() >= REBUILD_INTERVAL {
            self.rebuild();
        }
    }

    /// Publishes a fresh blocklist snapshot of the blocked set.
    pub fn rebuild(&mut self) {
        let mut b = BlocklistBuilder::new();
        for d in self.decisions.active() {
            b.insert_target(&d.target);
        }
        self.blocklist.store(Arc::new(b.build()));
        self.dirty = false;
        self.last_rebuild = Instant::now();
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
