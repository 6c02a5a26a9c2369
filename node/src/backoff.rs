//! Exponential backoff between retries of something that failed (an enforcer, a log
//! follower, a dial): each failure doubles the wait up to a ceiling; a success starts
//! over. [`jitter`] spreads the retries of many clients of one server.

use std::time::Duration;

/// A retry delay that doubles on each failure, from `min` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `min`; never waits longer than `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            current: min,
        }
    }

    /// The delay to wait before the next retry; the one after it is twice as long.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = (self.current * 2).min(self.max);
        delay
    }

    /// After a success: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

/// `delay` shortened by up to half: `delay × (0.5 + r/2)` for `r` in [0, 1) (a random
/// number; clamped). Never longer than `delay`, so a ceiling still holds.
pub fn jitter(delay: Duration, r: f64) -> Duration {
    let r = if r.is_finite() { r.clamp(0.0, 1.0) } else { 0.0 };
    delay.mul_f64(0.5 + r / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_ceiling_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(500), ms(3000));
        let waits: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        assert_eq!(waits, [ms(500), ms(1000), ms(2000), ms(3000), ms(3000)]);
        b.reset();
        assert_eq!(b.next_delay(), ms(500));
        assert_eq!(b.next_delay(), ms(1000));
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_delay() {
        let d = Duration::from_secs(8);
        assert_eq!(jitter(d, 0.0), Duration::from_secs(4));
        assert_eq!(jitter(d, 0.5), Duration::from_secs(6));
        assert_eq!(jitter(d, 1.0), d);
        assert_eq!(jitter(d, 7.0), d, "clamped");
        assert_eq!(jitter(d, f64::NAN), Duration::from_secs(4));
    }
}
