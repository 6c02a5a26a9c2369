//! The receiving path every sighting from gossip or sync takes, and what is relayed.
//! Endorsements in the same envelope or sync batch take the same path (`endorse.rs`):
//! they are checked first, and a message is rejected as a whole if any record of either
//! kind blames its sender — nothing of it is merged.
//!
//! # Order (cheapest and most decisive first)
//! 1. Size and decoding of the envelope (gossip only).
//! 2. Per sighting, the cheap checks against the *protocol's* bounds: a violation is
//!    invalid for every node and rejects the whole message (`Reject`, the sender is
//!    penalised); a record only outside the clock window is skipped.
//! 3. Dedup by record id: held in the ledger, relayed recently without being stored
//!    (`recent.rs`), or repeated in this message — skipped before any signature work.
//! 4. The stranger's per-key rate limit: over it, skipped (tokens are given back when
//!    the message is rejected as a whole, so a forger cannot spend a stranger's rate).
//! 5. Batch signature verification: any bad signature rejects the whole message.
//! 6. This node's own limits (`max_ttl`, never for retractions; the minimum prefixes):
//!    outside them, the record is not stored, not blamed, and still relayed.
//! 7. Store admission: a stranger's record enters the fair-share quota
//!    (`fraudmesh::quota`), evicting the oldest record of the most prolific stranger
//!    when strangers hold their maximum, or is refused (still relayed).
//! 8. Merge (endorsements first, so that a member endorsed in the same message counts
//!    at once), re-decide the touched targets, queue the changes for the writer.
//!
//! # Relaying
//! The relay set is every record that passed its signature and the rate limit and was
//! not a duplicate, whether or not this node stores it: relaying never depends on this
//! node's storage or policy, so a flood that fills the strangers' share cannot cut a
//! reporter off from nodes that trust it behind this one. A gossip message whose every
//! record is in the relay set is `Accept`ed (gossipsub forwards it); one with none is
//! `Ignore`d; otherwise it is `Ignore`d and the engine publishes an envelope of just the
//! relay set, without ever waiting for the network (a full publish queue drops it and
//! counts `gossip_relay_dropped`). Records from sync are not relayed.

use super::endorse::CheckedEndorsements;
use super::{Batch, Engine, GossipVerdict, MAX_ENVELOPE_BYTES, MAX_ENVELOPE_SIGHTINGS};
use crate::engine::store::Change;
use crate::metrics::SourceLabel;
use crate::now_ms;
use fraudmesh::identity::PublicKey;
use fraudmesh::proto;
use fraudmesh::sighting::{self, Pending, Record, RecordId, Sighting};
use fraudmesh::Millis;
use prost::Message;
use std::collections::HashSet;
use tokio::sync::mpsc::error::TrySendError;

impl Engine {
    /// The whole path of one gossip message: decode, then [`Engine::ingest`]'s path, then
    /// the relay decision (see the module doc). Nothing is flushed: nothing is
    /// acknowledged.
    pub fn gossip(&mut self, data: &[u8]) -> GossipVerdict {
        if data.len() > MAX_ENVELOPE_BYTES {
            self.metrics.reject("envelope_oversized");
            return GossipVerdict::Reject;
        }
        let env = match proto::Envelope::decode(data) {
            Ok(env) => env,
            Err(_) => {
                self.metrics.reject("envelope_decode");
                return GossipVerdict::Reject;
            }
        };
        let n = env.sightings.len() + env.endorsements.len();
        if n == 0 || n > MAX_ENVELOPE_SIGHTINGS {
            self.metrics.reject("envelope_size");
            return GossipVerdict::Reject;
        }
        match self.receive(&env.sightings, &env.endorsements, "gossip") {
            None => GossipVerdict::Reject,
            Some((s, e)) if s.len() + e.len() == n => GossipVerdict::Accept,
            Some((s, e)) if s.is_empty() && e.is_empty() => GossipVerdict::Ignore,
            Some((s, e)) => {
                self.republish(pick(env.sightings, s), pick(env.endorsements, e));
                GossipVerdict::Ignore
            }
        }
    }

