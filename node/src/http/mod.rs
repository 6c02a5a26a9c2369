//! The local HTTP API (JSON) and `/metrics`. Bound to 127.0.0.1 by default. Every write,
//! and the operator's reads of accounts, call checks and the audit, need
//! `Authorization: Bearer <token>` with the token from `api.token`; the SIP stack's call
//! authorisation and call ends need the token from `calls.token` instead. A request whose
//! `Host` is not an IP address or `localhost` is refused (no DNS rebinding from a web page).
//!
//! Every request that is refused changes nothing and says why in `{"error": "..."}`.
//!
//! - [`state`]: what handlers share, refusals, the token check;
//! - [`types`]: the request and answer documents, shared with the CLI and the testnet;
//! - [`mesh`]: status, check, blocklist, peers, sightings, metrics;
//! - [`calls`]: call authorisation and accounts;
//! - [`trust`]: endorsements, explain and local overrides (`allow`);
//! - [`crowdsec`], [`apiban`]: the CrowdSec- and APIBAN-compatible lists, keyed by
//!   [`bouncers`];
//! - [`client`]: a client of all of the above.

pub mod apiban;
pub mod bouncers;
pub mod calls;
pub mod client;
pub mod crowdsec;
pub mod mesh;
pub mod state;
pub mod trust;
pub mod types;

pub use state::{hash_secret, ApiError, ApiState};

use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{delete, get, post, put};
use axum::Router;

/// Largest request body.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    let admin = Router::new()
        .route("/v1/sightings", post(mesh::report))
        .route("/v1/sightings/{target}", delete(mesh::retract))
        .route("/v1/debug/refuse", put(mesh::refuse))
        .route("/v1/accounts/{account}/unlock", post(calls::unlock))
        .route("/v1/calls/check", get(calls::check))
        .route("/v1/accounts", get(calls::accounts))
        .route("/v1/audit", get(mesh::audit))
        .route("/v1/endorsements", post(trust::add))
        .route("/v1/allow", post(trust::allow))
        .route("/v1/allow/{target}", delete(trust::unallow))
        .route_layer(middleware::from_fn_with_state(state.clone(), state::require_token));
    let sip = Router::new()
        .route("/v1/calls/authorize", post(calls::authorize))
        .route("/v1/calls/{call_id}/end", post(calls::end))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            state::require_calls_token,
        ));
    Router::new()
        .route("/v1/status", get(mesh::status))
        .route("/v1/check/{target}", get(mesh::check))
        .route("/v1/blocklist", get(mesh::blocklist))
        .route("/v1/peers", get(mesh::peers))
        .route("/v1/decisions", get(crowdsec::decisions))
        .route("/v1/decisions/stream", get(crowdsec::stream))
        .route("/v1/enforce", get(mesh::enforce))
        .route("/v1/endorsements", get(trust::list))
        .route("/v1/explain/{target}", get(trust::explain))
        .route("/v1/allow", get(trust::allows))
        .route("/api/{key}/banned", get(apiban::banned_first))
        .route("/api/{key}/banned/{id}", get(apiban::banned))
        .route("/api/{key}/check/{ip}", get(apiban::check))
        .route("/metrics", get(mesh::metrics))
        .merge(admin)
        .merge(sip)
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(state::require_ip_host))
        .with_state(state)
}
