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
    /// The local overrides (`allow`): targets never blocked here, whatever the mesh says.
    #[serde(default)]
    pub allowed: Vec<AllowView>,
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

/// `POST /v1/endorsements` body: one signed line from `fraudmesh org endorse`, `org
/// revoke` or `org renew`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndorsementRequest {
    /// `fraudmesh-endorsement:v1:…` (at most 1024 characters).
    pub line: String,
}

/// One endorsement or revocation, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndorsementView {
    /// Its id (hex SHA-256 of the signed bytes).
    pub id: String,
    /// The organisation that signed it (`12D3KooW…`).
    pub org: String,
    /// The organisation's name in this node's config, if it trusts it.
    #[serde(default)]
    pub org_name: Option<String>,
    /// The node it is about (`12D3KooW…`).
    pub member: String,
    /// `endorse` or `revoke`.
    pub kind: String,
    /// The member's name (empty for a revocation).
    pub name: String,
    /// When it was signed.
    pub issued_at_ms: u64,
    /// When it expires.
    pub expires_at_ms: u64,
    /// Whether it makes its member trusted now (an unexpired endorsement, the newest of
    /// its (org, member)).
    pub active: bool,
}

/// `POST /v1/endorsements` answer: sent once the record is stored durably.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndorsementAdded {
    /// The record.
    #[serde(flatten)]
    pub endorsement: EndorsementView,
    /// Whether it changed anything (false: this node already held it or a newer one).
    pub changed: bool,
}

/// `GET /v1/endorsements`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endorsements {
    /// Every endorsement and revocation this node holds, by organisation and member.
    pub endorsements: Vec<EndorsementView>,
}

/// One local override (`allow`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllowView {
    /// The target never blocked here.
    pub target: String,
    /// Why, as the operator said.
    pub reason: String,
    /// When it was made.
    pub at: u64,
    /// When it ends (`null`: until removed).
    pub until: Option<u64>,
}

/// `POST /v1/allow` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRequest {
    /// An address, prefix or `+number`.
    pub target: String,
    /// How long it lasts (seconds or a duration text such as `"7d"`); absent: until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Ttl>,
    /// Why (1 to 200 bytes).
    pub reason: String,
}

/// `POST /v1/allow` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllowAnswer {
    /// The override made.
    #[serde(flatten)]
    pub allow: AllowView,
    /// Trusted reporters whose accusations it overrode: each loses weight here
    /// (`[trust.reputation]`).
    pub penalised: Vec<String>,
}

/// `DELETE /v1/allow/{target}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unallowed {
    /// The target, in canonical form.
    pub target: String,
    /// Whether there was an override to remove.
    pub removed: bool,
}

/// `GET /v1/allow`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Allows {
    /// Every override in force.
    pub allows: Vec<AllowView>,
}

/// `GET /v1/explain/{target}`: everything that decides whether the target is blocked.
/// Weights are decimals as in the config (1.0 = a fully trusted reporter).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Explanation {
    /// The target, in canonical form.
    pub target: String,
    /// Whether it is blocked.
    pub blocked: bool,
    /// Summed weight of the trusted reporters' records that count.
    pub score: f64,
    /// The block threshold (`trust.threshold`).
    pub threshold: f64,
    /// Strangers' summed weight (capped): shown, never counted.
    pub stranger_score: f64,
    /// Whether the config's allowlist covers it.
    pub allowlisted: bool,
    /// The local override (`allow`) that covers it, if any.
    pub allowed: Option<AllowView>,
    /// When the block ends while nothing new arrives, if blocked.
    pub until: Option<u64>,
    /// Why it is or is not blocked, for a person.
    pub why: String,
    /// Every record on the target.
    pub records: Vec<ExplainedRecord>,
}

/// One record of an [`Explanation`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExplainedRecord {
    /// The target it accuses: the one asked about, or a broader prefix covering it.
    pub target: String,
    /// Who signed it (peer id).
    pub reporter: String,
    /// The reporter's endorsed name, when an organisation vouches for it.
    pub name: Option<String>,
    /// Why its weight is what it is: `self` (this node), `peer` (`[[trust.peers]]`),
    /// `org` (endorsed by a trusted organisation) or `stranger`.
    pub trusted_via: String,
    /// The endorsing organisation's id, with `trusted_via` = `org`.
    pub org: Option<String>,
    /// That organisation's name in this node's config.
    pub org_name: Option<String>,
    /// The weight it counts (after reputation).
    pub weight: f64,
    /// The weight the config gives it.
    pub configured_weight: f64,
    /// Its reputation factor here (1.0: untouched; lower after `allow` overrode it).
    pub reputation: f64,
    /// The sighting kind (`scan`, `auth-failure`, …, `retract`).
    pub kind: String,
    /// How many times it was seen.
    pub count: u32,
    /// What the reporter said it saw.
    pub evidence: EvidenceView,
    /// When the reporter saw it.
    pub observed_at_ms: u64,
    /// When it expires.
    pub expires_at_ms: u64,
    /// Whether it counts toward the score now.
    pub counted: bool,
    /// Why it counts or not: `counted`, `stranger`, `expired`, `retraction`, `weight
    /// expired`.
    pub reason: String,
}

/// A sighting's evidence.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EvidenceView {
    /// The SIP method of the attack requests.
    pub method: String,
    /// The attacker's user agent.
    pub user_agent: String,
    /// Free text.
    pub reason: String,
    /// Usernames tried.
    pub usernames: Vec<String>,
}
