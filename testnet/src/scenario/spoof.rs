//! `spoof`: an off-path attacker tries to make the mesh block addresses it does not own.
//!
//! Node 0 is a PBX in a network namespace of its own, with a decoy SIP sensor (UDP and TCP)
//! on its attacker-facing address, an Asterisk security log it follows, and two trunks in
//! `detect.never_report`; the attacker sits in a third namespace ([`Lab`]). From there:
//!
//! 1. the attacker probes the sensor from its own address and keeps the nonce it gets;
//! 2. datagrams forged (raw socket) with the source of an innocent address, a peer, a seed
//!    and a trunk: probes, that nonce replayed (digest and To tag) and a guessed one;
//! 3. Asterisk security-log lines naming another innocent address, a peer, the seed and
//!    the other trunk over UDP with no challenge answered (InvalidAccountID and PJSIP's
//!    "No matching endpoint found"), written into node 0's log;
//! 4. the real scanners complete the exchange: the UDP one echoes its nonce, the TCP one
//!    sends a request over a completed handshake.
//!
//! Expected: node 0 received every forged datagram and read every crafted line; no node
//! blocks any named address or holds a sighting of it (each channel has its own
//! innocent address and trunk, so a failure names its channel); both real scanners are
//! blocked on every node (their report→blocked latency is the run's latency).

use super::wave::Sent;
use super::{Coverage, Ctx, Outcome, CONVERGE_DEADLINE, POLL};
use crate::netns::{Lab, RawUdp};
use anyhow::{bail, Context};
use fraudmesh_node::detect::{DetectConfig, LogSource, SensorConfig};
use fraudmesh_node::metrics::Scrape;
use fraudmesh_node::now_ms;
use rand::Rng;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// The sensor's port on [`Lab::SENSOR`], UDP and TCP.
const SENSOR_PORT: u16 = 5062;
/// Innocent addresses (RFC 5737): one for forged datagrams, one for crafted log lines.
const INNOCENT: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 51, 100, 77), Ipv4Addr::new(198, 51, 100, 78)];
/// Node 0's trunks (RFC 5737), in its `detect.never_report`: one per channel.
const TRUNKS: [Ipv4Addr; 2] = [Ipv4Addr::new(203, 0, 113, 50), Ipv4Addr::new(203, 0, 113, 51)];
/// The Asterisk security log node 0 follows, in its directory.
const LOG: &str = "asterisk-security.log";
/// Crafted lines per named address and pattern (over the default thresholds).
const LINES_EACH: usize = 5;

/// The attack channels.
#[derive(Debug, Clone, Copy)]
enum Channel {
    /// Datagrams with a forged source sent to the sensor.
    Forged,
    /// Lines written into the log node 0 follows.
    Logged,
}

/// Runs `spoof`.
pub(super) async fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let lab = ctx
        .args
        .lab
        .clone()
        .context("spoof runs in network namespaces (scenario::isolate)")?;
    let all = ctx.all();
    let log = ctx.cluster.members[0].dir.join(LOG);
    ctx.cluster.edit_config(0, |c| configure_pbx(&mut c.detect, &log))?;
    ctx.form(&all).await?;

    // 1. The attacker's own probe: the nonce it then replays under forged sources.
    let scanner = Scanner::open(&lab).await?;
    let nonce = scanner.probe().await?;

    // 2. Forged datagrams.
    let forged_victims = victims(Channel::Forged);
    let guess = format!("{:032x}", ctx.rng.gen::<u128>());
    ctx.phase("forging", forged_victims.len() as u64);
    let forged = forge(&lab, &nonce, &guess, &forged_victims)?;
    let want = (forged + 1) as f64;
    let got = node0_until(ctx, want, |m| {
        m.value("fraudmesh_sensor_requests_total", &[("transport", "udp")])
    })
    .await?;
    ctx.expect(
        "node 0's sensor received every forged datagram (and the attacker's probe)",
        got >= want,
        format!("{got}/{want} UDP requests"),
    );

    // 3. Crafted log lines.
    let logged_victims = victims(Channel::Logged);
    ctx.phase("writing log lines", logged_victims.len() as u64);
    let lines = craft_log(&log, &logged_victims)?;
    let want = lines as f64;
    let read = node0_until(ctx, want, |m| {
        m.value("fraudmesh_detect_events_total", &[("kind", "unknown-account")])
    })
    .await?;
    ctx.expect(
        "node 0 read every crafted log line",
        read >= want,
        format!("{read}/{want} unknown-account events"),
    );

    // 4. The real scanners complete the exchange.
    let udp_at = now_ms();
    scanner.echo(&nonce).await?;
    let tcp_at = now_ms();
    tcp_request(&lab).await?;
    let sent = vec![
        Sent {
            target: Lab::ATTACKER[0].to_string(),
            reporter: 0,
            at_ms: udp_at,
        },
        Sent {
            target: Lab::ATTACKER[1].to_string(),
            reporter: 0,
            at_ms: tcp_at,
        },
    ];
    let (_, blocked) = ctx.converge_all(&sent).await?;
    let coverage = Coverage::of(&blocked, &all, &sent);

    for (channel, victims) in [(Channel::Forged, &forged_victims), (Channel::Logged, &logged_victims)] {
        let (clean, figure) = untouched(ctx, victims).await?;
        let what = match channel {
            Channel::Forged => "forged datagrams",
            Channel::Logged => "crafted log lines",
        };
        ctx.expect(
            &format!("{what}: no node blocks or holds a sighting of the innocent, peer, seed or trunk"),
            clean,
            figure,
        );
    }
    ctx.expect(
        "the scanners that proved their address (UDP nonce echo, TCP handshake) are blocked on every node",
        coverage.complete(),
        coverage.figure(),
    );
    let m = Scrape::parse(&ctx.api(0)?.metrics().await?);
    let count = |transport, outcome| {
        m.value(
            "fraudmesh_sensor_requests_total",
            &[("transport", transport), ("outcome", outcome)],
        )
        .unwrap_or(0.0) as u64
    };
    let sensor = serde_json::json!({
        "udp_challenged": count("udp", "challenged"),
        "udp_proven": count("udp", "proven"),
        "udp_limited": count("udp", "limited"),
        "udp_unanswerable": count("udp", "unanswerable"),
        "tcp_proven": count("tcp", "proven"),
    });
    ctx.figure("forged_datagrams", forged);
    ctx.figure("crafted_log_lines", lines);
    ctx.figure("node0_sensor_requests", sensor);
    Ok(Outcome::new(udp_at, all, sent, blocked))
}

