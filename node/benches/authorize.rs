//! Call authorisation latency on loopback, quiet and under load, in one run. A real
//! `fraudmesh run` process with `[calls.limits]` set is driven at a steady 1,000
//! `POST /v1/calls/authorize` per second over kept-alive HTTP connections (every request
//! counted and flushed to the call counters' store before its answer):
//!
//! - (a) quiet: 10 s with nothing else going on;
//! - (b) loaded: 10 s while the node catches up 100,000 records from a peer through
//!   `/fraudmesh/sync/1` (the peer is its seed, refused by fault injection until this
//!   phase starts) and a gossip peer floods it with sightings signed by 500 fresh stranger
//!   keys (5,000 sightings/s);
//!
//! then a short burst at 5,000/s. For (a) and (b) it prints p50/p99/max, the answers
//! with rule `node-error` (the node could not decide within 500 ms and answered per
//! `calls.on_error`, by default allowing the call uncounted) and, from the node's
//! `/metrics`, how many records it caught up and how many stranger sightings it received,
//! so the load is shown to be real. Goal: p99 under 5 ms and no `node-error` in both.
//! The pure core's decisions per second are in `cargo bench -p fraudmesh --bench calls`.
//!
//! Run: `cargo bench -p fraudmesh-node --bench authorize [-- --records N] [--accounts N]`
//! (default 100,000 records and 100 calling accounts; fewer accounts each have a longer
//! history).
//! `FRAUDMESH_BENCH_BIN=/path/to/fraudmesh` drives another build of the node (e.g. an
//! older one, to compare); the bench's own processes use the one built with it.

mod common;

use fraudmesh::identity::Identity;
use fraudmesh::proto;
use fraudmesh::sighting::{sign, Draft, Evidence, Kind};
use fraudmesh::target::Target;
use fraudmesh_node::daemon::dir::NodeDir;
use fraudmesh_node::metrics::Scrape;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr};
use prost::Message;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

const BUILT: &str = env!("CARGO_BIN_EXE_fraudmesh");
const NUMBERS: [&str; 5] = [
    "044 668 18 00",
    "0900 123 456",
    "+49 30 901820",
    "0800 123 456",
    "+41 79 123 45 67",
];
/// Requests per second and seconds of each phase.
const RATE: u64 = 1000;
const SECONDS: u64 = 10;
/// Fresh stranger keys of the flood, sightings per second and per gossip message.
const FLOOD_KEYS: usize = 500;
const FLOOD_RATE: usize = 5000;
const FLOOD_PER_MESSAGE: usize = 50;

/// The node binary driven.
fn bin() -> String {
    std::env::var("FRAUDMESH_BENCH_BIN").unwrap_or_else(|_| BUILT.to_string())
}

/// What one phase of requests saw.
struct Phase {
    /// Latencies of the answered requests, ms, sorted.
    ms: Vec<f64>,
    /// Answers with rule `node-error` (an on_error fallback).
    node_errors: usize,
    /// Requests without a 200 JSON answer.
    failed: usize,
}

impl Phase {
    fn line(&self, name: &str) -> String {
        let ms = &self.ms;
        if ms.is_empty() {
            return format!("{name:<22} no answers ({} failed)", self.failed);
        }
        format!(
            "{name:<22} {:>6} answers  p50 {:>6.3} ms  p99 {:>7.3} ms  max {:>8.3} ms  node-error {}  failed {}",
            ms.len(),
            common::percentile(ms, 0.5),
            common::percentile(ms, 0.99),
            ms[ms.len() - 1],
            self.node_errors,
            self.failed,
        )
    }
}

/// How the requests are sent.
struct Driver {
    client: reqwest::Client,
    api: String,
    token: Option<String>,
    /// Calling accounts (1000, 1001, …); fewer accounts, longer histories.
    accounts: u64,
}

