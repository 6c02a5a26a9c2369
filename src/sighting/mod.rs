//! Sightings: the signed record a reporter makes of an attacker, how it is signed, and
//! every reason a received one is refused.
//!
//! A sighting travels as the exact payload bytes its reporter encoded plus an ed25519
//! signature over `len(DOMAIN) || DOMAIN || payload` (see `proto/fraudmesh/v1/sighting.proto`).
//! Receivers check the signature over the bytes they received and never re-encode; the
//! record id is SHA-256(payload || signature). Checks run cheapest first (size, decoding,
//! protocol bounds, clock window) so a flood of junk costs little; the signature comes
//! last, and in bulk it is checked in batches with a fallback to single checks to name
//! the culprit.
//!
//! The rules, in one place each:
//! - what blames the sender: [`Error::blames_sender`] — only what is invalid for every
//!   receiver; the clock window and this node's own limits never blame;
//! - protocol bounds versus local limits: `limits.rs` ([`PROTOCOL_MAX_TTL_S`],
//!   [`crate::target::PROTOCOL_BOUNDS`], [`AcceptLimits`]); retractions are never outside
//!   local limits;
//! - one verdict per signature, batch or single, on every node: `verify.rs`.
//!
//! A receiver that relays runs [`Pending::check_wire_cached`] (blaming errors and the clock
//! window), dedups by [`Pending::id`], verifies ([`verify_batch`]), then asks
//! [`AcceptLimits::admit`] whether to store; [`Pending::check_cached`] does the wire checks
//! and `admit` at once, for callers that do not relay.
//!
//! Layout: this file holds the model (kinds, evidence, the decoded sighting, drafts);
//! `error.rs` every reason for refusal; `limits.rs` the acceptance bounds; `record.rs`
//! the verified [`Record`] and its ids; `sign.rs` signing; `verify.rs` the checks and the
//! (batch) verification of received sightings.

mod error;
mod limits;
mod record;
mod sign;
mod verify;

pub use error::Error;
pub use limits::{
    AcceptLimits, LimitsError, LocalLimit, MAX_METHOD_BYTES, MAX_PAYLOAD_BYTES, MAX_REASON_BYTES, MAX_USERNAMES,
    MAX_USERNAME_BYTES, MAX_USER_AGENT_BYTES, PROTOCOL_MAX_TTL_S,
};
pub(crate) use record::record_id;
pub use record::{wire_id, Record};
pub use sign::sign;
pub use verify::{verify, verify_batch, Pending};

use crate::identity::PublicKey;
use crate::proto;
use crate::target::Target;
use crate::Millis;
use std::fmt;
use std::str::FromStr;

/// The signature domain of sightings.
pub const DOMAIN: &[u8] = b"fraudmesh/v1/sighting";
/// The signature domain of organisation endorsements (see [`crate::endorsement`]). A
/// signature made there never passes as a sighting; verification recognises it to say so.
pub const ENDORSEMENT_DOMAIN: &[u8] = b"fraudmesh/v1/endorsement";

/// A record id: SHA-256(payload || signature).
pub type RecordId = [u8; 32];

/// What kind of attack a sighting reports (or a retraction of earlier ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Probing the SIP stack.
    Scan,
    /// Repeated failed authentication.
    AuthFailure,
    /// A flood of INVITEs or other requests.
    InviteFlood,
    /// Toll-fraud attempt or fraud destination number.
    TollFraud,
    /// An operator's manual ban.
    Manual,
    /// Withdraws the reporter's earlier sightings of the target; never counts to a block.
    Retract,
}

impl Kind {
    /// Every kind, for help texts.
    pub const ALL: [Kind; 6] = [
        Kind::Scan,
        Kind::AuthFailure,
        Kind::InviteFlood,
        Kind::TollFraud,
        Kind::Manual,
        Kind::Retract,
    ];

