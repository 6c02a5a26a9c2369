//! The engine's vocabulary and its handle: the commands other tasks send, the answers
//! they get, and the cloneable [`EngineHandle`] that sends them.

use super::Item;
use arc_swap::ArcSwap;
use fraudmesh::blocklist::Blocklist;
use fraudmesh::decisions::{self, Delta};
use fraudmesh::policy::Verdict;
use fraudmesh::proto;
use fraudmesh::sighting::{Draft, Record, RecordId};
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
        /// The records.
        records: Vec<proto::SignedSighting>,
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
        reply: oneshot::Sender<Vec<proto::SignedSighting>>,
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
    pub async fn ingest(&self, records: Vec<proto::SignedSighting>) -> GossipVerdict {
        self.ask(|reply| Command::Ingest { records, reply })
            .await
            .unwrap_or(GossipVerdict::Ignore)
    }

    /// The current reconciliation set.
    pub async fn sync_items(&self) -> anyhow::Result<Arc<Vec<Item>>> {
        self.ask(|reply| Command::SyncItems { reply }).await
    }

    /// Stored records by id.
    pub async fn fetch(&self, ids: Vec<RecordId>) -> anyhow::Result<Vec<proto::SignedSighting>> {
        self.ask(|reply| Command::Fetch { ids, reply }).await
    }

    /// Sends a tick (the node's timer task calls this).
    pub async fn tick(&self) -> anyhow::Result<()> {
        self.tx
            .send(Command::Tick)
            .await
            .map_err(|_| anyhow::anyhow!("engine stopped"))
    }
}