/// `rate` authorisations per second for `seconds`, each on its own schedule (a slow
/// answer does not delay the next request), round robin over the driver's accounts.
async fn drive(d: &Driver, rate: u64, seconds: u64, offset: u64) -> Phase {
    let (client, api, token, accounts) = (&d.client, &d.api, d.token.as_deref(), d.accounts);
    let url = Arc::new(format!("http://{api}/v1/calls/authorize"));
    let auth: Option<Arc<str>> = token.map(|t| format!("Bearer {t}").into());
    let total = rate * seconds;
    let mut tasks = Vec::with_capacity(total as usize);
    let start = tokio::time::Instant::now();
    for i in 0..total {
        tokio::time::sleep_until(start + Duration::from_micros(i * 1_000_000 / rate)).await;
        let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
        let n = offset + i;
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({
                "account": format!("{}", 1000 + n % accounts),
                "from": "1000",
                "to": NUMBERS[(n % 5) as usize],
                "source_ip": "192.0.2.10",
                "call_id": format!("bench-{n}"),
            });
            let t = Instant::now();
            let mut req = client.post(url.as_str()).json(&body);
            if let Some(a) = &auth {
                req = req.header("Authorization", a.as_ref());
            }
            let r = req.send().await.ok()?;
            if r.status() != 200 {
                return None;
            }
            let v: serde_json::Value = r.json().await.ok()?;
            Some((t.elapsed().as_secs_f64() * 1000.0, v["rule"] == "node-error"))
        }));
    }
    let mut phase = Phase {
        ms: Vec::with_capacity(tasks.len()),
        node_errors: 0,
        failed: 0,
    };
    for t in tasks {
        match t.await.ok().flatten() {
            Some((ms, node_error)) => {
                phase.ms.push(ms);
                phase.node_errors += usize::from(node_error);
            }
            None => phase.failed += 1,
        }
    }
    phase.ms.sort_by(f64::total_cmp);
    phase
}

/// A running node's `/metrics`, parsed (empty when it does not answer).
fn scrape(dir: &Path) -> Scrape {
    let Some(api) = NodeDir::new(dir).read_runtime().map(|rt| rt.api) else {
        return Scrape::default();
    };
    let Ok(mut s) = std::net::TcpStream::connect(&api) else {
        return Scrape::default();
    };
    use std::io::{Read, Write};
    let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    Scrape::parse(response.split_once("\r\n\r\n").map_or("", |(_, b)| b))
}

/// The node's counters a phase reports, read before and after it.
#[derive(Clone, Copy, Default)]
struct Counters {
    records: f64,
    fetched: f64,
    gossip_accepted: f64,
    rejected: f64,
    duplicates: f64,
    stranger_records: f64,
    fallbacks: f64,
    flushes: f64,
    flush_seconds: f64,
    /// The flush histogram: (upper bound, cumulative count).
    flush_buckets: [(f64, f64); 16],
}

impl Counters {
    fn read(dir: &Path) -> Self {
        let s = scrape(dir);
        Self {
            records: s.sum("fraudmesh_ledger_records"),
            fetched: s.sum("fraudmesh_sync_records_fetched_total"),
            gossip_accepted: s
                .value("fraudmesh_sightings_accepted_total", &[("source", "gossip")])
                .unwrap_or(0.0),
            rejected: s.sum("fraudmesh_sightings_rejected_total"),
            duplicates: s.sum("fraudmesh_sightings_duplicate_total"),
            stranger_records: s.sum("fraudmesh_stranger_records"),
            fallbacks: s.sum("fraudmesh_call_fallbacks_total"),
            flushes: s.sum("fraudmesh_call_store_flush_seconds_count"),
            flush_seconds: s.sum("fraudmesh_call_store_flush_seconds_sum"),
            flush_buckets: {
                let mut b = [(f64::INFINITY, 0.0); 16];
                for (slot, x) in b.iter_mut().zip(s.samples("fraudmesh_call_store_flush_seconds_bucket")) {
                    let le = x.label("le").and_then(|l| l.parse().ok()).unwrap_or(f64::INFINITY);
                    *slot = (le, x.value);
                }
                b
            },
        }
    }

