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
use crate::common::netns::{self, Netns};
use crate::common::*;
use std::time::{Duration, Instant};

/// Auth failures from one source that make a detection (the default is 5).
const THRESHOLD: u32 = 3;

/// A's count of detection events of `kind` with `verdict`.
fn events(n: &Node, kind: &str, verdict: &str) -> f64 {
    n.metric("fraudmesh_detect_events_total", &[("kind", kind), ("verdict", verdict)])
}

#[test]
fn kamailio_auth_failures_are_reported_and_blocked_across_the_mesh() {
    let _exclusive = exclusive();
    netns::require(&["ip", "kamailio", "sipp"]);
    let started = Instant::now();
    let net = netns::subnet();
    // The test's side: .1 (probes), .3 attacker, .4 phone, .9 trunk; Kamailio on .2.
    let (me, kam_addr, attacker, phone, trunk) = (
        format!("{net}.1"),
        format!("{net}.2"),
        format!("{net}.3"),
        format!("{net}.4"),
        format!("{net}.9"),
    );
    let ns = Netns::new("kdet");
    netns::veth(None, &me, &ns, &kam_addr);
    for a in [&attacker, &phone, &trunk] {
        netns::add_addr(&me, a);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path().to_path_buf();
    let pbx = Pbx::start(&ns, &kam_addr, &[], &work.join("kamailio"), &me);

    // A follows Kamailio's log. Never reported: exactly the trunk (.9) listed here, plus
    // the node's implicit ones (loopback, its own and its seeds' addresses); the
    // attacker (.3) and the phone (.4) are not listed.
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
    let mut b = Node::init(&["--seed", &a.addr(), "--trust", &a.peer_id]);
    b.start();
    a.wait_gossip_peers(1);
    b.wait_gossip_peers(1);

    // The phone registers with the right password. The follower reads a file that
    // existed at start from its end, so register until A has seen a registration.
    let ok = register_scenario(200);
    wait_for("A to see the phone's registration", DEADLINE, || {
        let run = sipp(&work, &ok, &phone, &kam_addr, "1001", PASS_1001, 1);
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
    let wrong = register_scenario(401);
    let run = sipp(&work, &wrong, &phone, &kam_addr, "1001", "wrong", THRESHOLD);
    assert!(run.ok, "the phone's wrong REGISTERs: {}\n{}", run.stderr, run.messages);
    wait_for("the phone's failures seen as recently registered", DEADLINE, || {
        (events(&a, "auth-failure", "recently_registered") >= f64::from(THRESHOLD)).then_some(())
    });

    // The trunk fails as often: never reported.
    let run = sipp(&work, &wrong, &trunk, &kam_addr, "1001", "wrong", THRESHOLD);
    assert!(run.ok, "the trunk's wrong REGISTERs: {}\n{}", run.stderr, run.messages);
    wait_for("the trunk's failures seen as never-report", DEADLINE, || {
        (events(&a, "auth-failure", "never_report") >= f64::from(THRESHOLD)).then_some(())
    });

    // The attacker guesses passwords: A reports it, B blocks it.
    let run = sipp(&work, &wrong, &attacker, &kam_addr, "1001", "guess", THRESHOLD);
    assert!(run.ok, "the attacker's REGISTERs: {}\n{}", run.stderr, run.messages);
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
