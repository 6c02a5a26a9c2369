//! A client of one node's HTTP API: sends requests (writes with the token) and turns
//! refusals into clear errors. The CLI finds the node through its directory
//! (`cli::connect`); the testnet knows the address it started the node on.

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

/// How long one request may take.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A client of one node's API.
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
        Ok(Self {
            base: format!("http://{api}"),
            token,
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .context("building the HTTP client")?,
            hints: Hints::default(),
        })
    }

    /// The same client, with these hints in its error messages.
    pub fn with_hints(mut self, hints: Hints) -> Self {
        self.hints = hints;
        self
    }

    /// GET a JSON document.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    /// POST a JSON body (with the token).
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let req = self.http.post(format!("{}{path}", self.base)).json(body);
        self.send(self.authed(req)?).await
    }

    /// DELETE (with the token).
    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let req = self.http.delete(format!("{}{path}", self.base));
        self.send(self.authed(req)?).await
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::RequestBuilder> {
        let token = self.token.as_ref().ok_or_else(|| match &self.hints.no_token {
            Some(hint) => anyhow!("{hint}"),
            None => anyhow!("no API token"),
        })?;
        Ok(req.bearer_auth(token))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                match &self.hints.not_running {
                    Some(hint) => anyhow!("no node is running at {} ({hint})", self.base),
                    None => anyhow!("no node is running at {}", self.base),
                }
            } else {
                anyhow!("talking to the node at {}: {e}", self.base)
            }
        })?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .context("the node answered something that is not JSON")?;
        if !status.is_success() {
            let msg = body.get("error").and_then(Value::as_str).unwrap_or("request refused");
            bail!("{msg} (HTTP {})", status.as_u16());
        }
        Ok(body)
    }
}
