//! The Kamailio enforcer: blocked addresses as entries of a Kamailio `htable` (default
//! `ipban`, the table the stock kamailio.cfg checks and pike fills), written over
//! Kamailio's JSON-RPC over HTTP (modules `xhttp` + `jsonrpcs`). The routing script
//! drops requests whose source is in the table (`if ($sht(ipban=>$si) != $null) exit;`);
//! `scripts/kamailio/fraudmesh.cfg` is a documented fragment that sets it all up.
//!
//! What it sends (verified against Kamailio 5.6):
//! - `htable.setxi TABLE ADDRESS 2 SECONDS` per blocked address: an integer value
//!   ([`MARK`], 2; pike's entries carry 1) and the seconds the block has left as the
//!   item's own expiry. Parameters must be JSON numbers (a string "2" is stored as 0).
//!   Kamailio honours a per-item expiry only when the table has `autoexpire` set (any
//!   value); with `autoexpire=0` it keeps items forever, so when the table says so this
//!   enforcer deletes entries itself as they end. An expiry of 0 would mean "the table's
//!   default", so every entry gets at least 1 s, and at most ten years.
//! - `htable.delete TABLE ADDRESS` when a block is lifted early. Kamailio answers 404
//!   "Key not found in htable." for a key that is not there: that counts as done.
//! - A full replace sets every address and deletes the addresses this enforcer set
//!   before that are no longer listed (it remembers them; on the node's first one it
//!   reads the table with `htable.dump` to find the entries with value 2 an earlier run
//!   left). It never flushes the table: pike's entries and the operator's own stay.
//!   Then it sets a marker key (`fraudmesh:synced`, never a source address) meaning
//!   "the full list is in".
//! - `core.uptime` and `htable.get TABLE fraudmesh:synced` every few seconds: a new
//!   `up_since` (Kamailio restarted: its tables live in memory) or a missing marker (the
//!   table was flushed) makes the runner write the whole list again. An unreachable
//!   Kamailio is an error: the runner retries with backoff and writes the whole list
//!   once it answers.
//! - Requests go over a few kept-alive connections, [`IN_FLIGHT`] at a time (jsonrpcs
//!   takes no batches: it answers an array with an empty result).
//!
//! Only single addresses are written: htable keys are exact strings compared with `$si`,
//! so a prefix cannot match. Prefix blocks are skipped (logged once); enforce them with a
//! firewall enforcer. IPv6 keys are written in the compressed form Kamailio gives `$si`.
//!
//! `fraudmesh enforce --remove` runs in a fresh process that knows nothing of what the
//! node set, so [`Enforcer::remove`] dumps the table and deletes every entry whose value
//! is [`MARK`] (plus any key it set itself): pike's entries (value 1) and others stay.
//! Give no other entry of the table the value 2. An address pike banned that the node
//! blocks too takes the node's value and expiry, so lifting the node's block lifts
//! pike's as well. Dumping a large table needs room in Kamailio: about 90 bytes of answer
//! per entry queued on the connection (`tcp_conn_wq_max`, raised in the fragment) and
//! about 64 MB of private memory (`-M`) per 100k entries; a dump that fails makes
//! `--remove` fail (the node's first full replace only warns, and entries an earlier run
//! left then stay until they expire).

