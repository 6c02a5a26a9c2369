//! The engine's vocabulary and its handle: the commands other tasks send, the answers
//! they get, and the cloneable [`EngineHandle`] that sends them.

use super::Item;
use arc_swap::ArcSwap;
use fraudmesh::blocklist::Blocklist;
use fraudmesh::decisions::{self, Delta};
use fraudmesh::endorsement::{EndorsementKind, EndorsementRecord};
use fraudmesh::identity::PublicKey;
use fraudmesh::policy::{Allow, Explanation, Verdict};
use fraudmesh::proto;
use fraudmesh::sighting::{Draft, Evidence, Record, RecordId};
use fraudmesh::target::Target;
use fraudmesh::Millis;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// What gossipsub is told about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipVerdict {
    /// Every sighting in it is valid, new and within its reporter's rate (stored here or
    /// not): forward it.
    Accept,
    /// Not every sighting is relayable (duplicates, clock window, rate): don't forward it,
    /// don't penalise. The relayable ones, if any, the engine publishes anew.
    Ignore,
    /// Invalid: don't forward, and penalise the peer that sent it.
    Reject,
}

impl GossipVerdict {
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Ignore => "ignore",
            Self::Reject => "reject",
        }
    }
}

/// The answer to "is this blocked, and why?".
#[derive(Debug, Clone)]
pub struct Check {
    /// Blocked now by any matching target.
    pub blocked: bool,
    /// Every target with records that covers the query, with its decision.
    pub matches: Vec<(Target, Verdict)>,
}

/// One blocked target of the list.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The target.
    pub target: Target,
    /// Its decision now.
    pub decision: Verdict,
    /// When this node began blocking it (Unix ms): the moment its decision turned to
    /// block, which is what the testnet measures propagation by.
    pub since: Millis,
}

/// Counts for status.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Records in the ledger.
    pub records: usize,
    /// Targets blocked.
    pub blocked: usize,
    /// Bytes of the database on disk.
    pub store_bytes: u64,
}

/// Most endorsements one [`EngineHandle::endorse`] call takes (a renewal of every member
/// of a large organisation fits).
pub const MAX_ENDORSE: usize = 4096;
/// Longest reason of an allow, bytes.
pub const MAX_REASON_BYTES: usize = 512;

/// Why endorsements given to this node were refused. Nothing of the call changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndorseError {
    /// The signing organisation is not in this node's `[[trust.orgs]]`: its records are
    /// neither stored nor published here.
    #[error("organisation {} is not trusted by this node (add it to [[trust.orgs]])", .org.peer_id())]
    UntrustedOrg {
        /// The organisation's key.
        org: PublicKey,
    },
    /// A revocation by an organisation that holds no endorsement of that member here (the
    /// wrong organisation key, or a member never endorsed, or already revoked).
    #[error("nothing to revoke: organisation {} holds no endorsement of {} on this node", .org.peer_id(), .member.peer_id())]
    NothingToRevoke {
        /// The organisation's key.
        org: PublicKey,
        /// The member's key.
        member: PublicKey,
    },
    /// The record expired already.
    #[error("the record of {} by organisation {} expired at {expires_at} (Unix ms)", .member.peer_id(), .org.peer_id())]
    Expired {
        /// The organisation's key.
        org: PublicKey,
        /// The member's key.
        member: PublicKey,
        /// When it expired, Unix ms.
        expires_at: Millis,
    },
    /// No record given.
    #[error("no endorsement given")]
    Empty,
    /// More than [`MAX_ENDORSE`] records in one call.
    #[error("more than {max} endorsements in one call")]
    TooMany {
        /// The bound.
        max: usize,
    },
    /// The store could not make the records durable: they are merged here (and retried
    /// by the store) but were not published.
    #[error("the store could not make the endorsements durable: {0}")]
    Store(String),
    /// The engine is gone (the node is stopping).
    #[error("engine stopped")]
    Stopped,
}

impl EndorseError {
    /// Whether the caller's input was at fault (an HTTP 400), not the node (a 500/503).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Self::Store(_) | Self::Stopped)
    }
}

