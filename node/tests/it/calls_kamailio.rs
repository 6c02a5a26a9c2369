//! Call authorisation against a real Kamailio: scripts/kamailio/example-pbx.cfg (with the
//! shipped fraudmesh-calls.cfg) runs in a network namespace of the test's own and asks
//! node A (its API on the test's side of the veth pair) before each call; sipp, from
//! an address on the test's side and authenticated as user 1001, places the calls,
//! each as its own sipp run:
//!
//! - a Swiss premium-rate number gets 403 with the node's reason;
//! - an ordinary number is answered (and its BYE ends the call on the node);
//! - a number that B (trusted by A) reported to the mesh gets 403 `fraud-number`;
//! - with `calls_per_hour = 2` the third allowed-looking call gets 403 and locks the
//!   account.

use crate::common::kamailio::{invite_scenario, sipp, Pbx, PASS_1001};
use crate::common::netns::{self, Lan};
use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// Places one call from `from` as 1001 to `number`, expecting the final answer
/// `expect`; returns sipp's message trace.
fn call(work: &Path, pbx: &Pbx, from: &str, number: &str, expect: u16) -> String {
    let run = sipp(
        work,
        &invite_scenario(number, expect),
        from,
        &pbx.addr,
        "1001",
        PASS_1001,
        1,
    );
    assert!(
        run.ok,
        "the call to {number} did not get {expect}: {}\n{}\nKamailio:\n{}",
        run.stderr,
        run.messages,
        pbx.log_tail()
    );
    run.messages
}

fn account(a: &Node, name: &str) -> Value {
    let body = http_get(&a.api(), "/v1/accounts");
    let v: Value = serde_json::from_str(&body).expect("accounts JSON");
    v["accounts"]
        .as_array()
        .expect("accounts array")
        .iter()
        .find(|x| x["account"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no account {name}: {v}"))
}

/// Node B, and node A trusting B with the call rules of this story and its API on the
/// test's end of `lan` (where Kamailio, in its namespace, reaches it); both running and
/// gossiping.
fn nodes(lan: &Lan) -> (Node, Node) {
    let me = lan.near();
    let mut b = Node::init(&[]);
    b.start();
    let mut a = Node::trusting(&b);
    let config = a.dir.join("config.toml");
    let text = std::fs::read_to_string(&config).expect("config.toml");
    assert!(text.contains("api = \"127.0.0.1:0\""), "{text}");
    std::fs::write(
        &config,
        text.replace("api = \"127.0.0.1:0\"", &format!("api = \"{me}:0\"")),
    )
    .expect("config");
    a.append_config("[calls]\nhome_country = \"CH\"\ndeny_premium = true\n[calls.limits]\ncalls_per_hour = 2\n");
    cli_ok(&a.dir, &["check-config"]);
    a.start();
    assert!(a.api().starts_with(&me), "{}", a.api());
    a.wait_gossip_peers(1);
    b.wait_gossip_peers(1);
    (a, b)
}

/// One story: each call's answer depends on the calls before it (counted, ended, locked).
#[test]
fn kamailio_asks_the_node_before_each_call() {
    let _exclusive = exclusive();
    netns::require(&["ip", "kamailio", "sipp"]);
    let started = Instant::now();
    // The test's side: .1 (node A's API, probes), .3 the phone; Kamailio on .2.
    let lan = Lan::new("kcall");
    let phone = lan.add_near(3);
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path().to_path_buf();
    let (a, b) = nodes(&lan);
    let api = a.api();
    let pbx = Pbx::start(
        &lan,
        &[("FRAUDMESH_CALLS_URL", &format!("\"http://{api}/v1/calls\""))],
        &work.join("kamailio"),
    );

    // B reports a London number range; A trusts B.
    b.report(&["+44207946", "--kind", "toll-fraud"]);
    let fraud = "00442079460000";
    wait_for("A to deny the number B reported", DEADLINE, || {
        let body = http_get(&api, &format!("/v1/calls/check?account=probe&to={fraud}"));
        let v: Value = serde_json::from_str(&body).expect("check JSON");
        (v["rule"] == "fraud-number").then_some(())
    });

    // A premium-rate number: 403 with the reason.
    let m = call(&work, &pbx, &phone, "0900123456", 403);
    assert!(
        m.contains("SIP/2.0 403 premium-rate: +41900123456 is a premium-rate number"),
        "{m}"
    );
    // An ordinary number: answered, then the BYE ends it on the node.
    call(&work, &pbx, &phone, "0446681800", 200);
    // B's fraud number: 403 fraud-number.
    let m = call(&work, &pbx, &phone, fraud, 403);
    assert!(m.contains("SIP/2.0 403 fraud-number: +442079460000"), "{m}");
    // The second allowed call, then the third breaks calls_per_hour = 2.
    call(&work, &pbx, &phone, "0446681800", 200);
    let acct = account(&a, "1001");
    assert_eq!(acct["locked"], false, "{acct}");
    assert_eq!(acct["calls_last_hour"], 2, "denied calls are not counted: {acct}");
    assert_eq!(acct["active"], 0, "the BYEs ended both calls: {acct}");
    let m = call(&work, &pbx, &phone, "0446681800", 403);
    assert!(m.contains("SIP/2.0 403 limit-"), "{m}");
    assert!(m.contains("locked"), "{m}");
    let acct = account(&a, "1001");
    assert_eq!(acct["locked"], true, "{acct}");
    // Locked: even an ordinary call is refused now.
    let m = call(&work, &pbx, &phone, "0446681800", 403);
    assert!(m.contains("SIP/2.0 403 locked: account 1001 is locked"), "{m}");

    let log = std::fs::read_to_string(pbx.log_path()).unwrap_or_default();
    assert!(
        log.contains("fraudmesh: call denied account=1001 to=0900123456 premium-rate"),
        "{}",
        pbx.log_tail()
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
