//! A NAT lab in network namespaces the test creates and removes: an "internet" (a
//! bridge in a namespace of its own) with a public seed on it, and sites, each a router
//! namespace doing nftables `masquerade` on its WAN side in front of a site namespace
//! with a private address. Real `fraudmesh` nodes run inside the namespaces; the test
//! drives them with the CLI run inside the namespace too (`ip netns exec`), as an
//! operator on that machine would.
//!
//! Nothing is created in the host's own namespace: every veth pair is made with both
//! ends already inside lab namespaces (`ip -n A link add … peer … netns B`), forwarding
//! is enabled inside the routers only, and the nftables rules live in the routers'
//! namespaces. Dropping the [`Lab`] deletes its namespaces; namespaces of killed test
//! runs (their process gone) are deleted, with whatever still runs in them, when the
//! next lab is made. The nodes die with the test thread that started them
//! (`PR_SET_PDEATHSIG`), so a killed run leaves no node behind either.
//!
//! Addresses: the internet is `INTERNET4.0/24` and `INTERNET6::/64`; site `i` (from 1)
//! is `10.i.0.0/24` behind router WAN address `INTERNET4.(20 + i)` (IPv4 sites) or
//! `fd0i::/64` behind `INTERNET6::(20 + i)` (IPv6-only sites). The internet's ranges
//! are global ones, not the documentation ranges (203.0.113.0/24, 2001:db8::/32):
//! libp2p's AutoNAT ignores non-global addresses by default, and a lab the code under
//! test treats as private would prove nothing. They are reachable only inside the lab.

use super::netns::{self, Netns};
use super::{cli_ok, http_get, Node, BIN, DEADLINE};
use fraudmesh_node::metrics::Scrape;
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The lab internet's IPv4 /24 (first three octets).
pub const INTERNET4: &str = "7.7.7";
/// The lab internet's IPv6 /64 (first four groups).
pub const INTERNET6: &str = "2a0b:7710:0:1";
/// The seed's IPv4 address on the lab internet.
pub const SEED4: &str = "7.7.7.10";
/// The seed's IPv6 address on the lab internet.
pub const SEED6: &str = "2a0b:7710:0:1::10";
/// The port every lab node listens on (TCP and QUIC): each has a namespace of its own.
pub const P2P_PORT: u16 = 7710;
/// The API address inside each node's namespace.
pub const API: &str = "127.0.0.1:7711";
/// Prefix of the lab's namespace names (`fm-nat…-PID-N`, see [`Netns::new`]).
const TAG: &str = "nat";

/// How a site's router translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Plain `masquerade`: Linux keeps the source port when it is free, the same
    /// mapping for every destination (endpoint-independent): hole punching works.
    PortPreserving,
    /// `masquerade fully-random`: a new random source port for every connection
    /// (endpoint-dependent, a "symmetric" NAT): the port a peer learned from the seed
    /// is never the one the site uses toward that peer, so hole punching cannot work.
    FullyRandom,
}

/// A site: a router namespace (WAN on the lab internet, masquerading) and the site's
/// own namespace behind it.
pub struct Site {
    /// The site's network, where its node runs.
    pub lan: Netns,
    /// Its router.
    pub router: Netns,
    /// The router's public (WAN) address.
    pub public: String,
    /// The site host's private address.
    pub private: String,
}

/// The lab: the internet bridge, the seed's namespace, the sites. Drop the nodes first
/// (declare the lab before them).
pub struct Lab {
    /// Holds the bridge `br0` joining the seed and the routers.
    pub inet: Netns,
    /// The seed's host: `SEED4` and `SEED6` on the internet.
    pub seed: Netns,
    /// The sites, in the order added (site 1 first).
    pub sites: Vec<Site>,
}

