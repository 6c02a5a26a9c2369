//! A client of one node's HTTP API: one method per endpoint, answers read into the
//! documents of [`types`](super::types), writes and the operator's reads sent with the
//! admin token (a request that needs it fails before anything is sent when the client
//! has none), refusals turned into clear errors. The CLI finds the node through its directory; the testnet knows the
//! address it started each node on.

use super::types::{
    Accounts, AllowAnswer, AllowRequest, Allows, Blocklist, CallAnswer, CheckAnswer, EndorsementAdded,
    EndorsementRequest, Endorsements, Enforcers, ErrorBody, Explanation, NodeStatus, Peers, RefuseRequest, Refused,
    Retracted, SightingsAnswer, SightingsRequest, Unallowed, Unlocked,
};
use anyhow::{anyhow, bail, Context};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How long one request may take.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A client of one node's API (cheap to clone: clones share one connection pool).
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    hints: Hints,
}

/// What error messages tell the user to do.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    /// Said when no node answers, e.g. how to start it.
    pub not_running: Option<String>,
    /// Said when a write has no token, e.g. where the token file should be.
    pub no_token: Option<String>,
}

impl Client {
    /// A client of the API at `api` (`HOST:PORT`), writing with `token` when given.
    pub fn new(api: &str, token: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Self::with_http(api, token, http))
    }

    /// A client of the API at `api` sending through `http` (e.g. one pool with its own
    /// timeout shared by many clients).
    pub fn with_http(api: &str, token: Option<String>, http: reqwest::Client) -> Self {
        Self {
            base: format!("http://{api}"),
            token,
            http,
            hints: Hints::default(),
        }
    }

    /// The same client, with these hints in its error messages.
    pub fn with_hints(mut self, hints: Hints) -> Self {
        self.hints = hints;
        self
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> anyhow::Result<NodeStatus> {
        self.get("/v1/status").await
    }

    /// `GET /v1/check/{target}`.
    pub async fn check(&self, target: &str) -> anyhow::Result<CheckAnswer> {
        self.get(&format!("/v1/check/{}", encode(target))).await
    }

    /// `GET /v1/blocklist`.
    pub async fn blocklist(&self) -> anyhow::Result<Blocklist> {
        self.get("/v1/blocklist").await
    }

    /// `GET /v1/peers`.
    pub async fn peers(&self) -> anyhow::Result<Peers> {
        self.get("/v1/peers").await
    }

    /// `GET /v1/enforce`.
    pub async fn enforcers(&self) -> anyhow::Result<Enforcers> {
        self.get("/v1/enforce").await
    }

    /// `GET /v1/calls/check?account=A&to=N` (token).
    pub async fn call_check(&self, account: &str, to: &str) -> anyhow::Result<CallAnswer> {
        let query = serde_urlencoded::to_string([("account", account), ("to", to)]).context("encoding the query")?;
        self.get_authed(&format!("/v1/calls/check?{query}")).await
    }

    /// `GET /v1/accounts` (token).
    pub async fn accounts(&self) -> anyhow::Result<Accounts> {
        self.get_authed("/v1/accounts").await
    }

    /// `GET /v1/audit` (token): the scheduled audit's last result.
    pub async fn audit(&self) -> anyhow::Result<serde_json::Value> {
        self.get_authed("/v1/audit").await
    }

    /// `POST /v1/accounts/{account}/unlock` (token).
    pub async fn unlock(&self, account: &str) -> anyhow::Result<Unlocked> {
        let path = format!("/v1/accounts/{}/unlock", encode(account));
        self.write(Method::POST, &path, &serde_json::json!({})).await
    }

    /// `POST /v1/sightings` (token); answers once the records are stored durably.
    pub async fn report(&self, request: &SightingsRequest) -> anyhow::Result<SightingsAnswer> {
        self.write(Method::POST, "/v1/sightings", request).await
    }

    /// `DELETE /v1/sightings/{target}` (token).
    pub async fn retract(&self, target: &str) -> anyhow::Result<Retracted> {
        let req = self.http.delete(self.url(&format!("/v1/sightings/{}", encode(target))));
        self.send(self.authed(req)?).await
    }

    /// `POST /v1/endorsements` (token): publishes one signed line; answers once it is
    /// stored durably, or says why the node refused it.
    pub async fn add_endorsement(&self, line: &str) -> anyhow::Result<EndorsementAdded> {
        let body = EndorsementRequest { line: line.to_string() };
        self.write(Method::POST, "/v1/endorsements", &body).await
    }

    /// `GET /v1/endorsements`.
    pub async fn endorsements(&self) -> anyhow::Result<Endorsements> {
        self.get("/v1/endorsements").await
    }

    /// `GET /v1/explain/{target}`.
    pub async fn explain(&self, target: &str) -> anyhow::Result<Explanation> {
        self.get(&format!("/v1/explain/{}", encode(target))).await
    }

    /// `POST /v1/allow` (token).
    pub async fn allow(&self, request: &AllowRequest) -> anyhow::Result<AllowAnswer> {
        self.write(Method::POST, "/v1/allow", request).await
    }

    /// `DELETE /v1/allow/{target}` (token).
    pub async fn unallow(&self, target: &str) -> anyhow::Result<Unallowed> {
        let req = self.http.delete(self.url(&format!("/v1/allow/{}", encode(target))));
        self.send(self.authed(req)?).await
    }

    /// `GET /v1/allow`.
    pub async fn allows(&self) -> anyhow::Result<Allows> {
        self.get("/v1/allow").await
    }

    /// `PUT /v1/debug/refuse` (token): refuses exactly `peers`; an empty list heals.
    pub async fn refuse(&self, peers: &[String]) -> anyhow::Result<Refused> {
        let body = RefuseRequest { peers: peers.to_vec() };
        self.write(Method::PUT, "/v1/debug/refuse", &body).await
    }

    /// `GET /metrics` as OpenMetrics text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let resp = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        if !status.is_success() {
            bail!("GET /metrics: HTTP {}", status.as_u16());
        }
        resp.text().await.context("GET /metrics: reading the answer")
    }

    /// GET a JSON document of any type, without the token.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.get(self.url(path))).await
    }

    /// GET a JSON document of any type with the token (the operator's reads: accounts,
    /// call checks, the audit).
    pub async fn get_authed<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.authed(self.http.get(self.url(path)))?).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn write<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let req = self.http.request(method, self.url(path)).json(body);
        self.send(self.authed(req)?).await
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::RequestBuilder> {
        let token = self.token.as_ref().ok_or_else(|| match &self.hints.no_token {
            Some(hint) => anyhow!("{hint}"),
            None => anyhow!("no API token"),
        })?;
        Ok(req.bearer_auth(token))
    }

    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        if e.is_connect() {
            match &self.hints.not_running {
                Some(hint) => anyhow!("no node is running at {} ({hint})", self.base),
                None => anyhow!("no node is running at {}", self.base),
            }
        } else {
            anyhow!("talking to the node at {}: {e}", self.base)
        }
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.error)
                .unwrap_or_else(|_| "request refused".to_string());
            bail!("{msg} (HTTP {})", status.as_u16());
        }
        serde_json::from_slice(&body).context("the node answered something this client does not understand")
    }
}

/// Percent-encodes a path segment (prefixes contain '/', IPv6 addresses ':').
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode("192.0.2.0/24"), "192.0.2.0%2F24");
        assert_eq!(encode("2001:db8::1"), "2001%3Adb8%3A%3A1");
        assert_eq!(encode("+41900"), "%2B41900");
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}