use super::{Enforcer, NetBlock, Removed};
use anyhow::{anyhow, bail, Context};
use fraudmesh::Millis;
use futures::stream::{self, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The value of every entry this enforcer writes (pike's carry 1). `$sht(T=>$si) !=
/// $null` holds for any value; `enforce --remove` deletes the entries carrying this one.
pub const MARK: i64 = 2;
/// The key set after a complete full replace; its absence means the table lost it.
pub const SYNCED_KEY: &str = "fraudmesh:synced";
/// Requests in flight at once (each on its own kept-alive connection).
pub const IN_FLIGHT: usize = 8;
/// The shortest time allowed for `htable.dump`.
const DUMP_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest expiry written, seconds (ten years; Kamailio takes a 32-bit int).
const MAX_EXPIRE_S: u64 = 315_360_000;

/// `[enforce.kamailio]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KamailioConfig {
    /// The JSON-RPC endpoint (`xhttp` + `jsonrpcs`). Default
    /// `http://127.0.0.1:5071/RPC`, the listener of `scripts/kamailio/fraudmesh.cfg`.
    #[serde(default = "default_url")]
    pub url: String,
    /// The htable to write. Default `ipban`.
    #[serde(default = "default_htable")]
    pub htable: String,
    /// The longest one request may take. Default 5s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_url() -> String {
    "http://127.0.0.1:5071/RPC".into()
}

fn default_htable() -> String {
    "ipban".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for KamailioConfig {
    fn default() -> Self {
        Self {
            url: default_url(),
            htable: default_htable(),
            timeout: default_timeout(),
        }
    }
}

impl KamailioConfig {
    /// Checks the settings; errors start with `key`.
    pub fn validate(&self, key: &str) -> anyhow::Result<()> {
        let url = reqwest::Url::parse(&self.url).with_context(|| format!("{key}.url: {:?} is not a URL", self.url))?;
        if url.scheme() != "http" {
            bail!(
                "{key}.url: only http:// is supported (got {}://): keep Kamailio's RPC listener on localhost or a private network",
                url.scheme()
            );
        }
        if url.host_str().is_none_or(str::is_empty) {
            bail!("{key}.url: {:?} names no host", self.url);
        }
        let name_ok = !self.htable.is_empty()
            && self.htable.len() <= 64
            && self.htable.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            bail!("{key}.htable: 1 to 64 letters, digits or '_', got {:?}", self.htable);
        }
        if self.timeout.is_zero() {
            bail!("{key}.timeout: must be more than 0s");
        }
        Ok(())
    }
}

/// A JSON-RPC answer: a result, or Kamailio's error.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Ok(Value),
    Err { code: i64, message: String },
}

/// One JSON-RPC request body.
fn request(method: &str, params: Value, id: u64) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id})
}

/// Parses a jsonrpcs answer (its HTTP status mirrors the error code, so the body is
/// what counts).
fn parse_reply(body: &[u8]) -> anyhow::Result<Reply> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        anyhow!("not a JSON-RPC answer ({e}): {text:?}")
    })?;
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow!("not a JSON-RPC answer (not an object): {v}"))?;
    if let Some(err) = obj.get("error") {
        return Ok(Reply::Err {
            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
                .to_string(),
        });
    }
    match obj.get("result") {
        Some(r) => Ok(Reply::Ok(r.clone())),
        None => bail!("not a JSON-RPC answer (neither result nor error): {v}"),
    }
}

/// Keys in an `htable.dump` result whose value is the integer `mark`.
fn marked_keys(dump: &Value, mark: i64) -> Vec<String> {
    let slots = dump.as_array().into_iter().flatten();
    slots
        .filter_map(|s| s.get("slot")?.as_array())
        .flatten()
        .filter(|item| item.get("value").and_then(Value::as_i64) == Some(mark))
        .filter_map(|item| Some(item.get("name")?.as_str()?.to_string()))
        .collect()
}

/// One table write.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    /// `htable.setxi`: the key, with this expiry (seconds).
    Set(String, u64),
    /// `htable.delete`.
    Delete(String),
}

/// Writes the list into a Kamailio htable.
pub struct KamailioEnforcer {
    config: KamailioConfig,
    http: Option<reqwest::Client>,
    next_id: AtomicU64,
    /// Addresses this enforcer set and has not deleted since (a superset while a write
    /// is under way).
    set: HashSet<IpAddr>,
    /// Kamailio's start time as of the last full replace.
    up_since: Option<String>,
    /// Whether the table expires items by itself (`autoexpire` set); `None` until
    /// the first full replace looked.
    table_expires: Option<bool>,
    /// Whether skipping prefixes was logged.
    told_prefixes: bool,
    /// Whether the entries an earlier run left were looked for (first full replace).
    adopted: bool,
}