    /// Flushes since `before` by duration: "≤1 ms: n, ≤2 ms: n, …" (buckets that got any).
    fn flush_spread(&self, before: &Self) -> String {
        let mut below = 0.0;
        let mut out = Vec::new();
        for ((le, now), (_, then)) in self.flush_buckets.iter().zip(&before.flush_buckets) {
            let n = now - then - below;
            below = now - then;
            if n > 0.0 {
                out.push(format!("≤{} ms: {n}", le * 1000.0));
            }
        }
        out.join(", ")
    }

    /// The bucket bound under which 99 % of the flushes since `before` took, ms.
    fn flush_p99_ms(&self, before: &Self) -> f64 {
        let total = self.flushes - before.flushes;
        self.flush_buckets
            .iter()
            .zip(&before.flush_buckets)
            .find(|((_, now), (_, then))| now - then >= 0.99 * total)
            .map_or(f64::INFINITY, |((le, _), _)| le * 1000.0)
    }

    fn since(&self, before: &Self) -> String {
        let flushes = self.flushes - before.flushes;
        let flush = if flushes > 0.0 {
            format!(
                "{flushes:.0} call store flushes, mean {:.3} ms, p99 under {} ms ({})",
                (self.flush_seconds - before.flush_seconds) / flushes * 1000.0,
                self.flush_p99_ms(before),
                self.flush_spread(before)
            )
        } else {
            "no call store flush metric".to_string()
        };
        format!(
            "records fetched by sync {:.0} (ledger {:.0} → {:.0}); stranger sightings by gossip: {:.0} accepted, \
             {:.0} refused, {:.0} duplicates (stranger records held {:.0}); on_error fallbacks (metric) {:.0}; {flush}",
            self.fetched - before.fetched,
            before.records,
            self.records,
            self.gossip_accepted - before.gossip_accepted,
            self.rejected - before.rejected,
            self.duplicates - before.duplicates,
            self.stranger_records,
            self.fallbacks - before.fallbacks,
        )
    }
}

/// A bare gossipsub peer (not a fraudmesh node) connected to `node`: what it is handed
/// it publishes in order, holding what gossipsub cannot queue yet. Returns once the node
/// subscribed, with the sender and the count of messages handed to gossipsub.
async fn flood_peer(node: Multiaddr) -> anyhow::Result<(mpsc::Sender<Vec<u8>>, Arc<AtomicUsize>)> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|_| {
            let cfg = gossipsub::ConfigBuilder::default()
                .validation_mode(ValidationMode::Anonymous)
                .message_id_fn(|m: &gossipsub::Message| MessageId::from(Sha256::digest(&m.data).to_vec()))
                .max_transmit_size(128 * 1024)
                .heartbeat_initial_delay(Duration::from_millis(100))
                .publish_queue_duration(Duration::from_secs(60))
                .build()?;
            let b: gossipsub::Behaviour = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, cfg)?;
            Ok(b)
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    let topic = IdentTopic::new(fraudmesh_node::net::TOPIC);
    swarm.behaviour_mut().subscribe(&topic)?;
    swarm.dial(node)?;
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4096);
    let (ready_tx, mut ready) = watch::channel(false);
    let published = Arc::new(AtomicUsize::new(0));
    let count = published.clone();
    tokio::spawn(async move {
        let mut backlog: VecDeque<Vec<u8>> = VecDeque::new();
        let mut retry = tokio::time::interval(Duration::from_millis(10));
        loop {
            tokio::select! {
                Some(data) = rx.recv(), if backlog.len() < 4096 => backlog.push_back(data),
                _ = retry.tick(), if !backlog.is_empty() => {}
                ev = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(gossipsub::Event::Subscribed { .. }) = ev {
                        let _ = ready_tx.send(true);
                    }
                    continue;
                }
            }
            while let Some(data) = backlog.front() {
                match swarm.behaviour_mut().publish(topic.clone(), data.clone()) {
                    Ok(_) | Err(gossipsub::PublishError::Duplicate) => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(
                        gossipsub::PublishError::AllQueuesFull(_) | gossipsub::PublishError::NoPeersSubscribedToTopic,
                    ) => break,
                    Err(_) => {}
                }
                backlog.pop_front();
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), ready.wait_for(|r| *r)).await??;
    Ok((tx, published))
}

