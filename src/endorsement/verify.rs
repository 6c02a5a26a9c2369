//! Receiving: the cheap checks (size, decoding, keys, protocol bounds, clock window), then
//! the signature, by the rules sightings use (the shared `crate::signature` module).

use super::{
    Endorsement, EndorsementKind, EndorsementRecord, Error, DOMAIN, LINE_PREFIX, MAX_LINE_CHARS, MAX_PAYLOAD_BYTES,
};
use crate::identity::KeyCache;
use crate::proto;
use crate::sighting::{record_id, RecordId};
use crate::{signature, Millis};
use base64::Engine as _;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use prost::Message;

/// A record that passed every check but the signature.
pub(super) struct Pending {
    endorsement: Endorsement,
    payload: Vec<u8>,
    signature: [u8; 64],
    id: RecordId,
    s: Scalar,
    key: EdwardsPoint,
}

impl Pending {
    /// Size, signature encodings, decoding, keys and the protocol bounds.
    pub(super) fn check_fields(signed: &proto::SignedEndorsement, keys: &mut KeyCache) -> Result<Self, Error> {
        let payload = &signed.payload;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::Oversized {
                len: payload.len(),
                max: MAX_PAYLOAD_BYTES,
            });
        }
        let signature: [u8; 64] = signed
            .signature
            .as_ref()
            .try_into()
            .map_err(|_| Error::MalformedSignature(signed.signature.len()))?;
        let s = signature::signature_scalar(&signature)?;
        let p = proto::Endorsement::decode(payload.as_ref()).map_err(|e| Error::Decode(e.to_string()))?;
        let (org, key) = keys.get(&p.org).map_err(Error::BadOrg)?;
        let (member, _) = keys.get(&p.member).map_err(Error::BadMember)?;
        let endorsement = Endorsement {
            org,
            member,
            kind: EndorsementKind::from_proto(p.kind)?,
            issued_at: p.issued_at_ms,
            expires_at: p.expires_at_ms,
            name: p.name,
        };
        endorsement.check()?;
        Ok(Self {
            endorsement,
            id: record_id(payload, &signature),
            payload: payload.to_vec(),
            signature,
            s,
            key,
        })
    }

    /// The signature, in the endorsement domain (a sighting-domain signature is named).
    fn verify(self) -> Result<EndorsementRecord, Error> {
        let r = signature::r_point(&self.signature)?;
        let checked = signature::Checked {
            signature: &self.signature,
            r,
            s: self.s,
            signer: &self.endorsement.org,
            key: self.key,
        };
        signature::verify_in(&checked, DOMAIN, &[crate::sighting::DOMAIN], &self.payload)?;
        Ok(self.into_record())
    }

    pub(super) fn into_record(self) -> EndorsementRecord {
        EndorsementRecord::new(self.endorsement, self.payload, &self.signature, self.id)
    }
}

/// Checks and verifies one received record: the protocol bounds, the clock window
/// (`issued_at` at most `skew_ms` after `now`, not expired at `now`), then the signature.
pub fn verify(signed: &proto::SignedEndorsement, now: Millis, skew_ms: Millis) -> Result<EndorsementRecord, Error> {
    verify_cached(signed, now, skew_ms, &mut KeyCache::new(2))
}

/// [`verify`] with keys taken from (and added to) `keys`.
pub fn verify_cached(
    signed: &proto::SignedEndorsement,
    now: Millis,
    skew_ms: Millis,
    keys: &mut KeyCache,
) -> Result<EndorsementRecord, Error> {
    let pending = Pending::check_fields(signed, keys)?;
    let e = &pending.endorsement;
    if e.issued_at > now.saturating_add(skew_ms) {
        return Err(Error::FutureDated {
            issued_at: e.issued_at,
            now,
        });
    }
    if e.expires_at <= now {
        return Err(Error::Expired {
            expires_at: e.expires_at,
            now,
        });
    }
    pending.verify()
}

/// Parses and verifies one line ([`LINE_PREFIX`] + base64url of a `SignedEndorsement`,
/// surrounding whitespace ignored), like [`verify`].
pub fn parse_line(line: &str, now: Millis, skew_ms: Millis) -> Result<EndorsementRecord, Error> {
    let line = line.trim();
    let len = line.chars().count();
    if len > MAX_LINE_CHARS {
        return Err(Error::LineTooLong {
            len,
            max: MAX_LINE_CHARS,
        });
    }
    let body = line.strip_prefix(LINE_PREFIX).ok_or(Error::NotALine)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|e| Error::LineBase64(e.to_string()))?;
    let signed = proto::SignedEndorsement::decode(bytes.as_slice()).map_err(|e| Error::Decode(e.to_string()))?;
    verify(&signed, now, skew_ms)
}

/// The id a wire record will have once verified: SHA-256(payload || signature).
pub fn wire_id(signed: &proto::SignedEndorsement) -> RecordId {
    record_id(&signed.payload, &signed.signature)
}
