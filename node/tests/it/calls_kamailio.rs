//! Call authorisation against a real Kamailio: scripts/kamailio/example-pbx.cfg (with the
//! shipped fraudmesh-calls.cfg) runs in a network namespace of the test's own and asks
//! node A (its API on the test's side of the veth pair, the calls token in
//! FRAUDMESH_CALLS_TOKEN) before each call; sipp, from an address on the test's side and
//! authenticated as user 1001 (or another user of the test's), places the calls, each as
//! its own sipp run.
//!
//! The story (one test, each call's answer depends on the calls before it):
//! - a Swiss premium-rate number gets 403 with the node's reason;
//! - an ordinary number is answered (and its BYE ends the call on the node);
//! - a number that B (trusted by A) reported to the mesh gets 403 `fraud-number`;
//! - odd requests still get the node's decision, 403 `premium-rate` for a premium
//!   number: a 300-byte Call-ID, a From user with `&` (and `=`), one with `%00`, a folded
//!   From header; an ordinary call with a 300-byte Call-ID is answered and its BYE ends
//!   it (the node keeps such ids hashed, on authorize and end alike); an INVITE with two
//!   sets of credentials gets 403 `no-account`;
//! - BYEs that are not the call's (another Call-ID; no To tag; other tags) end nothing;
//!   the call's own BYE ends it;
//! - with `calls_per_hour = 2` the third allowed-looking call gets 403 and locks the
//!   account; locked, an ordinary call gets 403 `locked`;
//! - emergency numbers (112, 117, 144) from the locked account are answered, unasked and
//!   not counted.
//!
//! Without the calls token, or with the admin token in its place, the node answers 401
//! and every call but an emergency call gets 403 (FRAUDMESH_CALLS_ON_REJECT's default);
//! with the node unreachable calls pass (FRAUDMESH_CALLS_ON_ERROR's default).
//!
//! The Asterisk and FreeSWITCH snippets (neither PBX is installed here) are checked
//! without their PBX in [`other_snippets`].

use crate::common::kamailio::{bye_scenario, invite_scenario, sipp_with, Invite, Pbx, PASS_1001};
use crate::common::netns::{self, Lan};
use crate::common::*;
use serde_json::Value;
use std::path::Path;

const USER_1001: (&str, &str) = ("1001", PASS_1001);
const USER_1002: (&str, &str) = ("1002", "secret1002");

/// Places one call from `from` as 1001 to `number`, expecting the final answer
/// `expect`; returns sipp's message trace.
fn call(work: &Path, pbx: &Pbx, from: &str, number: &str, expect: u16) -> String {
    call_as(work, pbx, from, USER_1001, &invite_scenario(number, expect), &[])
}

/// Runs `scenario` from `from` as `user` (name, password) with sipp's `extra` options;
/// returns sipp's message trace, failing unless every step went as the scenario says.
fn call_as(work: &Path, pbx: &Pbx, from: &str, user: (&str, &str), scenario: &str, extra: &[&str]) -> String {
    let run = sipp_with(work, scenario, from, &pbx.addr, user.0, user.1, 1, extra);
    assert!(
        run.ok,
        "the scenario as {} did not go as written: {}\n{}\nKamailio:\n{}",
        user.0,
        run.stderr,
        run.messages,
        pbx.log_tail()
    );
    run.messages
}

