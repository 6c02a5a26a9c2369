//! The CrowdSec-compatible decisions API, so existing CrowdSec bouncers (firewall, nginx,
//! Traefik, …) enforce the mesh's list unchanged: point a bouncer's `api_url` at the
//! node's API and give it a key from `fraudmesh bouncers add NAME`.
//!
//! - `GET /v1/decisions/stream?startup=true|false`: `{"new": [...], "deleted": [...]}`.
//!   `startup=true` (or a bouncer the node has not seen since it started) gets every block
//!   in force; later calls get what changed since that bouncer's previous call. Each
//!   bouncer has its own cursor into the decision log.
//! - `GET /v1/decisions?ip=ADDR`: the blocks covering an address (`null` when none);
//!   without `ip`, every block in force.
//!
//! Keys go in the `X-Api-Key` header; a missing or unknown key gets 403. Only address
//! and prefix blocks are decisions here (number blocks are for call policy).

use super::bouncers::Denied;
use super::ApiState;
use crate::now_ms;
use crate::time::rfc3339;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fraudmesh::decisions::{Block, Change, Delta};
use fraudmesh::target::{Bounds, Target};
use fraudmesh::Millis;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The `origin` of every decision.
const ORIGIN: &str = "fraudmesh";
/// The `scenario` of every decision.
const SCENARIO: &str = "fraudmesh/mesh";

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, Json(json!({ "message": "access forbidden" }))).into_response()
}

fn error(status: StatusCode, msg: String) -> Response {
    (status, Json(json!({ "message": msg }))).into_response()
}

/// The bouncer named by the request's `X-Api-Key`.
fn bouncer(s: &ApiState, headers: &HeaderMap) -> Result<String, Denied> {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim);
    s.bouncers.admit(key)
}

/// CrowdSec's answer to a refused bouncer: 403 for a missing or unknown key.
fn refusal(d: Denied) -> Response {
    match d {
        Denied::UnknownKey => forbidden(),
        Denied::Registry(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// A Go-style duration ("3h59m58s"), as CrowdSec writes them.
fn go_duration(ms: u64) -> String {
    let s = ms / 1000;
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

/// A decision object, or `None` for a number block.
fn decision(id: u64, target: &Target, until: Millis, now: Millis) -> Option<Value> {
    let net = target.ip_net()?;
    let scope = if net.prefix_len() == net.max_prefix_len() {
        "Ip"
    } else {
        "Range"
    };
    Some(json!({
        "id": id,
        "origin": ORIGIN,
        "type": "ban",
        "scope": scope,
        "value": target.to_string(),
        "duration": go_duration(until.saturating_sub(now)),
        "until": rfc3339(until),
        "scenario": SCENARIO,
        "simulated": false,
    }))
}

fn active(d: &Block, now: Millis) -> Option<Value> {
    decision(d.id, &d.target, d.until, now)
}

/// `GET /v1/decisions/stream`.
pub async fn stream(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let name = match bouncer(&s, &headers) {
        Ok(n) => n,
        Err(d) => return refusal(d),
    };
    let startup = match q.get("startup").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("startup must be true or false, not {other:?}"),
            )
        }
    };
    let cursor = if startup {
        0
    } else {
        s.streams
            .lock()
            .map(|m| m.get(&name).copied().unwrap_or(0))
            .unwrap_or(0)
    };
    let delta = match s.engine.decisions(cursor).await {
        Ok(d) => d,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    };
    let now = now_ms();
    let head = delta.head();
    let (new, deleted): (Vec<Value>, Vec<Value>) = match delta {
        Delta::Full { active: all, .. } => (all.iter().filter_map(|d| active(d, now)).collect(), Vec::new()),
        Delta::Changes { changes, .. } => {
            let mut new = Vec::new();
            let mut deleted = Vec::new();
            for c in &changes {
                match c {
                    Change::Set(d) => new.extend(active(d, now)),
                    Change::Removed { id, target, .. } => deleted.extend(decision(*id, target, now, now)),
                }
            }
            (new, deleted)
        }
    };
    if let Ok(mut m) = s.streams.lock() {
        m.insert(name, head);
    }
    Json(json!({ "new": new, "deleted": deleted })).into_response()
}

/// `GET /v1/decisions`.
pub async fn decisions(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(d) = bouncer(&s, &headers) {
        return refusal(d);
    }
    let now = now_ms();
    let found: Vec<Block> = match q.get("ip") {
        Some(ip) => {
            let all = Bounds {
                min_v4_len: 0,
                min_v6_len: 0,
            };
            let t = match Target::parse(ip, all) {
                Ok(t) if t.ip_net().is_some() => t,
                _ => return error(StatusCode::BAD_REQUEST, format!("ip {ip:?} is not an address")),
            };
            match s.engine.decisions_for(t).await {
                Ok(d) => d,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
            }
        }
        None => match s.engine.decisions(0).await {
            Ok(Delta::Full { active, .. }) => active,
            Ok(Delta::Changes { .. }) => Vec::new(),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        },
    };
    let list: Vec<Value> = found.iter().filter_map(|d| active(d, now)).collect();
    if list.is_empty() {
        // CrowdSec answers `null` when nothing matches.
        return Json(Value::Null).into_response();
    }
    Json(Value::Array(list)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_go_does() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(59_999), "59s");
        assert_eq!(go_duration(61_000), "1m1s");
        assert_eq!(go_duration(4 * 3600 * 1000 - 2000), "3h59m58s");
    }

    #[test]
    fn decisions_have_the_crowdsec_fields() {
        let t = Target::parse("192.0.2.0/24", Bounds::default()).unwrap();
        let d = decision(7, &t, 1_700_000_060_000, 1_700_000_000_000).unwrap();
        for k in [
            "id", "origin", "type", "scope", "value", "duration", "until", "scenario",
        ] {
            assert!(d.get(k).is_some(), "{k} in {d}");
        }
        assert_eq!(d["scope"], "Range");
        assert_eq!(d["value"], "192.0.2.0/24");
        assert_eq!(d["duration"], "1m0s");
        assert_eq!(d["until"], "2023-11-14T22:14:20Z");
        let host = Target::parse("192.0.2.1", Bounds::default()).unwrap();
        assert_eq!(decision(1, &host, 0, 0).unwrap()["scope"], "Ip");
        let number = Target::parse("+41900", Bounds::default()).unwrap();
        assert!(decision(1, &number, 0, 0).is_none());
    }
}
