//! The node's local trust state kept by the policy: the operator's allows (local
//! overrides that win over the mesh) and reporters' reputation (what overriding them
//! costs). The node persists both; the policy computes with them.

use super::{Policy, Weight, FULL};
use crate::identity::PublicKey;
use crate::target::Target;
use crate::Millis;

/// One day in ms: the unit of reputation recovery.
const DAY_MS: Millis = 86_400_000;

/// An operator's local override: the target is not blocked, whatever the mesh says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    /// Why (shown in `explain` and `list`).
    pub reason: String,
    /// When it was made, ms.
    pub at: Millis,
    /// When it ends (exclusive), or never.
    pub until: Option<Millis>,
}

impl Allow {
    /// Whether the allow is in force at `now`.
    pub fn is_active(&self, now: Millis) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

/// A reporter's reputation loss: `amount` thousandths of its factor lost as of `at`,
/// recovering from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Penalty {
    /// Thousandths lost as of `at` (at most [`FULL`]).
    pub amount: Weight,
    /// When the last penalty was added, ms.
    pub at: Millis,
}

impl Policy {
    /// Adds (or replaces) the operator's allow of `target`.
    pub fn allow(&mut self, target: Target, allow: Allow) {
        self.allows.insert(target, allow);
    }

    /// Removes the operator's allow of exactly `target`; true if there was one.
    pub fn unallow(&mut self, target: &Target) -> bool {
        self.allows.remove(target).is_some()
    }

    /// Every allow (active or not yet expired away), by target.
    pub fn allows(&self) -> impl Iterator<Item = (&Target, &Allow)> {
        self.allows.iter()
    }

    /// Removes the allows that ended at or before `now`; returns their targets.
    pub fn expire_allows(&mut self, now: Millis) -> Vec<Target> {
        let gone: Vec<Target> = self
            .allows
            .iter()
            .filter(|(_, a)| !a.is_active(now))
            .map(|(t, _)| t.clone())
            .collect();
        for t in &gone {
            self.allows.remove(t);
        }
        gone
    }

    /// The active allow overlapping `target` (an allowed prefix containing it, or an
    /// allowed address or number inside it: blocking it would hit what the operator
    /// allowed), the first in target order.
    pub fn allowed(&self, target: &Target, now: Millis) -> Option<(&Target, &Allow)> {
        self.allows.iter().find(|(t, a)| a.is_active(now) && t.overlaps(target))
    }

    /// Lowers a trusted reporter's reputation by the configured penalty (as of `now`,
    /// after the recovery so far; at most to 0). This node and strangers are never
    /// penalised (a stranger's weight never counts, and its keys are free). True if the
    /// reporter was penalised.
    pub fn penalise(&mut self, reporter: &PublicKey, now: Millis) -> bool {
        if self.is_stranger(reporter, now) || *reporter == self.trust.local {
            return false;
        }
        let outstanding = self.outstanding(reporter, now);
        let amount = outstanding.saturating_add(self.trust.reputation.penalty).min(FULL);
        if amount == 0 {
            self.penalties.remove(reporter);
        } else {
            self.penalties.insert(*reporter, Penalty { amount, at: now });
        }
        true
    }

    /// The reporter's reputation factor at `now`, thousandths: [`FULL`] minus what is
    /// still lost (penalties less the linear recovery since the last one), never below 0.
    pub fn reputation_of(&self, reporter: &PublicKey, now: Millis) -> Weight {
        FULL - self.outstanding(reporter, now)
    }

    /// Thousandths still lost at `now`.
    fn outstanding(&self, reporter: &PublicKey, now: Millis) -> Weight {
        let Some(p) = self.penalties.get(reporter) else {
            return 0;
        };
        let elapsed = now.saturating_sub(p.at);
        let recovered = elapsed.saturating_mul(Millis::from(self.trust.reputation.recovery_per_day)) / DAY_MS;
        let left = Millis::from(p.amount.min(FULL)).saturating_sub(recovered);
        left as Weight
    }

    /// Every penalty held (including fully recovered ones not yet forgotten).
    pub fn penalties(&self) -> impl Iterator<Item = (&PublicKey, &Penalty)> {
        self.penalties.iter()
    }

    /// Restores a penalty the node persisted.
    pub fn restore_penalty(&mut self, reporter: PublicKey, penalty: Penalty) {
        self.penalties.insert(reporter, penalty);
    }

    /// Forgets the penalties fully recovered at `now`; returns their reporters.
    pub fn expire_penalties(&mut self, now: Millis) -> Vec<PublicKey> {
        let gone: Vec<PublicKey> = self
            .penalties
            .keys()
            .filter(|k| self.outstanding(k, now) == 0)
            .copied()
            .collect();
        for k in &gone {
            self.penalties.remove(k);
        }
        gone
    }
}
