//! The loop's side of catch-up sync: sessions this node starts (one at a time, to one
//! peer, not again with the same peer within [`SYNC_PEER_GAP`]), the periodic sync timer,
//! answering other peers' requests through the engine (one at a time per peer, within
//! the peer's request budget), and the request-response events that carry both.

use super::super::sync::{self, Misbehaved, SessionError};
use super::super::{NetCommand, NetRequester, BAN, MAX_INBOUND_SYNC, MAX_QUEUED_SESSIONS, SYNC_PEER_GAP};
use super::EventLoop;
use crate::metrics::{ReasonLabel, ResultLabel};
use fraudmesh::proto::{SyncRequest, SyncResponse};
use futures::FutureExt;
use libp2p::request_response::{self, ResponseChannel};
use libp2p::PeerId;
use std::time::Instant;

impl EventLoop {
    /// Starts a session with `peer`, unless one ran moments ago with it. One runs at a
    /// time: while one runs, `peer` is queued if `queue_if_busy`, else skipped.
    pub(super) fn start_session(&mut self, peer: PeerId, queue_if_busy: bool) {
        if self.sync_peers.synced_within(&peer, SYNC_PEER_GAP, Instant::now()) {
            return;
        }
        if !self.syncing.is_empty() {
            if queue_if_busy && !self.queued.contains(&peer) && self.queued.len() < MAX_QUEUED_SESSIONS {
                self.queued.push_back(peer);
            }
            return;
        }
        self.syncing.insert(peer);
        self.sync_peers.session_started(peer, Instant::now());
        let (engine, metrics, tx) = (
            self.engine.clone(),
            self.metrics.clone(),
            self.channels.sessions.clone(),
        );
        tokio::spawn(async move {
            let requester = NetRequester { peer, tx: tx.clone() };
            let result = sync::run_session(&engine, &requester, &metrics).await;
            let _ = tx.send(NetCommand::SessionDone { peer, result }).await;
        });
    }

    /// A session ended: count it, cut off a peer that misbehaved, start the next queued.
    pub(super) fn session_done(&mut self, peer: PeerId, result: Result<sync::Outcome, SessionError>) {
        self.syncing.remove(&peer);
        let label = match &result {
            Ok(o) => {
                tracing::debug!(%peer, rounds = o.rounds, fetched = o.fetched, given = o.given, "sync done");
                "ok"
            }
            Err(SessionError::Failed(e)) => {
                tracing::debug!(%peer, error = %e, "sync failed");
                "failed"
            }
            Err(SessionError::Misbehaved(e)) => {
                self.cut_off(peer, e);
                "misbehaved"
            }
        };
        self.metrics
            .sync_sessions
            .get_or_create(&ResultLabel { result: label })
            .inc();
        while self.syncing.is_empty() {
            let Some(next) = self.queued.pop_front() else { break };
            if self.swarm.is_connected(&next) {
                self.start_session(next, true);
            }
        }
    }

    /// Every [`SYNC_INTERVAL`](super::super::SYNC_INTERVAL): a session with a random
    /// connected peer; bans that have run their time are lifted; the sync bookkeeping of
    /// peers long gone is dropped.
    pub(super) fn on_sync_timer(&mut self) {
        let candidates: Vec<PeerId> = self
            .swarm
            .connected_peers()
            .filter(|p| !self.syncing.contains(p))
            .copied()
            .collect();
        if !candidates.is_empty() {
            let pick = candidates[rand::random::<usize>() % candidates.len()];
            self.start_session(pick, false);
        }
        let swarm = &self.swarm;
        self.sync_peers.prune(Instant::now(), |p| swarm.is_connected(p));
        let swarm = &mut self.swarm;
        self.banned.retain(|peer, since| {
            let keep = since.elapsed() < BAN;
            if !keep {
                swarm.behaviour_mut().gossipsub.remove_blacklisted_peer(peer);
            }
            keep
        });
    }

    // ---- sync answers (a peer asking) ----

    /// A sync request from `peer`: the engine answers it, within the bounds.
    pub(super) fn on_sync_request(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    ) {
        // Sessions ask one thing at a time: a peer gets one answer in work, and all
        // peers together MAX_INBOUND_SYNC; each peer within its request budget. A
        // dropped request fails the peer's session (the stream closes unanswered), not
        // its standing: the next session goes on from what was merged.
        let refused = if self.answers.len() >= MAX_INBOUND_SYNC || self.answering.contains(&peer) {
            self.metrics.reject("sync_request_dropped");
            Some("busy")
        } else if !self.sync_peers.take_request(peer, Instant::now()) {
            Some("rate")
        } else {
            None
        };
        if let Some(reason) = refused {
            tracing::debug!(%peer, reason, "sync request beyond the bounds; dropped");
            self.metrics
                .sync_requests_refused
                .get_or_create(&ReasonLabel { reason })
                .inc();
            return;
        }
        self.answering.insert(peer);
        let engine = self.engine.clone();
        self.answers.push(
            async move {
                let answer = sync::answer(&engine, request).await;
                (peer, channel, answer)
            }
            .boxed(),
        );
    }

    /// The engine's answer to `peer` is ready: send it, or cut off a peer that asked
    /// something malformed.
    pub(super) fn send_answer(
        &mut self,
        peer: PeerId,
        channel: ResponseChannel<SyncResponse>,
        answer: Result<Option<SyncResponse>, Misbehaved>,
    ) {
        self.answering.remove(&peer);
        match answer {
            Ok(Some(resp)) => {
                let _ = self.swarm.behaviour_mut().sync.send_response(channel, resp);
            }
            Ok(None) => {}
            Err(Misbehaved(e)) => self.cut_off(peer, &e),
        }
    }

    /// Requests to answer, and responses or failures for the sessions waiting on them.
    pub(super) fn on_sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message {
                peer,
                message: request_response::Message::Request { request, channel, .. },
                ..
            } => self.on_sync_request(peer, request, channel),
            request_response::Event::Message {
                message: request_response::Message::Response { request_id, response },
                ..
            } => {
                if let Some(reply) = self.requests.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some(reply) = self.requests.remove(&request_id) {
                    let e = match error {
                        request_response::OutboundFailure::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                            SessionError::Misbehaved(format!("malformed answer: {e}"))
                        }
                        other => SessionError::Failed(other.to_string()),
                    };
                    let _ = reply.send(Err(e));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound sync request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
