//! The nftables enforcer against raw `nft -f`, in a network namespace of its own (needs
//! root; never touches the host's firewall):
//! - 100,000 additions in one diff into an empty table, and a full replace with them,
//!   side by side with a raw `nft -f` of the same elements into an equivalent fresh
//!   table. Goal: at most 1.2x raw.
//! - 1,000 changes (500 additions, 250 renewals, 250 retractions) as one diff to sets
//!   holding 500,000 hosts. Goal: under 100 ms.
//!
//! Medians of several runs. Run: `cargo bench -p fraudmesh-node --bench nftables`.

use fraudmesh_node::enforce::nftables::{NftablesConfig, NftablesEnforcer};
use fraudmesh_node::enforce::{Enforcer, NetBlock, Removed};
use fraudmesh_node::now_ms;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const BIG: u32 = 500_000;

/// A network namespace deleted on drop.
struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Raw `nft -f FILE` in the namespace; returns its wall time.
fn raw_nft(ns: &str, path: &std::path::Path) -> Duration {
    let t = Instant::now();
    run(
        "ip",
        &["netns", "exec", ns, "nft", "-f", path.to_str().expect("utf-8 path")],
    );
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

fn main() {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this benchmark creates a network namespace and needs root"
    );
    let ns = Ns(format!("fm-bench-{}", std::process::id()));
    run("ip", &["netns", "add", &ns.0]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = NftablesConfig {
        command: vec!["ip".into(), "netns".into(), "exec".into(), ns.0.clone(), "nft".into()],
        ..NftablesConfig::default()
    };
    let mut e = NftablesEnforcer::new(config);
    let now = now_ms();
    let until = now + 3_600_000;
    let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    let entries = hosts(base, 100_000, until);

    // 100,000 additions: raw, ours as one diff into an empty table, ours as a replace.
    let table_file = tmp.path().join("table.nft");
    let elements_file = tmp.path().join("elements.nft");
    let full_file = tmp.path().join("full.nft");
    std::fs::write(&table_file, RAW_TABLE).expect("write");
    std::fs::write(&elements_file, raw_elements(&entries)).expect("write");
    std::fs::write(&full_file, format!("{RAW_TABLE}{}", raw_elements(&entries))).expect("write");
    let (mut raw_add, mut raw_full, mut ours_diff, mut ours_replace) = (vec![], vec![], vec![], vec![]);
    for _ in 0..RUNS {
        raw_nft(&ns.0, &table_file);
        raw_add.push(raw_nft(&ns.0, &elements_file));
        run("ip", &["netns", "exec", &ns.0, "nft", "delete table inet rawbench"]);
        raw_full.push(raw_nft(&ns.0, &full_file));
        run("ip", &["netns", "exec", &ns.0, "nft", "delete table inet rawbench"]);

        rt.block_on(async {
            e.remove().await.expect("remove");
            e.replace(&[], now).await.expect("empty table");
            let t = Instant::now();
            e.apply(&entries, &[], now).await.expect("apply 100k");
            ours_diff.push(t.elapsed());
            e.remove().await.expect("remove");
            let t = Instant::now();
            e.replace(&entries, now).await.expect("replace 100k");
            ours_replace.push(t.elapsed());
        });
    }
    let (ra, rf, od, or) = (
        median(raw_add),
        median(raw_full),
        median(ours_diff),
        median(ours_replace),
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

    // 1,000 changes on 500,000 hosts.
    let big = hosts(base, BIG, until);
    let t = Instant::now();
    rt.block_on(e.replace(&big, now)).expect("replace 500k");
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
        rt.block_on(e.apply(&set, &gone, now_ms())).expect("1000 changes");
        diffs.push(t.elapsed());
    }
    println!(
        "1,000 changes (500 added, 250 renewed, 250 lifted) on {BIG} hosts, median of {RUNS}: {} (goal < 100 ms)",
        ms(median(diffs))
    );
    rt.block_on(e.remove()).expect("remove");
}
