//! The Kamailio enforcer against a real Kamailio (scripts/kamailio/example.cfg, which
//! includes the shipped fraudmesh.cfg) and a real node: SIP OPTIONS from a blocked
//! source get no answer while another source's do, a retraction lets it through again,
//! a SIGKILLed and restarted Kamailio gets the whole list back, `fraudmesh enforce
//! status` shows it all, and `fraudmesh enforce --remove` deletes the node's entries
//! only.
//!
//! The node never blocks loopback, so Kamailio runs in a network namespace of the test's
//! own, joined to the test by a veth pair: it listens on 10.X.Y.2 and SIP comes from
//! 10.X.Y.1 and 10.X.Y.3 on the test's side.

mod common;

use common::kamailio::options_answered;
use common::netns::{self, Netns};
use common::*;
use fraudmesh_node::enforce::kamailio::{KamailioConfig, KamailioEnforcer};
use fraudmesh_node::enforce::{Enforcer, Entry};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EXAMPLE_CFG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kamailio/example.cfg");

/// A Kamailio running example.cfg inside `ns`, SIP on `addr`:5060 and JSON-RPC on
/// `addr`:5071. Killed (its whole process group) on drop.
struct Kamailio {
    ns: String,
    addr: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Kamailio {
    /// Writes the config (example.cfg with this test's addresses) and checks it.
    fn new(ns: &Netns, addr: &str, rpc_clients: &str, dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("run")).expect("kamailio dir");
        let cfg = format!(
            "#!KAMAILIO\n\
             #!define EXAMPLE_SIP_LISTEN udp:{addr}:5060\n\
             #!define FRAUDMESH_RPC_LISTEN tcp:{addr}:5071\n\
             #!define FRAUDMESH_RPC_CLIENT {rpc_clients}\n\
             include_file \"{EXAMPLE_CFG}\"\n"
        );
        std::fs::write(dir.join("test.cfg"), cfg).expect("writing test.cfg");
        let k = Self {
            ns: ns.name.clone(),
            addr: addr.to_string(),
            dir: dir.to_path_buf(),
            child: None,
        };
        let check = k.command(&["-c"]).output().expect("running kamailio -c");
        assert!(
            check.status.success(),
            "kamailio -c refused the config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        k
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, "kamailio"])
            .args(extra)
            .arg("-f")
            .arg(self.dir.join("test.cfg"));
        c
    }

    /// Starts it in the foreground (its own process group) and waits until RPC answers.
    fn start(&mut self) {
        self.start_with_memory("64", "16");
    }

    /// Starts it with `shm_mb` MB of shared memory and `pkg_mb` MB of private memory per
    /// process.
    fn start_with_memory(&mut self, shm_mb: &str, pkg_mb: &str) {
        assert!(self.child.is_none(), "kamailio already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("kamailio.log"))
            .expect("kamailio.log");
        let run = self.dir.join("run");
        let child = {
            use std::os::unix::process::CommandExt;
            self.command(&["-DD", "-E", "-m", shm_mb, "-M", pkg_mb])
                .arg("-Y")
                .arg(&run)
                .arg("-P")
                .arg(run.join("kamailio.pid"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .process_group(0)
                .spawn()
                .expect("starting kamailio")
        };
        self.child = Some(child);
        wait_for("Kamailio's JSON-RPC", DEADLINE, || {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("kamailio exited with {status}: {}", self.log());
            }
            try_rpc(&self.rpc_addr(), "core.uptime", json!([])).ok()
        });
    }

    /// SIGKILL to every process of it, then waits until they are all gone.
    fn kill9(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let group = format!("-{}", c.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).output();
        let _ = c.wait();
        wait_for("Kamailio's processes to end", DEADLINE, || {
            let alive = Command::new("kill")
                .args(["-0", "--", &group])
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            (!alive).then_some(())
        });
    }

    fn rpc_addr(&self) -> String {
        format!("{}:5071", self.addr)
    }

    fn rpc(&self, method: &str, params: Value) -> Value {
        try_rpc(&self.rpc_addr(), method, params).unwrap_or_else(|e| panic!("{method}: {e}\n{}", self.log()))
    }

    /// The table's entries as (key, value).
    fn dump(&self) -> Vec<(String, Value)> {
        let r = self.rpc("htable.dump", json!(["ipban"]));
        let mut items: Vec<(String, Value)> = r["result"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["slot"].as_array().cloned().unwrap_or_default())
            .map(|i| (i["name"].as_str().unwrap_or_default().to_string(), i["value"].clone()))
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        items
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One JSON-RPC call over a fresh connection; the whole answer (errors included).
fn try_rpc(addr: &str, method: &str, params: Value) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string();
    let mut s = TcpStream::connect_timeout(&addr.parse().map_err(|e| format!("{e}"))?, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "POST /RPC HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    // Kamailio keeps the connection open: read the head, then Content-Length bytes.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = s.read(&mut chunk).map_err(|e| format!("reading from {addr}: {e}"))?;
        if n == 0 {
            return Err(format!(
                "{addr} closed the connection: {}",
                String::from_utf8_lossy(&buf)
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no Content-Length: {head}"))?;
        if buf.len() >= end + 4 + len {
            return serde_json::from_slice(&buf[end + 4..end + 4 + len]).map_err(|e| format!("{e}"));
        }
    }
}

fn kamailio_status(n: &Node) -> Value {
    let st = cli_json(&n.dir, &["enforce", "status", "--json"]);
    st["enforcers"]
        .as_array()
        .expect("enforcers array")
        .iter()
        .find(|e| e["name"] == "kamailio")
        .cloned()
        .unwrap_or_else(|| panic!("no kamailio enforcer: {st}"))
}

#[test]
fn kamailio_drops_blocked_sources_and_gets_its_table_back_after_a_restart() {
    netns::require(&["ip", "kamailio"]);
    let started = Instant::now();
    let net = netns::subnet();
    let (me, kam_addr, other, pike) = (
        format!("{net}.1"),
        format!("{net}.2"),
        format!("{net}.3"),
        format!("{net}.77"),
    );
    let ns = Netns::new("kam");
    netns::veth(None, &me, &ns, &kam_addr);
    netns::add_addr(&me, &other);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut kam = Kamailio::new(&ns, &kam_addr, &format!("{net}.0/24"), &tmp.path().join("kamailio"));
    kam.start();
    assert!(
        options_answered(&me, &kam_addr) && options_answered(&other, &kam_addr),
        "Kamailio answers OPTIONS"
    );
    // An entry as the stock config's pike rule makes it (value 1): not the node's.
    let r = kam.rpc("htable.seti", json!(["ipban", pike, 1]));
    assert!(r.get("result").is_some(), "{r}");
    // One an earlier run of the node left (value 2) for an address no longer listed.
    let leftover = format!("{net}.55");
    kam.rpc("htable.seti", json!(["ipban", leftover, 2]));

    let mut n = Node::init(&[]);
    n.append_config(&format!(
        "[enforce.kamailio]\nurl = \"http://{kam_addr}:5071/RPC\"\ntimeout = \"2s\"\n"
    ));
    cli_ok(&n.dir, &["check-config"]);
    n.start();
    wait_for("the kamailio enforcer's first full sync", DEADLINE, || {
        (kamailio_status(&n)["state"] == "ok").then_some(())
    });
    assert!(
        kam.rpc("htable.get", json!(["ipban", leftover])).get("error").is_some(),
        "the first full sync deleted the earlier run's leftover"
    );
    assert!(
        kam.rpc("htable.get", json!(["ipban", pike])).get("result").is_some(),
        "and left pike's entry"
    );

    // A report: the source gets no answer any more, another source still does.
    n.report(&[me.as_str(), "198.51.100.0/24"]);
    wait_for("OPTIONS from the reported address to go unanswered", DEADLINE, || {
        (!options_answered(&me, &kam_addr)).then_some(())
    });
    assert!(options_answered(&other, &kam_addr), "another source is still answered");
    let item = kam.rpc("htable.get", json!(["ipban", me]));
    assert_eq!(item["result"]["item"]["value"], 2, "{item}");
    let dump = kam.dump();
    assert!(
        !dump.iter().any(|(k, _)| k.starts_with("198.51.100")),
        "prefixes are not written: {dump:?}"
    );
    let st = kamailio_status(&n);
    assert_eq!(st["state"], "ok", "{st}");
    assert_eq!(st["entries"], 2, "{st}");
    assert!(st["full_syncs"].as_u64() >= Some(1), "{st}");

    // A retraction lets it through again.
    cli_ok(&n.dir, &["retract", me.as_str()]);
    wait_for("OPTIONS from the retracted address answered again", DEADLINE, || {
        options_answered(&me, &kam_addr).then_some(())
    });
    assert!(
        kam.rpc("htable.get", json!(["ipban", me])).get("error").is_some(),
        "the entry was deleted"
    );

    // Blocked again, then Kamailio dies and comes back with an empty table: the node
    // notices and writes the whole list again.
    n.report(&[me.as_str()]);
    wait_for("the address blocked again", DEADLINE, || {
        (!options_answered(&me, &kam_addr)).then_some(())
    });
    let before = kamailio_status(&n)["full_syncs"].as_u64().expect("full_syncs");
    kam.kill9();
    kam.start();
    assert!(options_answered(&other, &kam_addr), "the new Kamailio answers");
    wait_for("the address blocked after Kamailio's restart", DEADLINE, || {
        (!options_answered(&me, &kam_addr)).then_some(())
    });
    let st = wait_for("a full sync counted after the restart", DEADLINE, || {
        let st = kamailio_status(&n);
        (st["state"] == "ok" && st["full_syncs"].as_u64() > Some(before)).then_some(st)
    });
    assert_eq!(st["entries"], 2, "{st}");
    assert!(n.log().contains("Kamailio restarted"), "the restart was noticed");
    let text = cli_ok(&n.dir, &["enforce", "status"]);
    assert!(text.contains("kamailio"), "{text}");

    // --remove with the node stopped deletes the node's entries (value 2) only.
    kam.rpc("htable.seti", json!(["ipban", pike, 1]));
    assert!(n.stop().success());
    assert!(
        !options_answered(&me, &kam_addr),
        "entries stay while the node is stopped"
    );
    let out = cli_ok(&n.dir, &["enforce", "--remove"]);
    assert!(out.contains("kamailio: removed"), "{out}");
    let dump = kam.dump();
    assert_eq!(dump, vec![(pike.clone(), json!(1))], "only the pike-like entry is left");
    assert!(options_answered(&me, &kam_addr), "answered after --remove");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// An unreachable Kamailio is an error the runner retries with backoff; once Kamailio
/// answers, it gets the full list.
#[test]
fn unreachable_kamailio_is_retried_and_gets_the_full_list() {
    netns::require(&["ip", "kamailio"]);
    let net = netns::subnet();
    let (me, kam_addr) = (format!("{net}.1"), format!("{net}.2"));
    let ns = Netns::new("kam");
    netns::veth(None, &me, &ns, &kam_addr);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut kam = Kamailio::new(&ns, &kam_addr, &format!("{net}.0/24"), &tmp.path().join("kamailio"));

    let mut n = Node::init(&[]);
    n.append_config(&format!(
        "[enforce.kamailio]\nurl = \"http://{kam_addr}:5071/RPC\"\ntimeout = \"1s\"\n"
    ));
    n.start();
    n.report(&["192.0.2.44"]);
    let st = wait_for("the enforcer to fail while Kamailio is down", DEADLINE, || {
        let st = kamailio_status(&n);
        (st["errors"].as_u64() >= Some(1)).then_some(st)
    });
    assert_eq!(st["state"], "retrying", "{st}");
    assert!(
        st["last_error"].as_str().unwrap_or_default().contains(&kam_addr),
        "{st}"
    );

    kam.start();
    wait_for("the list in Kamailio once it answers", Duration::from_secs(45), || {
        let item = kam.rpc("htable.get", json!(["ipban", "192.0.2.44"]));
        (item["result"]["item"]["value"] == 2).then_some(())
    });
    let st = wait_for("the recovered state", DEADLINE, || {
        let st = kamailio_status(&n);
        (st["state"] == "ok").then_some(st)
    });
    assert!(st["full_syncs"].as_u64() >= Some(1), "{st}");
}

#[test]
fn bad_kamailio_config_is_refused_with_the_key() {
    for (toml, needle) in [
        ("url = \"https://127.0.0.1:5071/RPC\"", "enforce.kamailio.url"),
        ("htable = \"ip ban\"", "enforce.kamailio.htable"),
        ("tabel = \"ipban\"", "tabel"),
    ] {
        let n = Node::init(&[]);
        n.append_config(&format!("[enforce.kamailio]\n{toml}"));
        let out = cli(&n.dir, &["check-config"]);
        assert!(!out.status.success(), "{toml} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{toml}: {err}");
    }
    // Defaults only: accepted.
    let n = Node::init(&[]);
    n.append_config("[enforce.kamailio]");
    cli_ok(&n.dir, &["check-config"]);
}

/// Bulk timings: a full replace of 10k and 100k addresses into a real Kamailio, then a
/// second replace (every entry refreshed), then `remove`. Run by hand:
/// `cargo test -p fraudmesh-node --test enforce_kamailio -- --ignored --nocapture`.
#[test]
#[ignore]
fn bulk_timings() {
    netns::require(&["ip", "kamailio"]);
    let net = netns::subnet();
    let (me, kam_addr) = (format!("{net}.1"), format!("{net}.2"));
    let ns = Netns::new("kbulk");
    netns::veth(None, &me, &ns, &kam_addr);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut kam = Kamailio::new(&ns, &kam_addr, &format!("{net}.0/24"), &tmp.path().join("kamailio"));
    kam.start_with_memory("256", "128");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for count in [10_000u32, 100_000] {
        let entries: Vec<Entry> = (0..count)
            .map(|i| Entry {
                net: format!("172.{}.{}.{}/32", 16 + (i >> 16), (i >> 8) & 255, i & 255)
                    .parse()
                    .expect("net"),
                until: fraudmesh_node::now_ms() + 3_600_000,
            })
            .collect();
        let mut e = KamailioEnforcer::new(KamailioConfig {
            url: format!("http://{kam_addr}:5071/RPC"),
            ..KamailioConfig::default()
        });
        rt.block_on(async {
            let t = Instant::now();
            e.replace(&entries, fraudmesh_node::now_ms()).await.expect("replace");
            println!("{count}: first replace {:?}", t.elapsed());
            let t = Instant::now();
            e.replace(&entries, fraudmesh_node::now_ms()).await.expect("replace");
            println!("{count}: second replace {:?}", t.elapsed());
            let t = Instant::now();
            let mut fresh = KamailioEnforcer::new(KamailioConfig {
                url: format!("http://{kam_addr}:5071/RPC"),
                ..KamailioConfig::default()
            });
            fresh.remove().await.expect("remove");
            println!("{count}: remove (dump + delete) {:?}", t.elapsed());
        });
        assert!(kam.dump().is_empty(), "all removed");
    }
}
