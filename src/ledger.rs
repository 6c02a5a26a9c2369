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

/// Reporters of one target above which its records move from a sorted vector (insert is
/// O(n)) to a B-tree keyed by reporter (insert O(log n)): a target may be reported by
/// 100,000 strangers, while most have one reporter and keep it inline.
const LARGE: usize = 64;
/// A large target's records move back to a vector at this many (hysteresis, so a target
/// hovering around [`LARGE`] is not converted back and forth).
const SMALL_AGAIN: usize = LARGE / 2;

/// The records of one target, one per reporter, in reporter order.
#[derive(Debug, Clone)]
enum PerTarget {
    /// Sorted by reporter; most targets have one reporter, so one entry lives inline.
    Small(SmallVec<[RecordSummary; 1]>),
    /// Above [`LARGE`] reporters.
    Large(BTreeMap<PublicKey, RecordSummary>),
}

impl Default for PerTarget {
    fn default() -> Self {
        Self::Small(SmallVec::new())
    }
}

/// The same records make the same state, whichever representation holds them.
impl PartialEq for PerTarget {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for PerTarget {}

impl PerTarget {
    fn len(&self) -> usize {
        match self {
            Self::Small(v) => v.len(),
            Self::Large(m) => m.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, reporter: &PublicKey) -> Option<&RecordSummary> {
        match self {
            Self::Small(v) => v.binary_search_by(|e| e.reporter.cmp(reporter)).ok().map(|at| &v[at]),
            Self::Large(m) => m.get(reporter),
        }
    }

    fn get_mut(&mut self, reporter: &PublicKey) -> Option<&mut RecordSummary> {
        match self {
            Self::Small(v) => v
                .binary_search_by(|e| e.reporter.cmp(reporter))
                .ok()
                .map(|at| &mut v[at]),
            Self::Large(m) => m.get_mut(reporter),
        }
    }

    /// Inserts the entry of a reporter not held yet.
    fn insert_new(&mut self, entry: RecordSummary) {
        match self {
            Self::Small(v) => {
                let at = v
                    .binary_search_by(|e| e.reporter.cmp(&entry.reporter))
                    .unwrap_or_else(|at| at);
                v.insert(at, entry);
                if v.len() > LARGE {
                    let m = v.drain(..).map(|e| (e.reporter, e)).collect();
                    *self = Self::Large(m);
                }
            }
            Self::Large(m) => {
                m.insert(entry.reporter, entry);
            }
        }
    }

    fn remove(&mut self, reporter: &PublicKey) -> Option<RecordSummary> {
        let e = match self {
            Self::Small(v) => {
                let at = v.binary_search_by(|e| e.reporter.cmp(reporter)).ok()?;
                v.remove(at)
            }
            Self::Large(m) => m.remove(reporter)?,
        };
        self.maybe_shrink();
        Some(e)
    }

    fn retain(&mut self, mut keep: impl FnMut(&RecordSummary) -> bool) {
        match self {
            Self::Small(v) => v.retain(|e| keep(e)),
            Self::Large(m) => m.retain(|_, e| keep(e)),
        }
        self.maybe_shrink();
    }

    fn maybe_shrink(&mut self) {
        if let Self::Large(m) = self {
            if m.len() <= SMALL_AGAIN {
                let v = std::mem::take(m).into_values().collect();
                *self = Self::Small(v);
            }
        }
    }

    fn iter(&self) -> Entries<'_> {
        match self {
            Self::Small(v) => Entries::Small(v.iter()),
            Self::Large(m) => Entries::Large(m.values()),
        }
    }
}

/// The entries of one target, in reporter order.
#[derive(Debug, Clone)]
pub enum Entries<'a> {
    /// Of a target with few reporters.
    Small(std::slice::Iter<'a, RecordSummary>),
    /// Of a target with many reporters.
    Large(std::collections::btree_map::Values<'a, PublicKey, RecordSummary>),
}

impl<'a> Iterator for Entries<'a> {
    type Item = &'a RecordSummary;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Small(i) => i.next(),
            Self::Large(i) => i.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Self::Small(i) => i.size_hint(),
            Self::Large(i) => i.size_hint(),
        }
    }
}