/// One endorsement record taken by [`EngineHandle::endorse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endorsed {
    /// Its id (SHA-256 of payload and signature).
    pub id: RecordId,
    /// The organisation.
    pub org: PublicKey,
    /// The member.
    pub member: PublicKey,
    /// Endorse or revoke.
    pub kind: EndorsementKind,
    /// The member's name (empty for a revocation).
    pub name: String,
    /// When it expires, Unix ms.
    pub expires_at: Millis,
    /// Whether it changed this node's roster (false: this record or a newer one of the
    /// same organisation and member was held already; nothing was published).
    pub changed: bool,
}

/// One endorsement record this node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndorsementInfo {
    /// The record (the newest of its organisation and member).
    pub record: EndorsementRecord,
    /// The organisation's name in this node's `[[trust.orgs]]`.
    pub org_name: String,
    /// Whether it endorses its member now (an endorsement, not expired).
    pub active: bool,
}

/// The answer to "why is this target blocked, or not?".
#[derive(Debug, Clone)]
pub struct Explained {
    /// Blocked now, through the target itself or a prefix covering it.
    pub blocked: bool,
    /// The target asked about first (always, even without records), then every broader
    /// prefix covering it that holds records (a host blocked through its /24 says so
    /// there).
    pub targets: Vec<TargetExplained>,
}

/// One target's explanation.
#[derive(Debug, Clone)]
pub struct TargetExplained {
    /// The target.
    pub target: Target,
    /// The policy's explanation: every record, its weight and why it counted or not,
    /// the sum, the threshold, the allow in force.
    pub explanation: Explanation,
    /// Each record's evidence from the store, in the order of `explanation.records`
    /// (`None`: not readable now, e.g. a record merged moments ago and not written yet).
    pub evidence: Vec<Option<Evidence>>,
}

/// Why an allow was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowError {
    /// The reason is empty.
    #[error("an allow needs a reason")]
    NoReason,
    /// The reason is longer than [`MAX_REASON_BYTES`].
    #[error("the reason is longer than {max} bytes")]
    ReasonTooLong {
        /// The bound.
        max: usize,
    },
    /// `until` is not in the future.
    #[error("the allow would end at {until} (Unix ms), which is not in the future")]
    UntilPassed {
        /// The requested end.
        until: Millis,
    },
    /// The store could not make the change durable (it is in force here and retried).
    #[error("the store could not make the allow durable: {0}")]
    Store(String),
    /// The engine is gone (the node is stopping).
    #[error("engine stopped")]
    Stopped,
}

impl AllowError {
    /// Whether the caller's input was at fault (an HTTP 400), not the node.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Self::Store(_) | Self::Stopped)
    }
}

/// What an allow did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// The trusted reporters (never this node) whose active sightings of an overlapping
    /// target the allow overrode: each lost reputation on this node. Empty when the
    /// allow renews one already in force on the same target.
    pub penalised: Vec<PublicKey>,
}

/// Records looked up by id for sync.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fetched {
    /// Sightings found.
    pub sightings: Vec<proto::SignedSighting>,
    /// Endorsements found.
    pub endorsements: Vec<proto::SignedEndorsement>,
}

impl Fetched {
    /// Records found of both kinds.
    pub fn len(&self) -> usize {
        self.sightings.len() + self.endorsements.len()
    }

