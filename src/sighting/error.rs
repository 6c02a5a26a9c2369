//! Every reason a received sighting is refused, whether the sender is to blame, and a
//! stable label for metrics.

use crate::identity;
use crate::target;
use crate::Millis;

/// Why a received sighting was refused. Every variant means the sighting is dropped,
/// not forwarded, and (on gossip) the sending peer is penalised by peer scoring.
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
    /// The reporter key is missing, invalid or weak.
    #[error("reporter: {0}")]
    BadReporter(#[from] identity::Error),
    /// `kind` is unspecified or unknown to this version.
    #[error("unknown kind {0}")]
    UnknownKind(i32),
    /// The prefix is broader than this node accepts.
    #[error("over-broad prefix {net}: nothing broader than /{min_len} is accepted")]
    OverBroad {
        /// The refused prefix.
        net: ipnet::IpNet,
        /// The shortest prefix length this node accepts for the prefix's family.
        min_len: u8,
    },
    /// The target is missing, not canonical or otherwise invalid.
    #[error("target: {0}")]
    BadTarget(target::Error),
    /// An evidence field exceeds its bound.
    #[error("evidence field {0} exceeds its bound")]
    EvidenceTooLarge(&'static str),
    /// `count` is zero.
    #[error("count must be at least 1")]
    ZeroCount,
    /// The TTL is zero or above this node's maximum. Rejected, never clamped.
    #[error("ttl of {ttl_s}s is outside 1..={max_s}s")]
    BadTtl {
        /// TTL received, seconds.
        ttl_s: u32,
        /// This node's longest accepted TTL, seconds ([`AcceptLimits::max_ttl_s`](super::AcceptLimits::max_ttl_s)).
        max_s: u32,
    },
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
    /// The signature is valid, but for another fraudmesh signing domain (a replayed
    /// endorsement signature, for example).
    #[error("signature was made for another domain")]
    WrongDomain,
    /// The signature does not verify under the reporter's key over these bytes: the
    /// payload was tampered with, or the signature forged. (The two are
    /// cryptographically the same event and cannot be told apart.)
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
    /// Whether the peer that sent this is to blame. A sighting that is only outside this
    /// node's clock window (already expired, or dated ahead by more than the allowed skew)
    /// may have been valid where it came from: drop it without penalising the sender.
    pub fn blames_sender(&self) -> bool {
        !matches!(self, Self::FutureDated { .. } | Self::Expired { .. })
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
            Self::FutureDated { .. } => "future_dated",
            Self::Expired { .. } => "expired",
            Self::WrongDomain => "wrong_domain",
            Self::InvalidSignature => "invalid_signature",
        }
    }
}
