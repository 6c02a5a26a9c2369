//! Signing, verification and every rejection reason.

use super::sign::sign_in_domain;
use super::*;
use crate::identity::{Identity, KeyCache};
use crate::signature::signed_message;
use crate::target::Bounds;

mod torsion;
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
    // A bit of `s` (low bytes: it stays below the group order).
    let mut sig = wire[3].signature.to_vec();
    sig[32] ^= 1;
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
    sig[40] ^= 0x40;
    w.signature = sig.into();
    assert_eq!(verify(&w, NOW, &AcceptLimits::default()), Err(Error::InvalidSignature));
    // Any bit of R: either not a point any more, or the wrong point; invalid either way.
    for bit in 0..255 {
        let mut r_flipped = sign(&alice(), draft("1.2.3.4")).to_proto();
        let mut sig = r_flipped.signature.to_vec();
        sig[bit / 8] ^= 1 << (bit % 8);
        r_flipped.signature = sig.into();
        assert_eq!(
            verify(&r_flipped, NOW, &AcceptLimits::default()),
            Err(Error::InvalidSignature),
            "bit {bit}"
        );
    }
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

fn ip_target(address: Vec<u8>, prefix_len: u32) -> Option<proto::Target> {
    Some(proto::Target {
        target: Some(proto::target::Target::Ip(proto::IpPrefix {
            address: address.into(),
            prefix_len,
        })),
    })
}

