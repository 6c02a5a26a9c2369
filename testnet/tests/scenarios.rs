//! Every scenario of `fraudmesh-testnet run` at a small size (8 real node processes on
//! 127.0.0.1; `spoof` 4, in network namespaces it makes; `flood` with 20 stranger keys
//! instead of 1,000), driven through the command line exactly as a user runs it; the test
//! holds when the run exits 0 and `report.json` shows every expectation passed.
//!
//! Needs the `fraudmesh` binary beside `fraudmesh-testnet` (target/debug), which
//! `cargo test --workspace` builds; `spoof` needs root (scripts/test.sh and CI run as
//! root) and fails with a clear message without it.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// One scenario at a time: each starts several processes, and two cores are all there is.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn testnet() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fraudmesh-testnet"))
}

fn node_bin() -> PathBuf {
    let bin = testnet().with_file_name("fraudmesh");
    assert!(
        bin.is_file(),
        "{} is missing: build the node first (cargo build -p fraudmesh-node), or run cargo test --workspace",
        bin.display()
    );
    bin
}

fn run(args: &[&str], out: &Path) -> Output {
    Command::new(testnet())
        .arg("run")
        .args(args)
        .arg("--out")
        .arg(out)
        .arg("--bin")
        .arg(node_bin())
        .env("FRAUDMESH_LOG", "warn")
        .output()
        .expect("running fraudmesh-testnet")
}

/// Runs a scenario with 8 nodes and returns its report after checking what every
/// scenario must show.
fn scenario(name: &str) -> Value {
    scenario_with(name, 8, &[])
}

