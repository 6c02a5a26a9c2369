//! Endorsements on the node: the receiving path (gossip and sync), the operator's own
//! publication, the roster's persistence, and what a roster change does.
//!
//! # Receiving (the same rules as sightings, `ingest.rs`)
//! 1. Dedup by id: held in the roster, relayed recently without being stored, or
//!    repeated in this message — skipped before any signature work.
//! 2. Verification (`fraudmesh::endorsement::verify`): a protocol violation (malformed,
//!    oversized, a bad signature, an endorsement of the organisation itself…) rejects the
//!    whole message and blames its sender; a record only outside this node's clock
//!    window (dated ahead by more than the skew, or already expired) is skipped, not
//!    blamed, not relayed.
//! 3. The per-key rate limit of organisations this node does not trust ([`ORG_RATE`],
//!    [`ORG_BURST`]): over it, skipped. A trusted organisation is not limited (its
//!    rollout publishes hundreds at once).
//! 4. Every record past these steps is relayed, whatever this node trusts: nodes behind
//!    this one may trust organisations it does not.
//! 5. Only records of organisations in `[[trust.orgs]]` are stored (table
//!    `endorsements.v1`, the newest per organisation and member) and merged into the
//!    policy's roster; the others are remembered as relayed so they are dropped as
//!    duplicates next time.
//!
//! # A roster change
//! Changes who is a stranger and what everyone weighs. The members it touched are
//! collected, and at the next tick (at once for the operator's own change) their records
//! move in or out of the strangers' quota and their targets are decided again, once per
//! tick however many records arrived: blocks that depended on a revoked member are lifted
//! and a newly endorsed member's sightings count. Expiry needs no tick: the policy
//! counts an endorsed member's accusation only until the endorsement expires, so the
//! decision log's `until` ends such a block on time; the garbage collection then moves
//! the lapsed member's records into the strangers' quota, and drops the record from the
//! roster and the store once the roster no longer needs it (it keeps an expired record,
//! inactive, until everything it superseded has expired everywhere).

use super::handle::{EndorseError, Endorsed, EndorsementInfo};
use super::store::{Change, Table};
use super::{publish_all, Engine, QuotaKey, MAX_ENVELOPE_SIGHTINGS};
use crate::metrics::{StateLabel, VerdictLabel};
use crate::now_ms;
use fraudmesh::endorsement::{self, EndorsementKind, EndorsementRecord};
use fraudmesh::identity::PublicKey;
use fraudmesh::proto;
use fraudmesh::sighting::RecordId;
use fraudmesh::target::Target;
use fraudmesh::Millis;
use prost::Message;
use std::collections::{HashMap, HashSet};
use tokio::sync::oneshot;

/// Endorsements per second accepted from one organisation this node does not trust.
pub const ORG_RATE: f64 = 10.0;
/// And its burst: a rollout of a few hundred members relays through untrusting nodes.
pub const ORG_BURST: u32 = 1024;

/// Endorsements that passed steps 1–3, not merged yet.
#[derive(Default)]
pub(super) struct CheckedEndorsements {
    /// The verified records.
    pub records: Vec<EndorsementRecord>,
    /// Their positions in the message (the relay set).
    pub relay: Vec<usize>,
    /// Organisations whose rate tokens they took (given back if the message is rejected).
    pub charged: Vec<PublicKey>,
}

/// The store key of an (organisation, member) pair.
fn key(org: &PublicKey, member: &PublicKey) -> Vec<u8> {
    let mut k = org.as_bytes().to_vec();
    k.extend_from_slice(member.as_bytes());
    k
}

impl Engine {
    /// Counts one received endorsement by what became of it.
    fn endorsement_verdict(&self, verdict: &'static str) {
        self.metrics
            .endorsements_received
            .get_or_create(&VerdictLabel { verdict })
            .inc();
    }

    /// Steps 1–3 of the module doc. `None`: the message is rejected as a whole.
    pub(super) fn check_endorsements(
        &mut self,
        signed: &[proto::SignedEndorsement],
        source: &'static str,
        now: Millis,
    ) -> Option<CheckedEndorsements> {
        let mut out = CheckedEndorsements::default();
        let mut in_message: HashSet<RecordId> = HashSet::with_capacity(signed.len());
        for (i, s) in signed.iter().enumerate() {
            let id = endorsement::wire_id(s);
            if !in_message.insert(id) || self.policy.roster().holds(&id) || self.recent.contains(&id) {
                self.endorsement_verdict("duplicate");
                continue;
            }
            let r = match endorsement::verify_cached(s, now, self.limits.max_future_skew_ms, &mut self.keys) {
                Ok(r) => r,
                Err(e) => {
                    self.endorsement_verdict(e.label());
                    if e.blames_sender() {
                        tracing::debug!(error = %e, source, "endorsement rejected");
                        self.refund_orgs(&out.charged);
                        return None;
                    }
                    continue;
                }
            };
            let org = r.endorsement().org;
            if !self.policy.is_trusted_org(&org) {
                if !self.org_rate.allow(&org, now) {
                    self.endorsement_verdict("org_rate");
                    continue;
                }
                out.charged.push(org);
            }
            out.records.push(r);
            out.relay.push(i);
        }
        Some(out)
    }

