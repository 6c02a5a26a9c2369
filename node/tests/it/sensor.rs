//! The SIP sensor reports only sources that proved they receive packets at their
//! address: on 127.0.0.1, a UDP probe alone (and a nonce stolen by another socket) gives
//! no event, the probe's source echoing its nonce gives one, a TCP request gives one at
//! once; against real scanners, sipp in network namespaces made by the test probes the
//! node's decoy ports over veth pairs, and only the UDP scanner that answers the digest
//! challenge and the TCP scanner are blocked. Garbage on the port is counted, never
//! reported.

use crate::common::netns::{self, Lan};
use crate::common::*;

const OPTIONS_SCENARIO: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="probe">
  <send>
    <![CDATA[
      OPTIONS sip:100@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "sipvicious" <sip:100@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:100@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Contact: <sip:100@[local_ip]:[local_port]>
      Max-Forwards: 70
      User-Agent: friendly-scanner
      Content-Length: 0

    ]]>
  </send>
</scenario>
"#;

/// A password cracker: REGISTER, the sensor's 401, REGISTER with digest credentials over
/// the nonce (sipp's `[authentication]`).
const CRACK_SCENARIO: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="crack">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:100@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:100@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:100@[local_ip]:[local_port]>
      Max-Forwards: 70
      User-Agent: friendly-scanner
      Expires: 3600
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send>
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:100@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:100@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:100@[local_ip]:[local_port]>
      [authentication username=100 password=123456]
      Max-Forwards: 70
      User-Agent: friendly-scanner
      Expires: 3600
      Content-Length: 0

    ]]>
  </send>
</scenario>
"#;

/// A free port on `ip` (bound and released).
fn free_port(ip: &str) -> u16 {
    let s = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = s.local_addr().unwrap().port();
    let u = std::net::UdpSocket::bind((ip, port));
    assert!(u.is_ok(), "port {port} busy on UDP");
    port
}

