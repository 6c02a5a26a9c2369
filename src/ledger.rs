//! The ledger: a state-based CRDT holding, for every (reporter, target), the newest
//! signed record that reporter made of that target.
//!
//! # Merge laws
//! The state is a map `(reporter, target) → record`; merging keeps, per key, the larger
//! record by `(observed_at, id)` — last writer wins, ties broken by the record id, which
//! is a hash of the signed bytes and so the same on every node. Taking the maximum under
//! a total order makes merge **commutative**, **associative** and **idempotent**: nodes
//! that have received the same records, in any order and with any duplicates, hold the
//! same state. The property tests below check exactly these laws.
//!
//! # Retraction and expiry
//! A retraction is a record like any other (kind `retract`) and wins over its reporter's
//! older records by the same rule; it never counts towards a block. Expiry is a pure
//! function of (record, now), so expired records can be dropped ([`Ledger::expire`]) by
//! every node independently. A retraction signed with the maximum TTL outlives every
//! older record it supersedes, so garbage collection can never resurrect what it withdrew.

use crate::identity::PublicKey;
use crate::sighting::{Kind, Record, RecordId};
use crate::target::Target;
use crate::Millis;
use smallvec::SmallVec;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

/// What the ledger keeps of a record: the fields merging and deciding need, and the
/// id. The signed bytes are not kept in memory (the store has them), nor the target (it
/// is the ledger's key): a ledger may hold a million records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    reporter: PublicKey,
    kind: Kind,
    observed_at: Millis,
    ttl_s: u32,
    count: u32,
    id: RecordId,
}

impl RecordSummary {
    /// The reporter's public key (who signed the record).
    pub fn reporter(&self) -> &PublicKey {
        &self.reporter
    }
    /// The kind of sighting ([`Kind::Retract`] withdraws rather than accuses).
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// When the reporter saw it, ms since the epoch (the reporter's clock).
    pub fn observed_at(&self) -> Millis {
        self.observed_at
    }
    /// How many attack events the record summarises (at least 1).
    pub fn count(&self) -> u32 {
        self.count
    }
    /// The record id, SHA-256(payload || signature).
    pub fn id(&self) -> &RecordId {
        &self.id
    }
    /// The first instant it is no longer active.
    pub fn expires_at(&self) -> Millis {
        self.observed_at.saturating_add(u64::from(self.ttl_s) * 1000)
    }
    /// Expiry as a pure function of (record, now).
    pub fn is_active(&self, now: Millis) -> bool {
        now < self.expires_at()
    }
}

impl From<&Record> for RecordSummary {
    fn from(r: &Record) -> Self {
        let s = r.sighting();
        Self {
            reporter: s.reporter,
            kind: s.kind,
            observed_at: s.observed_at,
            ttl_s: s.ttl_s,
            count: s.count,
            id: *r.id(),
        }
    }
}

/// What merging one record did to the ledger (and the entry it displaced, if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// First record of this (reporter, target).
    Inserted,
    /// Replaced an older record of this (reporter, target), returned here.
    Replaced(Box<RecordSummary>),
    /// Exactly this record was already held.
    Duplicate,
    /// A newer record of this (reporter, target) is held; nothing changed.
    Stale,
}

impl Merge {
    /// Whether the ledger changed: the record was inserted or replaced an older one.
    pub fn changed(&self) -> bool {
        matches!(self, Self::Inserted | Self::Replaced(_))
    }
}

/// Orders two records of the same (reporter, target): the greater one wins.
pub fn newer(a: &RecordSummary, b: &RecordSummary) -> Ordering {
    (a.observed_at, &a.id).cmp(&(b.observed_at, &b.id))
}

/// The records of one target, sorted by reporter. Most targets have one reporter, so
/// one entry lives inline.
type PerTarget = SmallVec<[RecordSummary; 1]>;

/// The CRDT state: the newest [`RecordSummary`] per (reporter, target), indexed by target, with
/// a count of entries per reporter (for per-reporter quotas).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    by_target: BTreeMap<Target, PerTarget>,
    per_reporter: HashMap<PublicKey, usize>,
    len: usize,
}

impl Ledger {
    /// An empty ledger, holding no entries (the CRDT's bottom element).
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges one record (join with a singleton state).
    pub fn merge(&mut self, record: &Record) -> Merge {
        self.merge_entry(&record.sighting().target, RecordSummary::from(record))
    }