impl KamailioEnforcer {
    /// An enforcer for a validated `[enforce.kamailio]`.
    pub fn new(config: KamailioConfig) -> Self {
        Self {
            config,
            http: None,
            next_id: AtomicU64::new(1),
            set: HashSet::new(),
            up_since: None,
            table_expires: None,
            told_prefixes: false,
            adopted: false,
        }
    }

    fn client(&mut self) -> anyhow::Result<reqwest::Client> {
        if let Some(c) = &self.http {
            return Ok(c.clone());
        }
        let c = reqwest::Client::builder()
            .timeout(self.config.timeout)
            .connect_timeout(self.config.timeout)
            .pool_max_idle_per_host(IN_FLIGHT)
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .context("building the HTTP client")?;
        self.http = Some(c.clone());
        Ok(c)
    }

    /// One JSON-RPC call; transport failures and unreadable answers are errors,
    /// Kamailio's own errors come back as [`Reply::Err`].
    async fn call(&self, http: &reqwest::Client, method: &str, params: Value) -> anyhow::Result<Reply> {
        let body = request(method, params, self.next_id.fetch_add(1, Ordering::Relaxed));
        let url = &self.config.url;
        // A dump of a large table takes Kamailio a while to build and send.
        let timeout = if method == "htable.dump" {
            self.config.timeout.max(DUMP_TIMEOUT)
        } else {
            self.config.timeout
        };
        let resp = http
            .post(url)
            .timeout(timeout)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("Kamailio RPC {method} at {url}"))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("reading Kamailio's answer to {method} at {url}"))?;
        parse_reply(&bytes).with_context(|| format!("Kamailio RPC {method} at {url} (HTTP {status})"))
    }

    /// A call that must succeed.
    async fn call_ok(&self, http: &reqwest::Client, method: &str, params: Value) -> anyhow::Result<Value> {
        match self.call(http, method, params).await? {
            Reply::Ok(v) => Ok(v),
            Reply::Err { code, message } => Err(self.rpc_error(method, code, &message)),
        }
    }

    fn rpc_error(&self, method: &str, code: i64, message: &str) -> anyhow::Error {
        let hint = if message.contains("No such htable") {
            format!(
                ": define the htable {:?} in kamailio.cfg (see scripts/kamailio/fraudmesh.cfg)",
                self.config.htable
            )
        } else {
            String::new()
        };
        anyhow!(
            "Kamailio RPC {method} at {}: error {code} {message:?}{hint}",
            self.config.url
        )
    }

    /// Performs one write.
    async fn op(&self, http: &reqwest::Client, op: Op) -> anyhow::Result<()> {
        let table = &self.config.htable;
        match op {
            Op::Set(key, expire) => {
                let params = json!([table, key, MARK, expire.clamp(1, MAX_EXPIRE_S)]);
                self.call_ok(http, "htable.setxi", params)
                    .await
                    .with_context(|| format!("setting {key}"))?;
            }
            Op::Delete(key) => match self.call(http, "htable.delete", json!([table, key])).await? {
                Reply::Ok(_) => {}
                // Not there (expired, flushed, never set): what we wanted.
                Reply::Err { code: 404, .. } => {}
                Reply::Err { code, message } => {
                    return Err(self.rpc_error("htable.delete", code, &message))
                        .with_context(|| format!("deleting {key}"))
                }
            },
        }
        Ok(())
    }

    /// Performs writes, [`IN_FLIGHT`] at a time; stops at the first failure.
    async fn run(&mut self, ops: Vec<Op>) -> anyhow::Result<()> {
        let http = self.client()?;
        let this = &*self;
        stream::iter(ops.into_iter().map(Ok))
            .try_for_each_concurrent(IN_FLIGHT, |op| {
                let http = &http;
                async move { this.op(http, op).await }
            })
            .await
    }

    /// Kamailio's start time (`core.uptime`'s `up_since`).
    async fn up_since(&mut self) -> anyhow::Result<String> {
        let http = self.client()?;
        let r = self.call_ok(&http, "core.uptime", json!([])).await?;
        r.get("up_since")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("core.uptime at {}: no up_since in {r}", self.config.url))
    }

    /// Checks that the table exists; learns whether it expires items itself.
    async fn check_table(&mut self) -> anyhow::Result<()> {
        let http = self.client()?;
        let tables = self.call_ok(&http, "htable.listTables", json!([])).await?;
        let name = &self.config.htable;
        let t = tables
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
            .ok_or_else(|| {
                anyhow!(
                    "Kamailio at {} has no htable {name:?}: define it in kamailio.cfg (see scripts/kamailio/fraudmesh.cfg)",
                    self.config.url
                )
            })?;
        let expires = t.get("expire").and_then(Value::as_i64).unwrap_or(0) > 0;
        if !expires && self.table_expires != Some(false) {
            tracing::warn!(
                htable = %name,
                "Kamailio's htable has no autoexpire, so it ignores per-entry expiry: entries are deleted as blocks end; set autoexpire (see scripts/kamailio/fraudmesh.cfg)"
            );
        }
        self.table_expires = Some(expires);
        Ok(())
    }

    /// Adds the addresses an earlier run of the node left in the table (value [`MARK`])
    /// to what this enforcer set, so the first full replace deletes those no longer
    /// listed. A table too large to dump is no error: such entries then stay until they
    /// expire.
    async fn adopt(&mut self) {
        let http = match self.client() {
            Ok(h) => h,
            Err(_) => return,
        };
        match self.call_ok(&http, "htable.dump", json!([self.config.htable])).await {
            Ok(dump) => {
                let earlier = marked_keys(&dump, MARK)
                    .into_iter()
                    .filter_map(|k| k.parse::<IpAddr>().ok());
                self.set.extend(earlier);
                self.adopted = true;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not read Kamailio's htable: entries an earlier run set and no longer listed stay until they expire");
                self.adopted = true;
            }
        }
    }

    /// Hosts as keys with their expiry; prefixes are skipped (and said so once).
    fn hosts(&mut self, entries: &[NetBlock], now: Millis) -> Vec<(IpAddr, u64)> {
        let hosts: Vec<(IpAddr, u64)> = entries
            .iter()
            .filter(|e| e.is_host())
            .map(|e| (e.net.addr(), e.remaining_s(now)))
            .collect();
        let prefixes = entries.len() - hosts.len();
        if prefixes > 0 && !self.told_prefixes {
            self.told_prefixes = true;
            tracing::warn!(
                prefixes,
                "Kamailio htable keys match single addresses only: prefix blocks are not written to Kamailio (enforce them in a firewall)"
            );
        }
        hosts
    }
}

