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

use crate::blocklist::{Blocklist, BlocklistBuilder};
use crate::endorsement::EndorsementRecord;
use crate::identity::PublicKey;
use crate::ledger::{Ledger, RecordSummary};
use crate::roster::Roster;
use crate::sighting::{Kind, RecordId};
use crate::target::Target;
use crate::Millis;
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;

/// Trust weight in thousandths: 1000 is "one fully trusted reporter".
pub type Weight = u32;

/// Full trust, 1000 thousandths: the weight of this node's own sightings and of one
/// fully trusted peer; also an untouched reputation factor.
pub const FULL: Weight = 1000;

/// One day in ms: the unit of reputation recovery.
const DAY_MS: Millis = 86_400_000;

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
    /// While nothing new arrives, the block lasts until this instant (exclusive).
    pub until: Option<Millis>,
    /// The target touches the allowlist and is never blocked.
    pub allowlisted: bool,
    /// An operator's active allow covers the target: not blocked.
    pub allowed: bool,
}

/// Why a target is or is not blocked, record by record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The decision.
    pub verdict: Verdict,
    /// The block threshold, thousandths.
    pub threshold: Weight,
    /// Every record given, in the order given.
    pub records: Vec<ExplainedRecord>,
    /// The operator's allow covering the target, if any (its target may be broader or
    /// narrower than the one explained).
    pub allowed: Option<(Target, Allow)>,
    /// One sentence saying why the target is or is not blocked.
    pub why: String,
}

