//! Targets: what a sighting accuses — an IP address, an IP prefix of bounded breadth, or
//! an E.164 telephone number prefix — and their single canonical form.
//!
//! Two nodes must agree byte for byte on what a target is, or the ledger would hold the
//! same accusation under two keys. So every target is canonicalised before signing
//! (host bits cleared, IPv4-mapped IPv6 turned into IPv4, numbers as bare digits) and a
//! non-canonical target on the wire is rejected rather than repaired.

use crate::proto;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest E.164 number (ITU-T E.164: at most 15 digits).
pub const MAX_NUMBER_DIGITS: usize = 15;

/// Why a target was refused: unparsable, the unspecified address, too broad, not in
/// canonical form, or a malformed number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not an IP address, an IP prefix or a `+digits` number.
    #[error("not an IP address, prefix or +E.164 number: {0:?}")]
    Unparsable(String),
    /// The unspecified address (0.0.0.0 or ::) accuses nobody.
    #[error("the unspecified address {0} cannot be a target")]
    Unspecified(IpAddr),
    /// The prefix covers more addresses than the configured bound allows.
    #[error("prefix {net} is broader than the allowed /{min_len}")]
    TooBroad {
        /// The refused prefix.
        net: IpNet,
        /// The shortest prefix length allowed for its family.
        min_len: u8,
    },
    /// On the wire: host bits set, IPv4-mapped IPv6, or a number with non-digits.
    #[error("target is not in canonical form: {0}")]
    NotCanonical(String),
    /// A number prefix that is empty or longer than 15 digits.
    #[error("number prefix must have 1 to 15 digits: {0:?}")]
    BadNumber(String),
}

/// How broad a prefix a node accepts (a /8 accusation would cut off millions of people).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Shortest IPv4 prefix length accepted. Default 16.
    pub min_v4_len: u8,
    /// Shortest IPv6 prefix length accepted. Default 32.
    pub min_v6_len: u8,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            min_v4_len: 16,
            min_v6_len: 32,
        }
    }
}

/// An accused target in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// An address (/32, /128) or prefix, host bits cleared, never IPv4-mapped IPv6.
    Ip(IpNet),
    /// E.164 digits without `+`, country code first.
    Number(Box<str>),
}

impl Target {
    /// Parses what a person or a log line writes: `1.2.3.4`, `2001:db8::1`, `10.0.0.0/24`,
    /// `+41900123`, `tel:+41900`. Host bits of a prefix are cleared and IPv4-mapped IPv6
    /// becomes IPv4; the result is then checked against `bounds`.
    pub fn parse(text: &str, bounds: Bounds) -> Result<Self, Error> {
        let t = text.trim();
        let target = if let Some(digits) = t.strip_prefix("tel:+").or_else(|| t.strip_prefix('+')) {
            Self::number(digits)?
        } else if let Ok(addr) = t.parse::<IpAddr>() {
            Self::Ip(canonical_net(IpNet::from(addr)))
        } else if let Ok(net) = t.parse::<IpNet>() {
            Self::Ip(canonical_net(net))
        } else {
            return Err(Error::Unparsable(t.to_string()));
        };
        target.check(bounds)?;
        Ok(target)
    }

