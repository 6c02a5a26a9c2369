//! Tests of endorsement signing, verification and the one-line form: every rejection,
//! and what blames the sender.

use super::*;
use crate::identity::Identity;
use crate::sighting::{self, Draft, Evidence, Kind};
use crate::target::{Bounds, Target};
use prost::Message;

const NOW: Millis = 1_800_000_000_000;
const SKEW: Millis = 300_000;
const DAY: Millis = 86_400_000;

fn org() -> Identity {
    Identity::from_secret([1; 32])
}

fn member() -> Identity {
    Identity::from_secret([2; 32])
}

fn good() -> EndorsementRecord {
    endorse(&org(), member().public(), "pbx-baden-01", NOW, DEFAULT_TTL_MS).unwrap()
}

/// The payload fields of a good endorsement, to break one at a time.
fn fields() -> proto::Endorsement {
    proto::Endorsement {
        org: org().public().as_bytes().to_vec().into(),
        member: member().public().as_bytes().to_vec().into(),
        kind: proto::EndorsementKind::Endorse as i32,
        issued_at_ms: NOW,
        expires_at_ms: NOW + DAY,
        name: "pbx-1".into(),
    }
}

/// Signs any payload fields as `signer` in `domain`, bypassing the signing checks.
fn signed_by(signer: &Identity, p: &proto::Endorsement, domain: &[u8]) -> proto::SignedEndorsement {
    let payload = p.encode_to_vec();
    proto::SignedEndorsement {
        signature: crate::signature::sign(signer, domain, &payload).to_vec().into(),
        payload: payload.into(),
    }
}

fn refused(p: proto::Endorsement) -> Error {
    verify(&signed_by(&org(), &p, DOMAIN), NOW, SKEW).unwrap_err()
}

#[test]
fn a_record_round_trips_through_wire_store_and_line() {
    let rec = good();
    let e = rec.endorsement();
    assert_eq!(
        (e.org, e.member, e.kind),
        (org().public(), member().public(), EndorsementKind::Endorse)
    );
    assert_eq!(
        (e.issued_at, e.expires_at, e.name.as_str()),
        (NOW, NOW + DEFAULT_TTL_MS, "pbx-baden-01")
    );
    assert_eq!(verify(&rec.to_proto(), NOW, SKEW), Ok(rec.clone()));
    assert_eq!(wire_id(&rec.to_proto()), *rec.id());
    assert_eq!(EndorsementRecord::decode_stored(&rec.encode()), Ok(rec.clone()));
    let line = rec.to_line();
    assert!(line.starts_with(LINE_PREFIX) && line.len() <= MAX_LINE_CHARS, "{line}");
    assert!(
        !line.contains('=') && !line.contains('+') && !line.contains('/'),
        "{line}"
    );
    assert_eq!(parse_line(&format!("  {line}\n"), NOW, SKEW), Ok(rec.clone()));
    // The largest record still fits a line.
    let long = endorse(&org(), member().public(), &"x".repeat(MAX_NAME_BYTES), NOW, MAX_TTL_MS).unwrap();
    assert!(long.to_line().len() <= MAX_LINE_CHARS);
    assert_eq!(parse_line(&long.to_line(), NOW, SKEW), Ok(long));
    // A revocation too.
    let rev = revoke(&org(), member().public(), NOW).unwrap();
    assert_eq!(rev.endorsement().expires_at, NOW + MAX_TTL_MS);
    assert_eq!(parse_line(&rev.to_line(), NOW, SKEW), Ok(rev));
}

#[test]
fn only_an_unexpired_endorsement_is_active() {
    let rec = good();
    assert!(rec.is_active(NOW) && rec.is_active(NOW + DEFAULT_TTL_MS - 1));
    assert!(!rec.is_active(NOW + DEFAULT_TTL_MS));
    assert!(!revoke(&org(), member().public(), NOW).unwrap().is_active(NOW));
}

