//! The SIP sensor: decoy listeners on ports no legitimate device uses. A source that sends
//! a well-formed SIP request there is a scanner (kind `scan`), reported with the method and
//! user agent as evidence (known scanner user agents are named in the log) — but only once
//! it has proved that it receives packets at its address, because the source of a UDP
//! datagram is whatever its sender wrote:
//!
//! - TCP: the request came over a completed handshake ([`Proof::Handshake`]): reported.
//! - UDP: a request proves nothing by itself. It is answered with a challenge carrying a
//!   fresh nonce `N` — `401 Unauthorized` with `WWW-Authenticate: Digest … nonce="N"`, or
//!   `200 OK` to an OPTIONS; the To tag is `N` in both — and its source is reported when a
//!   later request from the same address and port echoes a valid `N`: in an
//!   `Authorization`/`Proxy-Authorization` nonce (a password cracker) or as the To tag
//!   (the ACK of a challenged INVITE, any in-dialog request) ([`Proof::NonceEcho`]).
//!   Nonces are stateless cookies ([`Cookie`]): an HMAC-SHA256 of (address, port, issue
//!   time) under a random per-listener secret, valid for [`NONCE_TTL_S`], so a flood of
//!   forged sources costs no memory. Only the To tag and the first two credentials are
//!   checked (each check is an HMAC); a request carrying no nonce that verifies is
//!   challenged like any other.
//!
//! The sensor must not become a reflector for forged sources: an answer is at most
//! [`MAX_AMPLIFICATION`] times its request's size, and answers and reports are
//! rate-limited per source and answer bytes overall ([`Limiter`]); what is over a bound is
//! dropped unanswered. An ACK is never answered. Garbage is counted and dropped, never
//! answered; sizes are bounded by the core's strict parser.

use super::{Observed, Proof, Sink};
use crate::metrics::SensorLabel;
use anyhow::Context;
use fraudmesh::detect::logs::EventKind;
use fraudmesh::detect::sip::{self, MAX_MESSAGE};
use fraudmesh::rate::TokenBucket;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

/// Most TCP connections read at once.
const MAX_TCP: usize = 64;
/// Longest a TCP sender gets to send its request.
const TCP_READ: Duration = Duration::from_secs(5);
/// How long a nonce stays valid after it was sent, seconds.
pub const NONCE_TTL_S: u64 = 30;
/// Largest answer relative to its request, in bytes: the sensor amplifies no more.
pub const MAX_AMPLIFICATION: usize = 2;
/// Answers plus reports one source may get at once (UDP), or connections it may open (TCP).
pub const SOURCE_BURST: f64 = 5.0;
/// Answers plus reports (UDP) or connections (TCP) per second one source may get after the burst.
pub const SOURCE_RATE: f64 = 1.0;
/// Rate slots of sources: a source's slot is a keyed hash of its address, so memory stays
/// fixed whatever a flood of forged sources does (sources that share a slot share its rate).
pub const SOURCE_SLOTS: usize = 4096;
/// Answer bytes at once, all sources together.
pub const ANSWER_BYTES_BURST: f64 = 64.0 * 1024.0;
/// Answer bytes per second after the burst, all sources together.
pub const ANSWER_BYTES_RATE: f64 = 32.0 * 1024.0;
/// Credentials headers of a request whose nonce is checked (each check is an HMAC: a
/// request stuffed with headers must not cost more).
const MAX_CREDENTIALS: usize = 2;
/// Hex digits of a nonce's MAC (96 bits).
const MAC_HEX: usize = 24;
/// Hex digits of a nonce's issue time.
const TIME_HEX: usize = 8;

/// The event of a proven request from `source`.
/// Only the sensor's two proofs reach here: an unproven request never becomes an event.
pub fn observe(req: sip::Request, source: IpAddr, listener: &str, proof: Proof) -> Observed {
    let ua = req.user_agent.clone().unwrap_or_default();
    let tool = sip::scanner(&ua);
    if let Some(tool) = tool {
        tracing::info!(%source, tool, method = %req.method, proof = proof.label(), "known SIP scanner on the sensor");
    }
    let flagged = tool.map(|t| format!(", known scanner {t}")).unwrap_or_default();
    Observed {
        kind: EventKind::Scanner,
        source: source.to_canonical(),
        username: req.from_user,
        method: Some(req.method),
        user_agent: req.user_agent,
        via: format!("sensor {listener}, {}{flagged}", proof.label()),
        proof,
    }
}