    /// A number prefix from bare digits.
    pub fn number(digits: &str) -> Result<Self, Error> {
        if digits.is_empty() || digits.len() > MAX_NUMBER_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::BadNumber(digits.to_string()));
        }
        Ok(Self::Number(digits.into()))
    }

    /// The target for exactly one IP address.
    pub fn host(addr: IpAddr) -> Self {
        Self::Ip(canonical_net(IpNet::from(addr)))
    }

    /// Checks breadth and the unspecified address.
    pub fn check(&self, bounds: Bounds) -> Result<(), Error> {
        let Self::Ip(net) = self else { return Ok(()) };
        let (min_len, max_len) = match net {
            IpNet::V4(_) => (bounds.min_v4_len, 32),
            IpNet::V6(_) => (bounds.min_v6_len, 128),
        };
        if net.prefix_len() == max_len && net.addr().is_unspecified() {
            return Err(Error::Unspecified(net.addr()));
        }
        if net.prefix_len() < min_len {
            return Err(Error::TooBroad { net: *net, min_len });
        }
        Ok(())
    }

    /// This target and every broader one that covers it, narrowest first: for an address
    /// every prefix containing it (all lengths, whatever the bounds), for a number every
    /// shorter prefix. A lookup of "is this blocked, by anything?" asks each.
    pub fn covering(&self) -> Vec<Target> {
        match self {
            Self::Ip(net) => (0..=net.prefix_len())
                .rev()
                .filter_map(|len| IpNet::new(net.addr(), len).ok())
                .map(|n| Self::Ip(n.trunc()))
                .collect(),
            Self::Number(d) => (1..=d.len()).rev().map(|len| Self::Number(d[..len].into())).collect(),
        }
    }

    /// The IP network, if this is an address target.
    pub fn ip_net(&self) -> Option<IpNet> {
        match self {
            Self::Ip(net) => Some(*net),
            Self::Number(_) => None,
        }
    }

    /// Whether the target is a single address (not a prefix, not a number).
    pub fn is_host(&self) -> bool {
        matches!(self, Self::Ip(net) if net.prefix_len() == net.max_prefix_len())
    }

    /// The protobuf form (canonical: host bits zero, IPv4 never IPv6-mapped).
    pub fn to_proto(&self) -> proto::Target {
        let target = match self {
            Self::Ip(net) => proto::target::Target::Ip(proto::IpPrefix {
                address: match net.addr() {
                    IpAddr::V4(a) => a.octets().to_vec().into(),
                    IpAddr::V6(a) => a.octets().to_vec().into(),
                },
                prefix_len: u32::from(net.prefix_len()),
            }),
            Self::Number(d) => proto::target::Target::NumberPrefix(d.to_string()),
        };
        proto::Target { target: Some(target) }
    }

    /// Reads the wire form, refusing anything not canonical or out of `bounds`.
    pub fn from_proto(p: &proto::Target, bounds: Bounds) -> Result<Self, Error> {
        let target = match &p.target {
            None => return Err(Error::NotCanonical("no target set".into())),
            Some(proto::target::Target::NumberPrefix(d)) => Self::number(d)?,
            Some(proto::target::Target::Ip(ip)) => {
                let len = u8::try_from(ip.prefix_len).map_err(|_| Error::NotCanonical("prefix length".into()))?;
                let net = match ip.address.len() {
                    4 => {
                        let mut o = [0u8; 4];
                        o.copy_from_slice(&ip.address);
                        Ipv4Net::new(Ipv4Addr::from(o), len).map(IpNet::V4)
                    }
                    16 => {
                        let mut o = [0u8; 16];
                        o.copy_from_slice(&ip.address);
                        Ipv6Net::new(Ipv6Addr::from(o), len).map(IpNet::V6)
                    }
                    n => return Err(Error::NotCanonical(format!("address of {n} bytes"))),
                }
                .map_err(|_| Error::NotCanonical(format!("prefix length /{len}")))?;
                if canonical_net(net) != net {
                    return Err(Error::NotCanonical(net.to_string()));
                }
                Self::Ip(net)
            }
        };
        target.check(bounds)?;
        Ok(target)
    }
}

/// Clears host bits and turns IPv4-mapped IPv6 (`::ffff:a.b.c.d/len≥96`) into IPv4.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) => {
            if let (Some(v4), true) = (v6.addr().to_ipv4_mapped(), v6.prefix_len() >= 96) {
                // Lengths ≥ 96 map to 0..=32, always valid.
                if let Ok(n) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(n.trunc());
                }
            }
            IpNet::V6(v6.trunc())
        }
        IpNet::V4(v4) => IpNet::V4(v4.trunc()),
    }
}

