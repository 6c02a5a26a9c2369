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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endorsement::{endorse, revoke, DEFAULT_TTL_MS};
    use crate::identity::Identity;

    const T: Millis = 1_800_000_000_000;
    const DAY: Millis = 86_400_000;

    fn id(n: u8) -> Identity {
        Identity::from_secret([n; 32])
    }

    fn e(org: u8, member: u8, at: Millis, ttl: Millis) -> EndorsementRecord {
        endorse(&id(org), id(member).public(), "pbx", at, ttl).unwrap()
    }

    fn r(org: u8, member: u8, at: Millis) -> EndorsementRecord {
        revoke(&id(org), id(member).public(), at).unwrap()
    }

    #[test]
    fn the_newest_record_per_org_and_member_wins() {
        let mut roster = Roster::new();
        let first = e(1, 10, T, DEFAULT_TTL_MS);
        let revoked = r(1, 10, T + DAY);
        let again = e(1, 10, T + 2 * DAY, DEFAULT_TTL_MS);
        assert!(roster.merge(&first));
        assert!(!roster.merge(&first), "a duplicate changes nothing");
        assert!(roster.merge(&revoked));
        assert!(!roster.merge(&first), "an older endorsement loses to the revocation");
        assert_eq!(roster.get(&id(1).public(), &id(10).public()), Some(&revoked));
        assert!(!roster.holds(first.id()) && roster.holds(revoked.id()));
        // A newer re-endorsement wins over the older revocation.
        assert!(roster.merge(&again));
        assert!(!roster.merge(&revoked));
        assert_eq!(roster.by_id(again.id()), Some(&again));
        assert_eq!(roster.by_id(revoked.id()), None);
        assert_eq!((roster.len(), roster.count_of_org(&id(1).public())), (1, 1));
        // Another org's record about the same member is held beside it.
        let other = e(2, 10, T, DAY);
        assert!(roster.merge(&other));
        assert_eq!(roster.of_member(&id(10).public()).count(), 2);
        assert_eq!(roster.of_member(&id(11).public()).count(), 0);
        assert_eq!(roster.len(), 2);
        assert_eq!(roster.records().count(), 2);
    }

    #[test]
    fn equal_issue_times_are_broken_by_the_larger_id_in_any_order() {
        let a = e(1, 10, T, DAY);
        let b = r(1, 10, T);
        let winner = if a.id() > b.id() { &a } else { &b };
        for order in [[&a, &b], [&b, &a]] {
            let mut roster = Roster::new();
            for rec in order {
                roster.merge(rec);
            }
            assert_eq!(roster.get(&id(1).public(), &id(10).public()), Some(winner));
        }
    }

    #[test]
    fn a_revocation_outlives_every_endorsement_it_withdraws() {
        let mut roster = Roster::new();
        let endorsed = e(1, 10, T, crate::endorsement::MAX_TTL_MS);
        let revoked = r(1, 10, T + DAY);
        roster.merge(&endorsed);
        roster.merge(&revoked);
        // Past the endorsement's own expiry: the revocation is still held, and the old
        // endorsement arriving again (from a replica that still has it) changes nothing.
        let later = endorsed.endorsement().expires_at + 1;
        assert!(roster.expire(later).is_empty());
        assert!(!roster.merge(&endorsed));
        // It goes when issued + MAX_TTL has passed.
        let gone = roster.expire(revoked.endorsement().expires_at);
        assert_eq!(gone, vec![revoked]);
        assert!(roster.is_empty());
        assert_eq!(roster.count_of_org(&id(1).public()), 0);
    }

    #[test]
    fn an_expired_short_endorsement_still_beats_an_older_longer_one() {
        let mut roster = Roster::new();
        let long = e(1, 10, T, 300 * DAY);
        let short = e(1, 10, T + DAY, DAY);
        roster.merge(&long);
        roster.merge(&short);
        let now = T + 10 * DAY;
        assert!(roster.expire(now).is_empty(), "kept until issued + MAX_TTL");
        assert!(!roster.merge(&long));
        assert!(!roster.of_member(&id(10).public()).any(|rec| rec.is_active(now)));
        // Only unexpired records are reconciled.
        assert!(roster.items(now).is_empty());
        assert_eq!(roster.items(T + DAY), vec![(T + DAY, *short.id())]);
    }

    #[test]
    fn items_are_sorted_and_expire_removes_only_what_is_past_max_ttl() {
        let mut roster = Roster::new();
        let recs = [e(1, 10, T + 5, DAY), e(1, 11, T, DAY), r(2, 10, T + 3)];
        for rec in &recs {
            roster.merge(rec);
        }
        let items = roster.items(T + 10);
        assert_eq!(items.len(), 3);
        assert!(items.windows(2).all(|w| w[0] < w[1]));
        let mut gone = roster.expire(T + crate::endorsement::MAX_TTL_MS + 4);
        gone.sort_by_key(|rec| rec.endorsement().issued_at);
        assert_eq!(gone, vec![recs[1].clone(), recs[2].clone()]);
        assert_eq!(roster.len(), 1);
        assert!(roster.holds(recs[0].id()));
        assert_eq!(roster.count_of_org(&id(2).public()), 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Merging is commutative, associative and idempotent: any order of the same
        /// records, with duplicates and split across replicas merged into each other,
        /// holds exactly the newest record of each (org, member) by (issued_at, id).
        #[test]
        fn merge_is_order_independent_and_keeps_the_newest(
            picks in proptest::collection::vec((1u8..4, 10u8..13, proptest::bool::ANY, 0u64..4, 1u64..5), 1..20),
            seeds in proptest::collection::vec(proptest::num::u64::ANY, 2..4),
        ) {
            let recs: Vec<EndorsementRecord> = picks
                .iter()
                .map(|&(org, member, is_revoke, hour, days)| {
                    if is_revoke { r(org, member, T + hour) } else { e(org, member, T + hour, days * DAY) }
                })
                .collect();
            let mut want: Vec<RecordId> = Vec::new();
            for rec in &recs {
                let k = |x: &EndorsementRecord| (x.endorsement().org, x.endorsement().member);
                let newest = recs.iter().filter(|x| k(x) == k(rec)).max_by(|a, b| newer(a, b)).unwrap();
                want.push(*newest.id());
            }
            want.sort_unstable();
            want.dedup();
            for seed in seeds {
                let mut order: Vec<usize> = (0..recs.len()).chain(0..recs.len() / 2).collect();
                let mut s = seed;
                for i in (1..order.len()).rev() {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    order.swap(i, (s >> 33) as usize % (i + 1));
                }
                // Two replicas each take half, then one merges the other's records.
                let (left, right) = order.split_at(order.len() / 2);
                let (mut a, mut b) = (Roster::new(), Roster::new());
                for &i in left { a.merge(&recs[i]); }
                for &i in right { b.merge(&recs[i]); }
                for rec in b.records() { a.merge(rec); }
                let mut got: Vec<RecordId> = a.records().map(|x| *x.id()).collect();
                got.sort_unstable();
                proptest::prop_assert_eq!(&got, &want);
                proptest::prop_assert_eq!(a.len(), want.len());
                for rec in &recs {
                    proptest::prop_assert!(!a.merge(rec), "everything merged is idempotent");
                }
            }
        }
    }
}
