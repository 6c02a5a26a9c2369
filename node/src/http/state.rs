//! What every handler shares: the state ([`ApiState`]), the refusal type
//! ([`ApiError`], answered as `{"error": "..."}`), and the token check on writes.

use super::bouncers::Bouncers;
use super::types::ErrorBody;
use crate::audit::schedule::AuditStatus;
use crate::calls::CallsHandle;
use crate::enforce::runner::StatusBoard;
use crate::engine::EngineHandle;
use crate::metrics::Metrics;
use crate::net::NetHandle;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fraudmesh::sighting::AcceptLimits;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    pub limits: AcceptLimits,
    /// TTL of reports that give none, seconds.
    pub default_ttl_s: u32,
    /// This node's peer id.
    pub peer_id: String,
    /// Start time, for uptime.
    pub started: Instant,
    /// Whether `PUT /v1/debug/refuse` works (config `debug.fault_injection`).
    pub fault_injection: bool,
    /// CrowdSec bouncer keys (`DIR/bouncers.json`).
    pub bouncers: Bouncers,
    /// Each bouncer's cursor into the decision log (its stream state).
    pub streams: Arc<Mutex<HashMap<String, u64>>>,
    /// Every enforcer's state.
    pub enforcers: StatusBoard,
    /// The call policy.
    pub calls: CallsHandle,
    /// The scheduled audit's last result.
    pub audit: tokio::sync::watch::Receiver<AuditStatus>,
}

/// An API error: status and message.
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    /// 400 with this message.
    pub fn bad(msg: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

/// SHA-256 of a secret (the API token, a bouncer key): secrets are kept and compared
/// hashed, so neither a file nor a comparison's timing gives one away.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Lets a write through only with the right bearer token.
pub async fn require_token(State(s): State<ApiState>, headers: HeaderMap, req: Request, next: Next) -> Response {
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
        Some(t) if hash_secret(t.trim()) != s.token_hash => {
            ApiError(StatusCode::FORBIDDEN, "wrong token".into()).into_response()
        }
        Some(_) => next.run(req).await,
    }
}
