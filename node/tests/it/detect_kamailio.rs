//! Log detection against a real Kamailio: scripts/kamailio/example-pbx.cfg (with the
//! shipped fraudmesh-detect.cfg) runs in a network namespace of the test's own and logs
//! to a file; node A follows that file (`[[detect.logs]] format = "kamailio"`); sipp
//! sends REGISTERs from addresses on the test's side of the veth pair.
//!
//! - an attacker's wrong passwords get it reported by A and blocked on B (a peer that
//!   trusts A);
//! - a phone that registered successfully and then fails is not reported
//!   (`registered` within detect.registered_grace);
//! - a trunk listed in `detect.never_report` is not reported;
//! - a made-up nonce (what a forged datagram can carry) is logged `nonce=none` and only
//!   counted as unproven; a real nonce answered from another address than the one it
//!   was sent to is only challenged again (the cfg binds nonces to the source address):
//!   neither is ever reported.

use crate::common::kamailio::{register_scenario, sipp, Pbx, PASS_1001};
use crate::common::netns::{self, Lan};
use crate::common::*;
use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

/// Auth failures from one source that make a detection (the default is 5).
const THRESHOLD: u32 = 3;

/// A's count of detection events of `kind` with `verdict`.
fn events(n: &Node, kind: &str, verdict: &str) -> f64 {
    n.metric("fraudmesh_detect_events_total", &[("kind", kind), ("verdict", verdict)])
}

/// Node A following Kamailio's log, with never-report set to exactly `trunk` (plus the
/// node's implicit ones: loopback, its own and its seeds' addresses); running.
fn node_following(pbx: &Pbx, trunk: &str) -> Node {
    let mut a = Node::init(&[]);
    a.append_config(&format!(
        "[detect]\n\
         never_report = [\"{trunk}\"]\n\
         [[detect.logs]]\n\
         path = \"{}\"\n\
         format = \"kamailio\"\n\
         [detect.thresholds.auth-failure]\n\
         count = {THRESHOLD}\n",
        pbx.log_path().display()
    ));
    cli_ok(&a.dir, &["check-config"]);
    a.start();
    a
}

/// `times` REGISTERs from `from` as 1001 with `password`, each answered 401 (the
/// scenario's expectation), as `who` (for the failure message).
fn fail_to_register(work: &Path, pbx: &Pbx, from: &str, password: &str, times: u32, who: &str) {
    let run = sipp(work, &register_scenario(401), from, &pbx.addr, "1001", password, times);
    assert!(run.ok, "{who}'s wrong REGISTERs: {}\n{}", run.stderr, run.messages);
}

