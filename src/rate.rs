//! Token buckets: [`TokenBucket`], the one refill-and-take rule every rate bound of the
//! project uses (sensor answers, sync requests per peer, sightings per stranger), and
//! [`RateLimiter`], buckets keyed by reporter: how many sightings per second a reporter
//! may make this node process. Pure: the caller passes the time.
//!
//! Keys are free (anyone can mint one), so the state is bounded: at most a fixed number
//! of reporters are tracked, and a new one pushes out the reporter touched least recently.
//! A forgotten reporter starts again with a full burst — exactly what a fresh key gets,
//! so forgetting never gives a flood more than minting keys already does, and each step
//! costs O(log n) however many keys a flood brings.

use crate::identity::PublicKey;
use crate::Millis;
use std::collections::{BTreeMap, HashMap};

/// Most reporters tracked at once by default ([`RateLimiter::new`]).
pub const MAX_TRACKED: usize = 100_000;

/// One token bucket: up to `burst` tokens saved, refilled continuously at `per_s`
/// tokens per second. The rate and burst are the caller's (many buckets share them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    last: Millis,
}

impl TokenBucket {
    /// A bucket holding its whole `burst` at `now`.
    pub fn full(burst: f64, now: Millis) -> Self {
        Self {
            tokens: burst,
            last: now,
        }
    }

    /// Refills the bucket to `now` (time never runs backwards for it), then takes `cost`
    /// tokens if there are that many; false (nothing taken) otherwise.
    pub fn take(&mut self, cost: f64, per_s: f64, burst: f64, now: Millis) -> bool {
        let elapsed_s = now.saturating_sub(self.last) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed_s * per_s).min(burst);
        self.last = self.last.max(now);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Gives back `cost` tokens taken for work that was not done, up to `burst`.
    pub fn give_back(&mut self, cost: f64, burst: f64) {
        self.tokens = (self.tokens + cost).min(burst);
    }
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: TokenBucket,
    /// When this bucket was last touched, in `RateLimiter::clock` ticks (its place in the
    /// least-recently-used order).
    touched: u64,
}

/// Per-reporter token buckets: each reporter may make `rate_per_s` sightings per second
/// on average with bursts up to `burst`; the least recently used buckets are forgotten
/// beyond a bound on the reporters tracked.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate_per_s: f64,
    burst: f64,
    max_tracked: usize,
    buckets: HashMap<PublicKey, Bucket>,
    /// `touched → reporter`: the first entry is the least recently used.
    lru: BTreeMap<u64, PublicKey>,
    clock: u64,
}

impl RateLimiter {
    /// `rate_per_s` tokens per second, up to `burst` saved; at most [`MAX_TRACKED`]
    /// reporters tracked.
    pub fn new(rate_per_s: f64, burst: u32) -> Self {
        Self::with_capacity(rate_per_s, burst, MAX_TRACKED)
    }

    /// As [`RateLimiter::new`], tracking at most `max_tracked` reporters (at least one).
    pub fn with_capacity(rate_per_s: f64, burst: u32, max_tracked: usize) -> Self {
        Self {
            rate_per_s: rate_per_s.max(0.0),
            burst: f64::from(burst.max(1)),
            max_tracked: max_tracked.max(1),
            buckets: HashMap::new(),
            lru: BTreeMap::new(),
            clock: 0,
        }
    }

    /// Reporters tracked now (at most the capacity).
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Takes one token for `reporter` at `now`; false when the reporter is over its rate.
    pub fn allow(&mut self, reporter: &PublicKey, now: Millis) -> bool {
        let (rate, burst) = (self.rate_per_s, self.burst);
        self.touch(reporter, now).tokens.take(1.0, rate, burst, now)
    }

    /// Gives back a token taken by [`RateLimiter::allow`] for work that was not done (a
    /// message refused as a whole), up to the burst. Nothing if the reporter was forgotten.
    pub fn refund(&mut self, reporter: &PublicKey) {
        let burst = self.burst;
        if let Some(b) = self.buckets.get_mut(reporter) {
            b.tokens.give_back(1.0, burst);
        }
    }

    /// The reporter's bucket, made the most recently used; a new one (full) when it is not
    /// tracked, pushing out the least recently used at capacity.
    fn touch(&mut self, reporter: &PublicKey, now: Millis) -> &mut Bucket {
        self.clock += 1;
        let clock = self.clock;
        if !self.buckets.contains_key(reporter) && self.buckets.len() >= self.max_tracked {
            if let Some((_, oldest)) = self.lru.pop_first() {
                self.buckets.remove(&oldest);
            }
        }
        let burst = self.burst;
        let bucket = self.buckets.entry(*reporter).or_insert(Bucket {
            tokens: TokenBucket::full(burst, now),
            touched: clock,
        });
        self.lru.remove(&bucket.touched);
        self.lru.insert(clock, *reporter);
        bucket.touched = clock;
        bucket
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn key(i: u32) -> PublicKey {
        let mut secret = [7u8; 32];
        secret[..4].copy_from_slice(&i.to_le_bytes());
        Identity::from_secret(secret).public()
    }

    #[test]
    fn burst_then_rate() {
        let a = key(1);
        let b = key(2);
        let mut r = RateLimiter::new(2.0, 5);
        assert_eq!((0..10).filter(|_| r.allow(&a, 1000)).count(), 5);
        assert!(r.allow(&b, 1000), "buckets are per reporter");
        assert!(!r.allow(&a, 1000));
        assert!(r.allow(&a, 1500), "one token after 0.5 s at 2/s");
        assert!(!r.allow(&a, 1500));
        assert_eq!(
            (0..10).filter(|_| r.allow(&a, 100_000)).count(),
            5,
            "refill caps at the burst"
        );
        r.refund(&a);
        assert!(r.allow(&a, 100_000), "a refunded token can be spent again");
        assert!(!r.allow(&a, 100_000));
    }

    #[test]
    fn fresh_keys_never_grow_the_state_and_the_least_recently_used_goes_first() {
        let mut r = RateLimiter::with_capacity(1.0, 2, 100);
        let busy = key(0);
        assert!(r.allow(&busy, 0));
        assert!(r.allow(&busy, 0));
        assert!(!r.allow(&busy, 0), "busy is drained");
        for i in 1..=1000 {
            assert!(r.allow(&key(i), 0), "a fresh key has its burst");
            // The busy reporter keeps being used, so it is never the one forgotten.
            if i % 50 == 0 {
                assert!(!r.allow(&busy, 0), "busy stays drained: it was not forgotten");
            }
            assert!(r.tracked() <= 100);
        }
        assert_eq!(r.tracked(), 100);
        assert!(r.allow(&key(1), 0), "key 1 was forgotten and starts full again");
    }
}
