//! The nftables enforcer against raw `nft -f`, in a network namespace of its own (needs
//! root; never touches the host's firewall):
//! - 100,000 additions in one diff into an empty table, and a full replace with them,
//!   side by side with a raw `nft -f` of the same elements into an equivalent fresh
//!   table. Goal: at most 1.2x raw.
//! - 1,000 changes (500 additions, 250 renewals, 250 retractions) as one diff to sets
//!   holding 500,000 hosts. Goal: under 100 ms.
//!
//! Medians of several runs. Run: `cargo bench -p fraudmesh-node --bench nftables`.

mod common;

use common::netns::{self, Netns};
use fraudmesh_node::enforce::nftables::{NftablesConfig, NftablesEnforcer};
use fraudmesh_node::enforce::{Enforcer, NetBlock, Removed};
use fraudmesh_node::now_ms;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const RUNS: usize = 5;
const BIG: u32 = 500_000;

/// Raw `nft -f FILE` in the namespace; returns its wall time.
fn raw_nft(ns: &Netns, path: &Path) -> Duration {
    let t = Instant::now();
    ns.exec("nft", &["-f", path.to_str().expect("utf-8 path")]);
    t.elapsed()
}

fn hosts(from: u32, n: u32, until: u64) -> Vec<NetBlock> {
    (from..from + n)
        .map(|i| NetBlock {
            net: ipnet::IpNet::new(Ipv4Addr::from(i).into(), 32).expect("a /32"),
            until,
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The same table as the enforcer's (hosts sets and chains), for raw loads.
const RAW_TABLE: &str = "table inet rawbench\ndelete table inet rawbench\ntable inet rawbench {
\tset hosts4 { type ipv4_addr; flags timeout; }
\tset hosts6 { type ipv6_addr; flags timeout; }
\tchain input {
\t\ttype filter hook input priority -10; policy accept;
\t\tmeta l4proto { udp, tcp } th dport { 5060, 5061 } jump block
\t}
\tchain block {
\t\tip saddr @hosts4 drop
\t\tip6 saddr @hosts6 drop
\t}
}
";

fn raw_elements(entries: &[NetBlock]) -> String {
    let list: Vec<String> = entries
        .iter()
        .map(|e| format!("{} timeout 3600s", e.net.addr()))
        .collect();
    format!("add element inet rawbench hosts4 {{ {} }}\n", list.join(", "))
}

/// What every step works on: the enforcer writing into a namespace of the bench's own.
struct Bench {
    ns: Netns,
    rt: Runtime,
    enforcer: NftablesEnforcer,
    tmp: tempfile::TempDir,
    now: u64,
    /// When the entries' blocks end (an hour from `now`).
    until: u64,
    /// The first host address of the entries (10.0.0.0).
    base: u32,
}

/// The namespace, a runtime and the enforcer (root needed).
fn set_up() -> Bench {
    netns::require(&["ip", "nft"]);
    let ns = Netns::new("nftbench");
    let config = NftablesConfig {
        command: ns.prefix().into_iter().chain(["nft".to_string()]).collect(),
        ..NftablesConfig::default()
    };
    let now = now_ms();
    Bench {
        ns,
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
        enforcer: NftablesEnforcer::new(config),
        tmp: tempfile::tempdir().expect("tempdir"),
        now,
        until: now + 3_600_000,
        base: u32::from(Ipv4Addr::new(10, 0, 0, 0)),
    }
}

/// Wall times of one kind of load, one per run.
#[derive(Default)]
struct Additions {
    raw_add: Vec<Duration>,
    raw_full: Vec<Duration>,
    ours_diff: Vec<Duration>,
    ours_replace: Vec<Duration>,
}

/// 100,000 additions, `RUNS` times each: raw into an existing table and as a whole table,
/// ours as one diff into an empty table and as a replace.
fn measure_additions(b: &mut Bench) -> Additions {
    let entries = hosts(b.base, 100_000, b.until);
    let table_file = b.tmp.path().join("table.nft");
    let elements_file = b.tmp.path().join("elements.nft");
    let full_file = b.tmp.path().join("full.nft");
    std::fs::write(&table_file, RAW_TABLE).expect("write");
    std::fs::write(&elements_file, raw_elements(&entries)).expect("write");
    std::fs::write(&full_file, format!("{RAW_TABLE}{}", raw_elements(&entries))).expect("write");
    let mut t = Additions::default();
    for _ in 0..RUNS {
        raw_nft(&b.ns, &table_file);
        t.raw_add.push(raw_nft(&b.ns, &elements_file));
        b.ns.exec("nft", &["delete table inet rawbench"]);
        t.raw_full.push(raw_nft(&b.ns, &full_file));
        b.ns.exec("nft", &["delete table inet rawbench"]);

        let (e, now) = (&mut b.enforcer, b.now);
        b.rt.block_on(async {
            e.remove().await.expect("remove");
            e.replace(&[], now).await.expect("empty table");
            let start = Instant::now();
            e.apply(&entries, &[], now).await.expect("apply 100k");
            t.ours_diff.push(start.elapsed());
            e.remove().await.expect("remove");
            let start = Instant::now();
            e.replace(&entries, now).await.expect("replace 100k");
            t.ours_replace.push(start.elapsed());
        });
    }
    t
}

fn print_additions(t: Additions) {
    let (ra, rf, od, or) = (
        median(t.raw_add),
        median(t.raw_full),
        median(t.ours_diff),
        median(t.ours_replace),
    );
    println!("100,000 additions, median of {RUNS}:");
    println!(
        "  into an empty table: raw nft -f {}  enforcer diff {}  ratio {:.2} (goal <= 1.2)",
        ms(ra),
        ms(od),
        od.as_secs_f64() / ra.as_secs_f64()
    );
    println!(
        "  table from scratch:  raw nft -f {}  enforcer replace {}  ratio {:.2} (goal <= 1.2)",
        ms(rf),
        ms(or),
        or.as_secs_f64() / rf.as_secs_f64()
    );
}

/// Fills the sets with `BIG` hosts, then `RUNS` times 1,000 changes as one diff; prints
/// the fill and the median diff.
fn measure_changes_on_big_sets(b: &mut Bench) {
    let (base, until) = (b.base, b.until);
    let big = hosts(base, BIG, until);
    let t = Instant::now();
    b.rt.block_on(b.enforcer.replace(&big, b.now)).expect("replace 500k");
    println!("replace with {BIG} hosts: {}", ms(t.elapsed()));
    let mut diffs = vec![];
    let fresh = u32::from(Ipv4Addr::new(172, 16, 0, 0));
    for r in 0..RUNS as u32 {
        let added = hosts(fresh + r * 500, 500, until);
        let renewed = hosts(base + r * 500, 250, until + 60_000);
        let gone: Vec<Removed> = hosts(base + r * 500 + 250, 250, until)
            .iter()
            .map(|e| Removed {
                net: e.net,
                expired: false,
            })
            .collect();
        let set: Vec<NetBlock> = added.into_iter().chain(renewed).collect();
        let t = Instant::now();
        b.rt.block_on(b.enforcer.apply(&set, &gone, now_ms()))
            .expect("1000 changes");
        diffs.push(t.elapsed());
    }
    println!(
        "1,000 changes (500 added, 250 renewed, 250 lifted) on {BIG} hosts, median of {RUNS}: {} (goal < 100 ms)",
        ms(median(diffs))
    );
}

fn main() {
    let mut b = set_up();
    let additions = measure_additions(&mut b);
    print_additions(additions);
    measure_changes_on_big_sets(&mut b);
    b.rt.block_on(b.enforcer.remove()).expect("remove");
}
