//! Every reason an endorsement record (or its one-line form) is refused, whether the
//! sender is to blame, and a stable label for metrics.
//!
//! As for sightings, only what is invalid for every receiver blames the sender; the clock
//! window ([`Error::FutureDated`], [`Error::Expired`]) is each receiver's own.

use super::EndorsementKind;
use crate::identity;
use crate::Millis;

/// Why an endorsement record was refused (or could not be made). Every variant means it
/// is not stored; [`Error::blames_sender`] says whether the peer that sent it is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The payload is larger than [`MAX_PAYLOAD_BYTES`](super::MAX_PAYLOAD_BYTES).
    #[error("endorsement payload of {len} bytes exceeds {max}")]
    Oversized {
        /// Size of the payload, bytes.
        len: usize,
        /// The bound, bytes.
        max: usize,
    },
    /// The signature is not 64 bytes.
    #[error("signature is {0} bytes, not 64")]
    MalformedSignature(usize),
    /// The bytes are not a `SignedEndorsement`, or its payload not an `Endorsement`.
    #[error("endorsement does not decode: {0}")]
    Decode(String),
    /// The organisation key is missing or not a valid key (see [`identity`]).
    #[error("organisation key: {0}")]
    BadOrg(identity::Error),
    /// The member key is missing or not a valid key (see [`identity`]).
    #[error("member key: {0}")]
    BadMember(identity::Error),
    /// The organisation endorses (or revokes) its own key.
    #[error("an organisation cannot endorse or revoke its own key")]
    SelfEndorsement,
    /// `kind` is unspecified or unknown to this version.
    #[error("unknown endorsement kind {0}")]
    UnknownKind(i32),
    /// The member name of an endorsement is empty, too long or has a character outside
    /// `[A-Za-z0-9._@:-]`.
    #[error("member name: {0}")]
    BadName(String),
    /// A revocation carries a name (it must be empty).
    #[error("a revocation carries no name")]
    NameOnRevocation,
    /// The expiry breaks the kind's rule: an endorsement's must be in `issued_at + 1
    /// ..= issued_at + MAX_TTL_MS`, a revocation's exactly `issued_at + MAX_TTL_MS`.
    #[error("{kind} issued at {issued_at} ms cannot expire at {expires_at} ms (endorse: after issue, at most 400 days; revoke: exactly 400 days)")]
    BadExpiry {
        /// The record's kind.
        kind: EndorsementKind,
        /// When it was issued, ms.
        issued_at: Millis,
        /// The expiry it carries, ms.
        expires_at: Millis,
    },
    /// Signing asked for a TTL of 0 or above [`MAX_TTL_MS`](super::MAX_TTL_MS).
    #[error("ttl of {ttl_ms} ms is outside 1..={max_ms} ms (400 days)")]
    BadTtl {
        /// The TTL asked for, ms.
        ttl_ms: Millis,
        /// The longest TTL, ms.
        max_ms: Millis,
    },
    /// The signature's encoding is refused before the equation is checked (`s` not below
    /// the group order, `R` not canonical or of small order).
    #[error("weak signature: {0}")]
    WeakSignature(&'static str),
    /// The signature is valid, but for another fraudmesh domain (a sighting's).
    #[error("signature was made for another domain")]
    WrongDomain,
    /// The signature does not verify under the organisation key over these bytes: the
    /// record was tampered with, forged, or signed by another key.
    #[error("signature does not verify under the organisation key (tampered, forged or signed by another key)")]
    InvalidSignature,
    /// Issued further in the future than the allowed clock skew.
    #[error("issued at {issued_at} ms, more than the allowed skew after now ({now} ms)")]
    FutureDated {
        /// The record's `issued_at`, ms.
        issued_at: Millis,
        /// The receiver's clock, ms.
        now: Millis,
    },
    /// The record had already expired when it arrived.
    #[error("already expired at {expires_at} ms (now {now} ms)")]
    Expired {
        /// The record's expiry, ms.
        expires_at: Millis,
        /// The receiver's clock, ms.
        now: Millis,
    },
    /// A line does not start with [`LINE_PREFIX`](super::LINE_PREFIX).
    #[error("not an endorsement line (expected it to start with fraudmesh-endorsement:v1:)")]
    NotALine,
    /// A line is longer than [`MAX_LINE_CHARS`](super::MAX_LINE_CHARS).
    #[error("endorsement line of {len} characters exceeds {max}")]
    LineTooLong {
        /// Length of the trimmed line, characters.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The text after the prefix is not base64url without padding.
    #[error("endorsement line is not base64url: {0}")]
    LineBase64(String),
}

impl Error {
    /// Whether the peer that sent this is to blame: true exactly for what is invalid for
    /// every receiver; the clock window never blames. Exhaustive on purpose.
    pub fn blames_sender(&self) -> bool {
        match self {
            Self::FutureDated { .. } | Self::Expired { .. } => false,
            Self::Oversized { .. }
            | Self::MalformedSignature(_)
            | Self::Decode(_)
            | Self::BadOrg(_)
            | Self::BadMember(_)
            | Self::SelfEndorsement
            | Self::UnknownKind(_)
            | Self::BadName(_)
            | Self::NameOnRevocation
            | Self::BadExpiry { .. }
            | Self::BadTtl { .. }
            | Self::WeakSignature(_)
            | Self::WrongDomain
            | Self::InvalidSignature
            | Self::NotALine
            | Self::LineTooLong { .. }
            | Self::LineBase64(_) => true,
        }
    }

    /// A short, stable label for metrics (`reason="..."`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Oversized { .. } => "oversized",
            Self::MalformedSignature(_) => "malformed_signature",
            Self::Decode(_) => "decode",
            Self::BadOrg(_) => "bad_org",
            Self::BadMember(_) => "bad_member",
            Self::SelfEndorsement => "self_endorsement",
            Self::UnknownKind(_) => "unknown_kind",
            Self::BadName(_) => "bad_name",
            Self::NameOnRevocation => "name_on_revocation",
            Self::BadExpiry { .. } => "bad_expiry",
            Self::BadTtl { .. } => "bad_ttl",
            Self::WeakSignature(_) => "weak_signature",
            Self::WrongDomain => "wrong_domain",
            Self::InvalidSignature => "invalid_signature",
            Self::FutureDated { .. } => "future_dated",
            Self::Expired { .. } => "expired",
            Self::NotALine => "not_a_line",
            Self::LineTooLong { .. } => "line_too_long",
            Self::LineBase64(_) => "line_base64",
        }
    }
}

impl From<crate::signature::Failure> for Error {
    fn from(f: crate::signature::Failure) -> Self {
        match f {
            crate::signature::Failure::Weak(what) => Self::WeakSignature(what),
            crate::signature::Failure::WrongDomain => Self::WrongDomain,
            crate::signature::Failure::Invalid => Self::InvalidSignature,
        }
    }
}
