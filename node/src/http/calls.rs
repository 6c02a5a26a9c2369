//! The HTTP side of call authorisation: what the SIP stack asks before each outgoing call
//! (`POST /v1/calls/authorize`), tells when a call ends (`POST /v1/calls/{call_id}/end`),
//! and what operators look at and do (`GET /v1/calls/check`, `GET /v1/accounts`,
//! `POST /v1/accounts/{account}/unlock` with the token).
//!
//! When the node cannot decide (the policy stopped, storage failed, no answer within
//! [`DECIDE_TIMEOUT`]) the answer follows `calls.on_error`: `allow` (fail open) or `deny`
//! (fail closed), with rule `node-error`, so a SIP stack only ever parses one shape.

use super::types::{Accounts, CallAnswer, CallEnded, Unlocked};
use super::{ApiError, ApiState};
use crate::calls::OnError;
use crate::metrics::ReasonLabel;
use axum::extract::{Path, Query, State};
use axum::Json;
use fraudmesh::calls::policy::{CallDecision, CallRequest};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// Longest the API waits for a decision before answering per `on_error`.
pub const DECIDE_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest account name, call id or number accepted.
const MAX_FIELD: usize = 256;

/// `POST /v1/calls/authorize` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizeBody {
    account: String,
    to: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    source_ip: Option<String>,
    #[serde(default)]
    call_id: Option<String>,
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

fn field(name: &str, v: &str) -> Result<(), ApiError> {
    if v.len() > MAX_FIELD {
        return Err(ApiError::bad(format!("{name}: at most {MAX_FIELD} bytes")));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiError::bad(format!("{name}: control characters are not allowed")));
    }
    Ok(())
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

/// `POST /v1/calls/authorize`: `{"account","from","to","source_ip","call_id"}` →
/// `{"allow","rule","reason","e164","account_locked"}`; an allowed call is counted.
///
/// The body may also be form-encoded (`account=1001&to=0900123456&call_id=…`), which is
/// what Asterisk's `CURL()` and FreeSWITCH's `curl` send without any quoting trouble.
pub async fn authorize(
    State(s): State<ApiState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<CallAnswer>, ApiError> {
    // JSON when it looks like JSON, whatever the Content-Type says (`curl -d '{…}'` labels
    // JSON as a form); a form when labelled so or when it does not start with `{`.
    let json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let labelled_form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let b: AuthorizeBody = if !json && (labelled_form || !body.is_empty()) {
        serde_urlencoded::from_bytes(&body).map_err(|e| ApiError::bad(format!("bad form body: {e}")))?
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("bad JSON: {e}")))?
    };
    field("account", &b.account)?;
    field("to", &b.to)?;
    if b.account.trim().is_empty() {
        return Err(ApiError::bad("account: the calling account is needed"));
    }
    for (name, v) in [("from", &b.from), ("source_ip", &b.source_ip), ("call_id", &b.call_id)] {
        if let Some(v) = v {
            field(name, v)?;
        }
    }
    if let Some(ip) = &b.source_ip {
        ip.parse::<std::net::IpAddr>()
            .map_err(|_| ApiError::bad(format!("source_ip: {ip:?} is not an address")))?;
    }
    let req = CallRequest {
        account: b.account,
        to: b.to,
        call_id: b.call_id.unwrap_or_default(),
    };
    let v = decide(&s, req.clone(), true).await;
    if !v.allow {
        tracing::info!(account = %req.account, to = %req.to, from = ?b.from, source_ip = ?b.source_ip,
            rule = %v.rule, "call denied");
    }
    Ok(Json(v))
}

/// `GET /v1/calls/check?account=A&to=N`: the decision, explained, not counted.
pub async fn check(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<CallAnswer>, ApiError> {
    let (Some(account), Some(to)) = (q.get("account"), q.get("to")) else {
        return Err(ApiError::bad("give account and to, e.g. ?account=1001&to=0900123456"));
    };
    field("account", account)?;
    field("to", to)?;
    let req = CallRequest {
        account: account.clone(),
        to: to.clone(),
        call_id: String::new(),
    };
    Ok(Json(decide(&s, req, false).await))
}

/// `POST /v1/calls/{call_id}/end` with the account in the body (`account=NAME` or
/// `{"account": "NAME"}`): `{"call_id","ended","account"}`; only the account that started
/// a call ends it.
pub async fn end(
    State(s): State<ApiState>,
    Path(call_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<CallEnded>, ApiError> {
    #[derive(Deserialize)]
    struct EndBody {
        account: String,
    }
    field("call_id", &call_id)?;
    let b: EndBody = if body.trim_ascii_start().starts_with(b"{") {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("bad JSON: {e}")))?
    } else {
        serde_urlencoded::from_bytes(&body).map_err(|e| ApiError::bad(format!("bad form body: {e}")))?
    };
    field("account", &b.account)?;
    let ended = s.calls.end(b.account.clone(), call_id.clone()).await?;
    Ok(Json(CallEnded {
        call_id,
        ended,
        account: Some(b.account),
    }))
}

/// `GET /v1/accounts`.
pub async fn accounts(State(s): State<ApiState>) -> Result<Json<Accounts>, ApiError> {
    Ok(Json(Accounts {
        accounts: s.calls.accounts().await?,
    }))
}

/// `POST /v1/accounts/{account}/unlock` (token).
pub async fn unlock(State(s): State<ApiState>, Path(account): Path<String>) -> Result<Json<Unlocked>, ApiError> {
    field("account", &account)?;
    let unlocked = s.calls.unlock(account.clone()).await?;
    Ok(Json(Unlocked { account, unlocked }))
}
