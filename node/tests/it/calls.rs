//! Call authorisation against real nodes: premium and ordinary numbers, a limit breach that
//! locks the account (kept across kill -9 and restart) until `accounts unlock`, calls
//! ended to free concurrency, `calls check` that explains without counting, bad requests,
//! and a fraud number reported on one node denied on another that trusts it.

use crate::common::*;
use serde_json::{json, Value};

fn authorize(api: &str, body: &Value) -> (u16, Value) {
    let (code, text) = http(
        api,
        "POST",
        "/v1/calls/authorize",
        &[("Content-Type", "application/json")],
        &body.to_string(),
    );
    (
        code,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

/// POSTs a form-encoded body (what Asterisk's CURL() and FreeSWITCH's curl send).
fn authorize_form(api: &str, body: &str) -> (u16, String) {
    http(
        api,
        "POST",
        "/v1/calls/authorize",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body,
    )
}

fn call(api: &str, account: &str, to: &str, call_id: &str) -> Value {
    let (code, v) = authorize(
        api,
        &json!({"account": account, "from": account, "to": to, "source_ip": "192.0.2.10", "call_id": call_id}),
    );
    assert_eq!(code, 200, "{v}");
    v
}

fn account<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account"] == name)
        .unwrap_or_else(|| panic!("no account {name}: {list}"))
}

/// One story: the hour's count and the locks carry across every step, kill -9 included.
#[test]
fn premium_numbers_limits_and_locks_through_the_api() {
    let n = Node::init(&[]);
    n.append_config("[calls.limits]\ncalls_per_hour = 3\n[calls.accounts.2001.limits]\nconcurrent = 1\n");
    let mut n = n;
    n.start();
    let api = n.api();

    for to in ["0900 123 456", "0041906123456", "+41 901 123 456"] {
        let v = call(&api, "1001", to, "p");
        assert_eq!(
            (v["allow"].as_bool(), v["rule"].as_str()),
            (Some(false), Some("premium-rate")),
            "{to}: {v}"
        );
        assert!(v["reason"].as_str().unwrap().contains("premium"), "{v}");
    }
    let v = call(&api, "1001", "044 668 18 00", "c1");
    assert_eq!(
        (v["allow"].as_bool(), v["e164"].as_str()),
        (Some(true), Some("+41446681800")),
        "{v}"
    );
    assert_eq!(call(&api, "1001", "0800 123 456", "c2")["allow"], true);

    // Account 2001 may have one call at a time: a second one breaches (and locks); the
    // first ends, an operator unlocks, and the next call goes through.
    assert_eq!(call(&api, "2001", "044 668 18 01", "k1")["allow"], true);
    let v = call(&api, "2001", "044 668 18 02", "k2");
    assert_eq!(
        (v["rule"].as_str(), v["account_locked"].as_bool()),
        (Some("limit-concurrent"), Some(true)),
        "{v}"
    );
    let (code, ended) = http(&api, "POST", "/v1/calls/k1/end", &[], "account=2001");
    assert_eq!(code, 200, "{ended}");
    assert!(ended.contains("\"ended\":true") && ended.contains("2001"), "{ended}");
    assert_eq!(cli_ok(&n.dir, &["accounts", "unlock", "2001"]).trim(), "unlocked 2001");
    assert_eq!(call(&api, "2001", "044 668 18 02", "k3")["allow"], true);

    // `calls check` explains without counting.
    let explained = cli_json(
        &n.dir,
        &["calls", "check", "--account", "1001", "--to", "044 668 18 02", "--json"],
    );
    assert_eq!(explained["allow"], true, "{explained}");
    let explained = cli_json(
        &n.dir,
        &["calls", "check", "--account", "1001", "--to", "0906123456", "--json"],
    );
    assert_eq!(explained["rule"], "premium-rate");
    let text = cli_ok(&n.dir, &["calls", "check", "--account", "1001", "--to", "0906123456"]);
    assert!(text.starts_with("DENY (premium-rate)"), "{text}");

    // The third call in the hour is allowed, the fourth breaches and locks the account.
    assert_eq!(call(&api, "1001", "044 668 18 02", "c4")["allow"], true);
    let v = call(&api, "1001", "044 668 18 03", "c5");
    assert_eq!(
        (v["rule"].as_str(), v["account_locked"].as_bool()),
        (Some("limit-calls-per-hour"), Some(true)),
        "{v}"
    );
    let list = cli_json(&n.dir, &["accounts", "list", "--json"]);
    assert_eq!(account(&list, "1001")["locked"], true, "{list}");
    assert_eq!(
        call(&api, "1002", "044 668 18 00", "d1")["allow"],
        true,
        "other accounts go on"
    );

    // Nothing acknowledged is lost on a crash: the lock survives kill -9.
    n.kill9();
    n.start();
    let api = n.api();
    assert_eq!(call(&api, "1001", "044 668 18 00", "e1")["rule"], "locked");
    let list = cli_json(&n.dir, &["accounts", "list", "--json"]);
    assert_eq!(account(&list, "1001")["calls_last_day"], 3, "{list}");
    assert!(cli_ok(&n.dir, &["accounts", "list"]).contains("1001: LOCKED"));

    // Unlocking needs the token (the CLI has it).
    let (code, _) = http(&api, "POST", "/v1/accounts/1001/unlock", &[], "");
    assert_eq!(code, 401);
    assert_eq!(cli_ok(&n.dir, &["accounts", "unlock", "1001"]).trim(), "unlocked 1001");
    assert_eq!(
        cli_ok(&n.dir, &["accounts", "unlock", "1001"]).trim(),
        "1001 was not locked"
    );
    assert_eq!(
        call(&api, "1001", "044 668 18 00", "e2")["rule"],
        "limit-calls-per-hour",
        "the hour still counts"
    );
    assert!(n.metric("fraudmesh_call_decisions_total", &[("rule", "locked")]) >= 1.0);
}

#[test]
fn bad_requests_get_clear_errors_and_garbage_numbers_a_reason() {
    let mut n = Node::init(&[]);
    n.start();
    let api = n.api();
    for (body, needle) in [
        ("{not json", "bad JSON"),
        ("{\"to\": \"0441234567\"}", "account"),
        ("{\"account\": \"\", \"to\": \"0441234567\"}", "account"),
        (
            "{\"account\": \"a\", \"to\": \"1\", \"source_ip\": \"nope\"}",
            "source_ip",
        ),
        (
            "{\"account\": \"a\", \"to\": \"1\", \"colour\": \"red\"}",
            "unknown field",
        ),
    ] {
        let (code, text) = http(&api, "POST", "/v1/calls/authorize", &[], body);
        assert_eq!(code, 400, "{body}: {text}");
        assert!(text.contains(needle), "{body}: {text}");
    }
    // Form-encoded bodies (Asterisk CURL(), FreeSWITCH curl) work like JSON.
    let (code, text) = authorize_form(&api, "account=1001&to=0900%20123%20456&call_id=form-1");
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"rule\":\"premium-rate\""), "{text}");
    let (code, text) = authorize_form(&api, "to=0441234567");
    assert_eq!(code, 400, "{text}");
    // JSON labelled as a form (what `curl -d '{...}'` sends) is read as JSON.
    let (code, text) = authorize_form(&api, "{\"account\": \"1001\", \"to\": \"0900123456\"}");
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"rule\":\"premium-rate\""), "{text}");
    for to in ["*97", "sip:bob@example.com", "1001", ""] {
        let v = call(&api, "a", to, "x");
        assert_eq!(
            (v["allow"].as_bool(), v["rule"].as_str()),
            (Some(false), Some("invalid-number")),
            "{to:?}: {v}"
        );
    }
    assert!(cli_json(&n.dir, &["accounts", "list", "--json"])["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["calls_last_day"] == 0));
    let out = cli(&n.dir, &["calls", "check", "--account", "a"]);
    assert!(!out.status.success(), "--to is required");
}

#[test]
fn a_fraud_number_reported_on_one_node_is_denied_on_a_node_that_trusts_it() {
    let mut b = Node::init(&[]);
    b.start();
    let mut a = Node::trusting(&b);
    a.start();
    a.wait_gossip_peers(1);
    let api = a.api();
    assert_eq!(call(&api, "1001", "0044 20 7946 0958", "f1")["allow"], true);
    b.report(&["+4420794", "--kind", "toll-fraud"]);
    wait_for("the fraud number denied on A", DEADLINE, || {
        let v = call(&api, "1001", "0044 20 7946 0958", "f2");
        (v["rule"] == "fraud-number").then_some(())
    });
    assert_eq!(call(&api, "1001", "0044 20 7000 0000", "f3")["allow"], true);
}
