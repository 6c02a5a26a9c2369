//! Call authorisation against real nodes: premium and ordinary numbers, a limit breach that
//! locks the account (kept across kill -9 and restart) until `accounts unlock`, calls
//! ended to free concurrency (only by their own account), `calls check` that explains
//! without counting, the calls token and the admin token, bad requests, optional fields
//! that never stop a decision, and a fraud number reported on one node denied on another
//! that trusts it.

use crate::common::*;
use serde_json::{json, Value};

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

fn authorize(n: &Node, body: &Value) -> (u16, Value) {
    let (code, text) = n.calls_post("/v1/calls/authorize", JSON, &body.to_string());
    (
        code,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

/// POSTs a form-encoded body (what Asterisk's CURL() and FreeSWITCH's curl send).
fn authorize_form(n: &Node, body: &str) -> (u16, String) {
    n.calls_post("/v1/calls/authorize", FORM, body)
}

fn call(n: &Node, account: &str, to: &str, call_id: &str) -> Value {
    let (code, v) = authorize(
        n,
        &json!({"account": account, "from": account, "to": to, "source_ip": "192.0.2.10", "call_id": call_id}),
    );
    assert_eq!(code, 200, "{v}");
    v
}

/// Ends `call_id` as `account`: (status, answer).
fn end(n: &Node, account: &str, call_id: &str) -> (u16, Value) {
    let path = format!("/v1/calls/{}/end", fraudmesh_node::http::client::encode(call_id));
    let (code, text) = n.calls_post(&path, FORM, &format!("account={account}"));
    (
        code,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
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

    for to in ["0900 123 456", "0041906123456", "+41 901 123 456"] {
        let v = call(&n, "1001", to, "p");
        assert_eq!(
            (v["allow"].as_bool(), v["rule"].as_str()),
            (Some(false), Some("premium-rate")),
            "{to}: {v}"
        );
        assert!(v["reason"].as_str().unwrap().contains("premium"), "{v}");
    }
    let v = call(&n, "1001", "044 668 18 00", "c1");
    assert_eq!(
        (v["allow"].as_bool(), v["e164"].as_str()),
        (Some(true), Some("+41446681800")),
        "{v}"
    );
    assert_eq!(call(&n, "1001", "0800 123 456", "c2")["allow"], true);

    // Account 2001 may have one call at a time: a second one breaches (and locks); the
    // first ends, an operator unlocks, and the next call goes through.
    assert_eq!(call(&n, "2001", "044 668 18 01", "k1")["allow"], true);
    let v = call(&n, "2001", "044 668 18 02", "k2");
    assert_eq!(
        (v["rule"].as_str(), v["account_locked"].as_bool()),
        (Some("limit-concurrent"), Some(true)),
        "{v}"
    );
    let (code, ended) = end(&n, "2001", "k1");
    assert_eq!(code, 200, "{ended}");
    assert_eq!(ended, json!({"call_id": "k1", "ended": true, "account": "2001"}));
    assert_eq!(cli_ok(&n.dir, &["accounts", "unlock", "2001"]).trim(), "unlocked 2001");
    assert_eq!(call(&n, "2001", "044 668 18 02", "k3")["allow"], true);

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
    assert_eq!(call(&n, "1001", "044 668 18 02", "c4")["allow"], true);
    let v = call(&n, "1001", "044 668 18 03", "c5");
    assert_eq!(
        (v["rule"].as_str(), v["account_locked"].as_bool()),
        (Some("limit-calls-per-hour"), Some(true)),
        "{v}"
    );
    let list = cli_json(&n.dir, &["accounts", "list", "--json"]);
    assert_eq!(account(&list, "1001")["locked"], true, "{list}");
    assert_eq!(
        call(&n, "1002", "044 668 18 00", "d1")["allow"],
        true,
        "other accounts go on"
    );

    // Nothing acknowledged is lost on a crash: the lock survives kill -9.
    n.kill9();
    n.start();
    let api = n.api();
    assert_eq!(call(&n, "1001", "044 668 18 00", "e1")["rule"], "locked");
    // Emergency numbers pass the locked account, in every form, and are not counted.
    for to in ["112", "117", "144", "+41 118", "0041144", "911"] {
        let v = call(&n, "1001", to, &format!("sos-{to}"));
        assert_eq!(
            (v["allow"].as_bool(), v["rule"].as_str()),
            (Some(true), Some("emergency")),
            "{to}: {v}"
        );
    }
    let explained = cli_json(&n.dir, &["calls", "check", "--account", "100", "--to", "112", "--json"]);
    assert_eq!(
        (&explained["allow"], &explained["rule"]),
        (&json!(true), &json!("emergency"))
    );
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
        call(&n, "1001", "044 668 18 00", "e2")["rule"],
        "limit-calls-per-hour",
        "the hour still counts"
    );
    assert!(n.metric("fraudmesh_call_decisions_total", &[("rule", "locked")]) >= 1.0);
}

#[test]
fn bad_requests_get_clear_errors_and_garbage_numbers_a_reason() {
    let mut n = Node::init(&[]);
    n.start();
    let long_account = "a".repeat(257);
    for (body, needle) in [
        ("{not json", "bad JSON"),
        ("", "bad JSON"),
        ("\u{1}\u{2}binary", "bad form body"),
        ("{\"to\": \"0441234567\"}", "account"),
        ("{\"account\": \"\", \"to\": \"0441234567\"}", "account"),
        ("{\"account\": \" \", \"to\": \"0441234567\"}", "account"),
        ("{\"account\": \"10\\u00001\", \"to\": \"0441234567\"}", "control"),
        (
            &format!("{{\"account\": \"{long_account}\", \"to\": \"0441234567\"}}"),
            "at most 256 bytes",
        ),
        (
            "{\"account\": \"a\", \"to\": \"1\", \"colour\": \"red\"}",
            "unknown field",
        ),
    ] {
        let (code, text) = n.calls_post("/v1/calls/authorize", JSON, body);
        assert_eq!(code, 400, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(v["error"].as_str().unwrap().contains(needle), "{body}: {text}");
    }
    // Form-encoded bodies (Asterisk CURL(), FreeSWITCH curl) work like JSON.
    let (code, text) = authorize_form(&n, "account=1001&to=0900%20123%20456&call_id=form-1");
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"rule\":\"premium-rate\""), "{text}");
    let (code, text) = authorize_form(&n, "to=0441234567");
    assert_eq!(code, 400, "{text}");
    // A From with an unencoded `&` adds a field: refused, which every snippet denies.
    let (code, text) = authorize_form(&n, "account=1001&from=a&b&to=0900123456");
    assert_eq!(code, 400, "{text}");
    // JSON labelled as a form (what `curl -d '{...}'` sends) is read as JSON.
    let (code, text) = authorize_form(&n, "{\"account\": \"1001\", \"to\": \"0900123456\"}");
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"rule\":\"premium-rate\""), "{text}");
    let long_to = "0".repeat(300);
    for to in [
        "*97",
        "sip:bob@example.com",
        "1001",
        "",
        "0900\u{0}123456",
        long_to.as_str(),
    ] {
        let v = call(&n, "a", to, "x");
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

/// What a hijacked extension controls (its Call-ID, its From user, the source address
/// the PBX saw) never makes the node refuse to decide: the rules apply as to anyone.
#[test]
fn odd_optional_fields_never_stop_a_decision() {
    let mut n = Node::init(&[]);
    n.start();
    let long_id = "x".repeat(300);
    let ctl_id = "id\r\n\u{0}with controls";
    for (i, (call_id, from, source_ip)) in [
        (long_id.as_str(), "1001", "192.0.2.10"),
        (ctl_id, "1001", "192.0.2.10"),
        ("ok-1", "a&b%00c\r\n\tfolded: header", "192.0.2.10"),
        ("ok-2", &"f".repeat(5000), "not an address"),
        ("ok-3", "1001\u{0}", "::ffff:999.1.1.1\n"),
    ]
    .into_iter()
    .enumerate()
    {
        let body =
            json!({"account": "1001", "from": from, "to": "0900 123 456", "source_ip": source_ip, "call_id": call_id});
        let (code, v) = authorize(&n, &body);
        assert_eq!(code, 200, "case {i}: {v}");
        assert_eq!(
            (v["allow"].as_bool(), v["rule"].as_str()),
            (Some(false), Some("premium-rate")),
            "case {i}: {v}"
        );
    }
    // The same through a form, with every odd byte percent-encoded.
    let form = format!(
        "account=1001&from=a%26b%00c%0D%0A%09x&to=0900123456&source_ip=nope&call_id={}",
        "y".repeat(300)
    );
    let (code, text) = authorize_form(&n, &form);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"rule\":\"premium-rate\""), "{text}");

    // An allowed call with a 300-byte Call-ID is counted under its hash, and its end
    // (same Call-ID) finds it.
    let v = call(&n, "1001", "044 668 18 00", &long_id);
    assert_eq!(v["allow"], true, "{v}");
    let list = cli_json(&n.dir, &["accounts", "list", "--json"]);
    assert_eq!(account(&list, "1001")["active"], 1, "{list}");
    let (code, ended) = end(&n, "1001", &long_id);
    assert_eq!(code, 200, "{ended}");
    assert_eq!(ended["ended"], true, "{ended}");
    assert!(ended["call_id"].as_str().unwrap().starts_with("sha256:"), "{ended}");
    let list = cli_json(&n.dir, &["accounts", "list", "--json"]);
    assert_eq!(account(&list, "1001")["active"], 0, "{list}");
    let log = n.log();
    assert!(!log.contains(&"f".repeat(200)), "from is cut in the log");
    assert!(
        !log.contains("folded: header\n"),
        "control characters are escaped in the log"
    );
}

