//! Real processes on 127.0.0.1: a mesh bootstrapped from one seed spreads a report,
//! trust decides who blocks, retraction unblocks everywhere, and a restarted node (even
//! after kill -9) still holds and enforces its list.

use crate::common::*;

#[test]
fn report_spreads_from_one_node_and_retraction_unblocks_everywhere() {
    let mut seed = Node::init(&[]);
    seed.start();
    let seed_addr = seed.addr();
    let mut a = Node::init(&["--seed", &seed_addr]);
    let mut b = Node::init(&["--seed", &seed_addr, "--trust", &a.peer_id]);
    let mut c = Node::init(&["--seed", &seed_addr, "--trust", &a.peer_id]);
    for n in [&mut a, &mut b, &mut c] {
        n.start();
    }
    for n in [&a, &b, &c] {
        n.wait_gossip_peers(1);
    }
    // Kademlia through the seed lets the nodes find each other, not only the seed.
    wait_for("C to discover peers beyond the seed", DEADLINE, || {
        (c.status()["peers"].as_u64().unwrap_or(0) >= 2).then_some(())
    });

    let attacker = "203.0.113.5";
    assert!(!c.is_blocked(attacker));
    a.report(&[attacker, "--kind", "scan", "--reason", "integration test"]);
    assert!(a.is_blocked(attacker), "the reporter blocks at once");
    for n in [&b, &c] {
        wait_for("the report to block on B and C", DEADLINE, || {
            n.is_blocked(attacker).then_some(())
        });
        let check = n.check(attacker);
        assert_eq!(check["reporters"], serde_json::json!([a.peer_id]));
        assert!(check["until"].as_u64().is_some(), "{check}");
    }
    // The seed trusts nobody: it holds A's sighting (and forwarded it) but A is a
    // stranger to it, and a stranger alone never blocks.
    wait_for("the seed to hold A's sighting", DEADLINE, || {
        (seed.reporters(attacker) == vec![a.peer_id.clone()]).then_some(())
    });
    assert!(!seed.is_blocked(attacker));

    // A prefix report blocks every address inside it.
    a.report(&["198.18.0.0/16", "--kind", "invite-flood"]);
    wait_for("the prefix to block on C", DEADLINE, || {
        c.is_blocked("198.18.77.1").then_some(())
    });
    assert!(!c.is_blocked("198.19.0.1"));

    cli_ok(&a.dir, &["retract", attacker]);
    for n in [&a, &b, &c] {
        wait_for("the retraction to unblock everywhere", DEADLINE, || {
            (!n.is_blocked(attacker)).then_some(())
        });
    }
    assert!(c.is_blocked("198.18.77.1"), "retracting one target leaves the others");
    let list = cli_json(&c.dir, &["list", "--json"]);
    assert_eq!(list["count"], 1, "{list}");
    assert_eq!(list["blocked"][0]["target"], "198.18.0.0/16");

    let peers = cli_json(&c.dir, &["peers", "--json"]);
    assert!(peers["peers"].as_array().map(Vec::len).unwrap_or(0) >= 1, "{peers}");
    assert!(c.metric("fraudmesh_sightings_accepted_total", &[("source", "gossip")]) >= 3.0);
    assert!(c.metric("fraudmesh_propagation_delay_seconds_count", &[]) >= 3.0);
}

#[test]
fn acknowledged_reports_survive_kill_9_and_restart() {
    let mut a = Node::init(&[]);
    a.start();
    let targets: Vec<String> = (1..=50).map(|i| format!("192.0.2.{i}")).collect();
    let list = a.dir.join("targets.txt");
    std::fs::write(&list, format!("# attackers\n{}\n\n", targets.join("\n"))).unwrap();
    cli_ok(
        &a.dir,
        &["report", "--file", list.to_str().unwrap(), "--kind", "auth-failure"],
    );
    // Acknowledged → durable: kill -9 right away, before sled's background flush.
    a.kill9();
    a.start();
    let st = a.status();
    assert_eq!(st["records"], 50, "{st}");
    assert_eq!(st["blocked"], 50, "{st}");
    for t in &targets {
        assert!(a.is_blocked(t), "{t} lost after kill -9");
    }
    // A graceful stop exits cleanly and a restart still enforces the list.
    assert!(a.stop().success(), "SIGTERM exits 0: {}", a.log());
    assert!(!a.dir.join("node.json").exists(), "node.json removed on clean exit");
    a.start();
    assert!(a.is_blocked("192.0.2.50"));
    assert!(!a.is_blocked("192.0.2.51"));
}

#[test]
fn run_starts_with_no_config_at_all() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fresh");
    // No init, no config: embedded defaults, but a free API port so tests can run in
    // parallel — so write only what the defaults cannot know.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        "[node]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\napi = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut n = Node {
        dir: dir.clone(),
        child: None,
        peer_id: String::new(),
        _tmp: None,
    };
    n.start();
    let id = cli_ok(&dir, &["id"]);
    assert!(id.trim().starts_with("12D3KooW"));
    assert_eq!(n.status()["peer_id"], id.trim());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.join("identity.key")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    drop(tmp);
}
