//! The nftables enforcer against a real node and real nftables, inside network
//! namespaces this test creates (never the host's firewall): SIP OPTIONS from a sender
//! namespace answered by a sipp responder in a PBX namespace, dropped while the sender
//! is blocked, flowing again after a retraction or when the element's own timeout ends;
//! the table put back after a `nft flush ruleset`; other tables left alone; `fraudmesh
//! enforce --remove`; and 100,000 addresses applied in one diff.

use crate::common::netns::{self, Netns};
use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Sends one OPTIONS (retransmitted) and waits 1.5 s for the 200.
const UAC: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="options probe">
  <send retrans="300">
    <![CDATA[
OPTIONS sip:pbx@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: probe <sip:probe@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:pbx@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 OPTIONS
Max-Forwards: 70
Contact: <sip:probe@[local_ip]:[local_port]>
Content-Length: 0

    ]]>
  </send>
  <recv response="200" timeout="1500"/>
</scenario>
"#;

/// Answers every OPTIONS with 200.
const UAS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="options responder">
  <recv request="OPTIONS"/>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port]>
Content-Length: 0

    ]]>
  </send>
</scenario>
"#;

/// A process killed on drop (the sipp responder).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nft(ns: &Netns, args: &str) -> String {
    String::from_utf8_lossy(&ns.exec("nft", &[args]).stdout).into_owned()
}

