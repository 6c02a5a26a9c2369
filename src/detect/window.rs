//! Thresholds: sliding windows per source address and per kind of event, turning a run
//! of failures into one detection (with the count and the usernames tried as evidence).
//!
//! A source is detected for a kind when, within `window`, it caused `count` events of that
//! kind, or tried `distinct_usernames` different usernames. After a detection the source
//! is quiet for that kind until `cooldown` has passed (the sighting it produced lasts far
//! longer). Memory is bounded: at most `max_sources` (source, kind) windows are kept; the
//! least recently active one is dropped first.

use crate::Millis;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

/// Most usernames kept per window (as evidence and for the distinct count).
pub const MAX_USERNAMES: usize = 32;

/// When a kind of event becomes a detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    /// Events within the window that make a detection (1: the first event does).
    pub count: u32,
    /// The sliding window the events are counted in, ms.
    pub window_ms: Millis,
    /// Distinct usernames within the window that make a detection (0: not used).
    pub distinct_usernames: u32,
    /// Quiet time after a detection, ms.
    pub cooldown_ms: Millis,
}

/// One detection: a source crossed a threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection<K> {
    /// The offending address.
    pub source: IpAddr,
    /// The kind of event that crossed its threshold.
    pub kind: K,
    /// Events from the source in the window when it crossed the threshold.
    pub count: u32,
    /// Distinct usernames tried in the window, sorted (at most [`MAX_USERNAMES`]).
    pub usernames: Vec<String>,
    /// The first event in the window.
    pub first_at: Millis,
    /// The event that crossed the threshold.
    pub last_at: Millis,
}

#[derive(Debug, Default)]
struct Window {
    events: VecDeque<(Millis, Option<String>)>,
    quiet_until: Millis,
    last_seen: Millis,
}

/// Sliding windows for every (source, kind).
#[derive(Debug)]
pub struct Windows<K> {
    windows: HashMap<(IpAddr, K), Window>,
    max_sources: usize,
}

impl<K: Copy + Eq + std::hash::Hash> Windows<K> {
    /// Empty windows, keeping at most `max_sources` (at least 1).
    pub fn new(max_sources: usize) -> Self {
        Self {
            windows: HashMap::new(),
            max_sources: max_sources.max(1),
        }
    }

    /// How many (source, kind) windows are held.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no window is held.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Counts one event of `kind` from `source` at `now` (events must come in time
    /// order per source; an older one counts as `now` of the newest). Returns the
    /// detection when this event crosses `t`.
    pub fn event(
        &mut self,
        source: IpAddr,
        kind: K,
        username: Option<&str>,
        t: Threshold,
        now: Millis,
    ) -> Option<Detection<K>> {
        if !self.windows.contains_key(&(source, kind)) && self.windows.len() >= self.max_sources {
            self.evict();
        }
        let w = self.windows.entry((source, kind)).or_default();
        let now = now.max(w.last_seen);
        w.last_seen = now;
        let from = now.saturating_sub(t.window_ms);
        while w.events.front().is_some_and(|(at, _)| *at < from) {
            w.events.pop_front();
        }
        if w.events.len() >= MAX_USERNAMES * 8 {
            w.events.pop_front();
        }
        w.events
            .push_back((now, username.map(|u| u.chars().take(64).collect())));
        if now < w.quiet_until {
            return None;
        }
        let names: BTreeSet<&str> = w.events.iter().filter_map(|(_, u)| u.as_deref()).collect();
        let count = w.events.len() as u32;
        let by_count = count >= t.count.max(1);
        let by_names = t.distinct_usernames > 0 && names.len() as u32 >= t.distinct_usernames;
        if !(by_count || by_names) {
            return None;
        }
        let detection = Detection {
            source,
            kind,
            count,
            usernames: names.iter().take(MAX_USERNAMES).map(|s| s.to_string()).collect(),
            first_at: w.events.front().map_or(now, |(at, _)| *at),
            last_at: now,
        };
        w.quiet_until = now.saturating_add(t.cooldown_ms);
        w.events.clear();
        Some(detection)
    }

    /// Drops windows with no event since `before` (call now and then with
    /// `now - longest window`) whose quiet time is over.
    pub fn prune(&mut self, before: Millis) {
        self.windows
            .retain(|_, w| w.last_seen >= before || w.quiet_until > before);
    }

    fn evict(&mut self) {
        if let Some(key) = self.windows.iter().min_by_key(|(_, w)| w.last_seen).map(|(k, _)| *k) {
            self.windows.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Threshold = Threshold {
        count: 5,
        window_ms: 60_000,
        distinct_usernames: 3,
        cooldown_ms: 600_000,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn five_failures_in_a_minute_make_one_detection() {
        let mut w = Windows::new(100);
        let a = ip("203.0.113.5");
        for i in 0..4 {
            assert_eq!(w.event(a, 1, Some("100"), T, i * 10_000), None);
        }
        let d = w.event(a, 1, Some("100"), T, 40_000).expect("the fifth crosses");
        assert_eq!((d.count, d.first_at, d.last_at), (5, 0, 40_000));
        assert_eq!(d.usernames, vec!["100"]);
        // Quiet during the cooldown, detected again after it.
        for i in 0..10 {
            assert_eq!(w.event(a, 1, None, T, 50_000 + i), None);
        }
        for i in 0..4 {
            assert_eq!(w.event(a, 1, None, T, 700_000 + i), None);
        }
        assert!(w.event(a, 1, None, T, 700_010).is_some());
    }

    #[test]
    fn slow_failures_and_other_sources_or_kinds_do_not_add_up() {
        let mut w = Windows::new(100);
        let a = ip("203.0.113.5");
        for i in 0..20 {
            // One every 20 s: never 5 within 60 s.
            assert_eq!(w.event(a, 1, None, T, i * 20_000), None);
        }
        for i in 0..4 {
            assert_eq!(w.event(ip("203.0.113.6"), 1, None, T, 400_000 + i), None);
            assert_eq!(w.event(ip("203.0.113.6"), 2, None, T, 400_000 + i), None);
        }
    }

    #[test]
    fn trying_many_usernames_is_detected_early() {
        let mut w = Windows::new(100);
        let a = ip("2001:db8::5");
        assert_eq!(w.event(a, 1, Some("100"), T, 0), None);
        assert_eq!(w.event(a, 1, Some("101"), T, 1), None);
        let d = w.event(a, 1, Some("admin"), T, 2).expect("three usernames");
        assert_eq!(d.usernames, vec!["100", "101", "admin"]);
        assert_eq!(d.count, 3);
    }

    #[test]
    fn memory_is_bounded_by_evicting_the_least_recent() {
        let mut w = Windows::new(3);
        for i in 0..10u8 {
            w.event(IpAddr::from([192, 0, 2, i]), 1, None, T, u64::from(i));
        }
        assert_eq!(w.len(), 3);
        w.prune(1_000_000);
        assert!(w.is_empty());
    }
}
