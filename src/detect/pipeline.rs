//! From events to detections: proof first, then the never-report rules, then the
//! thresholds, then the node's report cap.
//!
//! Every event (a log line's, or a decoy listener's hit) passes here with the time it was
//! seen, in this order:
//!
//! 1. **Proof.** An event without [`Proof`] of return routability (a UDP line anyone could
//!    have forged) stops here: counted by reason, never reported, and it creates no
//!    state at all — a forged flood neither fills the windows nor evicts a real attacker's.
//! 2. **Grouping.** An IPv4 source counts as its address, an IPv6 source as its /64 (an
//!    attacker rotating through its /64 stays one source, and is reported as the /64) —
//!    unless that /64 holds a never-reported address or is `::/64` (which holds the
//!    IPv4-mapped range), then as its address.
//! 3. **Never report.** Allowlist, trunks, loopback, the node's own addresses (every
//!    interface's), seeds and the fraudmesh peers it knows ([`Pipeline::set_local`],
//!    [`Pipeline::set_peers`]); and a group that registered successfully within
//!    `registered_grace` — a phone whose password was just changed keeps failing for a
//!    while and must not be turned into an attacker.
//! 4. **Thresholds** per (group, kind) ([`Windows`]).
//! 5. **Report cap.** At most `max_reports_per_minute` detections in any 60 s
//!    ([`ReportCap`]); a crossing beyond it is held (its events kept, reported when the
//!    minute has room) and counted as capped, with a warning at most once a minute.

use super::logs::EventKind;
use super::window::{Detection, Lru, Threshold, Tick, Windows};
use super::Proof;
use crate::Millis;
use ipnet::{IpNet, Ipv6Net};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv6Addr};

/// Most recently registered sources remembered (the least recently registered go first).
pub const MAX_REGISTERED: usize = 100_000;
/// The span the report cap counts in, ms.
pub const CAP_SPAN_MS: Millis = 60_000;
/// The prefix length IPv6 sources are grouped by.
pub const IPV6_GROUP: u8 = 64;

/// The rules of a detection pipeline: thresholds per event kind, never-report
/// addresses, registration grace, the window bound and the report cap.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Threshold per kind; a kind without one is never reported.
    pub thresholds: HashMap<EventKind, Threshold>,
    /// Addresses and prefixes never reported.
    pub never: Vec<IpNet>,
    /// How long a successful registration protects its source, ms.
    pub registered_grace_ms: Millis,
    /// Most (source, kind) windows kept.
    pub max_windows: usize,
    /// Most detections reported in any [`CAP_SPAN_MS`] (at least 1).
    pub max_reports_per_minute: u32,
}

impl Rules {
    /// The default thresholds: 5 auth failures or 3 usernames in 60 s; 5 unknown accounts
    /// or 3 usernames in 60 s; 10 ACL rejections in 60 s; 3 calls to missing extensions
    /// in 60 s; a scanner or a flood at once. Quiet 10 minutes after a detection.
    pub fn default_thresholds() -> HashMap<EventKind, Threshold> {
        let t = |count, distinct_usernames| Threshold {
            count,
            window_ms: 60_000,
            distinct_usernames,
            cooldown_ms: 600_000,
        };
        HashMap::from([
            (EventKind::AuthFailure, t(5, 3)),
            (EventKind::UnknownAccount, t(5, 3)),
            (EventKind::AclRejected, t(10, 0)),
            (EventKind::NoSuchExtension, t(3, 0)),
            (EventKind::Scanner, t(1, 0)),
            (EventKind::Flood, t(1, 0)),
        ])
    }

    /// The default report cap per minute.
    pub const DEFAULT_MAX_REPORTS_PER_MINUTE: u32 = 60;
}

