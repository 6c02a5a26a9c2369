//! Signing: the domain-separated message a signature covers, and turning a [`Draft`]
//! into a signed [`Record`].

use super::record::record_of;
use super::{Draft, Evidence, Record, Sighting, DOMAIN};
use crate::identity::Identity;
use crate::proto;
use crate::signature;
use prost::Message;

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
    let signature = signature::sign(identity, domain, &payload);
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
