//! Tests of trust through organisations (endorsements, revocations, expiry), the
//! operator's allows, reputation and explanations.

use super::*;
use crate::endorsement::{endorse, revoke, EndorsementRecord, MAX_TTL_MS};
use crate::sighting::RecordId;

const T0: Millis = 1_800_000_000_000;
const HOUR: Millis = 3_600_000;
const DAY: Millis = 86_400_000;

/// Trusted at [`FULL`] as "acme".
fn org_a() -> Identity {
    id(100)
}

/// Trusted at 0.5 as "half".
fn org_b() -> Identity {
    id(101)
}

/// Not trusted.
fn org_c() -> Identity {
    id(102)
}

/// This node is id(1); id(2) a peer at 0.6; orgs A (1.0) and B (0.5) trusted.
fn org_policy() -> Policy {
    Policy::new(
        TrustConfig {
            local: id(1).public(),
            trusted: HashMap::from([(id(2).public(), 600)]),
            orgs: HashMap::from([
                (
                    org_a().public(),
                    OrgTrust {
                        name: "acme".into(),
                        weight: FULL,
                    },
                ),
                (
                    org_b().public(),
                    OrgTrust {
                        name: "half".into(),
                        weight: 500,
                    },
                ),
            ]),
            stranger_weight: 100,
            stranger_cap: 500,
            threshold: FULL,
            reputation: ReputationConfig::default(),
        },
        vec![],
    )
    .unwrap()
}

fn endorsed(p: &mut Policy, org: &Identity, member: u8, at: Millis, ttl: Millis) -> EndorsementRecord {
    let r = endorse(org, id(member).public(), &format!("pbx-{member}"), at, ttl).unwrap();
    p.roster_mut().merge(&r);
    r
}

fn revoked(p: &mut Policy, org: &Identity, member: u8, at: Millis) -> EndorsementRecord {
    let r = revoke(org, id(member).public(), at).unwrap();
    p.roster_mut().merge(&r);
    r
}

/// A scan of 1.2.3.4 by `who` at T0, active for an hour... times `hours`.
fn scan(who: u8, hours: u32) -> RecordSummary {
    rec(&id(who), "1.2.3.4", Kind::Scan, T0, hours * 3600)
}

#[test]
fn an_endorsed_member_counts_its_org_weight_until_revoked() {
    let mut p = org_policy();
    let accusation = scan(10, 2);
    assert!(p.is_stranger(&id(10).public(), T0));
    assert!(!p.decide(&t("1.2.3.4"), [&accusation], T0).blocked);

    let e = endorsed(&mut p, &org_a(), 10, T0 - HOUR, 30 * DAY);
    let w = p.weight(&id(10).public(), T0);
    assert_eq!(
        (w.weight, w.configured, w.reputation, w.stranger),
        (FULL, FULL, FULL, false)
    );
    assert_eq!(w.valid_until, Some(e.endorsement().expires_at));
    assert_eq!(
        w.via,
        Via::Org {
            org: org_a().public(),
            org_name: "acme".into(),
            member_name: "pbx-10".into(),
            until: e.endorsement().expires_at,
        }
    );
    let d = p.decide(&t("1.2.3.4"), [&accusation], T0);
    assert!(d.blocked);
    assert_eq!((d.score, d.until), (FULL, Some(T0 + 2 * HOUR)));

    // Revoked: a stranger again, and the block it carried is lifted at once.
    revoked(&mut p, &org_a(), 10, T0);
    assert!(p.is_stranger(&id(10).public(), T0));
    let d = p.decide(&t("1.2.3.4"), [&accusation], T0);
    assert!(!d.blocked);
    assert_eq!((d.score, d.stranger_score), (0, 100));
    // An endorsement issued after the revocation trusts it again.
    endorsed(&mut p, &org_a(), 10, T0 + 1, DAY);
    assert!(p.decide(&t("1.2.3.4"), [&accusation], T0 + 2).blocked);
}