/// What the pipeline did with one event: reported, counted, or passed over and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// It crossed a threshold: report the source.
    Detected(Detection<EventKind>),
    /// Counted, below the threshold (or in the cooldown after a detection).
    Counted,
    /// Nothing proves the source receives packets at its address: ignored (the reason,
    /// as a metric label).
    Unproven(&'static str),
    /// The source is on the never-report list.
    NeverReport,
    /// The source registered successfully within the grace time.
    RecentlyRegistered,
    /// A successful registration, remembered.
    Registered,
    /// No threshold is configured for this kind.
    Ignored,
    /// It crossed a threshold but the node reached its report cap: held, not reported.
    /// `warn` is true at most once per [`CAP_SPAN_MS`].
    Capped {
        /// Whether to warn the operator now.
        warn: bool,
    },
}

impl Disposition {
    /// A stable name for metrics and output: `detected`, `counted`, `unproven`,
    /// `never_report`, `recently_registered`, `registered`, `ignored`, `capped`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Detected(_) => "detected",
            Self::Counted => "counted",
            Self::Unproven(_) => "unproven",
            Self::NeverReport => "never_report",
            Self::RecentlyRegistered => "recently_registered",
            Self::Registered => "registered",
            Self::Ignored => "ignored",
            Self::Capped { .. } => "capped",
        }
    }
}

/// The per-node cap on detection reports: at most `per_minute` in any [`CAP_SPAN_MS`].
/// Pure: time is a parameter.
#[derive(Debug, Clone)]
pub struct ReportCap {
    per_minute: u32,
    /// When the reports of the last span were made, oldest first.
    recent: VecDeque<Millis>,
    /// When the operator was last warned.
    warned_at: Option<Millis>,
}

impl ReportCap {
    /// A cap of `per_minute` reports (at least 1).
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            recent: VecDeque::new(),
            warned_at: None,
        }
    }

    /// Whether a report may be made at `now`.
    pub fn has_room(&mut self, now: Millis) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|at| now.saturating_sub(*at) >= CAP_SPAN_MS)
        {
            self.recent.pop_front();
        }
        self.recent.len() < self.per_minute as usize
    }

    /// Counts a report made at `now`.
    pub fn take(&mut self, now: Millis) {
        self.recent.push_back(now);
    }

    /// Whether to warn that the cap was hit at `now`: once per [`CAP_SPAN_MS`].
    pub fn warn(&mut self, now: Millis) -> bool {
        if self.warned_at.is_some_and(|at| now.saturating_sub(at) < CAP_SPAN_MS) {
            return false;
        }
        self.warned_at = Some(now);
        true
    }
}

/// The addresses never reported: configured nets, and the node's own and its peers'
/// addresses (which change while it runs), with an index of the IPv6 /64s that hold one.
#[derive(Debug, Default)]
struct NeverReport {
    nets: Vec<IpNet>,
    local: HashSet<IpAddr>,
    peers: HashSet<IpAddr>,
    /// The /64 of every IPv6 address in `local` and `peers`.
    v6_groups: HashSet<Ipv6Net>,
}

impl NeverReport {
    fn contains(&self, ip: IpAddr) -> bool {
        self.local.contains(&ip) || self.peers.contains(&ip) || self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether `net` holds or lies in anything never reported.
    fn overlaps(&self, net: Ipv6Net) -> bool {
        let as_net = IpNet::V6(net);
        self.v6_groups.contains(&net) || self.nets.iter().any(|n| n.contains(&as_net) || as_net.contains(n))
    }

    fn reindex(&mut self) {
        self.v6_groups = self
            .local
            .iter()
            .chain(&self.peers)
            .filter_map(|ip| match ip {
                IpAddr::V6(v6) => Some(v6_group(*v6)),
                IpAddr::V4(_) => None,
            })
            .collect();
    }
}

/// The /64 of an IPv6 address.
fn v6_group(ip: Ipv6Addr) -> Ipv6Net {
    Ipv6Net::new(ip, IPV6_GROUP).expect("64 <= 128").trunc()
}

/// The state of detection on one node.
#[derive(Debug)]
pub struct Pipeline {
    rules: Rules,
    windows: Windows<EventKind>,
    /// Group → when it last registered successfully.
    registered: Lru<IpNet, Millis>,
    never: NeverReport,
    cap: ReportCap,
}

impl Pipeline {
    /// A pipeline with these rules, no windows yet and no local or peer addresses.
    pub fn new(rules: Rules) -> Self {
        Self {
            windows: Windows::new(rules.max_windows),
            registered: Lru::new(),
            never: NeverReport {
                nets: rules.never.clone(),
                ..NeverReport::default()
            },
            cap: ReportCap::new(rules.max_reports_per_minute),
            rules,
        }
    }

