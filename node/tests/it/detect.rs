//! Detection against real log formats and a real node: `fraudmesh detect test` on fixture
//! logs of Asterisk 18 (security events, PJSIP, chan_sip, dialplan), FreeSWITCH 1.10 and
//! the Kamailio example cfg, with crafted lines that try to smuggle another address or a
//! registration, and lines that prove nothing about their source; a node following a log
//! file that does not exist at start, is rotated and truncated; forged and replayed
//! lines counted and never reported; the report cap; a connected peer and the node's own
//! address never reported (a peer in a network namespace of the test's own).

use crate::common::netns::{self, Lan};
use crate::common::*;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

fn log_fixture(name: &str) -> PathBuf {
    fixture(&format!("logs/{name}"))
}

/// `detect test --json` with no node directory at all.
fn replay(name: &str, extra: &[&str]) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("none");
    let path = log_fixture(name);
    let mut args = vec!["detect", "test", path.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    cli_json(&dir, &args)
}

fn reports(v: &Value) -> Vec<(String, String)> {
    v["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().to_string(),
                r["sighting_kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The events of `source` in a replay, as (proof, why unproven).
fn proofs(v: &Value, source: &str) -> Vec<(String, Option<String>)> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"] == source)
        .map(|e| {
            (
                e["proof"].as_str().unwrap().to_string(),
                e["unproven"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn never_mentions(v: &Value, addr: &str) {
    let text = v.to_string();
    assert!(!text.contains(addr), "{addr} was smuggled into: {text}");
}

#[test]
fn asterisk_log_gives_the_proven_attackers_and_spares_phones_forgeries_and_smuggling() {
    let v = replay("asterisk.log", &[]);
    assert_eq!(v["format"], "asterisk", "guessed from its lines");
    assert_eq!(
        reports(&v),
        vec![
            ("203.0.113.5".into(), "auth-failure".into()),
            ("198.51.100.77".into(), "auth-failure".into()),
            ("203.0.113.40".into(), "toll-fraud".into()),
            ("2001:db8:bad::/64".into(), "auth-failure".into()),
            ("203.0.113.66".into(), "auth-failure".into()),
        ],
        "{v:#}"
    );
    let enumerate = &v["reports"][0];
    assert_eq!(enumerate["usernames"], serde_json::json!(["100", "101", "102"]));
    // The phone that registered and then failed twice is never reported.
    assert!(!reports(&v).iter().any(|(s, _)| s == "198.51.100.30"));
    // Wrong answers with nonces never sent to their address, a nonce replayed from
    // another address, unknown accounts over UDP: counted as unproven, never reported.
    for (addr, why) in [
        ("203.0.113.77", "nonce-not-sent"),
        ("203.0.113.89", "nonce-not-sent"),
        ("203.0.113.90", "udp"),
    ] {
        let p = proofs(&v, addr);
        assert_eq!(p.len(), if addr == "203.0.113.90" { 6 } else { 5 }, "{addr}");
        assert!(
            p.iter().all(|(proof, w)| proof == "none" && w.as_deref() == Some(why)),
            "{addr}: {p:?}"
        );
    }
    assert_eq!(proofs(&v, "198.51.100.77")[0].0, "nonce-echo");
    assert_eq!(proofs(&v, "203.0.113.40")[0].0, "handshake");
    assert_eq!(v["unproven"], 20, "{v:#}");
    assert_eq!(v["ambiguous"].as_array().unwrap().len(), 2, "{v:#}");
    never_mentions(&v, "192.0.2.99");
    assert_eq!(v["lines"], 54);
    // A format given restricts the patterns.
    let v = replay("asterisk.log", &["--format", "freeswitch"]);
    assert!(v["events"].as_array().unwrap().is_empty());
}

#[test]
fn freeswitch_lines_prove_nothing_and_kamailio_lines_say_what_they_prove() {
    let v = replay("freeswitch.log", &[]);
    assert_eq!(v["format"], "freeswitch");
    assert!(reports(&v).is_empty(), "{v:#}");
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 11);
    assert!(events.iter().all(|e| e["unproven"] == "nonce-not-bound"), "{v:#}");
    never_mentions(&v, "192.0.2.99");
    let v = replay("kamailio.log", &["--format", "kamailio"]);
    assert_eq!(
        reports(&v),
        vec![
            ("203.0.113.11".into(), "scan".into()),
            ("203.0.113.12".into(), "invite-flood".into()),
            ("203.0.113.13".into(), "auth-failure".into()),
        ],
        "{v:#}"
    );
    assert_eq!(proofs(&v, "203.0.113.14"), vec![("none".into(), Some("udp".into()))]);
    assert!(proofs(&v, "203.0.113.16")
        .iter()
        .all(|(_, w)| w.as_deref() == Some("legacy-line")));
    never_mentions(&v, "192.0.2.99");
}

#[test]
fn detect_test_refuses_bad_arguments_and_prints_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = log_fixture("asterisk.log");
    let bad = cli(dir, &["detect", "test", path.to_str().unwrap(), "--format", "yate"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--format"));
    let missing = cli(dir, &["detect", "test", "/nonexistent/log"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/log"));
    let text = cli_ok(dir, &["detect", "test", path.to_str().unwrap()]);
    assert!(text.contains("would report:"), "{text}");
    assert!(text.contains("54 lines, "), "{text}");
    assert!(text.contains("unproven: nonce-not-sent"), "{text}");
    // A file no built-in format knows needs --format.
    let other = dir.join("other.log");
    std::fs::write(&other, "nothing to see\n").unwrap();
    let unknown = cli(dir, &["detect", "test", other.to_str().unwrap()]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("--format"));
}

fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

/// An Asterisk security event from `remote` over `transport` (as in the fixture), each
/// written a second after the one before (a log's lines differ from their start: how a
/// follower tells a truncated and rewritten file from the old one).
fn security(event: &str, account: &str, transport: &str, remote: &str, tail: &str) -> String {
    static SECOND: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let s = SECOND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let at = format!("2026-11-24 {:02}:{:02}:{:02}", 10 + s / 3600 % 12, s / 60 % 60, s % 60);
    format!(
        r#"[{at}] SECURITY[2345] res_security_log.c: SecurityEvent="{event}",EventTV="{}.001+0000",Severity="Error",Service="PJSIP",EventVersion="1",AccountID="{account}",SessionID="s",LocalAddress="IPV4/{transport}/192.0.2.1/5060",RemoteAddress="IPV4/{transport}/{remote}/5060"{tail}"#,
        at.replace(' ', "T")
    )
}

/// `n` unknown accounts tried from `addr` over TCP (proven by the handshake).
fn failures(addr: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| security("InvalidAccountID", &format!("20{i}"), "TCP", addr, ""))
        .collect()
}

/// A node following the Asterisk log `log` (absent yet), with extra `[detect]` keys.
fn following(log: &Path, extra: &str) -> Node {
    let n = Node::init(&[]);
    n.append_config(&format!(
        "[detect]\n{extra}\n[[detect.logs]]\npath = \"{}\"\nformat = \"asterisk\"\n",
        log.display()
    ));
    n
}

#[test]
fn a_followed_log_is_read_across_absence_rotation_and_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("messages");
    let mut n = following(&log, "never_report = [\"198.51.100.0/24\"]");
    n.start();
    // The file does not exist yet; when it appears it is read from its start.
    append(&log, &failures("203.0.113.71", 5));
    wait_for("the first attacker blocked", DEADLINE, || {
        n.is_blocked("203.0.113.71").then_some(())
    });
    let c = n.check("203.0.113.71");
    assert_eq!(c["blocked"], true, "{c}");
    // Never-reported addresses stay unreported however often they fail.
    append(&log, &failures("198.51.100.9", 5));
    // Rotation: the file is renamed and a new one created.
    std::fs::rename(&log, tmp.path().join("messages.1")).unwrap();
    append(&log, &failures("203.0.113.72", 5));
    wait_for("the attacker after rotation blocked", DEADLINE, || {
        n.is_blocked("203.0.113.72").then_some(())
    });
    // Truncation in place (copytruncate), then new lines.
    std::fs::write(&log, "").unwrap();
    append(&log, &failures("203.0.113.73", 5));
    wait_for("the attacker after truncation blocked", DEADLINE, || {
        n.is_blocked("203.0.113.73").then_some(())
    });
    assert!(!n.is_blocked("198.51.100.9"), "a never-reported address was blocked");
    assert!(
        n.metric(
            "fraudmesh_detect_events_total",
            &[("kind", "unknown-account"), ("verdict", "never_report")]
        ) >= 3.0
    );
    assert!(n.log().contains("detected an attacker"));
}

#[test]
fn forged_and_replayed_lines_are_counted_unproven_and_never_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("security");
    let mut n = following(&log, "");
    n.start();
    let innocent = "203.0.113.91";
    let mut lines = Vec::new();
    // Datagrams forged with the innocent's source: unknown accounts over UDP, wrong
    // answers with nonces never sent to it, a nonce fetched from elsewhere replayed.
    for i in 0..10 {
        lines.push(security("InvalidAccountID", &format!("u{i}"), "UDP", innocent, ""));
    }
    lines.push(security(
        "ChallengeSent",
        "1001",
        "UDP",
        "203.0.113.92",
        r#",Challenge="1764/replayed""#,
    ));
    for i in 0..6 {
        let nonce = if i % 2 == 0 {
            "1764/replayed".to_string()
        } else {
            format!("1764/made-up-{i}")
        };
        lines.push(security(
            "ChallengeResponseFailed",
            "1001",
            "UDP",
            innocent,
            &format!(r#",Challenge="{nonce}",Response="x",ExpectedResponse="""#),
        ));
    }
    // PJSIP notices say neither transport nor nonce.
    for i in 0..6 {
        lines.push(format!("[2026-11-24 10:24:0{i}] NOTICE[2399] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '<sip:{i}@192.0.2.1>' failed for '{innocent}:5060' (callid: {i}) - No matching endpoint found"));
    }
    // Then a real attacker: each wrong answer echoes the nonce sent to it.
    let attacker = "203.0.113.96";
    for i in 0..5 {
        let nonce = format!("1764/attacker-{i}");
        lines.push(security(
            "ChallengeSent",
            "1001",
            "UDP",
            attacker,
            &format!(r#",Challenge="{nonce}""#),
        ));
        lines.push(security(
            "ChallengeResponseFailed",
            "1001",
            "UDP",
            attacker,
            &format!(r#",Challenge="{nonce}",Response="x",ExpectedResponse="""#),
        ));
    }
    append(&log, &lines);
    // Lines are read in order: once the attacker is blocked every forged line was read.
    wait_for("the attacker blocked", DEADLINE, || {
        n.is_blocked(attacker).then_some(())
    });
    assert!(!n.is_blocked(innocent), "a forged source was blocked");
    assert!(n.reporters(innocent).is_empty(), "a forged source was reported");
    let unproven = |kind: &str, reason: &str| {
        n.metric(
            "fraudmesh_detect_unproven_events_total",
            &[("kind", kind), ("reason", reason)],
        )
    };
    assert_eq!(unproven("unknown-account", "udp"), 10.0);
    assert_eq!(unproven("auth-failure", "nonce-not-sent"), 6.0);
    assert_eq!(unproven("unknown-account", "no-transport"), 6.0);
    assert_eq!(
        n.metric("fraudmesh_detect_events_total", &[("verdict", "unproven")]),
        22.0
    );
}

#[test]
fn reports_are_capped_per_minute_with_a_metric_and_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("security");
    let mut n = following(
        &log,
        "max_reports_per_minute = 2\n[detect.thresholds.unknown-account]\ncount = 1",
    );
    n.start();
    let attackers: Vec<String> = (1..=4).map(|i| format!("203.0.113.1{i}")).collect();
    let lines: Vec<String> = attackers.iter().flat_map(|a| failures(a, 1)).collect();
    append(&log, &lines);
    wait_for("two detections capped", DEADLINE, || {
        (n.metric("fraudmesh_detect_reports_capped_total", &[]) >= 2.0).then_some(())
    });
    // Reports are made one after another, before the next event is looked at.
    let blocked: Vec<bool> = attackers.iter().map(|a| n.is_blocked(a)).collect();
    assert_eq!(blocked, vec![true, true, false, false]);
    assert!(n.log().contains("detection reports capped"), "{}", n.log());
}

/// A `fraudmesh run` of `dir` inside a network namespace, killed on drop.
struct InNamespace(std::process::Child);

impl Drop for InNamespace {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_connected_peer_and_the_nodes_own_address_are_never_reported() {
    netns::require(&["ip"]);
    // A listens on the test's end of a veth pair too; B runs in the namespace and dials
    // A from its end (not a seed of A's, not in any config of A's).
    let lan = Lan::new("dpeer");
    let (own, peer, attacker) = (lan.near(), lan.far(), lan.add_near(9));
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("security");
    let mut a = Node::init(&["--listen", &format!("/ip4/{own}/tcp/0")]);
    a.append_config(&format!(
        "[[detect.logs]]\npath = \"{}\"\nformat = \"asterisk\"\n",
        log.display()
    ));
    a.start();
    let a_there = a.status()["listen"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|l| l.contains(&format!("/{own}/")))
        .expect("A listens on the veth address")
        .to_string();
    let b = Node::init(&["--seed", &a_there]);
    let b_log = std::fs::File::create(b.dir.join("node.log")).unwrap();
    let _b = InNamespace(
        lan.ns
            .command(BIN)
            .arg("--dir")
            .arg(&b.dir)
            .arg("run")
            .env("FRAUDMESH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(b_log)
            .spawn()
            .unwrap(),
    );
    wait_for("B connected to A", DEADLINE, || {
        (a.status()["peers"].as_u64().unwrap_or(0) >= 1).then_some(())
    });
    let mut lines = failures(&peer, 5);
    lines.extend(failures(&own, 5));
    lines.extend(failures(&attacker, 5));
    append(&log, &lines);
    wait_for("the attacker blocked", DEADLINE, || {
        a.is_blocked(&attacker).then_some(())
    });
    for (who, addr) in [("peer", &peer), ("own address", &own)] {
        assert!(!a.is_blocked(addr), "the {who} {addr} was blocked");
        assert!(a.reporters(addr).is_empty(), "the {who} {addr} was reported");
    }
    // The own address's five events, and at least the peer's detection (its earlier
    // events count as never-report too once a refresh has seen the connection).
    assert!(
        a.metric(
            "fraudmesh_detect_events_total",
            &[("kind", "unknown-account"), ("verdict", "never_report")]
        ) >= 6.0,
        "{}",
        a.log()
    );
}

#[test]
fn a_journal_unit_is_followed_through_journalctl_and_restarted_when_it_ends() {
    // A stand-in journalctl first on PATH: it records its arguments, prints what the test
    // writes to a file, and ends once (to check the node starts it again).
    let n = Node::init(&[]);
    let root = n.dir.parent().unwrap().to_path_buf();
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let journal = root.join("journal.txt");
    std::fs::write(&journal, "").unwrap();
    let args = root.join("args.txt");
    let fake = bin.join("journalctl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$@\" >> {args}\nif [ ! -e {root}/ended-once ]; then touch {root}/ended-once; exit 0; fi\nexec tail -n +1 -f {journal}\n",
            args = args.display(),
            root = root.display(),
            journal = journal.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    n.append_config("[[detect.logs]]\njournal = \"kamailio.service\"\nformat = \"kamailio\"\n");
    let mut n = n;
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    n.start_with_env(&[("PATH", path)]);
    let lines: Vec<String> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, u)| {
            format!("Nov 24 12:00:0{i} pbx kamailio[812]: WARNING: <script>: fraudmesh: auth-failure user={u} proto=udp nonce=echoed src=203.0.113.81")
        })
        .collect();
    append(&journal, &lines);
    wait_for("the journal's attacker blocked", DEADLINE, || {
        n.is_blocked("203.0.113.81").then_some(())
    });
    let called = std::fs::read_to_string(&args).unwrap();
    assert!(
        called.lines().count() >= 2,
        "journalctl was started again after it ended: {called}"
    );
    assert!(
        called
            .lines()
            .all(|l| l == "--follow --lines=0 --output=cat --unit kamailio.service"),
        "{called}"
    );
}