#[test]
fn an_accusation_counts_only_while_the_endorsement_lasts() {
    let mut p = org_policy();
    let e = endorsed(&mut p, &org_a(), 10, T0 - HOUR, 2 * HOUR);
    let until = e.endorsement().expires_at;
    assert_eq!(until, T0 + HOUR);
    let accusation = scan(10, 3);
    let d = p.decide(&t("1.2.3.4"), [&accusation], T0);
    assert!(d.blocked);
    // The record lasts 3 h, the endorsement 1 h: the block ends with the endorsement.
    assert_eq!(d.until, Some(until));
    assert!(p.decide(&t("1.2.3.4"), [&accusation], until - 1).blocked);
    assert!(!p.decide(&t("1.2.3.4"), [&accusation], until).blocked);
    assert!(p.is_stranger(&id(10).public(), until));
    // With the local node's own 2 h record, the block lasts as long as that.
    let own = rec(&id(1), "1.2.3.4", Kind::Scan, T0, 7200);
    assert_eq!(
        p.decide(&t("1.2.3.4"), [&accusation, &own], T0).until,
        Some(T0 + 2 * HOUR)
    );
}

#[test]
fn members_of_an_org_trusted_at_half_need_two_distinct_members() {
    let mut p = org_policy();
    endorsed(&mut p, &org_b(), 20, T0, DAY);
    endorsed(&mut p, &org_b(), 21, T0, DAY);
    let one = scan(20, 1);
    let d = p.decide(&t("1.2.3.4"), [&one], T0);
    assert!(!d.blocked);
    assert_eq!(d.score, 500);
    let e = p.explain(&t("1.2.3.4"), [&one], T0);
    assert_eq!(e.why, "not blocked: trusted weight 0.5 is below the threshold 1.0");
    let two = scan(21, 1);
    let d = p.decide(&t("1.2.3.4"), [&one, &two], T0);
    assert!(d.blocked);
    assert_eq!(d.score, FULL);
    // Plus any number of strangers: still one member short.
    let strangers: Vec<_> = (40..60).map(|n| scan(n, 1)).collect();
    assert!(!p.decide(&t("1.2.3.4"), strangers.iter().chain([&one]), T0).blocked);
}

#[test]
fn an_untrusted_orgs_endorsement_changes_nothing() {
    let mut p = org_policy();
    let before = p.weight(&id(30).public(), T0);
    endorsed(&mut p, &org_c(), 30, T0, DAY);
    assert!(!p.is_trusted_org(&org_c().public()) && p.is_trusted_org(&org_a().public()));
    assert_eq!(p.weight(&id(30).public(), T0), before);
    assert_eq!(before.via, Via::Stranger);
    let accusation = scan(30, 1);
    let e = p.explain(&t("1.2.3.4"), [&accusation], T0);
    assert!(!e.verdict.blocked);
    assert_eq!(e.why, "not blocked: only strangers accuse it");
    assert_eq!(e.records[0].reason, "stranger");
}

#[test]
fn the_highest_weight_wins_across_peers_and_orgs() {
    let mut p = org_policy();
    // id(2) is a peer at 0.6; org B's 0.5 does not lower it.
    endorsed(&mut p, &org_b(), 2, T0, DAY);
    let w = p.weight(&id(2).public(), T0);
    assert_eq!((w.weight, w.via, w.valid_until), (600, Via::Peer, None));
    // Org A's 1.0 raises it, until A's endorsement expires.
    let a = endorsed(&mut p, &org_a(), 2, T0, HOUR);
    let w = p.weight(&id(2).public(), T0);
    assert_eq!((w.weight, w.valid_until), (FULL, Some(a.endorsement().expires_at)));
    assert_eq!(p.weight(&id(2).public(), T0 + HOUR).via, Via::Peer);
    // Between two orgs of equal weight, the later expiry is chosen.
    let mut p = org_policy();
    let mut trust = p.trust().clone();
    trust.orgs.get_mut(&org_b().public()).unwrap().weight = FULL;
    p = Policy::new(trust, vec![]).unwrap();
    endorsed(&mut p, &org_a(), 10, T0, HOUR);
    let b = endorsed(&mut p, &org_b(), 10, T0, DAY);
    assert_eq!(
        p.weight(&id(10).public(), T0).valid_until,
        Some(b.endorsement().expires_at)
    );
}

