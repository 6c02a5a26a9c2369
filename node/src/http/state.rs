//! What every handler shares: the state ([`ApiState`]), the refusal type
//! ([`ApiError`], answered as `{"error": "..."}`), the admin token check (writes and the
//! operator's reads), the calls token check (the SIP stack's endpoints) and the `Host`
//! check that keeps web pages out (DNS rebinding).

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
    /// SHA-256 of the calls token (`calls.token`), compared hashed as well.
    pub calls_token_hash: [u8; 32],
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

/// The bearer token of a request, if it sends one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Lets a write (or an operator's read) through only with the admin token (`api.token`):
/// 401 without one, 403 with another.
pub async fn require_token(State(s): State<ApiState>, headers: HeaderMap, req: Request, next: Next) -> Response {
    match bearer(&headers) {
        None => ApiError(
            StatusCode::UNAUTHORIZED,
            "missing token: send Authorization: Bearer <token from api.token>".into(),
        )
        .into_response(),
        Some(t) if hash_secret(t) != s.token_hash => {
            ApiError(StatusCode::FORBIDDEN, "wrong token".into()).into_response()
        }
        Some(_) => next.run(req).await,
    }
}

/// Lets a call authorisation or call end through only with the calls token
/// (`calls.token`): 401 without it or with anything else, the admin token included (the
/// SIP stack needs no admin rights, and an admin tool has no business counting calls).
pub async fn require_calls_token(State(s): State<ApiState>, headers: HeaderMap, req: Request, next: Next) -> Response {
    match bearer(&headers) {
        Some(t) if hash_secret(t) == s.calls_token_hash => next.run(req).await,
        given => {
            let msg = if given.is_none() {
                "missing calls token: send Authorization: Bearer <content of calls.token in the node's directory>"
            } else {
                "wrong calls token: these endpoints take the content of calls.token (not api.token)"
            };
            ApiError(StatusCode::UNAUTHORIZED, msg.into()).into_response()
        }
    }
}

/// Refuses (421) a request whose `Host` names anything but an IP address or `localhost`:
/// a web page whose name an attacker re-points at 127.0.0.1 (DNS rebinding) sends its
/// own name, so a browser cannot be used to reach the API. The configured `node.api` is
/// an IP address, so every client that uses it passes; a request without `Host` (HTTP/1.0
/// tools, never a browser) passes too.
pub async fn require_ip_host(req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().map(str::to_string).unwrap_or_default())
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()));
    match host {
        Some(h) if !host_allowed(&h) => ApiError(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "Host {:?} is not this node: use its IP address (e.g. 127.0.0.1:7711) or localhost; \
                 other names are refused so that web pages cannot reach the API",
                printable(&h, 100)
            ),
        )
        .into_response(),
        _ => next.run(req).await,
    }
}

/// Whether a `Host` value (`NAME[:PORT]`, `[V6][:PORT]`) is an IP literal or localhost.
pub fn host_allowed(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || port.strip_prefix(':').is_some_and(valid_port) => {
                return v6.parse::<std::net::Ipv6Addr>().is_ok();
            }
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

fn valid_port(p: &str) -> bool {
    p.parse::<u16>().is_ok()
}

/// `s` for a log line or an error message: control characters escaped, at most `max`
/// bytes (cut at a character boundary, `…` appended when cut).
pub fn printable(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let piece: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        if out.len() + piece.len() > max {
            out.push('…');
            break;
        }
        out.push_str(&piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ip_literals_and_localhost_are_hosts() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:7711",
            "10.1.2.3:80",
            "[::1]:7711",
            "[::1]",
            "localhost",
            "LOCALHOST:7711",
        ] {
            assert!(host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7711",
            "127.0.0.1.nip.io",
            "localhost.evil.example",
            "127.0.0.1:notaport",
            "[::1]x",
            "[::1]7711",
            "[evil]:80",
            "::1",
            "",
            "0x7f000001",
        ] {
            assert!(!host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn printable_escapes_and_truncates() {
        assert_eq!(printable("a\u{0}b\nc", 100), "a\\u{0}b\\nc");
        assert_eq!(printable(&"x".repeat(300), 10), format!("{}…", "x".repeat(10)));
        assert_eq!(printable("äöü", 3), "ä…");
    }
}