    /// Gives back the rate tokens of a rejected message.
    pub(super) fn refund_orgs(&mut self, charged: &[PublicKey]) {
        for org in charged {
            self.org_rate.refund(org);
        }
    }

    /// Step 5: merges the trusted organisations' records into the roster and queues them
    /// for the store; the others are remembered as relayed. The members touched are
    /// decided again at the next tick.
    pub(super) fn merge_endorsements(&mut self, records: Vec<EndorsementRecord>, source: &'static str, now: Millis) {
        if records.is_empty() {
            return;
        }
        let mut changes = Vec::new();
        for r in records {
            let e = r.endorsement();
            if !self.policy.is_trusted_org(&e.org) {
                self.endorsement_verdict("untrusted_org");
                self.recent.insert(*r.id());
                continue;
            }
            if !self.policy.roster_mut().merge(&r) {
                // A newer record of this organisation and member is held.
                self.endorsement_verdict("superseded");
                self.recent.insert(*r.id());
                continue;
            }
            self.endorsement_verdict("merged");
            tracing::debug!(
                org = %e.org.peer_id(),
                member = %e.member.peer_id(),
                kind = ?e.kind,
                source,
                "endorsement merged"
            );
            self.roster_changed.insert(e.member);
            changes.push(Change::Table(
                Table::Endorsements,
                key(&e.org, &e.member),
                Some(r.encode()),
            ));
        }
        if !changes.is_empty() {
            self.sync_items_stale = true;
            self.update_roster_metrics(now);
            self.queue_writes(changes);
        }
    }

    /// The gauge of held endorsements by state.
    pub(super) fn update_roster_metrics(&self, now: Millis) {
        let (mut active, mut revoked, mut expired) = (0, 0, 0);
        for r in self.policy.roster().records() {
            match r.endorsement().kind {
                EndorsementKind::Revoke => revoked += 1,
                EndorsementKind::Endorse if r.is_active(now) => active += 1,
                EndorsementKind::Endorse => expired += 1,
            }
        }
        for (state, n) in [("active", active), ("revoked", revoked), ("expired", expired)] {
            self.metrics.endorsements.get_or_create(&StateLabel { state }).set(n);
        }
    }

    /// Moves the records of the members whose roster record changed in or out of the
    /// strangers' quota, and decides their targets again (see "A roster change").
    pub(super) fn apply_roster_changes(&mut self, now: Millis) {
        if self.roster_changed.is_empty() {
            return;
        }
        let members = std::mem::take(&mut self.roster_changed);
        let mut targets: Vec<Target> = Vec::new();
        let mut held: Vec<(QuotaKey, PublicKey)> = Vec::new();
        for (t, entries) in self.ledger.by_target() {
            for e in entries {
                if members.contains(e.reporter()) {
                    targets.push(t.clone());
                    held.push(((e.observed_at(), t.clone()), *e.reporter()));
                }
            }
        }
        // Out of the quota whatever they were (a record not in it is a no-op), then back
        // in for the members that are strangers now, oldest first.
        for (k, member) in &held {
            self.quota.remove(member, k);
        }
        held.retain(|(_, member)| self.policy.is_stranger(member, now));
        let dropped = self.admit_to_quota(held);
        targets.extend(dropped);
        targets.sort_unstable();
        targets.dedup();
        tracing::debug!(
            members = members.len(),
            targets = targets.len(),
            "roster changed; deciding the members' targets again"
        );
        self.redecide(&targets, now);
        self.metrics.records.set(self.ledger.len() as i64);
        self.metrics.stranger_records.set(self.quota.total() as i64);
        self.rebuild_if_due();
    }