/// [`scenario`] with `nodes` nodes and more flags.
fn scenario_with(name: &str, nodes: usize, extra: &[&str]) -> Value {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let count = nodes.to_string();
    let mut args = vec!["--nodes", &count, "--scenario", name, "--seed", "7", "--targets", "120"];
    args.extend_from_slice(extra);
    let o = run(&args, &out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{name} failed ({}):\n{stdout}\n{stderr}", o.status);
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["scenario"], name);
    assert_eq!(report["nodes"], nodes);
    assert_eq!(report["seed"], 7);
    assert_eq!(report["converged"], true, "{report}");
    let exps = report["expectations"].as_array().unwrap();
    assert!(!exps.is_empty());
    for e in exps {
        assert_eq!(e["pass"], true, "{e}");
    }
    assert!(report["latency_ms"]["samples"].as_u64().unwrap() > 0);
    let l = &report["latency_ms"];
    assert!(l["p50"].as_f64() <= l["p99"].as_f64() && l["p99"].as_f64() <= l["max"].as_f64());
    assert!(report["messages_per_node"].as_f64().unwrap() > 0.0);
    assert!(report["bytes_per_node"].as_f64().unwrap() > 0.0);
    assert!(report["rss_bytes_max"].as_u64().unwrap() > 1_000_000);
    for p in ["latency_cdf.svg", "convergence.svg"] {
        let svg = std::fs::read_to_string(out.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(svg.contains("<svg"), "{p}");
    }
    assert!(stdout.contains("PASS") && !stdout.contains("FAIL"), "{stdout}");
    // Every process the run started is gone.
    for entry in std::fs::read_dir(out.join("nodes")).unwrap() {
        let dir = entry.unwrap().path();
        let log = std::fs::read_to_string(dir.join("node.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        assert!(
            !dir.join("node.json").exists(),
            "{} did not stop cleanly; its log ends:\n{}",
            dir.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    report
}

#[test]
fn attack_wave_blocks_every_target_on_every_node() {
    let r = scenario("attack-wave");
    assert_eq!(r["targets"], 120);
}

#[test]
fn late_joiners_catch_up() {
    let r = scenario("late-join");
    assert_eq!(r["figures"]["late_nodes"], 2);
    assert!(r["figures"]["catch_up_ms"].is_u64());
}

#[test]
fn churn_loses_nothing_acknowledged() {
    let r = scenario("churn");
    assert!(r["figures"]["kills"].as_u64().unwrap() >= 2);
    let restarted = r["per_node"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["starts"].as_u64() > Some(1));
    assert!(restarted.count() >= 1, "some node was killed and restarted");
}

#[test]
fn partition_holds_then_heals() {
    let r = scenario("partition");
    assert!(r["figures"]["heal_to_converged_ms"].is_u64());
}

#[test]
fn poison_blocks_no_victim_and_forwards_no_invalid_message() {
    let r = scenario("poison");
    assert!(r["figures"]["rejected_at_entry_node"].as_u64().unwrap() > 0);
    assert_eq!(r["figures"]["rejected_elsewhere"], 0);
}

#[test]
fn spoof_blocks_no_forged_or_logged_source_but_every_proven_scanner() {
    let r = scenario_with("spoof", 4, &[]);
    assert_eq!(r["targets"], 2, "the UDP scanner that echoed its nonce and the TCP one");
    assert_eq!(r["figures"]["forged_datagrams"], 20);
    assert_eq!(r["figures"]["crafted_log_lines"], 40);
    let sensor = &r["figures"]["node0_sensor_requests"];
    assert_eq!(
        (&sensor["udp_proven"], &sensor["tcp_proven"]),
        (&1.into(), &1.into()),
        "{sensor}"
    );
    // The run's namespaces went with it (those of runs still going have a live pid).
    let left: Vec<String> = std::fs::read_dir("/var/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let orphaned = left.iter().filter(|name| {
        let pid = name.strip_prefix("fm-spoof-").and_then(|r| r.split('-').next());
        pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists())
    });
    assert_eq!(orphaned.count(), 0, "network namespaces left behind: {left:?}");
}

#[test]
fn flood_spares_honest_relaying_and_decisions() {
    let r = scenario_with("flood", 8, &["--flood-keys", "20"]);
    assert_eq!(r["figures"]["flood_records"], 2000);
    assert_eq!(r["figures"]["max_stranger_records"], 1000);
    let nodes = r["per_node"].as_array().unwrap();
    let role = |name: &str| nodes.iter().filter(|n| n["role"] == name).count();
    assert_eq!((role("relay"), role("leaf"), role("half")), (2, 2, 1));
    for n in nodes {
        let res = &n["resources"];
        for figure in ["rss_bytes", "store_bytes", "cpu_ms", "records"] {
            let f = &res[figure];
            assert!(f["after"].as_u64().unwrap() > 0, "{n}");
            assert_eq!(
                f["growth"].as_i64().unwrap(),
                f["after"].as_i64().unwrap() - f["before"].as_i64().unwrap()
            );
        }
        assert!(
            res["records"]["growth"].as_i64().unwrap() > 0,
            "the flood reached node {n}"
        );
    }
}

#[test]
fn policy_split_penalises_nobody_and_retractions_land() {
    let r = scenario("policy-split");
    for f in ["gossip_rejects", "sync_sessions_misbehaved", "sync_peers_cut_off"] {
        assert_eq!(r["figures"][f], 0, "{f}");
    }
    assert_eq!(r["figures"]["prefixes_20"], 30);
    assert_eq!(r["figures"]["ttl_3d"], 30);
    let nodes = r["per_node"].as_array().unwrap();
    assert_eq!(nodes.iter().filter(|n| n["role"] == "strict").count(), 4);
}

#[test]
fn org_rollout_trusts_endorsed_members_everywhere_and_drops_revoked_ones() {
    let r = scenario("org-rollout");
    let f = &r["figures"];
    assert_eq!(
        (
            &f["config_trust_peers"],
            &f["config_trust_orgs"],
            &f["config_trust_peers_before"]
        ),
        (&0.into(), &2.into(), &7.into())
    );
    // Five members endorsed at once, each trusted by the six other nodes present.
    assert_eq!(f["endorse_to_trusted_everywhere_ms"]["samples"], 5);
    assert_eq!(r["latency_ms"]["samples"], 5 * 6);
    assert_eq!(f["late_endorse_to_trusted_ms"]["samples"], 7);
    assert_eq!(f["revoke_to_lifted_ms"]["samples"], 7);
    assert_eq!(f["partner_second_report_to_blocked_ms"]["samples"], 7);
    let bad = f["bad_endorsements"].as_array().unwrap();
    assert_eq!(bad.len(), 3);
    for b in bad {
        assert!(!b.as_str().unwrap().ends_with("ACCEPTED"), "{b}");
    }
    let nodes = r["per_node"].as_array().unwrap();
    let role = |name: &str| nodes.iter().filter(|n| n["role"] == name).count();
    assert_eq!(
        (
            role("publisher"),
            role("revoked"),
            role("partner"),
            role("late"),
            role("member")
        ),
        (1, 1, 2, 1, 3)
    );
}

#[test]
fn bad_arguments_are_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    for (args, needle) in [
        (&["--nodes", "1"][..], "--nodes"),
        (&["--nodes", "8", "--seeds", "0"][..], "--seeds"),
        (&["--rate=0"][..], "--rate"),
        (&["--scenario", "partition", "--nodes", "3"][..], "partition"),
        (&["--scenario", "spoof", "--nodes", "3"][..], "spoof"),
        (&["--scenario", "flood", "--nodes", "4"][..], "flood"),
        (&["--scenario", "flood", "--flood-keys", "5"][..], "--flood-keys"),
        (&["--scenario", "flood", "--targets", "1000"][..], "--targets"),
        (&["--scenario", "policy-split", "--nodes", "3"][..], "policy-split"),
        (&["--scenario", "org-rollout", "--nodes", "4"][..], "org-rollout"),
    ] {
        let o = run(args, &out);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} created {}", out.display());
    }
    let o = run(&["--scenario", "armageddon"], &out);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("armageddon"));
    let o = Command::new(testnet())
        .args(["run", "--bin", "/nonexistent/fraudmesh", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no fraudmesh binary"));
}