    /// Merges one entry accusing `target` (as [`Ledger::merge`], for entries already
    /// stripped of their signed bytes, e.g. loaded from the store).
    pub fn merge_entry(&mut self, target: &Target, entry: RecordSummary) -> Merge {
        let reporter = entry.reporter;
        let per = match self.by_target.get_mut(target) {
            Some(per) => per,
            None => self.by_target.entry(target.clone()).or_default(),
        };
        match per.binary_search_by(|e| e.reporter.cmp(&reporter)) {
            Err(at) => {
                per.insert(at, entry);
                *self.per_reporter.entry(reporter).or_default() += 1;
                self.len += 1;
                Merge::Inserted
            }
            Ok(at) => match newer(&entry, &per[at]) {
                Ordering::Greater => Merge::Replaced(Box::new(std::mem::replace(&mut per[at], entry))),
                Ordering::Equal => Merge::Duplicate,
                Ordering::Less => Merge::Stale,
            },
        }
    }

    /// Merges another whole state into this one.
    pub fn merge_ledger(&mut self, other: &Ledger) {
        for (t, entries) in other.by_target() {
            for e in entries {
                self.merge_entry(t, e.clone());
            }
        }
    }

    /// Whether `record` would change this ledger if merged (new and newest).
    pub fn would_change(&self, record: &Record) -> bool {
        let s = record.sighting();
        match self.get(&s.reporter, &s.target) {
            None => true,
            Some(held) => (s.observed_at, record.id()).cmp(&(held.observed_at, &held.id)) == Ordering::Greater,
        }
    }

    /// The entry one reporter holds of one target.
    pub fn get(&self, reporter: &PublicKey, target: &Target) -> Option<&RecordSummary> {
        let per = self.by_target.get(target)?;
        per.binary_search_by(|e| e.reporter.cmp(reporter))
            .ok()
            .map(|at| &per[at])
    }

    /// The entries held for one target, one per reporter.
    pub fn for_target(&self, target: &Target) -> impl Iterator<Item = &RecordSummary> {
        self.by_target.get(target).into_iter().flat_map(|per| per.iter())
    }

    /// Every target with at least one entry, with its entries.
    pub fn by_target(&self) -> impl Iterator<Item = (&Target, impl Iterator<Item = &RecordSummary>)> {
        self.by_target.iter().map(|(t, per)| (t, per.iter()))
    }

    /// Every entry held, expired ones included, in target order.
    pub fn entries(&self) -> impl Iterator<Item = &RecordSummary> {
        self.by_target.values().flat_map(|per| per.iter())
    }

    /// How many entries are held: one per (reporter, target), expired ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the ledger holds no entry at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries held from one reporter.
    pub fn count_of(&self, reporter: &PublicKey) -> usize {
        self.per_reporter.get(reporter).copied().unwrap_or(0)
    }

    /// Removes and returns every entry no longer active at `now`, with its target.
    pub fn expire(&mut self, now: Millis) -> Vec<(Target, RecordSummary)> {
        let mut gone = Vec::new();
        self.by_target.retain(|t, per| {
            per.retain(|e| {
                let keep = e.is_active(now);
                if !keep {
                    gone.push((t.clone(), e.clone()));
                }
                keep
            });
            !per.is_empty()
        });
        for (_, e) in &gone {
            self.forget_one(&e.reporter);
        }
        gone
    }

    /// Removes one reporter's entry of a target (for evicting strangers under pressure).
    pub fn remove(&mut self, reporter: &PublicKey, target: &Target) -> Option<RecordSummary> {
        let per = self.by_target.get_mut(target)?;
        let at = per.binary_search_by(|e| e.reporter.cmp(reporter)).ok()?;
        let e = per.remove(at);
        if per.is_empty() {
            self.by_target.remove(target);
        }
        self.forget_one(reporter);
        Some(e)
    }