impl Lab {
    /// The internet with the seed's host on it, no sites yet.
    pub fn new() -> Self {
        netns::require(&["ip", "nft"]);
        clean_stale();
        let inet = Netns::new(&format!("{TAG}-inet"));
        inet.exec("ip", &["link", "add", "br0", "type", "bridge"]);
        inet.exec("ip", &["link", "set", "br0", "up"]);
        let seed = Netns::new(&format!("{TAG}-seed"));
        let lab = Self {
            inet,
            seed,
            sites: Vec::new(),
        };
        lab.plug(&lab.seed, "p0");
        addr(&lab.seed, "eth0", &format!("{SEED4}/24"));
        addr(&lab.seed, "eth0", &format!("{SEED6}/64"));
        lab
    }

    /// Joins `ns` to the internet bridge: its end is `eth0`, the bridge's `port`.
    fn plug(&self, ns: &Netns, port: &str) {
        veth(&self.inet, port, ns, "eth0");
        self.inet.exec("ip", &["link", "set", port, "master", "br0"]);
        self.inet.exec("ip", &["link", "set", port, "up"]);
    }

    /// Adds an IPv4 site behind a router doing `nat`; returns its index in `sites`.
    pub fn add_site(&mut self, nat: Nat) -> usize {
        self.add(nat, false)
    }

    /// Adds a site with only IPv6 addresses (a unique-local /64 masqueraded to the
    /// router's global address like an IPv4 site; no IPv4 address but loopback);
    /// returns its index in `sites`.
    pub fn add_site_v6(&mut self, nat: Nat) -> usize {
        self.add(nat, true)
    }

    fn add(&mut self, nat: Nat, v6: bool) -> usize {
        let i = self.sites.len() + 1;
        let router = Netns::new(&format!("{TAG}-r{i}"));
        let lan = Netns::new(&format!("{TAG}-s{i}"));
        self.plug(&router, &format!("p{i}"));
        router.exec("ip", &["link", "set", "eth0", "down"]);
        router.exec("ip", &["link", "set", "eth0", "name", "wan"]);
        router.exec("ip", &["link", "set", "wan", "up"]);
        veth(&router, "lan", &lan, "eth0");
        let (public, gw, private, family) = if v6 {
            addr(&router, "wan", &format!("{INTERNET6}::{}/64", 20 + i));
            (
                format!("{INTERNET6}::{}", 20 + i),
                format!("fd0{i}::1"),
                format!("fd0{i}::2"),
                "ip6",
            )
        } else {
            addr(&router, "wan", &format!("{INTERNET4}.{}/24", 20 + i));
            (
                format!("{INTERNET4}.{}", 20 + i),
                format!("10.{i}.0.1"),
                format!("10.{i}.0.2"),
                "ip",
            )
        };
        let len = if v6 { 64 } else { 24 };
        addr(&router, "lan", &format!("{gw}/{len}"));
        addr(&lan, "eth0", &format!("{private}/{len}"));
        lan.exec("ip", &["route", "add", "default", "via", &gw]);
        // Forwarding inside the router's namespace only (each namespace has its own).
        let forward = if v6 {
            "net.ipv6.conf.all.forwarding=1"
        } else {
            "net.ipv4.ip_forward=1"
        };
        router.exec("sysctl", &["-qw", forward]);
        let masquerade = match nat {
            Nat::PortPreserving => "masquerade",
            Nat::FullyRandom => "masquerade fully-random",
        };
        nft(&router, &router_rules(family, masquerade));
        self.sites.push(Site {
            lan,
            router,
            public,
            private,
        });
        self.sites.len() - 1
    }
}