/// The CRDT state: the newest [`RecordSummary`] per (reporter, target), indexed by
/// target, with a count of entries per reporter (for per-reporter quotas) and an index
/// from record id to (reporter, target) (for dedup and sync fetches). The indexes are
/// derived from the map and kept true by every operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    by_target: BTreeMap<Target, PerTarget>,
    per_reporter: HashMap<PublicKey, usize>,
    by_id: HashMap<RecordId, (PublicKey, Target)>,
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
    /// stripped of their signed bytes, e.g. loaded from the store). O(log n) in the
    /// targets held and in the reporters of `target`.
    pub fn merge_entry(&mut self, target: &Target, entry: RecordSummary) -> Merge {
        let reporter = entry.reporter;
        let per = match self.by_target.get_mut(target) {
            Some(per) => per,
            None => self.by_target.entry(target.clone()).or_default(),
        };
        let id = entry.id;
        let outcome = match per.get_mut(&reporter) {
            None => {
                per.insert_new(entry);
                *self.per_reporter.entry(reporter).or_default() += 1;
                self.len += 1;
                Merge::Inserted
            }
            Some(held) => match newer(&entry, held) {
                Ordering::Greater => Merge::Replaced(Box::new(std::mem::replace(held, entry))),
                Ordering::Equal => return Merge::Duplicate,
                Ordering::Less => return Merge::Stale,
            },
        };
        if let Merge::Replaced(old) = &outcome {
            self.by_id.remove(&old.id);
        }
        self.by_id.insert(id, (reporter, target.clone()));
        outcome
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
        self.by_target.get(target)?.get(reporter)
    }

    /// Whether the record with this id is held.
    pub fn holds(&self, id: &RecordId) -> bool {
        self.by_id.contains_key(id)
    }

    /// The (reporter, target) of the record with this id, if it is held: one hash
    /// lookup, whatever the ledger's size.
    pub fn locate(&self, id: &RecordId) -> Option<(&PublicKey, &Target)> {
        self.by_id.get(id).map(|(r, t)| (r, t))
    }

    /// The entries held for one target, one per reporter, in reporter order.
    pub fn for_target(&self, target: &Target) -> impl Iterator<Item = &RecordSummary> {
        self.by_target.get(target).into_iter().flat_map(PerTarget::iter)
    }

    /// Every target with at least one entry, with its entries.
    pub fn by_target(&self) -> impl Iterator<Item = (&Target, Entries<'_>)> {
        self.by_target.iter().map(|(t, per)| (t, per.iter()))
    }

    /// Every entry held, expired ones included, in target order.
    pub fn entries(&self) -> impl Iterator<Item = &RecordSummary> {
        self.by_target.values().flat_map(PerTarget::iter)
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
            self.forget_one(e);
        }
        gone
    }

    /// Removes one reporter's entry of a target (for evicting strangers under pressure).
    pub fn remove(&mut self, reporter: &PublicKey, target: &Target) -> Option<RecordSummary> {
        let per = self.by_target.get_mut(target)?;
        let e = per.remove(reporter)?;
        if per.is_empty() {
            self.by_target.remove(target);
        }
        self.forget_one(&e);
        Some(e)
    }

    fn forget_one(&mut self, e: &RecordSummary) {
        self.len -= 1;
        self.by_id.remove(&e.id);
        if let Some(n) = self.per_reporter.get_mut(&e.reporter) {
            *n -= 1;
            if *n == 0 {
                self.per_reporter.remove(&e.reporter);
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
        fn the_id_index_matches_the_entries(a in indices(), now in 0..130_000u64) {
            let mut l = ledger_of(&a);
            prop_assert!(index_is_true(&l));
            l.expire(now);
            prop_assert!(index_is_true(&l));
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

    /// Every entry is found by its id, and nothing else is.
    fn index_is_true(l: &Ledger) -> bool {
        l.by_id.len() == l.len()
            && l.by_target()
                .all(|(t, mut es)| es.all(|e| l.locate(e.id()) == Some((e.reporter(), t))))
    }

    #[test]
    fn the_id_index_follows_merges_replacements_expiry_and_removal() {
        let mut l = ledger_of(&(0..144).collect::<Vec<_>>());
        assert!(index_is_true(&l));
        assert!(!l.holds(pool()[0].id()), "replaced by a newer record of its key");
        l.expire(63_000);
        assert!(index_is_true(&l));
        let e = l.entries().next().unwrap().clone();
        let (r, t) = l.locate(e.id()).map(|(r, t)| (*r, t.clone())).unwrap();
        assert_eq!(l.remove(&r, &t), Some(e.clone()));
        assert!(!l.holds(e.id()));
        assert!(index_is_true(&l));
    }

    #[test]
    fn a_target_with_many_reporters_changes_representation_not_state() {
        let target = Target::parse("192.0.2.1", Bounds::default()).unwrap();
        let records: Vec<Record> = (0..300u32)
            .map(|i| {
                let mut secret = [9u8; 32];
                secret[..4].copy_from_slice(&i.to_le_bytes());
                sign(
                    &Identity::from_secret(secret),
                    Draft {
                        target: target.clone(),
                        kind: Kind::Scan,
                        observed_at: 1000,
                        ttl_s: if i % 2 == 0 { 60 } else { 120 },
                        count: 1,
                        evidence: Evidence::default(),
                    },
                )
            })
            .collect();
        let mut forward = Ledger::new();
        let mut backward = Ledger::new();
        for r in &records {
            assert_eq!(forward.merge(r), Merge::Inserted);
        }
        for r in records.iter().rev() {
            backward.merge(r);
        }
        assert!(matches!(forward.by_target[&target], PerTarget::Large(_)));
        assert_eq!(forward, backward);
        let reporters: Vec<_> = forward.for_target(&target).map(|e| *e.reporter()).collect();
        assert!(
            reporters.windows(2).all(|w| w[0] < w[1]),
            "reporter order in both forms"
        );
        assert_eq!(reporters.len(), 300);
        for r in &records {
            assert_eq!(forward.merge(r), Merge::Duplicate);
            assert_eq!(forward.get(&r.sighting().reporter, &target).unwrap().id(), r.id());
        }
        // Expiring half and removing most of the rest shrinks it back to a vector; a
        // ledger that grew to the same entries directly is equal.
        let gone = forward.expire(61_000);
        assert_eq!(gone.len(), 150);
        let left: Vec<_> = forward.for_target(&target).map(|e| *e.reporter()).collect();
        for r in &left[..140] {
            forward.remove(r, &target).unwrap();
        }
        assert!(matches!(forward.by_target[&target], PerTarget::Small(_)));
        let mut direct = Ledger::new();
        for r in records.iter().filter(|r| left[140..].contains(&r.sighting().reporter)) {
            direct.merge(r);
        }
        assert_eq!(forward, direct);
        assert!(index_is_true(&forward));
        assert_eq!(forward.len(), 10);
    }

    fn p_reporter() -> PublicKey {
        pool()[0].sighting().reporter
    }
}
