//! Policy: who counts how much, when accusations become a block, and what is never
//! blocked.
//!
//! Anyone can join the gossip; only trust turns sightings into a block. A target is
//! blocked while the summed weight of the distinct *trusted* reporters holding an
//! active, non-retracted sighting of it reaches the threshold, and neither the allowlist
//! nor an operator's allow ([`Policy::allow`]) covers it. Trusted are the node itself (its
//! own reports and the operator's manual bans, [`FULL`]), the configured peers (their
//! configured weight) and the members of trusted organisations (the organisation's
//! configured weight, while the organisation's newest record about them in the
//! [`Roster`] is an unexpired endorsement). Every other reporter is a *stranger*: its
//! sightings are stored, shown and relayed, and their weight (`stranger_weight` each,
//! `stranger_cap` together) is reported as [`Verdict::stranger_score`], but it never
//! counts toward a block — not alone, and not added to trusted weight. So no number of
//! freshly minted keys changes any decision, whatever trusted weights are present (a peer
//! trusted at 0.5 plus five strangers does not block).
//!
//! Weights are integers in thousandths ([`Weight`]) so every node sums them exactly and
//! decides the same thing from the same records. The weight of a reporter is one pure
//! function, [`Policy::weight`], of (reporter, trust configuration, roster, reputation,
//! now): replicas holding the same roster give every reporter the same weight.
//!
//! The policy also owns the node's local, mutable trust state: the roster of endorsements,
//! the operator's allows (local overrides that win over the mesh like the allowlist, with
//! an optional expiry) and each reporter's reputation (a reporter whose accusation the
//! operator overrides loses `penalty` thousandths of its weight factor, regained linearly
//! at `recovery_per_day`; its weight is never above its configured weight). The node
//! persists and restores that state; this module only computes with it.
//!
//! Layout: this file holds the configuration, [`Policy::weight`] and the decision;
//! `local.rs` the allows and reputation; `explain.rs` explanations for operators.

mod explain;
mod local;
#[cfg(test)]
mod tests;

pub use explain::{decimal, utc, ExplainedRecord, Explanation};
pub use local::{Allow, Penalty};

use crate::blocklist::{Blocklist, BlocklistBuilder};
use crate::endorsement::EndorsementRecord;
use crate::identity::PublicKey;
use crate::ledger::{Ledger, RecordSummary};
use crate::roster::Roster;
use crate::sighting::Kind;
use crate::target::Target;
use crate::Millis;
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// Trust weight in thousandths: 1000 is "one fully trusted reporter".
pub type Weight = u32;

/// Full trust, 1000 thousandths: the weight of this node's own sightings and of one
/// fully trusted peer; also an untouched reputation factor.
pub const FULL: Weight = 1000;

/// Why a policy could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The threshold must be positive.
    #[error("threshold must be above 0")]
    ZeroThreshold,
    /// The stranger cap must stay below the threshold. Strangers no longer count toward a
    /// block at all; the rule is kept so that the configurations accepted stay the same,
    /// and so the reported stranger score never reaches the threshold.
    #[error("stranger cap ({cap}) must be below the threshold ({threshold})")]
    CapNotBelowThreshold {
        /// The configured `stranger_cap`, thousandths.
        cap: Weight,
        /// The configured block threshold, thousandths.
        threshold: Weight,
    },
    /// The node's own weight must reach the threshold, or its own reports would not block.
    #[error("the node's own weight ({own}) is below the threshold ({threshold})")]
    OwnWeightBelowThreshold {
        /// This node's own weight ([`FULL`]), thousandths.
        own: Weight,
        /// The configured block threshold, thousandths.
        threshold: Weight,
    },
}

/// A trusted organisation: its members count `weight` each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgTrust {
    /// The operator's name for it (shown in `explain`).
    pub name: String,
    /// The weight each endorsed member's sightings count, thousandths.
    pub weight: Weight,
}

/// How overriding a reporter's accusations costs it weight on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReputationConfig {
    /// Thousandths of the weight factor lost per override (default 250).
    pub penalty: Weight,
    /// Thousandths of the weight factor regained per day (default 50), linearly.
    pub recovery_per_day: Weight,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        Self {
            penalty: 250,
            recovery_per_day: 50,
        }
    }
}