impl Site {
    /// The router's rules with their counters (packets masqueraded, forwarded, dropped),
    /// for failure messages.
    pub fn diagnose(&self) -> String {
        let out = self
            .router
            .command("nft")
            .args(["list", "table", "natlab"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let out = if out.is_empty() {
            let six = self
                .router
                .command("nft")
                .args(["list", "table", "ip6", "natlab"])
                .output();
            six.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        } else {
            out
        };
        format!("=== router of {} (public {}) ===\n{out}\n", self.private, self.public)
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

/// A home router's rules: masquerade what leaves by the WAN; forward what the site
/// starts and the answers to it; drop (not reject) unsolicited packets from the WAN,
/// as consumer routers do. Dropping matters for hole punching: a reset or an ICMP
/// error from the router would kill the peer's simultaneous attempt, and a dropped
/// packet leaves no conntrack entry to clash with the site's own outgoing one.
fn router_rules(family: &str, masquerade: &str) -> String {
    format!(
        "table {family} natlab {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"wan\" counter {masquerade}
  }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    ct state established,related counter accept
    iifname \"lan\" oifname \"wan\" counter accept
    counter
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname \"wan\" ct state new counter drop
  }}
}}
"
    )
}

/// Loads an nftables ruleset inside `ns`.
fn nft(ns: &Netns, rules: &str) {
    let mut child = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running nft");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("nft's stdin");
        stdin.write_all(rules.as_bytes()).expect("writing the ruleset to nft");
    }
    let out = child.wait_with_output().expect("nft");
    assert!(
        out.status.success(),
        "nft -f in {} failed: {}\n{rules}",
        ns.name,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A veth pair made directly between two lab namespaces (never in the host's): `a`'s
/// end named `name_a`, `b`'s `name_b`, both up.
fn veth(a: &Netns, name_a: &str, b: &Netns, name_b: &str) {
    netns::run(
        "ip",
        &[
            "-n", &a.name, "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", &b.name,
        ],
    );
    a.exec("ip", &["link", "set", name_a, "up"]);
    b.exec("ip", &["link", "set", name_b, "up"]);
}

/// Adds `cidr` to `dev` in `ns`; IPv6 without duplicate address detection, which would
/// hold the address back for a second or two.
fn addr(ns: &Netns, dev: &str, cidr: &str) {
    if cidr.contains(':') {
        ns.exec("ip", &["-6", "addr", "add", cidr, "dev", dev, "nodad"]);
    } else {
        ns.exec("ip", &["addr", "add", cidr, "dev", dev]);
    }
}

/// Deletes lab namespaces whose test process is gone (a run killed before its guards
/// ran), after killing what still runs inside them. Namespaces of live processes (other
/// tests running now) are left alone.
fn clean_stale() {
    let out = netns::run("ip", &["netns", "list"]);
    let prefix = format!("fm-{TAG}-");
    for name in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
    {
        // fm-TAG-…-PID-N
        let Some(pid) = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(pids) = Command::new("ip").args(["netns", "pids", name]).output() {
            for p in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", p]).output();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", name]).output();
    }
}

/// Moves the calling thread into the network namespace `ns` (only this thread: network
/// namespaces may be entered by one thread of a multi-threaded process).
fn enter(ns: &str) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("the namespace's file");
    // SAFETY: a plain syscall on a descriptor that stays open across the call.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns into {ns}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread inside the network namespace `ns` (for the test's own HTTP
/// requests to a node's API, which listens on the namespace's loopback).
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            f()
        })
        .join()
        .expect("the thread inside the namespace panicked")
    })
}