#[test]
fn over_broad_prefix() {
    // Beyond the protocol's /8: invalid everywhere, blames.
    for len in [0, 7] {
        let mut p = base_payload(&alice());
        p.target = ip_target(vec![0, 0, 0, 0], len);
        let err = verify(&signed_raw(&alice(), p), NOW, &AcceptLimits::default()).unwrap_err();
        assert!(matches!(err, Error::OverBroad { min_len: 8, .. }), "{err}");
        assert!(err.blames_sender());
    }
    let mut p = base_payload(&alice());
    p.target = ip_target(vec![0x20, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 15);
    assert!(matches!(
        verify(&signed_raw(&alice(), p), NOW, &AcceptLimits::default()),
        Err(Error::OverBroad { min_len: 16, .. })
    ));
}

#[test]
fn prefixes_within_the_protocol_but_beyond_local_bounds_do_not_blame() {
    let limits = AcceptLimits::default(); // /16 and /32
    for (address, len) in [(vec![10, 0, 0, 0], 8u32), (vec![10, 16, 0, 0], 12)] {
        let mut p = base_payload(&alice());
        p.target = ip_target(address, len);
        let w = signed_raw(&alice(), p);
        let err = verify(&w, NOW, &limits).unwrap_err();
        assert!(
            matches!(err, Error::OutsideLocalLimits(LocalLimit::Prefix { min_len: 16, .. })),
            "{err}"
        );
        assert!(!err.blames_sender());
        assert_eq!(err.label(), "outside_local_limits");
        // Valid on the wire: a relay verifies it, and a node with looser bounds stores it.
        let pending = Pending::check_wire(&w, NOW, &limits).unwrap();
        assert_eq!(limits.admit(pending.sighting()), Err(err));
        assert!(pending.verify().is_ok());
        let loose = AcceptLimits {
            bounds: Bounds {
                min_v4_len: 8,
                min_v6_len: 16,
            },
            ..limits
        };
        assert!(verify(&w, NOW, &loose).is_ok());
    }
    // A retraction of such a prefix is stored anyway: it never blocks.
    let mut p = base_payload(&alice());
    p.target = ip_target(vec![10, 16, 0, 0], 12);
    p.kind = proto::Kind::Retract as i32;
    assert!(verify(&signed_raw(&alice(), p), NOW, &limits).is_ok());
}

#[test]
fn ttl_bounds_rejected_not_clamped() {
    // Above the protocol's 30 days or zero: invalid everywhere, blames.
    for ttl_s in [0, PROTOCOL_MAX_TTL_S + 1] {
        let mut d = draft("1.2.3.4");
        d.ttl_s = ttl_s;
        let err = verify(&sign(&alice(), d).to_proto(), NOW, &AcceptLimits::default()).unwrap_err();
        assert_eq!(
            err,
            Error::BadTtl {
                ttl_s,
                max_s: PROTOCOL_MAX_TTL_S
            }
        );
        assert!(err.blames_sender());
    }
    // Above this node's 7 days but within the protocol: skipped, not blamed, not clamped.
    for ttl_s in [7 * 24 * 3600 + 1, PROTOCOL_MAX_TTL_S] {
        let mut d = draft("1.2.3.4");
        d.ttl_s = ttl_s;
        let w = sign(&alice(), d).to_proto();
        let err = verify(&w, NOW, &AcceptLimits::default()).unwrap_err();
        assert_eq!(
            err,
            Error::OutsideLocalLimits(LocalLimit::Ttl {
                ttl_s,
                max_s: 7 * 24 * 3600
            })
        );
        assert!(!err.blames_sender());
        assert!(Pending::check_wire(&w, NOW, &AcceptLimits::default()).is_ok());
    }
}

#[test]
fn retractions_ignore_the_local_max_ttl() {
    // A node with max_ttl = 1 day still takes a sender's 7-day (or 30-day) retraction.
    let short = AcceptLimits {
        max_ttl_s: 24 * 3600,
        ..AcceptLimits::default()
    };
    for ttl_s in [7 * 24 * 3600, PROTOCOL_MAX_TTL_S] {
        let mut d = draft("1.2.3.4");
        d.kind = Kind::Retract;
        d.ttl_s = ttl_s;
        let rec = sign(&alice(), d);
        assert_eq!(verify(&rec.to_proto(), NOW, &short), Ok(rec));
    }
    // The protocol's maximum still applies to retractions.
    let mut d = draft("1.2.3.4");
    d.kind = Kind::Retract;
    d.ttl_s = PROTOCOL_MAX_TTL_S + 1;
    assert!(matches!(
        verify(&sign(&alice(), d).to_proto(), NOW, &short),
        Err(Error::BadTtl { .. })
    ));
}

#[test]
fn ipv6_prefixes_over_the_mapped_range_are_invalid_on_the_wire() {
    let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec();
    for (address, len) in [
        (v6("::fffe:0:0"), 95u32),
        (v6("::ffff:0:0"), 96),
        (v6("::ffff:10.0.0.0"), 104),
        (v6("::ffff:1.2.3.4"), 128),
    ] {
        let mut p = base_payload(&alice());
        p.target = ip_target(address, len);
        let err = verify(&signed_raw(&alice(), p), NOW, &AcceptLimits::default()).unwrap_err();
        assert!(matches!(err, Error::BadTarget(_)), "/{len}: {err}");
        assert!(err.blames_sender());
    }
}

#[test]
fn local_limits_looser_than_the_protocol_are_refused() {
    let ok = AcceptLimits::default();
    assert_eq!(ok.validate(), Ok(()));
    let at_protocol = AcceptLimits {
        bounds: crate::target::PROTOCOL_BOUNDS,
        max_ttl_s: PROTOCOL_MAX_TTL_S,
        ..ok
    };
    assert_eq!(at_protocol.validate(), Ok(()));
    let with = |v4: u8, v6: u8, ttl: u32| AcceptLimits {
        bounds: Bounds {
            min_v4_len: v4,
            min_v6_len: v6,
        },
        max_ttl_s: ttl,
        ..ok
    };
    assert!(matches!(
        with(7, 32, 3600).validate(),
        Err(LimitsError::Ipv4TooBroad {
            min_len: 7,
            protocol: 8
        })
    ));
    assert!(matches!(
        with(16, 15, 3600).validate(),
        Err(LimitsError::Ipv6TooBroad {
            min_len: 15,
            protocol: 16
        })
    ));
    assert!(matches!(
        with(33, 32, 3600).validate(),
        Err(LimitsError::PrefixTooLong(33))
    ));
    assert!(matches!(
        with(16, 129, 3600).validate(),
        Err(LimitsError::PrefixTooLong(129))
    ));
    assert!(matches!(
        with(16, 32, PROTOCOL_MAX_TTL_S + 1).validate(),
        Err(LimitsError::TtlTooLong { .. })
    ));
    assert_eq!(with(16, 32, 0).validate(), Err(LimitsError::ZeroTtl));
}

#[test]
fn weak_signature_encodings_blame() {
    let rec = sign(&alice(), draft("1.2.3.4"));
    let with_sig = |sig: &[u8]| proto::SignedSighting {
        payload: rec.payload().to_vec().into(),
        signature: sig.to_vec().into(),
    };
    // s + l: the same equation, a second encoding; refused before any curve work.
    let s = &rec.signature()[32..];
    let l: [u8; 32] = {
        // l = 2^252 + 27742317777372353535851937790883648493, little-endian.
        let mut l = [0u8; 32];
        l[..16].copy_from_slice(&0x14def9dea2f79cd65812631a5cf5d3edu128.to_le_bytes());
        l[31] = 0x10;
        l
    };
    let mut sum = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s[i]) + u16::from(l[i]) + carry;
        sum[i] = v as u8;
        carry = v >> 8;
    }
    let mut sig = rec.signature().to_vec();
    sig[32..].copy_from_slice(&sum);
    let err = verify(&with_sig(&sig), NOW, &AcceptLimits::default()).unwrap_err();
    assert_eq!(err, Error::WeakSignature("s is not below the group order"));
    assert!(err.blames_sender());
    // R = the identity (small order), and R not canonically encoded.
    let mut sig = rec.signature().to_vec();
    let mut identity = [0u8; 32];
    identity[0] = 1; // y = 1, x = 0
    sig[..32].copy_from_slice(&identity);
    assert_eq!(
        verify(&with_sig(&sig), NOW, &AcceptLimits::default()),
        Err(Error::WeakSignature("R has small order"))
    );
    sig[..32].copy_from_slice(&[0xff; 32]);
    assert_eq!(
        verify(&with_sig(&sig), NOW, &AcceptLimits::default()),
        Err(Error::WeakSignature("R is not canonically encoded"))
    );
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
