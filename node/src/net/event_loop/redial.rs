//! Redialling seeds and lost peers with exponential backoff and jitter.
//!
//! While the node has fewer than `target_peers`, every seed that is not connected and
//! every gossip peer it lost (without closing the connection itself) is redialled once
//! its wait is over: one second after the loss, then twice as long after each failure
//! up to [`Limits::redial_max`](crate::net::Limits::redial_max), each wait shortened by
//! up to half at random so that the nodes a restarted seed dropped do not all come back
//! in the same instant. A connection that lasted [`STABLE`] starts the peer's waits
//! over; one that ends sooner (a full peer accepted it and pruned it after its grace)
//! counts as a failure, so a peer that keeps pruning this node is retried ever more
//! slowly, not every grace period. A restarted seed is thus back within `redial_max`
//! (plus a handshake) of coming up, where the discovery timer alone took up to its
//! interval and hammered the seed at a fixed rate meanwhile.
//!
//! Lost peers are given up after [`LOST_ATTEMPTS`] redials without a stable connection,
//! dropped once connected for [`STABLE`], and at most [`MAX_LOST`] are kept; seeds are
//! never given up.

use crate::backoff::{jitter, Backoff};
use libp2p::{Multiaddr, PeerId};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The first wait after a loss or a failure.
const MIN_WAIT: Duration = Duration::from_secs(1);
/// A connection that lasted this long was a success: the waits start over.
pub(super) const STABLE: Duration = Duration::from_secs(60);
/// Failed redials after which a lost peer (not a seed) is given up.
pub(super) const LOST_ATTEMPTS: u32 = 8;
/// Most lost peers kept for redialling; beyond it new losses are not redialled.
pub(super) const MAX_LOST: usize = 64;

/// One peer to redial.
#[derive(Debug)]
struct Entry {
    /// A seed's configured address; lost peers are dialled by id (Kademlia knows
    /// their addresses).
    addr: Option<Multiaddr>,
    /// The waits between attempts.
    backoff: Backoff,
    /// Not before this.
    next: Instant,
    /// Attempts since the last stable connection.
    attempts: u32,
    /// Since when it is connected, while it is.
    up_since: Option<Instant>,
}

/// What to dial: a peer, and the seed address to dial it at.
pub(super) type Dial = (PeerId, Option<Multiaddr>);

/// The seeds and lost peers to redial, with their waits.
#[derive(Debug)]
pub(super) struct Redial {
    /// Seeds and lost peers.
    entries: HashMap<PeerId, Entry>,
    /// The longest wait.
    max: Duration,
}

impl Redial {
    /// The seeds, first redialled [`MIN_WAIT`] after `now` (they were dialled at start).
    pub(super) fn new(seeds: &[(PeerId, Multiaddr)], max: Duration, now: Instant) -> Self {
        let mut r = Self {
            entries: HashMap::new(),
            max,
        };
        for (peer, addr) in seeds {
            r.entries.insert(*peer, r.entry(Some(addr.clone()), now));
        }
        r
    }

    fn entry(&self, addr: Option<Multiaddr>, now: Instant) -> Entry {
        Entry {
            addr,
            backoff: Backoff::new(MIN_WAIT, self.max),
            next: now + MIN_WAIT,
            attempts: 0,
            up_since: None,
        }
    }

    /// A peer connected.
    pub(super) fn connected(&mut self, peer: &PeerId, now: Instant) {
        if let Some(e) = self.entries.get_mut(peer) {
            e.up_since.get_or_insert(now);
        }
    }

    /// A seed or a gossip peer was lost without this node closing it: redial it. After
    /// a stable connection, one [`MIN_WAIT`] later and with the waits started over;
    /// after a short one, one (growing) wait later.
    pub(super) fn lost(&mut self, peer: PeerId, now: Instant, rand01: f64) {
        if let Some(e) = self.entries.get_mut(&peer) {
            let stable = e
                .up_since
                .take()
                .is_some_and(|t| now.saturating_duration_since(t) >= STABLE);
            if stable {
                e.backoff.reset();
                e.attempts = 0;
                e.next = now + MIN_WAIT;
            } else {
                e.next = now + jitter(e.backoff.next_delay(), rand01);
            }
        } else if self.entries.len() < MAX_LOST {
            let e = self.entry(None, now);
            self.entries.insert(peer, e);
        }
    }

    /// Whether `peer` is redialled (a seed or a lost peer not given up).
    #[cfg(test)]
    fn has(&self, peer: &PeerId) -> bool {
        self.entries.contains_key(peer)
    }