/// A REGISTER for 1001 from `from` to the PBX at `to`:5060 over UDP, with `auth` (an
/// Authorization header line, or nothing); the answer Kamailio sends back.
fn register(from: &str, to: &str, auth: &str) -> String {
    let s = UdpSocket::bind((from, 0)).unwrap_or_else(|e| panic!("binding {from}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
    let port = s.local_addr().expect("local addr").port();
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let msg = format!(
        "REGISTER sip:{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from}:{port};rport;branch=z9hG4bK{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:1001@{to}>;tag={n}\r\n\
         To: <sip:1001@{to}>\r\n\
         Call-ID: {n}@{from}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:1001@{from}:{port}>\r\n\
         {auth}Content-Length: 0\r\n\r\n"
    );
    s.send_to(msg.as_bytes(), (to, 5060)).expect("sending REGISTER");
    let mut buf = [0u8; 4096];
    let n = s
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no answer to the REGISTER from {from}: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// An Authorization header for 1001 with `nonce` and a response no password gives.
fn authorization(to: &str, nonce: &str) -> String {
    format!(
        "Authorization: Digest username=\"1001\", realm=\"{to}\", nonce=\"{nonce}\", uri=\"sip:{to}\", \
         response=\"00000000000000000000000000000000\", algorithm=MD5\r\n"
    )
}

/// The nonce of a 401's challenge.
fn nonce(answer: &str) -> String {
    let at = answer
        .find("nonce=\"")
        .unwrap_or_else(|| panic!("no nonce in {answer}"))
        + 7;
    answer[at..].split('"').next().unwrap_or_default().to_string()
}

/// One story: A's verdict on each source depends on what it saw before (registration,
/// never-report), and B's block on A's report.
#[test]
fn kamailio_auth_failures_are_reported_and_blocked_across_the_mesh() {
    let _exclusive = exclusive();
    netns::require(&["ip", "kamailio", "sipp"]);
    let started = Instant::now();
    // The test's side: .1 (probes), .3 attacker, .4 phone, .9 trunk; Kamailio on .2.
    let lan = Lan::new("kdet");
    let (attacker, phone, trunk) = (lan.add_near(3), lan.add_near(4), lan.add_near(9));
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path().to_path_buf();
    let pbx = Pbx::start(&lan, &[], &work.join("kamailio"));

    // A follows Kamailio's log; the trunk is never reported, the attacker and the phone
    // are not listed.
    let a = node_following(&pbx, &trunk);
    let mut b = Node::trusting(&a);
    b.start();
    a.wait_gossip_peers(1);
    b.wait_gossip_peers(1);

    // The phone registers with the right password. The follower reads a file that
    // existed at start from its end, so register until A has seen a registration.
    let ok = register_scenario(200);
    wait_for("A to see the phone's registration", DEADLINE, || {
        let run = sipp(&work, &ok, &phone, &pbx.addr, "1001", PASS_1001, 1);
        assert!(run.ok, "the phone's REGISTER failed: {}\n{}", run.stderr, run.messages);
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if events(&a, "registered", "registered") >= 1.0 {
                return Some(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    });
    assert!(
        std::fs::read_to_string(pbx.log_path())
            .unwrap_or_default()
            .contains(&format!("fraudmesh: registered user=1001 proto=udp src={phone}")),
        "{}",
        pbx.log_tail()
    );

    // Then the phone fails (its password changed): counted as recently registered.
    fail_to_register(&work, &pbx, &phone, "wrong", THRESHOLD, "the phone");
    wait_for("the phone's failures seen as recently registered", DEADLINE, || {
        (events(&a, "auth-failure", "recently_registered") >= f64::from(THRESHOLD)).then_some(())
    });

    // The trunk fails as often: never reported.
    fail_to_register(&work, &pbx, &trunk, "wrong", THRESHOLD, "the trunk");
    wait_for("the trunk's failures seen as never-report", DEADLINE, || {
        (events(&a, "auth-failure", "never_report") >= f64::from(THRESHOLD)).then_some(())
    });

    // Forged datagrams carry made-up nonces: logged as proving nothing, counted unproven.
    let (forger, fetcher, replayer) = (lan.add_near(5), lan.add_near(6), lan.add_near(7));
    for i in 0..THRESHOLD + 2 {
        let answer = register(&forger, &pbx.addr, &authorization(&pbx.addr, &format!("made-up-{i}")));
        assert!(answer.starts_with("SIP/2.0 401"), "{answer}");
    }
    wait_for("the made-up nonces counted as unproven", DEADLINE, || {
        let n = a.metric(
            "fraudmesh_detect_unproven_events_total",
            &[("kind", "auth-failure"), ("reason", "udp")],
        );
        (n >= f64::from(THRESHOLD + 2)).then_some(())
    });
    assert!(
        std::fs::read_to_string(pbx.log_path())
            .unwrap_or_default()
            .contains(&format!(
                "fraudmesh: auth-failure user=1001 proto=udp nonce=none src={forger}"
            )),
        "{}",
        pbx.log_tail()
    );
    // A real nonce, fetched from one address and answered from another: only challenged
    // again (it was made for the first address), no auth-failure line at all.
    let challenge = register(&fetcher, &pbx.addr, "");
    let fetched = nonce(&challenge);
    for _ in 0..THRESHOLD + 2 {
        let answer = register(&replayer, &pbx.addr, &authorization(&pbx.addr, &fetched));
        assert!(answer.starts_with("SIP/2.0 401"), "{answer}");
    }
    // Kamailio logged (or not) before it answered: the log is complete now.
    assert!(
        !std::fs::read_to_string(pbx.log_path())
            .unwrap_or_default()
            .contains(&format!("src={replayer}")),
        "{}",
        pbx.log_tail()
    );

    // The attacker guesses passwords: A reports it, B blocks it.
    fail_to_register(&work, &pbx, &attacker, "guess", THRESHOLD, "the attacker");
    assert!(
        std::fs::read_to_string(pbx.log_path())
            .unwrap_or_default()
            .contains(&format!(
                "fraudmesh: auth-failure user=1001 proto=udp nonce=echoed src={attacker}"
            )),
        "{}",
        pbx.log_tail()
    );
    wait_for("A to report the attacker", DEADLINE, || {
        a.is_blocked(&attacker).then_some(())
    });
    wait_for("B to block the attacker", DEADLINE, || {
        b.is_blocked(&attacker).then_some(())
    });
    assert_eq!(b.reporters(&attacker), vec![a.peer_id.clone()]);
    assert_eq!(events(&a, "auth-failure", "detected"), 1.0, "one detection");

    for (who, addr) in [
        ("phone", &phone),
        ("trunk", &trunk),
        ("forger", &forger),
        ("replayer", &replayer),
    ] {
        for n in [&a, &b] {
            assert!(!n.is_blocked(addr), "the {who} {addr} was blocked");
            assert!(n.reporters(addr).is_empty(), "the {who} {addr} was reported");
        }
    }
    assert!(a.log().contains("detected an attacker: reported"), "{}", a.log());
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
