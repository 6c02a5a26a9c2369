//! Acceptance bounds, in two kinds that must never be confused:
//!
//! * **Protocol bounds** are the same for every node (`proto/fraudmesh/v1/sighting.proto`
//!   states them): payload and evidence caps, a TTL of 1 s ..= [`PROTOCOL_MAX_TTL_S`], IP
//!   prefixes no broader than [`PROTOCOL_BOUNDS`](crate::target::PROTOCOL_BOUNDS) (/8 for
//!   IPv4, /16 for IPv6), no IPv6 prefix overlapping `::ffff:0:0/96`. A sighting outside
//!   them is invalid for every receiver, so the peer that sent it is to blame.
//! * **Local limits** ([`AcceptLimits`]) are this node's own choice, at most as loose as
//!   the protocol bounds ([`AcceptLimits::validate`]): the broadest prefixes and the longest
//!   TTL it stores, and the clock skew it tolerates. A sighting outside them may be
//!   perfectly valid where it came from: it is skipped ([`Error::OutsideLocalLimits`], or
//!   the clock-window errors), never blamed on the sender. A retraction is never outside
//!   the local prefix or TTL limits: it never blocks anything, and it must reach every
//!   node that may hold the record it withdraws (even one that a looser earlier
//!   configuration stored), however short this node's `max_ttl`.

use super::{Error, Evidence, Kind, Sighting};
use crate::target::{Bounds, PROTOCOL_BOUNDS};

/// Largest encoded payload accepted.
pub const MAX_PAYLOAD_BYTES: usize = 1024;
/// Largest SIP method in evidence.
pub const MAX_METHOD_BYTES: usize = 16;
/// Largest user agent in evidence.
pub const MAX_USER_AGENT_BYTES: usize = 128;
/// Largest free-text reason in evidence.
pub const MAX_REASON_BYTES: usize = 200;
/// Most usernames in evidence (more is refused on receipt, cut when signing).
pub const MAX_USERNAMES: usize = 8;
/// Largest single username in evidence.
pub const MAX_USERNAME_BYTES: usize = 32;
/// The longest TTL the protocol allows, seconds (30 days). Longer is invalid everywhere;
/// a node's own [`AcceptLimits::max_ttl_s`] may only be shorter.
pub const PROTOCOL_MAX_TTL_S: u32 = 30 * 24 * 3600;

/// The bounds a node puts on what it accepts (see the module doc: these are local, never
/// looser than the protocol's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptLimits {
    /// The broadest IP prefixes stored, per family. Default /16 for IPv4, /32 for IPv6;
    /// at most as broad as [`PROTOCOL_BOUNDS`].
    pub bounds: Bounds,
    /// Longest TTL stored for a sighting that accuses (retractions are exempt), seconds.
    /// Default 7 days; at most [`PROTOCOL_MAX_TTL_S`].
    pub max_ttl_s: u32,
    /// How far in the future `observed_at` may lie, ms. Default 5 minutes.
    pub max_future_skew_ms: u64,
}

impl Default for AcceptLimits {
    fn default() -> Self {
        Self {
            bounds: Bounds::default(),
            max_ttl_s: 7 * 24 * 3600,
            max_future_skew_ms: 5 * 60 * 1000,
        }
    }
}

/// A local limit looser than the protocol allows (or a zero TTL): such a configuration
/// would store what every other node refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// The IPv4 bound is broader than the protocol's.
    #[error("an IPv4 bound of /{min_len} is broader than the protocol allows (/{protocol} at most)")]
    Ipv4TooBroad {
        /// The configured shortest IPv4 prefix length.
        min_len: u8,
        /// [`PROTOCOL_BOUNDS`]`.min_v4_len`.
        protocol: u8,
    },
    /// The IPv6 bound is broader than the protocol's.
    #[error("an IPv6 bound of /{min_len} is broader than the protocol allows (/{protocol} at most)")]
    Ipv6TooBroad {
        /// The configured shortest IPv6 prefix length.
        min_len: u8,
        /// [`PROTOCOL_BOUNDS`]`.min_v6_len`.
        protocol: u8,
    },
    /// A prefix length longer than the address (over 32 for IPv4, 128 for IPv6).
    #[error("a prefix bound of /{0} is longer than the address")]
    PrefixTooLong(u8),
    /// The longest TTL is above the protocol's.
    #[error("a max ttl of {max_s}s is longer than the protocol allows ({protocol}s = 30 days)")]
    TtlTooLong {
        /// The configured longest TTL, seconds.
        max_s: u32,
        /// [`PROTOCOL_MAX_TTL_S`].
        protocol: u32,
    },
    /// A longest TTL of zero would refuse everything.
    #[error("a max ttl of 0s accepts nothing")]
    ZeroTtl,
}

