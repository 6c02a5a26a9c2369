//! Trust and the operator's say over it: endorsements (publish a signed line, list what
//! the node holds), `explain` (why a target is or is not blocked, record by record) and
//! local overrides (`allow`: never block a target here, whatever the mesh says).

use super::state::{printable, ApiError, ApiState};
use super::types::{
    AllowAnswer, AllowRequest, AllowView, Allows, EndorsementAdded, EndorsementRequest, EndorsementView, Endorsements,
    EvidenceView, ExplainedRecord, Explanation, Ttl, Unallowed,
};
use crate::engine::{AllowError, EndorseError, EndorsementInfo, Explained, TargetExplained};
use crate::now_ms;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use fraudmesh::endorsement::{self, EndorsementKind, EndorsementRecord, MAX_LINE_CHARS};
use fraudmesh::policy::{Allow, Via, Weight};
use fraudmesh::target::Target;
use std::time::Duration;

/// Longest reason of an override, bytes.
pub const MAX_REASON_BYTES: usize = 200;
/// Longest override, seconds (a year; longer is "until removed", i.e. no ttl).
pub const MAX_ALLOW_TTL_S: u64 = 366 * 86_400;

/// A weight in thousandths as the config writes it (1000 → 1.0).
pub fn decimal(w: Weight) -> f64 {
    f64::from(w) / 1000.0
}

/// A record as the API shows it, with its organisation's name on this node if known.
pub fn endorsement_view(rec: &EndorsementRecord, active: bool, org_name: Option<String>) -> EndorsementView {
    let e = rec.endorsement();
    EndorsementView {
        id: hex::encode(rec.id()),
        org: e.org.peer_id(),
        org_name,
        member: e.member.peer_id(),
        kind: match e.kind {
            EndorsementKind::Endorse => "endorse",
            EndorsementKind::Revoke => "revoke",
        }
        .to_string(),
        name: e.name.clone(),
        issued_at_ms: e.issued_at,
        expires_at_ms: e.expires_at,
        active,
    }
}

/// `POST /v1/endorsements` (token): verifies one line, then stores, merges and publishes
/// it. A malformed, oversized, forged or expired line, an organisation this node does not
/// trust, or a revocation by another key than the endorsement's: 400, nothing changed.
pub async fn add(State(s): State<ApiState>, body: axum::body::Bytes) -> Result<Json<EndorsementAdded>, ApiError> {
    let b: EndorsementRequest = serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("bad JSON: {e}")))?;
    let line = b.line.trim();
    if line.chars().count() > MAX_LINE_CHARS {
        return Err(ApiError::bad(format!(
            "the line is {} characters long; an endorsement line is at most {MAX_LINE_CHARS}",
            line.chars().count()
        )));
    }
    let skew = s.limits.max_future_skew_ms;
    let rec = endorsement::parse_line(line, now_ms(), skew)
        .map_err(|e| ApiError::bad(format!("endorsement line {:?}: {e}", printable(line, 60))))?;
    let done = s.engine.endorse(vec![rec.clone()]).await.map_err(endorse_error)?;
    let changed = done.first().is_some_and(|d| d.changed);
    // Active if it is an unexpired endorsement and the newest of its (org, member).
    let held = s.engine.endorsements().await?;
    let active = held.iter().any(|i| i.active && i.record.id() == rec.id());
    let org_name = held
        .into_iter()
        .find(|i| i.record.endorsement().org == rec.endorsement().org)
        .map(|i| i.org_name);
    Ok(Json(EndorsementAdded {
        endorsement: endorsement_view(&rec, active, org_name),
        changed,
    }))
}