/// Stateless nonces: the issue time (seconds on the listener's clock, 8 hex digits)
/// followed by the first 96 bits of HMAC-SHA256(secret, address ‖ port ‖ issue time), in
/// hex. Only the holder of the secret can make one, and nothing is stored per nonce.
#[derive(Clone)]
pub struct Cookie {
    secret: [u8; 32],
}

impl Cookie {
    /// A cookie with this secret.
    pub fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    /// A cookie with a secret from the OS's random source.
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Self::new(secret)
    }

    /// The nonce for `to`, issued at `now_s`.
    pub fn nonce(&self, to: SocketAddr, now_s: u64) -> String {
        let t = now_s as u32;
        let mac = self.mac(to, t);
        format!("{t:08x}{}", hex::encode(&mac[..MAC_HEX / 2]))
    }

    /// Whether `nonce` was issued by this cookie to `from` at most [`NONCE_TTL_S`] before
    /// `now_s`.
    pub fn verify(&self, nonce: &str, from: SocketAddr, now_s: u64) -> bool {
        if nonce.len() != TIME_HEX + MAC_HEX || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        let Ok(t) = u32::from_str_radix(&nonce[..TIME_HEX], 16) else {
            return false;
        };
        let now = now_s as u32;
        if t > now || now - t > NONCE_TTL_S as u32 {
            return false;
        }
        let Ok(got) = hex::decode(&nonce[TIME_HEX..]) else {
            return false;
        };
        let want = self.mac(from, t);
        // Constant time: the comparison says nothing about how much of a guess was right.
        got.iter()
            .zip(&want[..MAC_HEX / 2])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    fn mac(&self, addr: SocketAddr, t: u32) -> [u8; 32] {
        let ip = match addr.ip().to_canonical() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let mut msg = [0u8; 22];
        msg[..16].copy_from_slice(&ip.octets());
        msg[16..18].copy_from_slice(&addr.port().to_be_bytes());
        msg[18..].copy_from_slice(&t.to_be_bytes());
        hmac_sha256(&self.secret, &msg)
    }
}

/// HMAC-SHA256 (RFC 2104) with a 32-byte key.
fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new().chain_update(ipad).chain_update(msg).finalize();
    Sha256::new().chain_update(opad).chain_update(inner).finalize().into()
}

/// The sensor's rate bounds: per source ([`SOURCE_BURST`], [`SOURCE_RATE`], in
/// [`SOURCE_SLOTS`] slots) and answer bytes overall ([`ANSWER_BYTES_BURST`],
/// [`ANSWER_BYTES_RATE`]). Time is milliseconds on the listener's clock.
pub struct Limiter {
    hasher: RandomState,
    sources: Vec<TokenBucket>,
    bytes: TokenBucket,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new()
    }
}

impl Limiter {
    /// Full buckets; the slot hash is keyed at random.
    pub fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            sources: vec![TokenBucket::full(SOURCE_BURST, 0); SOURCE_SLOTS],
            bytes: TokenBucket::full(ANSWER_BYTES_BURST, 0),
        }
    }

    /// Whether `source` may get one more answer or report (or open one more connection) now.
    pub fn source(&mut self, source: IpAddr, now_ms: u64) -> bool {
        let slot = self.hasher.hash_one(source.to_canonical()) as usize % SOURCE_SLOTS;
        self.sources[slot].take(1.0, SOURCE_RATE, SOURCE_BURST, now_ms)
    }

    /// Whether `n` more answer bytes fit the overall budget now.
    pub fn bytes(&mut self, n: usize, now_ms: u64) -> bool {
        self.bytes.take(n as f64, ANSWER_BYTES_RATE, ANSWER_BYTES_BURST, now_ms)
    }
}

/// Why a UDP request was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// Over a per-source or overall rate, or the answer would be more than
    /// [`MAX_AMPLIFICATION`] times the request.
    Limited,
    /// An ACK without a valid nonce (never answered), or the request lacks a header a
    /// response must echo (Via, From, To, Call-ID, CSeq).
    Unanswerable,
}

/// What to do with one datagram.
#[derive(Debug, Clone, PartialEq)]
pub enum Udp {
    /// A request that echoed a valid nonce: report it.
    Proven(Observed),
    /// Send this challenge back to the source.
    Challenge(Vec<u8>),
    /// A request left unanswered.
    Unanswered(Unanswered),
    /// Not a SIP request.
    Garbage,
}