/// The operator's trust settings: whose sightings count how much (weights in
/// thousandths, [`FULL`] = one fully trusted reporter) and when a target is blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustConfig {
    /// This node's key: its own sightings and manual bans count [`FULL`].
    pub local: PublicKey,
    /// Explicitly trusted peers and their weights.
    pub trusted: HashMap<PublicKey, Weight>,
    /// Trusted organisations by key: their endorsed members count the org's weight.
    pub orgs: HashMap<PublicKey, OrgTrust>,
    /// Weight shown for any reporter neither local nor trusted, thousandths (never
    /// counted toward a block).
    pub stranger_weight: Weight,
    /// Most that all strangers of one target show together; must be below `threshold`.
    pub stranger_cap: Weight,
    /// Summed weight at which a target is blocked.
    pub threshold: Weight,
    /// What an operator's override costs the reporters it overrides.
    pub reputation: ReputationConfig,
}

/// Through what a reporter is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// This node itself.
    Local,
    /// A `[[trust.peers]]` entry.
    Peer,
    /// An active endorsement by a trusted organisation.
    Org {
        /// The organisation's key.
        org: PublicKey,
        /// The organisation's configured name.
        org_name: String,
        /// The member's name in the endorsement.
        member_name: String,
        /// When the endorsement expires.
        until: Millis,
    },
    /// Not trusted: shown, never counted.
    Stranger,
}

/// A reporter's weight at one instant and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weighed {
    /// The weight its sightings count (or, for a stranger, show), after reputation.
    pub weight: Weight,
    /// The weight before reputation: configured for the peer or organisation.
    pub configured: Weight,
    /// The reputation factor, thousandths ([`FULL`] = untouched).
    pub reputation: Weight,
    /// Through what it is trusted.
    pub via: Via,
    /// Whether it is a stranger (its weight never counts toward a block).
    pub stranger: bool,
    /// While nothing changes, the weight holds until this instant (exclusive): the expiry
    /// of the endorsement it comes through; `None` when it does not expire.
    pub valid_until: Option<Millis>,
}

/// The decision for one target at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the target is blocked at this instant (`score` reached the threshold and
    /// neither allowlisted nor allowed).
    pub blocked: bool,
    /// The summed weight of trusted reporters' active accusations: what decides.
    pub score: Weight,
    /// The summed weight of strangers' active accusations, capped at `stranger_cap`:
    /// shown, never counted toward a block.
    pub stranger_score: Weight,
    /// Reporters with an active, non-retracted sighting (trusted or not), sorted.
    pub reporters: Vec<PublicKey>,
    /// While nothing new arrives, the block lasts until this instant (exclusive): when the
    /// accusation whose departure takes the score below the threshold expires or its
    /// endorsement does. Decide again then: a member endorsed by two organisations may
    /// still count, at the other's weight.
    pub until: Option<Millis>,
    /// The target touches the allowlist and is never blocked.
    pub allowlisted: bool,
    /// An operator's active allow covers the target: not blocked.
    pub allowed: bool,
}

/// Where a reporter's configured weight comes from (see [`Policy::weight`]).
enum Source<'a> {
    Local,
    Peer(Weight),
    Org(&'a OrgTrust, &'a EndorsementRecord),
    Stranger,
}

/// The block policy: a checked [`TrustConfig`], the allowlist and the node's local trust
/// state (roster, allows, reputation), turning a target's ledger entries into a
/// [`Verdict`] at a given instant.
#[derive(Debug, Clone)]
pub struct Policy {
    trust: TrustConfig,
    allowlist: Vec<IpNet>,
    roster: Roster,
    allows: BTreeMap<Target, Allow>,
    penalties: BTreeMap<PublicKey, Penalty>,
}

impl Policy {
    /// Checks the configuration's invariants; the local state starts empty.
    pub fn new(trust: TrustConfig, allowlist: Vec<IpNet>) -> Result<Self, Error> {
        if trust.threshold == 0 {
            return Err(Error::ZeroThreshold);
        }
        if trust.stranger_cap >= trust.threshold {
            return Err(Error::CapNotBelowThreshold {
                cap: trust.stranger_cap,
                threshold: trust.threshold,
            });
        }
        if FULL < trust.threshold {
            return Err(Error::OwnWeightBelowThreshold {
                own: FULL,
                threshold: trust.threshold,
            });
        }
        Ok(Self {
            trust,
            allowlist,
            roster: Roster::new(),
            allows: BTreeMap::new(),
            penalties: BTreeMap::new(),
        })
    }