#[test]
fn reputation_costs_weight_recovers_and_never_penalises_local_or_strangers() {
    let mut p = org_policy();
    let peer = id(2).public();
    assert!(p.penalise(&peer, T0));
    let w = p.weight(&peer, T0);
    assert_eq!((w.weight, w.configured, w.reputation), (450, 600, 750));
    // 50 thousandths a day: halfway after 2.5 days, whole after 5.
    assert_eq!(p.reputation_of(&peer, T0 + DAY * 5 / 2), 875);
    assert_eq!(p.weight(&peer, T0 + 5 * DAY).weight, 600);
    // Penalties add up to nothing left, never below.
    for _ in 0..6 {
        p.penalise(&peer, T0);
    }
    assert_eq!((p.reputation_of(&peer, T0), p.weight(&peer, T0).weight), (0, 0));
    assert!(!p.is_stranger(&peer, T0), "weight 0 is still trusted, not a stranger");
    assert_eq!(p.penalties().count(), 1);
    assert!(p.expire_penalties(T0 + 19 * DAY).is_empty());
    assert_eq!(p.expire_penalties(T0 + 20 * DAY), vec![peer]);
    // Restored penalties count as before.
    p.restore_penalty(peer, Penalty { amount: 500, at: T0 });
    assert_eq!(p.weight(&peer, T0).weight, 300);
    // Never this node, never a stranger.
    assert!(!p.penalise(&id(1).public(), T0));
    assert!(!p.penalise(&id(50).public(), T0));
    assert_eq!(p.weight(&id(1).public(), T0).weight, FULL);
    assert_eq!(p.penalties().count(), 1);
    // A member loses weight through its org the same way.
    endorsed(&mut p, &org_a(), 10, T0, DAY);
    assert!(p.penalise(&id(10).public(), T0));
    assert_eq!(p.weight(&id(10).public(), T0).weight, 750);
}

#[test]
fn an_allow_wins_over_the_mesh_until_it_expires() {
    let mut p = org_policy();
    let own = rec(&id(1), "1.2.3.4", Kind::Manual, T0, 7200);
    p.allow(
        t("1.2.3.0/24"),
        Allow {
            reason: "customer office".into(),
            at: T0,
            until: Some(T0 + HOUR),
        },
    );
    let d = p.decide(&t("1.2.3.4"), [&own], T0);
    assert!(!d.blocked && d.allowed && !d.allowlisted);
    assert_eq!(d.score, FULL);
    let e = p.explain(&t("1.2.3.4"), [&own], T0);
    assert_eq!(
        e.why,
        "not blocked: allowed by the operator (as 1.2.3.0/24) until 2027-01-15T09:00:00Z: customer office"
    );
    assert_eq!(e.allowed.as_ref().map(|(t, _)| t.clone()), Some(t("1.2.3.0/24")));
    assert!(e.records[0].counted);
    // Expired: the mesh decides again.
    assert!(p.decide(&t("1.2.3.4"), [&own], T0 + HOUR).blocked);
    assert!(p.expire_allows(T0 + HOUR - 1).is_empty());
    assert_eq!(p.expire_allows(T0 + HOUR), vec![t("1.2.3.0/24")]);
    assert_eq!(p.allows().count(), 0);
    // Without expiry; a broader accusation overlapping it is allowed too; removal.
    p.allow(
        t("1.2.3.4"),
        Allow {
            reason: "gateway".into(),
            at: T0,
            until: None,
        },
    );
    let broad = rec(&id(1), "1.2.0.0/16", Kind::Manual, T0, 7200);
    assert!(p.decide(&t("1.2.0.0/16"), [&broad], T0 + 100 * DAY).allowed);
    assert_eq!(
        p.explain(&t("1.2.3.4"), [&own], T0).why,
        "not blocked: allowed by the operator indefinitely: gateway"
    );
    assert!(!p.decide(&t("1.2.4.0/24"), [&broad], T0).allowed);
    assert!(p.unallow(&t("1.2.3.4")));
    assert!(!p.unallow(&t("1.2.3.4")));
    assert!(p.decide(&t("1.2.3.4"), [&own], T0).blocked);
    // Number prefixes overlap by prefix, either way.
    p.allow(
        t("+4190012"),
        Allow {
            reason: "hotline".into(),
            at: T0,
            until: None,
        },
    );
    assert!(p.allowed(&t("+41900"), T0).is_some());
    assert!(p.allowed(&t("+419001234"), T0).is_some());
    assert!(p.allowed(&t("+41901"), T0).is_none());
    assert!(p.allowed(&t("1.2.3.4"), T0).is_none());
}