impl Enforcer for KamailioEnforcer {
    fn name(&self) -> String {
        "kamailio".into()
    }

    async fn replace(&mut self, entries: &[NetBlock], now: Millis) -> anyhow::Result<()> {
        // Noted before writing: a restart during the writes shows up at the next check.
        let up_since = self.up_since().await?;
        self.check_table().await?;
        if !self.adopted {
            self.adopt().await;
        }
        let hosts = self.hosts(entries, now);
        let listed: HashSet<IpAddr> = hosts.iter().map(|(a, _)| *a).collect();
        let mut ops: Vec<Op> = hosts.iter().map(|(a, s)| Op::Set(a.to_string(), *s)).collect();
        ops.extend(self.set.difference(&listed).map(|a| Op::Delete(a.to_string())));
        self.set.extend(listed.iter().copied());
        self.run(ops).await?;
        self.set = listed;
        self.run(vec![Op::Set(SYNCED_KEY.into(), MAX_EXPIRE_S)]).await?;
        self.up_since = Some(up_since);
        Ok(())
    }

    async fn apply(&mut self, set: &[NetBlock], removed: &[Removed], now: Millis) -> anyhow::Result<()> {
        let hosts = self.hosts(set, now);
        let mut ops: Vec<Op> = hosts.iter().map(|(a, s)| Op::Set(a.to_string(), *s)).collect();
        let mut gone = Vec::new();
        for r in removed.iter().filter(|r| r.net.prefix_len() == r.net.max_prefix_len()) {
            let addr = r.net.addr();
            // An expired entry is gone from a table with autoexpire (its expiry was set
            // rounded up, so it ends with the block); otherwise delete it now.
            if !r.expired || self.table_expires != Some(true) {
                ops.push(Op::Delete(addr.to_string()));
            }
            gone.push(addr);
        }
        self.set.extend(hosts.iter().map(|(a, _)| *a));
        self.run(ops).await?;
        for a in gone {
            self.set.remove(&a);
        }
        Ok(())
    }

