//! Circuit relay on 127.0.0.1 with real nodes: a seed that declares its external
//! address serves as a relay; two nodes "behind NAT" (`debug.relay_only`: no listen
//! address of their own, reachability private) reserve relayed addresses on it, find
//! each other through the seed's DHT and connect through the relay, and everything
//! (identify, ping, gossipsub, sync) runs over that relayed connection.

use crate::common::*;
use serde_json::Value;
use std::time::Duration;

/// Long enough for two discovery rounds after the reservations.
const DISCOVERY_DEADLINE: Duration = Duration::from_secs(90);

/// A TCP port on 127.0.0.1 free right now (the seed must know its port before it starts,
/// to declare it as its external address).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    l.local_addr().expect("local addr").port()
}

/// Replaces `from` with `to` in the node's config.toml (written by `init`).
fn edit_config(node: &Node, from: &str, to: &str) {
    let path = node.dir.join("config.toml");
    let text = std::fs::read_to_string(&path).expect("config.toml");
    assert!(text.contains(from), "{from:?} not in the config:\n{text}");
    std::fs::write(&path, text.replace(from, to)).expect("writing config.toml");
}

/// The `peers --json` entry of `peer` on `node`, if connected.
fn peer_entry(node: &Node, peer: &str) -> Option<Value> {
    let peers = cli_json(&node.dir, &["peers", "--json"]);
    peers["peers"]
        .as_array()?
        .iter()
        .find(|p| p["peer_id"] == peer)
        .cloned()
}

#[test]
fn nodes_behind_nat_connect_and_gossip_through_a_seed_relay() {
    let port = free_port();
    let mut seed = Node::init(&[]);
    edit_config(
        &seed,
        "\"/ip4/127.0.0.1/tcp/0\"",
        &format!("\"/ip4/127.0.0.1/tcp/{port}\""),
    );
    edit_config(
        &seed,
        "\nexternal_addresses = []",
        &format!("\nexternal_addresses = [\"/ip4/127.0.0.1/tcp/{port}\"]"),
    );
    seed.start();
    let st = seed.status();
    assert_eq!(st["reachability"], "public", "declared external address: {st}");
    assert_eq!(st["relays"], serde_json::json!([]), "{st}");
    let seed_addr = seed.addr();

    let mut b = Node::init(&["--seed", &seed_addr]);
    let mut c = Node::init(&["--seed", &seed_addr, "--trust", &b.peer_id]);
    for n in [&b, &c] {
        edit_config(n, "\nrelay_only = false", "\nrelay_only = true");
    }
    b.start();
    c.start();

    // Each holds a relayed address on the seed, and says so.
    for n in [&b, &c] {
        let relays = wait_for("a relayed address on the seed", DEADLINE, || {
            let st = n.status();
            let relays = st["relays"].as_array().cloned().unwrap_or_default();
            (!relays.is_empty()).then_some((st, relays))
        });
        let (st, relays) = relays;
        assert_eq!(st["reachability"], "private", "{st}");
        let want_end = format!("/p2p/{}/p2p-circuit/p2p/{}", seed.peer_id, n.peer_id);
        assert!(
            relays
                .iter()
                .all(|r| r.as_str().is_some_and(|r| r.ends_with(&want_end))),
            "{relays:?} should end with {want_end}"
        );
        assert_eq!(n.metric("fraudmesh_relay_reservations", &[]), 1.0);
        assert_eq!(n.metric("fraudmesh_reachability", &[("state", "private")]), 1.0);
    }
    assert_eq!(seed.metric("fraudmesh_relay_served_reservations", &[]), 2.0);

    // They find each other through the seed's DHT and connect through the relay:
    // identify (agent), ping (rtt) and gossipsub (subscription) run over the circuit.
    // Discovery walks the DHT every 15 s while a node has few peers.
    let entry = wait_for(
        "C connected to B through the relay, all protocols up",
        DISCOVERY_DEADLINE,
        || {
            let e = peer_entry(&c, &b.peer_id)?;
            let up =
                e["connection"] == "relayed" && e["gossip"] == true && e["agent"].is_string() && e["rtt_ms"].is_u64();
            up.then_some(e)
        },
    );
    assert_eq!(entry["transport"], "tcp", "{entry}");
    assert!(
        entry["address"].as_str().is_some_and(|a| a.contains("/p2p-circuit")),
        "{entry}"
    );
    assert!(seed.metric("fraudmesh_relay_circuits", &[]) >= 1.0);
    assert!(c.metric("fraudmesh_peers_by_connection", &[("connection", "relayed")]) >= 1.0);
    let seed_entry = peer_entry(&c, &seed.peer_id).expect("C is connected to its seed");
    assert_eq!(seed_entry["connection"], "direct", "{seed_entry}");

    // Sync ran over the circuit too: the dialling side of each new connection starts a
    // session, so B and C between them ran one with the seed each and one through the
    // relay (the sync timer picks no one this early: it first ticked with no peers).
    wait_for("a sync session over the relayed connection", DEADLINE, || {
        let ok = |n: &Node| n.metric("fraudmesh_sync_sessions_total", &[("result", "ok")]);
        (ok(&b) + ok(&c) >= 3.0).then_some(())
    });

    // A report on B blocks on C (C trusts B).
    let attacker = "203.0.113.77";
    b.report(&[attacker, "--kind", "scan", "--reason", "relay test"]);
    wait_for("B's report to block on C", DEADLINE, || {
        c.is_blocked(attacker).then_some(())
    });

    // The human output names the connection too.
    let text = cli_ok(&c.dir, &["peers"]);
    assert!(text.contains("relayed"), "{text}");
    let text = cli_ok(&b.dir, &["status"]);
    assert!(
        text.contains("reachable private") && text.contains("/p2p-circuit/"),
        "{text}"
    );
}

#[test]
fn a_node_learns_from_its_seed_that_it_is_reachable() {
    let mut seed = Node::init(&[]);
    seed.start();
    let mut a = Node::init(&["--seed", &seed.addr()]);
    a.start();
    // The seed serves AutoNAT: A's observed address (its listen port: dials reuse it) is
    // dialled back on a fresh connection, which the seed closes once answered.
    let st = wait_for("A's reachability public (AutoNAT)", DISCOVERY_DEADLINE, || {
        let st = a.status();
        (st["reachability"] == "public").then_some(st)
    });
    assert_eq!(
        st["relays"],
        serde_json::json!([]),
        "a public node holds no relay: {st}"
    );
    assert_eq!(a.metric("fraudmesh_reachability", &[("state", "public")]), 1.0);
    assert_eq!(a.metric("fraudmesh_reachability", &[("state", "unknown")]), 0.0);
    let entry = peer_entry(&a, &seed.peer_id).expect("A is connected to its seed");
    assert_eq!(
        (entry["connection"].as_str(), entry["transport"].as_str()),
        (Some("direct"), Some("tcp"))
    );
}