    /// Records from sync (or any batch): the same path as gossip, without relaying.
    /// `Reject`: something in it blames the sender and nothing was merged; `Accept`:
    /// every record passed to the relay set; `Ignore`: some were skipped.
    pub fn ingest(
        &mut self,
        sightings: &[proto::SignedSighting],
        endorsements: &[proto::SignedEndorsement],
        source: &'static str,
    ) -> GossipVerdict {
        match self.receive(sightings, endorsements, source) {
            None => GossipVerdict::Reject,
            Some((s, e)) if s.len() == sightings.len() && e.len() == endorsements.len() => GossipVerdict::Accept,
            Some(_) => GossipVerdict::Ignore,
        }
    }

    /// Steps 2–8 of the module doc for both kinds. `None`: rejected as a whole (nothing
    /// merged); otherwise the positions of the relay set of each kind, in order.
    fn receive(
        &mut self,
        sightings: &[proto::SignedSighting],
        endorsements: &[proto::SignedEndorsement],
        source: &'static str,
    ) -> Option<(Vec<usize>, Vec<usize>)> {
        let now = now_ms();
        let checked = if endorsements.is_empty() {
            CheckedEndorsements::default()
        } else {
            self.check_endorsements(endorsements, source, now)?
        };
        let Some((records, relay)) = self.check_sightings(sightings, source, now) else {
            // The endorsements' rate tokens are given back too: nothing was taken.
            self.refund_orgs(&checked.charged);
            return None;
        };
        let relay_endorsements = checked.relay.clone();
        self.merge_endorsements(checked.records, source, now);
        let mut batch = Batch::default();
        for r in records {
            self.admit(r, now, source, &mut batch);
        }
        self.commit(batch, now, source);
        Some((relay, relay_endorsements))
    }

    /// Steps 2–5 for sightings. `None`: rejected as a whole; otherwise the verified records
    /// and the positions of the relay set.
    fn check_sightings(
        &mut self,
        sightings: &[proto::SignedSighting],
        source: &'static str,
        now: Millis,
    ) -> Option<(Vec<Record>, Vec<usize>)> {
        let mut pending = Vec::with_capacity(sightings.len());
        let mut origin = Vec::with_capacity(sightings.len());
        let mut charged: Vec<PublicKey> = Vec::new();
        let mut in_message: HashSet<RecordId> = HashSet::with_capacity(sightings.len());
        for (i, signed) in sightings.iter().enumerate() {
            let p = match Pending::check_wire_cached(signed, now, &self.limits, &mut self.keys) {
                Ok(p) => p,
                Err(e) if self.refused(&e, source, &charged) => return None,
                Err(_) => continue,
            };
            // The same SHA-256(payload ‖ signature) as `wire_id(signed)`, hashed once
            // in the checks and kept as the record's id.
            let id = p.id();
            if !in_message.insert(id) || self.ledger.holds(&id) || self.recent.contains(&id) {
                self.metrics.duplicates.inc();
                continue;
            }
            let reporter = p.sighting().reporter;
            if self.policy.is_stranger(&reporter, now) {
                if !self.rate.allow(&reporter, now) {
                    self.metrics.reject("stranger_rate");
                    continue;
                }
                charged.push(reporter);
            }
            pending.push(p);
            origin.push(i);
        }
        let mut records = Vec::with_capacity(pending.len());
        let mut relay = Vec::with_capacity(pending.len());
        for (r, i) in sighting::verify_batch(pending).into_iter().zip(origin) {
            match r {
                Ok(r) => {
                    records.push(r);
                    relay.push(i);
                }
                // Any forged sighting condemns the whole message: nothing in it is
                // merged or relayed.
                Err(e) if self.refused(&e, source, &charged) => return None,
                Err(_) => {}
            }
        }
        Some((records, relay))
    }

    fn refund(&mut self, charged: &[PublicKey]) {
        for reporter in charged {
            self.rate.refund(reporter);
        }
    }

    /// Counts a refused sighting. True when it condemns its whole message (its error
    /// blames the sender): then the rate tokens the message took are given back.
    fn refused(&mut self, e: &sighting::Error, source: &'static str, charged: &[PublicKey]) -> bool {
        self.metrics.reject(e.label());
        if !e.blames_sender() {
            return false;
        }
        tracing::debug!(error = %e, source, "sighting rejected");
        self.refund(charged);
        true
    }

