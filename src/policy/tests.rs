//! Tests of the block decision: trusted weights, strangers, retractions, the allowlist,
//! replicas converging; `tests/orgs.rs` covers endorsements, allows, reputation and explain.

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

mod orgs;
