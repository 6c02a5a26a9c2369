//! What the testnet asks of a node's HTTP API, through the node's own typed client:
//! exactly the endpoints an operator's tools use (`/v1/status`, `/v1/blocklist`,
//! `/v1/check`, `/v1/peers`, `/metrics`, `POST /v1/sightings`, `POST` and `GET
//! /v1/endorsements`), plus the fault-injection control `PUT /v1/debug/refuse`.

use anyhow::Context;
use fraudmesh_node::http::types::{SightingsRequest, Ttl};
use std::collections::HashMap;

pub use fraudmesh_node::http::client::Client as Api;

/// Blocked targets with since when (Unix ms), from `GET /v1/blocklist`.
pub async fn blocked_since(api: &Api) -> anyhow::Result<HashMap<String, u64>> {
    api.blocklist()
        .await?
        .blocked
        .into_iter()
        .map(|b| {
            let since = b.since.with_context(|| format!("{} without since", b.target))?;
            Ok((b.target, since))
        })
        .collect()
}

/// Connected peer ids, from `GET /v1/peers`.
pub async fn peer_ids(api: &Api) -> anyhow::Result<Vec<String>> {
    Ok(api.peers().await?.peers.into_iter().map(|p| p.peer_id).collect())
}

/// Reports one target seen scanning, for an hour (`POST /v1/sightings`); Ok once the node
/// acknowledged it (stored durably).
pub async fn report_scan(api: &Api, target: &str) -> anyhow::Result<()> {
    let request = SightingsRequest {
        target: Some(target.to_string()),
        kind: Some("scan".to_string()),
        ttl: Some(Ttl::Text("1h".to_string())),
        reason: Some("testnet".to_string()),
        ..Default::default()
    };
    api.report(&request).await.map(drop)
}

/// Publishes one endorsement line through the node (`POST /v1/endorsements`); Ok once the
/// node stored it, an error saying why when it refused it.
pub async fn add_endorsement(api: &Api, line: &str) -> anyhow::Result<()> {
    api.add_endorsement(line).await.map(drop)
}

/// How many endorsement records the node holds (`GET /v1/endorsements`).
pub async fn endorsement_count(api: &Api) -> anyhow::Result<usize> {
    Ok(api.endorsements().await?.endorsements.len())
}