/// One UDP listener's decisions: its nonce secret and its rate bounds (the socket is the
/// caller's, time a parameter).
pub struct UdpSensor {
    cookie: Cookie,
    limiter: Limiter,
    name: String,
}

impl UdpSensor {
    /// A listener named `name` (as events name it) issuing nonces with `cookie`.
    pub fn new(cookie: Cookie, name: impl Into<String>) -> Self {
        Self {
            cookie,
            limiter: Limiter::new(),
            name: name.into(),
        }
    }

    /// Decides on one datagram from `from` at `now_ms` (the listener's clock).
    pub fn handle(&mut self, bytes: &[u8], from: SocketAddr, now_ms: u64) -> Udp {
        let (Ok(req), Some(head)) = (sip::parse(bytes), Head::of(bytes)) else {
            return Udp::Garbage;
        };
        let now_s = now_ms / 1000;
        let echoed = head.nonces().any(|n| self.cookie.verify(n, from, now_s));
        if !self.limiter.source(from.ip(), now_ms) {
            return Udp::Unanswered(Unanswered::Limited);
        }
        if echoed {
            return Udp::Proven(observe(req, from.ip(), &self.name, Proof::NonceEcho));
        }
        if req.method == "ACK" {
            return Udp::Unanswered(Unanswered::Unanswerable);
        }
        let nonce = self.cookie.nonce(from, now_s);
        let Some(answer) = head.challenge(&req.method, &nonce) else {
            return Udp::Unanswered(Unanswered::Unanswerable);
        };
        if answer.len() > bytes.len() * MAX_AMPLIFICATION || !self.limiter.bytes(answer.len(), now_ms) {
            return Udp::Unanswered(Unanswered::Limited);
        }
        Udp::Challenge(answer)
    }
}

/// The header fields a challenge echoes and where a nonce may come back, from a request
/// the core's parser accepted (the first of each; compact names too).
#[derive(Debug, Default)]
struct Head<'a> {
    via: Option<&'a str>,
    from: Option<&'a str>,
    to: Option<&'a str>,
    call_id: Option<&'a str>,
    cseq: Option<&'a str>,
    /// The first [`MAX_CREDENTIALS`] `Authorization` and `Proxy-Authorization` values.
    auth: Vec<&'a str>,
}

