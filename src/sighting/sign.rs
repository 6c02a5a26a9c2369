//! Signing: the domain-separated message a signature covers, and turning a [`Draft`]
//! into a signed [`Record`].

use super::record::record_of;
use super::{Draft, Evidence, Record, Sighting, DOMAIN};
use crate::identity::Identity;
use crate::proto;
use ed25519_dalek::Signer;
use prost::Message;

/// `len(domain) || domain || payload`: the bytes a signature in `domain` covers.
pub(super) fn signed_message(domain: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(1 + domain.len() + payload.len());
    // Domains are short constants; the length byte makes the split unambiguous.
    m.push(domain.len() as u8);
    m.extend_from_slice(domain);
    m.extend_from_slice(payload);
    m
}

/// Signs a draft as `identity`. The draft's evidence is cut to its bounds.
pub fn sign(identity: &Identity, draft: Draft) -> Record {
    sign_in_domain(identity, draft, DOMAIN)
}

/// [`sign`] in any domain (tests sign in the endorsement domain to see it refused).
pub(super) fn sign_in_domain(identity: &Identity, draft: Draft, domain: &[u8]) -> Record {
    let sighting = Sighting {
        reporter: identity.public(),
        target: draft.target,
        kind: draft.kind,
        observed_at: draft.observed_at,
        ttl_s: draft.ttl_s,
        count: draft.count.max(1),
    };
    let payload = encode_sighting(&sighting, &draft.evidence.truncated());
    let signature = identity
        .signing_key()
        .sign(&signed_message(domain, &payload))
        .to_bytes();
    record_of(sighting, payload, &signature)
}

fn encode_sighting(s: &Sighting, evidence: &Evidence) -> Vec<u8> {
    proto::Sighting {
        reporter: s.reporter.as_bytes().to_vec().into(),
        target: Some(s.target.to_proto()),
        kind: s.kind.to_proto() as i32,
        observed_at_ms: s.observed_at,
        ttl_s: s.ttl_s,
        count: s.count,
        evidence: Some(evidence.to_proto()),
    }
    .encode_to_vec()
}
