//! Thresholds: sliding windows per source group (an IPv4 address or an IPv6 prefix, see
//! the pipeline) and per kind of event, turning a run of failures into one detection
//! (with the count and the usernames tried as evidence).
//!
//! A source is detected for a kind when, within `window`, it caused `count` events of that
//! kind, or tried `distinct_usernames` different usernames. After a detection the source
//! is quiet for that kind until `cooldown` has passed (the sighting it produced lasts far
//! longer). A crossing the caller may not report now (the report cap) is held: the events
//! stay and the next event tries again. Memory is bounded: at most `max_sources`
//! (source, kind) windows are kept, and when a new one needs room the least recently
//! active is dropped — in O(log n), through an index ordered by last activity, never by
//! scanning every window.

use crate::Millis;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::Hash;

/// Most usernames kept per window (as evidence and for the distinct count).
pub const MAX_USERNAMES: usize = 32;
/// Most events kept per window (the oldest go first).
const MAX_EVENTS: usize = MAX_USERNAMES * 8;

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
    /// The offending source: an address (/32, /128) or an IPv6 /64.
    pub source: IpNet,
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

/// What one event did to its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick<K> {
    /// Counted, below the threshold.
    Counted,
    /// Counted during the quiet time after a detection.
    Quiet,
    /// It crossed the threshold: report.
    Detected(Detection<K>),
    /// It crossed the threshold but may not be reported now: the events are kept.
    Held,
}

/// A map that remembers the order its entries were last touched and gives up the least
/// recently touched one in O(log n).
#[derive(Debug)]
pub(crate) struct Lru<K, V> {
    /// Entry → (value, its touch number).
    entries: HashMap<K, (V, u64)>,
    /// Touch number → entry, oldest first.
    order: BTreeMap<u64, K>,
    /// The next touch number.
    next: u64,
}

impl<K: Copy + Eq + Hash, V> Lru<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(v, _)| v)
    }

    pub(crate) fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// The entry of `key`, made the most recent (inserted with `make` if absent).
    pub(crate) fn touch(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let stamp = self.next;
        self.next += 1;
        let entry = self.entries.entry(key).or_insert_with(|| (make(), stamp));
        if entry.1 != stamp {
            self.order.remove(&entry.1);
            entry.1 = stamp;
        }
        self.order.insert(stamp, key);
        &mut entry.0
    }

    /// Removes and returns the least recently touched entry.
    pub(crate) fn pop_oldest(&mut self) -> Option<(K, V)> {
        let (_, key) = self.order.pop_first()?;
        self.entries.remove(&key).map(|(v, _)| (key, v))
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let (v, stamp) = self.entries.remove(key)?;
        self.order.remove(&stamp);
        Some(v)
    }

    /// The entries, least recently touched first.
    pub(crate) fn oldest_first(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.order
            .values()
            .filter_map(|k| self.entries.get(k).map(|(v, _)| (k, v)))
    }
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
    windows: Lru<(IpNet, K), Window>,
    max_sources: usize,
}

impl<K: Copy + Eq + Hash> Windows<K> {
    /// Empty windows, keeping at most `max_sources` (at least 1).
    pub fn new(max_sources: usize) -> Self {
        Self {
            windows: Lru::new(),
            max_sources: max_sources.max(1),
        }
    }

    /// How many (source, kind) windows are held.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no window is held.
    pub fn is_empty(&self) -> bool {
        self.windows.len() == 0
    }

    /// Whether a window for (`source`, `kind`) is held.
    pub fn holds(&self, source: IpNet, kind: K) -> bool {
        self.windows.contains(&(source, kind))
    }