    /// Garbage collection: the members whose endorsement expired since the last one are
    /// decided again (their quota place changes: they are strangers now), and the records
    /// the roster no longer needs leave it and the store (an expired record is kept until
    /// every record it superseded has expired everywhere: see `fraudmesh::roster`).
    pub(super) fn expire_roster(&mut self, now: Millis) {
        let since = std::mem::replace(&mut self.roster_checked, now);
        let lapsed: Vec<PublicKey> = self
            .policy
            .roster()
            .records()
            .map(EndorsementRecord::endorsement)
            .filter(|e| e.kind == EndorsementKind::Endorse && since < e.expires_at && e.expires_at <= now)
            .map(|e| e.member)
            .collect();
        if !lapsed.is_empty() {
            self.roster_changed.extend(lapsed);
            self.update_roster_metrics(now);
        }
        let gone = self.policy.roster_mut().expire(now);
        if gone.is_empty() {
            return;
        }
        self.sync_items_stale = true;
        let mut changes = Vec::with_capacity(gone.len());
        for r in gone {
            let e = r.endorsement();
            self.roster_changed.insert(e.member);
            changes.push(Change::Table(Table::Endorsements, key(&e.org, &e.member), None));
        }
        tracing::debug!(expired = changes.len(), "expired endorsements collected");
        self.queue_writes(changes);
        self.update_roster_metrics(now);
    }

    /// Loads the stored endorsements into the roster at start. Records of organisations
    /// no longer trusted, expired ones and corrupt ones are removed from the store.
    pub(super) fn load_roster(&mut self, now: Millis) {
        let mut stale: Vec<Vec<u8>> = Vec::new();
        let mut loaded = Vec::new();
        let mut unreadable = 0;
        let scanned = self.store.table_scan(Table::Endorsements, &mut |entry| match entry {
            Ok((k, v)) => match EndorsementRecord::decode_stored(v) {
                Ok(r) => loaded.push((k.to_vec(), r)),
                Err(e) => {
                    tracing::debug!(error = %e, "a stored endorsement does not decode");
                    stale.push(k.to_vec());
                }
            },
            Err(e) => {
                unreadable += 1;
                tracing::debug!(error = %e, "a stored endorsement is unreadable");
            }
        });
        if let Err(e) = scanned {
            tracing::warn!(error = %e, "loading the endorsements stopped early; starting with what was read");
        }
        let corrupt = stale.len();
        for (k, r) in loaded {
            if self.policy.is_trusted_org(&r.endorsement().org) {
                self.policy.roster_mut().merge(&r);
            } else {
                // The organisation is no longer trusted here.
                stale.push(k);
            }
        }
        // Expired records stay (inactive) as long as the roster keeps them; what it
        // drops now goes from the store too.
        for r in self.policy.roster_mut().expire(now) {
            let e = r.endorsement();
            stale.push(key(&e.org, &e.member));
        }
        let merged = self.policy.roster().len();
        if !stale.is_empty() {
            self.queue_writes(
                stale
                    .iter()
                    .map(|k| Change::Table(Table::Endorsements, k.clone(), None)),
            );
        }
        if corrupt + unreadable > 0 {
            tracing::warn!(
                corrupt,
                unreadable,
                "skipped stored endorsements that could not be read"
            );
        }
        tracing::info!(
            endorsements = merged,
            dropped = stale.len(),
            "roster restored from the store"
        );
        self.update_roster_metrics(now);
    }

    /// Every record of the roster, for `endorsements list`.
    pub(super) fn endorsement_infos(&self) -> Vec<EndorsementInfo> {
        let now = now_ms();
        let orgs = &self.policy.trust().orgs;
        let mut out: Vec<EndorsementInfo> = self
            .policy
            .roster()
            .records()
            .map(|r| EndorsementInfo {
                org_name: orgs
                    .get(&r.endorsement().org)
                    .map(|o| o.name.clone())
                    .unwrap_or_default(),
                active: r.is_active(now),
                record: r.clone(),
            })
            .collect();
        out.sort_by(|a, b| {
            let (x, y) = (a.record.endorsement(), b.record.endorsement());
            (&a.org_name, x.name.as_str(), x.member.as_bytes()).cmp(&(
                &b.org_name,
                y.name.as_str(),
                y.member.as_bytes(),
            ))
        });
        out
    }

