//! Targets: what a sighting accuses — an IP address, an IP prefix of bounded breadth, or
//! an E.164 telephone number prefix — and their single canonical form.
//!
//! Two nodes must agree byte for byte on what a target is, or the ledger would hold the
//! same accusation under two keys. So every target is canonicalised before signing
//! (host bits cleared, an IPv4-mapped IPv6 address turned into IPv4, numbers as bare
//! digits) and a non-canonical target on the wire is rejected rather than repaired.
//!
//! # IPv4-mapped IPv6
//!
//! `::ffff:a.b.c.d` is how a dual-stack socket shows the IPv4 address `a.b.c.d`. A single
//! mapped address is the IPv4 address: [`Target::parse`] and [`Target::host`] turn it
//! into IPv4, and on the wire it must be sent as IPv4. An IPv6 *prefix* overlapping
//! `::ffff:0:0/96` (`::ffff:10.0.0.0/104`, `::ffff:0:0/96`, `::fffe:0:0/95`, `::/0`, …) is
//! refused everywhere ([`Error::MappedRange`]): it would either be an IPv4 prefix in
//! disguise or accuse IPv4 addresses by the back door (an IPv6 accusation must never
//! block IPv4). The blocklist holds the same line from the other side: an IPv4 lookup
//! never consults IPv6 entries.
//!
//! # Breadth
//!
//! [`PROTOCOL_BOUNDS`] is the broadest any node may accept (invalid on the wire beyond
//! it); each node's own [`Bounds`] may only be narrower (`sighting::AcceptLimits`).
//! A number prefix must hold a known country calling code and at least
//! [`MIN_NUMBER_DIGITS_AFTER_CODE`] more digits (`+41900`, `+1900`, never `+44` or `+4`):
//! one report must not deny calls to a whole country or numbering zone.

use crate::proto;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest E.164 number (ITU-T E.164: at most 15 digits).
pub const MAX_NUMBER_DIGITS: usize = 15;
/// Fewest digits a number prefix holds after its country calling code.
pub const MIN_NUMBER_DIGITS_AFTER_CODE: usize = 3;

/// The broadest prefixes the protocol allows: IPv4 /8, IPv6 /16. Broader is invalid for
/// every receiver; a node's own bounds may only be narrower.
pub const PROTOCOL_BOUNDS: Bounds = Bounds {
    min_v4_len: 8,
    min_v6_len: 16,
};

/// `::ffff:0:0/96`, the IPv4-mapped IPv6 range.
const MAPPED: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);

/// Why a target was refused: unparsable, the unspecified address, too broad, an IPv6
/// prefix overlapping the IPv4-mapped range, not in canonical form, or a malformed number.
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
    /// An IPv6 prefix overlapping `::ffff:0:0/96` (see the module doc). Refused wherever
    /// it comes from: from people (write the IPv4 prefix instead) and on the wire.
    #[error("IPv6 prefix {0} overlaps the IPv4-mapped range ::ffff:0:0/96: write IPv4 addresses and prefixes as IPv4")]
    MappedRange(Ipv6Net),
    /// On the wire: host bits set, an IPv4-mapped IPv6 address, or a number with non-digits.
    #[error("target is not in canonical form: {0}")]
    NotCanonical(String),
    /// A number prefix that is empty or longer than 15 digits.
    #[error("number prefix must have 1 to 15 digits: {0:?}")]
    BadNumber(String),
    /// A number prefix that starts with no country calling code libphonenumber knows.
    #[error("number prefix +{0} starts with no known country calling code")]
    UnknownCountryCode(String),
    /// A number prefix with fewer than [`MIN_NUMBER_DIGITS_AFTER_CODE`] digits after its
    /// country calling code.
    #[error("number prefix +{digits} is too broad: give the country code +{code} and at least 3 more digits")]
    NumberTooShort {
        /// The refused prefix's digits.
        digits: String,
        /// Its country calling code.
        code: u16,
    },
}

