//! The operator's local overrides and what follows from them: allows (never block a
//! target, whatever the mesh says), the reputation of the reporters they overrode, and
//! `explain`, which shows both beside every record's weight.
//!
//! Both are persistent (tables `allows.v1` and `reputation.v1`, loaded at start) and an
//! allow or unallow is acknowledged only once the store flushed it. An allow penalises
//! every trusted reporter other than this node that holds an active accusation of an
//! overlapping target (`Policy::penalise`): the operator just said it was wrong. Renewing
//! an allow still in force on the same target penalises nobody again. A penalty recovers
//! with time (the policy's `recovery_per_day`), so the targets of penalised reporters are
//! decided again at every garbage collection while a penalty lasts; one fully recovered
//! leaves the store.

use super::handle::{AllowError, Allowed, Explained, TargetExplained, MAX_REASON_BYTES};
use super::store::{Change, Table};
use super::Engine;
use crate::metrics::ReporterLabel;
use crate::now_ms;
use anyhow::Context;
use fraudmesh::identity::PublicKey;
use fraudmesh::policy::{Allow, Penalty, FULL};
use fraudmesh::proto;
use fraudmesh::sighting::{Evidence, Kind, Record, RecordId};
use fraudmesh::target::{Target, PROTOCOL_BOUNDS};
use fraudmesh::Millis;
use prost::Message;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use tokio::sync::oneshot;

/// An allow as stored (JSON: a handful per node, read by people debugging a store).
#[derive(Serialize, Deserialize)]
struct StoredAllow {
    reason: String,
    at: Millis,
    until: Option<Millis>,
}

/// A penalty as stored.
#[derive(Serialize, Deserialize)]
struct StoredPenalty {
    amount: u32,
    at: Millis,
}

fn target_key(target: &Target) -> Vec<u8> {
    target.to_proto().encode_to_vec()
}

fn target_of_key(key: &[u8]) -> anyhow::Result<Target> {
    let p = proto::Target::decode(key).context("decoding a stored target")?;
    Target::from_proto(&p, PROTOCOL_BOUNDS).context("a stored target")
}

impl Engine {
    /// Loads the allows and the penalties at start; expired or corrupt entries are
    /// removed from the store.
    pub(super) fn load_overrides(&mut self, now: Millis) {
        let mut stale: Vec<(Table, Vec<u8>)> = Vec::new();
        let mut allows = Vec::new();
        let mut penalties = Vec::new();
        let scanned = self.store.table_scan(Table::Allows, &mut |entry| {
            let Ok((k, v)) = entry else { return };
            match (target_of_key(k), serde_json::from_slice::<StoredAllow>(v)) {
                (Ok(t), Ok(a)) if a.until.is_none_or(|u| u > now) => allows.push((t, a)),
                _ => stale.push((Table::Allows, k.to_vec())),
            }
        });
        if let Err(e) = scanned {
            tracing::warn!(error = %e, "loading the allows stopped early");
        }
        let scanned = self.store.table_scan(Table::Reputation, &mut |entry| {
            let Ok((k, v)) = entry else { return };
            match (PublicKey::from_bytes(k), serde_json::from_slice::<StoredPenalty>(v)) {
                (Ok(r), Ok(p)) => penalties.push((r, p)),
                _ => stale.push((Table::Reputation, k.to_vec())),
            }
        });
        if let Err(e) = scanned {
            tracing::warn!(error = %e, "loading the reputation penalties stopped early");
        }
        let (n_allows, n_penalties) = (allows.len(), penalties.len());
        for (t, a) in allows {
            self.policy.allow(
                t,
                Allow {
                    reason: a.reason,
                    at: a.at,
                    until: a.until,
                },
            );
        }
        for (r, p) in penalties {
            self.policy.restore_penalty(
                r,
                Penalty {
                    amount: p.amount,
                    at: p.at,
                },
            );
        }
        if !stale.is_empty() {
            self.queue_writes(stale.into_iter().map(|(t, k)| Change::Table(t, k, None)));
        }
        tracing::info!(
            allows = n_allows,
            penalties = n_penalties,
            "local overrides restored from the store"
        );
        self.update_override_metrics(now);
    }

