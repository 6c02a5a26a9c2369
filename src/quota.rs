//! Fair shares of the store for strangers: which strangers' records a node keeps when all
//! strangers together may hold at most `max_total` records and each at most `per_stranger`.
//!
//! Stranger keys cost nothing, so a flood can always bring more records than a node keeps.
//! Refusing newcomers once the strangers' share is full would let one flood lock every
//! later stranger out for as long as the flood's TTLs run. So the quota evicts instead of
//! refusing: a stranger's new record is admitted while there is room; once strangers hold
//! `max_total`, it takes the place of the **oldest record of the most prolific stranger**
//! (ties: the stranger whose oldest record is oldest) — provided that stranger holds more
//! records than the newcomer does. Two strangers of equal share therefore never evict
//! each other, and under pressure the shares converge towards equal ones (a flooder's
//! surplus goes first). A stranger already at `per_stranger` is refused.
//!
//! The quota counts as it admits, so one batch of records can never overshoot a bound.
//! It is pure: "oldest" is the order of the record keys the caller chooses (the engine
//! uses `(observed_at, target)`), and no clock is read.
//!
//! # Guarantees (property-tested below)
//! - After any sequence of admissions, replacements and removals: the total is at most
//!   `max_total` and each stranger holds at most `per_stranger`.
//! - A stranger holding nothing is always admitted (when both bounds are at least 1).
//! - An evicted record was the oldest of a stranger that held the most records, and more
//!   than the admitted stranger held.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// Why a stranger's record was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The stranger already holds `per_stranger` records.
    #[error("the stranger holds its maximum of records")]
    PerStranger,
    /// Strangers hold `max_total` records and none holds more than this stranger: it
    /// already has at least a fair share.
    #[error("strangers hold their maximum of records and this one has a fair share")]
    Full,
}

impl Refused {
    /// A short, stable label for metrics (`reason="..."`); the engine's labels of old.
    pub fn label(self) -> &'static str {
        match self {
            Self::PerStranger => "stranger_records",
            Self::Full => "strangers_full",
        }
    }
}

/// The records strangers hold, by stranger `S`, each record named by a key `K` whose
/// order is its age (smallest = oldest).
#[derive(Debug, Clone)]
pub struct Quota<S, K> {
    max_total: usize,
    per_stranger: usize,
    held: HashMap<S, BTreeSet<K>>,
    /// `(records held, Reverse(oldest record), stranger)` of every stranger holding any:
    /// the last element is the most prolific stranger, ties broken towards the oldest.
    ranking: BTreeSet<(usize, Reverse<K>, S)>,
    total: usize,
}

