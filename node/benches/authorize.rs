//! Call authorisation latency on loopback: a real `fraudmesh run` process with
//! `[calls.limits]` set, driven at a steady 1,000 `POST /v1/calls/authorize` per second
//! for 10 s over kept-alive HTTP connections (every request counted and stored in sled
//! before its answer), then a short burst at 5,000/s. Prints p50/p99/max per rate; the
//! goal is p99 under 2 ms at 1,000/s. The pure core's decisions per second are in
//! `cargo bench -p fraudmesh --bench calls`.
//!
//! Run: `cargo bench -p fraudmesh-node --bench authorize`.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fraudmesh");
const NUMBERS: [&str; 5] = [
    "044 668 18 00",
    "0900 123 456",
    "+49 30 901820",
    "0800 123 456",
    "+41 79 123 45 67",
];

async fn drive(api: &str, rate: u64, seconds: u64, offset: u64) -> anyhow::Result<Vec<f64>> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let url = Arc::new(format!("http://{api}/v1/calls/authorize"));
    let total = rate * seconds;
    let mut tasks = Vec::with_capacity(total as usize);
    let start = tokio::time::Instant::now();
    for i in 0..total {
        tokio::time::sleep_until(start + Duration::from_micros(i * 1_000_000 / rate)).await;
        let (client, url) = (client.clone(), url.clone());
        let n = offset + i;
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({
                "account": format!("{}", 1000 + n % 100),
                "from": "1000",
                "to": NUMBERS[(n % 5) as usize],
                "source_ip": "192.0.2.10",
                "call_id": format!("bench-{n}"),
            });
            let t = Instant::now();
            let r = client.post(url.as_str()).json(&body).send().await?;
            let v: serde_json::Value = r.json().await?;
            anyhow::ensure!(v["rule"] != "node-error", "the node could not decide: {v}");
            anyhow::Ok(t.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut ms = Vec::with_capacity(tasks.len());
    for t in tasks {
        ms.push(t.await??);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("node");
    let dir_s = dir.to_str().unwrap_or_default().to_string();
    let init = Command::new(BIN)
        .args([
            "--dir",
            &dir_s,
            "init",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
        ])
        .output()?;
    anyhow::ensure!(init.status.success(), "init failed");
    std::fs::write(
        dir.join("config.toml"),
        "[node]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\napi = \"127.0.0.1:0\"\n\n[calls.limits]\ncalls_per_hour = 100000\nminutes_per_day = 100000\n",
    )?;
    let mut child = Command::new(BIN)
        .args(["--dir", &dir_s, "run"])
        .env("FRAUDMESH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let api = loop {
        if let Some(api) = common::status(BIN, &dir).and_then(|_| {
            fraudmesh_node::daemon::dir::NodeDir::new(&dir)
                .read_runtime()
                .map(|rt| rt.api)
        }) {
            break api;
        }
        anyhow::ensure!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(async {
        // Warm up connections and the node.
        drive(&api, 500, 1, 1_000_000).await?;
        println!("POST /v1/calls/authorize on loopback (each answer stored in sled first)");
        for (rate, secs, offset) in [(1000u64, 10u64, 0u64), (5000, 2, 100_000)] {
            let ms = drive(&api, rate, secs, offset).await?;
            println!(
                "{rate:>5}/s for {secs:>2}s: {:>6} requests  p50 {:>6.3} ms  p99 {:>6.3} ms  max {:>7.3} ms",
                ms.len(),
                common::percentile(&ms, 0.5),
                common::percentile(&ms, 0.99),
                ms[ms.len() - 1]
            );
        }
        anyhow::Ok(())
    });
    let _ = child.kill();
    let _ = child.wait();
    result
}
