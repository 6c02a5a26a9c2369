//! From events to detections: the never-report rules, then the thresholds.
//!
//! Every event (a log line's, or a decoy listener's hit) passes here with the time it was
//! seen. A source is never reported when it is on the never-report list (allowlist, the
//! node's own addresses, seeds, trunks) or registered successfully within the last
//! `registered_grace` — a phone whose password was just changed keeps failing for a
//! while and must not be turned into an attacker. Otherwise the event counts in its
//! (source, kind) window and may cross the kind's threshold.

use super::logs::EventKind;
use super::window::{Detection, Threshold, Windows};
use crate::Millis;
use ipnet::IpNet;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// Most recently registered sources remembered.
pub const MAX_REGISTERED: usize = 100_000;

/// The rules of a detection pipeline: thresholds per event kind, never-report
/// addresses, registration grace and the window bound.
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
}

/// What the pipeline did with one log event: reported, counted, or passed over and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// It crossed a threshold: report the source.
    Detected(Detection<EventKind>),
    /// Counted, below the threshold (or in the cooldown after a detection).
    Counted,
    /// The source is on the never-report list.
    NeverReport,
    /// The source registered successfully within the grace time.
    RecentlyRegistered,
    /// A successful registration, remembered.
    Registered,
    /// No threshold is configured for this kind.
    Ignored,
}

/// The state of detection on one node.
#[derive(Debug)]
pub struct Pipeline {
    rules: Rules,
    windows: Windows<EventKind>,
    registered: HashMap<IpAddr, Millis>,
    local: HashSet<IpAddr>,
}

impl Pipeline {
    /// A pipeline with these rules, no windows yet and no local addresses.
    pub fn new(rules: Rules) -> Self {
        Self {
            windows: Windows::new(rules.max_windows),
            rules,
            registered: HashMap::new(),
            local: HashSet::new(),
        }
    }

    /// Sets the node's own addresses (its interfaces change): never reported.
    pub fn set_local(&mut self, addrs: impl IntoIterator<Item = IpAddr>) {
        self.local = addrs.into_iter().map(canonical).collect();
    }

    /// The rules this pipeline applies.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Passes one event seen at `now`.
    pub fn observe(&mut self, kind: EventKind, source: IpAddr, username: Option<&str>, now: Millis) -> Disposition {
        let source = canonical(source);
        if kind == EventKind::Registered {
            if self.registered.len() >= MAX_REGISTERED && !self.registered.contains_key(&source) {
                self.prune(now);
                if self.registered.len() >= MAX_REGISTERED {
                    return Disposition::Registered;
                }
            }
            self.registered.insert(source, now);
            return Disposition::Registered;
        }
        if self.local.contains(&source) || self.rules.never.iter().any(|n| n.contains(&source)) {
            return Disposition::NeverReport;
        }
        if let Some(at) = self.registered.get(&source) {
            if now.saturating_sub(*at) < self.rules.registered_grace_ms {
                return Disposition::RecentlyRegistered;
            }
        }
        let Some(t) = self.rules.thresholds.get(&kind).copied() else {
            return Disposition::Ignored;
        };
        match self.windows.event(source, kind, username, t, now) {
            Some(d) => Disposition::Detected(d),
            None => Disposition::Counted,
        }
    }

    /// Forgets registrations older than the grace time and idle windows. Call now and
    /// then.
    pub fn prune(&mut self, now: Millis) {
        let grace = self.rules.registered_grace_ms;
        self.registered.retain(|_, at| now.saturating_sub(*at) < grace);
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

    fn rules() -> Rules {
        Rules {
            thresholds: Rules::default_thresholds(),
            never: vec!["192.0.2.0/24".parse().unwrap()],
            registered_grace_ms: 30 * 60_000,
            max_windows: 1000,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn trunks_and_recently_registered_phones_are_never_reported() {
        let mut p = Pipeline::new(rules());
        for i in 0..20 {
            assert_eq!(
                p.observe(EventKind::AuthFailure, ip("192.0.2.9"), None, i),
                Disposition::NeverReport
            );
        }
        let phone = ip("198.51.100.30");
        assert_eq!(
            p.observe(EventKind::Registered, phone, Some("1001"), 0),
            Disposition::Registered
        );
        for i in 0..20 {
            assert_eq!(
                p.observe(EventKind::AuthFailure, phone, Some("1001"), 1000 + i),
                Disposition::RecentlyRegistered
            );
        }
        // After the grace time the phone counts like anyone else.
        let later = 31 * 60_000;
        p.prune(later);
        for i in 0..4 {
            assert_eq!(
                p.observe(EventKind::AuthFailure, phone, None, later + i),
                Disposition::Counted
            );
        }
        assert!(matches!(
            p.observe(EventKind::AuthFailure, phone, None, later + 5),
            Disposition::Detected(_)
        ));
        p.set_local([ip("203.0.113.200")]);
        assert_eq!(
            p.observe(EventKind::Scanner, ip("203.0.113.200"), None, 0),
            Disposition::NeverReport
        );
        // The mapped form of a never-reported address is never reported either.
        assert_eq!(
            p.observe(EventKind::Scanner, ip("::ffff:192.0.2.77"), None, 0),
            Disposition::NeverReport
        );
    }

    #[test]
    fn a_scanner_is_detected_at_once_and_unconfigured_kinds_are_ignored() {
        let mut r = rules();
        r.thresholds.remove(&EventKind::AclRejected);
        let mut p = Pipeline::new(r);
        let Disposition::Detected(d) = p.observe(EventKind::Scanner, ip("203.0.113.1"), None, 5) else {
            panic!("scanner not detected");
        };
        assert_eq!((d.count, d.kind), (1, EventKind::Scanner));
        assert_eq!(
            p.observe(EventKind::AclRejected, ip("203.0.113.1"), None, 5),
            Disposition::Ignored
        );
    }
}
