//! The roster: the CRDT of endorsement records, holding the newest record per
//! (organisation, member).
//!
//! Merging is commutative, associative and idempotent: between two records of the same
//! (org, member) the one with the larger `issued_at` wins, equal values broken by the
//! larger record id — the same rule as the sighting ledger's — so replicas holding the
//! same records in any order hold the same roster. A revocation is such a record: it wins
//! over every older endorsement and, expiring exactly `issued_at + MAX_TTL_MS`, outlives
//! all of them.
//!
//! Expired records are kept (they no longer endorse anyone) until `issued_at +
//! MAX_TTL_MS`, when every record they superseded has expired too; only then does
//! [`Roster::expire`] drop them. Dropping a newer, shorter endorsement earlier would let an
//! older, longer one arriving again by sync win once more.

use crate::endorsement::{EndorsementRecord, MAX_TTL_MS};
use crate::identity::PublicKey;
use crate::sighting::RecordId;
use crate::sync::Item;
use crate::Millis;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

/// The newest endorsement record per (org, member), indexed by member and by id.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    /// member -> org -> newest record.
    by_member: BTreeMap<PublicKey, BTreeMap<PublicKey, EndorsementRecord>>,
    /// id -> (member, org) of every held record.
    ids: HashMap<RecordId, (PublicKey, PublicKey)>,
    /// How many records each org has here.
    per_org: HashMap<PublicKey, usize>,
}

/// Orders two records of the same (org, member): the newer is greater.
pub fn newer(a: &EndorsementRecord, b: &EndorsementRecord) -> Ordering {
    a.endorsement()
        .issued_at
        .cmp(&b.endorsement().issued_at)
        .then_with(|| a.id().cmp(b.id()))
}

impl Roster {
    /// An empty roster.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges one record; true if the roster changed (the record is newer than the one
    /// held for its (org, member), or the first).
    pub fn merge(&mut self, rec: &EndorsementRecord) -> bool {
        let e = rec.endorsement();
        let orgs = self.by_member.entry(e.member).or_default();
        match orgs.get_mut(&e.org) {
            Some(held) if newer(rec, held) != Ordering::Greater => false,
            Some(held) => {
                self.ids.remove(held.id());
                *held = rec.clone();
                self.ids.insert(*rec.id(), (e.member, e.org));
                true
            }
            None => {
                orgs.insert(e.org, rec.clone());
                self.ids.insert(*rec.id(), (e.member, e.org));
                *self.per_org.entry(e.org).or_default() += 1;
                true
            }
        }
    }

    /// Whether the record with this id is held (is the newest of its pair).
    pub fn holds(&self, id: &RecordId) -> bool {
        self.ids.contains_key(id)
    }

    /// The held record with this id.
    pub fn by_id(&self, id: &RecordId) -> Option<&EndorsementRecord> {
        let (member, org) = self.ids.get(id)?;
        self.get(org, member)
    }

    /// The newest record of (org, member).
    pub fn get(&self, org: &PublicKey, member: &PublicKey) -> Option<&EndorsementRecord> {
        self.by_member.get(member)?.get(org)
    }

    /// The newest record of each org about `member`, in org key order.
    pub fn of_member(&self, member: &PublicKey) -> impl Iterator<Item = &EndorsementRecord> {
        self.by_member.get(member).into_iter().flat_map(|orgs| orgs.values())
    }

    /// Drops the records that can no longer matter: those with `issued_at + MAX_TTL_MS <=
    /// now` (expired, and every record they superseded expired too; see the module doc).
    /// Returns them.
    pub fn expire(&mut self, now: Millis) -> Vec<EndorsementRecord> {
        let mut gone = Vec::new();
        self.by_member.retain(|_, orgs| {
            orgs.retain(|_, rec| {
                let keep = rec.endorsement().issued_at.saturating_add(MAX_TTL_MS) > now;
                if !keep {
                    gone.push(rec.clone());
                }
                keep
            });
            !orgs.is_empty()
        });
        for rec in &gone {
            self.ids.remove(rec.id());
            let org = rec.endorsement().org;
            if let Some(n) = self.per_org.get_mut(&org) {
                *n -= 1;
                if *n == 0 {
                    self.per_org.remove(&org);
                }
            }
        }
        gone
    }

    /// Every held record, by member then org.
    pub fn records(&self) -> impl Iterator<Item = &EndorsementRecord> {
        self.by_member.values().flat_map(|orgs| orgs.values())
    }

    /// The reconciliation items `(issued_at, id)` of the unexpired records
    /// (`now < expires_at`), sorted.
    pub fn items(&self, now: Millis) -> Vec<Item> {
        let mut out: Vec<Item> = self
            .records()
            .filter(|r| now < r.endorsement().expires_at)
            .map(|r| (r.endorsement().issued_at, *r.id()))
            .collect();
        out.sort_unstable();
        out
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// How many records of `org` are held.
    pub fn count_of_org(&self, org: &PublicKey) -> usize {
        self.per_org.get(org).copied().unwrap_or(0)
    }
}