/// One run of `scenario` by the scanner (`lan`'s namespace) against the decoy `port` on
/// the test's end, over sipp's `transport` (`u1`, `t1`).
fn probe(lan: &Lan, scenario: &std::path::Path, port: u16, transport: &str) {
    let to = format!("{}:{port}", lan.near());
    let out = lan
        .ns
        .command("sipp")
        .args([
            &to,
            "-sf",
            scenario.to_str().unwrap(),
            "-m",
            "1",
            "-i",
            &lan.far(),
            "-t",
            transport,
        ])
        .args(["-nostdin", "-timeout", "10s", "-timeout_error"])
        .output()
        .unwrap();
    // sipp ends after its last message (nothing is expected back for it).
    assert!(
        out.status.code().is_some(),
        "sipp was killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A SIP request as scanners send it, with `extra` header lines.
fn request(method: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method} sip:100@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{method}\r\n\
         From: <sip:100@127.0.0.1>;tag=1928301774\r\n\
         To: <sip:100@127.0.0.1>\r\n\
         Call-ID: a84b4c76e66710@127.0.0.1\r\n\
         CSeq: 1 {method}\r\n\
         Max-Forwards: 70\r\n\
         User-Agent: friendly-scanner\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Sends `req` from `sock` to `to` and returns the answer's `nonce="…"`.
fn challenged(sock: &std::net::UdpSocket, to: &str, req: &[u8]) -> String {
    sock.send_to(req, to).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("the sensor's challenge");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(text.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{text}");
    let (_, rest) = text
        .split_once("nonce=\"")
        .unwrap_or_else(|| panic!("no nonce in {text}"));
    rest.split('"').next().unwrap().to_string()
}

/// Scanner events the node's detector saw (every verdict: on 127.0.0.1 they are
/// `never_report`, loopback).
fn scanner_events(n: &Node) -> f64 {
    n.metric("fraudmesh_detect_events_total", &[("kind", "scanner")])
}

fn sensor(n: &Node, transport: &str, outcome: &str) -> f64 {
    n.metric(
        "fraudmesh_sensor_requests_total",
        &[("transport", transport), ("outcome", outcome)],
    )
}

#[test]
fn only_a_nonce_echo_or_a_tcp_handshake_makes_a_sensor_event() {
    let (udp_port, tcp_port) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let mut n = Node::init(&[]);
    n.append_config(&format!(
        "[detect.sensor]\nudp = [\"127.0.0.1:{udp_port}\"]\ntcp = [\"127.0.0.1:{tcp_port}\"]\n"
    ));
    n.start();
    let to = format!("127.0.0.1:{udp_port}");
    let bind = || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s
    };
    let (scanner, thief) = (bind(), bind());

    // A probe alone: answered with a nonce, no event.
    let nonce = challenged(&scanner, &to, &request("REGISTER", ""));
    // The nonce from another source (port): not an echo, challenged like a probe.
    let auth = format!("Authorization: Digest username=\"100\", realm=\"sip\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1\", response=\"0\"\r\n");
    challenged(&thief, &to, &request("REGISTER", &auth));
    // The probe's source echoes it: one event. Events pass one queue in order, so once
    // this one is counted, anything the two requests before had caused would be too.
    scanner.send_to(&request("REGISTER", &auth), &to).unwrap();
    wait_for("the echo's event", DEADLINE, || {
        (scanner_events(&n) >= 1.0).then_some(())
    });
    assert_eq!(scanner_events(&n), 1.0, "only the echo made an event");
    assert_eq!(
        (sensor(&n, "udp", "challenged"), sensor(&n, "udp", "proven")),
        (2.0, 1.0)
    );

    // TCP: the handshake is the proof.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", tcp_port)).unwrap();
        s.write_all(&request("OPTIONS", "")).unwrap();
    }
    wait_for("the TCP request's event", DEADLINE, || {
        (scanner_events(&n) >= 2.0).then_some(())
    });
    assert_eq!(sensor(&n, "tcp", "proven"), 1.0);
    assert_eq!(
        n.metric(
            "fraudmesh_detect_events_total",
            &[("kind", "scanner"), ("verdict", "never_report")]
        ),
        2.0
    );
    assert!(n.log().contains("known SIP scanner"), "{}", n.log());
}

#[test]
fn scanners_on_the_decoy_ports_are_reported_and_blocked() {
    netns::require(&["ip", "sipp"]);
    // The node's decoys on the test's ends, a scanner in each namespace.
    let (udp, tcp) = (Lan::new("sensu"), Lan::new("senst"));
    let (udp_host, udp_scanner) = (udp.near(), udp.far());
    let tcp_host = tcp.near();
    let (udp_port, tcp_port) = (free_port(&udp_host), free_port(&tcp_host));

    let n = Node::init(&[]);
    n.append_config(&format!(
        "[detect.sensor]\nudp = [\"{udp_host}:{udp_port}\"]\ntcp = [\"{tcp_host}:{tcp_port}\"]\n"
    ));
    let mut n = n;
    n.start();
    let dir = n.dir.parent().unwrap().to_path_buf();
    let (options, crack) = (dir.join("probe.xml"), dir.join("crack.xml"));
    std::fs::write(&options, OPTIONS_SCENARIO).unwrap();
    std::fs::write(&crack, CRACK_SCENARIO).unwrap();

    // Garbage first: counted, nothing reported.
    let garbage = udp
        .ns
        .command("bash")
        .arg("-c")
        .arg(format!(
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' > /dev/udp/{udp_host}/{udp_port}"
        ))
        .status()
        .unwrap();
    assert!(garbage.success());
    wait_for("the garbage counted", DEADLINE, || {
        (n.metric("fraudmesh_sensor_garbage_total", &[]) >= 1.0).then_some(())
    });

    // An OPTIONS probe over UDP is only challenged; the cracker answering the digest
    // challenge and the TCP probe are reported and blocked.
    probe(&udp, &options, udp_port, "u1");
    wait_for("the UDP probe challenged", DEADLINE, || {
        (sensor(&n, "udp", "challenged") >= 1.0).then_some(())
    });
    assert!(!n.is_blocked(&udp_scanner));
    for (lan, scenario, port, transport) in [(&udp, &crack, udp_port, "u1"), (&tcp, &options, tcp_port, "t1")] {
        probe(lan, scenario, port, transport);
        wait_for(&format!("the scanner over {transport} blocked"), DEADLINE, || {
            n.is_blocked(&lan.far()).then_some(())
        });
    }

    assert!(n.log().contains("known SIP scanner"), "{}", n.log());
    // Two events: the UDP probe and the cracker's first REGISTER made none.
    assert_eq!(scanner_events(&n), 2.0);
    assert_eq!((sensor(&n, "udp", "proven"), sensor(&n, "tcp", "proven")), (1.0, 1.0));
    let c = n.check(&udp_scanner);
    assert_eq!(c["reporters"][0], n.peer_id, "{c}");
}
