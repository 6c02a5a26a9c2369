//! Network namespaces the testnet makes and removes, for scenarios that send forged
//! packets (`spoof`): [`Netns`] (deleted when dropped), [`Lab`] (the `spoof` layout:
//! three namespaces joined by veth pairs to each other and to nothing else), running a
//! thread inside a namespace ([`Netns::run_in`], [`Netns::enter`]) and sending IPv4/UDP
//! datagrams with a forged source address ([`RawUdp`]).
//!
//! Nothing here touches the host's own namespace: no interface, address, route or sysctl
//! is made there, and no namespace made here has a link to it, so no packet sent inside
//! can leave the machine. Linux only; needs root and `ip` (iproute2).

use crate::cluster::Placement;
use anyhow::{bail, Context};
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/var/run/netns";
/// Name prefix of the namespaces this module makes (`fm-spoof-PID-ROLE`).
const PREFIX: &str = "fm-spoof-";

/// Runs `ip ARGS`; an error carries its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2): install it (apt-get install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Fails unless this process may make network namespaces: root and `ip` on PATH.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!(
            "{what} makes network namespaces and sends forged packets inside them: it needs root \
             (run it with sudo; scripts/test.sh runs as root)"
        );
    }
    ip(&["-V"]).context("`ip` (iproute2) is needed")
}

/// Deletes namespaces of earlier runs whose process is gone (killed with SIGKILL, which no
/// guard survives); returns how many.
pub fn remove_stale() -> usize {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return 0;
    };
    let mut removed = 0;
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|r| r.split('-').next()) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() && ip(&["netns", "del", &name]).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Moves the calling thread into the namespace `name`.
fn setns(name: &str) -> io::Result<()> {
    let f = File::open(Path::new(NETNS_DIR).join(name))?;
    // SAFETY: the descriptor is open for the whole call; setns changes only the calling
    // thread's network namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A network namespace made by the testnet, deleted (with its interfaces) when dropped.
#[derive(Debug)]
pub struct Netns {
    /// Its name, for `ip netns exec NAME …`.
    pub name: String,
}

impl Netns {
    /// A new namespace `fm-spoof-PID-ROLE` with its loopback up.
    pub fn create(role: &str) -> anyhow::Result<Self> {
        let name = format!("{PREFIX}{}-{role}", std::process::id());
        ip(&["netns", "add", &name]).with_context(|| format!("creating the network namespace {name}"))?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs `f` on a thread inside this namespace and returns what it returns: sockets it
    /// makes belong to this namespace wherever they are used afterwards.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> io::Result<T> + Send + 'static) -> anyhow::Result<T> {
        let name = self.name.clone();
        let r = std::thread::spawn(move || {
            setns(&name)?;
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("a thread in {} panicked", self.name))?;
        r.with_context(|| format!("inside the network namespace {}", self.name))
    }

    /// Moves the calling thread into this namespace: the threads and processes it starts
    /// afterwards are inside too.
    pub fn enter(&self) -> anyhow::Result<()> {
        setns(&self.name).with_context(|| format!("entering the network namespace {}", self.name))
    }

    /// Sets `net.KEY` (e.g. `ipv4/conf/all/rp_filter`) inside this namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let (path, value) = (format!("/proc/sys/net/{key}"), value.to_string());
        self.run_in(move || std::fs::write(path, value))
            .with_context(|| format!("setting net/{key}"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            tracing::warn!(error = %format!("{e:#}"), "removing a network namespace");
        }
    }
}

/// The `spoof` layout: three namespaces, joined by two veth pairs and to nothing else.
///
/// ```text
///  lab: the testnet, nodes 1..N      pbx: node 0, its sensor            attacker
///  nodes on 10.1.x.y (lo)
///  10.0.0.1 ──────────────────────── 10.0.0.2 │ 10.9.0.1 ──────────────── 10.9.0.2, 10.9.0.3
/// ```
///
/// `pbx` routes 10.1.0.0/16 through `lab` and everything else to `attacker`, whose only
/// link is that pair and which routes nothing beyond its /24: an answer to a forged source
/// dies there, never reaching a real host. Reverse-path filtering is off in `pbx` (as on
/// a PBX with a default route), so a datagram forged with a lab address (a peer's, a
/// seed's) arriving from the attacker's side is delivered. The namespaces go (in reverse
/// order) when the `Lab` is dropped.
#[derive(Debug)]
pub struct Lab {
    /// The testnet and nodes 1..N.
    pub lab: Netns,
    /// Node 0, the PBX with the sensor.
    pub pbx: Netns,
    /// The attacker.
    pub attacker: Netns,
}

impl Lab {
    /// `lab`'s end of the pair to `pbx`.
    pub const LAB_GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    /// Node 0's address towards the mesh (libp2p, API).
    pub const PBX: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    /// Node 0's address towards the attacker (the sensor).
    pub const SENSOR: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
    /// The attacker's own addresses.
    pub const ATTACKER: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 3)];

    /// The address node `i` listens on.
    pub fn node_addr(i: usize) -> Ipv4Addr {
        if i == 0 {
            Self::PBX
        } else {
            Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250 + 1) as u8)
        }
    }

    /// Where node `i` runs: node 0 in `pbx` (its API on its mesh-side address, which
    /// `lab` reaches), the others in `lab`.
    pub fn placement(&self, i: usize) -> Placement {
        if i == 0 {
            Placement {
                host: Self::PBX,
                api: Self::PBX,
                netns: Some(self.pbx.name.clone()),
            }
        } else {
            Placement {
                host: Self::node_addr(i),
                ..Placement::default()
            }
        }
    }

    /// Makes the namespaces, links and routes for `nodes` nodes.
    pub fn create(nodes: usize) -> anyhow::Result<Self> {
        let lab = Self {
            lab: Netns::create("lab")?,
            pbx: Netns::create("pbx")?,
            attacker: Netns::create("att")?,
        };
        lab.link()?;
        lab.add_nodes(nodes)?;
        Ok(lab)
    }

    fn link(&self) -> anyhow::Result<()> {
        let (lab, pbx, att) = (&self.lab, &self.pbx, &self.attacker);
        let cidr = |a: Ipv4Addr, len: u8| format!("{a}/{len}");
        // Both ends of each pair are made inside the namespaces: none ever exists in the
        // host's.
        lab.ip(&[
            "link", "add", "to-pbx", "type", "veth", "peer", "name", "to-lab", "netns", &pbx.name,
        ])?;
        pbx.ip(&[
            "link", "add", "to-att", "type", "veth", "peer", "name", "to-pbx", "netns", &att.name,
        ])?;
        // Off before the addresses exist: a datagram forged with a lab address comes in
        // from the attacker's side.
        for key in ["all", "default"] {
            pbx.sysctl(&format!("ipv4/conf/{key}/rp_filter"), "0")?;
        }
        pbx.sysctl("ipv4/conf/to-att/rp_filter", "0")?;
        for (ns, dev, addrs) in [
            (lab, "to-pbx", vec![Self::LAB_GW]),
            (pbx, "to-lab", vec![Self::PBX]),
            (pbx, "to-att", vec![Self::SENSOR]),
            (att, "to-pbx", Self::ATTACKER.to_vec()),
        ] {
            for a in addrs {
                ns.ip(&["addr", "add", &cidr(a, 24), "dev", dev])?;
            }
            ns.ip(&["link", "set", dev, "up"])?;
        }
        pbx.ip(&["route", "add", "10.1.0.0/16", "via", &Self::LAB_GW.to_string()])?;
        pbx.ip(&["route", "add", "default", "via", &Self::ATTACKER[0].to_string()])?;
        Ok(())
    }

    /// Gives `lab` the addresses of nodes 1..`nodes`.
    fn add_nodes(&self, nodes: usize) -> anyhow::Result<()> {
        for i in 1..nodes {
            self.lab
                .ip(&["addr", "add", &format!("{}/32", Self::node_addr(i)), "dev", "lo"])?;
        }
        Ok(())
    }
}

