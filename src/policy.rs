//! Policy: who counts how much, when accusations become a block, and what is never
//! blocked.
//!
//! Anyone can join the gossip; only trust turns sightings into a block. A target is
//! blocked while the summed weight of the distinct *trusted* reporters holding an
//! active, non-retracted sighting of it reaches the threshold, and the target is not
//! allowlisted. Trusted are the node itself (its own reports and the operator's manual
//! bans, [`FULL`]) and the configured peers (their configured weight). Every other
//! reporter is a *stranger*: its sightings are stored, shown and relayed, and their
//! weight (`stranger_weight` each, `stranger_cap` together) is reported as
//! [`Verdict::stranger_score`], but it never counts toward a block — not alone, and not
//! added to trusted weight. So no number of freshly minted keys changes any decision,
//! whatever trusted weights are present (a peer trusted at 0.5 plus five strangers does
//! not block).
//!
//! Weights are integers in thousandths ([`Weight`]) so every node sums them exactly and
//! decides the same thing from the same records. The weight of a reporter is one
//! function, [`Policy::weight`], of (reporter, local trust state), where later
//! endorsements or reputation can slot in.

use crate::blocklist::{Blocklist, BlocklistBuilder};
use crate::identity::PublicKey;
use crate::ledger::{Ledger, RecordSummary};
use crate::sighting::Kind;
use crate::target::Target;
use crate::Millis;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;

/// Trust weight in thousandths: 1000 is "one fully trusted reporter".
pub type Weight = u32;

/// Full trust, 1000 thousandths: the weight of this node's own sightings and of one
/// fully trusted peer.
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

/// The operator's trust settings: whose sightings count how much (weights in
/// thousandths, [`FULL`] = one fully trusted reporter) and when a target is blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustConfig {
    /// This node's key: its own sightings and manual bans count [`FULL`].
    pub local: PublicKey,
    /// Explicitly trusted peers and their weights.
    pub trusted: HashMap<PublicKey, Weight>,
    /// Weight shown for any reporter neither local nor trusted, thousandths (never
    /// counted toward a block).
    pub stranger_weight: Weight,
    /// Most that all strangers of one target show together; must be below `threshold`.
    pub stranger_cap: Weight,
    /// Summed weight at which a target is blocked.
    pub threshold: Weight,
}

/// The decision for one target at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the target is blocked at this instant (`score` reached the threshold and
    /// not allowlisted).
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
}

/// The block policy: a checked [`TrustConfig`] and the allowlist, turning a target's
/// ledger entries into a [`Verdict`] at a given instant.
#[derive(Debug, Clone)]
pub struct Policy {
    trust: TrustConfig,
    allowlist: Vec<IpNet>,
}

impl Policy {
    /// Checks the configuration's invariants.
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
        Ok(Self { trust, allowlist })
    }

    /// The trust configuration this policy was built with.
    pub fn trust(&self) -> &TrustConfig {
        &self.trust
    }

    /// The weight of a reporter, and whether it is a stranger (whose weight is only
    /// shown, never counted toward a block).
    pub fn weight(&self, reporter: &PublicKey) -> (Weight, bool) {
        if *reporter == self.trust.local {
            return (FULL, false);
        }
        match self.trust.trusted.get(reporter) {
            Some(w) => (*w, false),
            None => (self.trust.stranger_weight, true),
        }
    }

    /// Whether the reporter is a stranger (neither this node nor trusted).
    pub fn is_stranger(&self, reporter: &PublicKey) -> bool {
        self.weight(reporter).1
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
    /// reaches the threshold (and not allowlisted); strangers only add to
    /// [`Verdict::stranger_score`] and [`Verdict::reporters`].
    pub fn decide<'a>(
        &self,
        target: &Target,
        records: impl IntoIterator<Item = &'a RecordSummary>,
        now: Millis,
    ) -> Verdict {
        // (expiry, weight) of each trusted active accusation.
        let mut trusted: Vec<(Millis, Weight)> = Vec::new();
        let mut strangers: Weight = 0;
        let mut reporters = Vec::new();
        for r in records {
            if r.kind() == Kind::Retract || !r.is_active(now) {
                continue;
            }
            match self.weight(r.reporter()) {
                (w, true) => strangers = strangers.saturating_add(w),
                (w, false) => trusted.push((r.expires_at(), w)),
            }
            reporters.push(*r.reporter());
        }
        reporters.sort();
        let score_of =
            |items: &[(Millis, Weight)]| -> Weight { items.iter().fold(0, |sum, &(_, w)| sum.saturating_add(w)) };
        let score = score_of(&trusted);
        let allowlisted = self.is_allowlisted(target);
        let blocked = score >= self.trust.threshold && !allowlisted;
        let until = blocked.then(|| {
            // Latest-expiring first: the block ends at the expiry of the accusation whose
            // departure takes the score below the threshold.
            trusted.sort_by_key(|a| std::cmp::Reverse(a.0));
            (1..=trusted.len())
                .find(|&n| score_of(&trusted[..n]) >= self.trust.threshold)
                .map(|n| trusted[n - 1].0)
                .unwrap_or(now)
        });
        Verdict {
            blocked,
            score,
            stranger_score: strangers.min(self.trust.stranger_cap),
            reporters,
            until,
            allowlisted,
        }
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