    /// Counts one event of `kind` from `source` at `now` (events must come in time
    /// order per source; an older one counts as `now` of the newest). A crossing is
    /// [`Tick::Detected`] when `may_report`, else [`Tick::Held`].
    pub fn event(
        &mut self,
        source: IpNet,
        kind: K,
        username: Option<&str>,
        t: Threshold,
        now: Millis,
        may_report: bool,
    ) -> Tick<K> {
        if !self.windows.contains(&(source, kind)) && self.windows.len() >= self.max_sources {
            self.windows.pop_oldest();
        }
        let w = self.windows.touch((source, kind), Window::default);
        let now = now.max(w.last_seen);
        w.last_seen = now;
        let from = now.saturating_sub(t.window_ms);
        while w.events.front().is_some_and(|(at, _)| *at < from) {
            w.events.pop_front();
        }
        if w.events.len() >= MAX_EVENTS {
            w.events.pop_front();
        }
        w.events
            .push_back((now, username.map(|u| u.chars().take(64).collect())));
        if now < w.quiet_until {
            return Tick::Quiet;
        }
        let names: BTreeSet<&str> = w.events.iter().filter_map(|(_, u)| u.as_deref()).collect();
        let count = w.events.len() as u32;
        let by_count = count >= t.count.max(1);
        let by_names = t.distinct_usernames > 0 && names.len() as u32 >= t.distinct_usernames;
        if !(by_count || by_names) {
            return Tick::Counted;
        }
        if !may_report {
            return Tick::Held;
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
        Tick::Detected(detection)
    }

    /// Drops windows with no event since `before` (call now and then with
    /// `now - longest window`) whose quiet time is over. Looks at the least recently
    /// active windows only, up to the first one active since `before`.
    pub fn prune(&mut self, before: Millis) {
        let mut idle = Vec::new();
        for (key, w) in self.windows.oldest_first() {
            if w.last_seen >= before {
                break;
            }
            if w.quiet_until <= before {
                idle.push(*key);
            }
        }
        for key in idle {
            self.windows.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    const T: Threshold = Threshold {
        count: 5,
        window_ms: 60_000,
        distinct_usernames: 3,
        cooldown_ms: 600_000,
    };

    fn net(s: &str) -> IpNet {
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .unwrap()
    }

    fn detected<K>(t: Tick<K>) -> Detection<K> {
        match t {
            Tick::Detected(d) => d,
            _ => panic!("not detected"),
        }
    }

    #[test]
    fn five_failures_in_a_minute_make_one_detection() {
        let mut w = Windows::new(100);
        let a = net("203.0.113.5");
        for i in 0..4 {
            assert_eq!(w.event(a, 1, Some("100"), T, i * 10_000, true), Tick::Counted);
        }
        let d = detected(w.event(a, 1, Some("100"), T, 40_000, true));
        assert_eq!((d.source, d.count, d.first_at, d.last_at), (a, 5, 0, 40_000));
        assert_eq!(d.usernames, vec!["100"]);
        // Quiet during the cooldown, detected again after it.
        for i in 0..10 {
            assert_eq!(w.event(a, 1, None, T, 50_000 + i, true), Tick::Quiet);
        }
        for i in 0..4 {
            assert_eq!(w.event(a, 1, None, T, 700_000 + i, true), Tick::Counted);
        }
        assert!(matches!(w.event(a, 1, None, T, 700_010, true), Tick::Detected(_)));
    }

    #[test]
    fn a_held_crossing_keeps_its_events_and_detects_when_allowed() {
        let mut w = Windows::new(100);
        let a = net("203.0.113.5");
        for i in 0..4 {
            w.event(a, 1, None, T, i, true);
        }
        assert_eq!(w.event(a, 1, None, T, 4, false), Tick::Held);
        assert_eq!(w.event(a, 1, None, T, 5, false), Tick::Held);
        let d = detected(w.event(a, 1, None, T, 6, true));
        assert_eq!((d.count, d.first_at), (7, 0));
    }

    #[test]
    fn slow_failures_and_other_sources_or_kinds_do_not_add_up() {
        let mut w = Windows::new(100);
        let a = net("203.0.113.5");
        for i in 0..20 {
            // One every 20 s: never 5 within 60 s.
            assert_eq!(w.event(a, 1, None, T, i * 20_000, true), Tick::Counted);
        }
        for i in 0..4 {
            assert_eq!(
                w.event(net("203.0.113.6"), 1, None, T, 400_000 + i, true),
                Tick::Counted
            );
            assert_eq!(
                w.event(net("203.0.113.6"), 2, None, T, 400_000 + i, true),
                Tick::Counted
            );
        }
    }

    #[test]
    fn trying_many_usernames_is_detected_early() {
        let mut w = Windows::new(100);
        let a = net("2001:db8::/64");
        assert_eq!(w.event(a, 1, Some("100"), T, 0, true), Tick::Counted);
        assert_eq!(w.event(a, 1, Some("101"), T, 1, true), Tick::Counted);
        let d = detected(w.event(a, 1, Some("admin"), T, 2, true));
        assert_eq!(d.usernames, vec!["100", "101", "admin"]);
        assert_eq!(d.count, 3);
    }

    #[test]
    fn the_least_recently_active_window_is_evicted_first() {
        let mut w = Windows::new(3);
        let (a, b, c, d) = (net("192.0.2.1"), net("192.0.2.2"), net("192.0.2.3"), net("192.0.2.4"));
        for (i, s) in [a, b, c].into_iter().enumerate() {
            w.event(s, 1, None, T, i as Millis, true);
        }
        // `a` is active again: `b` is now the least recent and goes when `d` needs room.
        w.event(a, 1, None, T, 10, true);
        w.event(d, 1, None, T, 11, true);
        assert_eq!(w.len(), 3);
        assert!(w.holds(a, 1) && !w.holds(b, 1) && w.holds(c, 1) && w.holds(d, 1));
        // Then `c`, then `a`.
        w.event(net("192.0.2.5"), 1, None, T, 12, true);
        assert!(!w.holds(c, 1) && w.holds(a, 1));
        w.event(net("192.0.2.6"), 1, None, T, 13, true);
        assert!(!w.holds(a, 1) && w.holds(d, 1));
        // An evicted source starts over.
        for i in 0..4 {
            assert_eq!(w.event(a, 1, None, T, 20 + i, true), Tick::Counted);
        }
    }

    #[test]
    fn idle_windows_are_pruned_but_quiet_ones_kept() {
        let mut w = Windows::new(100);
        let t1 = Threshold { count: 1, ..T };
        assert!(matches!(
            w.event(net("192.0.2.1"), 1, None, t1, 0, true),
            Tick::Detected(_)
        ));
        for i in 2..10u8 {
            w.event(
                IpNet::from(IpAddr::from([192, 0, 2, i])),
                1,
                None,
                T,
                u64::from(i),
                true,
            );
        }
        w.event(net("192.0.2.200"), 1, None, T, 100_000, true);
        w.prune(50_000);
        // The detected one is still quiet (its cooldown runs to 600 s); the recent one stays.
        assert_eq!(w.len(), 2);
        assert!(w.holds(net("192.0.2.1"), 1) && w.holds(net("192.0.2.200"), 1));
        w.prune(1_000_000);
        assert!(w.is_empty());
    }
}
