//! The SIP sensor against real scanners: sipp in network namespaces made by the test
//! probes the node's decoy UDP and TCP ports over veth pairs; the node reports each
//! source (kind scan) and blocks it. Garbage on the port is counted, never reported.

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

/// A free port on `ip` (bound and released).
fn free_port(ip: &str) -> u16 {
    let s = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = s.local_addr().unwrap().port();
    let u = std::net::UdpSocket::bind((ip, port));
    assert!(u.is_ok(), "port {port} busy on UDP");
    port
}

/// One OPTIONS from the scanner (`lan`'s namespace) to the decoy `port` on the test's
/// end, over sipp's `transport` (`u1`, `t1`).
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
    // One message sent and nothing expected back: sipp ends when it is sent.
    assert!(
        out.status.code().is_some(),
        "sipp was killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let scenario = n.dir.parent().unwrap().join("probe.xml");
    std::fs::write(&scenario, OPTIONS_SCENARIO).unwrap();

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
    assert!(!n.is_blocked(&udp_scanner));

    for (lan, port, transport) in [(&udp, udp_port, "u1"), (&tcp, tcp_port, "t1")] {
        probe(lan, &scenario, port, transport);
        wait_for(&format!("the scanner over {transport} blocked"), DEADLINE, || {
            n.is_blocked(&lan.far()).then_some(())
        });
    }

    assert!(n.log().contains("known SIP scanner"), "{}", n.log());
    assert_eq!(
        n.metric(
            "fraudmesh_detect_events_total",
            &[("kind", "scanner"), ("verdict", "detected")]
        ),
        2.0
    );
    let c = n.check(&udp_scanner);
    assert_eq!(c["reporters"][0], n.peer_id, "{c}");
}
