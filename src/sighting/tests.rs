//! Signing, verification and every rejection reason.

use super::sign::{sign_in_domain, signed_message};
use super::*;
use crate::identity::{Identity, KeyCache};
use crate::target::Bounds;
use ed25519_dalek::Signer;
use prost::Message;

const NOW: Millis = 1_700_000_000_000;

fn draft(target: &str) -> Draft {
    Draft {
        target: Target::parse(target, Bounds::default()).unwrap(),
        kind: Kind::AuthFailure,
        observed_at: NOW,
        ttl_s: 3600,
        count: 5,
        evidence: Evidence {
            method: "REGISTER".into(),
            user_agent: "friendly-scanner".into(),
            reason: "5 failures in 60s".into(),
            usernames: vec!["100".into(), "101".into()],
        },
    }
}

fn alice() -> Identity {
    Identity::from_secret([1; 32])
}

/// Re-signs an arbitrary payload (to build records that pass the signature check but
/// break another rule).
fn signed_raw(id: &Identity, payload: proto::Sighting) -> proto::SignedSighting {
    let bytes = payload.encode_to_vec();
    let sig = id.signing_key().sign(&signed_message(DOMAIN, &bytes));
    proto::SignedSighting {
        payload: bytes.into(),
        signature: sig.to_bytes().to_vec().into(),
    }
}

fn base_payload(id: &Identity) -> proto::Sighting {
    proto::Sighting::decode(sign(id, draft("1.2.3.4")).payload()).unwrap()
}

#[test]
fn sign_verify_round_trip() {
    let rec = sign(&alice(), draft("1.2.3.4"));
    let back = verify(&rec.to_proto(), NOW, &AcceptLimits::default()).unwrap();
    assert_eq!(back, rec);
    assert_eq!(wire_id(&rec.to_proto()), *rec.id());
    assert_eq!(back.sighting().reporter, alice().public());
    assert_eq!(back.evidence().usernames, vec!["100", "101"]);
    assert_eq!(back.evidence().user_agent, "friendly-scanner");
    assert_eq!(rec.encode(), rec.to_proto().encode_to_vec());
    let decoded = proto::SignedSighting::decode(rec.encode().as_slice()).unwrap();
    assert_eq!(
        Record::decode_stored(&rec.encode(), &mut KeyCache::new(4)).unwrap(),
        rec
    );
    assert_eq!(verify(&decoded, NOW, &AcceptLimits::default()).unwrap().id(), rec.id());
}

#[test]
fn batch_verification_names_only_the_bad_ones() {
    let good: Vec<_> = (0..10).map(|i| sign(&alice(), draft(&format!("10.0.0.{i}")))).collect();
    let mut wire: Vec<_> = good.iter().map(Record::to_proto).collect();
    let mut sig = wire[3].signature.to_vec();
    sig[0] ^= 1;
    wire[3].signature = sig.into();
    let pending: Vec<_> = wire
        .iter()
        .map(|w| Pending::check(w, NOW, &AcceptLimits::default()).unwrap())
        .collect();
    let results = verify_batch(pending);
    for (i, r) in results.iter().enumerate() {
        if i == 3 {
            assert_eq!(r, &Err(Error::InvalidSignature));
        } else {
            assert_eq!(r.as_ref().unwrap(), &good[i]);
        }
    }
    let all_good: Vec<_> = good
        .iter()
        .map(|r| Pending::check(&r.to_proto(), NOW, &AcceptLimits::default()).unwrap())
        .collect();
    assert!(verify_batch(all_good).iter().all(Result::is_ok));
}

#[test]
fn bad_signature() {
    let mut w = sign(&alice(), draft("1.2.3.4")).to_proto();
    let mut sig = w.signature.to_vec();
    sig[10] ^= 0x40;
    w.signature = sig.into();
    assert_eq!(verify(&w, NOW, &AcceptLimits::default()), Err(Error::InvalidSignature));
    w.signature = vec![0u8; 63].into();
    assert_eq!(
        verify(&w, NOW, &AcceptLimits::default()),
        Err(Error::MalformedSignature(63))
    );
    assert!(Error::InvalidSignature.blames_sender());
    // Signed by someone else while claiming alice as reporter.
    let mallory = Identity::from_secret([9; 32]);
    let forged = mallory.signing_key().sign(&signed_message(DOMAIN, &w.payload));
    w.signature = forged.to_bytes().to_vec().into();
    assert_eq!(verify(&w, NOW, &AcceptLimits::default()), Err(Error::InvalidSignature));
}

#[test]
fn tampered_payload() {
    let rec = sign(&alice(), draft("1.2.3.4"));
    let mut p = base_payload(&alice());
    p.target = Some(Target::parse("5.6.7.8", Bounds::default()).unwrap().to_proto());
    let w = proto::SignedSighting {
        payload: p.encode_to_vec().into(),
        signature: rec.signature().to_vec().into(),
    };
    assert_eq!(verify(&w, NOW, &AcceptLimits::default()), Err(Error::InvalidSignature));
}