/// A call is ended only by the account that started it: anyone else's end changes
/// nothing (else one extension could end another's calls to beat its concurrency limit).
#[test]
fn call_ends_belong_to_their_account() {
    let n = Node::init(&[]);
    n.append_config("[calls.limits]\nconcurrent = 1\n");
    let mut n = n;
    n.start();
    assert_eq!(call(&n, "3001", "044 668 18 00", "c1")["allow"], true);
    let (code, v) = end(&n, "3002", "c1");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v, json!({"call_id": "c1", "ended": false, "account": "3002"}));
    let list = cli_json(&n.dir, &["accounts", "list", "--json"]);
    assert_eq!(account(&list, "3001")["active"], 1, "{list}");

    // Without an account, or with a bad one, nothing ends.
    for (body, ctype) in [
        ("", FORM),
        ("{}", JSON),
        ("account=", FORM),
        ("{\"account\": \"a\\u0000\"}", JSON),
    ] {
        let (code, text) = n.calls_post("/v1/calls/c1/end", ctype, body);
        assert_eq!(code, 400, "{body:?}: {text}");
        assert!(text.contains("account"), "{body:?}: {text}");
    }
    // JSON works like the form; extra fields are ignored.
    let (code, text) = n.calls_post("/v1/calls/c1/end", JSON, "{\"account\": \"3001\", \"reason\": \"bye\"}");
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"ended\":true"), "{text}");
    let list = cli_json(&n.dir, &["accounts", "list", "--json"]);
    assert_eq!(account(&list, "3001")["active"], 0, "{list}");
    assert_eq!(end(&n, "3001", "c1").1["ended"], false, "ended once");
}