impl<'a> Head<'a> {
    fn of(bytes: &'a [u8]) -> Option<Self> {
        let mut head = Self::default();
        let mut lines = bytes.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        lines.next()?;
        for line in lines {
            if line.is_empty() {
                break;
            }
            let line = std::str::from_utf8(line).ok()?;
            if line.starts_with([' ', '\t']) {
                continue;
            }
            let (name, value) = line.split_once(':')?;
            let value = value.trim();
            let slot = match name.trim_end().to_ascii_lowercase().as_str() {
                "via" | "v" => &mut head.via,
                "from" | "f" => &mut head.from,
                "to" | "t" => &mut head.to,
                "call-id" | "i" => &mut head.call_id,
                "cseq" => &mut head.cseq,
                "authorization" | "proxy-authorization" => {
                    if head.auth.len() < MAX_CREDENTIALS {
                        head.auth.push(value);
                    }
                    continue;
                }
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        Some(head)
    }

    /// The values that may be an echoed nonce: the To tag and every digest nonce.
    fn nonces(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.to
            .and_then(to_tag)
            .into_iter()
            .chain(self.auth.iter().filter_map(|a| digest_nonce(a)))
    }

    /// The challenge answering a `method` request: `200 OK` to an OPTIONS whose To has no
    /// tag yet (the tag is the nonce), else `401 Unauthorized` with the nonce in
    /// `WWW-Authenticate` (and as the To tag when there is none). `None` when a header a
    /// response must echo is missing.
    fn challenge(&self, method: &str, nonce: &str) -> Option<Vec<u8>> {
        let (via, from, to, call_id, cseq) = (self.via?, self.from?, self.to?, self.call_id?, self.cseq?);
        let untagged = to_tag(to).is_none();
        let ok = method == "OPTIONS" && untagged;
        let status = if ok { "200 OK" } else { "401 Unauthorized" };
        let mut s = format!("SIP/2.0 {status}\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to}");
        if untagged {
            let _ = write!(s, ";tag={nonce}");
        }
        let _ = write!(s, "\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n");
        if !ok {
            let _ = write!(
                s,
                "WWW-Authenticate: Digest realm=\"sip\", nonce=\"{nonce}\", algorithm=MD5\r\n"
            );
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        Some(s.into_bytes())
    }
}

/// The `tag` parameter of a From/To value.
fn to_tag(value: &str) -> Option<&str> {
    let params = value.rsplit_once('>').map_or(value, |(_, rest)| rest);
    params.split(';').skip(1).find_map(|p| {
        let (name, v) = p.split_once('=')?;
        name.trim().eq_ignore_ascii_case("tag").then(|| v.trim())
    })
}

/// The `nonce` parameter of a `Digest` credentials value (commas inside quotes respected;
/// `cnonce` is another parameter).
fn digest_nonce(value: &str) -> Option<&str> {
    let (scheme, params) = value.trim().split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in params.char_indices().chain(std::iter::once((params.len(), ','))) {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                let param = &params[start..i];
                start = i + 1;
                if let Some((name, v)) = param.split_once('=') {
                    if name.trim().eq_ignore_ascii_case("nonce") {
                        return Some(v.trim().trim_matches('"'));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// Counts one request on the sensor.
fn count(sink: &Sink, transport: &'static str, outcome: &'static str) {
    sink.metrics()
        .sensor_requests
        .get_or_create(&SensorLabel { transport, outcome })
        .inc();
}

/// Listens for UDP requests on `addr`: challenges them, reports the sources that echo.
pub fn spawn_udp(addr: SocketAddr, sink: Sink, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<JoinHandle<()>> {
    let std_sock = std::net::UdpSocket::bind(addr).with_context(|| format!("binding the SIP sensor to udp {addr}"))?;
    std_sock.set_nonblocking(true)?;
    let sock = tokio::net::UdpSocket::from_std(std_sock)?;
    let name = format!("udp {}", sock.local_addr()?);
    tracing::info!(listener = %name, "SIP sensor listening");
    let mut sensor = UdpSensor::new(Cookie::random(), name);
    let started = Instant::now();
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        loop {
            let (n, from) = tokio::select! {
                _ = shutdown.changed() => break,
                r = sock.recv_from(&mut buf) => match r {
                    Ok(r) => r,
                    Err(e) => { tracing::debug!(error = %e, "sensor receive"); continue }
                },
            };
            let now_ms = started.elapsed().as_millis() as u64;
            match sensor.handle(&buf[..n], from, now_ms) {
                Udp::Proven(ev) => {
                    count(&sink, "udp", "proven");
                    sink.send(ev);
                }
                Udp::Challenge(answer) => match sock.try_send_to(&answer, from) {
                    Ok(_) => count(&sink, "udp", "challenged"),
                    // A full send buffer: drop the answer rather than wait (and read nothing).
                    Err(e) => {
                        tracing::debug!(error = %e, "sensor answer");
                        count(&sink, "udp", "limited");
                    }
                },
                Udp::Unanswered(Unanswered::Limited) => count(&sink, "udp", "limited"),
                Udp::Unanswered(Unanswered::Unanswerable) => count(&sink, "udp", "unanswerable"),
                Udp::Garbage => {
                    sink.metrics().sensor_garbage.inc();
                }
            }
        }
    }))
}

/// Listens for TCP requests on `addr`: every request over a completed handshake is
/// reported; nothing is answered.
pub fn spawn_tcp(addr: SocketAddr, sink: Sink, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<JoinHandle<()>> {
    let std_listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("binding the SIP sensor to tcp {addr}"))?;
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let name = format!("tcp {}", listener.local_addr()?);
    tracing::info!(listener = %name, "SIP sensor listening");
    let slots = Arc::new(Semaphore::new(MAX_TCP));
    let mut limiter = Limiter::new();
    let started = Instant::now();
    Ok(tokio::spawn(async move {
        loop {
            let (mut stream, from) = tokio::select! {
                _ = shutdown.changed() => break,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => { tracing::debug!(error = %e, "sensor accept"); continue }
                },
            };
            let now_ms = started.elapsed().as_millis() as u64;
            if !limiter.source(from.ip(), now_ms) {
                count(&sink, "tcp", "limited");
                continue; // over its rate: drop the connection
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                count(&sink, "tcp", "limited");
                continue; // busy: drop the connection
            };
            let (sink, name) = (sink.clone(), name.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let mut buf = Vec::with_capacity(2048);
                let read = async {
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = stream.read(&mut chunk).await?;
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if buf.len() > MAX_MESSAGE || buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    std::io::Result::Ok(())
                };
                if tokio::time::timeout(TCP_READ, read).await.is_err() || buf.is_empty() {
                    return;
                }
                match sip::parse(&buf) {
                    Ok(req) => {
                        count(&sink, "tcp", "proven");
                        sink.send(observe(req, from.ip(), &name, Proof::Handshake));
                    }
                    Err(_) => {
                        sink.metrics().sensor_garbage.inc();
                    }
                }
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCANNER: &str = "203.0.113.9:5070";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A request as scanners send them; `extra` goes before the empty line.
    fn request(method: &str, extra: &str) -> Vec<u8> {
        format!(
            "{method} sip:100@192.0.2.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 203.0.113.9:5070;branch=z9hG4bK-4711;rport\r\n\
             From: \"100\" <sip:100@192.0.2.1>;tag=a1b2c3\r\n\
             To: \"100\" <sip:100@192.0.2.1>\r\n\
             Call-ID: 8f2e7c1d@203.0.113.9\r\n\
             CSeq: 1 {method}\r\n\
             Contact: <sip:100@203.0.113.9:5070>\r\n\
             Max-Forwards: 70\r\n\
             User-Agent: friendly-scanner\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    /// The nonce of a challenge (`nonce="…"`, else the To tag).
    fn nonce_of(answer: &[u8]) -> String {
        let text = String::from_utf8_lossy(answer);
        if let Some((_, rest)) = text.split_once("nonce=\"") {
            return rest.split('"').next().unwrap().to_string();
        }
        let to = text.lines().find(|l| l.starts_with("To:")).unwrap();
        to_tag(&to[3..]).unwrap().to_string()
    }

    fn challenge(s: &mut UdpSensor, bytes: &[u8], from: &str, now_ms: u64) -> Vec<u8> {
        match s.handle(bytes, addr(from), now_ms) {
            Udp::Challenge(a) => a,
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    #[test]
    fn cookie_accepts_its_own_nonce_for_the_same_source_within_the_ttl() {
        let c = Cookie::new([7; 32]);
        let n = c.nonce(addr(SCANNER), 100);
        assert_eq!(n.len(), 32);
        assert!(c.verify(&n, addr(SCANNER), 100));
        assert!(c.verify(&n, addr(SCANNER), 100 + NONCE_TTL_S));
        // An IPv4 source seen through a dual-stack socket is the same source.
        assert!(c.verify(&n, addr("[::ffff:203.0.113.9]:5070"), 101));
        let v6 = addr("[2001:db8::7]:5060");
        assert!(c.verify(&c.nonce(v6, 5), v6, 6));
    }

    #[test]
    fn cookie_refuses_another_address_port_secret_or_an_expired_or_altered_nonce() {
        let c = Cookie::new([7; 32]);
        let n = c.nonce(addr(SCANNER), 100);
        assert!(!c.verify(&n, addr("198.51.100.77:5070"), 100), "wrong ip");
        assert!(!c.verify(&n, addr("203.0.113.9:5071"), 100), "wrong port");
        assert!(!c.verify(&n, addr(SCANNER), 101 + NONCE_TTL_S), "expired");
        assert!(!c.verify(&n, addr(SCANNER), 99), "issued in the future");
        assert!(!Cookie::new([8; 32]).verify(&n, addr(SCANNER), 100), "another secret");
        let mut altered = n.clone().into_bytes();
        altered[31] = if altered[31] == b'0' { b'1' } else { b'0' };
        assert!(!c.verify(std::str::from_utf8(&altered).unwrap(), addr(SCANNER), 100));
        // A later issue time with the old MAC does not verify either.
        let moved = format!("{:08x}{}", 101, &n[8..]);
        assert!(!c.verify(&moved, addr(SCANNER), 101));
        for junk in [
            "",
            "00000064",
            &format!("+{}", &n[1..]),
            &n[..31],
            &format!("{n}0"),
            "é",
        ] {
            assert!(!c.verify(junk, addr(SCANNER), 100), "{junk:?}");
        }
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2 has a 4-byte key; a 32-byte key zero-padded is the same HMAC.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_udp_probe_is_challenged_and_reported_only_when_its_nonce_comes_back() {
        let mut s = UdpSensor::new(Cookie::new([1; 32]), "udp 192.0.2.1:5062");
        let probe = request("REGISTER", "");
        let answer = challenge(&mut s, &probe, SCANNER, 1_000);
        let text = String::from_utf8(answer.clone()).unwrap();
        assert!(text.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{text}");
        for echoed in [
            "Via: SIP/2.0/UDP 203.0.113.9:5070;branch=z9hG4bK-4711;rport\r\n",
            "Call-ID: 8f2e7c1d@203.0.113.9\r\n",
            "CSeq: 1 REGISTER\r\n",
        ] {
            assert!(text.contains(echoed), "{echoed} missing in {text}");
        }
        let nonce = nonce_of(&answer);
        assert!(text.contains(&format!("To: \"100\" <sip:100@192.0.2.1>;tag={nonce}\r\n")));
        assert!(answer.len() <= probe.len() * MAX_AMPLIFICATION);

        // The cracker's next REGISTER carries the nonce: proven.
        let auth = format!(
            "Authorization: Digest username=\"100\", realm=\"sip\", cnonce=\"x,y\", nonce=\"{nonce}\", uri=\"sip:192.0.2.1\", response=\"00\"\r\n"
        );
        let Udp::Proven(ev) = s.handle(&request("REGISTER", &auth), addr(SCANNER), 3_000) else {
            panic!("the echo was not proven");
        };
        assert_eq!(ev.kind, EventKind::Scanner);
        assert_eq!(ev.source.to_string(), "203.0.113.9");
        assert_eq!(
            (ev.method.as_deref(), ev.username.as_deref()),
            (Some("REGISTER"), Some("100"))
        );
        assert!(ev.via.contains("nonce-echo"), "{}", ev.via);
        assert!(ev.via.ends_with("known scanner friendly-scanner"), "{}", ev.via);

        // The same echo from another address, another port, or too late: challenged again.
        for (from, at) in [
            ("198.51.100.77:5070", 3_000),
            ("203.0.113.9:5071", 3_000),
            (SCANNER, 1_000 + (NONCE_TTL_S + 1) * 1000),
        ] {
            assert!(
                matches!(s.handle(&request("REGISTER", &auth), addr(from), at), Udp::Challenge(_)),
                "{from} at {at}"
            );
        }
    }

    #[test]
    fn options_get_the_nonce_as_to_tag_and_an_in_dialog_ack_proves_it() {
        let mut s = UdpSensor::new(Cookie::new([2; 32]), "udp 192.0.2.1:5062");
        let answer = challenge(&mut s, &request("OPTIONS", ""), SCANNER, 0);
        let text = String::from_utf8(answer.clone()).unwrap();
        assert!(
            text.starts_with("SIP/2.0 200 OK\r\n") && !text.contains("WWW-Authenticate"),
            "{text}"
        );
        let nonce = nonce_of(&answer);
        let ack = String::from_utf8(request("ACK", "")).unwrap().replace(
            "To: \"100\" <sip:100@192.0.2.1>",
            &format!("To: <sip:100@192.0.2.1>;tag={nonce}"),
        );
        assert!(matches!(s.handle(ack.as_bytes(), addr(SCANNER), 500), Udp::Proven(_)));
        // An ACK without a valid nonce is never answered; an INVITE is challenged with 401.
        assert_eq!(
            s.handle(&request("ACK", ""), addr(SCANNER), 600),
            Udp::Unanswered(Unanswered::Unanswerable)
        );
        let invite = challenge(&mut s, &request("INVITE", ""), "198.51.100.8:5060", 700);
        assert!(invite.starts_with(b"SIP/2.0 401 Unauthorized\r\n"));
    }

    #[test]
    fn only_the_first_credentials_are_checked() {
        let mut s = UdpSensor::new(Cookie::new([6; 32]), "x");
        let nonce = nonce_of(&challenge(&mut s, &request("REGISTER", ""), SCANNER, 0));
        let cred = |n: &str| format!("Authorization: Digest nonce=\"{n}\"\r\n");
        let stuffed = format!("{}{}", cred(&"0".repeat(32)).repeat(MAX_CREDENTIALS), cred(&nonce));
        assert!(matches!(
            s.handle(&request("REGISTER", &stuffed), addr(SCANNER), 10),
            Udp::Challenge(_)
        ));
        let second = format!("{}{}", cred(&"0".repeat(32)), cred(&nonce));
        assert!(matches!(
            s.handle(&request("REGISTER", &second), addr(SCANNER), 20),
            Udp::Proven(_)
        ));
    }

    #[test]
    fn garbage_and_requests_without_dialog_headers_are_not_answered() {
        let mut s = UdpSensor::new(Cookie::new([3; 32]), "x");
        assert_eq!(s.handle(b"\x16\x03\x01 TLS hello", addr(SCANNER), 0), Udp::Garbage);
        assert_eq!(s.handle(b"GET / HTTP/1.0\r\n\r\n", addr(SCANNER), 0), Udp::Garbage);
        assert_eq!(
            s.handle(
                b"OPTIONS sip:x SIP/2.0\r\nUser-Agent: sipcli/v1.8\r\n\r\n",
                addr(SCANNER),
                0
            ),
            Udp::Unanswered(Unanswered::Unanswerable)
        );
    }

    #[test]
    fn answers_never_amplify_beyond_the_bound() {
        let mut s = UdpSensor::new(Cookie::new([4; 32]), "x");
        // A minimal request whose answer (nonce, WWW-Authenticate) would be over twice its size.
        let tiny = b"INVITE sip:a SIP/2.0\r\nv: x\r\nf: a\r\nt: b\r\ni: c\r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(s.handle(tiny, addr(SCANNER), 0), Udp::Unanswered(Unanswered::Limited));
    }

    #[test]
    fn answers_are_rate_limited_per_source_and_in_bytes_overall() {
        let mut s = UdpSensor::new(Cookie::new([5; 32]), "x");
        let probe = request("REGISTER", "");
        let answered =
            |s: &mut UdpSensor, from: &str, at| matches!(s.handle(&probe, addr(from), at), Udp::Challenge(_));
        let burst = SOURCE_BURST as usize;
        let got = (0..burst + 3).filter(|_| answered(&mut s, SCANNER, 0)).count();
        assert_eq!(got, burst, "one source gets its burst at once");
        assert!(
            answered(&mut s, SCANNER, (1000.0 / SOURCE_RATE) as u64),
            "then its rate"
        );
        // Many (forged) sources at once: the byte budget caps what is sent in total.
        let mut sent = 0usize;
        for i in 0..2000u32 {
            let from = format!("10.{}.{}.{}:5060", i >> 16, (i >> 8) & 255, i & 255);
            if let Udp::Challenge(a) = s.handle(&probe, addr(&from), 2_000) {
                sent += a.len();
            }
        }
        assert!(sent as f64 <= ANSWER_BYTES_BURST, "{sent} bytes");
        assert!(sent as f64 > ANSWER_BYTES_BURST / 2.0, "{sent} bytes");
    }

    #[test]
    fn proven_requests_become_scanner_events() {
        let req = sip::parse(
            b"REGISTER sip:192.0.2.1 SIP/2.0\r\nFrom: <sip:100@192.0.2.1>\r\nUser-Agent: sipcli/v1.8\r\n\r\n",
        )
        .unwrap();
        let ev = observe(
            req,
            "::ffff:203.0.113.9".parse().unwrap(),
            "tcp 0.0.0.0:5062",
            Proof::Handshake,
        );
        assert_eq!(ev.kind, EventKind::Scanner);
        assert_eq!(ev.source.to_string(), "203.0.113.9");
        assert_eq!(ev.method.as_deref(), Some("REGISTER"));
        assert_eq!(ev.user_agent.as_deref(), Some("sipcli/v1.8"));
        assert_eq!(ev.username.as_deref(), Some("100"));
        assert_eq!(ev.via, "sensor tcp 0.0.0.0:5062, handshake, known scanner sipcli");
    }

    #[test]
    fn nonce_and_tag_parameters_are_found_where_they_belong() {
        assert_eq!(to_tag("\"a\" <sip:1@h;tag=uri-param>;tag=abc"), Some("abc"));
        assert_eq!(to_tag("sip:1@h;TAG=abc"), Some("abc"));
        assert_eq!(to_tag("<sip:1@h;tag=x>"), None);
        assert_eq!(
            digest_nonce("Digest username=\"a,b\", cnonce=\"c\", nonce=\"n1\""),
            Some("n1")
        );
        assert_eq!(digest_nonce("digest nonce=n2"), Some("n2"));
        assert_eq!(digest_nonce("Basic nonce=\"n3\""), None);
        assert_eq!(digest_nonce("Digest cnonce=\"n4\""), None);
    }
}
