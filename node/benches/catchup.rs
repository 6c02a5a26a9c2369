//! Wall time for a fresh node to catch up N records (default 100,000) from one peer over
//! loopback, through `/fraudmesh/sync/1`, with real `fraudmesh run` processes. Goal for
//! 100,000 records: under 5 s. Run: `cargo bench -p fraudmesh-node --bench catchup [-- N]`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fraudmesh");

fn start(dir: &std::path::Path) -> Child {
    Command::new(BIN)
        .args(["--dir", dir.to_str().expect("utf-8"), "run"])
        .env("FRAUDMESH_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start node")
}

fn wait_records(dir: &std::path::Path, n: u64, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if common::status(BIN, dir).and_then(|v| v["records"].as_u64()) == Some(n) {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, c) = (tmp.path().join("a"), tmp.path().join("c"));
    std::fs::create_dir_all(&a).expect("dir");
    std::fs::create_dir_all(&c).expect("dir");
    eprintln!("writing {n} records into the source node's store...");
    common::fill_dir(&a, n);
    let loopback = "[node]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\napi = \"127.0.0.1:0\"\n";
    std::fs::write(a.join("config.toml"), loopback).expect("config");
    let mut source = start(&a);
    wait_records(&a, n as u64, Duration::from_secs(120)).expect("source loads its records");
    let addr = common::status(BIN, &a).expect("status")["listen"][0]
        .as_str()
        .expect("listen")
        .to_string();

    let trusted: String = common::reporters()
        .iter()
        .map(|r| format!("[[trust.peers]]\npeer_id = \"{}\"\n", r.public().peer_id()))
        .collect();
    std::fs::write(
        c.join("config.toml"),
        format!("[node]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\napi = \"127.0.0.1:0\"\nseeds = [\"{addr}\"]\n{trusted}"),
    )
    .expect("config");
    let started = Instant::now();
    let mut fresh = start(&c);
    let done = wait_records(&c, n as u64, Duration::from_secs(120));
    let total = started.elapsed();
    let rounds = common::metric(&c, "fraudmesh_sync_rounds_total");
    let read = common::metric(&c, "fraudmesh_sync_bytes_received_total");
    let sent = common::metric(&c, "fraudmesh_sync_bytes_sent_total");
    let fetched = common::metric(&c, "fraudmesh_sync_records_fetched_total");
    let _ = fresh.kill();
    let _ = source.kill();
    let _ = fresh.wait();
    let _ = source.wait();
    match done {
        Some(_) => println!(
            "fresh node caught up {n} records in {:.2?} from process start \
             ({fetched} fetched by sync, {rounds} reconcile rounds, {:.1} MB read, {:.1} MB sent)",
            total,
            read / 1e6,
            sent / 1e6
        ),
        None => println!("fresh node did NOT catch up {n} records within 120 s ({fetched} fetched)"),
    }
}