/// The engine's refusal of an endorsement as a 400 naming why; the node's own trouble as
/// a 503.
fn endorse_error(e: EndorseError) -> ApiError {
    if e.is_bad_input() {
        ApiError::bad(e.to_string())
    } else {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

/// The engine's refusal of an override as a 400 naming why; the node's own trouble as a
/// 503.
fn allow_error(e: AllowError) -> ApiError {
    if e.is_bad_input() {
        ApiError::bad(e.to_string())
    } else {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

/// `GET /v1/endorsements`: every endorsement and revocation this node holds.
pub async fn list(State(s): State<ApiState>) -> Result<Json<Endorsements>, ApiError> {
    let all: Vec<EndorsementInfo> = s.engine.endorsements().await?;
    let endorsements = all
        .iter()
        .map(|i| endorsement_view(&i.record, i.active, Some(i.org_name.clone())))
        .collect();
    Ok(Json(Endorsements { endorsements }))
}

/// `GET /v1/explain/{target}`.
pub async fn explain(State(s): State<ApiState>, Path(target): Path<String>) -> Result<Json<Explanation>, ApiError> {
    let t = Target::parse(&target, s.limits.bounds).map_err(|e| ApiError::bad(e.to_string()))?;
    let x = s.engine.explain(t.clone()).await?;
    Ok(Json(explanation(&t, &x)))
}

/// The engine's explanation as the API shows it: the target asked about first, then
/// the records of every broader prefix covering it (each record names its own target).
pub fn explanation(target: &Target, x: &Explained) -> Explanation {
    let own = x.targets.iter().find(|t| t.target == *target).or(x.targets.first());
    let records = x.targets.iter().flat_map(records_of).collect();
    let blocking: Vec<&TargetExplained> = x.targets.iter().filter(|t| t.explanation.verdict.blocked).collect();
    let until = blocking.iter().filter_map(|t| t.explanation.verdict.until).max();
    let allowed = x
        .targets
        .iter()
        .find_map(|t| t.explanation.allowed.as_ref())
        .map(|(t, a)| allow_view(t, a));
    let why = match (own, blocking.first()) {
        (Some(o), _) if o.explanation.verdict.blocked => o.explanation.why.clone(),
        (_, Some(b)) => format!("blocked through the prefix {}: {}", b.target, b.explanation.why),
        (Some(o), None) => o.explanation.why.clone(),
        (None, None) => "no records on it".to_string(),
    };
    let verdict = own.map(|o| &o.explanation);
    Explanation {
        target: target.to_string(),
        blocked: x.blocked,
        score: verdict.map_or(0.0, |e| decimal(e.verdict.score)),
        threshold: verdict.map_or(0.0, |e| decimal(e.threshold)),
        stranger_score: verdict.map_or(0.0, |e| decimal(e.verdict.stranger_score)),
        allowlisted: x.targets.iter().any(|t| t.explanation.verdict.allowlisted),
        allowed,
        until,
        why,
        records,
    }
}

/// One target's records as the API shows them.
fn records_of(t: &TargetExplained) -> Vec<ExplainedRecord> {
    t.explanation
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let w = &r.weighed;
            let (via, name, org, org_name) = match &w.via {
                Via::Local => ("self", None, None, None),
                Via::Peer => ("peer", None, None, None),
                Via::Org {
                    org,
                    org_name,
                    member_name,
                    ..
                } => (
                    "org",
                    Some(member_name.clone()),
                    Some(org.peer_id()),
                    Some(org_name.clone()),
                ),
                Via::Stranger => ("stranger", None, None, None),
            };
            let evidence = t.evidence.get(i).and_then(Option::as_ref);
            ExplainedRecord {
                target: t.target.to_string(),
                reporter: r.reporter.peer_id(),
                name,
                trusted_via: via.to_string(),
                org,
                org_name,
                weight: decimal(w.weight),
                configured_weight: decimal(w.configured),
                reputation: decimal(w.reputation),
                kind: r.kind.as_str().to_string(),
                count: r.count,
                evidence: evidence
                    .map(|ev| EvidenceView {
                        method: ev.method.clone(),
                        user_agent: ev.user_agent.clone(),
                        reason: ev.reason.clone(),
                        usernames: ev.usernames.clone(),
                    })
                    .unwrap_or_default(),
                observed_at_ms: r.observed_at,
                expires_at_ms: r.expires_at,
                counted: r.counted,
                reason: r.reason.to_string(),
            }
        })
        .collect()
}

/// An override as the API shows it.
pub fn allow_view(target: &Target, a: &Allow) -> AllowView {
    AllowView {
        target: target.to_string(),
        reason: a.reason.clone(),
        at: a.at,
        until: a.until,
    }
}

/// `POST /v1/allow` (token): a local override, stored durably before the answer.
pub async fn allow(State(s): State<ApiState>, body: axum::body::Bytes) -> Result<Json<AllowAnswer>, ApiError> {
    let b: AllowRequest = serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("bad JSON: {e}")))?;
    let target = allow_target(&b.target)?;
    let reason = b.reason.trim().to_string();
    if reason.is_empty() || reason.len() > MAX_REASON_BYTES || reason.chars().any(char::is_control) {
        return Err(ApiError::bad(format!(
            "reason: say why in 1 to {MAX_REASON_BYTES} bytes without control characters"
        )));
    }
    let now = now_ms();
    let until = match b.ttl {
        None => None,
        Some(ttl) => Some(now.saturating_add(allow_ttl_s(&ttl)?.saturating_mul(1000))),
    };
    let done = s
        .engine
        .allow(target.clone(), until, reason.clone())
        .await
        .map_err(allow_error)?;
    // The override as the engine keeps it (its own clock stamped `at`).
    let kept = s.engine.allows().await?.into_iter().find(|(t, _)| *t == target);
    let allow = match kept {
        Some((t, a)) => allow_view(&t, &a),
        None => AllowView {
            target: target.to_string(),
            reason,
            at: now,
            until,
        },
    };
    Ok(Json(AllowAnswer {
        allow,
        penalised: done.penalised.iter().map(|k| k.peer_id()).collect(),
    }))
}