/// Which local limit a sighting that is valid on the wire falls outside of
/// (carried by [`Error::OutsideLocalLimits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LocalLimit {
    /// The TTL is within the protocol's bound but above this node's `max_ttl`.
    #[error("ttl of {ttl_s}s is above this node's maximum of {max_s}s")]
    Ttl {
        /// TTL received, seconds.
        ttl_s: u32,
        /// This node's [`AcceptLimits::max_ttl_s`].
        max_s: u32,
    },
    /// The prefix is within the protocol's bound but broader than this node stores.
    #[error("prefix {net} is broader than this node's /{min_len}")]
    Prefix {
        /// The prefix received.
        net: ipnet::IpNet,
        /// This node's shortest prefix length for the prefix's family.
        min_len: u8,
    },
}

impl AcceptLimits {
    /// Checks that these limits are at most as loose as the protocol bounds.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let Bounds { min_v4_len, min_v6_len } = self.bounds;
        if min_v4_len > 32 {
            return Err(LimitsError::PrefixTooLong(min_v4_len));
        }
        if min_v6_len > 128 {
            return Err(LimitsError::PrefixTooLong(min_v6_len));
        }
        if min_v4_len < PROTOCOL_BOUNDS.min_v4_len {
            return Err(LimitsError::Ipv4TooBroad {
                min_len: min_v4_len,
                protocol: PROTOCOL_BOUNDS.min_v4_len,
            });
        }
        if min_v6_len < PROTOCOL_BOUNDS.min_v6_len {
            return Err(LimitsError::Ipv6TooBroad {
                min_len: min_v6_len,
                protocol: PROTOCOL_BOUNDS.min_v6_len,
            });
        }
        if self.max_ttl_s == 0 {
            return Err(LimitsError::ZeroTtl);
        }
        if self.max_ttl_s > PROTOCOL_MAX_TTL_S {
            return Err(LimitsError::TtlTooLong {
                max_s: self.max_ttl_s,
                protocol: PROTOCOL_MAX_TTL_S,
            });
        }
        Ok(())
    }

    /// Whether this node stores a sighting that is valid on the wire: its TTL within
    /// `max_ttl_s` and its prefix within `bounds`, both waived for retractions. Never
    /// blames: the error is [`Error::OutsideLocalLimits`].
    pub fn admit(&self, s: &Sighting) -> Result<(), Error> {
        if s.kind == Kind::Retract {
            return Ok(());
        }
        if s.ttl_s > self.max_ttl_s {
            return Err(Error::OutsideLocalLimits(LocalLimit::Ttl {
                ttl_s: s.ttl_s,
                max_s: self.max_ttl_s,
            }));
        }
        if let Err(crate::target::Error::TooBroad { net, min_len }) = s.target.check(self.bounds) {
            return Err(Error::OutsideLocalLimits(LocalLimit::Prefix { net, min_len }));
        }
        Ok(())
    }
}

impl Evidence {
    pub(super) fn check(&self) -> Result<(), Error> {
        if self.method.len() > MAX_METHOD_BYTES {
            return Err(Error::EvidenceTooLarge("method"));
        }
        if self.user_agent.len() > MAX_USER_AGENT_BYTES {
            return Err(Error::EvidenceTooLarge("user_agent"));
        }
        if self.reason.len() > MAX_REASON_BYTES {
            return Err(Error::EvidenceTooLarge("reason"));
        }
        if self.usernames.len() > MAX_USERNAMES || self.usernames.iter().any(|u| u.len() > MAX_USERNAME_BYTES) {
            return Err(Error::EvidenceTooLarge("usernames"));
        }
        Ok(())
    }

    /// Cuts every field to its bound (at a character boundary), for locally made evidence.
    pub fn truncated(mut self) -> Self {
        fn cut(s: &mut String, max: usize) {
            if s.len() > max {
                let mut end = max;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
            }
        }
        cut(&mut self.method, MAX_METHOD_BYTES);
        cut(&mut self.user_agent, MAX_USER_AGENT_BYTES);
        cut(&mut self.reason, MAX_REASON_BYTES);
        self.usernames.truncate(MAX_USERNAMES);
        for u in &mut self.usernames {
            cut(u, MAX_USERNAME_BYTES);
        }
        self
    }
}