    /// The allows gauge and every penalised reporter's reputation.
    pub(super) fn update_override_metrics(&self, now: Millis) {
        self.metrics.allows.set(self.policy.allows().count() as i64);
        self.metrics.reporter_reputation.clear();
        for (r, _) in self.policy.penalties() {
            let factor = self.policy.reputation_of(r, now);
            if factor < FULL {
                self.metrics
                    .reporter_reputation
                    .get_or_create(&ReporterLabel { reporter: r.peer_id() })
                    .set(f64::from(factor) / f64::from(FULL));
            }
        }
    }

    /// Ends the allows whose time is up; their targets are decided again at once.
    pub(super) fn expire_allows(&mut self, now: Millis) {
        let gone = self.policy.expire_allows(now);
        if gone.is_empty() {
            return;
        }
        tracing::info!(allows = gone.len(), "allows ended");
        self.queue_writes(gone.iter().map(|t| Change::Table(Table::Allows, target_key(t), None)));
        self.decide_everything(now);
        self.update_override_metrics(now);
        self.rebuild_if_due();
    }

    /// At every garbage collection while a penalty lasts: the penalised reporters regain
    /// weight, so their targets are decided again; recovered ones leave the store.
    pub(super) fn recover_reputation(&mut self, now: Millis) {
        if self.policy.penalties().next().is_none() {
            return;
        }
        let mut members: BTreeSet<PublicKey> = self.policy.penalties().map(|(r, _)| *r).collect();
        let recovered = self.policy.expire_penalties(now);
        if !recovered.is_empty() {
            self.queue_writes(
                recovered
                    .iter()
                    .map(|r| Change::Table(Table::Reputation, r.as_bytes().to_vec(), None)),
            );
        }
        members.extend(recovered);
        let targets: Vec<Target> = self
            .ledger
            .by_target()
            .filter_map(|(t, mut entries)| entries.any(|e| members.contains(e.reporter())).then(|| t.clone()))
            .collect();
        self.redecide(&targets, now);
        self.update_override_metrics(now);
    }