/// A target to override: any syntax `check` takes; breadth is not bounded (allowing a
/// broad prefix blocks nothing).
fn allow_target(text: &str) -> Result<Target, ApiError> {
    let wide = fraudmesh::target::Bounds {
        min_v4_len: 0,
        min_v6_len: 0,
    };
    Target::parse(text, wide).map_err(|e| ApiError::bad(format!("target: {e}")))
}

/// An override's ttl in seconds: 1 s to [`MAX_ALLOW_TTL_S`].
fn allow_ttl_s(ttl: &Ttl) -> Result<u64, ApiError> {
    let s = match ttl {
        Ttl::Seconds(n) => *n,
        Ttl::Text(t) => {
            let d: Duration = humantime::parse_duration(t.trim())
                .map_err(|e| ApiError::bad(format!("ttl {t:?}: not a duration such as 7d or 12h ({e})")))?;
            d.as_secs()
        }
    };
    if s == 0 || s > MAX_ALLOW_TTL_S {
        return Err(ApiError::bad(format!(
            "ttl must be between 1s and {}d (leave it out for an override until removed)",
            MAX_ALLOW_TTL_S / 86_400
        )));
    }
    Ok(s)
}

/// `DELETE /v1/allow/{target}` (token).
pub async fn unallow(State(s): State<ApiState>, Path(target): Path<String>) -> Result<Json<Unallowed>, ApiError> {
    let t = allow_target(&target)?;
    let removed = s.engine.unallow(t.clone()).await?;
    if !removed {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{t} has no override (fraudmesh allow --list shows them)"),
        ));
    }
    Ok(Json(Unallowed {
        target: t.to_string(),
        removed,
    }))
}

/// `GET /v1/allow`: every override in force.
pub async fn allows(State(s): State<ApiState>) -> Result<Json<Allows>, ApiError> {
    let all = s.engine.allows().await?;
    Ok(Json(Allows {
        allows: all.iter().map(|(t, a)| allow_view(t, a)).collect(),
    }))
}
