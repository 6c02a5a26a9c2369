//! Token buckets keyed by reporter: how many sightings per second a reporter may make
//! this node process. Pure: the caller passes the time.

use crate::identity::PublicKey;
use crate::Millis;
use std::collections::HashMap;

/// Most reporters tracked at once; beyond it the fullest (idle) buckets are forgotten,
/// which only ever errs towards letting a forgotten reporter start with a full burst.
pub const MAX_TRACKED: usize = 100_000;

/// Per-reporter token buckets: each reporter may make `rate_per_s` sightings per second
/// on average with bursts up to `burst`; at most [`MAX_TRACKED`] reporters are tracked.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate_per_s: f64,
    burst: f64,
    buckets: HashMap<PublicKey, (f64, Millis)>,
}

impl RateLimiter {
    /// `rate_per_s` tokens per second, up to `burst` saved.
    pub fn new(rate_per_s: f64, burst: u32) -> Self {
        Self {
            rate_per_s: rate_per_s.max(0.0),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `reporter` at `now`; false when the reporter is over its rate.
    pub fn allow(&mut self, reporter: &PublicKey, now: Millis) -> bool {
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(reporter) {
            self.forget_idle(now);
        }
        let (rate, burst) = (self.rate_per_s, self.burst);
        let (tokens, last) = self.buckets.entry(*reporter).or_insert((burst, now));
        let elapsed_s = now.saturating_sub(*last) as f64 / 1000.0;
        *tokens = (*tokens + elapsed_s * rate).min(burst);
        *last = now.max(*last);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn forget_idle(&mut self, now: Millis) {
        let (rate, burst) = (self.rate_per_s, self.burst);
        self.buckets.retain(|_, (tokens, last)| {
            let refilled = *tokens + now.saturating_sub(*last) as f64 / 1000.0 * rate;
            refilled < burst
        });
        if self.buckets.len() >= MAX_TRACKED {
            self.buckets.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn burst_then_rate() {
        let a = Identity::from_secret([1; 32]).public();
        let b = Identity::from_secret([2; 32]).public();
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
    }
}