#[test]
fn wrong_domain() {
    let rec = sign_in_domain(&alice(), draft("1.2.3.4"), ENDORSEMENT_DOMAIN);
    assert_eq!(
        verify(&rec.to_proto(), NOW, &AcceptLimits::default()),
        Err(Error::WrongDomain)
    );
}

#[test]
fn oversized() {
    let mut p = base_payload(&alice());
    p.evidence.as_mut().unwrap().reason = "x".repeat(2000);
    let w = signed_raw(&alice(), p);
    assert!(matches!(
        verify(&w, NOW, &AcceptLimits::default()),
        Err(Error::Oversized { max: 1024, .. })
    ));
}

#[test]
fn evidence_bounds() {
    let mut p = base_payload(&alice());
    p.evidence.as_mut().unwrap().usernames = vec!["u".into(); 9];
    let w = signed_raw(&alice(), p);
    assert_eq!(
        verify(&w, NOW, &AcceptLimits::default()),
        Err(Error::EvidenceTooLarge("usernames"))
    );
    // Locally made evidence is cut rather than refused.
    let mut d = draft("1.2.3.4");
    d.evidence.user_agent = "é".repeat(100);
    let rec = sign(&alice(), d);
    assert!(verify(&rec.to_proto(), NOW, &AcceptLimits::default()).is_ok());
}

#[test]
fn future_dated() {
    let mut d = draft("1.2.3.4");
    d.observed_at = NOW + 5 * 60 * 1000 + 1;
    let w = sign(&alice(), d).to_proto();
    assert!(matches!(
        verify(&w, NOW, &AcceptLimits::default()),
        Err(Error::FutureDated { .. })
    ));
    let err = verify(&w, NOW, &AcceptLimits::default()).unwrap_err();
    assert!(!err.blames_sender(), "clock skew is not the forwarding peer's fault");
    let mut d = draft("1.2.3.4");
    d.observed_at = NOW + 5 * 60 * 1000;
    assert!(verify(&sign(&alice(), d).to_proto(), NOW, &AcceptLimits::default()).is_ok());
}

#[test]
fn already_expired() {
    let w = sign(&alice(), draft("1.2.3.4")).to_proto();
    assert!(verify(&w, NOW + 3600 * 1000 - 1, &AcceptLimits::default()).is_ok());
    assert_eq!(
        verify(&w, NOW + 3600 * 1000, &AcceptLimits::default()),
        Err(Error::Expired {
            expires_at: NOW + 3600 * 1000,
            now: NOW + 3600 * 1000
        })
    );
    assert!(!verify(&w, NOW + 3600 * 1000, &AcceptLimits::default())
        .unwrap_err()
        .blames_sender());
}

#[test]
fn over_broad_prefix() {
    let mut p = base_payload(&alice());
    p.target = Some(proto::Target {
        target: Some(proto::target::Target::Ip(proto::IpPrefix {
            address: vec![0, 0, 0, 0].into(),
            prefix_len: 0,
        })),
    });
    let w = signed_raw(&alice(), p);
    assert!(matches!(
        verify(&w, NOW, &AcceptLimits::default()),
        Err(Error::OverBroad { min_len: 16, .. })
    ));
}

#[test]
fn ttl_bounds_rejected_not_clamped() {
    let mut d = draft("1.2.3.4");
    d.ttl_s = 7 * 24 * 3600 + 1;
    let w = sign(&alice(), d).to_proto();
    assert!(matches!(
        verify(&w, NOW, &AcceptLimits::default()),
        Err(Error::BadTtl { .. })
    ));
    let mut d = draft("1.2.3.4");
    d.ttl_s = 0;
    assert!(matches!(
        verify(&sign(&alice(), d).to_proto(), NOW, &AcceptLimits::default()),
        Err(Error::BadTtl { .. })
    ));
}

#[test]
fn structural_rejections() {
    let mut p = base_payload(&alice());
    p.kind = 0;
    assert_eq!(
        verify(&signed_raw(&alice(), p), NOW, &AcceptLimits::default()),
        Err(Error::UnknownKind(0))
    );
    let mut p = base_payload(&alice());
    p.kind = 99;
    assert_eq!(
        verify(&signed_raw(&alice(), p), NOW, &AcceptLimits::default()),
        Err(Error::UnknownKind(99))
    );
    let mut p = base_payload(&alice());
    p.count = 0;
    assert_eq!(
        verify(&signed_raw(&alice(), p), NOW, &AcceptLimits::default()),
        Err(Error::ZeroCount)
    );
    let mut p = base_payload(&alice());
    p.reporter = vec![1, 2, 3].into();
    assert!(matches!(
        verify(&signed_raw(&alice(), p), NOW, &AcceptLimits::default()),
        Err(Error::BadReporter(_))
    ));
    let mut p = base_payload(&alice());
    p.target = None;
    assert!(matches!(
        verify(&signed_raw(&alice(), p), NOW, &AcceptLimits::default()),
        Err(Error::BadTarget(_))
    ));
    let garbage = proto::SignedSighting {
        payload: vec![0xff; 20].into(),
        signature: vec![0; 64].into(),
    };
    assert!(matches!(
        verify(&garbage, NOW, &AcceptLimits::default()),
        Err(Error::Decode(_))
    ));
}