impl fmt::Display for Target {
    /// Hosts as bare addresses, prefixes as `addr/len`, numbers as `+digits`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(net) if net.prefix_len() == net.max_prefix_len() => write!(f, "{}", net.addr()),
            Self::Ip(net) => write!(f, "{net}"),
            Self::Number(d) => write!(f, "+{d}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Target, Error> {
        Target::parse(s, Bounds::default())
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(p("1.2.3.4").unwrap().to_string(), "1.2.3.4");
        assert_eq!(p(" 10.1.2.3/24 ").unwrap().to_string(), "10.1.2.0/24");
        assert_eq!(p("::ffff:1.2.3.4").unwrap().to_string(), "1.2.3.4");
        assert_eq!(p("2001:DB8::1").unwrap().to_string(), "2001:db8::1");
        assert_eq!(p("2001:db8:1::/48").unwrap().to_string(), "2001:db8:1::/48");
        assert_eq!(p("+41900").unwrap(), Target::Number("41900".into()));
        assert_eq!(p("tel:+41900").unwrap().to_string(), "+41900");
        assert!(p("1.2.3.4").unwrap().is_host());
        assert!(!p("1.2.3.0/24").unwrap().is_host());
    }

    #[test]
    fn covering_targets_narrowest_first() {
        let c = p("10.1.2.3").unwrap().covering();
        assert_eq!(c.len(), 33);
        assert_eq!(c[0].to_string(), "10.1.2.3");
        assert_eq!(c[8].to_string(), "10.1.2.0/24");
        assert_eq!(c[32].to_string(), "0.0.0.0/0");
        assert_eq!(p("2001:db8::1").unwrap().covering().len(), 129);
        let n: Vec<String> = p("+419").unwrap().covering().iter().map(ToString::to_string).collect();
        assert_eq!(n, vec!["+419", "+41", "+4"]);
    }

    #[test]
    fn bad_targets_are_clear_errors() {
        assert_eq!(p("999.1.1.1"), Err(Error::Unparsable("999.1.1.1".into())));
        assert!(matches!(p("0.0.0.0/0"), Err(Error::TooBroad { min_len: 16, .. })));
        assert!(matches!(p("10.0.0.0/8"), Err(Error::TooBroad { .. })));
        assert!(matches!(p("2001::/16"), Err(Error::TooBroad { min_len: 32, .. })));
        assert!(matches!(p("0.0.0.0"), Err(Error::Unspecified(_))));
        assert!(matches!(p("+"), Err(Error::BadNumber(_))));
        assert!(matches!(p("+1234567890123456"), Err(Error::BadNumber(_))));
        assert!(matches!(p("+41-900"), Err(Error::BadNumber(_))));
        assert!(matches!(p("example.com"), Err(Error::Unparsable(_))));
    }

    #[test]
    fn wire_round_trip_and_non_canonical_rejected() {
        for s in ["1.2.3.4", "10.1.0.0/16", "2001:db8::/32", "+41900"] {
            let t = p(s).unwrap();
            assert_eq!(Target::from_proto(&t.to_proto(), Bounds::default()), Ok(t));
        }
        // Host bits set, an IPv4-mapped IPv6 address, a prefix longer than the address.
        let non_canonical: [(Vec<u8>, u32); 3] = [
            (vec![10, 1, 2, 3], 24),
            (Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped().octets().to_vec(), 128),
            (vec![1, 2, 3, 4], 33),
        ];
        for (address, prefix_len) in non_canonical {
            let wire = proto::Target {
                target: Some(proto::target::Target::Ip(proto::IpPrefix {
                    address: address.into(),
                    prefix_len,
                })),
            };
            assert!(matches!(
                Target::from_proto(&wire, Bounds::default()),
                Err(Error::NotCanonical(_))
            ));
        }
    }
}