/// GET `path` from `api` (HTTP/1.1, `Connection: close`): the body of a 200, `None` on
/// any failure (the node restarting).
pub fn try_get(api: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// What a [`ConnWatch`] saw of one peer's connection.
#[derive(Debug, Clone, Default)]
pub struct ConnSeen {
    /// When the peer was first seen connected `relayed`.
    pub relayed: Option<Instant>,
    /// When it was first seen `direct`.
    pub direct: Option<Instant>,
    /// The `transport`s seen with a direct connection.
    pub direct_transports: Vec<String>,
    /// Polls made.
    pub polls: u64,
}

/// Watches one peer's `connection` in a node's `GET /v1/peers` (what `peers --json`
/// prints) every 2 ms from a thread inside the node's namespace: a relayed phase that
/// DCUtR ends within milliseconds is still seen, and a direct connection that lasts
/// one poll is not missed.
pub struct ConnWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<ConnSeen>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConnWatch {
    /// Starts watching `peer` on `node`.
    pub fn start(node: &LabNode, peer: &str) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(ConnSeen::default()));
        let (ns, peer) = (node.ns.clone(), peer.to_string());
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            enter(&ns);
            while !stop2.load(Ordering::Relaxed) {
                // The node may be restarting: an unanswered poll is skipped.
                let body = try_get(API, "/v1/peers");
                let doc: Option<Value> = body.and_then(|b| serde_json::from_str(&b).ok());
                let entry = doc.as_ref().and_then(|d| {
                    d["peers"]
                        .as_array()
                        .and_then(|a| a.iter().find(|p| p["peer_id"] == peer.as_str()).cloned())
                });
                let now = Instant::now();
                let mut s = seen2.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                s.polls += 1;
                if let Some(e) = entry {
                    match e["connection"].as_str() {
                        Some("relayed") => {
                            s.relayed.get_or_insert(now);
                        }
                        Some("direct") => {
                            s.direct.get_or_insert(now);
                            let t = e["transport"].as_str().unwrap_or("?").to_string();
                            if !s.direct_transports.contains(&t) {
                                s.direct_transports.push(t);
                            }
                        }
                        _ => {}
                    }
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Self {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// What it saw so far.
    pub fn seen(&self) -> ConnSeen {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for ConnWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A `fraudmesh` node in a lab namespace.
pub struct LabNode {
    /// A name for messages (`seed`, `site 1`).
    pub name: String,
    /// The namespace it runs in.
    pub ns: String,
    /// Its directory, peer id and, while running, process.
    pub node: Node,
}

impl LabNode {
    /// `fraudmesh init` (identity and tokens) in a fresh directory; the config is
    /// written by [`LabNode::configure`].
    pub fn init(name: &str, ns: &Netns) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("node");
        let out = cli_ok(&dir, &["init"]);
        let peer_id = out.lines().next().expect("peer id line").trim().to_string();
        assert!(peer_id.starts_with("12D3KooW"), "{out}");
        Self {
            name: name.to_string(),
            ns: ns.name.clone(),
            node: Node {
                dir,
                child: None,
                peer_id,
                _tmp: Some(tmp),
            },
        }
    }

    /// The peer id.
    pub fn id(&self) -> &str {
        &self.node.peer_id
    }

    /// Writes the whole config.toml: `[node] api` is set here, `toml` holds the rest
    /// (without a `[node]` header: its keys go first, in the `[node]` table).
    pub fn configure(&self, node_keys: &str, rest: &str) {
        let text = format!("[node]\napi = \"{API}\"\n{node_keys}\n\n{rest}\n");
        std::fs::write(self.node.dir.join("config.toml"), &text).expect("writing config.toml");
        let out = self.cli(&["check-config"]);
        assert!(
            out.status.success(),
            "{}: the config is refused: {}\n{text}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs the CLI inside the node's namespace.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns, BIN, "--dir"])
            .arg(&self.node.dir)
            .args(args)
            .env("FRAUDMESH_LOG", "warn")
            .output()
            .expect("running fraudmesh")
    }

    /// Runs a `--json` CLI command, `None` when it fails (the node not running).
    pub fn try_json(&self, args: &[&str]) -> Option<Value> {
        let out = self.cli(args);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Runs a `--json` CLI command and parses its document; panics with the log on
    /// failure.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{}: fraudmesh {args:?} failed: {}\n--- log ---\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr),
            tail(&self.node.log(), 80)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: {args:?} printed non-JSON ({e}): {}",
                self.name,
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Starts `fraudmesh run` inside the namespace and waits until its API answers.
    pub fn start(&mut self) {
        assert!(self.node.child.is_none(), "{} already running", self.name);
        let _ = std::fs::remove_file(self.node.dir.join("node.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.node.dir.join("node.log"))
            .expect("log file");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, BIN, "--dir"])
            .arg(&self.node.dir)
            .arg("run")
            .env("FRAUDMESH_LOG", "info,fraudmesh_node=debug")
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe. `ip netns exec` execs the node, which keeps
        // the death signal: the node dies with the test thread even if the test
        // process is killed before its guards run.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.node.child = Some(cmd.spawn().expect("spawning fraudmesh run"));
        let started = Instant::now();
        loop {
            if let Some(status) = self.node.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "{} exited early with {status}: {}",
                    self.name,
                    tail(&self.node.log(), 80)
                );
            }
            if self.node.dir.join("node.json").exists() && self.try_json(&["status", "--json"]).is_some() {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{}: the API did not answer within {DEADLINE:?}: {}",
                self.name,
                tail(&self.node.log(), 80)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.node.stop()
    }

    /// `status --json`.
    pub fn status(&self) -> Value {
        self.json(&["status", "--json"])
    }

    /// `peers --json`: the entry of `peer`, if connected.
    pub fn peer(&self, peer: &str) -> Option<Value> {
        self.json(&["peers", "--json"])["peers"]
            .as_array()?
            .iter()
            .find(|p| p["peer_id"] == peer)
            .cloned()
    }

    /// `status --json`'s `reachability`.
    pub fn reachability(&self) -> String {
        self.status()["reachability"].as_str().unwrap_or("(none)").to_string()
    }

    /// `status --json`'s `relays`.
    pub fn relays(&self) -> Vec<String> {
        self.status()["relays"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// Reports `target` (kind scan) through the CLI.
    pub fn report(&self, target: &str) {
        let out = self.cli(&["report", target, "--kind", "scan", "--reason", "natlab"]);
        assert!(
            out.status.success(),
            "{}: report {target} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// When the node began blocking `target` (`since` in `list --json`), if it does.
    pub fn blocked_since(&self, target: &str) -> Option<u64> {
        self.try_json(&["list", "--json"])?["blocked"]
            .as_array()?
            .iter()
            .find(|b| b["target"] == target)
            .and_then(|b| b["since"].as_u64())
    }

    /// The node's `/metrics`, fetched from inside its namespace.
    pub fn scrape(&self) -> Scrape {
        Scrape::parse(&in_netns(&self.ns, || http_get(API, "/metrics")))
    }

    /// A metric: the sum of the samples named `name` carrying every label of `labels`,
    /// 0 when there is none.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.scrape().value(name, labels).unwrap_or(0.0)
    }

    /// What to show when a wait on this node fails: status, peers, the log's tail.
    pub fn diagnose(&self) -> String {
        let show = |args: &[&str]| {
            self.try_json(args)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "(no answer)".into())
        };
        format!(
            "=== {} ({}) ===\nstatus: {}\npeers: {}\n--- log (tail) ---\n{}\n",
            self.name,
            self.id(),
            show(&["status", "--json"]),
            show(&["peers", "--json"]),
            tail(&self.node.log(), 60)
        )
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls `f` (every 50 ms) until it returns `Some`; after `deadline`, panics with `what`
/// and every node's status, peers and log.
pub fn wait_nodes<T>(what: &str, deadline: Duration, nodes: &[&LabNode], mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > deadline {
            let all: String = nodes.iter().map(|n| n.diagnose()).collect();
            panic!("timed out after {deadline:?} waiting for {what}\n{all}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The seed's full addresses (TCP and QUIC over IPv4) for site configs.
pub fn seed_addrs(seed: &LabNode) -> Vec<String> {
    vec![
        format!("/ip4/{SEED4}/tcp/{P2P_PORT}/p2p/{}", seed.id()),
        format!("/ip4/{SEED4}/udp/{P2P_PORT}/quic-v1/p2p/{}", seed.id()),
    ]
}

/// `[[trust.peers]]` entries trusting `peers` with weight 1.
pub fn trust(peers: &[&str]) -> String {
    peers
        .iter()
        .map(|p| format!("[[trust.peers]]\npeer_id = \"{p}\"\nweight = 1.0\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A TOML array of strings.
pub fn toml_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("strings as JSON")
}
