//! The JSON documents of the HTTP API, as types: the handlers write them, the CLI and the
//! testnet read them through [`Client`](super::client::Client). One definition per
//! document, so a field renamed on one side fails to compile on the other.
//!
//! Times are milliseconds since the Unix epoch. Field order here is the order a reader
//! meets them in the README; the CLI's `--json` output keeps the keys sorted as before.

use serde::{Deserialize, Serialize};

pub use crate::calls::AccountView;
pub use crate::enforce::runner::EnforcerStatus;
pub use crate::net::PeerInfo;

/// Every refusal: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What was wrong, for a person.
    pub error: String,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This node's peer id.
    pub peer_id: String,
    /// The node's version.
    pub version: String,
    /// Connected peers.
    pub peers: usize,
    /// Connected peers subscribed to the sightings topic.
    pub gossip_peers: usize,
    /// Records in the ledger.
    pub records: usize,
    /// Targets blocked now.
    pub blocked: usize,
    /// Listen addresses with `/p2p/<peer id>`.
    pub listen: Vec<String>,
    /// Bytes the store uses on disk.
    pub store_bytes: u64,
    /// Seconds since the node started.
    pub uptime_s: u64,
    /// Whether other nodes can dial this one: `public`, `private` or `unknown`.
    #[serde(default)]
    pub reachability: String,
    /// The relayed listen addresses this node holds (`…/p2p-circuit/p2p/<self>`).
    #[serde(default)]
    pub relays: Vec<String>,
}

/// One target's block decision (an entry of [`Blocklist`] or of [`CheckAnswer::matches`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetVerdict {
    /// The target (address, prefix or `+number`).
    pub target: String,
    /// Whether it is blocked.
    pub blocked: bool,
    /// Summed trust weight of its trusted reporters (this node and configured peers),
    /// which decides (1.0 = the default threshold).
    pub score: f64,
    /// Summed weight of its strangers' sightings (capped): shown, never counted toward a
    /// block.
    #[serde(default)]
    pub stranger_score: f64,
    /// Peer ids of the reporters with an active sighting.
    pub reporters: Vec<String>,
    /// When the block ends, if blocked.
    pub until: Option<u64>,
    /// Whether the allowlist overrides it.
    pub allowlisted: bool,
    /// When this node began blocking it (in the blocklist only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

/// `GET /v1/check/{target}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckAnswer {
    /// The target asked about, in canonical form.
    pub target: String,
    /// Whether it (or a prefix covering it) is blocked.
    pub blocked: bool,
    /// Every reporter of every match.
    pub reporters: Vec<String>,
    /// The latest end of a block among the matches.
    pub until: Option<u64>,
    /// The target itself and each prefix covering it that has sightings.
    pub matches: Vec<TargetVerdict>,
}

/// `GET /v1/blocklist`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blocklist {
    /// How many targets are blocked.
    pub count: usize,
    /// The blocked targets.
    pub blocked: Vec<TargetVerdict>,
}

/// `GET /v1/peers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Peers {
    /// The connected peers.
    pub peers: Vec<PeerInfo>,
}

/// A TTL as seconds or a duration text such as `"1h"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ttl {
    /// Seconds.
    Seconds(u64),
    /// A duration text (`90s`, `1h`, `7d`).
    Text(String),
}

/// `POST /v1/sightings` body: `target` for one, `targets` for many; all but the
/// targets optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SightingsRequest {
    /// One target…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// …or many.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// The sighting kind (default `manual`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// How long the sightings stay active (default `policy.default_ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Ttl>,
    /// Free-text reason kept as evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How many times it was seen (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

/// One record signed for a `POST /v1/sightings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedRecord {
    /// Its target.
    pub target: String,
    /// Its id (hex SHA-256 of the signed bytes).
    pub id: String,
    /// When it expires.
    pub until: u64,
}

/// `POST /v1/sightings` answer: sent once every record is stored durably.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SightingsAnswer {
    /// How many records were signed.
    pub accepted: usize,
    /// The records.
    pub records: Vec<SignedRecord>,
}

/// `DELETE /v1/sightings/{target}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Retracted {
    /// The target withdrawn, in canonical form.
    pub retracted: String,
}

/// `PUT /v1/debug/refuse` body (fault injection for testnets).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefuseRequest {
    /// Peer ids to refuse; everyone else is accepted again.
    pub peers: Vec<String>,
}

/// `PUT /v1/debug/refuse` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refused {
    /// The peer ids refused now.
    pub refused: Vec<String>,
}

/// `GET /v1/enforce`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enforcers {
    /// Each enforcer's state, in config order.
    pub enforcers: Vec<EnforcerStatus>,
}

/// `POST /v1/calls/authorize` and `GET /v1/calls/check` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallAnswer {
    /// Whether the call may go through.
    pub allow: bool,
    /// The rule that decided (`allowed`, `premium-rate`, `node-error`, …).
    pub rule: String,
    /// Why, for a person.
    pub reason: String,
    /// The number dialled in E.164, when it could be read.
    pub e164: Option<String>,
    /// Whether the account is locked now.
    pub account_locked: bool,
}

/// `POST /v1/calls/{call_id}/end` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallEnded {
    /// The call (as kept: a long or unprintable id is `sha256:<hex>`).
    pub call_id: String,
    /// Whether it was a call of this account in progress.
    pub ended: bool,
    /// The account that asked.
    pub account: String,
}

/// `GET /v1/accounts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accounts {
    /// Accounts with calls in the last day or a lock.
    pub accounts: Vec<AccountView>,
}

/// `POST /v1/accounts/{account}/unlock` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unlocked {
    /// The account.
    pub account: String,
    /// Whether it was locked.
    pub unlocked: bool,
}
