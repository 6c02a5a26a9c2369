//! Endorsements: an organisation's signed statement that a node key belongs to it (until
//! an expiry) or no longer does, and every reason a received one is refused.
//!
//! An organisation (a provider running many PBXs) keeps one ed25519 key offline and signs
//! one record per member; a node that trusts the organisation counts the sightings of its
//! currently endorsed members with the organisation's weight (see [`crate::policy`] and
//! [`crate::roster`]). The wire form and every bound are specified in
//! `proto/fraudmesh/v1/endorsement.proto`: the domain [`DOMAIN`], the record id
//! SHA-256(payload ‖ signature), the newest-wins rule, why a revocation expires exactly
//! `issued_at + MAX_TTL_MS`, and the one-line form people copy around.
//!
//! Signatures are checked exactly like sightings' (the shared `crate::signature` module:
//! canonical prime-order keys, canonical `R` not of small order, `s < l`, the cofactored
//! equation), in the endorsement domain; a signature made in the sighting domain is named
//! [`Error::WrongDomain`].
//!
//! Layout: this file holds the model, constants and the verified [`EndorsementRecord`];
//! `error.rs` every reason for refusal; `sign.rs` making records ([`endorse`], [`revoke`]);
//! `verify.rs` checking received ones ([`verify`], [`parse_line`]).

mod error;
mod sign;
mod verify;

pub use error::Error;
pub use sign::{endorse, revoke};
pub use verify::{parse_line, verify, verify_cached, wire_id};

use crate::identity::{KeyCache, PublicKey};
use crate::proto;
use crate::sighting::RecordId;
use crate::Millis;
use base64::Engine as _;
use std::fmt;

/// The signature domain of endorsements (the same bytes as
/// [`crate::sighting::ENDORSEMENT_DOMAIN`], reserved there).
pub const DOMAIN: &[u8] = crate::sighting::ENDORSEMENT_DOMAIN;
/// Largest accepted payload (the encoded `Endorsement`), bytes.
pub const MAX_PAYLOAD_BYTES: usize = 512;
/// Longest member name, bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest validity of an endorsement, and the exact validity of a revocation: 400 days.
pub const MAX_TTL_MS: Millis = 400 * 86_400_000;
/// The validity signers use unless told otherwise: 180 days.
pub const DEFAULT_TTL_MS: Millis = 180 * 86_400_000;
/// What every one-line endorsement starts with.
pub const LINE_PREFIX: &str = "fraudmesh-endorsement:v1:";
/// Longest one-line endorsement, characters (after trimming whitespace).
pub const MAX_LINE_CHARS: usize = 1024;

/// What a record says about its member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndorsementKind {
    /// The member belongs to the organisation until the record's expiry.
    Endorse,
    /// The member no longer belongs to the organisation.
    Revoke,
}

impl EndorsementKind {
    /// The name shown in the CLI, JSON and metrics: `endorse` or `revoke`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Endorse => "endorse",
            Self::Revoke => "revoke",
        }
    }

    fn to_proto(self) -> proto::EndorsementKind {
        match self {
            Self::Endorse => proto::EndorsementKind::Endorse,
            Self::Revoke => proto::EndorsementKind::Revoke,
        }
    }

    fn from_proto(v: i32) -> Result<Self, Error> {
        match proto::EndorsementKind::try_from(v) {
            Ok(proto::EndorsementKind::Endorse) => Ok(Self::Endorse),
            Ok(proto::EndorsementKind::Revoke) => Ok(Self::Revoke),
            Ok(proto::EndorsementKind::Unspecified) | Err(_) => Err(Error::UnknownKind(v)),
        }
    }
}

impl fmt::Display for EndorsementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decoded, checked fields of an endorsement record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endorsement {
    /// The organisation's key (the signer).
    pub org: PublicKey,
    /// The endorsed or revoked node key; never `org`.
    pub member: PublicKey,
    /// Endorse or revoke.
    pub kind: EndorsementKind,
    /// When the organisation signed it, ms since the epoch.
    pub issued_at: Millis,
    /// The first instant it no longer counts: within `issued_at + 1..=issued_at +
    /// MAX_TTL_MS` for an endorsement, exactly `issued_at + MAX_TTL_MS` for a revocation.
    pub expires_at: Millis,
    /// The member's name (1..=[`MAX_NAME_BYTES`] of `[A-Za-z0-9._@:-]`); empty for a
    /// revocation.
    pub name: String,
}

