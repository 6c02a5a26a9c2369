//! Every reason a received sighting is refused, whether the sender is to blame, and a
//! stable label for metrics.
//!
//! [`Error::blames_sender`] is the one place that says what blames: everything that is
//! invalid for *every* receiver (malformed bytes, protocol bounds, bad keys, weak or bad
//! signatures, the wrong domain). The rest depends on the receiver — its clock window,
//! its own [`AcceptLimits`](super::AcceptLimits) — and is skipped without penalty: the
//! sender may have been right to forward it, and other records of the same envelope or
//! sync batch stand.

use super::LocalLimit;
use crate::identity;
use crate::target;
use crate::Millis;

/// Why a received sighting was refused. Every variant means this node does not store the
/// sighting; [`Error::blames_sender`] says whether the peer that sent it is at fault (the
/// network layer penalises it and cuts it off only then).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The payload is larger than [`MAX_PAYLOAD_BYTES`](super::MAX_PAYLOAD_BYTES).
    #[error("payload of {len} bytes exceeds {max}")]
    Oversized {
        /// Size of the received payload, bytes.
        len: usize,
        /// The bound, bytes ([`MAX_PAYLOAD_BYTES`](super::MAX_PAYLOAD_BYTES)).
        max: usize,
    },
    /// The signature is not 64 bytes.
    #[error("signature is {0} bytes, not 64")]
    MalformedSignature(usize),
    /// The payload is not a `Sighting` protobuf.
    #[error("payload does not decode: {0}")]
    Decode(String),
    /// The reporter key is missing, invalid, not canonical, of small order or has a
    /// torsion component (see [`identity`]).
    #[error("reporter: {0}")]
    BadReporter(#[from] identity::Error),
    /// `kind` is unspecified or unknown to this version.
    #[error("unknown kind {0}")]
    UnknownKind(i32),
    /// The prefix is broader than the protocol allows
    /// ([`PROTOCOL_BOUNDS`](crate::target::PROTOCOL_BOUNDS)). (Broader than only this
    /// node's bounds is [`Error::OutsideLocalLimits`].)
    #[error("over-broad prefix {net}: the protocol allows nothing broader than /{min_len}")]
    OverBroad {
        /// The refused prefix.
        net: ipnet::IpNet,
        /// The protocol's shortest prefix length for the prefix's family.
        min_len: u8,
    },
    /// The target is missing, not canonical, an IPv6 prefix overlapping the IPv4-mapped
    /// range, or otherwise invalid.
    #[error("target: {0}")]
    BadTarget(target::Error),
    /// An evidence field exceeds its bound.
    #[error("evidence field {0} exceeds its bound")]
    EvidenceTooLarge(&'static str),
    /// `count` is zero.
    #[error("count must be at least 1")]
    ZeroCount,
    /// The TTL is zero or above the protocol's maximum. Rejected, never clamped. (Above
    /// only this node's maximum is [`Error::OutsideLocalLimits`].)
    #[error("ttl of {ttl_s}s is outside the protocol's 1..={max_s}s")]
    BadTtl {
        /// TTL received, seconds.
        ttl_s: u32,
        /// The protocol's longest TTL, seconds ([`PROTOCOL_MAX_TTL_S`](super::PROTOCOL_MAX_TTL_S)).
        max_s: u32,
    },
    /// Valid on the wire, but outside this node's own limits (a TTL above its `max_ttl`, a
    /// prefix broader than its bounds). Skipped, never blamed: the sender's limits may be
    /// looser, and it may still relay the record.
    #[error("outside this node's limits: {0}")]
    OutsideLocalLimits(LocalLimit),
    /// Observed further in the future than the allowed clock skew.
    #[error("observed at {observed_at} ms, more than the allowed skew after now ({now} ms)")]
    FutureDated {
        /// The record's `observed_at`, ms since the epoch.
        observed_at: Millis,
        /// The receiver's clock, ms since the epoch.
        now: Millis,
    },
    /// The record had already expired when it arrived.
    #[error("already expired at {expires_at} ms (now {now} ms)")]
    Expired {
        /// When it stopped being active (`observed_at` + TTL), ms since the epoch.
        expires_at: Millis,
        /// The receiver's clock, ms since the epoch.
        now: Millis,
    },
    /// The signature's encoding is refused before the equation is checked: `s` not below
    /// the group order, `R` not canonically encoded, or `R` of small order — forms only a
    /// crafted signature has (see `verify.rs`; an `R` that is no curve point at all is
    /// [`Error::InvalidSignature`], like any other corruption). Invalid for every receiver.
    #[error("weak signature: {0}")]
    WeakSignature(&'static str),
    /// The signature is valid, but for another fraudmesh signing domain (a replayed
    /// endorsement signature, for example).
    #[error("signature was made for another domain")]
    WrongDomain,
    /// The signature does not verify under the reporter's key over these bytes (or its
    /// `R` is not a curve point): the payload was tampered with, or the signature forged.
    /// (The two are cryptographically the same event and cannot be told apart.)
    #[error("signature does not verify (tampered payload or forged signature)")]
    InvalidSignature,
}

impl From<target::Error> for Error {
    fn from(e: target::Error) -> Self {
        match e {
            target::Error::TooBroad { net, min_len } => Self::OverBroad { net, min_len },
            other => Self::BadTarget(other),
        }
    }
}

impl Error {
    /// Whether the peer that sent this is to blame: true exactly for what is invalid for
    /// every receiver. A sighting that is only outside this node's clock window (already
    /// expired, or dated ahead by more than the allowed skew) or its own limits may have
    /// been valid where it came from: skip it without penalising the sender. The match is
    /// exhaustive on purpose: a new variant must decide here.
    pub fn blames_sender(&self) -> bool {
        match self {
            Self::FutureDated { .. } | Self::Expired { .. } | Self::OutsideLocalLimits(_) => false,
            Self::Oversized { .. }
            | Self::MalformedSignature(_)
            | Self::Decode(_)
            | Self::BadReporter(_)
            | Self::UnknownKind(_)
            | Self::OverBroad { .. }
            | Self::BadTarget(_)
            | Self::EvidenceTooLarge(_)
            | Self::ZeroCount
            | Self::BadTtl { .. }
            | Self::WeakSignature(_)
            | Self::WrongDomain
            | Self::InvalidSignature => true,
        }
    }

    /// A short, stable label for metrics (`reason="..."`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Oversized { .. } => "oversized",
            Self::MalformedSignature(_) => "malformed_signature",
            Self::Decode(_) => "decode",
            Self::BadReporter(_) => "bad_reporter",
            Self::UnknownKind(_) => "unknown_kind",
            Self::OverBroad { .. } => "over_broad",
            Self::BadTarget(_) => "bad_target",
            Self::EvidenceTooLarge(_) => "evidence_too_large",
            Self::ZeroCount => "zero_count",
            Self::BadTtl { .. } => "bad_ttl",
            Self::OutsideLocalLimits(_) => "outside_local_limits",
            Self::WeakSignature(_) => "weak_signature",
            Self::FutureDated { .. } => "future_dated",
            Self::Expired { .. } => "expired",
            Self::WrongDomain => "wrong_domain",
            Self::InvalidSignature => "invalid_signature",
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