/// The flood's messages: `n` sightings of distinct hosts in 12.0.0.0/8, each signed by one
/// of [`FLOOD_KEYS`] fresh keys, [`FLOOD_PER_MESSAGE`] to a message.
fn flood_messages(n: usize) -> Vec<Vec<u8>> {
    let keys: Vec<Identity> = (0..FLOOD_KEYS).map(|_| Identity::from_secret(rand::random())).collect();
    let now = fraudmesh_node::now_ms();
    (0..n.div_ceil(FLOOD_PER_MESSAGE))
        .map(|m| {
            let sightings = (m * FLOOD_PER_MESSAGE..((m + 1) * FLOOD_PER_MESSAGE).min(n))
                .map(|i| {
                    sign(
                        &keys[i % FLOOD_KEYS],
                        Draft {
                            target: Target::host(Ipv4Addr::from(0x0c00_0000 + i as u32).into()),
                            kind: Kind::Scan,
                            observed_at: now,
                            ttl_s: 86_400,
                            count: 1,
                            evidence: Evidence::default(),
                        },
                    )
                    .to_proto()
                })
                .collect();
            proto::Envelope {
                sightings,
                endorsements: vec![],
            }
            .encode_to_vec()
        })
        .collect()
}

/// Starts `fraudmesh run` on `dir`, its warnings and errors to `DIR.log`.
fn run_node(bin: &str, dir: &Path) -> anyhow::Result<Child> {
    Ok(Command::new(bin)
        .args(["--dir", dir.to_str().unwrap_or_default(), "run"])
        .env("FRAUDMESH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.with_extension("log"))?)
        .spawn()?)
}

/// The end of a node's log, for errors.
fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn init(bin: &str, dir: &Path, listen: &str) -> anyhow::Result<Vec<String>> {
    let out = Command::new(bin)
        .args(["--dir", dir.to_str().unwrap_or_default(), "init", "--listen", listen])
        .args(["--api", "127.0.0.1:0"])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.lines().map(str::to_string).collect())
}

/// Polls `f` every 50 ms until it gives a value or `limit` passes.
fn wait<T>(what: &str, limit: Duration, f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    poll(what, limit, Duration::from_millis(50), f)
}

/// Polls `f` every `every` until it gives a value or `limit` passes.
fn poll<T>(what: &str, limit: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
        std::thread::sleep(every);
    }
}