    /// True when Kamailio restarted since the last full replace, or the marker key is
    /// gone (the table was flushed).
    async fn lost_state(&mut self) -> anyhow::Result<bool> {
        let up_since = self.up_since().await?;
        if self.up_since.as_deref() != Some(up_since.as_str()) {
            tracing::info!(up_since = %up_since, "Kamailio restarted");
            return Ok(true);
        }
        let http = self.client()?;
        let params = json!([self.config.htable, SYNCED_KEY]);
        match self.call(&http, "htable.get", params).await? {
            Reply::Ok(_) => Ok(false),
            Reply::Err { message, .. } => {
                tracing::info!(htable = %self.config.htable, answer = %message, "Kamailio's htable lost fraudmesh's entries");
                Ok(true)
            }
        }
    }

    /// Deletes every entry carrying [`MARK`] (found with `htable.dump`) and every
    /// address this enforcer set.
    async fn remove(&mut self) -> anyhow::Result<()> {
        let http = self.client()?;
        let dump = self
            .call_ok(&http, "htable.dump", json!([self.config.htable]))
            .await
            .context("reading the table (a large one needs tcp_conn_wq_max and private memory, -M, in Kamailio: see scripts/kamailio/fraudmesh.cfg)")?;
        let mut keys: HashSet<String> = marked_keys(&dump, MARK).into_iter().collect();
        keys.extend(self.set.iter().map(IpAddr::to_string));
        let ops = keys.into_iter().map(Op::Delete).collect();
        self.run(ops).await?;
        self.set.clear();
        self.up_since = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_numbers_not_strings() {
        let r = request("htable.setxi", json!(["ipban", "192.0.2.1", MARK, 30]), 7);
        assert_eq!(
            r.to_string(),
            r#"{"id":7,"jsonrpc":"2.0","method":"htable.setxi","params":["ipban","192.0.2.1",2,30]}"#
        );
    }

    #[test]
    fn replies_parse_into_results_and_errors() {
        let ok = br#"{"jsonrpc": "2.0", "result": "Ok. Key set to new value.", "id": 2}"#;
        assert_eq!(parse_reply(ok).unwrap(), Reply::Ok(json!("Ok. Key set to new value.")));
        // Kamailio 5.6's answer to deleting a missing key (with HTTP status 404).
        let missing = br#"{"jsonrpc":"2.0","error":{"code":404,"message":"Key not found in htable."},"id":5}"#;
        assert_eq!(
            parse_reply(missing).unwrap(),
            Reply::Err {
                code: 404,
                message: "Key not found in htable.".into()
            }
        );
        let no_table = br#"{"jsonrpc":"2.0","error":{"code":500,"message":"No such htable"},"id":6}"#;
        assert!(matches!(parse_reply(no_table).unwrap(), Reply::Err { code: 500, .. }));
        // What jsonrpcs answers to a batch, and to garbage.
        for bad in [&br#"{"jsonrpc":"2.0","result":{}}"#[..], b"[1]", b"<html>", b""] {
            let r = parse_reply(bad);
            if bad.starts_with(b"{") {
                assert!(r.is_ok());
            } else {
                assert!(r.is_err(), "{:?}", String::from_utf8_lossy(bad));
            }
        }
        let err = format!("{:#}", parse_reply(b"{\"id\":1}").unwrap_err());
        assert!(err.contains("neither result nor error"), "{err}");
    }

    #[test]
    fn deleting_a_missing_key_is_success_and_other_errors_name_the_table() {
        let e = KamailioEnforcer::new(KamailioConfig::default());
        let err = format!("{:#}", e.rpc_error("htable.setxi", 500, "No such htable"));
        assert!(err.contains("\"ipban\"") && err.contains("fraudmesh.cfg"), "{err}");
        let err = format!("{:#}", e.rpc_error("htable.delete", 500, "boom"));
        assert!(
            err.contains("500") && err.contains("boom") && err.contains("127.0.0.1:5071"),
            "{err}"
        );
    }

    /// The requests a fake Kamailio received (JSON-RPC bodies).
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

    /// A tiny HTTP server answering like Kamailio: deletes of missing keys get 404. Returns
    /// its address, the requests it receives, and the table's autoexpire as
    /// htable.listTables reports it (300 until changed).
    async fn fake_kamailio() -> (std::net::SocketAddr, Seen, std::sync::Arc<std::sync::atomic::AtomicI64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Seen::default();
        let log = seen.clone();
        let autoexpire = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(300));
        let expire = autoexpire.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                let expire = expire.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        let n = match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() < head_end + 4 + len {
                            continue;
                        }
                        let body: Value = serde_json::from_slice(&buf[head_end + 4..head_end + 4 + len]).unwrap();
                        buf.drain(..head_end + 4 + len);
                        let answer = match body["method"].as_str().unwrap() {
                            "core.uptime" => json!({"result": {"up_since": "Wed Nov 25 09:45:10 2026"}}),
                            "htable.listTables" => {
                                json!({"result": [{"name": "ipban", "expire": expire.load(Ordering::Relaxed)}]})
                            }
                            "htable.delete" => json!({"error": {"code": 404, "message": "Key not found in htable."}}),
                            "htable.dump" => json!({"result": [
                                {"entry": 1, "size": 2, "slot": [
                                    {"name": "192.0.2.9", "value": 1, "type": "int"},
                                    {"name": "192.0.2.8", "value": 2, "type": "int"}]},
                                {"entry": 4, "size": 1, "slot": [{"name": "x", "value": "2", "type": "str"}]}]}),
                            _ => json!({"result": "Ok. Key set to new value."}),
                        };
                        log.lock().unwrap().push(body);
                        let text = answer.to_string();
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                            text.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, seen, autoexpire)
    }

    #[tokio::test]
    async fn answers_from_a_fake_kamailio_drive_the_writes() {
        // One scenario, kept whole (about 85 lines): each step starts from what the one
        // before left in the fake table.
        let (addr, seen, autoexpire) = fake_kamailio().await;
        let mut e = KamailioEnforcer::new(KamailioConfig {
            url: format!("http://{addr}/RPC"),
            ..KamailioConfig::default()
        });
        let entry = |n: &str| NetBlock {
            net: n.parse().unwrap(),
            until: 10_500,
        };
        let calls = |seen: &Seen, method: &str| -> Vec<Value> {
            let mut all = seen.lock().unwrap();
            let (hit, keep): (Vec<Value>, Vec<Value>) = all.drain(..).partition(|b| b["method"] == method);
            *all = keep;
            let mut v: Vec<Value> = hit.into_iter().map(|b| b["params"].clone()).collect();
            v.sort_by_key(|p| p.to_string());
            v
        };
        e.replace(
            &[
                entry("192.0.2.1/32"),
                entry("2001:db8::/48"),
                entry("2001:db8:0:0:1::5/128"),
            ],
            0,
        )
        .await
        .unwrap();
        assert_eq!(
            calls(&seen, "htable.setxi"),
            vec![
                json!(["ipban", "192.0.2.1", 2, 11]),
                json!(["ipban", "2001:db8::1:0:0:5", 2, 11]),
                json!(["ipban", "fraudmesh:synced", 2, MAX_EXPIRE_S]),
            ],
            "hosts only, with their expiry, then the marker"
        );
        assert_eq!(e.table_expires, Some(true));
        assert_eq!(
            calls(&seen, "htable.delete"),
            vec![json!(["ipban", "192.0.2.8"])],
            "an entry an earlier run left (value 2) and no longer listed is deleted; pike's (1) stays"
        );
        assert!(!e.lost_state().await.unwrap(), "same start time, marker present");

        // A replace without 192.0.2.1 deletes it; a missing key is no error.
        e.replace(&[entry("192.0.2.2/32")], 0).await.unwrap();
        assert_eq!(
            calls(&seen, "htable.delete"),
            vec![json!(["ipban", "192.0.2.1"]), json!(["ipban", "2001:db8::1:0:0:5"])]
        );
        // Expired removals need nothing in a table with autoexpire; lifted ones are deleted.
        let removed = [
            Removed {
                net: "192.0.2.2/32".parse().unwrap(),
                expired: true,
            },
            Removed {
                net: "192.0.2.3/32".parse().unwrap(),
                expired: false,
            },
        ];
        e.apply(&[entry("192.0.2.4/32")], &removed, 0).await.unwrap();
        assert_eq!(calls(&seen, "htable.delete"), vec![json!(["ipban", "192.0.2.3"])]);
        assert_eq!(e.set, HashSet::from(["192.0.2.4".parse().unwrap()]));

        // remove: the dumped entries with value 2 and what it set itself.
        e.remove().await.unwrap();
        assert_eq!(
            calls(&seen, "htable.delete"),
            vec![json!(["ipban", "192.0.2.4"]), json!(["ipban", "192.0.2.8"])]
        );

        // A table without autoexpire ignores per-item expiry: expired entries are
        // deleted too.
        autoexpire.store(0, Ordering::Relaxed);
        e.replace(&[entry("192.0.2.5/32")], 0).await.unwrap();
        assert_eq!(e.table_expires, Some(false));
        calls(&seen, "htable.delete");
        let expired = [Removed {
            net: "192.0.2.5/32".parse().unwrap(),
            expired: true,
        }];
        e.apply(&[], &expired, 0).await.unwrap();
        assert_eq!(calls(&seen, "htable.delete"), vec![json!(["ipban", "192.0.2.5"])]);
        assert!(e.set.is_empty());
    }

    #[test]
    fn dumps_yield_the_marked_keys_only() {
        let dump = json!([
            {"entry": 192, "size": 1, "slot": [{"name": "10.1.1.2", "value": 1, "type": "int"}]},
            {"entry": 195, "size": 2, "slot": [
                {"name": "10.1.1.1", "value": 2, "type": "int"},
                {"name": "fraudmesh:synced", "value": 2, "type": "int"}]},
            {"entry": 196, "size": 1, "slot": [{"name": "s", "value": "2", "type": "str"}]}
        ]);
        assert_eq!(marked_keys(&dump, MARK), vec!["10.1.1.1", "fraudmesh:synced"]);
        assert!(marked_keys(&json!([]), MARK).is_empty());
        assert!(marked_keys(&json!({}), MARK).is_empty());
    }

    #[test]
    fn config_is_checked_key_by_key() {
        let ok = KamailioConfig::default();
        ok.validate("enforce.kamailio").unwrap();
        let c: KamailioConfig = toml::from_str("").unwrap();
        assert_eq!(c, ok);
        for (c, needle) in [
            (
                KamailioConfig {
                    url: "https://127.0.0.1:5071/RPC".into(),
                    ..ok.clone()
                },
                "enforce.kamailio.url: only http://",
            ),
            (
                KamailioConfig {
                    url: "127.0.0.1:5071".into(),
                    ..ok.clone()
                },
                "enforce.kamailio.url",
            ),
            (
                KamailioConfig {
                    htable: "ip ban".into(),
                    ..ok.clone()
                },
                "enforce.kamailio.htable",
            ),
            (
                KamailioConfig {
                    timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "enforce.kamailio.timeout",
            ),
        ] {
            let err = format!("{:#}", c.validate("enforce.kamailio").unwrap_err());
            assert!(err.contains(needle), "{err}");
        }
        let t: KamailioConfig = toml::from_str("timeout = \"250ms\"\nhtable = \"fm_ban\"").unwrap();
        assert_eq!(t.timeout, Duration::from_millis(250));
        assert!(toml::from_str::<KamailioConfig>("tabel = \"x\"").is_err());
    }
}
