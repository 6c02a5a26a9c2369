//! Test harness: real `fraudmesh` processes on 127.0.0.1, each with its own directory,
//! driven through the CLI exactly as an operator would. Every wait polls with a deadline.

pub mod kamailio;
pub mod natlab;
pub mod netns;

use fraudmesh_node::metrics::Scrape;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_fraudmesh");

/// Default deadline for mesh-wide effects.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Serialises the tests that assert wall-clock bounds or keep the CPU busy for long (the
/// Kamailio stories timed against 60 s, 100,000 nftables elements, 6,000 records synced
/// across three nodes): all tests share one binary and run on parallel threads, and
/// these must not slow each other down. Hold the guard for the whole test. A test that
/// failed while holding it does not stop the others (the poison is ignored).
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Polls `f` until it returns `Some`, or panics with `what` after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the CLI against a directory.
pub fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env("FRAUDMESH_LOG", "warn")
        .output()
        .expect("running fraudmesh")
}

/// Runs the CLI and returns stdout, panicking with stderr on failure.
pub fn cli_ok(dir: &Path, args: &[&str]) -> String {
    let out = cli(dir, args);
    assert!(
        out.status.success(),
        "fraudmesh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a `--json` command and parses its single document.
pub fn cli_json(dir: &Path, args: &[&str]) -> Value {
    let text = cli_ok(dir, args);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{args:?} printed non-JSON ({e}): {text}"))
}

/// One node: a directory and, while running, its process.
pub struct Node {
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub peer_id: String,
    pub _tmp: Option<tempfile::TempDir>,
}

impl Node {
    /// `fraudmesh init` in a fresh temp dir with ports chosen by the OS; extra init flags
    /// (seeds, trust) appended.
    pub fn init(extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("node");
        let mut args = vec!["init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let out = cli_ok(&dir, &args);
        let peer_id = out.lines().next().expect("peer id line").trim().to_string();
        assert!(peer_id.starts_with("12D3KooW"), "{out}");
        Self {
            dir,
            child: None,
            peer_id,
            _tmp: Some(tmp),
        }
    }

    /// `fraudmesh init` seeded with the running node `peer` and trusting it.
    pub fn trusting(peer: &Node) -> Self {
        Self::init(&["--seed", &peer.addr(), "--trust", &peer.peer_id])
    }

    /// Appends TOML to the node's config.toml (written by `init`).
    pub fn append_config(&self, toml: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("config.toml"))
            .expect("config.toml");
        writeln!(f, "\n{toml}").expect("appending to config.toml");
    }

    /// Starts `fraudmesh run` and waits until its API answers.
    pub fn start(&mut self) -> &mut Self {
        self.start_with_env(&[])
    }

    /// Starts `fraudmesh run` with extra environment variables (e.g. a PATH holding a
    /// fake program) and waits until its API answers.
    pub fn start_with_env(&mut self, env: &[(&str, String)]) -> &mut Self {
        assert!(self.child.is_none(), "already running");
        let _ = std::fs::remove_file(self.dir.join("node.json"));
        let log = std::fs::File::create(self.dir.join("node.log")).expect("log file");
        let child = Command::new(BIN)
            .arg("--dir")
            .arg(&self.dir)
            .arg("run")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("FRAUDMESH_LOG", "info,fraudmesh_node=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning fraudmesh run");
        self.child = Some(child);
        let dir = self.dir.clone();
        wait_for("the node's API", DEADLINE, || {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("node exited early with {status}: {}", self.log());
            }
            let out = cli(&dir, &["status", "--json"]);
            out.status.success().then_some(())
        });
        self
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// The full dialable address (`/ip4/127.0.0.1/tcp/PORT/p2p/ID`) of a running node.
    pub fn addr(&self) -> String {
        let st = self.status();
        st["listen"][0].as_str().expect("a listen address").to_string()
    }

    /// The API address of a running node.
    pub fn api(&self) -> String {
        let rt: Value = serde_json::from_slice(&std::fs::read(self.dir.join("node.json")).expect("node.json"))
            .expect("node.json parses");
        rt["api"].as_str().expect("api").to_string()
    }

    /// The API token (the admin's).
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("api.token"))
            .expect("token")
            .trim()
            .to_string()
    }

    /// The calls token (the SIP stack's).
    pub fn calls_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("calls.token"))
            .expect("calls token")
            .trim()
            .to_string()
    }

    /// GET with the admin token (`/v1/accounts`, `/v1/audit`, `/v1/calls/check`) and
    /// return the body (status must be 200).
    pub fn admin_get(&self, path: &str) -> String {
        http_get_with(&self.api(), path, &self.token())
    }

    /// POST `body` to a calls endpoint (`/v1/calls/authorize`, `/v1/calls/ID/end`) with
    /// the calls token and `content_type`; (status, body).
    pub fn calls_post(&self, path: &str, content_type: &str, body: &str) -> (u16, String) {
        let bearer = format!("Bearer {}", self.calls_token());
        http(
            &self.api(),
            "POST",
            path,
            &[("Authorization", &bearer), ("Content-Type", content_type)],
            body,
        )
    }

    pub fn status(&self) -> Value {
        cli_json(&self.dir, &["status", "--json"])
    }

    pub fn check(&self, target: &str) -> Value {
        cli_json(&self.dir, &["check", target, "--json"])
    }

    pub fn is_blocked(&self, target: &str) -> bool {
        self.check(target)["blocked"].as_bool().expect("blocked is a bool")
    }

    pub fn reporters(&self, target: &str) -> Vec<String> {
        self.check(target)["reporters"]
            .as_array()
            .expect("reporters array")
            .iter()
            .map(|v| v.as_str().expect("peer id").to_string())
            .collect()
    }

    /// The entry of `enforce status --json` for the enforcer named `name`.
    pub fn enforcer(&self, name: &str) -> Value {
        enforcer(&cli_json(&self.dir, &["enforce", "status", "--json"]), name).clone()
    }

    pub fn report(&self, args: &[&str]) {
        let mut a = vec!["report"];
        a.extend_from_slice(args);
        cli_ok(&self.dir, &a);
    }

    /// Waits until the node has at least `n` peers subscribed to gossip.
    pub fn wait_gossip_peers(&self, n: u64) {
        wait_for(&format!("{n} gossip peers"), DEADLINE, || {
            (self.status()["gossip_peers"].as_u64().unwrap_or(0) >= n).then_some(())
        });
    }

    /// The running node's `/metrics`, parsed.
    pub fn scrape(&self) -> Scrape {
        Scrape::parse(&http_get(&self.api(), "/metrics"))
    }

    /// A metric of the running node: the sum of the samples named `name` that carry every
    /// `(label, value)` of `labels` (every label set with `&[]`), 0 when there is none.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.scrape().value(name, labels).unwrap_or(0.0)
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let pid = c.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        wait_for("the node to exit after SIGTERM", DEADLINE, || {
            c.try_wait().ok().flatten()
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The entry for the enforcer named `name` (`nftables`, `kamailio`, `file:PATH`) in the
/// output of `enforce status --json`.
pub fn enforcer<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["enforcers"]
        .as_array()
        .expect("enforcers array")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no enforcer named {name}: {status}"))
}

/// The path of a file under `node/tests/fixtures/`.
pub fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

/// A minimal HTTP/1.1 request over a TcpStream (so tests can send exactly the bytes
/// they want, including broken JSON), with `Host: API`. Returns (status, body).
pub fn http(api: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    http_host(api, api, method, path, headers, body)
}

/// [`http`] with the `Host` header given.
pub fn http_host(
    api: &str,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("write request");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read response");
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status: u16 = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP response: {resp}"));
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// GET and return the body (status must be 200).
pub fn http_get(api: &str, path: &str) -> String {
    let (code, body) = http(api, "GET", path, &[], "");
    assert_eq!(code, 200, "GET {path}: {body}");
    body
}

/// GET with a bearer token and return the body (status must be 200).
pub fn http_get_with(api: &str, path: &str, token: &str) -> String {
    let bearer = format!("Bearer {token}");
    let (code, body) = http(api, "GET", path, &[("Authorization", &bearer)], "");
    assert_eq!(code, 200, "GET {path}: {body}");
    body
}