#[test]
fn a_sighting_domain_signature_is_named_wrong_domain() {
    let e = verify(&signed_by(&org(), &fields(), sighting::DOMAIN), NOW, SKEW).unwrap_err();
    assert_eq!(e, Error::WrongDomain);
    assert!(e.blames_sender());
}

#[test]
fn a_sighting_replayed_as_an_endorsement_and_back_is_refused() {
    let s = sighting::sign(
        &org(),
        Draft {
            target: Target::parse("1.2.3.4", Bounds::default()).unwrap(),
            kind: Kind::Scan,
            observed_at: NOW,
            ttl_s: 60,
            count: 1,
            evidence: Evidence::default(),
        },
    );
    let as_endorsement = proto::SignedEndorsement {
        payload: s.payload().to_vec().into(),
        signature: s.signature().to_vec().into(),
    };
    let e = verify(&as_endorsement, NOW, SKEW).unwrap_err();
    assert!(e.blames_sender(), "{e}");
    // And an endorsement's signature never passes as a sighting.
    let rec = good();
    let as_sighting = proto::SignedSighting {
        payload: rec.payload().to_vec().into(),
        signature: rec.signature().to_vec().into(),
    };
    assert!(sighting::verify(&as_sighting, NOW, &sighting::AcceptLimits::default()).is_err());
}

#[test]
fn forged_tampered_and_weak_signatures_are_refused() {
    // Claims the org's key, signed by another.
    let mallory = Identity::from_secret([9; 32]);
    assert_eq!(
        verify(&signed_by(&mallory, &fields(), DOMAIN), NOW, SKEW),
        Err(Error::InvalidSignature)
    );
    // Tampered after signing.
    let mut w = good().to_proto();
    let mut payload = w.payload.to_vec();
    let last = payload.len() - 1;
    payload[last] ^= 0x01; // a name character
    w.payload = payload.into();
    assert_eq!(verify(&w, NOW, SKEW), Err(Error::InvalidSignature));
    // s not below the group order.
    let mut w = good().to_proto();
    let mut sig = w.signature.to_vec();
    sig[32..].fill(0xff);
    w.signature = sig.into();
    assert!(matches!(verify(&w, NOW, SKEW), Err(Error::WeakSignature(_))));
    // Not 64 bytes.
    let mut w = good().to_proto();
    w.signature = w.signature.slice(..63);
    assert_eq!(verify(&w, NOW, SKEW), Err(Error::MalformedSignature(63)));
}

#[test]
fn keys_must_be_valid_and_distinct() {
    let mut small_order = [0u8; 32];
    small_order[0] = 1;
    let mut p = fields();
    p.org = small_order.to_vec().into();
    assert!(matches!(refused(p), Error::BadOrg(_)));
    let mut p = fields();
    p.member = vec![7; 31].into();
    assert!(matches!(refused(p), Error::BadMember(_)));
    let mut p = fields();
    p.member = p.org.clone();
    assert_eq!(refused(p), Error::SelfEndorsement);
    assert_eq!(
        endorse(&org(), org().public(), "self", NOW, DAY).unwrap_err(),
        Error::SelfEndorsement
    );
    assert_eq!(revoke(&org(), org().public(), NOW).unwrap_err(), Error::SelfEndorsement);
}

#[test]
fn unknown_kinds_are_refused() {
    for kind in [0, 3, 99, -1] {
        let mut p = fields();
        p.kind = kind;
        assert_eq!(refused(p), Error::UnknownKind(kind));
    }
}

#[test]
fn oversized_payloads_and_undecodable_bytes_are_refused() {
    let w = proto::SignedEndorsement {
        payload: vec![0; MAX_PAYLOAD_BYTES + 1].into(),
        signature: vec![0; 64].into(),
    };
    assert_eq!(
        verify(&w, NOW, SKEW),
        Err(Error::Oversized {
            len: MAX_PAYLOAD_BYTES + 1,
            max: MAX_PAYLOAD_BYTES
        })
    );
    let w = proto::SignedEndorsement {
        payload: vec![0xff; 40].into(),
        signature: good().signature().to_vec().into(),
    };
    assert!(matches!(verify(&w, NOW, SKEW), Err(Error::Decode(_))));
}

