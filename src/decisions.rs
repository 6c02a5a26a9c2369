//! The decision log: what is blocked now, and every change of it, numbered.
//!
//! Everything that applies the list elsewhere — nftables, Kamailio, files, CrowdSec
//! bouncers, APIBAN clients — follows this one log from its own cursor and asks "what
//! changed since n?". The answer is coalesced (one entry per target, its latest state),
//! and when the cursor is older than what the log keeps, the answer is the full set to
//! replace everything with.
//!
//! A block has an id: the sequence number of the change that began it. It stays the
//! same while the block lasts (also when its end moves), so consumers that key decisions
//! by id (CrowdSec) can delete exactly what they were given.

use crate::target::Target;
use crate::Millis;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A block in force: one target this node blocks, from when and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Stable id: the sequence number of the change that began the block.
    pub id: u64,
    /// The blocked address, prefix or number prefix.
    pub target: Target,
    /// When this node began blocking it.
    pub since: Millis,
    /// When the block ends unless renewed.
    pub until: Millis,
}

/// One numbered change of the decision log: a block set (or extended) or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A block began, or its end moved.
    Set(Block),
    /// A block ended.
    Removed {
        /// The id of the block that ended.
        id: u64,
        /// The target that is no longer blocked.
        target: Target,
        /// True when it ended because its time ran out (an enforcer whose entries carry
        /// their own timeout has nothing to do then), false when it was lifted early.
        expired: bool,
    },
}

impl Change {
    /// The target this change is about.
    pub fn target(&self) -> &Target {
        match self {
            Change::Set(d) => &d.target,
            Change::Removed { target, .. } => target,
        }
    }
}

/// The answer to "what changed since n?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// The changes after the cursor, one per target (its latest), in target order.
    Changes {
        /// The latest change of each target changed after the cursor, in target order.
        changes: Vec<Change>,
        /// The cursor to ask from next time.
        head: u64,
    },
    /// The cursor is older than the log keeps (or 0): replace everything with this.
    Full {
        /// Every block in force.
        active: Vec<Block>,
        /// The cursor to ask from next time.
        head: u64,
    },
}

impl Delta {
    /// The cursor to ask from next time.
    pub fn head(&self) -> u64 {
        match self {
            Delta::Changes { head, .. } | Delta::Full { head, .. } => *head,
        }
    }
}

/// The blocks in force and the log of their changes (the most recent `capacity`).
#[derive(Debug, Clone)]
pub struct DecisionLog {
    active: BTreeMap<Target, Block>,
    /// (until, target) of every active block, to end blocks on time.
    ends: BTreeSet<(Millis, Target)>,
    log: VecDeque<(u64, Change)>,
    capacity: usize,
    head: u64,
}