    /// Steps 6–8 for one verified record: this node's limits, the strangers' quota, merge.
    /// A record not stored is remembered as recently relayed.
    pub(super) fn admit(&mut self, r: Record, now: Millis, source: &'static str, batch: &mut Batch) {
        let id = *r.id();
        let s = r.sighting();
        if source != "local" {
            if let Err(reason) = self.within_limits(s) {
                self.metrics.reject(reason);
                self.recent.insert(id);
                return;
            }
        }
        // Strangers' records pass the quota first (it needs to know whether the record
        // is new or replaces one); anything else merges straight away.
        if self.policy.is_stranger(&s.reporter, now) {
            let key = (s.observed_at, s.target.clone());
            match self.ledger.get(&s.reporter, &s.target) {
                Some(_) if !self.ledger.would_change(&r) => {
                    self.recent.insert(id);
                    return;
                }
                Some(held) => {
                    let old = (held.observed_at(), s.target.clone());
                    self.quota.replace(&s.reporter, &old, key);
                }
                None => match self.quota.admit(&s.reporter, key) {
                    Ok(None) => {}
                    Ok(Some((victim, (_, target)))) => self.evict(victim, target, batch),
                    Err(refused) => {
                        self.metrics.reject(refused.label());
                        self.recent.insert(id);
                        return;
                    }
                },
            }
        }
        if !self.ledger.merge(&r).changed() {
            // A newer record of this reporter and target is held (an exact duplicate
            // was dropped earlier, or a local draft repeated within its batch).
            debug_assert!(!self.policy.is_stranger(&s.reporter, now), "checked above");
            self.recent.insert(id);
            return;
        }
        if source != "local" {
            let delay_s = now.saturating_sub(s.observed_at) as f64 / 1000.0;
            self.metrics.propagation.observe(delay_s);
        }
        batch.targets.push(s.target.clone());
        batch.merged += 1;
        batch.changes.push(Change::Put(r));
    }

    /// This node's own limits ([`fraudmesh::sighting::AcceptLimits::admit`]: the longest
    /// TTL and the broadest prefixes, never for retractions), which never blame the sender.
    fn within_limits(&self, s: &Sighting) -> Result<(), &'static str> {
        self.limits.admit(s).map_err(|e| e.label())
    }

    /// Drops a stranger's record the quota evicted: from the ledger, then the store (in
    /// order with the batch's other changes); its target is decided again.
    fn evict(&mut self, reporter: PublicKey, target: fraudmesh::target::Target, batch: &mut Batch) {
        if let Some(gone) = self.ledger.remove(&reporter, &target) {
            self.recent.insert(*gone.id());
            self.metrics.stranger_evictions.inc();
            batch.changes.push(Change::Remove(reporter, target.clone()));
            batch.targets.push(target);
        }
    }

    /// Applies a batch's consequences: re-decide its targets, count, queue its changes
    /// for the writer (handed over in batches: see "Writes" in the engine's module doc). Returns how many records were merged.
    pub(super) fn commit(&mut self, batch: Batch, now: Millis, source: &'static str) -> usize {
        if batch.changes.is_empty() {
            return 0;
        }
        self.sync_items_stale = true;
        if batch.merged > 0 {
            self.metrics
                .accepted
                .get_or_create(&SourceLabel { source })
                .inc_by(batch.merged as u64);
        }
        let mut targets = batch.targets;
        targets.sort();
        targets.dedup();
        self.redecide(&targets, now);
        self.metrics.records.set(self.ledger.len() as i64);
        self.metrics.stranger_records.set(self.quota.total() as i64);
        // Enforcers read the snapshot: publish it now unless one went out moments ago.
        self.rebuild_if_due();
        self.queue_writes(batch.changes);
        batch.merged
    }

    /// Publishes the relayable part of a gossip message as a new envelope, never waiting
    /// for the network task.
    fn republish(&self, sightings: Vec<proto::SignedSighting>, endorsements: Vec<proto::SignedEndorsement>) {
        let data = proto::Envelope {
            sightings,
            endorsements,
        }
        .encode_to_vec();
        match self.publish.try_send(data) {
            Ok(()) => {
                self.metrics.relay_republished.inc();
            }
            Err(TrySendError::Full(_)) => {
                self.metrics.relay_dropped.inc();
                tracing::debug!("publish queue full; a relay envelope was dropped");
            }
            // The network task is gone (shutting down, or a bench without one).
            Err(TrySendError::Closed(_)) => {}
        }
    }
}

/// The items of `all` at the positions `keep` (ascending).
fn pick<T>(all: Vec<T>, keep: Vec<usize>) -> Vec<T> {
    let mut keep = keep.into_iter().peekable();
    all.into_iter()
        .enumerate()
        .filter_map(|(i, x)| keep.next_if_eq(&i).map(|_| x))
        .collect()
}