    /// The name used in the CLI, config and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scan => "scan",
            Self::AuthFailure => "auth-failure",
            Self::InviteFlood => "invite-flood",
            Self::TollFraud => "toll-fraud",
            Self::Manual => "manual",
            Self::Retract => "retract",
        }
    }

    pub(super) fn to_proto(self) -> proto::Kind {
        match self {
            Self::Scan => proto::Kind::Scan,
            Self::AuthFailure => proto::Kind::AuthFailure,
            Self::InviteFlood => proto::Kind::InviteFlood,
            Self::TollFraud => proto::Kind::TollFraud,
            Self::Manual => proto::Kind::Manual,
            Self::Retract => proto::Kind::Retract,
        }
    }

    pub(super) fn from_proto(v: i32) -> Result<Self, Error> {
        Ok(match proto::Kind::try_from(v) {
            Ok(proto::Kind::Scan) => Self::Scan,
            Ok(proto::Kind::AuthFailure) => Self::AuthFailure,
            Ok(proto::Kind::InviteFlood) => Self::InviteFlood,
            Ok(proto::Kind::TollFraud) => Self::TollFraud,
            Ok(proto::Kind::Manual) => Self::Manual,
            Ok(proto::Kind::Retract) => Self::Retract,
            Ok(proto::Kind::Unspecified) | Err(_) => return Err(Error::UnknownKind(v)),
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            format!("unknown kind {s:?} (one of: scan, auth-failure, invite-flood, toll-fraud, manual, retract)")
        })
    }
}

/// Attacker-side facts supporting a sighting, all attacker-supplied and bounded by the
/// `MAX_*` caps; informative only, never used to decide a block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The SIP method of the attack requests (`REGISTER`, `INVITE`, ...).
    pub method: String,
    /// User agent the attacker sent.
    pub user_agent: String,
    /// Free text for people, e.g. the threshold that was crossed.
    pub reason: String,
    /// Usernames (extensions) the attacker tried.
    pub usernames: Vec<String>,
}

impl Evidence {
    /// From its wire form (bounds are checked separately, when a sighting is received).
    pub(super) fn from_proto(e: proto::Evidence) -> Self {
        Self {
            method: e.method,
            user_agent: e.user_agent,
            reason: e.reason,
            usernames: e.usernames,
        }
    }

    /// Its wire form.
    pub(super) fn to_proto(&self) -> proto::Evidence {
        proto::Evidence {
            method: self.method.clone(),
            user_agent: self.user_agent.clone(),
            reason: self.reason.clone(),
            usernames: self.usernames.clone(),
        }
    }
}

/// The decoded, checked fields of a sighting that the ledger and the policy work with.
/// (Evidence stays in the signed bytes and is decoded on demand: see [`Record::evidence`].)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The reporter's public key: who saw it and signed it.
    pub reporter: PublicKey,
    /// The accused address, prefix or number prefix.
    pub target: Target,
    /// The kind of attack seen.
    pub kind: Kind,
    /// When the reporter saw it, ms since the epoch (the reporter's clock).
    pub observed_at: Millis,
    /// For how long it stays active, seconds.
    pub ttl_s: u32,
    /// How many events it summarises.
    pub count: u32,
}

impl Sighting {
    /// The first instant at which the sighting is no longer active.
    pub fn expires_at(&self) -> Millis {
        self.observed_at.saturating_add(u64::from(self.ttl_s) * 1000)
    }

    /// Expiry as a pure function of (record, now).
    pub fn is_active(&self, now: Millis) -> bool {
        now < self.expires_at()
    }
}

/// What a local reporter wants to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// The accused address, prefix or number prefix.
    pub target: Target,
    /// The kind of attack seen.
    pub kind: Kind,
    /// When it was seen, ms since the epoch (the caller's clock).
    pub observed_at: Millis,
    /// How long the sighting stays active from `observed_at`, seconds: 1 to
    /// [`PROTOCOL_MAX_TTL_S`]; receivers do not store accusations longer than their own
    /// [`AcceptLimits::max_ttl_s`] (default 7 days), retractions whatever their TTL.
    pub ttl_s: u32,
    /// Events summarised (at least 1).
    pub count: u32,
    /// Evidence; cut to its bounds when signing.
    pub evidence: Evidence,
}

#[cfg(test)]
mod tests;