    /// Every allow in force.
    pub(super) fn allows(&self) -> Vec<(Target, Allow)> {
        let now = now_ms();
        let mut out: Vec<(Target, Allow)> = self
            .policy
            .allows()
            .filter(|(_, a)| a.until.is_none_or(|u| u > now))
            .map(|(t, a)| (t.clone(), a.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The engine's part of an allow, without waiting for the store.
    pub fn allow_local(
        &mut self,
        target: Target,
        until: Option<Millis>,
        reason: String,
    ) -> Result<Allowed, AllowError> {
        let now = now_ms();
        let reason = reason.trim().to_string();
        if reason.is_empty() {
            return Err(AllowError::NoReason);
        }
        if reason.len() > MAX_REASON_BYTES {
            return Err(AllowError::ReasonTooLong { max: MAX_REASON_BYTES });
        }
        if let Some(until) = until.filter(|u| *u <= now) {
            return Err(AllowError::UntilPassed { until });
        }
        let renewing = self
            .policy
            .allows()
            .any(|(t, a)| *t == target && a.until.is_none_or(|u| u > now));
        let mut penalised: BTreeSet<PublicKey> = BTreeSet::new();
        if !renewing {
            let me = self.identity.public();
            for (t, entries) in self.ledger.by_target() {
                if !t.overlaps(&target) {
                    continue;
                }
                for e in entries {
                    let r = e.reporter();
                    if e.kind() != Kind::Retract && e.is_active(now) && *r != me && !self.policy.is_stranger(r, now) {
                        penalised.insert(*r);
                    }
                }
            }
        }
        let mut changes = Vec::new();
        penalised.retain(|r| self.policy.penalise(r, now));
        for r in &penalised {
            if let Some((_, p)) = self.policy.penalties().find(|(k, _)| *k == r) {
                let stored = StoredPenalty {
                    amount: p.amount,
                    at: p.at,
                };
                changes.push(Change::Table(
                    Table::Reputation,
                    r.as_bytes().to_vec(),
                    Some(serde_json::to_vec(&stored).unwrap_or_default()),
                ));
            }
        }
        let stored = StoredAllow {
            reason: reason.clone(),
            at: now,
            until,
        };
        changes.push(Change::Table(
            Table::Allows,
            target_key(&target),
            Some(serde_json::to_vec(&stored).unwrap_or_default()),
        ));
        tracing::info!(target = %target, ?until, %reason, penalised = penalised.len(), "allow");
        self.policy.allow(target, Allow { reason, at: now, until });
        self.queue_writes(changes);
        self.decide_everything(now);
        self.update_override_metrics(now);
        self.rebuild();
        Ok(Allowed {
            penalised: penalised.into_iter().collect(),
        })
    }

    /// An allow, acknowledged once flushed.
    pub(super) fn allow_command(
        &mut self,
        target: Target,
        until: Option<Millis>,
        reason: String,
        reply: oneshot::Sender<Result<Allowed, AllowError>>,
    ) {
        match self.allow_local(target, until, reason) {
            Err(e) => {
                let _ = reply.send(Err(e));
            }
            Ok(allowed) => {
                self.hand_over_writes();
                self.writer.flush_then(Box::new(move |r| {
                    let _ = reply.send(r.map(|()| allowed).map_err(|e| AllowError::Store(format!("{e:#}"))));
                }));
            }
        }
    }

    /// The engine's part of an unallow, without waiting for the store.
    pub fn unallow_local(&mut self, target: &Target) -> bool {
        let now = now_ms();
        if !self.policy.unallow(target) {
            return false;
        }
        tracing::info!(target = %target, "allow removed");
        self.queue_writes([Change::Table(Table::Allows, target_key(target), None)]);
        self.decide_everything(now);
        self.update_override_metrics(now);
        self.rebuild();
        true
    }

    /// An unallow, acknowledged once flushed.
    pub(super) fn unallow_command(&mut self, target: Target, reply: oneshot::Sender<anyhow::Result<bool>>) {
        let removed = self.unallow_local(&target);
        self.hand_over_writes();
        self.writer.flush_then(Box::new(move |r| {
            let _ = reply.send(r.map(|()| removed));
        }));
    }

    /// Explains `target` and every broader prefix covering it that holds records.
    pub fn explain(&mut self, target: &Target) -> Explained {
        let now = now_ms();
        let mut asked = vec![target.clone()];
        asked.extend(target.covering().into_iter().filter(|t| t != target));
        let mut targets = Vec::new();
        for t in asked {
            if t != *target && self.ledger.for_target(&t).next().is_none() {
                continue;
            }
            let explanation = self.policy.explain(&t, self.ledger.for_target(&t), now);
            let evidence = explanation
                .records
                .iter()
                .map(|r| self.evidence_of(&r.reporter, &t, &r.id))
                .collect();
            targets.push(TargetExplained {
                target: t,
                explanation,
                evidence,
            });
        }
        Explained {
            blocked: targets.iter().any(|t| t.explanation.verdict.blocked),
            targets,
        }
    }

    /// A record's evidence from the store, if the stored record is that one.
    fn evidence_of(&mut self, reporter: &PublicKey, target: &Target, id: &RecordId) -> Option<Evidence> {
        let bytes = self.store.get(reporter, target).ok()??;
        let r = Record::decode_stored(&bytes, &mut self.keys).ok()?;
        (r.id() == id).then(|| r.evidence())
    }
}