    fn forget_one(&mut self, reporter: &PublicKey) {
        self.len -= 1;
        if let Some(n) = self.per_reporter.get_mut(reporter) {
            *n -= 1;
            if *n == 0 {
                self.per_reporter.remove(reporter);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::sighting::{sign, Draft, Evidence, Kind};
    use crate::target::Bounds;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    /// A fixed pool of records over 3 reporters × 4 targets × 3 times × 2 TTLs, with
    /// equal observed-at values so ties by id are exercised.
    fn pool() -> &'static Vec<Record> {
        static POOL: OnceLock<Vec<Record>> = OnceLock::new();
        POOL.get_or_init(|| {
            let ids: Vec<_> = (1..=3u8).map(|i| Identity::from_secret([i; 32])).collect();
            let mut out = Vec::new();
            for id in &ids {
                for t in ["1.1.1.1", "2.2.2.0/24", "2001:db8::1", "+41900"] {
                    for at in [1000u64, 2000, 3000] {
                        for ttl in [60u32, 120] {
                            for kind in [Kind::Scan, Kind::Retract] {
                                out.push(sign(
                                    id,
                                    Draft {
                                        target: Target::parse(t, Bounds::default()).unwrap(),
                                        kind,
                                        observed_at: at,
                                        ttl_s: ttl,
                                        count: 1,
                                        evidence: Evidence::default(),
                                    },
                                ));
                            }
                        }
                    }
                }
            }
            out
        })
    }

    fn ledger_of(idx: &[usize]) -> Ledger {
        let mut l = Ledger::new();
        for &i in idx {
            l.merge(&pool()[i]);
        }
        l
    }

    fn indices() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(0..144usize, 0..60)
    }

    fn joined(a: &Ledger, b: &Ledger) -> Ledger {
        let mut x = a.clone();
        x.merge_ledger(b);
        x
    }

    #[test]
    fn pool_has_expected_size() {
        assert_eq!(pool().len(), 144);
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in indices(), b in indices()) {
            let (la, lb) = (ledger_of(&a), ledger_of(&b));
            prop_assert_eq!(joined(&la, &lb), joined(&lb, &la));
        }

        #[test]
        fn merge_is_associative(a in indices(), b in indices(), c in indices()) {
            let (la, lb, lc) = (ledger_of(&a), ledger_of(&b), ledger_of(&c));
            prop_assert_eq!(joined(&joined(&la, &lb), &lc), joined(&la, &joined(&lb, &lc)));
        }

        #[test]
        fn merge_is_idempotent(a in indices()) {
            let la = ledger_of(&a);
            prop_assert_eq!(joined(&la, &la), la);
        }

        #[test]
        fn order_and_duplicates_do_not_matter(a in indices(), seed in any::<u64>()) {
            // Same records, shuffled and with duplicates, give the same state.
            let mut b = a.clone();
            b.extend(a.iter().step_by(2));
            let mut s = seed;
            for i in (1..b.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                b.swap(i, (s >> 33) as usize % (i + 1));
            }
            prop_assert_eq!(ledger_of(&a), ledger_of(&b));
        }

        #[test]
        fn holds_the_newest_per_reporter_and_target(a in indices()) {
            let l = ledger_of(&a);
            for (t, entries) in l.by_target() {
                for r in entries {
                    for &i in &a {
                        let o = &pool()[i];
                        if o.sighting().reporter == *r.reporter() && o.sighting().target == *t {
                            prop_assert_ne!(newer(&RecordSummary::from(o), r), Ordering::Greater);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn merge_outcomes_and_counts() {
        let p = pool();
        let mut l = Ledger::new();
        // p[0]: reporter 1, 1.1.1.1, at 1000; p[4]: same key at 2000.
        assert_eq!(l.merge(&p[0]), Merge::Inserted);
        assert_eq!(l.merge(&p[0]), Merge::Duplicate);
        assert_eq!(l.merge(&p[4]), Merge::Replaced(Box::new(RecordSummary::from(&p[0]))));
        assert_eq!(l.merge(&p[0]), Merge::Stale);
        assert!(!l.would_change(&p[0]));
        assert_eq!(l.len(), 1);
        assert_eq!(l.count_of(&p[0].sighting().reporter), 1);
    }

    #[test]
    fn expire_drops_exactly_the_inactive() {
        let mut l = ledger_of(&(0..144).collect::<Vec<_>>());
        let total = l.len();
        // Newest records are at 3000 ms: expiry 63000 (ttl 60) or 123000 (ttl 120).
        let gone = l.expire(63_000);
        assert!(gone.iter().all(|(_, r)| !r.is_active(63_000)));
        assert!(l.entries().all(|r| r.is_active(63_000)));
        assert_eq!(gone.len() + l.len(), total);
        let per: usize = l.entries().map(|r| usize::from(l.count_of(r.reporter()) > 0)).sum();
        assert_eq!(per, l.len());
        l.expire(u64::MAX);
        assert!(l.is_empty());
        assert_eq!(l.count_of(&p_reporter()), 0);
    }

    fn p_reporter() -> PublicKey {
        pool()[0].sighting().reporter
    }
}