/// How broad a prefix a node accepts (a /8 accusation would cut off millions of people).
/// Never broader than [`PROTOCOL_BOUNDS`] for received sightings.
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
    /// `+41900123`, `tel:+41900`. Host bits of a prefix are cleared and a single
    /// IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, also as `/128`) becomes IPv4; the result
    /// is then checked: IPv6 prefixes overlapping the mapped range are refused, and
    /// breadth against `bounds`.
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

    /// A number prefix from bare digits: 1 to 15 ASCII digits starting with a country
    /// calling code (libphonenumber's) and at least [`MIN_NUMBER_DIGITS_AFTER_CODE`] more.
    pub fn number(digits: &str) -> Result<Self, Error> {
        if digits.is_empty() || digits.len() > MAX_NUMBER_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::BadNumber(digits.to_string()));
        }
        let code = calling_code(digits).ok_or_else(|| Error::UnknownCountryCode(digits.to_string()))?;
        if digits.len() < code.len() + MIN_NUMBER_DIGITS_AFTER_CODE {
            return Err(Error::NumberTooShort {
                digits: digits.to_string(),
                code: code.parse().unwrap_or_default(),
            });
        }
        Ok(Self::Number(digits.into()))
    }

    /// The target for exactly one IP address.
    pub fn host(addr: IpAddr) -> Self {
        Self::Ip(canonical_net(IpNet::from(addr)))
    }

    /// Checks the unspecified address, the IPv4-mapped range and breadth (in that order).
    pub fn check(&self, bounds: Bounds) -> Result<(), Error> {
        let Self::Ip(net) = self else { return Ok(()) };
        let (min_len, max_len) = match net {
            IpNet::V4(_) => (bounds.min_v4_len, 32),
            IpNet::V6(_) => (bounds.min_v6_len, 128),
        };
        if net.prefix_len() == max_len && net.addr().is_unspecified() {
            return Err(Error::Unspecified(net.addr()));
        }
        if let IpNet::V6(v6) = net {
            if v6.contains(&MAPPED) || MAPPED.contains(v6) {
                return Err(Error::MappedRange(*v6));
            }
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

    /// Whether blocking one target would touch the other: one contains the other (an
    /// address inside a prefix, a number prefix that starts with the other).
    pub fn overlaps(&self, other: &Target) -> bool {
        match (self, other) {
            (Target::Ip(x), Target::Ip(y)) => x.contains(y) || y.contains(x),
            (Target::Number(x), Target::Number(y)) => x.starts_with(&**y) || y.starts_with(&**x),
            _ => false,
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

    /// Reads the wire form, refusing anything not canonical (host bits set, a mapped IPv6
    /// address, an IPv6 prefix overlapping the mapped range) or out of `bounds`. Receivers
    /// pass [`PROTOCOL_BOUNDS`] here and apply their own bounds separately.
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

/// The country calling code `digits` starts with (1 to 3 digits; calling codes are
/// prefix-free), from libphonenumber's metadata.
fn calling_code(digits: &str) -> Option<&str> {
    if digits.starts_with('0') {
        return None;
    }
    (1..=3.min(digits.len())).map(|n| &digits[..n]).find(|code| {
        code.parse::<u16>()
            .is_ok_and(|c| phonenumber::metadata::DATABASE.region(&c).is_some())
    })
}

/// Clears host bits and turns a single IPv4-mapped IPv6 address (`::ffff:a.b.c.d/128`)
/// into IPv4. Mapped *prefixes* stay IPv6, for [`Target::check`] to refuse.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) => match (v6.prefix_len(), v6.addr().to_ipv4_mapped()) {
            (128, Some(v4)) => IpNet::V4(Ipv4Net::from(v4)),
            _ => IpNet::V6(v6.trunc()),
        },
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
        let n: Vec<String> = p("+41900")
            .unwrap()
            .covering()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(n, vec!["+41900", "+4190", "+419", "+41", "+4"]);
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
    }

    #[test]
    fn number_prefixes_hold_a_country_code_and_three_more_digits() {
        for ok in ["+41900", "+1900", "+4420794", "+882123", "+7123", "+123456789012345"] {
            assert!(p(ok).is_ok(), "{ok}");
        }
        for (short, code) in [
            ("+4", None),
            ("+41", Some(41)),
            ("+4190", Some(41)),
            ("+1", Some(1)),
            ("+190", Some(1)),
            ("+88212", Some(882)),
        ] {
            match (p(short), code) {
                (Err(Error::NumberTooShort { code: c, .. }), Some(code)) => assert_eq!(c, code, "{short}"),
                (Err(Error::UnknownCountryCode(_)), None) => {}
                (other, _) => panic!("{short}: {other:?}"),
            }
        }
        // 0 and the unassigned +999 are no country codes.
        assert!(matches!(p("+0123456"), Err(Error::UnknownCountryCode(_))));
        assert!(matches!(p("+999123456"), Err(Error::UnknownCountryCode(_))));
        assert!(p("+41").unwrap_err().to_string().contains("at least 3 more digits"));
        // On the wire the same.
        let wire = proto::Target {
            target: Some(proto::target::Target::NumberPrefix("44".into())),
        };
        assert!(matches!(
            Target::from_proto(&wire, PROTOCOL_BOUNDS),
            Err(Error::NumberTooShort { code: 44, .. })
        ));
        assert!(matches!(p("example.com"), Err(Error::Unparsable(_))));
    }

    #[test]
    fn mapped_addresses_become_ipv4_and_mapped_prefixes_are_refused() {
        // A single mapped address is the IPv4 address, however it is written.
        for s in [
            "::ffff:1.2.3.4",
            "::ffff:1.2.3.4/128",
            "::FFFF:102:304",
            " ::ffff:1.2.3.4 ",
        ] {
            assert_eq!(p(s), p("1.2.3.4"), "{s}");
        }
        assert_eq!(Target::host("::ffff:1.2.3.4".parse().unwrap()), p("1.2.3.4").unwrap());
        // Any IPv6 prefix overlapping ::ffff:0:0/96 is refused, whatever the bounds.
        let any = Bounds {
            min_v4_len: 0,
            min_v6_len: 0,
        };
        for s in [
            "::fffe:0:0/95",
            "::ffff:0:0/96",
            "::ffff:10.0.0.0/104",
            "::ffff:1.2.3.0/120",
            "::ffff:1.2.3.4/127",
            "::/0",
            "::/16",
            "::/80",
        ] {
            assert!(matches!(Target::parse(s, any), Err(Error::MappedRange(_))), "{s}");
        }
        // Neighbours that do not overlap stay IPv6.
        for s in [
            "::fffe:0:0/96",
            "::1:0:0:0/96",
            "::1/128",
            "::ffff:0:0:0/96",
            "64:ff9b::/96",
        ] {
            assert!(matches!(Target::parse(s, any), Ok(Target::Ip(IpNet::V6(_)))), "{s}");
        }
        assert!(Error::MappedRange("::fffe:0:0/95".parse().unwrap())
            .to_string()
            .contains("write IPv4"));
    }

    #[test]
    fn protocol_bounds_are_the_broadest_any_node_accepts() {
        assert!(Bounds::default().min_v4_len >= PROTOCOL_BOUNDS.min_v4_len);
        assert!(Bounds::default().min_v6_len >= PROTOCOL_BOUNDS.min_v6_len);
        assert!(Target::parse("10.0.0.0/8", PROTOCOL_BOUNDS).is_ok());
        assert!(matches!(
            Target::parse("10.0.0.0/7", PROTOCOL_BOUNDS),
            Err(Error::TooBroad { min_len: 8, .. })
        ));
        assert!(Target::parse("2001::/16", PROTOCOL_BOUNDS).is_ok());
        assert!(matches!(
            Target::parse("2000::/15", PROTOCOL_BOUNDS),
            Err(Error::TooBroad { min_len: 16, .. })
        ));
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
        // IPv6 prefixes over the mapped range are invalid on the wire, whatever the bounds.
        for (s, len) in [("::fffe:0:0", 95u32), ("::ffff:0:0", 96), ("::ffff:10.0.0.0", 104)] {
            let wire = proto::Target {
                target: Some(proto::target::Target::Ip(proto::IpPrefix {
                    address: s.parse::<Ipv6Addr>().unwrap().octets().to_vec().into(),
                    prefix_len: len,
                })),
            };
            let any = Bounds {
                min_v4_len: 0,
                min_v6_len: 0,
            };
            assert!(
                matches!(Target::from_proto(&wire, any), Err(Error::MappedRange(_))),
                "{s}/{len}"
            );
        }
    }
}