    /// The trust configuration this policy was built with.
    pub fn trust(&self) -> &TrustConfig {
        &self.trust
    }

    /// The weight of a reporter at `now` — the one function every count goes through.
    ///
    /// This node: [`FULL`]. Otherwise the largest of its `[[trust.peers]]` weight and the
    /// weight of every trusted organisation whose newest record about it is an unexpired
    /// endorsement (ties: a peer entry, which does not expire, then the later expiry,
    /// then the smaller org key); none: a stranger. The result is then multiplied by the
    /// reporter's reputation factor, so it is never above the configured weight.
    /// `valid_until` is the expiry of the endorsement chosen.
    pub fn weight(&self, reporter: &PublicKey, now: Millis) -> Weighed {
        let (configured, via, valid_until) = match self.source(reporter, now) {
            Source::Local => (FULL, Via::Local, None),
            Source::Peer(w) => (w, Via::Peer, None),
            Source::Org(trust, rec) => {
                let e = rec.endorsement();
                let via = Via::Org {
                    org: e.org,
                    org_name: trust.name.clone(),
                    member_name: e.name.clone(),
                    until: e.expires_at,
                };
                (trust.weight, via, Some(e.expires_at))
            }
            Source::Stranger => (self.trust.stranger_weight, Via::Stranger, None),
        };
        let reputation = match via {
            Via::Peer | Via::Org { .. } => self.reputation_of(reporter, now),
            Via::Local | Via::Stranger => FULL,
        };
        Weighed {
            weight: scale(configured, reputation),
            configured,
            reputation,
            stranger: via == Via::Stranger,
            via,
            valid_until,
        }
    }

    /// [`Policy::weight`] without the names: (weight, stranger, valid_until). What
    /// [`Policy::decide`] uses, allocation-free; always the same numbers as `weight`.
    fn weight_numbers(&self, reporter: &PublicKey, now: Millis) -> (Weight, bool, Option<Millis>) {
        match self.source(reporter, now) {
            Source::Local => (FULL, false, None),
            Source::Stranger => (self.trust.stranger_weight, true, None),
            Source::Peer(w) => (scale(w, self.reputation_of(reporter, now)), false, None),
            Source::Org(trust, rec) => (
                scale(trust.weight, self.reputation_of(reporter, now)),
                false,
                Some(rec.endorsement().expires_at),
            ),
        }
    }

