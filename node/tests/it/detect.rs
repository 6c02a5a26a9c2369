//! Detection against real log formats and a real node: `fraudmesh detect test` on fixture
//! logs of Asterisk 18 (security events, PJSIP, chan_sip, dialplan), FreeSWITCH 1.10 and
//! the Kamailio example cfg, with crafted lines that try to smuggle another address; a
//! node following a log file that does not exist at start, is rotated and truncated.

use crate::common::*;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

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

fn never_mentions(v: &Value, addr: &str) {
    let text = v.to_string();
    assert!(!text.contains(addr), "{addr} was smuggled into: {text}");
}

#[test]
fn asterisk_log_gives_the_attackers_and_spares_phones_and_smuggled_addresses() {
    let v = replay("asterisk.log", &[]);
    assert_eq!(
        reports(&v),
        vec![
            ("203.0.113.5".into(), "auth-failure".into()),
            ("198.51.100.77".into(), "auth-failure".into()),
            ("203.0.113.40".into(), "toll-fraud".into()),
            ("2001:db8:bad::9".into(), "auth-failure".into()),
        ],
        "{v:#}"
    );
    let enumerate = &v["reports"][0];
    assert_eq!(enumerate["usernames"], serde_json::json!(["100", "101", "102"]));
    // The phone that registered and then failed twice is never reported.
    assert!(!reports(&v).iter().any(|(s, _)| s == "198.51.100.30"));
    assert_eq!(v["ambiguous"].as_array().unwrap().len(), 2, "{v:#}");
    never_mentions(&v, "192.0.2.99");
    assert_eq!(v["lines"], 21);
    // A format given restricts the patterns.
    let v = replay("asterisk.log", &["--format", "freeswitch"]);
    assert!(v["events"].as_array().unwrap().is_empty());
}

#[test]
fn freeswitch_and_kamailio_logs() {
    let v = replay("freeswitch.log", &[]);
    assert_eq!(
        reports(&v),
        vec![
            ("203.0.113.20".into(), "auth-failure".into()),
            ("198.51.100.50".into(), "auth-failure".into()),
        ],
        "{v:#}"
    );
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
    assert!(text.contains("21 lines, "), "{text}");
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

fn failures(addr: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "[2026-11-24 10:02:0{i}] NOTICE[2400] chan_sip.c: Registration from '\"20{i}\" <sip:20{i}@192.0.2.1>' failed for '{addr}:5060' - Wrong password"
            )
        })
        .collect()
}

#[test]
fn a_followed_log_is_read_across_absence_rotation_and_truncation() {
    let n = Node::init(&[]);
    let logs = n.dir.parent().unwrap().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("messages");
    n.append_config(&format!(
        "[detect]\nnever_report = [\"198.51.100.0/24\"]\n[[detect.logs]]\npath = \"{}\"\nformat = \"asterisk\"\n",
        log.display()
    ));
    let mut n = n;
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
    std::fs::rename(&log, logs.join("messages.1")).unwrap();
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
            &[("kind", "auth-failure"), ("verdict", "never_report")]
        ) >= 5.0
    );
    assert!(n.log().contains("detected an attacker"));
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
            format!("Nov 24 12:00:0{i} pbx kamailio[812]: WARNING: <script>: fraudmesh: auth-failure user={u} src=203.0.113.81")
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
