//! The mesh's own endpoints: status, check, blocklist, peers, sightings (report and
//! retract), the enforcers' and the audit's state, `/metrics`, and the testnet's
//! fault injection.

use super::state::{ApiError, ApiState};
use super::types::{
    Blocklist, CheckAnswer, Enforcers, NodeStatus, Peers, RefuseRequest, Refused, Retracted, SightingsAnswer,
    SightingsRequest, SignedRecord, TargetVerdict, Ttl,
};
use crate::engine;
use crate::now_ms;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use fraudmesh::policy::Verdict;
use fraudmesh::sighting::{Draft, Evidence, Kind};
use fraudmesh::target::Target;
use serde_json::Value;
use std::time::Duration;

/// Most targets in one `POST /v1/sightings`.
pub const MAX_BATCH: usize = 100_000;

/// A target's decision as the API shows it.
fn block(t: &Target, d: &Verdict, since: Option<u64>) -> TargetVerdict {
    TargetVerdict {
        target: t.to_string(),
        blocked: d.blocked,
        score: f64::from(d.score) / 1000.0,
        stranger_score: f64::from(d.stranger_score) / 1000.0,
        reporters: engine::peer_ids(&d.reporters),
        until: d.until,
        allowlisted: d.allowlisted,
        since,
    }
}

/// `GET /v1/status`.
pub async fn status(State(s): State<ApiState>) -> Result<Json<NodeStatus>, ApiError> {
    let stats = s.engine.stats().await?;
    let peers = s.net.peers().await?;
    let listen: Vec<String> = s
        .net
        .listen_addrs()
        .iter()
        .map(|a| format!("{a}/p2p/{}", s.peer_id))
        .collect();
    let nat = s.net.nat_status();
    Ok(Json(NodeStatus {
        peer_id: s.peer_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        peers: peers.len(),
        gossip_peers: peers.iter().filter(|p| p.gossip).count(),
        records: stats.records,
        blocked: stats.blocked,
        listen,
        store_bytes: stats.store_bytes,
        uptime_s: s.started.elapsed().as_secs(),
        reachability: nat.reachability.as_str().into(),
        relays: nat.relays,
    }))
}

/// `GET /v1/enforce`: every enforcer's state.
pub async fn enforce(State(s): State<ApiState>) -> Json<Enforcers> {
    Json(Enforcers {
        enforcers: s.enforcers.snapshot(),
    })
}

/// `GET /v1/audit`: the scheduled audit's last result (`state`: off, pending or done).
pub async fn audit(State(s): State<ApiState>) -> Json<Value> {
    Json(s.audit.borrow().to_json())
}

/// `GET /v1/check/{target}`: the target and every prefix covering it.
pub async fn check(State(s): State<ApiState>, Path(target): Path<String>) -> Result<Json<CheckAnswer>, ApiError> {
    let t = Target::parse(&target, s.limits.bounds).map_err(|e| ApiError::bad(e.to_string()))?;
    let c = s.engine.check(t.clone()).await?;
    let mut reporters: Vec<String> = c
        .matches
        .iter()
        .flat_map(|(_, d)| engine::peer_ids(&d.reporters))
        .collect();
    reporters.sort();
    reporters.dedup();
    let until = c
        .matches
        .iter()
        .filter(|(_, d)| d.blocked)
        .filter_map(|(_, d)| d.until)
        .max();
    Ok(Json(CheckAnswer {
        target: t.to_string(),
        blocked: c.blocked,
        reporters,
        until,
        matches: c.matches.iter().map(|(t, d)| block(t, d, None)).collect(),
    }))
}

/// `GET /v1/blocklist`: every blocked target, with since when.
pub async fn blocklist(State(s): State<ApiState>) -> Result<Json<Blocklist>, ApiError> {
    let list = s.engine.list().await?;
    let blocked: Vec<TargetVerdict> = list
        .iter()
        .map(|l| block(&l.target, &l.decision, Some(l.since)))
        .collect();
    let allowed = s
        .engine
        .allows()
        .await?
        .iter()
        .map(|(t, a)| super::trust::allow_view(t, a))
        .collect();
    Ok(Json(Blocklist {
        count: blocked.len(),
        blocked,
        allowed,
    }))
}

/// `GET /v1/peers`.
pub async fn peers(State(s): State<ApiState>) -> Result<Json<Peers>, ApiError> {
    Ok(Json(Peers {
        peers: s.net.peers().await?,
    }))
}