/// A raw IPv4 socket that sends whole packets, source address included (`IPPROTO_RAW`,
/// which implies `IP_HDRINCL`).
pub struct RawUdp {
    fd: OwnedFd,
}

impl RawUdp {
    /// The socket, made inside `ns` (it sends from there).
    pub fn open_in(ns: &Netns) -> anyhow::Result<Self> {
        let fd = ns.run_in(|| {
            // SAFETY: plain socket(2); the descriptor it returns is owned by nobody else.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_RAW) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is a fresh, open descriptor that this OwnedFd alone closes.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })?;
        Ok(Self { fd })
    }

    /// Sends `payload` as one UDP datagram from `from` (any address) to `to`.
    pub fn send(&self, from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> io::Result<()> {
        let packet = udp_packet(from, to, payload);
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(*to.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: `packet` and `sa` are live for the call and their lengths are theirs.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        match n {
            n if n < 0 => Err(io::Error::last_os_error()),
            n if n as usize != packet.len() => Err(io::Error::other("short raw send")),
            _ => Ok(()),
        }
    }
}

/// The internet checksum (RFC 1071) of `parts` concatenated (each of even length but the
/// last).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet holding one UDP datagram, both checksums filled in.
pub fn udp_packet(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = (8 + payload.len()) as u16;
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total as usize);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]); // id, DF, TTL 64, UDP, checksum
    p.extend_from_slice(&from.ip().octets());
    p.extend_from_slice(&to.ip().octets());
    let ip_sum = checksum(&[&p[..20]]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let mut udp = Vec::with_capacity(udp_len as usize);
    udp.extend_from_slice(&from.port().to_be_bytes());
    udp.extend_from_slice(&to.port().to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let pseudo = [
        &from.ip().octets()[..],
        &to.ip().octets(),
        &[0, 17],
        &udp_len.to_be_bytes(),
    ]
    .concat();
    let sum = match checksum(&[&pseudo, &udp]) {
        0 => 0xffff, // 0 means "no checksum" in UDP over IPv4
        s => s,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&udp);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_packets_carry_the_given_source_and_valid_checksums() {
        let from: SocketAddrV4 = "198.51.100.77:5060".parse().unwrap();
        let to: SocketAddrV4 = "10.9.0.1:5062".parse().unwrap();
        // An odd length: the checksum pads the last byte.
        let p = udp_packet(from, to, b"OPTIONS sip:x SIP/2.0\r\n\r\n!?");
        assert_eq!(p.len(), 20 + 8 + 27);
        assert_eq!(&p[12..16], &[198, 51, 100, 77]);
        assert_eq!(&p[16..20], &[10, 9, 0, 1]);
        assert_eq!(u16::from_be_bytes([p[22], p[23]]), 5062);
        // A header with its checksum sums to 0xffff, i.e. checksums to 0.
        assert_eq!(checksum(&[&p[..20]]), 0);
        let pseudo = [&p[12..20], &[0, 17], &p[24..26]].concat();
        assert_eq!(checksum(&[&pseudo, &p[20..]]), 0);
    }
}