#[test]
fn explain_lists_every_record_and_says_why() {
    let mut p = org_policy();
    endorsed(&mut p, &org_b(), 20, T0, DAY);
    let records = [
        scan(1, 1),
        scan(20, 1),
        scan(50, 1),
        rec(&id(2), "1.2.3.4", Kind::Retract, T0, 60),
        rec(&id(3), "1.2.3.4", Kind::Scan, T0 - 2 * HOUR, 60),
    ];
    let e = p.explain(&t("1.2.3.4"), &records, T0);
    assert_eq!(e.why, "blocked: trusted weight 1.5 reaches the threshold 1.0");
    assert_eq!(e.threshold, FULL);
    assert_eq!(e.verdict, p.decide(&t("1.2.3.4"), &records, T0));
    let reasons: Vec<_> = e.records.iter().map(|r| (r.reason, r.counted)).collect();
    assert_eq!(
        reasons,
        vec![
            ("counted", true),
            ("counted", true),
            ("stranger", false),
            ("retraction", false),
            ("expired", false),
        ]
    );
    assert_eq!(e.records[1].weighed.weight, 500);
    assert_eq!(e.records[1].reporter, id(20).public());
    assert_eq!(e.records[1].expires_at, T0 + HOUR);
    assert_eq!(
        p.explain(&t("1.2.3.4"), [], T0).why,
        "not blocked: no active accusation"
    );
    let allowlisted = Policy::new(p.trust().clone(), vec!["1.2.3.0/24".parse().unwrap()]).unwrap();
    assert_eq!(
        allowlisted.explain(&t("1.2.3.4"), &records, T0).why,
        "not blocked: the target overlaps the allowlist"
    );
}