fn account(a: &Node, name: &str) -> Value {
    let body = a.admin_get("/v1/accounts");
    let v: Value = serde_json::from_str(&body).expect("accounts JSON");
    v["accounts"]
        .as_array()
        .expect("accounts array")
        .iter()
        .find(|x| x["account"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no account {name}: {v}"))
}

/// A node trusting `trusted` (if any) with the call rules of these tests and its API on
/// the test's end of `lan` (where Kamailio, in its namespace, reaches it), running.
fn node_on(lan: &Lan, trusted: Option<&Node>) -> Node {
    let me = lan.near();
    let mut a = match trusted {
        Some(b) => Node::trusting(b),
        None => Node::init(&[]),
    };
    let config = a.dir.join("config.toml");
    let text = std::fs::read_to_string(&config).expect("config.toml");
    assert!(text.contains("api = \"127.0.0.1:0\""), "{text}");
    std::fs::write(
        &config,
        text.replace("api = \"127.0.0.1:0\"", &format!("api = \"{me}:0\"")),
    )
    .expect("config");
    a.append_config("[calls]\nhome_country = \"CH\"\ndeny_premium = true\n[calls.limits]\ncalls_per_hour = 2\n");
    cli_ok(&a.dir, &["check-config"]);
    a.start();
    assert!(a.api().starts_with(&me), "{}", a.api());
    a
}

/// Node B, and node A trusting B (see [`node_on`]); both running and gossiping.
fn nodes(lan: &Lan) -> (Node, Node) {
    let mut b = Node::init(&[]);
    b.start();
    let a = node_on(lan, Some(&b));
    a.wait_gossip_peers(1);
    b.wait_gossip_peers(1);
    (a, b)
}

/// A Kamailio define's value for a string.
fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// One story: each call's answer depends on the calls before it (counted, ended, locked).
#[test]
fn kamailio_asks_the_node_before_each_call() {
    let _exclusive = exclusive();
    netns::require(&["ip", "kamailio", "sipp"]);
    // The test's side: .1 (node A's API, probes), .3 the phone; Kamailio on .2.
    let lan = Lan::new("kcall");
    let phone = lan.add_near(3);
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path().to_path_buf();
    let (a, b) = nodes(&lan);
    let api = a.api();
    let pbx = Pbx::start(
        &lan,
        &[
            ("FRAUDMESH_CALLS_URL", &quoted(&format!("http://{api}/v1/calls"))),
            ("FRAUDMESH_CALLS_TOKEN", &quoted(&a.calls_token())),
        ],
        &work.join("kamailio"),
    );

    let run = |user: (&str, &str), scenario: &str, extra: &[&str]| call_as(&work, &pbx, &phone, user, scenario, extra);

    // B reports a London number range; A trusts B.
    b.report(&["+44207946", "--kind", "toll-fraud"]);
    let fraud = "00442079460000";
    wait_for("A to deny the number B reported", DEADLINE, || {
        let body = a.admin_get(&format!("/v1/calls/check?account=probe&to={fraud}"));
        let v: Value = serde_json::from_str(&body).expect("check JSON");
        (v["rule"] == "fraud-number").then_some(())
    });

    // A premium-rate number: 403 with the reason.
    let premium = "0900123456";
    let premium_denied = "SIP/2.0 403 premium-rate: +41900123456 is a premium-rate number";
    let m = call(&work, &pbx, &phone, premium, 403);
    assert!(m.contains(premium_denied), "{m}");
    // An ordinary number: answered, then the BYE ends it on the node.
    call(&work, &pbx, &phone, "0446681800", 200);
    // B's fraud number: 403 fraud-number.
    let m = call(&work, &pbx, &phone, fraud, 403);
    assert!(m.contains("SIP/2.0 403 fraud-number: +442079460000"), "{m}");

    // Odd requests still get the node's own decision (a 400 from the node would be
    // `403 node-refused`, a request cut short another answer).
    let long_id = format!("{}@odd.example", "x".repeat(300 - "@odd.example".len()));
    assert_eq!(long_id.len(), 300);
    let premium_call = invite_scenario(premium, 403);
    let m = run(USER_1001, &premium_call, &["-cid_str", &long_id]);
    assert!(m.contains(&format!("Call-ID: {long_id}")), "{m}");
    assert!(m.contains(premium_denied), "a 300-byte Call-ID: {m}");
    for user in ["mallory&to=112&account=1002", "eve%00"] {
        pbx.add_user(user, "odd-secret");
        let m = run((user, "odd-secret"), &premium_call, &[]);
        assert!(m.contains(&format!("From: <sip:{user}@")), "{m}");
        assert!(m.contains(premium_denied), "From user {user}: {m}");
    }
    let folded = Invite::new(premium, 403).with_from_header(
        "From: \"Folded\"\n      \\x20<sip:[service]@[remote_ip]>\n      \\x20;tag=[pid]SIPpTag00[call_number]",
    );
    let m = run(USER_1001, &folded.scenario(), &[]);
    assert!(
        m.contains("From: \"Folded\"\r\n <sip:1001@"),
        "the From header was not folded: {m}"
    );
    assert!(m.contains(premium_denied), "a folded From header: {m}");
    // Two sets of credentials (the first for another realm, so not the ones checked):
    // Kamailio's $au reads the first, which need not be the verified one. No account.
    let two = Invite::new("0446681800", 403).before_credentials(
        "Proxy-Authorization: Digest username=\"1001\", realm=\"elsewhere.example\", nonce=\"x\", uri=\"sip:0446681800@[remote_ip]:[remote_port]\", response=\"00000000000000000000000000000000\"",
    );
    let m = run(USER_1001, &two.scenario(), &[]);
    assert!(m.contains("SIP/2.0 403 no-account"), "two credentials: {m}");

    // An ordinary call with a 300-byte Call-ID (as 1002, whose limits are its own):
    // answered, and its BYE ends it on the node.
    let ordinary = invite_scenario("0446681800", 200);
    run(USER_1002, &ordinary, &["-cid_str", &long_id]);
    let acct = account(&a, "1002");
    assert_eq!(acct["calls_last_hour"], 1, "{acct}");
    assert_eq!(
        acct["active"], 0,
        "the BYE ended the call with the long Call-ID: {acct}"
    );
    let acct = account(&a, "1001");
    assert_eq!(acct["calls_last_hour"], 1, "denied calls are not counted: {acct}");

    // The second allowed call of 1001 stays up; BYEs that are not its own end nothing.
    let (call_id, tag) = ("fm-bye-test-1@phone.example", "fm-caller-tag-1");
    let up = Invite::new("0446681800", 200).with_from_tag(tag).no_bye();
    run(USER_1001, &up.scenario(), &["-cid_str", call_id]);
    let active = |why: &str, n: u64| {
        let acct = account(&a, "1001");
        assert_eq!(acct["active"], n, "{why}: {acct}");
    };
    active("the call is up", 1);
    let foreign: [(&str, &str, Option<&str>, &str); 4] = [
        ("fm-bye-test-2@phone.example", tag, Some("callee"), "another Call-ID"),
        (call_id, tag, None, "no To tag (outside the dialog)"),
        (call_id, "someone-else", Some("callee"), "other tags"),
        (
            call_id,
            "callee",
            Some("someone-else"),
            "other tags, the other way round",
        ),
    ];
    for (id, from_tag, to_tag, why) in foreign {
        let bye = bye_scenario("0446681800", from_tag, to_tag);
        run(USER_1001, &bye, &["-cid_str", id]);
        active(&format!("a BYE with {why} ended nothing"), 1);
    }
    // The callee's BYE (the caller's tag as To tag) is the call's own.
    let bye = bye_scenario("0446681800", "callee", Some(tag));
    run(USER_1001, &bye, &["-cid_str", call_id]);
    active("the call's own BYE ended it", 0);
    // Ended once: the same BYE again changes nothing.
    run(USER_1001, &bye, &["-cid_str", call_id]);
    active("a repeated BYE", 0);

    // The third allowed-looking call breaks calls_per_hour = 2.
    let acct = account(&a, "1001");
    assert_eq!(acct["locked"], false, "{acct}");
    assert_eq!(acct["calls_last_hour"], 2, "denied calls are not counted: {acct}");
    let m = call(&work, &pbx, &phone, "0446681800", 403);
    assert!(m.contains("SIP/2.0 403 limit-"), "{m}");
    assert!(m.contains("locked"), "{m}");
    let acct = account(&a, "1001");
    assert_eq!(acct["locked"], true, "{acct}");
    // Locked: even an ordinary call is refused now.
    let m = call(&work, &pbx, &phone, "0446681800", 403);
    assert!(m.contains("SIP/2.0 403 locked: account 1001 is locked"), "{m}");
    // Emergency numbers still go through, unasked and uncounted.
    for number in ["112", "117", "144"] {
        call(&work, &pbx, &phone, number, 200);
    }
    let acct = account(&a, "1001");
    assert_eq!(acct["locked"], true, "{acct}");
    assert_eq!(acct["calls_last_hour"], 2, "emergency calls are not counted: {acct}");
    assert_eq!(acct["active"], 0, "{acct}");

    let log = std::fs::read_to_string(pbx.log_path()).unwrap_or_default();
    assert!(
        log.contains("fraudmesh: call denied account=1001 to=0900123456 premium-rate"),
        "{}",
        pbx.log_tail()
    );
    assert!(
        log.contains("fraudmesh: emergency call to=112 passed unasked"),
        "{}",
        pbx.log_tail()
    );
}

/// Kamailio without the calls token, then with the admin token in its place: the node
/// answers 401 and calls are refused (emergency calls pass); then with the node
/// unreachable: calls pass (on error, allow).
#[test]
fn kamailio_without_the_calls_token_refuses_calls() {
    let _exclusive = exclusive();
    netns::require(&["ip", "kamailio", "sipp"]);
    let lan = Lan::new("ktok");
    let phone = lan.add_near(3);
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path().to_path_buf();
    let a = node_on(&lan, None);
    let url = quoted(&format!("http://{}/v1/calls", a.api()));
    let admin = quoted(&a.token());
    let cases: [(&str, Vec<(&str, &str)>); 2] = [
        ("no token", vec![("FRAUDMESH_CALLS_URL", &url)]),
        (
            "the admin token",
            vec![("FRAUDMESH_CALLS_URL", &url), ("FRAUDMESH_CALLS_TOKEN", &admin)],
        ),
    ];
    for (i, (what, defines)) in cases.iter().enumerate() {
        let pbx = Pbx::start(&lan, defines, &work.join(format!("kamailio-{i}")));
        let m = call(&work, &pbx, &phone, "0446681800", 403);
        assert!(m.contains("SIP/2.0 403 node-refused: HTTP 401"), "{what}: {m}");
        call(&work, &pbx, &phone, "112", 200);
        let log = std::fs::read_to_string(pbx.log_path()).unwrap_or_default();
        assert!(
            log.contains("fraudmesh: the node refused to authorise call"),
            "{what}: {}",
            pbx.log_tail()
        );
    }
    let accounts: Value = serde_json::from_str(&a.admin_get("/v1/accounts")).expect("accounts JSON");
    assert_eq!(
        accounts["accounts"],
        serde_json::json!([]),
        "nothing was counted: {accounts}"
    );

    // Nothing listens on the node's address at port 1: FRAUDMESH_CALLS_ON_ERROR (allow).
    let down = quoted(&format!("http://{}:1/v1/calls", lan.near()));
    let token = quoted(&a.calls_token());
    let pbx = Pbx::start(
        &lan,
        &[("FRAUDMESH_CALLS_URL", &down), ("FRAUDMESH_CALLS_TOKEN", &token)],
        &work.join("kamailio-down"),
    );
    call(&work, &pbx, &phone, "0900123456", 200);
    let log = std::fs::read_to_string(pbx.log_path()).unwrap_or_default();
    assert!(
        log.contains("fraudmesh: the node could not be asked about call"),
        "{}",
        pbx.log_tail()
    );
}

/// The Asterisk and FreeSWITCH snippets, checked without their PBX (neither is installed
/// here): the FreeSWITCH dialplan is well-formed XML whose number condition (PCRE, run
/// with fancy-regex) leaves emergency numbers out, and both snippets send the calls
/// token and refuse what is not an explicit allow.
mod other_snippets {
    use fancy_regex::Regex;
    use quick_xml::events::Event;

    const FREESWITCH: &str = include_str!("../../../scripts/freeswitch/fraudmesh-calls.xml");
    const ASTERISK: &str = include_str!("../../../scripts/asterisk/fraudmesh-calls.conf");

    /// Every `<condition>`'s (field, expression), attribute values as FreeSWITCH reads
    /// them; panics unless the whole document parses (tags balanced).
    fn conditions() -> Vec<(String, String)> {
        let mut reader = quick_xml::Reader::from_str(FREESWITCH);
        let mut out = Vec::new();
        loop {
            match reader.read_event() {
                Ok(Event::Eof) => break,
                Ok(Event::Start(e)) | Ok(Event::Empty(e)) if e.name().as_ref() == b"condition" => {
                    let attr = |name: &[u8]| {
                        e.try_get_attribute(name)
                            .expect("attribute")
                            .map(|a| {
                                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                    .expect("attribute value")
                                    .into_owned()
                            })
                            .unwrap_or_default()
                    };
                    out.push((attr(b"field"), attr(b"expression")));
                }
                Ok(_) => {}
                Err(e) => panic!("fraudmesh-calls.xml at byte {}: {e}", reader.buffer_position()),
            }
        }
        out
    }

    fn expression(field: &str) -> Regex {
        let (_, expr) = conditions()
            .into_iter()
            .find(|(f, _)| f == field)
            .unwrap_or_else(|| panic!("no condition on {field}"));
        Regex::new(&expr).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    #[test]
    fn freeswitch_leaves_emergency_numbers_out() {
        let number = expression("destination_number");
        for emergency in ["112", "117", "118", "143", "144", "145", "147", "1414", "1415", "911"] {
            assert!(!number.is_match(emergency).unwrap(), "{emergency} would be asked about");
        }
        for (dialled, to) in [
            ("0900123456", "0900123456"),
            ("+41900123456", "+41900123456"),
            ("1121", "1121"),
            ("0112", "0112"),
            ("0041446681800", "0041446681800"),
        ] {
            let caps = number
                .captures(dialled)
                .unwrap()
                .unwrap_or_else(|| panic!("{dialled} would not be asked about"));
            assert_eq!(&caps[1], to);
        }
    }

    #[test]
    fn freeswitch_allows_only_an_explicit_true() {
        let allow = expression("${curl_response_code} ${curl_response_data}");
        let yes = |code: u16, body: &str| allow.is_match(&format!("{code} {body}")).unwrap();
        assert!(yes(
            200,
            r#"{"allow":true,"rule":"ok","reason":"","e164":"+41446681800","account_locked":false}"#
        ));
        assert!(yes(200, r#"{"rule":"ok","allow": true}"#));
        for (code, body) in [
            (
                200,
                r#"{"allow":false,"rule":"premium-rate","reason":"x","account_locked":false}"#,
            ),
            (200, r#"{"allow":"true"}"#),
            (200, r#"{"allow":truer}"#),
            (200, r#"{"rule":"x","reason":"\",\"allow\":true,\""}"#),
            (200, r#"{"reason":"x\",\"allow\":true}"}"#),
            (401, r#"{"allow":true}"#),
            (500, r#"{"allow":true}"#),
            (0, ""),
            (200, "<html>allow: true</html>"),
        ] {
            assert!(!yes(code, body), "{code} {body} would be an allow");
        }
        // The final condition goes on only for an allow or a setting that says so.
        let go = expression("${fraudmesh_decision}/${fraudmesh_on_reject}/${fraudmesh_on_error}");
        let goes = |s: &str| go.is_match(s).unwrap();
        assert!(goes("allow/deny/allow"));
        assert!(goes("error/deny/allow"));
        assert!(!goes("deny/allow/allow"));
        assert!(!goes("reject/deny/allow"));
        assert!(goes("reject/allow/deny"));
        assert!(!goes("error/allow/deny"));
    }

    #[test]
    fn freeswitch_sends_the_token_and_unquoted_values() {
        assert!(FREESWITCH.contains("append_headers 'Authorization: Bearer ${fraudmesh_calls_token}'"));
        let account = expression("${user_name}");
        let from = expression("caller_id_number");
        for bad in ["", "a b", "a\"b", "a\\b", "a%00", "a'b", "a&b", "a${x}"] {
            assert!(!account.is_match(bad).unwrap(), "account {bad:?}");
            assert!(!from.is_match(bad).unwrap(), "from {bad:?}");
        }
        assert!(account.is_match("1001").unwrap());
        assert!(from.is_match("+41446681800").unwrap());
    }

    #[test]
    fn asterisk_sends_the_token_and_returns_for_emergency_numbers() {
        assert!(ASTERISK.contains("Set(CURLOPT(httpheader)=Authorization: Bearer ${FRAUDMESH_CALLS_TOKEN})"));
        assert!(ASTERISK.contains("GotoIf($[\"${FM_ALLOW}\" = \"1\"]?allowed)"));
        let list = ASTERISK
            .lines()
            .find_map(|l| l.strip_prefix("FRAUDMESH_EMERGENCY="))
            .expect("FRAUDMESH_EMERGENCY");
        let emergency = Regex::new(&format!("^({list})$")).expect("the list as a regex");
        for n in ["112", "117", "118", "144", "911", "1414"] {
            assert!(emergency.is_match(n).unwrap(), "{n}");
        }
        for n in ["1121", "0112", "0900123456"] {
            assert!(!emergency.is_match(n).unwrap(), "{n}");
        }
        // Emergency numbers are checked before anything else in the Gosub.
        let gosub = ASTERISK.split("[fraudmesh-authorize]").nth(1).expect("the Gosub");
        let first_check = gosub.find("GotoIf(").expect("a GotoIf");
        assert!(gosub[first_check..].starts_with("GotoIf(${REGEX(\"^(${FRAUDMESH_EMERGENCY})$\""));
        // Every value sent is URL-encoded.
        for line in ASTERISK.lines().filter(|l| l.contains("${CURL(")) {
            let args = line.split_once("${CURL(").map(|(_, a)| a).unwrap_or_default();
            let body = args.split_once(',').map(|(_, b)| b).expect("CURL() with a body");
            for value in body.split('&').filter_map(|kv| kv.split_once('=').map(|(_, v)| v)) {
                assert!(value.starts_with("${URIENCODE("), "{value} in {line}");
            }
        }
    }
}
