//! Log detection against a real Kamailio: scripts/kamailio/example-pbx.cfg (with the
//! shipped fraudmesh-detect.cfg) runs in a network namespace of the test's own and logs
//! to a file; node A follows that file (`[[detect.logs]] format = "kamailio"`); sipp
//! sends REGISTERs from addresses on the test's side of the veth pair.
//!
//! - an attacker's wrong passwords get it reported by A and blocked on B (a peer that
//!   trusts A);
//! - a phone that registered successfully and then fails is not reported
//!   (`registered` within detect.registered_grace);
//! - a trunk listed in `detect.never_report` is not reported.

use crate::common::kamailio::{register_scenario, sipp, Pbx, PASS_1001};
use crate::common::netns::{self, Lan};
use crate::common::*;
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
            .contains(&format!("fraudmesh: registered user=1001 src={phone}")),
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

    // The attacker guesses passwords: A reports it, B blocks it.
    fail_to_register(&work, &pbx, &attacker, "guess", THRESHOLD, "the attacker");
    assert!(
        std::fs::read_to_string(pbx.log_path())
            .unwrap_or_default()
            .contains(&format!("fraudmesh: auth-failure user=1001 src={attacker}")),
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

    for (who, addr) in [("phone", &phone), ("trunk", &trunk)] {
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
