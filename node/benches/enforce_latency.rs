//! Latency from a decision change to each enforcer having applied it: a node stack (engine,
//! store, network over the memory transport) takes local reports one at a time; each
//! enforcer is wrapped so it notes when its apply returned. The figure per report runs
//! from just before the report (so it also holds signing and merging) to the enforcer's
//! apply having returned: an upper bound of "change → applied".
//!
//! Enforcers measured: `null` (does nothing: the runner's own overhead), `file` (a plain
//! list rewritten atomically on every change, on tmpfs when /dev/shm exists), and
//! `nftables` when run as root with `nft` and `ip` (inside a network namespace this bench
//! creates and removes; never the host's firewall).
//!
//! Run: `cargo bench -p fraudmesh-node --bench enforce_latency`. Prints p50/p99/max.

mod common;

use common::netns::{self, Netns};
use fraudmesh::identity::Identity;
use fraudmesh::sighting::{Draft, Evidence, Kind};
use fraudmesh::target::Target;
use fraudmesh::Millis;
use fraudmesh_node::daemon::config::Config;
use fraudmesh_node::daemon::Stack;
use fraudmesh_node::enforce::files::{FilesConfig, FilesEnforcer, Format};
use fraudmesh_node::enforce::nftables::{NftablesConfig, NftablesEnforcer};
use fraudmesh_node::enforce::{Enforcer, Enforcers, NetBlock, Removed};
use fraudmesh_node::engine::store::SledStore;
use fraudmesh_node::net::Transport;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Reports measured per enforcer.
const REPORTS: usize = 500;

/// Wraps an enforcer and sends the time each apply (or replace) returned successfully.
struct Timed<E> {
    inner: E,
    applied: mpsc::UnboundedSender<Instant>,
}

impl<E: Enforcer> Enforcer for Timed<E> {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn replace(&mut self, entries: &[NetBlock], now: Millis) -> anyhow::Result<()> {
        self.inner.replace(entries, now).await?;
        let _ = self.applied.send(Instant::now());
        Ok(())
    }

    async fn apply(&mut self, set: &[NetBlock], removed: &[Removed], now: Millis) -> anyhow::Result<()> {
        self.inner.apply(set, removed, now).await?;
        let _ = self.applied.send(Instant::now());
        Ok(())
    }

    async fn remove(&mut self) -> anyhow::Result<()> {
        self.inner.remove().await
    }

    fn min_interval(&self) -> Duration {
        self.inner.min_interval()
    }
}

/// Does nothing.
struct Null;

impl Enforcer for Null {
    fn name(&self) -> String {
        "null".into()
    }
    async fn replace(&mut self, _: &[NetBlock], _: Millis) -> anyhow::Result<()> {
        Ok(())
    }
    async fn apply(&mut self, _: &[NetBlock], _: &[Removed], _: Millis) -> anyhow::Result<()> {
        Ok(())
    }
    async fn remove(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

fn draft(i: usize) -> Draft {
    let ip = Ipv4Addr::new(198, 18, (i / 250) as u8, (i % 250 + 1) as u8);
    Draft {
        target: Target::host(IpAddr::V4(ip)),
        kind: Kind::Scan,
        observed_at: fraudmesh_node::now_ms(),
        ttl_s: 3600,
        count: 1,
        evidence: Evidence::default(),
    }
}

async fn measure<E: Enforcer>(name: &str, enforcer: E, offset: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut c = Config::default();
    c.node.listen = vec![format!("/memory/{}", 4000 + offset)];
    let identity = Identity::from_secret([9; 32]);
    let settings = c.settings(identity.public())?;
    let store = SledStore::open(&tmp.path().join("db"), settings.cache_bytes)?;
    let stack = Stack::start(identity, &settings, Box::new(store), Transport::Memory)?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stop_rx) = watch::channel(false);
    let mut enforcers = Enforcers::default();
    enforcers.spawn(
        Timed {
            inner: enforcer,
            applied: tx,
        },
        &stack.engine,
        &stack.metrics,
        &stop_rx,
    );
    // The runner's first act is a full replace (of the empty list): wait for it.
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await?;
    let mut ms = Vec::with_capacity(REPORTS);
    for i in 0..REPORTS {
        let t0 = Instant::now();
        stack.engine.report(vec![draft(offset * REPORTS + i)]).await?;
        let t1 = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("{name}: the enforcer stopped"))?;
        ms.push(t1.saturating_duration_since(t0).as_secs_f64() * 1000.0);
        // Drain applies that may trail (none expected: one report, one apply).
        while rx.try_recv().is_ok() {}
    }
    let _ = stop.send(true);
    enforcers.join().await;
    stack.stop().await;
    ms.sort_by(f64::total_cmp);
    println!(
        "{name:<10} reports {REPORTS:>4}  p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms",
        common::percentile(&ms, 0.5),
        common::percentile(&ms, 0.99),
        ms[ms.len() - 1]
    );
    Ok(())
}

fn file_enforcer(dir: &std::path::Path) -> FilesEnforcer {
    FilesEnforcer::new(FilesConfig {
        path: dir.join("fraudmesh-bench.txt"),
        format: Format::Plain,
        header: String::new(),
        line: "{value}".into(),
        footer: String::new(),
        ipset_name: "fraudmesh".into(),
        hook: Vec::new(),
        min_interval: Duration::ZERO,
    })
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing: only run
    // the measurement under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        println!("decision change → enforcer applied ({REPORTS} reports, one at a time)");
        measure("null", Null, 0).await?;
        let shm = std::path::Path::new("/dev/shm");
        let tmp = if shm.is_dir() {
            tempfile::tempdir_in(shm)?
        } else {
            tempfile::tempdir()?
        };
        measure("file", file_enforcer(tmp.path()), 1).await?;
        // In a network namespace of its own, never the host's firewall.
        match netns::missing(&["ip", "nft"]) {
            None => {
                let ns = Netns::new("latency");
                let config = NftablesConfig {
                    command: ns.prefix().into_iter().chain(["nft".to_string()]).collect(),
                    ..NftablesConfig::default()
                };
                measure("nftables", NftablesEnforcer::new(config), 2).await?;
            }
            Some(why) => println!("nftables   skipped: {why}"),
        }
        anyhow::Ok(())
    })
}
