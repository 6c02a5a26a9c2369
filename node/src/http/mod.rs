//! The local HTTP API (JSON) and `/metrics`. Bound to 127.0.0.1 by default; every write
//! needs `Authorization: Bearer <token>` with the token from `api.token`.
//!
//! Every request that is refused changes nothing and says why in `{"error": "..."}`.

pub mod apiban;
pub mod bouncers;
pub mod calls;
pub mod client;
pub mod crowdsec;

use crate::engine::{self, EngineHandle};
use crate::metrics::Metrics;
use crate::net::NetHandle;
use crate::now_ms;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use fraudmesh::policy::Decision;
use fraudmesh::sighting::{Draft, Evidence, Kind, Limits};
use fraudmesh::target::Target;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most targets in one `POST /v1/sightings`.
pub const MAX_BATCH: usize = 100_000;
/// Largest request body.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The engine.
    pub engine: EngineHandle,
    /// The network.
    pub net: NetHandle,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// SHA-256 of the API token (compared hashed, so timing reveals nothing useful).
    pub token_hash: [u8; 32],
    /// Acceptance bounds (reports are held to the same rules as everyone's).
    pub limits: Limits,
    /// TTL of reports that give none, seconds.
    pub default_ttl_s: u32,
    /// This node's peer id.
    pub peer_id: String,
    /// Start time, for uptime.
    pub started: Instant,
    /// Whether `PUT /v1/debug/refuse` works (config `debug.fault_injection`).
    pub fault_injection: bool,
    /// CrowdSec bouncer keys (`DIR/bouncers.json`).
    pub bouncers: crate::http::bouncers::Bouncers,
    /// Each bouncer's cursor into the decision log (its stream state).
    pub streams: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
    /// Every enforcer's state.
    pub enforcers: crate::enforce::runner::StatusBoard,
    /// The call policy.
    pub calls: crate::calls::CallsHandle,
    /// The scheduled audit's last result.
    pub audit: tokio::sync::watch::Receiver<crate::audit::schedule::Status>,
}

/// An API error: status and message.
pub struct ApiError(StatusCode, String);

impl ApiError {
    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    let writes = Router::new()
        .route("/v1/sightings", post(report))
        .route("/v1/sightings/{target}", delete(retract))
        .route("/v1/debug/refuse", put(refuse))
        .route("/v1/accounts/{account}/unlock", post(crate::http::calls::unlock))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/check/{target}", get(check))
        .route("/v1/blocklist", get(blocklist))
        .route("/v1/peers", get(peers))
        .route("/v1/decisions", get(crate::http::crowdsec::decisions))
        .route("/v1/decisions/stream", get(crate::http::crowdsec::stream))
        .route("/v1/enforce", get(enforce))
        .route("/v1/calls/authorize", post(crate::http::calls::authorize))
        .route("/v1/calls/check", get(crate::http::calls::check))
        .route("/v1/calls/{call_id}/end", post(crate::http::calls::end))
        .route("/v1/accounts", get(crate::http::calls::accounts))
        .route("/v1/audit", get(audit))
        .route("/api/{key}/banned", get(crate::http::apiban::banned_first))
        .route("/api/{key}/banned/{id}", get(crate::http::apiban::banned))
        .route("/api/{key}/check/{ip}", get(crate::http::apiban::check))
        .route("/metrics", get(metrics))
        .merge(writes)
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Hashes a token for comparison.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

async fn require_token(State(s): State<ApiState>, headers: HeaderMap, req: Request, next: Next) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => ApiError(
            StatusCode::UNAUTHORIZED,
            "missing token: send Authorization: Bearer <token from api.token>".into(),
        )
        .into_response(),
        Some(t) if hash_token(t.trim()) != s.token_hash => {
            ApiError(StatusCode::FORBIDDEN, "wrong token".into()).into_response()
        }
        Some(_) => next.run(req).await,
    }
}

/// A decision as JSON.
#[derive(Serialize)]
struct DecisionJson {
    target: String,
    blocked: bool,
    score: f64,
    reporters: Vec<String>,
    until: Option<u64>,
    allowlisted: bool,
}

fn decision_json(t: &Target, d: &Decision) -> DecisionJson {
    DecisionJson {
        target: t.to_string(),
        blocked: d.blocked,
        score: f64::from(d.score) / 1000.0,
        reporters: engine::peer_ids(&d.reporters),
        until: d.until,
        allowlisted: d.allowlisted,
    }
}