impl Endorsement {
    /// The protocol bounds that do not need the signature or a clock (see the proto file).
    fn check(&self) -> Result<(), Error> {
        if self.org == self.member {
            return Err(Error::SelfEndorsement);
        }
        let latest = self.issued_at.checked_add(MAX_TTL_MS).ok_or(Error::BadExpiry {
            kind: self.kind,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
        })?;
        let expiry_ok = match self.kind {
            EndorsementKind::Endorse => self.issued_at < self.expires_at && self.expires_at <= latest,
            EndorsementKind::Revoke => self.expires_at == latest,
        };
        if !expiry_ok {
            return Err(Error::BadExpiry {
                kind: self.kind,
                issued_at: self.issued_at,
                expires_at: self.expires_at,
            });
        }
        match self.kind {
            EndorsementKind::Endorse => check_name(&self.name),
            EndorsementKind::Revoke if self.name.is_empty() => Ok(()),
            EndorsementKind::Revoke => Err(Error::NameOnRevocation),
        }
    }

    fn to_proto(&self) -> proto::Endorsement {
        proto::Endorsement {
            org: self.org.as_bytes().to_vec().into(),
            member: self.member.as_bytes().to_vec().into(),
            kind: self.kind.to_proto() as i32,
            issued_at_ms: self.issued_at,
            expires_at_ms: self.expires_at,
            name: self.name.clone(),
        }
    }
}

/// Checks a member name: 1..=[`MAX_NAME_BYTES`] bytes of `[A-Za-z0-9._@:-]`.
pub fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::BadName("empty".into()));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(Error::BadName(format!(
            "{} bytes, at most {MAX_NAME_BYTES}",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | ':' | '-')))
    {
        return Err(Error::BadName(format!("{c:?} is not one of A-Z a-z 0-9 . _ @ : -")));
    }
    Ok(())
}

/// A verified endorsement record with the exact bytes its organisation signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndorsementRecord {
    endorsement: Endorsement,
    id: RecordId,
    /// payload || signature (the last 64 bytes).
    signed: Box<[u8]>,
}

impl EndorsementRecord {
    /// The decoded, checked fields.
    pub fn endorsement(&self) -> &Endorsement {
        &self.endorsement
    }

    /// SHA-256(payload || signature).
    pub fn id(&self) -> &RecordId {
        &self.id
    }

    /// The exact signed payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.signed[..self.signed.len() - 64]
    }

    /// The 64-byte ed25519 signature over the domain-separated payload.
    pub fn signature(&self) -> &[u8] {
        &self.signed[self.signed.len() - 64..]
    }

    /// Whether the record currently endorses its member: an endorsement, not yet expired.
    pub fn is_active(&self, now: Millis) -> bool {
        self.endorsement.kind == EndorsementKind::Endorse && now < self.endorsement.expires_at
    }

    /// The wire form, `SignedEndorsement`.
    pub fn to_proto(&self) -> proto::SignedEndorsement {
        proto::SignedEndorsement {
            payload: self.payload().to_vec().into(),
            signature: self.signature().to_vec().into(),
        }
    }

    /// The encoded `SignedEndorsement` (for storage).
    pub fn encode(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&self.to_proto())
    }

    /// The one-line form: [`LINE_PREFIX`] and the base64url (no padding) of [`Self::encode`].
    pub fn to_line(&self) -> String {
        format!(
            "{LINE_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.encode())
        )
    }

    /// Decodes a record this node stored itself after verifying it: the structure, keys
    /// and protocol bounds are checked again and the id recomputed; the signature and the
    /// clock are not (the store is trusted, and a stored record may have expired since).
    pub fn decode_stored(bytes: &[u8]) -> Result<Self, Error> {
        let signed: proto::SignedEndorsement =
            prost::Message::decode(bytes).map_err(|e: prost::DecodeError| Error::Decode(e.to_string()))?;
        Ok(verify::Pending::check_fields(&signed, &mut KeyCache::new(2))?.into_record())
    }

    fn new(endorsement: Endorsement, mut payload: Vec<u8>, signature: &[u8; 64], id: RecordId) -> Self {
        payload.extend_from_slice(signature);
        Self {
            endorsement,
            id,
            signed: payload.into_boxed_slice(),
        }
    }
}

#[cfg(test)]
mod tests;