#[test]
fn names_are_bounded_and_plain() {
    for bad in ["", "pbx 01", "pbx/01", "pbx\u{e9}", "a\nb", "pbx#1"] {
        let mut p = fields();
        p.name = bad.into();
        assert!(matches!(refused(p), Error::BadName(_)), "{bad:?}");
        assert!(matches!(
            endorse(&org(), member().public(), bad, NOW, DAY),
            Err(Error::BadName(_))
        ));
    }
    let mut p = fields();
    p.name = "x".repeat(MAX_NAME_BYTES + 1);
    assert!(matches!(refused(p), Error::BadName(_)));
    for ok in [
        "pbx-baden-01",
        "gw_2.zurich",
        "pbx@acme:5060",
        &"x".repeat(MAX_NAME_BYTES),
    ] {
        assert!(endorse(&org(), member().public(), ok, NOW, DAY).is_ok(), "{ok}");
    }
    // A revocation carries none.
    let mut p = fields();
    p.kind = proto::EndorsementKind::Revoke as i32;
    p.expires_at_ms = NOW + MAX_TTL_MS;
    assert_eq!(refused(p.clone()), Error::NameOnRevocation);
    p.name.clear();
    assert!(verify(&signed_by(&org(), &p, DOMAIN), NOW, SKEW).is_ok());
}

#[test]
fn expiries_follow_the_kind_rule() {
    let bad_expiry = |kind: proto::EndorsementKind, issued: Millis, expires: Millis| {
        let mut p = fields();
        p.kind = kind as i32;
        p.issued_at_ms = issued;
        p.expires_at_ms = expires;
        if kind == proto::EndorsementKind::Revoke {
            p.name.clear();
        }
        matches!(
            verify(&signed_by(&org(), &p, DOMAIN), NOW, SKEW),
            Err(Error::BadExpiry { .. })
        )
    };
    use proto::EndorsementKind::{Endorse, Revoke};
    // A revocation expires exactly issued + MAX_TTL.
    assert!(bad_expiry(Revoke, NOW, NOW + MAX_TTL_MS - 1));
    assert!(bad_expiry(Revoke, NOW, NOW + MAX_TTL_MS + 1));
    assert!(bad_expiry(Revoke, NOW, NOW + DAY));
    // An endorsement within issued + 1 ..= issued + MAX_TTL.
    assert!(bad_expiry(Endorse, NOW, NOW));
    assert!(bad_expiry(Endorse, NOW, NOW - 1));
    assert!(bad_expiry(Endorse, NOW, NOW + MAX_TTL_MS + 1));
    assert!(!bad_expiry(Endorse, NOW, NOW + MAX_TTL_MS));
    // issued + MAX_TTL must not overflow.
    assert!(bad_expiry(Endorse, u64::MAX - 5, u64::MAX));
    assert!(bad_expiry(Revoke, u64::MAX - 5, u64::MAX));
    // Signing refuses TTLs outside 1..=MAX_TTL.
    for ttl in [0, MAX_TTL_MS + 1] {
        assert_eq!(
            endorse(&org(), member().public(), "pbx", NOW, ttl).unwrap_err(),
            Error::BadTtl {
                ttl_ms: ttl,
                max_ms: MAX_TTL_MS
            }
        );
    }
    assert!(endorse(&org(), member().public(), "pbx", NOW, MAX_TTL_MS).is_ok());
    assert!(revoke(&org(), member().public(), u64::MAX - 5).is_err());
}

