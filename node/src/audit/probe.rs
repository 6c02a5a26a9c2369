//! `--probe HOST`: TCP connects from this node to the ports of management interfaces
//! and SIP on hosts the operator names (never any other), reporting which answer. Ports
//! are tried in parallel, each with a short timeout.

use serde::Serialize;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The ports tried, with what usually answers there.
pub const PORTS: &[(u16, &str)] = &[
    (80, "HTTP (web admin)"),
    (443, "HTTPS (web admin)"),
    (5038, "AMI"),
    (5060, "SIP"),
    (8021, "FreeSWITCH event socket"),
    (8088, "Asterisk HTTP/ARI"),
    (8089, "Asterisk HTTPS/ARI"),
];

/// How long one connect may take.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// Why a host could not be probed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name does not resolve to an address.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host as given.
        host: String,
        /// What the resolver said.
        reason: String,
    },
}

/// One port tried.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PortResult {
    /// The host as given.
    pub host: String,
    /// The address connected to.
    pub address: String,
    /// The port.
    pub port: u16,
    /// What usually listens there.
    pub service: String,
    /// Whether a TCP connection was accepted.
    pub open: bool,
}

impl PortResult {
    /// SIP is expected to answer on a PBX; the others are management interfaces.
    pub fn is_management(&self) -> bool {
        self.service != "SIP"
    }
}

/// Connects to each of `ports` on `host` (a name, an IPv4 or an IPv6 address, with or
/// without brackets), `timeout` each, all in parallel.
pub fn probe(host: &str, ports: &[(u16, &str)], timeout: Duration) -> Result<Vec<PortResult>, Error> {
    let bare = host.trim().trim_start_matches('[').trim_end_matches(']');
    let ip: SocketAddr = (bare, 0)
        .to_socket_addrs()
        .map_err(|e| Error::Resolve {
            host: host.to_string(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| Error::Resolve {
            host: host.to_string(),
            reason: "no address".into(),
        })?;
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = ports
            .iter()
            .map(|(port, service)| {
                let addr = SocketAddr::new(ip.ip(), *port);
                scope.spawn(move || PortResult {
                    host: host.to_string(),
                    address: addr.to_string(),
                    port: *port,
                    service: service.to_string(),
                    open: TcpStream::connect_timeout(&addr, timeout).is_ok(),
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(ports)
            .map(|(h, (port, service))| {
                // A connect thread cannot panic short of a bug; count it as closed.
                h.join().unwrap_or_else(|_| PortResult {
                    host: host.to_string(),
                    address: SocketAddr::new(ip.ip(), *port).to_string(),
                    port: *port,
                    service: service.to_string(),
                    open: false,
                })
            })
            .collect()
    });
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn finds_listeners_and_closed_ports() {
        let open = TcpListener::bind("127.0.0.1:0").unwrap();
        let open_port = open.local_addr().unwrap().port();
        // A port that was just free: bound, then closed.
        let closed_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let r = probe(
            "127.0.0.1",
            &[(open_port, "AMI"), (closed_port, "ESL")],
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert!(r[0].open && r[0].service == "AMI");
        assert!(!r[1].open);
        assert!(probe("no-such-host.invalid", PORTS, TIMEOUT).is_err());
    }
}