/// Node 0's `[detect]`: the sensor on the attacker's side, the Asterisk log, the trunks.
fn configure_pbx(d: &mut DetectConfig, log: &Path) {
    let sensor = sensor_addr().to_string();
    d.never_report = TRUNKS.iter().map(Ipv4Addr::to_string).collect();
    d.logs = vec![LogSource {
        path: Some(log.to_path_buf()),
        journal: None,
        format: Some("asterisk".into()),
    }];
    d.sensor = Some(SensorConfig {
        udp: vec![sensor.clone()],
        tcp: vec![sensor],
    });
}

fn sensor_addr() -> SocketAddrV4 {
    SocketAddrV4::new(Lab::SENSOR, SENSOR_PORT)
}

/// The addresses a channel names: an innocent one, a peer (node 2 or 3: not node 0's
/// seed, one per channel), a seed (node 1), a trunk.
fn victims(channel: Channel) -> Vec<(&'static str, Ipv4Addr)> {
    let (k, peer) = match channel {
        Channel::Forged => (0, 2),
        Channel::Logged => (1, 3),
    };
    vec![
        ("innocent", INNOCENT[k]),
        ("peer", Lab::node_addr(peer)),
        ("seed", Lab::node_addr(1)),
        ("trunk", TRUNKS[k]),
    ]
}

/// A SIP request from `from` to the sensor as a scanner writes it; `extra` header lines
/// go before Content-Length.
fn request(method: &str, from: SocketAddrV4, call: &str, cseq: u32, to_tag: Option<&str>, extra: &str) -> String {
    let sensor = sensor_addr();
    let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:100@{sensor} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-{call}-{cseq}\r\n\
         From: \"100\" <sip:100@{sensor}>;tag={call}\r\n\
         To: \"100\" <sip:100@{sensor}>{tag}\r\n\
         Call-ID: {call}@{ip}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:100@{from}>\r\n\
         Max-Forwards: 70\r\n\
         User-Agent: friendly-scanner\r\n\
         {extra}Content-Length: 0\r\n\r\n",
        ip = from.ip()
    )
}

/// Digest credentials over `nonce` (the response is not checked by a sensor).
fn digest(nonce: &str) -> String {
    format!(
        "Authorization: Digest username=\"100\", realm=\"sip\", nonce=\"{nonce}\", uri=\"sip:{}\", response=\"{:032x}\", algorithm=MD5\r\n",
        Lab::SENSOR,
        0
    )
}

/// The real scanner over UDP, on the attacker's first address.
struct Scanner {
    sock: tokio::net::UdpSocket,
    local: SocketAddrV4,
}

impl Scanner {
    async fn open(lab: &Lab) -> anyhow::Result<Self> {
        let std_sock = lab.attacker.run_in(|| {
            let s = std::net::UdpSocket::bind((Lab::ATTACKER[0], 0))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })?;
        let sock = tokio::net::UdpSocket::from_std(std_sock)?;
        let SocketAddr::V4(local) = sock.local_addr()? else {
            bail!("the scanner's socket is not IPv4");
        };
        Ok(Self { sock, local })
    }

    /// REGISTER, and the nonce of the sensor's 401.
    async fn probe(&self) -> anyhow::Result<String> {
        let req = request("REGISTER", self.local, "scanner", 1, None, "");
        self.sock.send_to(req.as_bytes(), sensor_addr()).await?;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(CONVERGE_DEADLINE, self.sock.recv(&mut buf))
            .await
            .context("no challenge from the sensor in time")??;
        let text = String::from_utf8_lossy(&buf[..n]);
        let nonce = text
            .split_once("nonce=\"")
            .and_then(|(_, rest)| rest.split('"').next())
            .with_context(|| format!("no nonce in the sensor's answer: {text}"))?;
        Ok(nonce.to_string())
    }

