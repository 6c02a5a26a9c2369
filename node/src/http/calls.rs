//! The HTTP side of call authorisation: what the SIP stack asks before each outgoing call
//! (`POST /v1/calls/authorize`) and tells when a call ends (`POST /v1/calls/{call_id}/end`),
//! both with the calls token; and what operators look at and do with the admin token
//! (`GET /v1/calls/check`, `GET /v1/accounts`, `POST /v1/accounts/{account}/unlock`).
//!
//! When the node cannot decide (the policy stopped, storage failed, no answer within
//! [`DECIDE_TIMEOUT`]) the answer follows `calls.on_error`: `allow` (fail open) or `deny`
//! (fail closed), with rule `node-error`, so a SIP stack only ever parses one shape.

use super::state::printable;
use super::types::{Accounts, CallAnswer, CallEnded, Unlocked};
use super::{ApiError, ApiState};
use crate::calls::OnError;
use crate::metrics::ReasonLabel;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use fraudmesh::calls::policy::{CallDecision, CallRequest};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Longest the API waits for a decision before answering per `on_error`.
pub const DECIDE_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest account name accepted.
const MAX_ACCOUNT: usize = 256;
/// Longest call id kept as it is; longer ones are hashed.
const MAX_CALL_ID: usize = 128;
/// Longest text of a field in a log line.
const LOGGED: usize = 128;

/// `POST /v1/calls/authorize` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeBody {
    /// The calling account.
    pub account: String,
    /// The number dialled.
    pub to: String,
    /// The caller id, if sent (logged only).
    #[serde(default)]
    pub from: Option<String>,
    /// The caller's address, if sent (logged only).
    #[serde(default)]
    pub source_ip: Option<String>,
    /// The SIP Call-ID, if sent.
    #[serde(default)]
    pub call_id: Option<String>,
}

/// `POST /v1/calls/{call_id}/end` body (other fields are ignored: an end is never refused
/// for what it adds).
#[derive(Debug, Deserialize)]
struct EndBody {
    account: String,
}

/// Reads a request body as JSON when it looks like JSON, whatever the Content-Type says
/// (`curl -d '{…}'` labels JSON as a form), else as a form when labelled so or not empty
/// (`account=1001&to=…`, what Asterisk's `CURL()` and FreeSWITCH's `curl` send). Anything
/// else is a 400.
pub fn parse_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let labelled_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !json && (labelled_form || !body.is_empty()) {
        serde_urlencoded::from_bytes(body).map_err(|e| ApiError::bad(format!("bad form body: {e}")))
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("bad JSON: {e}")))
    }
}

/// The calling account: the one field a decision cannot do without, so the only one
/// refused (400, which every shipped snippet treats as a deny).
pub fn account(v: &str) -> Result<(), ApiError> {
    if v.trim().is_empty() {
        return Err(ApiError::bad("account: the calling account is needed"));
    }
    if v.len() > MAX_ACCOUNT {
        return Err(ApiError::bad(format!("account: at most {MAX_ACCOUNT} bytes")));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiError::bad("account: control characters are not allowed"));
    }
    Ok(())
}

/// A call id as kept: itself when short and printable, else `sha256:<hex>` of it (the
/// same at the call's start and end, so an odd Call-ID never makes a call skip the
/// rules or stay in progress).
pub fn call_id(v: &str) -> String {
    if v.len() <= MAX_CALL_ID && !v.chars().any(char::is_control) {
        v.to_string()
    } else {
        format!("sha256:{}", hex::encode(Sha256::digest(v.as_bytes())))
    }
}

fn answer(d: &CallDecision) -> CallAnswer {
    CallAnswer {
        allow: d.allow,
        rule: d.rule.to_string(),
        reason: d.reason.clone(),
        e164: d.e164.clone(),
        account_locked: d.locked_now || d.rule == "locked",
    }
}

fn failed(on_error: OnError, why: String) -> CallAnswer {
    tracing::error!(error = %why, ?on_error, "call authorisation could not decide");
    let setting = if on_error == OnError::Allow { "allow" } else { "deny" };
    CallAnswer {
        allow: on_error == OnError::Allow,
        rule: "node-error".to_string(),
        reason: format!("the node could not decide ({why}); calls.on_error = {setting}"),
        e164: None,
        account_locked: false,
    }
}