/// Kills the bench's node processes however the bench ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return Ok(());
    }
    let records: usize = args
        .iter()
        .position(|a| a == "--records")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(100_000);
    let accounts: u64 = args
        .iter()
        .position(|a| a == "--accounts")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(100);
    let bin = bin();
    let tmp = tempfile::tempdir()?;
    let (node, source) = (tmp.path().join("node"), tmp.path().join("source"));
    let mut children = Children(Vec::new());

    // Both nodes trust the bench reporters: the peer holds all their records (strangers'
    // would be capped) and they count toward the node's blocks, as a real catch-up's do.
    let trusted: String = common::reporters()
        .iter()
        .map(|r| format!("[[trust.peers]]\npeer_id = \"{}\"\n", r.public().peer_id()))
        .collect();

    // The peer to catch up from, on a port known before it runs (the node's seed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let lines = init(BUILT, &source, &listen)?;
    let (source_id, source_addr) = (lines[0].clone(), lines[1].clone());
    std::fs::write(
        source.join("config.toml"),
        format!("[node]\nlisten = [\"{listen}\"]\napi = \"127.0.0.1:0\"\n\n{trusted}"),
    )?;
    eprintln!("writing {records} records into the peer's store...");
    common::fill_dir(&source, records);

    // The node: the peer is its seed, refused until (b).
    init(&bin, &node, "/ip4/127.0.0.1/tcp/0")?;
    std::fs::write(
        node.join("config.toml"),
        format!(
            "[node]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\napi = \"127.0.0.1:0\"\nseeds = [\"{source_addr}\"]\n\n\
             [debug]\nfault_injection = true\n\n\
             [calls.limits]\ncalls_per_hour = 100000\nminutes_per_day = 100000\n\n{trusted}"
        ),
    )?;
    children.0.push(run_node(&bin, &node)?);
    let dir = NodeDir::new(&node);
    let runtime = wait("the node's start", Duration::from_secs(30), || {
        common::status(&bin, &node).and_then(|_| dir.read_runtime())
    })
    .map_err(|e| e.context(log_tail(&node)))?;
    let admin = dir.load_token()?;
    let calls_token: Option<String> = std::fs::read_to_string(node.join("calls.token"))
        .ok()
        .map(|t| t.trim().to_string());

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let driver = Driver {
        client: client.clone(),
        api: runtime.api.clone(),
        token: calls_token,
        accounts,
    };
    let refuse = |peers: Vec<String>| {
        let (client, api, admin) = (client.clone(), runtime.api.clone(), admin.clone());
        async move {
            let r = client
                .put(format!("http://{api}/v1/debug/refuse"))
                .header("Authorization", format!("Bearer {admin}"))
                .json(&serde_json::json!({ "peers": peers }))
                .send()
                .await?;
            anyhow::ensure!(r.status() == 200, "refuse: {}", r.text().await?);
            anyhow::Ok(())
        }
    };
    rt.block_on(refuse(vec![source_id.clone()]))?;
    children.0.push(run_node(BUILT, &source)?);
    let mut seen = None;
    wait("the peer loading its records", Duration::from_secs(300), || {
        seen = common::status(BUILT, &source).map(|s| s["records"].clone());
        (seen.as_ref()?.as_u64()? == records as u64).then_some(())
    })
    .map_err(|e| e.context(format!("records: {seen:?}; {}", log_tail(&source))))?;

    eprintln!("signing the flood...");
    let flood = flood_messages(FLOOD_RATE * SECONDS as usize);
    let node_addr: Multiaddr = runtime.listen[0].parse()?;

    let result = rt.block_on(async {
        let (flood_tx, published) = flood_peer(node_addr).await?;
        // Warm up connections and the node.
        drive(&driver, 500, 1, 1_000_000).await;
        println!(
            "POST /v1/calls/authorize at {RATE}/s for {SECONDS} s on loopback from {accounts} accounts (each answer flushed to the call store first){}",
            if bin == BUILT { String::new() } else { format!(", node {bin}") }
        );

        let before = Counters::read(&node);
        let quiet = drive(&driver, RATE, SECONDS, 0).await;
        let after = Counters::read(&node);
        println!("{}", quiet.line("(a) quiet"));
        println!("    node: {}", after.since(&before));

        let before = Counters::read(&node);
        refuse(Vec::new()).await?;
        let catchup_started = Instant::now();
        let node_dir = node.clone();
        let caught_up = tokio::task::spawn_blocking(move || {
            poll("the catch-up", Duration::from_secs(120), Duration::from_millis(250), || {
                (Counters::read(&node_dir).fetched >= records as f64).then_some(())
            })
            .map(|()| catchup_started.elapsed())
        });
        let sender = tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let per_s = (FLOOD_RATE / FLOOD_PER_MESSAGE) as u64;
            for (i, m) in flood.into_iter().enumerate() {
                tokio::time::sleep_until(start + Duration::from_micros(i as u64 * 1_000_000 / per_s)).await;
                if flood_tx.send(m).await.is_err() {
                    break;
                }
            }
        });
        let loaded = drive(&driver, RATE, SECONDS, 100_000).await;
        let after = Counters::read(&node);
        let _ = sender.await;
        println!("{}", loaded.line("(b) catch-up + flood"));
        println!("    node: {}", after.since(&before));
        println!(
            "    flood: {} messages of {FLOOD_PER_MESSAGE} sightings from {FLOOD_KEYS} fresh keys handed to gossipsub ({FLOOD_RATE} sightings/s offered)",
            published.load(Ordering::Relaxed)
        );
        match caught_up.await? {
            Ok(t) => println!("    catch-up of {records} records complete {t:.1?} after (b) began"),
            Err(e) => println!("    {e}"),
        }

        let burst = drive(&driver, 5000, 2, 200_000).await;
        println!("{}", burst.line("burst 5,000/s for 2 s"));
        anyhow::Ok(())
    });
    drop(children);
    result
}