/// `GET /metrics`: OpenMetrics text.
pub async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

/// `POST /v1/sightings` (token): signs and stores a batch; a bad target refuses it whole.
pub async fn report(State(s): State<ApiState>, body: axum::body::Bytes) -> Result<Json<SightingsAnswer>, ApiError> {
    let b: SightingsRequest = serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("bad JSON: {e}")))?;
    let mut texts = b.targets;
    texts.extend(b.target);
    if texts.is_empty() {
        return Err(ApiError::bad("no target given (\"target\" or \"targets\")"));
    }
    if texts.len() > MAX_BATCH {
        return Err(ApiError::bad(format!("at most {MAX_BATCH} targets per request")));
    }
    let kind: Kind = match b.kind.as_deref() {
        None => Kind::Manual,
        Some(k) => k.parse().map_err(ApiError::bad)?,
    };
    if kind == Kind::Retract {
        return Err(ApiError::bad("use DELETE /v1/sightings/{target} to retract"));
    }
    let ttl_s = match b.ttl {
        None => s.default_ttl_s,
        Some(Ttl::Seconds(n)) => u32::try_from(n).map_err(|_| ApiError::bad("ttl too large"))?,
        Some(Ttl::Text(t)) => {
            let d: Duration = humantime::parse_duration(&t).map_err(|e| ApiError::bad(format!("ttl {t:?}: {e}")))?;
            u32::try_from(d.as_secs()).map_err(|_| ApiError::bad("ttl too large"))?
        }
    };
    if ttl_s == 0 || ttl_s > s.limits.max_ttl_s {
        return Err(ApiError::bad(format!(
            "ttl must be between 1s and {}s",
            s.limits.max_ttl_s
        )));
    }
    // Parse everything before doing anything: a bad line refuses the whole batch.
    let mut targets = Vec::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        let target = Target::parse(t, s.limits.bounds).map_err(|e| ApiError::bad(format!("target {}: {e}", i + 1)))?;
        targets.push(target);
    }
    let now = now_ms();
    let evidence = Evidence {
        reason: b.reason.unwrap_or_default(),
        ..Default::default()
    }
    .truncated();
    let drafts: Vec<Draft> = targets
        .into_iter()
        .map(|target| Draft {
            target,
            kind,
            observed_at: now,
            ttl_s,
            count: b.count.unwrap_or(1).max(1),
            evidence: evidence.clone(),
        })
        .collect();
    let records = s.engine.report(drafts).await?;
    let records: Vec<SignedRecord> = records
        .iter()
        .map(|r| SignedRecord {
            target: r.sighting().target.to_string(),
            id: hex::encode(r.id()),
            until: r.sighting().expires_at(),
        })
        .collect();
    Ok(Json(SightingsAnswer {
        accepted: records.len(),
        records,
    }))
}

/// `DELETE /v1/sightings/{target}` (token): withdraws this node's sightings of it.
pub async fn retract(State(s): State<ApiState>, Path(target): Path<String>) -> Result<Json<Retracted>, ApiError> {
    let t = Target::parse(&target, s.limits.bounds).map_err(|e| ApiError::bad(e.to_string()))?;
    let draft = engine::retraction(t.clone(), now_ms(), s.limits.max_ttl_s);
    s.engine.report(vec![draft]).await?;
    Ok(Json(Retracted {
        retracted: t.to_string(),
    }))
}

/// Fault injection for testnets: refuse exactly the given peers (an empty list heals).
pub async fn refuse(State(s): State<ApiState>, body: axum::body::Bytes) -> Result<Json<Refused>, ApiError> {
    if !s.fault_injection {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "fault injection is off: set debug.fault_injection = true in the config".into(),
        ));
    }
    let b: RefuseRequest = serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("bad JSON: {e}")))?;
    let mut peers = Vec::with_capacity(b.peers.len());
    for (i, p) in b.peers.iter().enumerate() {
        let id: libp2p::PeerId = p
            .parse()
            .map_err(|e| ApiError::bad(format!("peers[{i}]: {p:?} is not a peer id: {e}")))?;
        peers.push(id);
    }
    let refused = s.net.refuse(peers).await?;
    Ok(Json(Refused {
        refused: refused.iter().map(ToString::to_string).collect(),
    }))
}
