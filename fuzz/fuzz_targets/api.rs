//! `api`: the bodies of `POST /v1/calls/authorize` (JSON or form, read by the node's
//! `http::calls::parse_body` into `AuthorizeBody`, then `account` and `call_id`, then the
//! call policy) and `POST /v1/sightings` (JSON into `SightingsRequest`, then the kind, TTL
//! and `Target::parse` of each target, as `http::mesh::report` does before signing).
//!
//! Input: the first byte picks the endpoint (bit 0) and whether the request is labelled
//! `application/x-www-form-urlencoded` (bit 1); the rest is the body.
//!
//! Properties: a body reads the same whatever its Content-Type says (JSON is recognised
//! by its `{`, so `curl -d` works; a non-empty form is a form); a kept call id is at most
//! 128 bytes of printable text or `sha256:` and 64 hex digits, the same for the same
//! input; every accepted target prints in a canonical form that parses back to itself;
//! nothing panics.
#![no_main]

use axum::http::{header, HeaderMap, HeaderValue};
use fraudmesh::calls::number::region;
use fraudmesh::calls::policy::{CallPolicy, CallRequest, CallRules};
use fraudmesh::sighting::{AcceptLimits, Kind};
use fraudmesh::target::Target;
use fraudmesh_node::http::calls::{account, call_id, parse_body, AuthorizeBody};
use fraudmesh_node::http::types::{SightingsRequest, Ttl};
use fraudmesh_node::http::ApiError;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;

fn headers(form: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    let v = if form {
        "application/x-www-form-urlencoded"
    } else {
        "application/json"
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
    h
}

fn authorize(body: &[u8], form: bool) {
    let parsed = parse_body::<AuthorizeBody>(&headers(form), body);
    let other = parse_body::<AuthorizeBody>(&headers(!form), body);
    if !body.is_empty() {
        let shown = |r: &Result<AuthorizeBody, ApiError>| match r {
            Ok(b) => format!("{b:?}"),
            Err(e) => e.1.clone(),
        };
        assert_eq!(
            shown(&parsed),
            shown(&other),
            "the Content-Type changed how a non-empty body reads"
        );
    }
    let Ok(b) = parsed else {
        return;
    };
    if account(&b.account).is_err() {
        return;
    }
    let raw = b.call_id.as_deref().unwrap_or_default();
    let id = call_id(raw);
    assert_eq!(id, call_id(raw));
    if id.starts_with("sha256:") && id != raw {
        assert_eq!(id.len(), 7 + 64);
    } else {
        assert_eq!(id, raw);
        assert!(
            id.len() <= 128 && !id.chars().any(char::is_control),
            "{id:?} kept as it is"
        );
    }
    let mut policy = CallPolicy::new(CallRules::new(region("CH").expect("known region")));
    let req = CallRequest {
        account: b.account,
        to: b.to,
        call_id: id,
    };
    let d = policy.authorize(&req, &BTreeSet::new(), 1_800_000_000_000);
    assert!(!d.rule.is_empty());
}

fn sightings(body: &[u8]) {
    let Ok(b) = serde_json::from_slice::<SightingsRequest>(body) else {
        return;
    };
    if let Some(k) = b.kind.as_deref() {
        let _ = k.parse::<Kind>();
    }
    if let Some(Ttl::Text(t)) = &b.ttl {
        let _ = humantime::parse_duration(t);
    }
    let bounds = AcceptLimits::default().bounds;
    for t in b.targets.iter().chain(&b.target) {
        if let Ok(target) = Target::parse(t, bounds) {
            let printed = target.to_string();
            let again = Target::parse(&printed, bounds)
                .unwrap_or_else(|e| panic!("{t:?} printed as {printed:?}, which does not parse: {e}"));
            assert_eq!(again, target, "{t:?} printed as {printed:?}");
            let proto = target.to_proto();
            assert_eq!(Target::from_proto(&proto, bounds).ok(), Some(target));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        authorize(body, mode & 2 != 0);
    } else {
        sightings(body);
    }
});