    /// Sets the node's own addresses (its interfaces change): never reported.
    pub fn set_local(&mut self, addrs: impl IntoIterator<Item = IpAddr>) {
        self.never.local = addrs.into_iter().map(canonical).collect();
        self.never.reindex();
    }

    /// Sets the addresses of the fraudmesh peers the node knows (connected, seeds): never
    /// reported.
    pub fn set_peers(&mut self, addrs: impl IntoIterator<Item = IpAddr>) {
        self.never.peers = addrs.into_iter().map(canonical).collect();
        self.never.reindex();
    }

    /// The rules this pipeline applies.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Whether `ip` is never reported (by itself; its /64 may still be grouped apart).
    pub fn is_never_reported(&self, ip: IpAddr) -> bool {
        self.never.contains(canonical(ip))
    }

    /// Whether reporting `net` would cover a never-reported address (a peer that
    /// connected, or an address that came up, after its events were grouped).
    pub fn covers_never_reported(&self, net: IpNet) -> bool {
        match net {
            IpNet::V6(n) if n.prefix_len() < 128 => {
                self.never.overlaps(n)
                    || self
                        .never
                        .local
                        .iter()
                        .chain(&self.never.peers)
                        .any(|ip| net.contains(ip))
            }
            _ => self.never.contains(net.addr()),
        }
    }

    /// The group an address counts in and is reported as: an IPv4 address itself; an
    /// IPv6 address's /64, or the address itself when that /64 holds a never-reported
    /// address or the IPv4-mapped range (`::/64`).
    pub fn group(&self, ip: IpAddr) -> IpNet {
        match canonical(ip) {
            IpAddr::V6(v6) => {
                let g = v6_group(v6);
                if g.addr().is_unspecified() || self.never.overlaps(g) {
                    IpNet::from(IpAddr::V6(v6))
                } else {
                    IpNet::V6(g)
                }
            }
            v4 => IpNet::from(v4),
        }
    }

    /// Passes one event seen at `now`.
    pub fn observe(
        &mut self,
        kind: EventKind,
        source: IpAddr,
        username: Option<&str>,
        proof: Proof,
        now: Millis,
    ) -> Disposition {
        if let Proof::None { reason } = proof {
            return Disposition::Unproven(reason);
        }
        let source = canonical(source);
        let group = self.group(source);
        if kind == EventKind::Registered {
            if !self.registered.contains(&group) && self.registered.len() >= MAX_REGISTERED {
                self.registered.pop_oldest();
            }
            *self.registered.touch(group, || now) = now;
            return Disposition::Registered;
        }
        if self.never.contains(source) {
            return Disposition::NeverReport;
        }
        if let Some(at) = self.registered.get(&group) {
            if now.saturating_sub(*at) < self.rules.registered_grace_ms {
                return Disposition::RecentlyRegistered;
            }
        }
        let Some(t) = self.rules.thresholds.get(&kind).copied() else {
            return Disposition::Ignored;
        };
        let may_report = self.cap.has_room(now);
        match self.windows.event(group, kind, username, t, now, may_report) {
            Tick::Counted | Tick::Quiet => Disposition::Counted,
            Tick::Detected(d) => {
                self.cap.take(now);
                Disposition::Detected(d)
            }
            Tick::Held => Disposition::Capped {
                warn: self.cap.warn(now),
            },
        }
    }

