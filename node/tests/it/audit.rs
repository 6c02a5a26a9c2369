//! The PBX audit against fixture trees of Asterisk (templates, globbed and nested
//! includes, a directory where a file is expected, invalid UTF-8, malformed lines) and
//! FreeSWITCH (`$${default_password}` from vars.xml, malformed XML, an unset variable,
//! the stock event socket), with weak and strong entries: each finding with its rule,
//! file and line, none on the strong entries, the exit status, the probe against
//! listeners on 127.0.0.1, and a running node serving the scheduled result — with no
//! secret from the fixtures in any output or log.

use crate::common::*;
use fraudmesh_node::audit::{self, Options};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// Secrets written in the fixtures that no output may show. Short all-digit PINs are
/// left out: they could match a timestamp or a port by chance. A secret equal to its
/// account's name is necessarily visible as that name, so it is not listed either.
const SECRETS: &[&str] = &[
    "Summer2024",
    "Xk3#b",
    "Vq7#mZ2p!Lr9wT4e",
    "Hn4$wQ8zRt2!pLm6",
    "qwerty12",
    "Tb8!kW3qZx6#Jm2r",
    "amp111",
    "9fT!x2Lq#Vr8sK4w",
    "ClueCon",
    "Rz6!pQ2wXn9#Tb4k",
    "Password1",
    "Gq3!tY7pLw2#Vn8z",
    "Jw5#nB9xQ2!rKt7m",
    "Ld8!vC3zPq6#Wm1x",
    "Mf2#kR8wZt5!Qp3v",
    "Yc7!hN4qTx9#Bz2e",
    "default_password=1234",
];
/// Numeric PINs that may be checked in CLI output (no timestamps there).
const PINS: &[&str] = &["58213", "582961", "739164", "4711", "804613", "905172"];

fn assert_no_secret(what: &str, text: &str, pins: bool) {
    let pins = if pins { PINS } else { &[] };
    for s in SECRETS.iter().chain(pins) {
        assert!(!text.contains(s), "{what} shows the secret {s:?}:\n{text}");
    }
}

/// Runs `fraudmesh audit ARGS` with no node directory; checks no secret is shown.
fn audit_cli(args: &[&str]) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    let out = std::process::Command::new(BIN)
        .arg("--dir")
        .arg(tmp.path().join("none"))
        .args(&all)
        .env("FRAUDMESH_LOG", "trace")
        .output()
        .expect("running fraudmesh");
    assert_no_secret("stdout", &String::from_utf8_lossy(&out.stdout), true);
    assert_no_secret("stderr", &String::from_utf8_lossy(&out.stderr), true);
    out
}

fn audit_json(args: &[&str]) -> (Value, Option<i32>) {
    let mut a = args.to_vec();
    a.push("--json");
    let out = audit_cli(&a);
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (v, out.status.code())
}

