//! Resident memory of a node holding N active records (default 1,000,000).
//!
//! Three measurements, each in a fresh process so they do not share a heap:
//! 1. `ingest-null`: the engine alone (ledger, decisions, blocklist snapshot) with a store
//!    that keeps nothing — the node's own share.
//! 2. `ingest-sled`: the same with the real sled store — the difference is sled's share
//!    while records stream in.
//! 3. `node`: a real `fraudmesh run` started on the directory written by (2), which loads
//!    every record from sled at start — what an operator sees after a restart.
//!
//! Run with `cargo bench -p fraudmesh-node --bench memory [-- N]`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn rss_of(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn child(mode: &str, n: usize, dir: &Path) {
    let engine = match mode {
        "ingest-null" => common::ingest(n, None),
        "ingest-sled" => {
            let mut e = common::ingest(n, Some(&dir.join("data")));
            e.flush().expect("flush");
            e
        }
        other => panic!("unknown mode {other}"),
    };
    println!("RESULT {} {}", engine.records(), rss_of("self"));
}

fn run_child(mode: &str, n: usize, dir: &Path) -> (u64, u64) {
    let out = Command::new(std::env::current_exe().expect("exe"))
        .args(["--child", mode, &n.to_string(), dir.to_str().expect("utf-8 dir")])
        .output()
        .expect("child");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT"))
        .unwrap_or_else(|| panic!("{mode} failed: {}", String::from_utf8_lossy(&out.stderr)));
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().expect("number"))
        .collect();
    (v[0], v[1])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2], args[3].parse().expect("n"), Path::new(&args[4]));
        return;
    }
    let n: usize = args.iter().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("node");
    std::fs::create_dir_all(&dir).expect("dir");
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);

    let (rec_null, rss_null) = run_child("ingest-null", n, &dir);
    let (rec_sled, rss_sled) = run_child("ingest-sled", n, &dir);

    // A real node on the directory the sled run wrote.
    let bin = env!("CARGO_BIN_EXE_fraudmesh");
    std::fs::write(
        dir.join("config.toml"),
        "[node]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\napi = \"127.0.0.1:0\"\n[store]\ncache_mb = 64\n",
    )
    .expect("config");
    let start = Instant::now();
    let mut node = Command::new(bin)
        .args(["--dir", dir.to_str().expect("utf-8"), "run"])
        .env("FRAUDMESH_LOG", "warn")
        .spawn()
        .expect("node");
    let pid = node.id().to_string();
    let mut loaded = 0;
    while start.elapsed() < Duration::from_secs(600) {
        let out = Command::new(bin)
            .args(["--dir", dir.to_str().expect("utf-8"), "status", "--json"])
            .output()
            .expect("status");
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            loaded = v["records"].as_u64().unwrap_or(0);
            if loaded as usize >= n {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let load_time = start.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let rss_node = rss_of(&pid);
    let _ = node.kill();
    let _ = node.wait();
    let disk: u64 = walk(&dir.join("data"));

    println!("memory with {n} active records");
    println!(
        "  engine, no store (ingest)  {rec_null:>8} records  RSS {:>7.1} MiB",
        mb(rss_null)
    );
    println!(
        "  engine + sled    (ingest)  {rec_sled:>8} records  RSS {:>7.1} MiB",
        mb(rss_sled)
    );
    println!(
        "  fraudmesh run (restart)    {loaded:>8} records  RSS {:>7.1} MiB  (loaded in {load_time:.1?})",
        mb(rss_node)
    );
    println!(
        "  sled's share while ingesting: {:.1} MiB",
        mb(rss_sled.saturating_sub(rss_null))
    );
    println!("  sled on disk: {:.1} MiB", mb(disk));
}

fn walk(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| {
                    let m = e.metadata().map(|m| (m.is_dir(), m.len())).unwrap_or((false, 0));
                    if m.0 {
                        walk(&e.path())
                    } else {
                        m.1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