    /// Nothing found.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Requests to the engine.
pub enum Command {
    /// A gossip message's data; the verdict goes back to gossipsub.
    Gossip {
        /// The raw message data (an `Envelope`).
        data: Vec<u8>,
        /// Where the verdict goes.
        reply: oneshot::Sender<GossipVerdict>,
    },
    /// Sign, merge, persist (flushed) and publish local sightings.
    Report {
        /// What to sign.
        drafts: Vec<Draft>,
        /// The signed records once durable, and published only then. An error when the
        /// store could not make them durable: nothing is published (they stay merged here
        /// and the store's writer keeps retrying them).
        reply: oneshot::Sender<anyhow::Result<Vec<Record>>>,
    },
    /// Decide one target (and, for an address, every prefix covering it).
    Check {
        /// The query.
        target: Target,
        /// The answer.
        reply: oneshot::Sender<Check>,
    },
    /// Every blocked target.
    List {
        /// The answer.
        reply: oneshot::Sender<Vec<Listed>>,
    },
    /// Counts.
    Stats {
        /// The answer.
        reply: oneshot::Sender<Stats>,
    },
    /// Records received from a sync peer; validated exactly like gossip.
    Ingest {
        /// The sightings.
        sightings: Vec<proto::SignedSighting>,
        /// The endorsements.
        endorsements: Vec<proto::SignedEndorsement>,
        /// The verdict (reject: the peer sent something invalid).
        reply: oneshot::Sender<GossipVerdict>,
    },
    /// The reconciliation set: (observed_at, id) of every active record, sorted.
    SyncItems {
        /// The answer (shared: it is rebuilt at most once per
        /// [`SYNC_ITEMS_REFRESH`](super::SYNC_ITEMS_REFRESH) and may lag that much).
        reply: oneshot::Sender<Arc<Vec<Item>>>,
    },
    /// The stored records with these ids (unknown ids are skipped).
    Fetch {
        /// Wanted ids.
        ids: Vec<RecordId>,
        /// The records found.
        reply: oneshot::Sender<Fetched>,
    },
    /// Verified endorsement records given by the operator: checked, stored (flushed),
    /// merged and published, or all refused.
    Endorse {
        /// The records.
        records: Vec<EndorsementRecord>,
        /// What became of each, once durable; or why none was taken.
        reply: oneshot::Sender<Result<Vec<Endorsed>, EndorseError>>,
    },
    /// Every endorsement record held.
    Endorsements {
        /// The answer.
        reply: oneshot::Sender<Vec<EndorsementInfo>>,
    },
    /// Explain the decision on a target.
    Explain {
        /// The query.
        target: Target,
        /// The answer.
        reply: oneshot::Sender<Explained>,
    },
    /// A local override: never block `target` (until `until`).
    Allow {
        /// The target.
        target: Target,
        /// When the allow ends (`None`: never).
        until: Option<Millis>,
        /// Why (shown in explain and list).
        reason: String,
        /// Once durable: the reporters penalised.
        reply: oneshot::Sender<Result<Allowed, AllowError>>,
    },
    /// Ends an allow.
    Unallow {
        /// The target.
        target: Target,
        /// Once durable: whether an allow was removed.
        reply: oneshot::Sender<anyhow::Result<bool>>,
    },
    /// Every allow in force.
    Allows {
        /// The answer.
        reply: oneshot::Sender<Vec<(Target, Allow)>>,
    },
    /// What changed in the decision log after a cursor.
    Decisions {
        /// The cursor (0: everything).
        after: u64,
        /// The answer.
        reply: oneshot::Sender<Delta>,
    },
    /// The blocks in force on a target and every prefix covering it.
    DecisionsFor {
        /// The query.
        target: Target,
        /// The answer.
        reply: oneshot::Sender<Vec<decisions::Block>>,
    },
    /// Time passes: rebuild the snapshot, end blocks that expired, collect garbage.
    Tick,
}

/// A cloneable handle to the engine.
#[derive(Clone)]
pub struct EngineHandle {
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) blocklist: Arc<ArcSwap<Blocklist>>,
    pub(super) decisions: Arc<watch::Sender<u64>>,
}

