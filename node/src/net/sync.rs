//! The catch-up protocol `/fraudmesh/sync/1` (see `proto/fraudmesh/v1/sync.proto`): the
//! codec, the initiator's session and the responder's answer.
//!
//! The reconciliation itself is the core's (`fraudmesh::sync`, pure); this module moves
//! its messages over libp2p request-response and hands every received record to the
//! engine, which validates it exactly like gossip. Endorsements share the reconciliation
//! set with sightings (their item is `(issued_at, id)`); a fetch answers both kinds
//! (`records`, `endorsements`) and a give carries both (`give`, `give_endorsements`). Work is bounded everywhere: message
//! size (read as the bytes arrive, so a peer announcing a large frame and sending it
//! slowly holds only what it sent), rounds per session, ids and records per request;
//! streams per connection, time per request and requests per peer are bounded by the
//! network (`net.sync_*`). A peer that sends something malformed, or records the engine
//! rejects (`Reject`: invalid for every receiver), is reported as [`Misbehaved`] and the
//! network cuts it off; records merely outside this node's own limits are not its fault.

use crate::engine::{EngineHandle, GossipVerdict, MAX_FETCH};
use crate::metrics::Metrics;
use fraudmesh::endorsement;
use fraudmesh::proto::{SyncRequest, SyncResponse};
use fraudmesh::sighting::{wire_id, RecordId};
use fraudmesh::sync::{Initiator, Responder};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use prost::Message;
use std::collections::HashSet;
use std::io;
use std::sync::Arc;
use std::time::Instant;

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/fraudmesh/sync/1");
/// Largest message either side accepts: a full reconcile frame (2 MiB), or a full batch
/// of 4096 records (about 210 bytes each) with their ids.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Negentropy frame limit (the core's largest message).
pub const FRAME_LIMIT: u64 = fraudmesh::sync::MAX_MESSAGE_BYTES as u64;
/// The buffer a message is first read into; it grows only as bytes arrive.
const READ_CHUNK: usize = 16 * 1024;

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The peer broke the protocol or sent invalid records: cut it off.
    #[error("peer misbehaved: {0}")]
    Misbehaved(String),
    /// The peer could not be asked (no support, timeout, connection gone): try later.
    #[error("sync failed: {0}")]
    Failed(String),
}

/// The peer broke the protocol (see [`SessionError::Misbehaved`]).
#[derive(Debug)]
pub struct Misbehaved(pub String);

/// What a finished session did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// Reconcile round trips.
    pub rounds: usize,
    /// Records received and merged.
    pub fetched: usize,
    /// Records sent to the peer.
    pub given: usize,
}

/// Length-prefixed protobuf messages, bounded, with bytes counted in metrics.
#[derive(Clone)]
pub struct SyncCodec {
    metrics: Arc<Metrics>,
}

impl SyncCodec {
    /// A codec counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }

