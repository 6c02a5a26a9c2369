//! Making records: an organisation endorses or revokes a member.

use super::{Endorsement, EndorsementKind, EndorsementRecord, Error, DOMAIN, MAX_TTL_MS};
use crate::identity::{Identity, PublicKey};
use crate::sighting::record_id;
use crate::{signature, Millis};
use prost::Message;

/// `org` endorses `member` as `name` from `issued_at` for `ttl_ms` (1..=[`MAX_TTL_MS`]).
/// Refuses a bad name or TTL, or `member` being the org's own key.
pub fn endorse(
    org: &Identity,
    member: PublicKey,
    name: &str,
    issued_at: Millis,
    ttl_ms: Millis,
) -> Result<EndorsementRecord, Error> {
    if ttl_ms == 0 || ttl_ms > MAX_TTL_MS {
        return Err(Error::BadTtl {
            ttl_ms,
            max_ms: MAX_TTL_MS,
        });
    }
    let expires_at = issued_at.checked_add(ttl_ms).ok_or(Error::BadTtl {
        ttl_ms,
        max_ms: MAX_TTL_MS,
    })?;
    make(
        org,
        Endorsement {
            org: org.public(),
            member,
            kind: EndorsementKind::Endorse,
            issued_at,
            expires_at,
            name: name.to_string(),
        },
        DOMAIN,
    )
}

/// `org` revokes `member` at `issued_at` (the record expires at `issued_at + MAX_TTL_MS`,
/// outliving every endorsement issued before it).
pub fn revoke(org: &Identity, member: PublicKey, issued_at: Millis) -> Result<EndorsementRecord, Error> {
    make(
        org,
        Endorsement {
            org: org.public(),
            member,
            kind: EndorsementKind::Revoke,
            issued_at,
            expires_at: issued_at.saturating_add(MAX_TTL_MS),
            name: String::new(),
        },
        DOMAIN,
    )
}

/// Checks, encodes and signs in `domain` (tests sign elsewhere to see it refused).
pub(super) fn make(org: &Identity, e: Endorsement, domain: &[u8]) -> Result<EndorsementRecord, Error> {
    e.check()?;
    let payload = e.to_proto().encode_to_vec();
    let signature = signature::sign(org, domain, &payload);
    let id = record_id(&payload, &signature);
    Ok(EndorsementRecord::new(e, payload, &signature, id))
}
