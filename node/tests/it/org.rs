//! Organisations through the operator's tools, with real processes: `org init` →
//! `org endorse` → `endorsements add` on a running node → `explain` shows the member
//! trusted through the organisation; `org revoke` lifts it; local overrides (`allow`)
//! win over the mesh and persist; every kind of bad input is refused with a clear error
//! and changes nothing.

use crate::common::*;
use fraudmesh::endorsement;
use fraudmesh::identity::Identity;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command that needs no node directory (`org …`).
fn org(args: &[&str]) -> std::process::Output {
    let tmp = tempfile::tempdir().expect("tempdir");
    cli(tmp.path(), args)
}

/// `org init --key FILE`: the organisation's id.
fn org_init(key: &Path) -> String {
    let out = org(&["org", "init", "--key", key.to_str().unwrap()]);
    assert!(out.status.success(), "org init: {}", stderr(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(id.starts_with("12D3KooW"), "{id}");
    id
}

/// `org ARGS…` printing exactly one endorsement line.
fn org_line(args: &[&str]) -> String {
    let out = org(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].starts_with("fraudmesh-endorsement:v1:"), "{text}");
    assert!(lines[0].len() <= 1024);
    lines[0].to_string()
}

/// `endorsements list --json` of a running node.
fn endorsements(n: &Node) -> Vec<Value> {
    cli_json(&n.dir, &["endorsements", "list", "--json"])["endorsements"]
        .as_array()
        .expect("endorsements array")
        .clone()
}

/// `explain TARGET --json` of a running node.
fn explain(n: &Node, target: &str) -> Value {
    cli_json(&n.dir, &["explain", target, "--json"])
}

/// The explained record of `reporter`.
fn record_of<'a>(x: &'a Value, reporter: &str) -> &'a Value {
    x["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["reporter"] == reporter)
        .unwrap_or_else(|| panic!("no record of {reporter}: {x}"))
}

#[test]
fn an_endorsed_member_is_trusted_through_the_organisation_until_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("provider.key");
    let org_id = org_init(&key);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let other_key = tmp.path().join("other.key");
    let other_id = org_init(&other_key);

    // A trusts both organisations and no peer; B seeds from A.
    let mut a = Node::init(&["--trust-org", &org_id, "--trust-org", &other_id]);
    let config = std::fs::read_to_string(a.dir.join("config.toml")).unwrap();
    assert!(config.contains(&format!("id = \"{org_id}\"")), "{config}");
    a.start();
    let mut b = Node::init(&["--seed", &a.addr()]);
    b.start();
    a.wait_gossip_peers(1);
    b.wait_gossip_peers(1);

    let k = key.to_str().unwrap();
    let line = org_line(&[
        "org", "endorse", "--key", k, &b.peer_id, "--name", "pbx-b", "--ttl", "30d",
    ]);
    let out = cli_ok(&a.dir, &["endorsements", "add", &line]);
    assert!(out.contains("endorsed") && out.contains("pbx-b"), "{out}");
    let held = endorsements(&a);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["member"], b.peer_id.as_str());
    assert_eq!(held[0]["org"], org_id.as_str());
    assert_eq!(held[0]["name"], "pbx-b");
    assert_eq!(held[0]["active"], true);

    // B's report counts on A at the organisation's weight.
    let target = "203.0.113.77";
    b.report(&[target, "--kind", "scan", "--reason", "friendly-scanner"]);
    wait_for("B's report to block on A", DEADLINE, || {
        a.is_blocked(target).then_some(())
    });
    let x = explain(&a, target);
    assert_eq!(x["target"], target);
    assert_eq!(x["blocked"], true, "{x}");
    assert_eq!(x["threshold"], 1.0);
    assert_eq!(x["allowed"], Value::Null);
    assert!(x["why"].as_str().is_some_and(|w| !w.is_empty()), "{x}");
    let r = record_of(&x, &b.peer_id);
    assert_eq!(r["trusted_via"], "org", "{r}");
    assert_eq!(r["org"], org_id.as_str());
    assert_eq!(r["name"], "pbx-b");
    assert_eq!(r["weight"], 1.0);
    assert_eq!(r["configured_weight"], 1.0);
    assert_eq!(r["counted"], true);
    assert_eq!(r["kind"], "scan");
    assert_eq!(r["evidence"]["reason"], "friendly-scanner");
    assert!(r["org_name"].is_string() && r["reputation"].is_number(), "{r}");
    assert!(r["expires_at_ms"].as_u64() > r["observed_at_ms"].as_u64(), "{r}");
    // The text form answers "why is it blocked?" with the member's name.
    let text = cli_ok(&a.dir, &["explain", target]);
    assert!(
        text.contains("BLOCKED") && text.contains("pbx-b") && text.contains("friendly-scanner"),
        "{text}"
    );

    // A revocation signed by another (trusted) organisation withdraws nothing.
    let wrong = org_line(&["org", "revoke", "--key", other_key.to_str().unwrap(), &b.peer_id]);
    let out = cli(&a.dir, &["endorsements", "add", &wrong]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).is_empty());
    assert_eq!(endorsements(&a).len(), 1, "nothing stored");
    assert!(a.is_blocked(target), "B still counts");

    // The organisation's own revocation (from stdin) makes B a stranger: the block lifts.
    let revoke = org_line(&["org", "revoke", "--key", k, &b.peer_id]);
    let mut child = Command::new(BIN)
        .arg("--dir")
        .arg(&a.dir)
        .args(["endorsements", "add", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "# revoking pbx-b\n\n{revoke}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the revocation to lift the block", DEADLINE, || {
        (!a.is_blocked(target)).then_some(())
    });
    let r = record_of(&explain(&a, target), &b.peer_id).clone();
    assert_eq!(r["trusted_via"], "stranger", "{r}");
    assert_eq!(r["counted"], false);
    let held = endorsements(&a);
    assert!(held.iter().all(|e| e["active"] == false), "{held:?}");
    // The old endorsement, replayed, changes nothing: the revocation is newer.
    let out = cli_ok(&a.dir, &["endorsements", "add", &line]);
    assert!(out.contains("already held"), "{out}");
    assert!(!a.is_blocked(target));
}