async fn status(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let stats = s.engine.stats().await?;
    let peers = s.net.peers().await?;
    let listen: Vec<String> = s
        .net
        .listen_addrs()
        .iter()
        .map(|a| format!("{a}/p2p/{}", s.peer_id))
        .collect();
    Ok(Json(json!({
        "peer_id": s.peer_id,
        "version": env!("CARGO_PKG_VERSION"),
        "peers": peers.len(),
        "gossip_peers": peers.iter().filter(|p| p.gossip).count(),
        "records": stats.records,
        "blocked": stats.blocked,
        "listen": listen,
        "store_bytes": stats.store_bytes,
        "uptime_s": s.started.elapsed().as_secs(),
    })))
}

/// `GET /v1/enforce`: every enforcer's state.
async fn enforce(State(s): State<ApiState>) -> Json<Value> {
    Json(json!({ "enforcers": s.enforcers.snapshot() }))
}

/// `GET /v1/audit`: the scheduled audit's last result (`state`: off, pending or done).
async fn audit(State(s): State<ApiState>) -> Json<Value> {
    Json(s.audit.borrow().to_json())
}

async fn check(State(s): State<ApiState>, Path(target): Path<String>) -> Result<Json<Value>, ApiError> {
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
    let matches: Vec<DecisionJson> = c.matches.iter().map(|(t, d)| decision_json(t, d)).collect();
    Ok(Json(json!({
        "target": t.to_string(),
        "blocked": c.blocked,
        "reporters": reporters,
        "until": until,
        "matches": matches,
    })))
}

async fn blocklist(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let list = s.engine.list().await?;
    let blocked: Vec<Value> = list
        .iter()
        .map(|l| {
            let mut v = json!(decision_json(&l.target, &l.decision));
            v["since"] = json!(l.since);
            v
        })
        .collect();
    Ok(Json(json!({ "count": blocked.len(), "blocked": blocked })))
}

async fn peers(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "peers": s.net.peers().await? })))
}

async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

/// A TTL as seconds or a duration text such as "1h".
#[derive(Deserialize)]
#[serde(untagged)]
enum Ttl {
    Seconds(u64),
    Text(String),
}

/// `POST /v1/sightings` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    /// One target…
    target: Option<String>,
    /// …or many.
    #[serde(default)]
    targets: Vec<String>,
    kind: Option<String>,
    ttl: Option<Ttl>,
    reason: Option<String>,
    count: Option<u32>,
}

async fn report(State(s): State<ApiState>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let b: ReportBody = serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("bad JSON: {e}")))?;
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
    let out: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "target": r.sighting().target.to_string(),
                "id": hex::encode(r.id()),
                "until": r.sighting().expires_at(),
            })
        })
        .collect();
    Ok((StatusCode::OK, Json(json!({ "accepted": out.len(), "records": out }))).into_response())
}

async fn retract(State(s): State<ApiState>, Path(target): Path<String>) -> Result<Json<Value>, ApiError> {
    let t = Target::parse(&target, s.limits.bounds).map_err(|e| ApiError::bad(e.to_string()))?;
    let draft = engine::retraction(t.clone(), now_ms(), s.limits.max_ttl_s);
    s.engine.report(vec![draft]).await?;
    Ok(Json(json!({ "retracted": t.to_string() })))
}

/// `PUT /v1/debug/refuse` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefuseBody {
    /// Peer ids to refuse; everyone else is accepted again.
    peers: Vec<String>,
}

/// Fault injection for testnets: refuse exactly the given peers (an empty list heals).
async fn refuse(State(s): State<ApiState>, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    if !s.fault_injection {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "fault injection is off: set debug.fault_injection = true in the config".into(),
        ));
    }
    let b: RefuseBody = serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("bad JSON: {e}")))?;
    let mut peers = Vec::with_capacity(b.peers.len());
    for (i, p) in b.peers.iter().enumerate() {
        let id: libp2p::PeerId = p
            .parse()
            .map_err(|e| ApiError::bad(format!("peers[{i}]: {p:?} is not a peer id: {e}")))?;
        peers.push(id);
    }
    let refused = s.net.refuse(peers).await?;
    let refused: Vec<String> = refused.iter().map(ToString::to_string).collect();
    Ok(Json(json!({ "refused": refused })))
}