impl<S, K> Quota<S, K>
where
    S: Ord + Hash + Clone,
    K: Ord + Clone,
{
    /// An empty quota: at most `max_total` records of all strangers, `per_stranger` each.
    pub fn new(max_total: usize, per_stranger: usize) -> Self {
        Self {
            max_total,
            per_stranger,
            held: HashMap::new(),
            ranking: BTreeSet::new(),
            total: 0,
        }
    }

    /// Records held by all strangers.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Records held by one stranger.
    pub fn count_of(&self, stranger: &S) -> usize {
        self.held.get(stranger).map_or(0, BTreeSet::len)
    }

    /// Strangers holding at least one record.
    pub fn strangers(&self) -> usize {
        self.held.len()
    }

    /// Admits a new record `key` of `stranger` (one it does not hold yet; a newer record
    /// of a key it holds is [`Quota::replace`]). `Ok(Some(..))` names the record evicted
    /// to make room, which the caller must drop.
    pub fn admit(&mut self, stranger: &S, key: K) -> Result<Option<(S, K)>, Refused> {
        let n = self.count_of(stranger);
        if n >= self.per_stranger {
            return Err(Refused::PerStranger);
        }
        let evicted = if self.total >= self.max_total {
            let Some((most, Reverse(oldest), victim)) = self.ranking.last().cloned() else {
                return Err(Refused::Full);
            };
            if most <= n {
                return Err(Refused::Full);
            }
            self.remove(&victim, &oldest);
            Some((victim, oldest))
        } else {
            None
        };
        self.update(stranger, |set| {
            set.insert(key);
        });
        Ok(evicted)
    }

    /// A newer record `new` replaces `old` of the same stranger (the same target): the
    /// count stays, the age changes. False (and nothing changes) if `old` is not held.
    pub fn replace(&mut self, stranger: &S, old: &K, new: K) -> bool {
        if !self.held.get(stranger).is_some_and(|set| set.contains(old)) {
            return false;
        }
        self.update(stranger, |set| {
            set.remove(old);
            set.insert(new);
        });
        true
    }

    /// Forgets one record (expired, or removed by the caller). False if it was not held.
    pub fn remove(&mut self, stranger: &S, key: &K) -> bool {
        if !self.held.get(stranger).is_some_and(|set| set.contains(key)) {
            return false;
        }
        self.update(stranger, |set| {
            set.remove(key);
        });
        true
    }

    /// Applies `change` to one stranger's set, keeping the ranking and the total true.
    fn update(&mut self, stranger: &S, change: impl FnOnce(&mut BTreeSet<K>)) {
        let set = self.held.entry(stranger.clone()).or_default();
        let before = set.len();
        if let Some(oldest) = set.first() {
            self.ranking
                .remove(&(before, Reverse(oldest.clone()), stranger.clone()));
        }
        change(set);
        let after = set.len();
        match set.first() {
            Some(oldest) => {
                self.ranking.insert((after, Reverse(oldest.clone()), stranger.clone()));
            }
            None => {
                self.held.remove(stranger);
            }
        }
        self.total = self.total + after - before;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// Stranger `s` brings a new record.
        Admit(u8),
        /// Stranger `s` replaces its `i`-th record (mod its count) with a newer one.
        Replace(u8, usize),
        /// Stranger `s`'s `i`-th record expires.
        Remove(u8, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..12u8).prop_map(Op::Admit),
            1 => (0..12u8, any::<usize>()).prop_map(|(s, i)| Op::Replace(s, i)),
            2 => (0..12u8, any::<usize>()).prop_map(|(s, i)| Op::Remove(s, i)),
        ]
    }

    /// Keys are (age, serial): unique, ordered by age.
    type Key = (u64, u64);

    proptest! {
        #[test]
        fn bounds_hold_newcomers_get_in_and_only_the_most_prolific_lose(
            max_total in 1..40usize,
            per_stranger in 1..15usize,
            ops in prop::collection::vec(op(), 0..300),
        ) {
            let mut q: Quota<u8, Key> = Quota::new(max_total, per_stranger);
            let mut serial = 0u64;
            for op in ops {
                serial += 1;
                match op {
                    Op::Admit(s) => {
                        let before: HashMap<u8, usize> = (0..12).map(|x| (x, q.count_of(&x))).collect();
                        let oldest_of = |q: &Quota<u8, Key>, v: u8| q.held.get(&v).and_then(|set| set.first().copied());
                        let snapshot = q.clone();
                        // Ages mostly increase, sometimes jump back (records dated earlier).
                        let age = if serial % 7 == 0 { serial / 2 } else { serial };
                        match q.admit(&s, (age, serial)) {
                            Ok(evicted) => {
                                prop_assert!(before[&s] < per_stranger);
                                if let Some((v, k)) = evicted {
                                    let most = *before.values().max().unwrap();
                                    prop_assert_eq!(before[&v], most, "the victim was the most prolific");
                                    prop_assert!(before[&v] > before[&s], "and held more than the newcomer");
                                    prop_assert_eq!(Some(k), oldest_of(&snapshot, v), "its oldest record went");
                                    let oldest_among_most = (0..12u8)
                                        .filter(|x| before[x] == most)
                                        .filter_map(|x| oldest_of(&snapshot, x))
                                        .min();
                                    prop_assert_eq!(Some(k), oldest_among_most, "ties: the oldest");
                                } else {
                                    prop_assert!(snapshot.total() < max_total);
                                }
                            }
                            Err(Refused::PerStranger) => prop_assert_eq!(before[&s], per_stranger),
                            Err(Refused::Full) => {
                                prop_assert!(before[&s] > 0, "a newcomer is never refused");
                                prop_assert!(before.values().all(|&n| n <= before[&s]));
                            }
                        }
                    }
                    Op::Replace(s, i) => {
                        let held: Vec<Key> = q.held.get(&s).map(|set| set.iter().copied().collect()).unwrap_or_default();
                        if !held.is_empty() {
                            let old = held[i % held.len()];
                            let n = q.total();
                            prop_assert!(q.replace(&s, &old, (serial, serial)));
                            prop_assert_eq!(q.total(), n);
                        }
                    }
                    Op::Remove(s, i) => {
                        let held: Vec<Key> = q.held.get(&s).map(|set| set.iter().copied().collect()).unwrap_or_default();
                        if !held.is_empty() {
                            prop_assert!(q.remove(&s, &held[i % held.len()]));
                        }
                    }
                }
                // Invariants after every step.
                let sum: usize = (0..12).map(|x| q.count_of(&x)).sum();
                prop_assert_eq!(q.total(), sum);
                prop_assert!(q.total() <= max_total);
                prop_assert!((0..12).all(|x| q.count_of(&x) <= per_stranger));
                prop_assert_eq!(q.ranking.len(), q.held.len());
            }
        }
    }

    #[test]
    fn a_flood_cannot_keep_a_newcomer_out_and_shares_converge() {
        let mut q: Quota<u32, u64> = Quota::new(100, 1000);
        let mut age = 0;
        // One flooder fills everything.
        for _ in 0..100 {
            age += 1;
            assert_eq!(q.admit(&0, age), Ok(None));
        }
        assert_eq!(q.admit(&0, 1000), Err(Refused::Full), "no room, and nobody holds more");
        // Each newcomer takes the flooder's oldest record.
        for s in 1..=50 {
            age += 1;
            assert_eq!(q.admit(&s, age), Ok(Some((0, s as u64))));
        }
        assert_eq!(q.count_of(&0), 50);
        assert_eq!(q.total(), 100);
        // Two with a fair share never evict each other; a stranger with more loses.
        age += 1;
        assert_eq!(q.admit(&1, age), Ok(Some((0, 51))));
        assert_eq!(q.count_of(&1), 2);
        q.remove(&0, &52);
        age += 1;
        assert_eq!(q.admit(&2, age), Ok(None), "room after a removal");
    }

    #[test]
    fn per_stranger_cap_and_empty_bounds() {
        let mut q: Quota<u8, u8> = Quota::new(10, 2);
        assert_eq!(q.admit(&1, 1), Ok(None));
        assert_eq!(q.admit(&1, 2), Ok(None));
        assert_eq!(q.admit(&1, 3), Err(Refused::PerStranger));
        assert!(q.replace(&1, &1, 4));
        assert!(!q.replace(&1, &1, 5), "no longer held");
        assert_eq!(q.count_of(&1), 2);
        let mut none: Quota<u8, u8> = Quota::new(0, 5);
        assert_eq!(none.admit(&1, 1), Err(Refused::Full));
    }
}