impl DecisionLog {
    /// An empty log keeping the last `capacity` changes (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            active: BTreeMap::new(),
            ends: BTreeSet::new(),
            log: VecDeque::new(),
            capacity: capacity.max(1),
            head: 0,
        }
    }

    /// Sets the state of `target` at `now`: blocked until `until`, or not blocked
    /// (`None`). Returns the change it made, if any (the same state again is none).
    pub fn set(&mut self, target: &Target, until: Option<Millis>, now: Millis) -> Option<&Change> {
        let old = self.active.get(target);
        let change = match (old, until) {
            (None, None) => return None,
            (Some(d), Some(u)) if d.until == u => return None,
            (Some(d), None) => Change::Removed {
                id: d.id,
                target: target.clone(),
                expired: d.until <= now,
            },
            (Some(d), Some(u)) => Change::Set(Block { until: u, ..d.clone() }),
            (None, Some(u)) => Change::Set(Block {
                id: self.head + 1,
                target: target.clone(),
                since: now,
                until: u,
            }),
        };
        if let Some(d) = self.active.remove(target) {
            self.ends.remove(&(d.until, d.target));
        }
        if let Change::Set(d) = &change {
            self.ends.insert((d.until, d.target.clone()));
            self.active.insert(d.target.clone(), d.clone());
        }
        self.head += 1;
        if self.log.len() == self.capacity {
            self.log.pop_front();
        }
        self.log.push_back((self.head, change));
        self.log.back().map(|(_, c)| c)
    }

    /// Targets whose block ends at or before `now`, soonest first (the caller decides
    /// them again: a block may have been renewed by a newer record).
    pub fn due(&self, now: Millis) -> Vec<Target> {
        self.ends
            .iter()
            .take_while(|(until, _)| *until <= now)
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// The block on `target`, if any.
    pub fn get(&self, target: &Target) -> Option<&Block> {
        self.active.get(target)
    }

    /// Every block in force, in target order.
    pub fn active(&self) -> impl Iterator<Item = &Block> {
        self.active.values()
    }

    /// How many blocks are in force.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    /// Whether nothing is blocked.
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// The sequence number of the last change (0 before any).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// What changed after `cursor` (a head from an earlier answer; 0 for "everything").
    pub fn since(&self, cursor: u64) -> Delta {
        let oldest = self.log.front().map_or(self.head + 1, |(seq, _)| *seq);
        if cursor == 0 || cursor + 1 < oldest || cursor > self.head {
            return Delta::Full {
                active: self.active.values().cloned().collect(),
                head: self.head,
            };
        }
        let mut latest: BTreeMap<&Target, &Change> = BTreeMap::new();
        for (_, c) in self.log.iter().skip_while(|(seq, _)| *seq <= cursor) {
            latest.insert(c.target(), c);
        }
        Delta::Changes {
            changes: latest.into_values().cloned().collect(),
            head: self.head,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Bounds;
    use proptest::prelude::*;

    fn t(s: &str) -> Target {
        Target::parse(s, Bounds::default()).unwrap()
    }

    #[test]
    fn a_block_keeps_its_id_and_start_while_its_end_moves() {
        let mut log = DecisionLog::new(100);
        let a = t("192.0.2.1");
        let Some(Change::Set(d)) = log.set(&a, Some(100), 10).cloned() else {
            panic!()
        };
        assert_eq!((d.id, d.since, d.until), (1, 10, 100));
        assert!(log.set(&a, Some(100), 20).is_none(), "the same state is no change");
        let Some(Change::Set(d2)) = log.set(&a, Some(200), 30).cloned() else {
            panic!()
        };
        assert_eq!((d2.id, d2.since, d2.until), (1, 10, 200));
        assert_eq!(log.head(), 2);
        let Some(Change::Removed { id, expired, .. }) = log.set(&a, None, 40).cloned() else {
            panic!()
        };
        assert_eq!((id, expired), (1, false), "lifted before its end");
        let Some(Change::Set(d3)) = log.set(&a, Some(500), 50).cloned() else {
            panic!()
        };
        assert_eq!(d3.id, 4, "a new block, a new id");
        let Some(Change::Removed { expired, .. }) = log.set(&a, None, 500).cloned() else {
            panic!()
        };
        assert!(expired, "ended at its time");
        assert!(log.is_empty());
    }

    #[test]
    fn since_coalesces_per_target_and_falls_back_to_full() {
        let mut log = DecisionLog::new(4);
        let (a, b, c) = (t("192.0.2.1"), t("192.0.2.2"), t("192.0.2.3"));
        log.set(&a, Some(100), 0);
        log.set(&b, Some(100), 0);
        let cursor = log.head();
        log.set(&a, Some(150), 1);
        log.set(&a, None, 2);
        log.set(&c, Some(100), 3);
        let Delta::Changes { changes, head } = log.since(cursor) else {
            panic!("{:?}", log.since(cursor))
        };
        assert_eq!(head, 5);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(matches!(&changes[0], Change::Removed { target, .. } if *target == a));
        assert!(matches!(&changes[1], Change::Set(d) if d.target == c));
        assert_eq!(log.since(head), Delta::Changes { changes: vec![], head });
        // The log kept 4 changes (seq 2..=5): cursor 1 still gets changes, cursor 0
        // (nothing seen) the full set.
        assert!(matches!(log.since(1), Delta::Changes { .. }));
        let Delta::Full { active, head } = log.since(0) else {
            panic!()
        };
        assert_eq!(head, 5);
        let targets: Vec<&Target> = active.iter().map(|d| &d.target).collect();
        assert_eq!(targets, vec![&b, &c]);
        log.set(&a, Some(100), 4);
        assert!(matches!(log.since(1), Delta::Full { .. }), "seq 2 is gone now");
        assert!(matches!(log.since(99), Delta::Full { .. }), "a cursor from the future");
    }

    #[test]
    fn due_lists_ended_blocks_soonest_first() {
        let mut log = DecisionLog::new(10);
        log.set(&t("192.0.2.1"), Some(300), 0);
        log.set(&t("192.0.2.2"), Some(100), 0);
        log.set(&t("192.0.2.3"), Some(200), 0);
        assert_eq!(log.due(99), Vec::<Target>::new());
        assert_eq!(log.due(200), vec![t("192.0.2.2"), t("192.0.2.3")]);
        log.set(&t("192.0.2.2"), Some(1000), 150);
        assert_eq!(log.due(200), vec![t("192.0.2.3")]);
    }

    proptest! {
        /// A consumer that applies every answer ends with exactly the active set, from
        /// any cursor, with any log capacity.
        #[test]
        fn following_the_log_reproduces_the_active_set(
            ops in proptest::collection::vec((0u8..6, proptest::option::of(1u64..50)), 1..200),
            cap in 1usize..20,
            every in 1usize..10,
        ) {
            let mut log = DecisionLog::new(cap);
            let mut mirror: BTreeMap<Target, (u64, Millis)> = BTreeMap::new();
            let mut cursor = 0;
            for (k, (n, until)) in ops.into_iter().enumerate() {
                log.set(&t(&format!("192.0.2.{n}")), until, k as u64);
                if k % every == 0 {
                    match log.since(cursor) {
                        Delta::Full { active, head } => {
                            mirror = active.into_iter().map(|d| (d.target, (d.id, d.until))).collect();
                            cursor = head;
                        }
                        Delta::Changes { changes, head } => {
                            for c in changes {
                                match c {
                                    Change::Set(d) => { mirror.insert(d.target, (d.id, d.until)); }
                                    Change::Removed { target, .. } => { mirror.remove(&target); }
                                }
                            }
                            cursor = head;
                        }
                    }
                }
            }
            if let Delta::Changes { changes, .. } = log.since(cursor) {
                for c in changes {
                    match c {
                        Change::Set(d) => { mirror.insert(d.target, (d.id, d.until)); }
                        Change::Removed { target, .. } => { mirror.remove(&target); }
                    }
                }
            } else if let Delta::Full { active, .. } = log.since(cursor) {
                mirror = active.into_iter().map(|d| (d.target, (d.id, d.until))).collect();
            }
            let truth: BTreeMap<Target, (u64, Millis)> =
                log.active().map(|d| (d.target.clone(), (d.id, d.until))).collect();
            prop_assert_eq!(mirror, truth);
        }
    }
}