    /// The peers due at `now` that `connected` says are not connected, each with its
    /// next try set one jittered wait later (`rand01` gives a number in [0, 1) for
    /// each). Lost peers whose attempts are spent are dropped.
    pub(super) fn due(
        &mut self,
        now: Instant,
        connected: impl Fn(&PeerId) -> bool,
        mut rand01: impl FnMut() -> f64,
    ) -> Vec<Dial> {
        let mut out = Vec::new();
        self.entries.retain(|peer, e| {
            if connected(peer) {
                // A seed is kept; a lost peer until its connection proved stable.
                return e.addr.is_some() || e.up_since.is_none_or(|t| now.saturating_duration_since(t) < STABLE);
            }
            if e.next > now {
                return true;
            }
            if e.addr.is_none() && e.attempts >= LOST_ATTEMPTS {
                return false;
            }
            e.attempts += 1;
            e.next = now + jitter(e.backoff.next_delay(), rand01());
            out.push((*peer, e.addr.clone()));
            true
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn seed() -> (PeerId, Multiaddr) {
        (PeerId::random(), "/ip4/192.0.2.1/tcp/7710".parse().unwrap())
    }

    /// Runs `due` every 100 ms from `t0` for `secs`, never connected, with jitter
    /// `r`; the times (s after t0) of the dials.
    fn dial_times(r: &mut Redial, t0: Instant, secs: u64, jit: f64) -> Vec<f64> {
        let mut times = Vec::new();
        for ms in (0..secs * 1000).step_by(100) {
            let now = t0 + Duration::from_millis(ms);
            if !r.due(now, |_| false, || jit).is_empty() {
                times.push(ms as f64 / 1000.0);
            }
        }
        times
    }

    #[test]
    fn a_seed_is_redialled_with_doubling_waits_up_to_the_cap_and_never_given_up() {
        let t0 = Instant::now();
        let s = seed();
        let mut r = Redial::new(std::slice::from_ref(&s), 8 * S, t0);
        // Jitter 0.999…: the full wait. 1, then +1, +2, +4, +8, +8, …
        let times = dial_times(&mut r, t0, 60, 0.9999);
        assert_eq!(&times[..6], &[1.0, 2.0, 4.0, 8.0, 16.0, 24.0]);
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| *g <= 8.0 + 0.1), "{gaps:?}");
        assert!(r.has(&s.0));
        let d = r.due(t0 + 3600 * S, |_| false, || 0.5);
        assert_eq!(d, vec![(s.0, Some(s.1))], "dialled at its address");
    }

    #[test]
    fn jitter_shortens_waits_by_up_to_half() {
        let t0 = Instant::now();
        let mut r = Redial::new(&[seed()], 8 * S, t0);
        let times = dial_times(&mut r, t0, 60, 0.0);
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        // Half of 1, 2, 4, 8, 8, …
        assert_eq!(&gaps[..5], &[0.5, 1.0, 2.0, 4.0, 4.0]);
    }

    #[test]
    fn a_connection_starts_the_waits_over() {
        let t0 = Instant::now();
        let s = seed();
        let mut r = Redial::new(std::slice::from_ref(&s), 30 * S, t0);
        let times = dial_times(&mut r, t0, 40, 0.9999);
        assert!(times.len() >= 5);
        r.connected(&s.0, t0 + 40 * S);
        // Connected: nothing to dial.
        assert!(r.due(t0 + 100 * S, |_| true, || 0.5).is_empty());
        // Lost after a stable connection: one second, then two.
        let t1 = t0 + 200 * S;
        r.lost(s.0, t1, 0.9999);
        let ms = Duration::from_millis;
        assert!(r.due(t1, |_| false, || 0.9999).is_empty());
        assert_eq!(r.due(t1 + S, |_| false, || 0.9999).len(), 1);
        assert!(r.due(t1 + ms(1500), |_| false, || 0.9999).is_empty());
        assert_eq!(r.due(t1 + 2 * S, |_| false, || 0.9999).len(), 1);
        assert!(r.due(t1 + ms(3500), |_| false, || 0.9999).is_empty());
        assert_eq!(r.due(t1 + 4 * S, |_| false, || 0.9999).len(), 1);
    }

    #[test]
    fn a_peer_that_keeps_pruning_us_is_retried_ever_more_slowly_and_given_up() {
        let t0 = Instant::now();
        let mut r = Redial::new(&[], 30 * S, t0);
        let p = PeerId::random();
        r.lost(p, t0, 0.9999);
        // Each redial connects and is pruned 10 s later (a full peer's grace).
        let mut now = t0;
        let mut gaps = Vec::new();
        let mut last = t0;
        for _ in 0..2000 {
            now += Duration::from_millis(100);
            if !r.due(now, |_| false, || 0.9999).is_empty() {
                gaps.push((now - last).as_secs());
                last = now;
                r.connected(&p, now);
                now += 10 * S;
                r.lost(p, now, 0.9999);
            }
        }
        // Waits keep growing after each short connection (the 10 s connection
        // included): never a redial every grace period.
        assert!(gaps.windows(2).all(|w| w[1] >= w[0]), "{gaps:?}");
        assert_eq!(gaps.len(), LOST_ATTEMPTS as usize, "given up: {gaps:?}");
        assert!(!r.has(&p));
    }

    #[test]
    fn lost_peers_are_given_up_and_bounded() {
        let t0 = Instant::now();
        let mut r = Redial::new(&[], 2 * S, t0);
        let p = PeerId::random();
        r.lost(p, t0, 0.5);
        let times = dial_times(&mut r, t0, 120, 0.9999);
        assert_eq!(times.len(), LOST_ATTEMPTS as usize);
        assert!(!r.has(&p), "given up");
        for _ in 0..MAX_LOST + 10 {
            r.lost(PeerId::random(), t0, 0.5);
        }
        assert_eq!(r.entries.len(), MAX_LOST);
        // A lost peer that came back is dropped once its connection proved stable: it
        // is redialled only when lost again.
        let q = *r.entries.keys().next().unwrap();
        r.connected(&q, t0);
        r.due(t0 + S, |p| *p == q, || 0.5);
        assert!(r.has(&q), "not yet stable");
        r.due(t0 + STABLE, |p| *p == q, || 0.5);
        assert!(!r.has(&q));
    }
}