impl EngineHandle {
    /// The current decided snapshot (hot path; never waits for merges).
    pub fn blocklist(&self) -> Arc<Blocklist> {
        self.blocklist.load_full()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> anyhow::Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| anyhow::anyhow!("engine stopped"))?;
        rx.await.map_err(|_| anyhow::anyhow!("engine stopped"))
    }

    /// Gossip data → verdict.
    pub async fn gossip(&self, data: Vec<u8>) -> GossipVerdict {
        self.ask(|reply| Command::Gossip { data, reply })
            .await
            .unwrap_or(GossipVerdict::Ignore)
    }

    /// Signs and stores local sightings; returns once they are durable (and published).
    pub async fn report(&self, drafts: Vec<Draft>) -> anyhow::Result<Vec<Record>> {
        self.ask(|reply| Command::Report { drafts, reply }).await?
    }

    /// Explains the decision for a target.
    pub async fn check(&self, target: Target) -> anyhow::Result<Check> {
        self.ask(|reply| Command::Check { target, reply }).await
    }

    /// What changed in the decision log after `after` (0: everything).
    pub async fn decisions(&self, after: u64) -> anyhow::Result<Delta> {
        self.ask(|reply| Command::Decisions { after, reply }).await
    }

    /// The blocks in force on `target` and every prefix covering it.
    pub async fn decisions_for(&self, target: Target) -> anyhow::Result<Vec<decisions::Block>> {
        self.ask(|reply| Command::DecisionsFor { target, reply }).await
    }

    /// The head of the decision log, changing with every change: wait on it, then ask
    /// [`EngineHandle::decisions`].
    pub fn watch_decisions(&self) -> watch::Receiver<u64> {
        self.decisions.subscribe()
    }

    /// Blocked targets.
    pub async fn list(&self) -> anyhow::Result<Vec<Listed>> {
        self.ask(|reply| Command::List { reply }).await
    }

    /// Counts.
    pub async fn stats(&self) -> anyhow::Result<Stats> {
        self.ask(|reply| Command::Stats { reply }).await
    }

    /// Validates and merges records received through sync.
    pub async fn ingest(
        &self,
        sightings: Vec<proto::SignedSighting>,
        endorsements: Vec<proto::SignedEndorsement>,
    ) -> GossipVerdict {
        self.ask(|reply| Command::Ingest {
            sightings,
            endorsements,
            reply,
        })
        .await
        .unwrap_or(GossipVerdict::Ignore)
    }

    /// The current reconciliation set.
    pub async fn sync_items(&self) -> anyhow::Result<Arc<Vec<Item>>> {
        self.ask(|reply| Command::SyncItems { reply }).await
    }

    /// Stored records (sightings and endorsements) by id.
    pub async fn fetch(&self, ids: Vec<RecordId>) -> anyhow::Result<Fetched> {
        self.ask(|reply| Command::Fetch { ids, reply }).await
    }

    /// Takes endorsement records (verified, e.g. by `fraudmesh::endorsement::parse_line`):
    /// all of them are checked first, and if any is refused nothing changes; otherwise
    /// each is merged, stored and published, and the answer comes once the store flushed
    /// them. Blocks that depended on a revoked member are lifted, and an endorsed
    /// member's sightings count, before the answer.
    pub async fn endorse(&self, records: Vec<EndorsementRecord>) -> Result<Vec<Endorsed>, EndorseError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Endorse { records, reply })
            .await
            .map_err(|_| EndorseError::Stopped)?;
        rx.await.map_err(|_| EndorseError::Stopped)?
    }

    /// Every endorsement record held (of the organisations this node trusts), newest per
    /// organisation and member.
    pub async fn endorsements(&self) -> anyhow::Result<Vec<EndorsementInfo>> {
        self.ask(|reply| Command::Endorsements { reply }).await
    }

    /// Explains the decision on `target` and on every prefix covering it.
    pub async fn explain(&self, target: Target) -> anyhow::Result<Explained> {
        self.ask(|reply| Command::Explain { target, reply }).await
    }

    /// Never block `target` (nor anything overlapping it) until `until`, whatever the
    /// mesh says; persistent. The trusted reporters it overrides lose reputation here.
    /// Answers once durable.
    pub async fn allow(&self, target: Target, until: Option<Millis>, reason: String) -> Result<Allowed, AllowError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Allow {
                target,
                until,
                reason,
                reply,
            })
            .await
            .map_err(|_| AllowError::Stopped)?;
        rx.await.map_err(|_| AllowError::Stopped)?
    }

    /// Ends the allow of exactly `target`; false if there was none. Answers once durable.
    pub async fn unallow(&self, target: Target) -> anyhow::Result<bool> {
        self.ask(|reply| Command::Unallow { target, reply }).await?
    }

    /// Every allow in force.
    pub async fn allows(&self) -> anyhow::Result<Vec<(Target, Allow)>> {
        self.ask(|reply| Command::Allows { reply }).await
    }

    /// Sends a tick (the node's timer task calls this).
    pub async fn tick(&self) -> anyhow::Result<()> {
        self.tx
            .send(Command::Tick)
            .await
            .map_err(|_| anyhow::anyhow!("engine stopped"))
    }
}