/// `nft ARGS` in `ns`, or `None` when it fails (e.g. the table is gone).
fn try_nft(ns: &Netns, args: &str) -> Option<String> {
    let out = ns.command("nft").arg(args).output().expect("running nft");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn nftables_status(n: &Node) -> Value {
    n.enforcer("nftables")
}

fn node_with_nftables(pbx: &Netns) -> Node {
    let n = Node::init(&[]);
    let command: Vec<String> = pbx.prefix().into_iter().chain(["nft".to_string()]).collect();
    n.append_config(&format!(
        "[enforce.nftables]\ncommand = {}\n",
        serde_json::to_string(&command).expect("argv as JSON")
    ));
    cli_ok(&n.dir, &["check-config"]);
    n
}

/// Whether one OPTIONS from `from` gets its 200 from `to` (sipp's exit code: 0 = the
/// call succeeded).
fn answered(sender: &Netns, dir: &Path, from: &str, to: &str) -> bool {
    let out = sender
        .command("sipp")
        .args(["-sf", "uac.xml", &format!("{to}:5060"), "-i", from, "-p", "5060"])
        .args(["-m", "1", "-timeout", "5s", "-timeout_error", "-nostdin"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("running sipp");
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!(
            "sipp ended abnormally ({other:?}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// A SIP sender and a PBX, each in a namespace of the test's own, joined by a veth pair;
/// a sipp responder in the PBX's answers OPTIONS with 200.
struct SipPair {
    // Dropped in this order: the responder, its directory, the namespaces.
    _uas: Killed,
    work: tempfile::TempDir,
    sender: Netns,
    pbx: Netns,
    from: String,
    to: String,
}

impl SipPair {
    /// Sets it up and waits until the responder answers.
    fn new() -> Self {
        let sender = Netns::new("sip-tx");
        let pbx = Netns::new("sip-pbx");
        let net = netns::subnet();
        let (from, to) = (format!("{net}.1"), format!("{net}.2"));
        netns::veth(Some(&sender), &from, &pbx, &to);
        let work = tempfile::tempdir().expect("tempdir");
        std::fs::write(work.path().join("uac.xml"), UAC).expect("uac.xml");
        std::fs::write(work.path().join("uas.xml"), UAS).expect("uas.xml");
        let uas = Killed(
            pbx.command("sipp")
                .args(["-sf", "uas.xml", "-i", &to, "-p", "5060", "-nostdin"])
                .current_dir(work.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting the sipp responder"),
        );
        let pair = Self {
            _uas: uas,
            work,
            sender,
            pbx,
            from,
            to,
        };
        wait_for("the responder to answer OPTIONS", DEADLINE, || {
            pair.probe().then_some(())
        });
        pair
    }

    /// Whether one OPTIONS from the sender gets its 200.
    fn probe(&self) -> bool {
        answered(&self.sender, self.work.path(), &self.from, &self.to)
    }
}

/// One story: each step starts from the firewall state the one before left (blocked,
/// retracted, expired, flushed, removed).
#[test]
fn sip_from_a_blocked_sender_is_dropped_until_retracted_or_expired() {
    netns::require(&["ip", "nft", "sipp"]);
    let sip = SipPair::new();
    let (pbx, from) = (&sip.pbx, &sip.from);
    let probe = || sip.probe();
    // Someone else's table in the PBX namespace, which the enforcer must leave alone.
    let keep = "add table inet keepme; add chain inet keepme c { type filter hook input priority 0; policy accept; }";
    nft(pbx, keep);

    let mut n = node_with_nftables(pbx);
    n.start();
    let st = wait_for("the empty table loaded", DEADLINE, || {
        let st = nftables_status(&n);
        (st["state"] == "ok").then_some(st)
    });
    assert_eq!(st["entries"], 0, "{st}");
    let tables = nft(pbx, "list tables");
    assert!(
        tables.contains("table inet fraudmesh") && tables.contains("table inet keepme"),
        "{tables}"
    );
    assert!(probe(), "nothing blocked yet");

    // Reported: the element appears and OPTIONS go unanswered.
    n.report(&[from]);
    let in_set = |addr: &str| try_nft(pbx, "list set inet fraudmesh hosts4").is_some_and(|s| s.contains(addr));
    wait_for("the sender in hosts4", DEADLINE, || in_set(from).then_some(()));
    assert!(!probe(), "OPTIONS from a blocked sender must be dropped");
    let st = nftables_status(&n);
    assert_eq!(
        (st["state"].as_str(), st["entries"].as_u64()),
        (Some("ok"), Some(1)),
        "{st}"
    );

    // Retracted: answered again.
    cli_ok(&n.dir, &["retract", from]);
    wait_for("OPTIONS answered after the retraction", DEADLINE, || {
        probe().then_some(())
    });
    assert!(!in_set(from));

    // A short TTL: blocked, then free again by the element's own timeout.
    n.report(&["--ttl", "4s", from]);
    wait_for("the short block in hosts4", DEADLINE, || in_set(from).then_some(()));
    assert!(!probe(), "dropped while the short block lasts");
    wait_for("OPTIONS answered after the TTL", DEADLINE, || probe().then_some(()));

    // The ruleset flushed behind the node's back: the table comes back, complete.
    n.report(&["203.0.113.9", "198.51.100.0/24"]);
    wait_for("two entries", DEADLINE, || {
        (nftables_status(&n)["entries"] == 2).then_some(())
    });
    nft(pbx, "flush ruleset");
    wait_for("the table put back after a flush", DEADLINE, || {
        in_set("203.0.113.9").then_some(())
    });
    let nets = nft(pbx, "list set inet fraudmesh nets4_24");
    assert!(nets.contains("198.51.100.0/24"), "{nets}");
    let st = nftables_status(&n);
    assert!(st["full_syncs"].as_u64() >= Some(2), "{st}");
    assert_eq!(st["entries"], 2, "{st}");

    // --remove (node stopped) deletes our table and nothing else.
    nft(pbx, keep);
    assert!(n.stop().success());
    let removed = cli_ok(&n.dir, &["enforce", "--remove"]);
    assert!(removed.contains("nftables: removed"), "{removed}");
    let tables = nft(pbx, "list tables");
    assert!(
        !tables.contains("fraudmesh") && tables.contains("table inet keepme"),
        "{tables}"
    );
    // Removing again finds nothing and still succeeds.
    cli_ok(&n.dir, &["enforce", "--remove"]);
}

#[test]
fn a_hundred_thousand_addresses_are_applied_in_one_diff() {
    let _exclusive = exclusive();
    netns::require(&["ip", "nft"]);
    const N: u32 = 100_000;
    let pbx = Netns::new("nft100k");
    let mut n = node_with_nftables(&pbx);
    n.start();
    wait_for("the empty table loaded", DEADLINE, || {
        (nftables_status(&n)["state"] == "ok").then_some(())
    });
    // One block first: the runner's first change after a start from an empty log is a
    // full replace (cursor 0 means "everything"); the next ones are diffs.
    n.report(&["203.0.113.77"]);
    wait_for("the first entry", DEADLINE, || {
        (nftables_status(&n)["entries"] == 1).then_some(())
    });
    let before = nftables_status(&n);
    // 100,000 addresses of 198.18.0.0/15 (benchmarking) in one API request (the CLI's
    // `report --file` sends chunks of 10,000), so they arrive as one change batch.
    let base = u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0));
    let targets: Vec<String> = (0..N).map(|i| std::net::Ipv4Addr::from(base + i).to_string()).collect();
    let body = serde_json::json!({ "targets": targets, "kind": "scan" }).to_string();
    let auth = format!("Bearer {}", n.token());
    let started = std::time::Instant::now();
    let (code, resp) = http(
        &n.api(),
        "POST",
        "/v1/sightings",
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        &body,
    );
    assert_eq!(code, 200, "{resp}");
    let st = wait_for("100,001 entries applied", Duration::from_secs(90), || {
        let st = nftables_status(&n);
        (st["entries"] == N + 1).then_some(st)
    });
    eprintln!(
        "100,000 posted and applied in {:?} (last apply {} ms)",
        started.elapsed(),
        st["last_apply_ms"]
    );
    assert_eq!(st["state"], "ok", "{st}");
    assert_eq!(
        st["full_syncs"], before["full_syncs"],
        "no full replace: diffs only: {st}"
    );
    let diffs = st["applies"].as_u64().unwrap_or(0) - before["applies"].as_u64().unwrap_or(0);
    eprintln!("applied in {diffs} diff(s)");
    assert_eq!(st["errors"], 0, "{st}");
    // Every element is in the kernel's set, each with its timeout.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pbx.name,
            "nft",
            "list",
            "set",
            "inet",
            "fraudmesh",
            "hosts4",
        ])
        .output()
        .expect("listing hosts4");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let held = out.stdout.windows(9).filter(|w| w == b" expires ").count();
    assert_eq!(held, N as usize + 1);
}