/// One record of an [`Explanation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainedRecord {
    /// The record id.
    pub id: RecordId,
    /// Who signed it.
    pub reporter: PublicKey,
    /// What it says.
    pub kind: Kind,
    /// How many events it summarises.
    pub count: u32,
    /// When the reporter saw it, ms.
    pub observed_at: Millis,
    /// When it stops being active, ms.
    pub expires_at: Millis,
    /// The reporter's weight now.
    pub weighed: Weighed,
    /// Whether it adds to the score.
    pub counted: bool,
    /// Why it counts or not: `"counted"`, `"stranger"`, `"expired"`, `"retraction"`, or
    /// `"weight expired"` (the trust it counted through has ended).
    pub reason: &'static str,
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
        self.allows.iter().find(|(t, a)| a.is_active(now) && overlap(t, target))
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

    /// Explains the decision on one target: every record with its reporter's weight and
    /// whether it counted, the threshold, the operator's allow, and one sentence why.
    pub fn explain<'a>(
        &self,
        target: &Target,
        records: impl IntoIterator<Item = &'a RecordSummary>,
        now: Millis,
    ) -> Explanation {
        let (verdict, records) = self.judge(target, records, now, true);
        let allowed = self.allowed(target, now).map(|(t, a)| (t.clone(), a.clone()));
        let threshold = self.trust.threshold;
        let why = if verdict.allowlisted && verdict.score >= threshold {
            "not blocked: the target overlaps the allowlist".to_string()
        } else if let Some((t, a)) = &allowed {
            let mut w = String::from("not blocked: allowed by the operator");
            if t != target {
                let _ = write!(w, " (as {t})");
            }
            match a.until {
                Some(u) => {
                    let _ = write!(w, " until {}", utc(u));
                }
                None => w.push_str(" indefinitely"),
            }
            let _ = write!(w, ": {}", a.reason);
            w
        } else if verdict.allowlisted {
            "not blocked: the target overlaps the allowlist".to_string()
        } else if verdict.blocked {
            format!(
                "blocked: trusted weight {} reaches the threshold {}",
                decimal(verdict.score),
                decimal(threshold)
            )
        } else if records.iter().any(|r| r.counted) {
            format!(
                "not blocked: trusted weight {} is below the threshold {}",
                decimal(verdict.score),
                decimal(threshold)
            )
        } else if records.iter().any(|r| r.reason == "stranger") {
            "not blocked: only strangers accuse it".to_string()
        } else {
            "not blocked: no active accusation".to_string()
        };
        Explanation {
            verdict,
            threshold,
            records,
            allowed,
            why,
        }
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
                    (_, false, Some(until)) if until <= now => "weight expired",
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

/// Whether two targets overlap: one address prefix contains the other, or one number
/// prefix starts the other.
fn overlap(a: &Target, b: &Target) -> bool {
    match (a, b) {
        (Target::Ip(x), Target::Ip(y)) => x.contains(y) || y.contains(x),
        (Target::Number(x), Target::Number(y)) => x.starts_with(&**y) || y.starts_with(&**x),
        _ => false,
    }
}

/// A weight in thousandths as a decimal: 1500 → "1.5", 1000 → "1.0", 250 → "0.25".
pub fn decimal(w: Weight) -> String {
    let frac = format!("{:03}", w % FULL);
    let frac = frac.trim_end_matches('0');
    format!("{}.{}", w / FULL, if frac.is_empty() { "0" } else { frac })
}

/// An instant as RFC 3339 UTC to the second, e.g. `2026-11-27T20:30:00Z`.
pub fn utc(ms: Millis) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::sighting::Record;
    use crate::sighting::{sign, Draft, Evidence};
    use crate::target::Bounds;
    use proptest::prelude::*;

    fn id(n: u8) -> Identity {
        Identity::from_secret([n; 32])
    }

    fn rec(who: &Identity, target: &str, kind: Kind, at: Millis, ttl_s: u32) -> RecordSummary {
        RecordSummary::from(&rec_signed(who, target, kind, at, ttl_s))
    }

    fn rec_signed(who: &Identity, target: &str, kind: Kind, at: Millis, ttl_s: u32) -> Record {
        sign(
            who,
            Draft {
                target: Target::parse(target, Bounds::default()).unwrap(),
                kind,
                observed_at: at,
                ttl_s,
                count: 1,
                evidence: Evidence::default(),
            },
        )
    }

    fn policy() -> Policy {
        let mut trusted = HashMap::new();
        trusted.insert(id(2).public(), 600);
        trusted.insert(id(3).public(), 600);
        Policy::new(
            TrustConfig {
                local: id(1).public(),
                trusted,
                stranger_weight: 100,
                stranger_cap: 500,
                threshold: FULL,
                orgs: HashMap::new(),
                reputation: ReputationConfig::default(),
            },
            vec!["192.0.2.0/24".parse().unwrap(), "198.51.100.7/32".parse().unwrap()],
        )
        .unwrap()
    }

    fn t(s: &str) -> Target {
        Target::parse(s, Bounds::default()).unwrap()
    }

    #[test]
    fn own_sighting_blocks_until_expiry() {
        let r = rec(&id(1), "1.2.3.4", Kind::Scan, 1000, 60);
        let d = policy().decide(&t("1.2.3.4"), [&r], 2000);
        assert!(d.blocked);
        assert_eq!(d.until, Some(61_000));
        assert_eq!(d.reporters, vec![id(1).public()]);
        assert!(!policy().decide(&t("1.2.3.4"), [&r], 61_000).blocked);
    }

    #[test]
    fn two_partly_trusted_peers_block_one_does_not() {
        let a = rec(&id(2), "1.2.3.4", Kind::Scan, 1000, 60);
        let b = rec(&id(3), "1.2.3.4", Kind::Scan, 1000, 30);
        let p = policy();
        assert!(!p.decide(&t("1.2.3.4"), [&a], 2000).blocked);
        let d = p.decide(&t("1.2.3.4"), [&a, &b], 2000);
        assert!(d.blocked);
        assert_eq!(d.score, 1200);
        // Blocked only while both are active: until the shorter one expires.
        assert_eq!(d.until, Some(31_000));
    }

    #[test]
    fn strangers_never_count_toward_a_block() {
        let strangers: Vec<_> = (10..=200u8)
            .map(|n| rec(&id(n), "1.2.3.4", Kind::Scan, 1000, 60))
            .collect();
        let d = policy().decide(&t("1.2.3.4"), strangers.iter(), 2000);
        assert!(!d.blocked);
        assert_eq!((d.score, d.stranger_score), (0, 500));
        assert_eq!(d.reporters.len(), strangers.len());
        // Nor do they complete a trusted peer's weight (issue 14, item 7: a peer trusted
        // at 0.6 plus strangers used to reach the threshold).
        let a = rec(&id(2), "1.2.3.4", Kind::Scan, 1000, 60);
        let d = policy().decide(&t("1.2.3.4"), strangers.iter().chain([&a]), 2000);
        assert!(!d.blocked);
        assert_eq!((d.score, d.stranger_score), (600, 500));
        assert_eq!(d.reporters.len(), strangers.len() + 1);
        // A second trusted peer does.
        let b = rec(&id(3), "1.2.3.4", Kind::Scan, 1000, 30);
        let d = policy().decide(&t("1.2.3.4"), strangers.iter().chain([&a, &b]), 2000);
        assert!(d.blocked);
        assert_eq!((d.score, d.until), (1200, Some(31_000)));
    }

    #[test]
    fn retractions_and_allowlist() {
        let r = rec(&id(1), "1.2.3.4", Kind::Retract, 1000, 60);
        assert!(!policy().decide(&t("1.2.3.4"), [&r], 2000).blocked);
        for target in ["192.0.2.55", "192.0.2.0/24", "198.51.100.0/24"] {
            let r = rec(&id(1), target, Kind::Manual, 1000, 60);
            let d = policy().decide(&t(target), [&r], 2000);
            assert!(!d.blocked && d.allowlisted, "{target}");
        }
        assert!(policy().is_allowlisted_ip("192.0.2.1".parse().unwrap()));
        assert!(!policy().is_allowlisted_ip("192.0.3.1".parse().unwrap()));
    }

    #[test]
    fn bad_configs_are_refused() {
        let base = policy().trust().clone();
        let cap_high = TrustConfig {
            stranger_cap: FULL,
            ..base.clone()
        };
        assert!(matches!(
            Policy::new(cap_high, vec![]),
            Err(Error::CapNotBelowThreshold { .. })
        ));
        let zero = TrustConfig {
            threshold: 0,
            stranger_cap: 0,
            ..base.clone()
        };
        assert_eq!(Policy::new(zero, vec![]).unwrap_err(), Error::ZeroThreshold);
        let unreachable = TrustConfig {
            threshold: 2000,
            ..base
        };
        assert!(matches!(
            Policy::new(unreachable, vec![]),
            Err(Error::OwnWeightBelowThreshold { .. })
        ));
    }

    proptest! {
        /// For any trusted weights and threshold, any trusted accusations and any set of
        /// strangers (any stranger weight and cap): the decision, its score and its end
        /// are those without the strangers.
        #[test]
        fn strangers_never_change_a_decision(
            weights in prop::collection::vec(0u32..=FULL, 3),
            threshold in 1u32..=FULL,
            stranger_weight in 0u32..=FULL,
            cap_fraction in 0u32..1000,
            trusted in prop::collection::vec((0usize..4, 1u32..100), 0..6),
            strangers in prop::collection::vec((10u8..60, 1u32..100), 0..12),
            now in 1000u64..100_000,
        ) {
            let mut peers = HashMap::new();
            for (n, w) in weights.iter().enumerate() {
                peers.insert(id(n as u8 + 2).public(), *w);
            }
            let p = Policy::new(
                TrustConfig {
                    local: id(1).public(),
                    trusted: peers,
                    stranger_weight,
                    stranger_cap: threshold * cap_fraction / 1000,
                    threshold,
                    orgs: HashMap::new(),
                    reputation: ReputationConfig::default(),
                },
                vec![],
            )
            .unwrap();
            // Reporter 0 is this node, 1..=3 the peers.
            let trusted: Vec<RecordSummary> =
                trusted.iter().map(|&(who, ttl)| rec(&id(who as u8 + 1), "1.2.3.4", Kind::Scan, 1000, ttl)).collect();
            let strangers: Vec<RecordSummary> =
                strangers.iter().map(|&(who, ttl)| rec(&id(who), "1.2.3.4", Kind::Scan, 1000, ttl)).collect();
            let without = p.decide(&t("1.2.3.4"), trusted.iter(), now);
            let with = p.decide(&t("1.2.3.4"), trusted.iter().chain(&strangers), now);
            prop_assert_eq!(with.blocked, without.blocked);
            prop_assert_eq!(with.score, without.score);
            prop_assert_eq!(with.until, without.until);
            prop_assert_eq!(without.stranger_score, 0);
            prop_assert!(with.stranger_score < threshold);
        }

        /// N replicas receiving the same records in random orders, with duplicates, decide
        /// the same blocklist.
        #[test]
        fn replicas_converge_on_the_same_blocklist(
            picks in prop::collection::vec((1u8..=6, 0usize..4, 0u64..5, any::<bool>()), 1..40),
            orders in prop::collection::vec(any::<u64>(), 2..5),
            now in 0u64..200_000,
        ) {
            let targets = ["1.2.3.4", "10.9.0.0/16", "2001:db8::/48", "+41900"];
            let records: Vec<_> = picks
                .iter()
                .map(|&(who, ti, at, retract)| {
                    let kind = if retract { Kind::Retract } else { Kind::Scan };
                    rec_signed(&id(who), targets[ti], kind, at * 10_000, 60 + (at as u32) * 7)
                })
                .collect();
            let p = policy();
            let mut decided = Vec::new();
            for seed in orders {
                let mut order: Vec<usize> = (0..records.len()).chain(0..records.len() / 2).collect();
                let mut s = seed;
                for i in (1..order.len()).rev() {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    order.swap(i, (s >> 33) as usize % (i + 1));
                }
                let mut l = Ledger::new();
                for i in order {
                    l.merge(&records[i]);
                }
                let (bl, blocked) = p.decide_all(&l, now);
                let hits: Vec<bool> = ["1.2.3.4", "10.9.3.3", "2001:db8::5"]
                    .iter()
                    .map(|a| bl.is_blocked(a.parse().unwrap()))
                    .collect();
                decided.push((blocked, hits, bl.blocked_number_prefix("41900555").map(str::to_string)));
            }
            for d in &decided[1..] {
                prop_assert_eq!(d, &decided[0]);
            }
        }
    }
}