    /// REGISTER with digest credentials over `nonce`, like a password cracker.
    async fn echo(&self, nonce: &str) -> anyhow::Result<()> {
        let req = request("REGISTER", self.local, "scanner", 2, None, &digest(nonce));
        self.sock.send_to(req.as_bytes(), sensor_addr()).await?;
        Ok(())
    }
}

/// Sends the forged datagrams for every victim; returns how many.
fn forge(lab: &Lab, nonce: &str, guess: &str, victims: &[(&str, Ipv4Addr)]) -> anyhow::Result<usize> {
    let raw = RawUdp::open_in(&lab.attacker)?;
    let mut sent = 0;
    for (k, (_, ip)) in victims.iter().enumerate() {
        let from = SocketAddrV4::new(*ip, 5060);
        let call = format!("forged{k}");
        for req in [
            request("OPTIONS", from, &call, 1, None, ""),
            request("INVITE", from, &call, 2, None, ""),
            // The attacker's own nonce, replayed under the forged source.
            request("REGISTER", from, &call, 3, None, &digest(nonce)),
            request("ACK", from, &call, 2, Some(nonce), ""),
            // A guessed one.
            request("REGISTER", from, &call, 4, None, &digest(guess)),
        ] {
            raw.send(from, sensor_addr(), req.as_bytes())
                .with_context(|| format!("sending a datagram forged from {from}"))?;
            sent += 1;
        }
    }
    Ok(sent)
}

/// Appends Asterisk lines naming every victim over UDP with no challenge answered;
/// returns how many.
fn craft_log(log: &Path, victims: &[(&str, Ipv4Addr)]) -> anyhow::Result<usize> {
    let mut text = String::new();
    let mut lines = 0;
    for (_, ip) in victims {
        for k in 0..LINES_EACH {
            text.push_str(&format!(
                "[2026-11-24 10:23:4{k}] SECURITY[2345] res_security_log.c: SecurityEvent=\"InvalidAccountID\",\
                 EventTV=\"2026-11-24T10:23:4{k}.001+0000\",Severity=\"Error\",Service=\"PJSIP\",EventVersion=\"1\",\
                 AccountID=\"10{k}\",SessionID=\"0x7f{k}\",LocalAddress=\"IPV4/UDP/{}/5060\",\
                 RemoteAddress=\"IPV4/UDP/{ip}/5060\"\n",
                Lab::SENSOR
            ));
            text.push_str(&format!(
                "[2026-11-24 10:24:0{k}] NOTICE[2399] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from \
                 '\"10{k}\" <sip:10{k}@{}>' failed for '{ip}:5060' (callid: c{k}) - No matching endpoint found\n",
                Lab::SENSOR
            ));
            lines += 2;
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", log.display()))?;
    Ok(lines)
}

/// The real scanner over TCP, on the attacker's second address: an OPTIONS over a
/// completed handshake.
async fn tcp_request(lab: &Lab) -> anyhow::Result<()> {
    let sock = lab.attacker.run_in(tokio::net::TcpSocket::new_v4)?;
    sock.bind(SocketAddr::from((Lab::ATTACKER[1], 0)))?;
    let mut stream = tokio::time::timeout(CONVERGE_DEADLINE, sock.connect(sensor_addr().into()))
        .await
        .context("connecting to the sensor timed out")??;
    let SocketAddr::V4(local) = stream.local_addr()? else {
        bail!("the TCP scanner is not IPv4");
    };
    let req = request("OPTIONS", local, "tcpscan", 1, None, "").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    stream.write_all(req.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

/// Polls node 0's metrics until `value` of them reaches `want`, or the deadline; returns
/// the last value.
async fn node0_until(ctx: &Ctx, want: f64, value: impl Fn(&Scrape) -> Option<f64>) -> anyhow::Result<f64> {
    let api = ctx.api(0)?.clone();
    let end = Instant::now() + CONVERGE_DEADLINE;
    loop {
        let v = value(&Scrape::parse(&api.metrics().await?)).unwrap_or(0.0);
        if v >= want || Instant::now() > end {
            return Ok(v);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether no node blocks or holds a sighting of any of `victims`, and the figure.
async fn untouched(ctx: &Ctx, victims: &[(&str, Ipv4Addr)]) -> anyhow::Result<(bool, String)> {
    let n = ctx.args.nodes;
    let mut clean = true;
    let mut parts = Vec::new();
    for (role, ip) in victims {
        let (mut blocking, mut holding) = (0, 0);
        for i in ctx.all() {
            let c = ctx.api(i)?.check(&ip.to_string()).await?;
            blocking += usize::from(c.blocked);
            holding += usize::from(!c.reporters.is_empty());
        }
        clean &= blocking == 0 && holding == 0;
        parts.push(format!("{role} {ip}: blocked {blocking}/{n}, sightings {holding}/{n}"));
    }
    Ok((clean, parts.join("; ")))
}
