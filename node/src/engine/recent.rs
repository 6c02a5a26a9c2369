//! The ids of records this node relayed without keeping them (outside its own limits,
//! refused or evicted by the strangers' quota, superseded): a bounded, first-in
//! first-out set, so that the same record arriving again — from another peer, inside
//! another envelope, through sync — is dropped as a duplicate before its signature is
//! checked, and relaying never loops.

use fraudmesh::sighting::RecordId;
use std::collections::{HashSet, VecDeque};

/// A set of at most `capacity` ids; the oldest inserted leaves first.
#[derive(Debug)]
pub struct RecentIds {
    capacity: usize,
    set: HashSet<RecordId>,
    order: VecDeque<RecordId>,
}

impl RecentIds {
    /// An empty set holding at most `capacity` ids (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `id` is held.
    pub fn contains(&self, id: &RecordId) -> bool {
        self.set.contains(id)
    }

    /// Adds `id`, pushing out the oldest at capacity.
    pub fn insert(&mut self, id: RecordId) {
        if !self.set.insert(id) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    /// Ids held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_oldest_first() {
        let mut r = RecentIds::new(3);
        for i in 0..5u8 {
            r.insert([i; 32]);
            r.insert([i; 32]);
        }
        assert_eq!(r.len(), 3);
        assert!(!r.contains(&[1; 32]));
        assert!(r.contains(&[2; 32]) && r.contains(&[4; 32]));
    }
}
