//! The Kamailio enforcer against a real Kamailio (scripts/kamailio/example.cfg, which
//! includes the shipped fraudmesh.cfg) and a real node: SIP OPTIONS from a blocked
//! source get no answer while another source's do, a retraction lets it through again,
//! a SIGKILLed and restarted Kamailio gets the whole list back, `fraudmesh enforce
//! status` shows it all, and `fraudmesh enforce --remove` deletes the node's entries
//! only.
//!
//! The node never blocks loopback, so Kamailio runs in a network namespace of the test's
//! own, joined to the test by a veth pair: it listens on 10.X.Y.2 and SIP comes from
//! 10.X.Y.1 and 10.X.Y.3 on the test's side.

use crate::common::kamailio::{options_answered, RpcKamailio};
use crate::common::netns::{self, Lan};
use crate::common::*;
use serde_json::{json, Value};

use std::time::{Duration, Instant};

fn kamailio_status(n: &Node) -> Value {
    n.enforcer("kamailio")
}

/// One story: each step starts from the table the one before left (report, retraction,
/// Kamailio's restart, --remove).
#[test]
fn kamailio_drops_blocked_sources_and_gets_its_table_back_after_a_restart() {
    let _exclusive = exclusive();
    netns::require(&["ip", "kamailio"]);
    let started = Instant::now();
    let lan = Lan::new("kam");
    let (me, kam_addr, other, pike) = (lan.near(), lan.far(), lan.add_near(3), lan.addr(77));
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut kam = RpcKamailio::new(&lan, &tmp.path().join("kamailio"));
    kam.start();
    assert!(
        options_answered(&me, &kam_addr) && options_answered(&other, &kam_addr),
        "Kamailio answers OPTIONS"
    );
    // An entry as the stock config's pike rule makes it (value 1): not the node's.
    let r = kam.rpc("htable.seti", json!(["ipban", pike, 1]));
    assert!(r.get("result").is_some(), "{r}");
    // One an earlier run of the node left (value 2) for an address no longer listed.
    let leftover = lan.addr(55);
    kam.rpc("htable.seti", json!(["ipban", leftover, 2]));

    let mut n = Node::init(&[]);
    n.append_config(&format!(
        "[enforce.kamailio]\nurl = \"http://{kam_addr}:5071/RPC\"\ntimeout = \"2s\"\n"
    ));
    cli_ok(&n.dir, &["check-config"]);
    n.start();
    wait_for("the kamailio enforcer's first full sync", DEADLINE, || {
        (kamailio_status(&n)["state"] == "ok").then_some(())
    });
    assert!(
        kam.rpc("htable.get", json!(["ipban", leftover])).get("error").is_some(),
        "the first full sync deleted the earlier run's leftover"
    );
    assert!(
        kam.rpc("htable.get", json!(["ipban", pike])).get("result").is_some(),
        "and left pike's entry"
    );

    // A report: the source gets no answer any more, another source still does.
    n.report(&[me.as_str(), "198.51.100.0/24"]);
    wait_for("OPTIONS from the reported address to go unanswered", DEADLINE, || {
        (!options_answered(&me, &kam_addr)).then_some(())
    });
    assert!(options_answered(&other, &kam_addr), "another source is still answered");
    let item = kam.rpc("htable.get", json!(["ipban", me]));
    assert_eq!(item["result"]["item"]["value"], 2, "{item}");
    let dump = kam.dump();
    assert!(
        !dump.iter().any(|(k, _)| k.starts_with("198.51.100")),
        "prefixes are not written: {dump:?}"
    );
    let st = kamailio_status(&n);
    assert_eq!(st["state"], "ok", "{st}");
    assert_eq!(st["entries"], 2, "{st}");
    assert!(st["full_syncs"].as_u64() >= Some(1), "{st}");

    // A retraction lets it through again.
    cli_ok(&n.dir, &["retract", me.as_str()]);
    wait_for("OPTIONS from the retracted address answered again", DEADLINE, || {
        options_answered(&me, &kam_addr).then_some(())
    });
    assert!(
        kam.rpc("htable.get", json!(["ipban", me])).get("error").is_some(),
        "the entry was deleted"
    );

    // Blocked again, then Kamailio dies and comes back with an empty table: the node
    // notices and writes the whole list again.
    n.report(&[me.as_str()]);
    wait_for("the address blocked again", DEADLINE, || {
        (!options_answered(&me, &kam_addr)).then_some(())
    });
    let before = kamailio_status(&n)["full_syncs"].as_u64().expect("full_syncs");
    kam.kill9();
    kam.start();
    assert!(options_answered(&other, &kam_addr), "the new Kamailio answers");
    wait_for("the address blocked after Kamailio's restart", DEADLINE, || {
        (!options_answered(&me, &kam_addr)).then_some(())
    });
    let st = wait_for("a full sync counted after the restart", DEADLINE, || {
        let st = kamailio_status(&n);
        (st["state"] == "ok" && st["full_syncs"].as_u64() > Some(before)).then_some(st)
    });
    assert_eq!(st["entries"], 2, "{st}");
    assert!(n.log().contains("Kamailio restarted"), "the restart was noticed");
    let text = cli_ok(&n.dir, &["enforce", "status"]);
    assert!(text.contains("kamailio"), "{text}");

    // --remove with the node stopped deletes the node's entries (value 2) only.
    kam.rpc("htable.seti", json!(["ipban", pike, 1]));
    assert!(n.stop().success());
    assert!(
        !options_answered(&me, &kam_addr),
        "entries stay while the node is stopped"
    );
    let out = cli_ok(&n.dir, &["enforce", "--remove"]);
    assert!(out.contains("kamailio: removed"), "{out}");
    let dump = kam.dump();
    assert_eq!(dump, vec![(pike.clone(), json!(1))], "only the pike-like entry is left");
    assert!(options_answered(&me, &kam_addr), "answered after --remove");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// An unreachable Kamailio is an error the runner retries with backoff; once Kamailio
/// answers, it gets the full list.
#[test]
fn unreachable_kamailio_is_retried_and_gets_the_full_list() {
    netns::require(&["ip", "kamailio"]);
    let lan = Lan::new("kam");
    let kam_addr = lan.far();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut kam = RpcKamailio::new(&lan, &tmp.path().join("kamailio"));

    let mut n = Node::init(&[]);
    n.append_config(&format!(
        "[enforce.kamailio]\nurl = \"http://{kam_addr}:5071/RPC\"\ntimeout = \"1s\"\n"
    ));
    n.start();
    n.report(&["192.0.2.44"]);
    let st = wait_for("the enforcer to fail while Kamailio is down", DEADLINE, || {
        let st = kamailio_status(&n);
        (st["errors"].as_u64() >= Some(1)).then_some(st)
    });
    assert_eq!(st["state"], "retrying", "{st}");
    assert!(
        st["last_error"].as_str().unwrap_or_default().contains(&kam_addr),
        "{st}"
    );

    kam.start();
    wait_for("the list in Kamailio once it answers", Duration::from_secs(45), || {
        let item = kam.rpc("htable.get", json!(["ipban", "192.0.2.44"]));
        (item["result"]["item"]["value"] == 2).then_some(())
    });
    let st = wait_for("the recovered state", DEADLINE, || {
        let st = kamailio_status(&n);
        (st["state"] == "ok").then_some(st)
    });
    assert!(st["full_syncs"].as_u64() >= Some(1), "{st}");
}

#[test]
fn bad_kamailio_config_is_refused_with_the_key() {
    for (toml, needle) in [
        ("url = \"https://127.0.0.1:5071/RPC\"", "enforce.kamailio.url"),
        ("htable = \"ip ban\"", "enforce.kamailio.htable"),
        ("tabel = \"ipban\"", "tabel"),
    ] {
        let n = Node::init(&[]);
        n.append_config(&format!("[enforce.kamailio]\n{toml}"));
        let out = cli(&n.dir, &["check-config"]);
        assert!(!out.status.success(), "{toml} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{toml}: {err}");
    }
    // Defaults only: accepted.
    let n = Node::init(&[]);
    n.append_config("[enforce.kamailio]");
    cli_ok(&n.dir, &["check-config"]);
}