    async fn read<T: AsyncRead + Unpin + Send, M: Message + Default>(&self, io: &mut T) -> io::Result<M> {
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let n = u32::from_be_bytes(len) as usize;
        if n > MAX_MESSAGE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("sync message of {n} bytes"),
            ));
        }
        // Not `vec![0; n]`: memory follows the bytes that arrived, not the bytes announced.
        let mut buf = Vec::with_capacity(n.min(READ_CHUNK));
        (&mut *io).take(n as u64).read_to_end(&mut buf).await?;
        self.metrics.sync_bytes_received.inc_by(4 + buf.len() as u64);
        if buf.len() < n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("sync message cut off after {} of {n} bytes", buf.len()),
            ));
        }
        M::decode(buf.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    async fn write<T: AsyncWrite + Unpin + Send, M: Message>(&self, io: &mut T, m: &M) -> io::Result<()> {
        let bytes = m.encode_to_vec();
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "sync message too large"));
        }
        io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
        io.write_all(&bytes).await?;
        io.flush().await?;
        self.metrics.sync_bytes_sent.inc_by(4 + bytes.len() as u64);
        Ok(())
    }
}

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncRequest> {
        self.read(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncResponse> {
        self.read(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: SyncRequest,
    ) -> io::Result<()> {
        self.write(io, &req).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: SyncResponse,
    ) -> io::Result<()> {
        self.write(io, &res).await
    }
}

/// Sends one request to the session's peer.
pub trait Requester: Send + Sync {
    /// The peer's response, or why there is none.
    fn request(&self, req: SyncRequest)
        -> impl std::future::Future<Output = Result<SyncResponse, SessionError>> + Send;
}

/// Runs one session as initiator: reconcile, then fetch what we lack and give what the
/// peer lacks, in bounded chunks.
pub async fn run_session(
    engine: &EngineHandle,
    peer: &impl Requester,
    metrics: &Metrics,
) -> Result<Outcome, SessionError> {
    let started = Instant::now();
    let failed = |e: anyhow::Error| SessionError::Failed(e.to_string());
    let items = engine.sync_items().await.map_err(failed)?;
    let (mut init, mut msg) =
        Initiator::new(&items, FRAME_LIMIT).map_err(|e| SessionError::Failed(format!("starting: {e}")))?;
    drop(items);
    let mut out = Outcome::default();
    loop {
        let resp = peer
            .request(SyncRequest {
                reconcile: msg.into(),
                ..Default::default()
            })
            .await?;
        out.rounds += 1;
        metrics.sync_rounds.inc();
        match init.step(&resp.reconcile) {
            Ok(Some(next)) => msg = next,
            Ok(None) => break,
            Err(e) if e.is_peer_fault() => return Err(SessionError::Misbehaved(format!("reconcile: {e}"))),
            // Not the peer's fault (e.g. the round limit with a large difference): use
            // what was found so far; the next session continues from a smaller difference.
            Err(e) => {
                tracing::debug!(error = %e, rounds = out.rounds, "reconciliation stopped early");
                break;
            }
        }
    }
    let need: Vec<RecordId> = init.need().to_vec();
    let have: Vec<RecordId> = init.have().to_vec();
    let chunks = need.len().div_ceil(MAX_FETCH).max(have.len().div_ceil(MAX_FETCH));
    for i in 0..chunks {
        let want: Vec<RecordId> = need.iter().skip(i * MAX_FETCH).take(MAX_FETCH).copied().collect();
        let give_ids: Vec<RecordId> = have.iter().skip(i * MAX_FETCH).take(MAX_FETCH).copied().collect();
        let give = if give_ids.is_empty() {
            Default::default()
        } else {
            engine.fetch(give_ids).await.map_err(failed)?
        };
        out.given += give.len();
        let resp = peer
            .request(SyncRequest {
                reconcile: Default::default(),
                want: want.iter().map(|id| id.to_vec().into()).collect(),
                give: give.sightings,
                give_endorsements: give.endorsements,
            })
            .await?;
        let asked: HashSet<&RecordId> = want.iter().collect();
        let ids = resp
            .records
            .iter()
            .map(wire_id)
            .chain(resp.endorsements.iter().map(endorsement::wire_id));
        let mut answered = HashSet::new();
        for id in ids {
            // Each asked for, and once: a repeated record would be ingested twice over.
            if !asked.contains(&id) || !answered.insert(id) {
                return Err(SessionError::Misbehaved("sent a record that was not asked for".into()));
            }
        }
        let n = resp.records.len() + resp.endorsements.len();
        if n > 0 {
            if engine.ingest(resp.records, resp.endorsements).await == GossipVerdict::Reject {
                return Err(SessionError::Misbehaved("sent an invalid record".into()));
            }
            out.fetched += n;
            metrics.sync_records_fetched.inc_by(n as u64);
        }
    }
    metrics.sync_duration.observe(started.elapsed().as_secs_f64());
    Ok(out)
}

/// Answers one request as responder. `Ok(None)`: this node cannot answer now (shutting
/// down); the peer is not at fault.
pub async fn answer(engine: &EngineHandle, req: SyncRequest) -> Result<Option<SyncResponse>, Misbehaved> {
    if req.want.len() > MAX_FETCH || req.give.len() + req.give_endorsements.len() > MAX_FETCH {
        return Err(Misbehaved(format!(
            "more than {MAX_FETCH} ids or records in one request"
        )));
    }
    let mut resp = SyncResponse::default();
    if !req.reconcile.is_empty() {
        let Ok(items) = engine.sync_items().await else {
            return Ok(None);
        };
        // Building over our own items cannot be the peer's fault.
        let Ok(mut r) = Responder::new(&items, FRAME_LIMIT) else {
            return Ok(None);
        };
        resp.reconcile = r
            .respond(&req.reconcile)
            .map_err(|e| Misbehaved(format!("reconcile: {e}")))?
            .into();
    }
    if (!req.give.is_empty() || !req.give_endorsements.is_empty())
        && engine.ingest(req.give, req.give_endorsements).await == GossipVerdict::Reject
    {
        return Err(Misbehaved("gave an invalid record".into()));
    }
    if !req.want.is_empty() {
        let ids = req
            .want
            .iter()
            .map(|w| <RecordId>::try_from(w.as_ref()).map_err(|_| Misbehaved("an id is not 32 bytes".into())))
            .collect::<Result<Vec<_>, _>>()?;
        let Ok(found) = engine.fetch(ids).await else {
            return Ok(None);
        };
        resp.records = found.sightings;
        resp.endorsements = found.endorsements;
    }
    Ok(Some(resp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    fn frame(len: u32, body: &[u8]) -> Cursor<Vec<u8>> {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(body);
        Cursor::new(bytes)
    }

    #[test]
    fn frames_are_read_as_they_arrive_within_the_bound() {
        let metrics = Arc::new(Metrics::new());
        let codec = SyncCodec::new(metrics.clone());
        futures::executor::block_on(async {
            let msg = SyncResponse {
                reconcile: vec![7; 40_000].into(),
                ..Default::default()
            };
            let body = msg.encode_to_vec();
            let got: SyncResponse = codec.read(&mut frame(body.len() as u32, &body)).await.unwrap();
            assert_eq!(got, msg);

            // A frame that announces the bound but stops short: an error once the
            // stream ends (and only what arrived was ever held).
            let short = codec
                .read::<_, SyncResponse>(&mut frame(MAX_MESSAGE_BYTES as u32, b"only a few bytes"))
                .await
                .unwrap_err();
            assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof, "{short}");

            // Over the bound: refused before anything is read, as the peer's fault.
            let over = codec
                .read::<_, SyncResponse>(&mut frame(MAX_MESSAGE_BYTES as u32 + 1, b""))
                .await
                .unwrap_err();
            assert_eq!(over.kind(), io::ErrorKind::InvalidData, "{over}");

            // Well framed, not a message: the peer's fault too.
            let junk = codec
                .read::<_, SyncResponse>(&mut frame(4, b"\xff\xff\xff\xff"))
                .await
                .unwrap_err();
            assert_eq!(junk.kind(), io::ErrorKind::InvalidData, "{junk}");
        });
        // Counted: what arrived of the three frames read (the one over the bound was not).
        let first = SyncResponse {
            reconcile: vec![7; 40_000].into(),
            ..Default::default()
        }
        .encoded_len();
        assert_eq!(metrics.sync_bytes_received.get(), (4 + first + 4 + 16 + 4 + 4) as u64);
    }
}
