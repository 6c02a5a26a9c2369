//! The testnet's client of a node's HTTP API: exactly the endpoints an operator's tools
//! use (`/v1/status`, `/v1/blocklist`, `/v1/check`, `/metrics`, `POST /v1/sightings`),
//! plus the fault-injection control `PUT /v1/debug/refuse`.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::collections::HashMap;

/// One node's API.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// A client of the API at `addr` (HOST:PORT) with the node's token.
    pub fn new(http: reqwest::Client, addr: String, token: String) -> Self {
        Self {
            http,
            base: format!("http://{addr}"),
            token,
        }
    }

    async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.with_context(|| format!("GET {path}: reading JSON"))?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {body}");
        }
        Ok(body)
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .with_context(|| format!("{method} {path}: reading JSON"))?;
        if !status.is_success() {
            bail!("{method} {path}: {status}: {body}");
        }
        Ok(body)
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> anyhow::Result<Value> {
        self.get_json("/v1/status").await
    }

    /// `GET /v1/check/{target}`.
    pub async fn check(&self, target: &str) -> anyhow::Result<Value> {
        self.get_json(&format!("/v1/check/{target}")).await
    }

    /// Blocked targets with since when (Unix ms), from `GET /v1/blocklist`.
    pub async fn blocked_since(&self) -> anyhow::Result<HashMap<String, u64>> {
        let v = self.get_json("/v1/blocklist").await?;
        let list = v["blocked"].as_array().context("blocklist without \"blocked\"")?;
        list.iter()
            .map(|e| {
                let t = e["target"].as_str().context("entry without target")?;
                let since = e["since"].as_u64().context("entry without since")?;
                Ok((t.to_string(), since))
            })
            .collect()
    }

    /// Connected peer ids, from `GET /v1/peers`.
    pub async fn peers(&self) -> anyhow::Result<Vec<String>> {
        let v = self.get_json("/v1/peers").await?;
        let list = v["peers"].as_array().context("peers without \"peers\"")?;
        Ok(list
            .iter()
            .filter_map(|p| p["peer_id"].as_str().map(str::to_string))
            .collect())
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let resp = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .context("GET /metrics")?;
        resp.error_for_status()?.text().await.context("GET /metrics: reading")
    }

    /// Reports one target (`POST /v1/sightings`); Ok once the node acknowledged it
    /// (stored durably).
    pub async fn report(&self, target: &str, kind: &str) -> anyhow::Result<()> {
        self.send(
            reqwest::Method::POST,
            "/v1/sightings",
            json!({ "target": target, "kind": kind, "ttl": "1h", "reason": "testnet" }),
        )
        .await
        .map(drop)
    }

    /// Refuses exactly `peers` (`PUT /v1/debug/refuse`); an empty list heals.
    pub async fn refuse(&self, peers: &[String]) -> anyhow::Result<()> {
        self.send(reqwest::Method::PUT, "/v1/debug/refuse", json!({ "peers": peers }))
            .await
            .map(drop)
    }
}

/// Sum of the values of every sample line of `/metrics` text starting with `prefix`
/// (a metric name, optionally with the opening of its labels).
pub fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_matching_samples_only() {
        let text = "# HELP x\nfraudmesh_gossip_messages_total{verdict=\"accept\"} 5\n\
                    fraudmesh_gossip_messages_total{verdict=\"reject\"} 2\nfraudmesh_peers 3\n";
        assert_eq!(metric_sum(text, "fraudmesh_gossip_messages_total"), 7.0);
        assert_eq!(
            metric_sum(text, "fraudmesh_gossip_messages_total{verdict=\"reject\"}"),
            2.0
        );
        assert_eq!(metric_sum(text, "fraudmesh_nothing"), 0.0);
    }
}