    /// Forgets registrations older than the grace time and idle windows. Call now and
    /// then.
    pub fn prune(&mut self, now: Millis) {
        let grace = self.rules.registered_grace_ms;
        let expired: Vec<IpNet> = self
            .registered
            .oldest_first()
            .take_while(|(_, at)| now.saturating_sub(**at) >= grace)
            .map(|(g, _)| *g)
            .collect();
        for g in expired {
            self.registered.remove(&g);
        }
        let longest = self.rules.thresholds.values().map(|t| t.window_ms).max().unwrap_or(0);
        self.windows.prune(now.saturating_sub(longest));
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROVEN: Proof = Proof::Handshake;

    fn rules() -> Rules {
        Rules {
            thresholds: Rules::default_thresholds(),
            never: vec!["192.0.2.0/24".parse().unwrap()],
            registered_grace_ms: 30 * 60_000,
            max_windows: 1000,
            max_reports_per_minute: 60,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn trunks_and_recently_registered_phones_are_never_reported() {
        let mut p = Pipeline::new(rules());
        for i in 0..20 {
            assert_eq!(
                p.observe(EventKind::AuthFailure, ip("192.0.2.9"), None, PROVEN, i),
                Disposition::NeverReport
            );
        }
        let phone = ip("198.51.100.30");
        assert_eq!(
            p.observe(EventKind::Registered, phone, Some("1001"), Proof::NonceEcho, 0),
            Disposition::Registered
        );
        for i in 0..20 {
            assert_eq!(
                p.observe(EventKind::AuthFailure, phone, Some("1001"), PROVEN, 1000 + i),
                Disposition::RecentlyRegistered
            );
        }
        // After the grace time the phone counts like anyone else.
        let later = 31 * 60_000;
        p.prune(later);
        for i in 0..4 {
            assert_eq!(
                p.observe(EventKind::AuthFailure, phone, None, PROVEN, later + i),
                Disposition::Counted
            );
        }
        assert!(matches!(
            p.observe(EventKind::AuthFailure, phone, None, PROVEN, later + 5),
            Disposition::Detected(_)
        ));
        p.set_local([ip("203.0.113.200")]);
        p.set_peers([ip("198.51.100.200")]);
        for own in ["203.0.113.200", "198.51.100.200", "::ffff:192.0.2.77"] {
            // The mapped form of a never-reported address is never reported either.
            assert_eq!(
                p.observe(EventKind::Scanner, ip(own), None, PROVEN, 0),
                Disposition::NeverReport,
                "{own}"
            );
        }
    }

    #[test]
    fn unproven_events_are_counted_by_reason_and_leave_no_state() {
        let mut p = Pipeline::new(rules());
        let forged = Proof::None { reason: "udp" };
        for i in 0..100_000u32 {
            let src = IpAddr::from((0xCB00_7100u32 + i).to_be_bytes());
            assert_eq!(
                p.observe(EventKind::Scanner, src, None, forged, u64::from(i)),
                Disposition::Unproven("udp")
            );
        }
        assert!(p.windows.is_empty());
        // An unproven registration protects nobody.
        assert_eq!(
            p.observe(EventKind::Registered, ip("203.0.113.1"), None, forged, 0),
            Disposition::Unproven("udp")
        );
        assert!(matches!(
            p.observe(EventKind::Scanner, ip("203.0.113.1"), None, PROVEN, 1),
            Disposition::Detected(_)
        ));
    }

    #[test]
    fn ipv6_sources_count_and_are_reported_by_their_64() {
        let mut p = Pipeline::new(rules());
        // Five addresses of one /64, one failure each: one detection of the /64.
        for i in 1..5u16 {
            let src = IpAddr::from([0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, i]);
            assert_eq!(
                p.observe(EventKind::AuthFailure, src, None, PROVEN, u64::from(i)),
                Disposition::Counted
            );
        }
        let Disposition::Detected(d) = p.observe(EventKind::AuthFailure, ip("2001:db8:bad::ffff"), None, PROVEN, 9)
        else {
            panic!("the /64 was not detected");
        };
        assert_eq!((d.source, d.count), (net("2001:db8:bad::/64"), 5));
        // Another /64 is another source; IPv4 stays per address.
        assert_eq!(p.group(ip("2001:db8:bad:1::1")), net("2001:db8:bad:1::/64"));
        assert_eq!(p.group(ip("203.0.113.7")), net("203.0.113.7/32"));
        assert_eq!(p.group(ip("::ffff:203.0.113.7")), net("203.0.113.7/32"));
        // A /64 that holds a peer, an own or a never-reported address is counted (and
        // reported) per address, so reporting it never covers them.
        p.set_peers([ip("2001:db8:1::10")]);
        p.set_local([ip("2001:db8:2::10")]);
        assert_eq!(p.group(ip("2001:db8:1::11")), net("2001:db8:1::11/128"));
        assert_eq!(p.group(ip("2001:db8:2::11")), net("2001:db8:2::11/128"));
        // A /64 formed before a peer in it was known is not reported.
        assert!(p.covers_never_reported(net("2001:db8:1::/64")));
        assert!(!p.covers_never_reported(net("2001:db8:bad::/64")));
        assert!(p.covers_never_reported(net("192.0.2.1/32")) && !p.covers_never_reported(net("203.0.113.1/32")));
        let mut r = rules();
        r.never.push(net("2001:db8:3::5/128"));
        r.never.push(net("2001:db8::/48"));
        let p = Pipeline::new(r);
        assert_eq!(p.group(ip("2001:db8:3::6")), net("2001:db8:3::6/128"));
        assert_eq!(p.group(ip("2001:db8:0:1::6")), net("2001:db8:0:1::6/128"));
        assert_eq!(p.group(ip("2001:db8:4::6")), net("2001:db8:4::/64"));
        // ::/64 holds the IPv4-mapped range: never a group.
        assert_eq!(p.group(ip("::1:2:3:4")), net("::1:2:3:4/128"));
    }

    #[test]
    fn reports_are_capped_per_minute_and_held_crossings_report_later() {
        let mut r = rules();
        r.max_reports_per_minute = 3;
        let mut p = Pipeline::new(r);
        let scanner = |i: u8| IpAddr::from([203, 0, 113, i]);
        for i in 0..3 {
            assert!(matches!(
                p.observe(EventKind::Scanner, scanner(i), None, PROVEN, 1_000),
                Disposition::Detected(_)
            ));
        }
        // The fourth and fifth in the same minute are held; one warning.
        assert_eq!(
            p.observe(EventKind::Scanner, scanner(3), None, PROVEN, 2_000),
            Disposition::Capped { warn: true }
        );
        assert_eq!(
            p.observe(EventKind::Scanner, scanner(4), None, PROVEN, 30_000),
            Disposition::Capped { warn: false }
        );
        // A minute after the first reports there is room again: the held scanner is
        // reported at its next event.
        assert!(matches!(
            p.observe(EventKind::Scanner, scanner(3), None, PROVEN, 61_000),
            Disposition::Detected(_)
        ));
        let mut cap = ReportCap::new(1);
        assert!(cap.has_room(0));
        cap.take(0);
        assert!(!cap.has_room(59_999) && cap.has_room(60_000));
        assert!(cap.warn(0) && !cap.warn(59_999) && cap.warn(60_000));
    }

    #[test]
    fn a_scanner_is_detected_at_once_and_unconfigured_kinds_are_ignored() {
        let mut r = rules();
        r.thresholds.remove(&EventKind::AclRejected);
        let mut p = Pipeline::new(r);
        let Disposition::Detected(d) = p.observe(EventKind::Scanner, ip("203.0.113.1"), None, PROVEN, 5) else {
            panic!("scanner not detected");
        };
        assert_eq!((d.count, d.kind), (1, EventKind::Scanner));
        assert_eq!(
            p.observe(EventKind::AclRejected, ip("203.0.113.1"), None, PROVEN, 5),
            Disposition::Ignored
        );
    }
}