/// (rule, file relative to `root`, line, subject) of every finding.
fn findings(v: &Value, root: &Path) -> BTreeSet<(String, String, u64, String)> {
    v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let file = f["file"].as_str().expect("file");
            let rel = Path::new(file).strip_prefix(root).unwrap_or(Path::new(file));
            (
                f["rule"].as_str().unwrap().to_string(),
                rel.display().to_string(),
                f["line"].as_u64().expect("line"),
                f["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn set(items: &[(&str, &str, u64, &str)]) -> BTreeSet<(String, String, u64, String)> {
    items
        .iter()
        .map(|(r, f, l, s)| (r.to_string(), f.to_string(), *l, s.to_string()))
        .collect()
}

/// (file relative to `root`, line) of every error.
fn errors(v: &Value, root: &Path) -> BTreeSet<(String, Option<u64>)> {
    v["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            let file = e["file"].as_str().expect("file");
            let rel = Path::new(file).strip_prefix(root).unwrap_or(Path::new(file));
            (rel.display().to_string(), e["line"].as_u64())
        })
        .collect()
}

#[test]
fn asterisk_tree_gives_each_weakness_with_file_and_line_and_nothing_on_strong_entries() {
    let root = fixture("audit/asterisk");
    let (v, code) = audit_json(&["--asterisk", root.to_str().unwrap()]);
    assert_eq!(code, Some(2), "a high finding gates: {v:#}");
    // Exactly these: the strong entries (105-auth, 200-auth from a strong template in
    // another include, peer 301, mailbox 1003, AMI user monitor with an ACL) have none.
    assert_eq!(
        findings(&v, &root),
        set(&[
            ("trivial-secret", "pjsip.conf", 19, "auth 101-auth"), // from template [auth-stock](!)
            ("secret-equals-name", "pjsip.conf", 34, "auth 102-auth"),
            ("guessable-password", "pjsip.conf", 39, "auth 103-auth"),
            ("short-password", "pjsip.conf", 44, "auth 104-auth"),
            ("guessable-password", "pjsip.d/nested.inc", 4, "auth 202-auth"), // glob, then nested include
            ("simple-password", "pjsip.d/nested.inc", 4, "auth 202-auth"),
            ("secret-equals-name", "sip.conf", 11, "peer 300"),
            ("trivial-secret", "voicemail.conf", 5, "mailbox 1000@default"),
            ("secret-equals-name", "voicemail.conf", 6, "mailbox 1001@default"),
            ("short-pin", "voicemail.conf", 7, "mailbox 1002@default"),
            ("open-management", "manager.conf", 4, "AMI user admin"),
            ("default-secret", "manager.conf", 7, "AMI user admin"),
            ("open-management", "http.conf", 3, "Asterisk HTTP server"),
            ("http-without-tls", "http.conf", 3, "Asterisk HTTP server"),
        ]),
        "{v:#}"
    );
    // Unreadable and malformed input is reported with file and line; the rest was read.
    assert_eq!(
        errors(&v, &root),
        [
            ("unreadable.conf".to_string(), None),
            ("voicemail.conf".to_string(), Some(9)),
            ("manager.conf".to_string(), Some(17)),
            ("manager.conf".to_string(), Some(18)),
        ]
        .into_iter()
        .collect(),
        "{v:#}"
    );
    assert_eq!(v["summary"]["high"], 11);
    assert_eq!(v["summary"]["medium"], 3);
    assert_eq!(v["summary"]["low"], 0);
    assert_eq!(v["summary"]["errors"], 4);
    let files: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for f in [
        "pjsip.d/00-templates.conf",
        "pjsip.d/200.conf",
        "pjsip.d/nested.inc",
        "http.conf",
    ] {
        assert!(files.iter().any(|x| x.ends_with(f)), "{f} not read: {files:?}");
    }
    let first = &v["findings"][0];
    for k in ["severity", "rule", "file", "line", "subject", "message", "fix"] {
        assert!(!first[k].is_null(), "{k} missing in {first}");
    }
    assert_eq!(first["severity"], "high");
}

#[test]
fn freeswitch_tree_resolves_preprocessor_variables_and_reports_the_event_socket() {
    let root = fixture("audit/freeswitch");
    let (v, code) = audit_json(&["--freeswitch", root.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    // 1001 is strong: nothing; 1009 is in a malformed file: an error, not a finding.
    assert_eq!(
        findings(&v, &root),
        set(&[
            ("trivial-secret", "directory/default/1000.xml", 4, "user 1000"), // $${default_password} = 1234
            ("secret-equals-name", "directory/default/1000.xml", 5, "user 1000"),
            ("guessable-password", "directory/default/1002.xml", 4, "user 1002"),
            ("short-pin", "directory/default/1002.xml", 5, "user 1002"),
            (
                "open-management",
                "autoload_configs/event_socket.conf.xml",
                4,
                "event socket"
            ),
            (
                "default-secret",
                "autoload_configs/event_socket.conf.xml",
                6,
                "event socket"
            ),
        ]),
        "{v:#}"
    );
    assert_eq!(
        errors(&v, &root),
        [
            ("directory/default/1003.xml".to_string(), Some(4)),
            ("directory/default/broken.xml".to_string(), Some(5)),
            ("directory/default/unreadable.xml".to_string(), None),
        ]
        .into_iter()
        .collect(),
        "{v:#}"
    );
}

#[test]
fn strong_trees_pass_with_exit_zero_and_a_missing_directory_is_an_error_not_a_stop() {
    let strong = fixture("audit/strong");
    let a = strong.join("asterisk");
    let f = strong.join("freeswitch");
    let (v, code) = audit_json(&["--asterisk", a.to_str().unwrap(), "--freeswitch", f.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["findings"], serde_json::json!([]), "{v:#}");
    assert_eq!(v["errors"], serde_json::json!([]), "{v:#}");
    assert_eq!(v["files"].as_array().unwrap().len(), 6, "{v:#}");

    let (v, code) = audit_json(&[
        "--asterisk",
        "/nonexistent/asterisk",
        "--freeswitch",
        f.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(v["errors"][0]["file"], "/nonexistent/asterisk");
    assert_eq!(v["files"].as_array().unwrap().len(), 2, "FreeSWITCH still read: {v:#}");
}

#[test]
fn human_output_is_grouped_by_severity_and_shows_no_secret() {
    let a = fixture("audit/asterisk");
    let f = fixture("audit/freeswitch");
    let out = audit_cli(&["--asterisk", a.to_str().unwrap(), "--freeswitch", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    let high = text.find("HIGH (16)").unwrap_or_else(|| panic!("{text}"));
    let medium = text.find("MEDIUM (4)").unwrap_or_else(|| panic!("{text}"));
    let errors = text.find("NOT CHECKED (7)").unwrap_or_else(|| panic!("{text}"));
    assert!(high < medium && medium < errors, "{text}");
    assert!(text.contains("voicemail.conf:9: not valid UTF-8"), "{text}");
    assert!(text.contains("fix: "), "{text}");
}

#[test]
fn probe_reports_the_listeners_it_finds_on_loopback() {
    let ami = TcpListener::bind("127.0.0.1:0").unwrap();
    let esl = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (ami_port, esl_port) = (ami.local_addr().unwrap().port(), esl.local_addr().unwrap().port());
    let mut o = Options::explicit(None, None, vec!["127.0.0.1".into()]);
    o.ports = vec![
        (ami_port, "AMI"),
        (esl_port, "SIP"),
        (closed, "FreeSWITCH event socket"),
    ];
    o.timeout = Duration::from_secs(1);
    let r = audit::run(&o);
    let open: Vec<(u16, bool)> = r.probes.iter().map(|p| (p.port, p.open)).collect();
    assert_eq!(open, [(ami_port, true), (esl_port, true), (closed, false)]);
    let found: Vec<(&str, &str, &str)> = r
        .findings
        .iter()
        .map(|f| (f.rule, f.severity.as_str(), f.subject.as_str()))
        .collect();
    let ami_subject = format!("127.0.0.1 port {ami_port}");
    let sip_subject = format!("127.0.0.1 port {esl_port}");
    assert_eq!(
        found,
        [
            ("open-port", "medium", ami_subject.as_str()),
            ("open-port", "low", sip_subject.as_str())
        ]
    );
    assert!(!r.has_high());

    // Through the CLI: the port list, only on the host named; a name that does
    // not resolve is an error and the audit goes on.
    let (v, code) = audit_json(&["--probe", "127.0.0.1", "--probe", "no-such-host.invalid"]);
    assert_eq!(code, Some(0));
    let ports: Vec<u64> = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [80, 443, 5038, 5060, 8021, 8088, 8089]);
    assert!(v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["address"].as_str().unwrap().starts_with("127.0.0.1:")));
    let errs = v["errors"].as_array().unwrap();
    assert_eq!(errs.len(), 1, "{v:#}");
    assert!(errs[0]["message"].as_str().unwrap().contains("no-such-host.invalid"));
}

#[test]
fn node_runs_the_audit_on_its_schedule_and_serves_the_last_result() {
    let mut node = Node::init(&[]);
    let a = fixture("audit/asterisk");
    let f = fixture("audit/freeswitch");
    node.append_config(&format!(
        "[audit]\ninterval = \"1s\"\nasterisk = {:?}\nfreeswitch = {:?}\n",
        a.to_str().unwrap(),
        f.to_str().unwrap()
    ));
    cli_ok(&node.dir, &["check-config"]);
    node.start();
    let api = node.api();
    // The result names accounts next to their weak secrets: only the admin reads it.
    let (code, body) = http(&api, "GET", "/v1/audit", &[], "");
    assert_eq!(code, 401, "{body}");
    let token = node.token();
    // Poll until a second scheduled run is done (the first is at start).
    let v: Value = wait_for("two scheduled audits", DEADLINE, || {
        let v: Value = serde_json::from_str(&http_get_with(&api, "/v1/audit", &token)).ok()?;
        assert!(["pending", "done"].contains(&v["state"].as_str().unwrap_or("")), "{v}");
        (v["runs"].as_u64().unwrap_or(0) >= 2).then_some(v)
    });
    assert_eq!(v["state"], "done");
    assert_eq!(v["interval"], "1s");
    assert_eq!(v["summary"]["high"], 16, "{v:#}");
    assert_eq!(v["summary"]["errors"], 7);
    assert!(v["at"].as_u64().is_some());
    assert!(v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["rule"] == "default-secret" && x["subject"] == "event socket"));
    assert_no_secret("GET /v1/audit", &v.to_string(), false);
    assert_eq!(node.metric("fraudmesh_audit_findings", &[("severity", "high")]), 16.0);
    assert_eq!(node.metric("fraudmesh_audit_findings", &[("severity", "medium")]), 4.0);
    node.stop();
    let log = node.log();
    assert!(log.contains("audit done"), "{log}");
    assert_no_secret("the node's log", &log, true);

    // Without [audit] the endpoint says the scheduled audit is off.
    let mut plain = Node::init(&[]);
    plain.start();
    let v: Value = serde_json::from_str(&plain.admin_get("/v1/audit")).unwrap();
    assert_eq!(v["state"], "off");
    assert!(v["findings"].is_null());
}