#[test]
fn renew_signs_one_line_per_member_and_refuses_a_bad_list_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("provider.key");
    org_init(&key);
    let k = key.to_str().unwrap();
    let m1 = Identity::from_secret([21; 32]).public().peer_id();
    let m2 = Identity::from_secret([22; 32]).public().peer_id();
    let old = org_line(&["org", "endorse", "--key", k, &m1, "--name", "pbx-1", "--ttl", "1d"]);
    let from = tmp.path().join("members.txt");
    std::fs::write(&from, format!("# our PBXs\n{old}\n{m2} pbx-2\n")).unwrap();
    let out = org(&[
        "org",
        "renew",
        "--key",
        k,
        "--from",
        from.to_str().unwrap(),
        "--ttl",
        "90d",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let now = fraudmesh_node::now_ms();
    let renewed: Vec<_> = text
        .lines()
        .map(|l| endorsement::parse_line(l, now, 300_000).expect("a valid line"))
        .collect();
    assert_eq!(renewed.len(), 2, "{text}");
    assert_eq!(renewed[0].endorsement().member.peer_id(), m1);
    assert_eq!(renewed[0].endorsement().name, "pbx-1");
    assert_eq!(renewed[1].endorsement().name, "pbx-2");
    let ttl = renewed[0].endorsement().expires_at - renewed[0].endorsement().issued_at;
    assert_eq!(ttl, 90 * 86_400_000);

    std::fs::write(&from, format!("{m2} pbx-2\nnot-a-peer pbx-3\n")).unwrap();
    let out = org(&["org", "renew", "--key", k, "--from", from.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing printed");
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
}

#[test]
fn allow_overrides_the_mesh_persists_and_is_removed() {
    let mut n = Node::init(&[]);
    n.start();
    let target = "198.51.100.9";
    n.report(&[target, "--kind", "scan"]);
    assert!(n.is_blocked(target));

    let out = cli_ok(&n.dir, &["allow", target, "--reason", "customer trunk", "--ttl", "7d"]);
    assert!(out.contains("allowed 198.51.100.9"), "{out}");
    assert!(!n.is_blocked(target), "the override wins at once");
    let x = explain(&n, target);
    assert_eq!(x["blocked"], false, "{x}");
    assert_eq!(x["allowed"]["reason"], "customer trunk", "{x}");
    let until = x["allowed"]["until"].as_u64().expect("until");
    let at = x["allowed"]["at"].as_u64().expect("at");
    // `until` is the request's time + 7 days, `at` the engine's moment of taking it.
    let week = 7 * 86_400_000;
    assert!(until > at && until - at <= week && until - at > week - 60_000, "{x}");
    assert!(cli_ok(&n.dir, &["explain", target]).contains("customer trunk"));
    let list = cli_json(&n.dir, &["list", "--json"]);
    assert_eq!(list["allowed"][0]["target"], target, "{list}");
    assert!(cli_ok(&n.dir, &["list"]).contains("customer trunk"));

    // It survives a restart.
    n.stop();
    n.start();
    let allows = cli_json(&n.dir, &["allow", "--list", "--json"]);
    assert_eq!(allows["allows"].as_array().map(Vec::len), Some(1), "{allows}");
    assert!(!n.is_blocked(target));

    cli_ok(&n.dir, &["allow", "--remove", target]);
    assert!(n.is_blocked(target), "the mesh decides again");
    let out = cli(&n.dir, &["allow", "--remove", target]);
    assert_eq!(out.status.code(), Some(1), "removing nothing is an error");
    assert!(stderr(&out).contains("no override"), "{}", stderr(&out));
    let allows = cli_json(&n.dir, &["allow", "--list", "--json"]);
    assert_eq!(allows["allows"], serde_json::json!([]));
}

#[test]
fn bad_org_and_trust_input_gets_a_clear_error_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("provider.key");
    let org_id = org_init(&key);
    let k = key.to_str().unwrap();
    let before = std::fs::read(&key).unwrap();
    let member = Identity::from_secret([31; 32]).public().peer_id();

    // An existing key file is never overwritten.
    let out = org(&["org", "init", "--key", k]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&key).unwrap(), before);

    // A key file others can read is refused, naming the fix.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [
        &["org", "endorse", "--key", k, &member, "--name", "pbx"][..],
        &["org", "revoke", "--key", k, &member][..],
    ] {
        let out = org(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(&format!("chmod 600 {k}")), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Bad ttl, peer id and name.
    for (args, needle) in [
        (vec!["--ttl", "401d"], "--ttl"),
        (vec!["--ttl", "forever"], "--ttl"),
        (vec!["--ttl", "0s"], "--ttl"),
    ] {
        let mut a = vec!["org", "endorse", "--key", k, &member, "--name", "pbx"];
        a.extend(args);
        let out = org(&a);
        assert_eq!(out.status.code(), Some(1), "{a:?}");
        assert!(stderr(&out).contains(needle), "{a:?}: {}", stderr(&out));
    }
    let out = org(&["org", "endorse", "--key", k, "bob", "--name", "pbx"]);
    assert!(stderr(&out).contains("not a node's peer id"), "{}", stderr(&out));
    let out = org(&["org", "endorse", "--key", k, &member, "--name", "no spaces allowed"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = org(&["org", "endorse", "--key", k, &org_id, "--name", "pbx"]);
    assert!(stderr(&out).contains("own id"), "{}", stderr(&out));

    // `init --trust-org` with a bad id writes nothing.
    let dir = tmp.path().join("x");
    let out = cli(&dir, &["init", "--trust-org", "not-an-org"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--trust-org"), "{}", stderr(&out));
    assert!(!dir.join("identity.key").exists());

    // A running node trusting the organisation.
    let mut n = Node::init(&["--trust-org", &org_id]);
    n.start();
    let good = org_line(&["org", "endorse", "--key", k, &member, "--name", "pbx"]);
    let untrusted = {
        let key2 = tmp.path().join("untrusted.key");
        org_init(&key2);
        org_line(&[
            "org",
            "endorse",
            "--key",
            key2.to_str().unwrap(),
            &member,
            "--name",
            "pbx",
        ])
    };
    let expired = endorsement::endorse(
        &Identity::from_secret(hex_seed(&key)),
        Identity::from_secret([31; 32]).public(),
        "pbx",
        1_000_000,
        86_400_000,
    )
    .unwrap()
    .to_line();
    let oversized = format!("fraudmesh-endorsement:v1:{}", "A".repeat(2000));
    let mut forged = good.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'Q' } else { 'A' });
    for (line, needle) in [
        ("garbage", "line 1"),
        (oversized.as_str(), "line 1"),
        (expired.as_str(), "line 1"),
        (forged.as_str(), "line 1"),
    ] {
        let out = cli(&n.dir, &["endorsements", "add", line]);
        assert_eq!(out.status.code(), Some(1), "{line}");
        assert!(stderr(&out).contains(needle), "{line}: {}", stderr(&out));
    }
    // One malformed line among good ones publishes nothing.
    let out = cli(&n.dir, &["endorsements", "add", &good, "garbage"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    // An organisation the node does not trust: refused by the node.
    let out = cli(&n.dir, &["endorsements", "add", &untrusted]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).is_empty());
    assert_eq!(endorsements(&n).len(), 0, "nothing refused was stored");

    // The API: token, body shape, size, and every refusal leaves nothing behind.
    let api = n.api();
    let bearer = format!("Bearer {}", n.token());
    let auth = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    let body = |l: &str| serde_json::json!({ "line": l }).to_string();
    let (code, _) = http(&api, "POST", "/v1/endorsements", &[], &body(&good));
    assert_eq!(code, 401);
    for bad in [
        "{not json".to_string(),
        serde_json::json!({ "lines": [good] }).to_string(),
        body("garbage"),
        body(&oversized),
        body(&expired),
        body(&forged),
        body(&untrusted),
    ] {
        let (code, resp) = http(&api, "POST", "/v1/endorsements", &auth, &bad);
        assert_eq!(code, 400, "{bad}: {resp}");
        let v: Value = serde_json::from_str(&resp).unwrap();
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{resp}");
    }
    assert_eq!(endorsements(&n).len(), 0);

    // Targets and overrides.
    let out = cli(&n.dir, &["explain", "999.1.1.1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("999.1.1.1"), "{}", stderr(&out));
    for args in [
        &["allow", "999.1.1.1", "--reason", "x"][..],
        &["allow", "192.0.2.1", "--reason", "x", "--ttl", "forever"][..],
        &["allow", "--remove", "nonsense"][..],
    ] {
        let out = cli(&n.dir, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    }
    let out = cli(&n.dir, &["allow", "192.0.2.1"]);
    assert_eq!(out.status.code(), Some(2), "--reason is required");
    let (code, _) = http(&api, "GET", "/v1/explain/999.1.1.1", &[], "");
    assert_eq!(code, 400);
    let (code, _) = http(&api, "POST", "/v1/allow", &[], r#"{"target":"192.0.2.1","reason":"x"}"#);
    assert_eq!(code, 401);
    for bad in [
        r#"{"target":"999.1.1.1","reason":"x"}"#,
        r#"{"target":"192.0.2.1","reason":""}"#,
        r#"{"target":"192.0.2.1"}"#,
        r#"{"target":"192.0.2.1","reason":"x","ttl":"forever"}"#,
        r#"{"target":"192.0.2.1","reason":"x","ttl":0}"#,
        r#"{"target":"192.0.2.1","reason":"x","colour":"red"}"#,
    ] {
        let (code, resp) = http(&api, "POST", "/v1/allow", &auth, bad);
        assert_eq!(code, 400, "{bad}: {resp}");
    }
    let (code, _) = http(&api, "DELETE", "/v1/allow/192.0.2.1", &[], "");
    assert_eq!(code, 401);
    let (code, _) = http(&api, "DELETE", "/v1/allow/nonsense", &auth, "");
    assert_eq!(code, 400);
    let allows = cli_json(&n.dir, &["allow", "--list", "--json"]);
    assert_eq!(allows["allows"], serde_json::json!([]), "nothing refused was kept");
}

/// The secret seed in a key file (to sign what the CLI refuses to: an expired endorsement).
fn hex_seed(path: &Path) -> [u8; 32] {
    let text = std::fs::read_to_string(path).unwrap();
    let bytes: Vec<u8> = (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&text.trim()[i..i + 2], 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}