    /// Where a reporter's configured weight comes from at `now` (see [`Policy::weight`]).
    fn source(&self, reporter: &PublicKey, now: Millis) -> Source<'_> {
        if *reporter == self.trust.local {
            return Source::Local;
        }
        let mut best = match self.trust.trusted.get(reporter) {
            Some(&w) => Source::Peer(w),
            None => Source::Stranger,
        };
        for rec in self.roster.of_member(reporter) {
            if !rec.is_active(now) {
                continue;
            }
            let Some(trust) = self.trust.orgs.get(&rec.endorsement().org) else {
                continue;
            };
            let expires_at = rec.endorsement().expires_at;
            let better = match &best {
                Source::Stranger => true,
                Source::Peer(w) => trust.weight > *w,
                Source::Org(held, held_rec) => {
                    trust.weight > held.weight
                        || (trust.weight == held.weight && expires_at > held_rec.endorsement().expires_at)
                }
                Source::Local => false,
            };
            if better {
                best = Source::Org(trust, rec);
            }
        }
        best
    }

    /// Whether the reporter is a stranger at `now` (neither this node, nor a configured
    /// peer, nor actively endorsed by a trusted organisation).
    pub fn is_stranger(&self, reporter: &PublicKey, now: Millis) -> bool {
        self.weight(reporter, now).stranger
    }

    /// Whether `org` is a configured, trusted organisation.
    pub fn is_trusted_org(&self, org: &PublicKey) -> bool {
        self.trust.orgs.contains_key(org)
    }

    /// The endorsements known to this node.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The endorsements, to merge into or expire. The caller re-decides targets when it
    /// changes (weights follow the roster at once).
    pub fn roster_mut(&mut self) -> &mut Roster {
        &mut self.roster
    }

    /// Whether the target overlaps the allowlist: an allowlisted address inside it, or it
    /// inside an allowlisted prefix. Either way, blocking it would hit a protected address.
    pub fn is_allowlisted(&self, target: &Target) -> bool {
        let Some(net) = target.ip_net() else { return false };
        self.allowlist.iter().any(|a| a.contains(&net) || net.contains(a))
    }

    /// Whether an address is allowlisted.
    pub fn is_allowlisted_ip(&self, ip: IpAddr) -> bool {
        self.is_allowlisted(&Target::host(ip))
    }

    /// Decides one target from its records at `now`: blocked iff the trusted weight
    /// reaches the threshold and neither the allowlist nor an operator's allow covers it;
    /// strangers only add to [`Verdict::stranger_score`] and [`Verdict::reporters`]. A
    /// trusted accusation counts until its record expires or the trust it counts through
    /// (an endorsement) does, whichever is first.
    pub fn decide<'a>(
        &self,
        target: &Target,
        records: impl IntoIterator<Item = &'a RecordSummary>,
        now: Millis,
    ) -> Verdict {
        self.judge(target, records, now, false).0
    }

    /// The verdict and, if `explain`, each record's part in it.
    fn judge<'a>(
        &self,
        target: &Target,
        records: impl IntoIterator<Item = &'a RecordSummary>,
        now: Millis,
        explain: bool,
    ) -> (Verdict, Vec<ExplainedRecord>) {
        // (until, weight) of each trusted active accusation.
        let mut trusted: Vec<(Millis, Weight)> = Vec::new();
        let mut strangers: Weight = 0;
        let mut reporters = Vec::new();
        let mut explained = Vec::new();
        for r in records {
            let reason = if r.kind() == Kind::Retract {
                "retraction"
            } else if !r.is_active(now) {
                "expired"
            } else {
                match self.weight_numbers(r.reporter(), now) {
                    (w, true, _) => {
                        strangers = strangers.saturating_add(w);
                        "stranger"
                    }
                    (w, false, valid_until) => {
                        let until = valid_until.map_or(r.expires_at(), |u| u.min(r.expires_at()));
                        trusted.push((until, w));
                        "counted"
                    }
                }
            };
            if reason == "counted" || reason == "stranger" {
                reporters.push(*r.reporter());
            }
            if explain {
                explained.push(ExplainedRecord {
                    id: *r.id(),
                    reporter: *r.reporter(),
                    kind: r.kind(),
                    count: r.count(),
                    observed_at: r.observed_at(),
                    expires_at: r.expires_at(),
                    weighed: self.weight(r.reporter(), now),
                    counted: reason == "counted",
                    reason,
                });
            }
        }
        reporters.sort();
        let score_of =
            |items: &[(Millis, Weight)]| -> Weight { items.iter().fold(0, |sum, &(_, w)| sum.saturating_add(w)) };
        let score = score_of(&trusted);
        let allowlisted = self.is_allowlisted(target);
        let allowed = self.allowed(target, now).is_some();
        let blocked = score >= self.trust.threshold && !allowlisted && !allowed;
        let until = blocked.then(|| {
            // Latest-ending first: the block ends when the accusation whose departure
            // takes the score below the threshold stops counting.
            trusted.sort_by_key(|a| std::cmp::Reverse(a.0));
            (1..=trusted.len())
                .find(|&n| score_of(&trusted[..n]) >= self.trust.threshold)
                .map(|n| trusted[n - 1].0)
                .unwrap_or(now)
        });
        let verdict = Verdict {
            blocked,
            score,
            stranger_score: strangers.min(self.trust.stranger_cap),
            reporters,
            until,
            allowlisted,
            allowed,
        };
        (verdict, explained)
    }

    /// Decides every target of the ledger and builds the lookup structure of the blocked
    /// ones. Returns it with the blocked targets' decisions.
    pub fn decide_all(&self, ledger: &Ledger, now: Millis) -> (Blocklist, Vec<(Target, Verdict)>) {
        let mut builder = BlocklistBuilder::new();
        let mut blocked = Vec::new();
        for (target, records) in ledger.by_target() {
            let d = self.decide(target, records, now);
            if d.blocked {
                builder.insert_target(target);
                blocked.push((target.clone(), d));
            }
        }
        (builder.build(), blocked)
    }
}

/// `configured × factor / FULL`, never above `configured`.
fn scale(configured: Weight, factor: Weight) -> Weight {
    (u64::from(configured) * u64::from(factor.min(FULL)) / u64::from(FULL)) as Weight
}
