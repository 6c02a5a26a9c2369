//! The CLI's side of the API: finds the running node through the directory (`node.json`,
//! else the config's API address), sends the request with the token, and turns refusals
//! into clear errors.

use crate::dir::NodeDir;
use crate::run::load_config;
use anyhow::{anyhow, bail, Context};
use serde_json::Value;

/// A client for one node directory.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    dir: NodeDir,
}

impl Client {
    /// Locates the node's API.
    pub fn new(dir: &NodeDir) -> anyhow::Result<Self> {
        let api = match dir.read_runtime().filter(|rt| pid_alive(rt.pid)) {
            Some(rt) => rt.api,
            None => load_config(dir)?.node.api,
        };
        Ok(Self {
            base: format!("http://{api}"),
            token: dir.load_token().ok(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(120))
                .build()?,
            dir: dir.clone(),
        })
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
        let token = self
            .token
            .as_ref()
            .ok_or_else(|| anyhow!("no API token at {}", self.dir.token().display()))?;
        Ok(req.bearer_auth(token))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow!(
                    "no node is running at {} (start it with: fraudmesh --dir {} run)",
                    self.base,
                    self.dir.root().display()
                )
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

/// Whether a process with this pid exists.
pub fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