/// The SIP stack's endpoints take the calls token and nothing else; the operator's reads
/// (accounts, call checks, the audit) take the admin token.
#[test]
fn the_calls_endpoints_take_the_calls_token_and_the_operators_reads_the_admin_token() {
    let mut n = Node::init(&[]);
    n.start();
    let api = n.api();
    let calls = n.calls_token();
    let admin = n.token();
    assert_eq!(calls.len(), 64, "{calls}");
    assert!(calls.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(calls, admin);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(n.dir.join("calls.token"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640);

    let body = "account=1001&to=0441234567&call_id=t1";
    for (bearer, what) in [
        (None, "no token"),
        (Some(admin.clone()), "the admin token"),
        (Some("nope".to_string()), "a wrong token"),
        (Some(format!("{calls}x")), "a longer token"),
    ] {
        for path in ["/v1/calls/authorize", "/v1/calls/t1/end"] {
            let auth = bearer.as_ref().map(|t| format!("Bearer {t}"));
            let mut headers = vec![("Content-Type", FORM)];
            if let Some(a) = &auth {
                headers.push(("Authorization", a));
            }
            let (code, text) = http(&api, "POST", path, &headers, body);
            assert_eq!(code, 401, "{path} with {what}: {text}");
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert!(v["error"].as_str().unwrap().contains("calls token"), "{text}");
        }
    }
    let list = cli_json(&n.dir, &["accounts", "list", "--json"]);
    assert_eq!(list["accounts"], json!([]), "nothing refused was counted: {list}");
    let (code, text) = authorize_form(&n, body);
    assert_eq!(code, 200, "{text}");

    for path in [
        "/v1/accounts",
        "/v1/audit",
        "/v1/calls/check?account=1001&to=0441234567",
    ] {
        let (code, text) = http(&api, "GET", path, &[], "");
        assert_eq!(code, 401, "{path}: {text}");
        let bearer = format!("Bearer {calls}");
        let (code, text) = http(&api, "GET", path, &[("Authorization", &bearer)], "");
        assert_eq!(code, 403, "{path} with the calls token: {text}");
        n.admin_get(path);
    }
    // The CLI sends the admin token.
    let list = cli_json(&n.dir, &["accounts", "list", "--json"]);
    assert_eq!(account(&list, "1001")["calls_last_day"], 1, "{list}");
    let v = cli_json(
        &n.dir,
        &["calls", "check", "--account", "1001", "--to", "0900123456", "--json"],
    );
    assert_eq!(v["rule"], "premium-rate");
}

#[test]
fn a_fraud_number_reported_on_one_node_is_denied_on_a_node_that_trusts_it() {
    let mut b = Node::init(&[]);
    b.start();
    let mut a = Node::trusting(&b);
    a.start();
    a.wait_gossip_peers(1);
    assert_eq!(call(&a, "1001", "0044 20 7946 0958", "f1")["allow"], true);
    b.report(&["+4420794", "--kind", "toll-fraud"]);
    wait_for("the fraud number denied on A", DEADLINE, || {
        let v = call(&a, "1001", "0044 20 7946 0958", "f2");
        (v["rule"] == "fraud-number").then_some(())
    });
    assert_eq!(call(&a, "1001", "0044 20 7000 0000", "f3")["allow"], true);
}