async fn decide(s: &ApiState, req: CallRequest, count: bool) -> CallAnswer {
    let (reason, why) = match tokio::time::timeout(DECIDE_TIMEOUT, s.calls.authorize(req, count)).await {
        Ok(Ok(d)) => return answer(&d),
        Ok(Err(e)) => ("error", format!("{e:#}")),
        Err(_) => ("timeout", format!("no answer within {DECIDE_TIMEOUT:?}")),
    };
    s.metrics.call_fallbacks.get_or_create(&ReasonLabel { reason }).inc();
    failed(s.calls.on_error, why)
}

/// `POST /v1/calls/authorize` (calls token): `{"account","from","to","source_ip","call_id"}`
/// → `{"allow","rule","reason","e164","account_locked"}`; an allowed call is counted.
///
/// The body may also be form-encoded (`account=1001&to=0900123456&call_id=…`). Only a
/// bad `account` or an unreadable body is refused (400); the optional fields never stop a
/// decision: an odd `call_id` is hashed ([`call_id`]), `from` is only logged (escaped
/// and cut), a `source_ip` that is not an address is ignored, and a `to` that is not a
/// number is denied by rule `invalid-number`.
pub async fn authorize(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<CallAnswer>, ApiError> {
    let b: AuthorizeBody = parse_body(&headers, &body)?;
    account(&b.account)?;
    let source_ip = b.source_ip.as_deref().and_then(|ip| match ip.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            tracing::debug!(source_ip = %printable(ip, LOGGED), "call authorisation: source_ip is not an address; ignored");
            None
        }
    });
    let req = CallRequest {
        account: b.account,
        to: b.to,
        call_id: call_id(b.call_id.as_deref().unwrap_or_default()),
    };
    let v = decide(&s, req.clone(), true).await;
    if !v.allow {
        tracing::info!(account = %printable(&req.account, LOGGED), to = %printable(&req.to, LOGGED),
            from = %printable(b.from.as_deref().unwrap_or_default(), LOGGED), source_ip = ?source_ip,
            call_id = %printable(&req.call_id, LOGGED), rule = %v.rule, "call denied");
    } else if v.rule != "allowed" {
        // Emergency and always-allowed calls pass every rule: worth a line of their own.
        tracing::info!(account = %printable(&req.account, LOGGED), to = %printable(&req.to, LOGGED),
            source_ip = ?source_ip, rule = %v.rule, "call passed without rules");
    }
    Ok(Json(v))
}

/// `GET /v1/calls/check?account=A&to=N` (admin token): the decision, explained, not
/// counted.
pub async fn check(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<CallAnswer>, ApiError> {
    let (Some(account), Some(to)) = (q.get("account"), q.get("to")) else {
        return Err(ApiError::bad("give account and to, e.g. ?account=1001&to=0900123456"));
    };
    self::account(account)?;
    let req = CallRequest {
        account: account.clone(),
        to: to.clone(),
        call_id: String::new(),
    };
    Ok(Json(decide(&s, req, false).await))
}

/// `POST /v1/calls/{call_id}/end` (calls token), with the account in the body as for
/// authorisation (`account=1001` or `{"account": "1001"}`): `{"call_id","ended","account"}`.
/// Only the account that started a call ends it: `ended` is false for anyone else's.
pub async fn end(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<CallEnded>, ApiError> {
    let b: EndBody = parse_body(&headers, &body)?;
    account(&b.account)?;
    let id = call_id(&id);
    let ended = s.calls.end(b.account.clone(), id.clone()).await?;
    Ok(Json(CallEnded {
        call_id: id,
        ended,
        account: b.account,
    }))
}

/// `GET /v1/accounts` (admin token).
pub async fn accounts(State(s): State<ApiState>) -> Result<Json<Accounts>, ApiError> {
    Ok(Json(Accounts {
        accounts: s.calls.accounts().await?,
    }))
}

/// `POST /v1/accounts/{account}/unlock` (token).
pub async fn unlock(State(s): State<ApiState>, Path(account): Path<String>) -> Result<Json<Unlocked>, ApiError> {
    self::account(&account)?;
    let unlocked = s.calls.unlock(account.clone()).await?;
    Ok(Json(Unlocked { account, unlocked }))
}