    /// Checks every record of a local call before anything changes (see
    /// [`EndorseError`]).
    fn check_local(&self, records: &[EndorsementRecord], now: Millis) -> Result<(), EndorseError> {
        if records.is_empty() {
            return Err(EndorseError::Empty);
        }
        if records.len() > super::MAX_ENDORSE {
            return Err(EndorseError::TooMany {
                max: super::MAX_ENDORSE,
            });
        }
        // (org, member) pairs this call endorses, for a revocation later in the same call.
        let mut endorsing: HashMap<(PublicKey, PublicKey), ()> = HashMap::new();
        for r in records {
            let e = r.endorsement();
            if !self.policy.is_trusted_org(&e.org) {
                return Err(EndorseError::UntrustedOrg { org: e.org });
            }
            if e.expires_at <= now {
                return Err(EndorseError::Expired {
                    org: e.org,
                    member: e.member,
                    expires_at: e.expires_at,
                });
            }
            match e.kind {
                EndorsementKind::Endorse => {
                    endorsing.insert((e.org, e.member), ());
                }
                EndorsementKind::Revoke => {
                    let held = self.policy.roster().get(&e.org, &e.member);
                    let ok = endorsing.contains_key(&(e.org, e.member))
                        || held.is_some_and(|h| h.id() == r.id() || h.endorsement().kind == EndorsementKind::Endorse);
                    if !ok {
                        return Err(EndorseError::NothingToRevoke {
                            org: e.org,
                            member: e.member,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The operator's endorsements: checked (all or none), merged, the members' targets
    /// decided again, then stored; published and acknowledged once flushed.
    pub(super) fn endorse_command(
        &mut self,
        records: Vec<EndorsementRecord>,
        reply: oneshot::Sender<Result<Vec<Endorsed>, EndorseError>>,
    ) {
        match self.endorse_local(records) {
            Err(e) => {
                let _ = reply.send(Err(e));
            }
            Ok((out, envelopes)) => {
                let publish = self.publish.clone();
                self.hand_over_writes();
                self.writer.flush_then(Box::new(move |r| {
                    let r = match r {
                        Ok(()) => {
                            publish_all(&publish, envelopes);
                            Ok(out)
                        }
                        Err(e) => Err(EndorseError::Store(format!("{e:#}"))),
                    };
                    let _ = reply.send(r);
                }));
            }
        }
    }

    /// The engine's part of [`Engine::endorse_command`], without waiting for the store:
    /// what became of each record, and the envelopes to publish once flushed.
    pub fn endorse_local(
        &mut self,
        records: Vec<EndorsementRecord>,
    ) -> Result<(Vec<Endorsed>, Vec<Vec<u8>>), EndorseError> {
        let now = now_ms();
        self.check_local(&records, now)?;
        let mut out = Vec::with_capacity(records.len());
        let mut publish = Vec::new();
        let mut changes = Vec::new();
        for r in records {
            let e = r.endorsement();
            let changed = self.policy.roster_mut().merge(&r);
            if changed {
                self.roster_changed.insert(e.member);
                changes.push(Change::Table(
                    Table::Endorsements,
                    key(&e.org, &e.member),
                    Some(r.encode()),
                ));
                publish.push(r.to_proto());
            }
            out.push(Endorsed {
                id: *r.id(),
                org: e.org,
                member: e.member,
                kind: e.kind,
                name: e.name.clone(),
                expires_at: e.expires_at,
                changed,
            });
        }
        if !changes.is_empty() {
            self.sync_items_stale = true;
            self.metrics
                .endorsements_received
                .get_or_create(&VerdictLabel { verdict: "local" })
                .inc_by(changes.len() as u64);
            self.update_roster_metrics(now);
            self.queue_writes(changes);
            self.apply_roster_changes(now);
        }
        Ok((out, endorsement_envelopes(publish)))
    }
}

/// Endorsements as envelopes of at most [`MAX_ENVELOPE_SIGHTINGS`] records and
/// [`MAX_ENVELOPE_BYTES`](super::MAX_ENVELOPE_BYTES) bytes.
fn endorsement_envelopes(records: Vec<proto::SignedEndorsement>) -> Vec<Vec<u8>> {
    // Room for the envelope's own framing of each record (tag and length).
    const FRAMING: usize = 8;
    let mut out = Vec::new();
    let mut chunk: Vec<proto::SignedEndorsement> = Vec::new();
    let mut bytes = 0;
    for r in records {
        let n = r.encoded_len() + FRAMING;
        if !chunk.is_empty() && (chunk.len() == MAX_ENVELOPE_SIGHTINGS || bytes + n > super::MAX_ENVELOPE_BYTES) {
            out.push(std::mem::take(&mut chunk));
            bytes = 0;
        }
        bytes += n;
        chunk.push(r);
    }
    if !chunk.is_empty() {
        out.push(chunk);
    }
    out.into_iter()
        .map(|endorsements| {
            proto::Envelope {
                sightings: Vec::new(),
                endorsements,
            }
            .encode_to_vec()
        })
        .collect()
}
