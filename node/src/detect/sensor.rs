//! The SIP sensor: decoy listeners on ports no legitimate device uses. Every source that
//! sends a well-formed SIP request there is a scanner (kind `scan`), reported with the
//! method and user agent as evidence; known scanner user agents are named in the log.
//! Nothing is answered. Garbage is counted and dropped; sizes are bounded by the core's
//! strict parser.

use super::{Observed, Sink};
use anyhow::Context;
use fraudmesh::detect::logs::EventKind;
use fraudmesh::detect::sip::{self, MAX_MESSAGE};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

/// Most TCP connections read at once.
const MAX_TCP: usize = 64;
/// Longest a TCP sender gets to send its request.
const TCP_READ: Duration = Duration::from_secs(5);

/// The event of one request from `source`, or `None` for garbage.
pub fn observe(bytes: &[u8], source: IpAddr, listener: &str) -> Option<Observed> {
    let req = sip::parse(bytes).ok()?;
    let ua = req.user_agent.clone().unwrap_or_default();
    let tool = sip::scanner(&ua);
    if let Some(tool) = tool {
        tracing::info!(%source, tool, method = %req.method, "known SIP scanner on the sensor");
    }
    let flagged = tool.map(|t| format!(", known scanner {t}")).unwrap_or_default();
    Some(Observed {
        kind: EventKind::Scanner,
        source,
        username: req.from_user,
        method: Some(req.method),
        user_agent: req.user_agent,
        via: format!("sensor {listener}{flagged}"),
        proof: super::Proof::None { reason: "sensor-udp" },
    })
}

/// Passes a request's event on, or counts garbage.
fn pass(sink: &Sink, ev: Option<Observed>) {
    match ev {
        Some(ev) => sink.send(ev),
        None => {
            sink.metrics().sensor_garbage.inc();
        }
    }
}

/// Listens for UDP requests on `addr`.
pub fn spawn_udp(addr: SocketAddr, sink: Sink, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<JoinHandle<()>> {
    let std_sock = std::net::UdpSocket::bind(addr).with_context(|| format!("binding the SIP sensor to udp {addr}"))?;
    std_sock.set_nonblocking(true)?;
    let sock = tokio::net::UdpSocket::from_std(std_sock)?;
    let name = format!("udp {}", sock.local_addr()?);
    tracing::info!(listener = %name, "SIP sensor listening");
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                r = sock.recv_from(&mut buf) => match r {
                    Ok((n, from)) => pass(&sink, observe(&buf[..n], from.ip(), &name)),
                    Err(e) => tracing::debug!(error = %e, "sensor receive"),
                },
            }
        }
    }))
}

/// Listens for TCP requests on `addr`.
pub fn spawn_tcp(addr: SocketAddr, sink: Sink, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<JoinHandle<()>> {
    let std_listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("binding the SIP sensor to tcp {addr}"))?;
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let name = format!("tcp {}", listener.local_addr()?);
    tracing::info!(listener = %name, "SIP sensor listening");
    let slots = Arc::new(Semaphore::new(MAX_TCP));
    Ok(tokio::spawn(async move {
        loop {
            let (mut stream, from) = tokio::select! {
                _ = shutdown.changed() => break,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => { tracing::debug!(error = %e, "sensor accept"); continue }
                },
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
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
                if tokio::time::timeout(TCP_READ, read).await.is_ok() && !buf.is_empty() {
                    let proven = |ev| Observed {
                        proof: super::Proof::Handshake,
                        ..ev
                    };
                    pass(&sink, observe(&buf, from.ip(), &name).map(proven));
                }
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_become_scanner_events_and_garbage_nothing() {
        let req = b"REGISTER sip:192.0.2.1 SIP/2.0\r\nFrom: <sip:100@192.0.2.1>\r\nUser-Agent: sipcli/v1.8\r\n\r\n";
        let ev = observe(req, "203.0.113.9".parse().unwrap(), "udp 0.0.0.0:5062").unwrap();
        assert_eq!(ev.kind, EventKind::Scanner);
        assert_eq!(ev.method.as_deref(), Some("REGISTER"));
        assert_eq!(ev.user_agent.as_deref(), Some("sipcli/v1.8"));
        assert_eq!(ev.username.as_deref(), Some("100"));
        assert!(ev.via.ends_with("known scanner sipcli"), "{}", ev.via);
        assert!(observe(b"\x16\x03\x01 TLS hello", "203.0.113.9".parse().unwrap(), "x").is_none());
    }
}