#[test]
fn the_clock_window_is_a_local_limit() {
    let early = endorse(&org(), member().public(), "pbx", NOW + SKEW + 1, DAY).unwrap();
    let e = verify(&early.to_proto(), NOW, SKEW).unwrap_err();
    assert_eq!(
        e,
        Error::FutureDated {
            issued_at: NOW + SKEW + 1,
            now: NOW
        }
    );
    assert!(!e.blames_sender());
    let edge = endorse(&org(), member().public(), "pbx", NOW + SKEW, DAY).unwrap();
    assert!(verify(&edge.to_proto(), NOW, SKEW).is_ok());
    let rec = good();
    let at_expiry = NOW + DEFAULT_TTL_MS;
    let e = verify(&rec.to_proto(), at_expiry, SKEW).unwrap_err();
    assert_eq!(
        e,
        Error::Expired {
            expires_at: at_expiry,
            now: at_expiry
        }
    );
    assert!(!e.blames_sender());
    assert!(verify(&rec.to_proto(), at_expiry - 1, SKEW).is_ok());
    // A stored record decodes whatever the clock says.
    assert_eq!(EndorsementRecord::decode_stored(&rec.encode()), Ok(rec));
}

#[test]
fn malformed_lines_are_clear_errors() {
    let line = good().to_line();
    let body = &line[LINE_PREFIX.len()..];
    assert_eq!(parse_line(body, NOW, SKEW), Err(Error::NotALine));
    assert_eq!(parse_line("", NOW, SKEW), Err(Error::NotALine));
    assert_eq!(
        parse_line(&format!("fraudmesh-endorsement:v2:{body}"), NOW, SKEW),
        Err(Error::NotALine)
    );
    for bad in [
        format!("{LINE_PREFIX}!!!!"),
        format!("{line}=="),
        format!("{LINE_PREFIX}{body}a"),
    ] {
        assert!(
            matches!(parse_line(&bad, NOW, SKEW), Err(Error::LineBase64(_))),
            "{bad}"
        );
    }
    let long = format!("{LINE_PREFIX}{}", "A".repeat(MAX_LINE_CHARS));
    assert_eq!(
        parse_line(&long, NOW, SKEW),
        Err(Error::LineTooLong {
            len: long.len(),
            max: MAX_LINE_CHARS
        })
    );
    // Base64 of bytes that are no SignedEndorsement.
    let junk = format!(
        "{LINE_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xff; 30])
    );
    assert!(matches!(parse_line(&junk, NOW, SKEW), Err(Error::Decode(_))));
    // A line whose record is tampered with.
    let mut w = good().to_proto();
    let mut payload = w.payload.to_vec();
    let last = payload.len() - 1;
    payload[last] ^= 0x01;
    w.payload = payload.into();
    let tampered = format!(
        "{LINE_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(w.encode_to_vec())
    );
    assert_eq!(parse_line(&tampered, NOW, SKEW), Err(Error::InvalidSignature));
}

#[test]
fn only_the_clock_window_does_not_blame_and_labels_are_distinct() {
    let all = [
        Error::Oversized { len: 1, max: 1 },
        Error::MalformedSignature(1),
        Error::Decode(String::new()),
        Error::BadOrg(crate::identity::Error::BadKey),
        Error::BadMember(crate::identity::Error::BadKey),
        Error::SelfEndorsement,
        Error::UnknownKind(0),
        Error::BadName(String::new()),
        Error::NameOnRevocation,
        Error::BadExpiry {
            kind: EndorsementKind::Endorse,
            issued_at: 0,
            expires_at: 0,
        },
        Error::BadTtl { ttl_ms: 0, max_ms: 0 },
        Error::WeakSignature(""),
        Error::WrongDomain,
        Error::InvalidSignature,
        Error::FutureDated { issued_at: 0, now: 0 },
        Error::Expired { expires_at: 0, now: 0 },
        Error::NotALine,
        Error::LineTooLong { len: 0, max: 0 },
        Error::LineBase64(String::new()),
    ];
    let mut labels: Vec<_> = all.iter().map(Error::label).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), all.len());
    for e in &all {
        let local = matches!(e, Error::FutureDated { .. } | Error::Expired { .. });
        assert_eq!(e.blames_sender(), !local, "{e:?}");
    }
}