#[test]
fn weights_and_instants_read_plainly() {
    assert_eq!(
        [0, 5, 250, 500, 1000, 1500, 2345].map(decimal),
        ["0.0", "0.005", "0.25", "0.5", "1.0", "1.5", "2.345"]
    );
    assert_eq!(utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(utc(T0), "2027-01-15T08:00:00Z");
    assert_eq!(utc((951_782_400 + 86_399) * 1000 + 999), "2000-02-29T23:59:59Z");
    assert_eq!(utc(4_102_444_800_000), "2100-01-01T00:00:00Z");
}

/// One random endorsement or revocation: (org 0..3, member 0..4, revoke, issued hour,
/// ttl hours).
type Pick = (u8, u8, bool, u64, u64);

fn record_of(&(org, member, is_revoke, hour, ttl): &Pick) -> EndorsementRecord {
    let org = [org_a(), org_b(), org_c()][org as usize].clone_identity();
    let member = id(10 + member).public();
    let at = T0 + hour * HOUR;
    if is_revoke {
        revoke(&org, member, at).unwrap()
    } else {
        endorse(&org, member, "pbx", at, ttl * HOUR).unwrap()
    }
}

trait CloneIdentity {
    fn clone_identity(&self) -> Identity;
}

impl CloneIdentity for Identity {
    fn clone_identity(&self) -> Identity {
        Identity::from_secret(self.secret_bytes())
    }
}

/// The weight a member should have at `now`, from all records at once (not merged):
/// per org the newest record by (issued_at, id); the largest trusted org weight among
/// active endorsements; `None` for a stranger.
fn model_weight(records: &[EndorsementRecord], member: &PublicKey, now: Millis) -> Option<Weight> {
    let trusted = [(org_a().public(), FULL), (org_b().public(), 500)];
    trusted
        .iter()
        .filter_map(|(org, w)| {
            let newest = records
                .iter()
                .filter(|r| r.endorsement().org == *org && r.endorsement().member == *member)
                .max_by_key(|r| (r.endorsement().issued_at, *r.id()))?;
            newest.is_active(now).then_some(*w)
        })
        .max()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// N replicas merging the same endorsements and revocations in random orders, with
    /// duplicates, hold the same roster, give every member the same weight (the one the
    /// records imply), and decide the same: a revoked, expired or untrusted member is a
    /// stranger whose sightings do not count.
    #[test]
    fn replicas_agree_on_weights_and_decisions(
        picks in prop::collection::vec((0u8..3, 0u8..4, any::<bool>(), 0u64..4, prop::sample::select(vec![1u64, 3, 10])), 1..24),
        orders in prop::collection::vec(any::<u64>(), 2..5),
        accusers in prop::collection::vec(0u8..4, 0..4),
        at_hour in 0u64..16,
    ) {
        let records: Vec<EndorsementRecord> = picks.iter().map(record_of).collect();
        let now = T0 + at_hour * HOUR;
        let mut accusers = accusers;
        accusers.sort_unstable();
        accusers.dedup();
        let accusations: Vec<RecordSummary> =
            accusers.iter().map(|&m| rec(&id(10 + m), "1.2.3.4", Kind::Scan, T0, 20 * 3600)).collect();
        let mut seen = Vec::new();
        for seed in orders {
            let mut order: Vec<usize> = (0..records.len()).chain(0..records.len() / 2).collect();
            let mut s = seed;
            for i in (1..order.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (s >> 33) as usize % (i + 1));
            }
            let mut p = org_policy();
            for i in order {
                p.roster_mut().merge(&records[i]);
            }
            let mut ids: Vec<RecordId> = p.roster().records().map(|r| *r.id()).collect();
            ids.sort_unstable();
            let weights: Vec<Weighed> = (0..4).map(|m| p.weight(&id(10 + m).public(), now)).collect();
            for (m, w) in weights.iter().enumerate() {
                let want = model_weight(&records, &id(10 + m as u8).public(), now);
                prop_assert_eq!(w.stranger, want.is_none());
                if let Some(want) = want {
                    prop_assert_eq!(w.weight, want);
                }
            }
            let verdict = p.decide(&t("1.2.3.4"), &accusations, now);
            let score: Weight = accusers
                .iter()
                .filter_map(|&m| model_weight(&records, &id(10 + m).public(), now))
                .sum();
            prop_assert_eq!(verdict.score, score);
            prop_assert_eq!(verdict.blocked, score >= FULL);
            seen.push((ids, weights, verdict));
        }
        for s in &seen[1..] {
            prop_assert_eq!(s, &seen[0]);
        }
    }

    /// Whatever the penalties and their times, a reporter's weight is never above its
    /// configured weight, its factor never above FULL, it only grows between penalties,
    /// and it is whole again once the recovery time has passed.
    #[test]
    fn reputation_stays_below_configured_and_recovers(
        steps in prop::collection::vec((0u64..(3 * DAY), any::<bool>()), 1..20),
        penalty in 0u32..=FULL,
        recovery in 1u32..=FULL,
        configured in 0u32..=FULL,
    ) {
        let mut trust = org_policy().trust().clone();
        trust.trusted.insert(id(2).public(), configured);
        trust.reputation = ReputationConfig { penalty, recovery_per_day: recovery };
        let mut p = Policy::new(trust, vec![]).unwrap();
        let peer = id(2).public();
        let mut now = T0;
        let mut last = p.weight(&peer, now).weight;
        for (delay, penalise) in steps {
            now += delay;
            let w = p.weight(&peer, now);
            prop_assert!(w.weight <= w.configured && w.configured == configured);
            prop_assert!(w.reputation <= FULL);
            prop_assert!(w.weight >= last, "recovers between penalties");
            if penalise {
                prop_assert!(p.penalise(&peer, now));
            }
            last = p.weight(&peer, now).weight;
            prop_assert!(last <= w.weight);
        }
        let whole = now + Millis::from(FULL).div_ceil(Millis::from(recovery)) * DAY;
        prop_assert_eq!(p.reputation_of(&peer, whole), FULL);
        prop_assert_eq!(p.weight(&peer, whole).weight, configured);
    }
}

#[test]
fn a_revocation_outlives_the_endorsement_in_the_policy_too() {
    let mut p = org_policy();
    let e = endorsed(&mut p, &org_a(), 10, T0, MAX_TTL_MS);
    revoked(&mut p, &org_a(), 10, T0 + DAY);
    let late = e.endorsement().expires_at - 1;
    p.roster_mut().expire(late);
    // The old endorsement arrives again: still revoked.
    assert!(!p.roster_mut().merge(&e));
    assert!(p.is_stranger(&id(10).public(), T0 + 2 * DAY));
}
