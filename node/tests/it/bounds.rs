//! Bounded connections between real processes on 127.0.0.1: with small `[net]`
//! `target_peers` / `max_peers` (3 / 5: a smaller max leaves gossipsub's mesh no room
//! to take in newcomers beside the seed, see `Limits::gossip_mesh`), a mesh of eight nodes that all learn of each other
//! through one seed settles with no node above its maximum and gossip still reaching
//! everyone; and a seed that restarts is redialled within the redial backoff's cap.

use crate::common::*;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Sets `[net] key = value` in a node's config.toml (written by `init` with every key
/// of the section; the commented template's lines start with `#`).
fn set_net(node: &Node, key: &str, value: &str) {
    let path = node.dir.join("config.toml");
    let text = std::fs::read_to_string(&path).expect("config.toml");
    let prefix = format!("{key} = ");
    let mut found = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with(&prefix) {
                found = true;
                format!("{key} = {value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(found, "no `{key}` line in {}", path.display());
    std::fs::write(&path, out.join("\n") + "\n").expect("writing config.toml");
}

/// The peer ids a running node is connected to.
fn peer_ids(node: &Node) -> HashSet<String> {
    cli_json(&node.dir, &["peers", "--json"])["peers"]
        .as_array()
        .expect("peers array")
        .iter()
        .map(|p| p["peer_id"].as_str().expect("peer_id").to_string())
        .collect()
}

/// Whether the graph of `peers` (node index → the peer ids it is connected to)
/// connects every node.
fn connected(ids: &[String], peers: &[HashSet<String>]) -> bool {
    let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, p)| (p.as_str(), i)).collect();
    let mut seen = vec![false; ids.len()];
    let mut stack = vec![0];
    seen[0] = true;
    while let Some(i) = stack.pop() {
        for p in &peers[i] {
            if let Some(&j) = index.get(p.as_str()) {
                if !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
    }
    seen.into_iter().all(|s| s)
}

#[test]
fn eight_nodes_with_small_limits_stay_within_max_peers_and_gossip_reaches_all() {
    const TARGET: usize = 3;
    const MAX: usize = 5;
    let bounded = |n: &Node| {
        set_net(n, "target_peers", &TARGET.to_string());
        set_net(n, "max_peers", &MAX.to_string());
        // Idle strangers beyond target go after this (the minimum), so the test need
        // not wait a minute for the idle rule.
        set_net(n, "idle_timeout", "\"2s\"");
    };
    let mut seed = Node::init(&[]);
    bounded(&seed);
    seed.start();
    let seed_addr = seed.addr();
    let mut nodes = vec![seed];
    for _ in 0..7 {
        let mut n = Node::init(&["--seed", &seed_addr]);
        bounded(&n);
        n.start();
        nodes.push(n);
    }
    let ids: Vec<String> = nodes.iter().map(|n| n.peer_id.clone()).collect();
    // Every node dials the seed and looks itself up through it, which connects it to
    // every node the lookup asks: far more than MAX at first. Settled: every node
    // within MAX, each connected to someone, the whole graph connected.
    let peers = wait_for(
        "every node within max_peers and the mesh connected",
        Duration::from_secs(90),
        || {
            let peers: Vec<HashSet<String>> = nodes.iter().map(peer_ids).collect();
            let within = peers.iter().all(|p| !p.is_empty() && p.len() <= MAX);
            (within && connected(&ids, &peers)).then_some(peers)
        },
    );
    let counts: Vec<usize> = peers.iter().map(HashSet::len).collect();
    println!("peers per node once settled: {counts:?}");
    let pruned: f64 = nodes
        .iter()
        .map(|n| n.metric("fraudmesh_connections_pruned_total", &[]))
        .sum();
    println!("connections pruned: {pruned}");
    assert!(pruned >= 1.0, "the nodes met more peers than MAX and pruned some");

    // Gossip over the bounded mesh reaches every node, from a node at its edge.
    let attacker = "203.0.113.77";
    let reporter = &nodes[7];
    for n in &nodes {
        n.wait_gossip_peers(1);
    }
    reporter.report(&[attacker, "--kind", "scan"]);
    for n in &nodes {
        wait_for("the sighting to reach every node", DEADLINE, || {
            (n.reporters(attacker) == vec![reporter.peer_id.clone()]).then_some(())
        });
    }
    // Still within bounds afterwards (a node may hold a newcomer in its grace for a
    // moment: poll).
    wait_for("every node still within max_peers", DEADLINE, || {
        nodes.iter().all(|n| peer_ids(n).len() <= MAX).then_some(())
    });
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn a_restarted_seed_is_redialled_within_the_backoff_cap() {
    // Three nodes that only know the seed, all below target (4) for good, so the
    // seed's loss is redialled; waits double from 1 s up to redial_max.
    const REDIAL_MAX_S: u64 = 2;
    let mut seed = Node::init(&[]);
    // A fixed port: the restarted seed must be where the others look for it.
    let port = free_port();
    let config = seed.dir.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("/ip4/127.0.0.1/tcp/0", &format!("/ip4/127.0.0.1/tcp/{port}")),
    )
    .unwrap();
    seed.start();
    let seed_addr = seed.addr();
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::init(&["--seed", &seed_addr])).collect();
    for n in &mut nodes {
        set_net(n, "target_peers", "4");
        set_net(n, "redial_max", &format!("\"{REDIAL_MAX_S}s\""));
        n.start();
    }
    let seed_id = seed.peer_id.clone();
    let has_seed = |n: &Node| peer_ids(n).contains(&seed_id);
    for n in &nodes {
        wait_for("each node connected to the seed", DEADLINE, || {
            has_seed(n).then_some(())
        });
    }

    seed.kill9();
    for n in &nodes {
        wait_for("each node to see the seed gone", DEADLINE, || {
            (!has_seed(n)).then_some(())
        });
    }
    // Keep the seed down until every node's waits have reached the cap: redials at
    // about 1, 2, 4, 6 s after the loss (1 + 1 + 2 + 2).
    let before: Vec<f64> = nodes.iter().map(|n| n.metric("fraudmesh_redials_total", &[])).collect();
    for (n, b) in nodes.iter().zip(&before) {
        wait_for("four failed redials of the seed", DEADLINE, || {
            (n.metric("fraudmesh_redials_total", &[]) >= b + 4.0).then_some(())
        });
    }

    seed.start();
    let up = Instant::now();
    // Back within the cap plus the upkeep tick and a handshake; the deadline is
    // generous (the discovery timer that redialled seeds before took up to 15 s).
    let deadline = Duration::from_secs(REDIAL_MAX_S + 8);
    for n in &nodes {
        wait_for("each node to redial the restarted seed", deadline, || {
            has_seed(n).then_some(())
        });
    }
    println!(
        "all nodes back on the restarted seed {:.1} s after it came up (redial_max {REDIAL_MAX_S} s)",
        up.elapsed().as_secs_f64()
    );
    // And gossip flows through it again.
    let attacker = "203.0.113.78";
    nodes[0].report(&[attacker, "--kind", "scan"]);
    wait_for("the seed to hold the sighting", DEADLINE, || {
        (seed.reporters(attacker) == vec![nodes[0].peer_id.clone()]).then_some(())
    });
}
