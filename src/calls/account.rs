//! One account's calling: limits and the state they are checked against — calls started
//! in sliding windows (an hour, a day), calls in progress, international calls and minutes
//! in the last day, and the lock an operator must lift after a breach.
//!
//! # Bounded, and changed only at the ends
//!
//! An account holds at most [`MAX_HISTORY`] call starts, [`MAX_ENDED`] ended calls and
//! [`MAX_ACTIVE`] calls in progress, whatever the limits (none by default) and however
//! busy it is. The counts stay exact for every limit up to [`MAX_COUNT_LIMIT`] (the node's
//! config refuses more; [`CallLimits::check`]): with `international_per_day` or
//! `minutes_per_day` set and no `calls_per_day`, an implicit `calls_per_day` of
//! [`MAX_HISTORY`] keeps the day's starts (and so its ends) within the bounds, and
//! otherwise what falls off the front is older than any window a limit looks at.
//!
//! Every change is at an end of a queue, so storage can mirror an account with a constant
//! number of writes per call, without comparing whole accounts: [`Account::start`] appends
//! to `started` (and inserts the call into `active`); [`Account::end`] moves the call from
//! `active` to `ended` with end `now`; [`Account::expire`] and the bounds drop entries from
//! the fronts of `started` and `ended`, and end calls in progress for longer than
//! `max_call` at `started + max_call` (inserted in end order, possibly before later ends).

use crate::Millis;
use std::collections::{BTreeMap, VecDeque};

/// An hour, ms.
pub const HOUR: Millis = 3_600_000;
/// A day, ms.
pub const DAY: Millis = 24 * HOUR;
/// Most calls in progress tracked per account (a PBX that never says a call ended must
/// not grow this without bound).
pub const MAX_ACTIVE: usize = 10_000;
/// Most call starts an account keeps (`Account::started`); beyond, the oldest is dropped.
pub const MAX_HISTORY: usize = 100_000;
/// Most ended calls an account keeps (`Account::ended`): a day's starts, plus the calls in
/// progress when the day began; beyond, the oldest is dropped.
pub const MAX_ENDED: usize = MAX_HISTORY + MAX_ACTIVE;
/// The highest `calls_per_hour`, `calls_per_day` and `international_per_day` counted
/// exactly within [`MAX_HISTORY`] (the node's config refuses more).
pub const MAX_COUNT_LIMIT: u32 = MAX_HISTORY as u32;

/// A limit above what an account can count exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{name} = {value} is above the most an account counts exactly ({max})")]
pub struct LimitTooHigh {
    /// The limit's name (`calls_per_day`, ...).
    pub name: &'static str,
    /// Its value.
    pub value: u32,
    /// The highest allowed.
    pub max: u32,
}

/// CallLimits of one account; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallLimits {
    /// Calls started in any hour.
    pub calls_per_hour: Option<u32>,
    /// Calls started in any 24 hours.
    pub calls_per_day: Option<u32>,
    /// Calls in progress at once.
    pub concurrent: Option<u32>,
    /// International calls started in any 24 hours.
    pub international_per_day: Option<u32>,
    /// Minutes of calls in any 24 hours (ended calls plus those in progress).
    pub minutes_per_day: Option<u32>,
}

impl CallLimits {
    /// Refuses limits an account cannot count exactly: `calls_per_hour`, `calls_per_day`,
    /// `international_per_day` above [`MAX_COUNT_LIMIT`], `concurrent` above [`MAX_ACTIVE`].
    pub fn check(&self) -> Result<(), LimitTooHigh> {
        let max_active = MAX_ACTIVE as u32;
        for (name, value, max) in [
            ("calls_per_hour", self.calls_per_hour, MAX_COUNT_LIMIT),
            ("calls_per_day", self.calls_per_day, MAX_COUNT_LIMIT),
            ("international_per_day", self.international_per_day, MAX_COUNT_LIMIT),
            ("concurrent", self.concurrent, max_active),
        ] {
            if let Some(value) = value.filter(|v| *v > max) {
                return Err(LimitTooHigh { name, value, max });
            }
        }
        Ok(())
    }

    /// `calls_per_day` as enforced: [`MAX_HISTORY`] when it is not set but
    /// `international_per_day` or `minutes_per_day` is (those count the day's calls, which
    /// must then fit in the history).
    pub fn effective_calls_per_day(&self) -> Option<u32> {
        let needs_day = self.international_per_day.is_some() || self.minutes_per_day.is_some();
        self.calls_per_day.or_else(|| needs_day.then_some(MAX_COUNT_LIMIT))
    }
}

/// Which limit a call would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    /// [`CallLimits::calls_per_hour`].
    CallsPerHour(u32),
    /// [`CallLimits::calls_per_day`].
    CallsPerDay(u32),
    /// [`CallLimits::concurrent`].
    Concurrent(u32),
    /// [`CallLimits::international_per_day`].
    InternationalPerDay(u32),
    /// [`CallLimits::minutes_per_day`].
    MinutesPerDay(u32),
}

impl Breach {
    /// The stable id of the breached limit's rule (`limit-…`), for logs and metrics.
    pub fn rule(self) -> &'static str {
        match self {
            Self::CallsPerHour(_) => "limit-calls-per-hour",
            Self::CallsPerDay(_) => "limit-calls-per-day",
            Self::Concurrent(_) => "limit-concurrent",
            Self::InternationalPerDay(_) => "limit-international-per-day",
            Self::MinutesPerDay(_) => "limit-minutes-per-day",
        }
    }

    /// A sentence for people naming the limit and its value.
    pub fn reason(self) -> String {
        match self {
            Self::CallsPerHour(n) => format!("more than {n} calls in an hour"),
            Self::CallsPerDay(n) => format!("more than {n} calls in 24 hours"),
            Self::Concurrent(n) => format!("more than {n} calls at once"),
            Self::InternationalPerDay(n) => format!("more than {n} international calls in 24 hours"),
            Self::MinutesPerDay(n) => format!("more than {n} minutes of calls in 24 hours"),
        }
    }
}

/// What an account used: the figures its limits are checked against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Calls started in the last hour.
    pub calls_last_hour: u64,
    /// Calls started in the last 24 hours.
    pub calls_last_day: u64,
    /// International calls started in the last 24 hours.
    pub international_last_day: u64,
    /// Calls in progress now (started, not yet ended or expired).
    pub active: u64,
    /// Time on calls in the last 24 hours (ended ones plus those in progress), ms.
    pub ms_last_day: Millis,
}

/// A call in progress, as the account's state keeps it under its call id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Active {
    /// When the call started, ms since the epoch.
    pub started: Millis,
    /// Whether the dialled number is outside the home country.
    pub international: bool,
}

/// A lock on an account: every call is denied until an operator unlocks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// When the account was locked, ms since the epoch.
    pub since: Millis,
    /// Why it was locked, for people (the breached limit).
    pub reason: String,
}

/// One account's calling state: recent call starts, calls in progress, recent ended
/// calls and a lock, which the [`CallLimits`] are checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    /// Start times of calls in the last day, and whether each was international; oldest
    /// first, at most [`MAX_HISTORY`].
    pub started: VecDeque<(Millis, bool)>,
    /// Calls in progress by call id.
    pub active: BTreeMap<String, Active>,
    /// Calls ended in the last day: (end, duration ms), in end order, at most
    /// [`MAX_ENDED`].
    pub ended: VecDeque<(Millis, Millis)>,
    /// Set after a breach when accounts lock; cleared by an operator.
    pub lock: Option<Lock>,
}

impl Account {
    /// Forgets what is older than a day, and ends calls in progress for longer than
    /// `max_call_ms` (their end was never reported) as if they ended then.
    pub fn expire(&mut self, now: Millis, max_call_ms: Millis) {
        let day_ago = now.saturating_sub(DAY);
        while self.started.front().is_some_and(|(t, _)| *t < day_ago) {
            self.started.pop_front();
        }
        while self.ended.front().is_some_and(|(t, _)| *t < day_ago) {
            self.ended.pop_front();
        }
        let stale: Vec<String> = self
            .active
            .iter()
            .filter(|(_, a)| now.saturating_sub(a.started) > max_call_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(a) = self.active.remove(&id) {
                self.push_ended(a.started.saturating_add(max_call_ms), max_call_ms);
            }
        }
    }

    fn push_ended(&mut self, end: Millis, duration: Millis) {
        // Keep the queue ordered by end time.
        let at = self.ended.partition_point(|(t, _)| *t <= end);
        self.ended.insert(at, (end, duration));
        while self.ended.len() > MAX_ENDED {
            self.ended.pop_front();
        }
    }

    /// What the account used in the windows ending at `now`.
    pub fn usage(&self, now: Millis) -> Usage {
        let hour_ago = now.saturating_sub(HOUR);
        let day_ago = now.saturating_sub(DAY);
        let mut u = Usage {
            active: self.active.len() as u64,
            ..Usage::default()
        };
        for (t, international) in self.started.iter().filter(|(t, _)| *t >= day_ago) {
            u.calls_last_day += 1;
            u.calls_last_hour += u64::from(*t >= hour_ago);
            u.international_last_day += u64::from(*international);
        }
        let ended: Millis = self.ended.iter().filter(|(t, _)| *t >= day_ago).map(|(_, d)| *d).sum();
        let running: Millis = self.active.values().map(|a| now.saturating_sub(a.started)).sum();
        u.ms_last_day = ended.saturating_add(running);
        u
    }

    /// The limit a new call (international or not) at `now` would break, if any.
    pub fn breach(&self, limits: &CallLimits, international: bool, now: Millis) -> Option<Breach> {
        let u = self.usage(now);
        let over = |limit: Option<u32>, used: u64| limit.filter(|n| used >= u64::from(*n));
        if let Some(n) = over(limits.calls_per_hour, u.calls_last_hour) {
            return Some(Breach::CallsPerHour(n));
        }
        if let Some(n) = over(limits.effective_calls_per_day(), u.calls_last_day) {
            return Some(Breach::CallsPerDay(n));
        }
        if let Some(n) = over(limits.concurrent, u.active) {
            return Some(Breach::Concurrent(n));
        }
        if let Some(n) = over(limits.international_per_day, u.international_last_day).filter(|_| international) {
            return Some(Breach::InternationalPerDay(n));
        }
        if let Some(n) = limits
            .minutes_per_day
            .filter(|n| u.ms_last_day >= Millis::from(*n) * 60_000)
        {
            return Some(Breach::MinutesPerDay(n));
        }
        None
    }

    /// Counts a call that was allowed. A call id already in progress is not counted twice.
    /// Past [`MAX_HISTORY`] starts the oldest is dropped; a call id is tracked in `active`
    /// (for its end) unless it is empty or [`MAX_ACTIVE`] calls are in progress.
    pub fn start(&mut self, call_id: &str, international: bool, now: Millis) {
        if self.active.contains_key(call_id) {
            return;
        }
        self.started.push_back((now, international));
        while self.started.len() > MAX_HISTORY {
            self.started.pop_front();
        }
        if !call_id.is_empty() && self.active.len() < MAX_ACTIVE {
            self.active.insert(
                call_id.to_string(),
                Active {
                    started: now,
                    international,
                },
            );
        }
    }

    /// Ends a call; returns whether it was in progress.
    pub fn end(&mut self, call_id: &str, now: Millis) -> bool {
        match self.active.remove(call_id) {
            Some(a) => {
                self.push_ended(now, now.saturating_sub(a.started));
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_slide_with_explicit_times() {
        let l = CallLimits {
            calls_per_hour: Some(3),
            calls_per_day: Some(5),
            ..CallLimits::default()
        };
        let mut a = Account::default();
        for i in 0..3 {
            assert_eq!(a.breach(&l, false, i * 1000), None);
            a.start(&format!("c{i}"), false, i * 1000);
            a.end(&format!("c{i}"), i * 1000 + 10);
        }
        assert_eq!(a.breach(&l, false, 5000), Some(Breach::CallsPerHour(3)));
        // An hour after the first call there is room again…
        assert_eq!(a.breach(&l, false, HOUR + 1000), None);
        a.start("c3", false, HOUR + 1000);
        a.start("c4", false, HOUR + 2000);
        // …but not in the day.
        assert_eq!(a.breach(&l, false, HOUR + 3000), Some(Breach::CallsPerDay(5)));
        a.expire(DAY + 1500, 4 * HOUR);
        assert_eq!(
            a.breach(&l, false, DAY + 1500),
            None,
            "the first calls slid out of the day"
        );
    }

    #[test]
    fn concurrency_follows_ends_and_stale_calls_expire() {
        let l = CallLimits {
            concurrent: Some(2),
            ..CallLimits::default()
        };
        let mut a = Account::default();
        a.start("x", false, 0);
        a.start("x", false, 1); // the same call again is not a second call
        a.start("y", false, 2);
        assert_eq!(a.breach(&l, false, 3), Some(Breach::Concurrent(2)));
        assert!(a.end("x", 4));
        assert!(!a.end("x", 5), "ended twice");
        assert_eq!(a.breach(&l, false, 6), None);
        a.start("z", false, 7);
        // Never ended: after the longest call time they stop counting.
        a.expire(4 * HOUR + 10, 4 * HOUR);
        assert!(a.active.is_empty());
        assert_eq!(a.breach(&l, false, 4 * HOUR + 10), None);
    }

    #[test]
    fn international_calls_and_minutes_per_day() {
        let l = CallLimits {
            international_per_day: Some(2),
            minutes_per_day: Some(10),
            ..CallLimits::default()
        };
        let mut a = Account::default();
        a.start("i1", true, 0);
        a.end("i1", 60_000);
        a.start("i2", true, 100_000);
        a.end("i2", 160_000);
        assert_eq!(a.breach(&l, true, 200_000), Some(Breach::InternationalPerDay(2)));
        assert_eq!(
            a.breach(&l, false, 200_000),
            None,
            "national calls are not international"
        );
        // 2 minutes used; a call running for 8 more reaches 10.
        a.start("n1", false, 200_000);
        assert_eq!(a.breach(&l, false, 200_000 + 7 * 60_000), None);
        assert_eq!(
            a.breach(&l, false, 200_000 + 8 * 60_000),
            Some(Breach::MinutesPerDay(10))
        );
    }

    #[test]
    fn history_is_bounded_and_oldest_entries_go_first() {
        let mut a = Account::default();
        for i in 0..MAX_HISTORY as u64 + 10 {
            a.start("", i % 2 == 0, i);
        }
        assert_eq!(a.started.len(), MAX_HISTORY);
        assert_eq!(a.started.front(), Some(&(10, true)));
        let mut a = Account::default();
        for i in 0..MAX_ENDED as u64 + 5 {
            a.start("c", false, i);
            assert!(a.end("c", i));
        }
        assert_eq!(a.ended.len(), MAX_ENDED);
        assert_eq!(a.ended.front(), Some(&(5, 0)));
        assert!(a.active.is_empty());
    }

    #[test]
    fn day_counts_stay_exact_past_the_history_bound() {
        // Only an international limit: the day's calls are capped at MAX_HISTORY so no
        // international start can fall out of the history.
        let l = CallLimits {
            international_per_day: Some(2),
            ..CallLimits::default()
        };
        assert_eq!(l.effective_calls_per_day(), Some(MAX_COUNT_LIMIT));
        assert_eq!(CallLimits::default().effective_calls_per_day(), None);
        let mut a = Account::default();
        a.start("", true, 0);
        a.start("", true, 1);
        let t = MAX_HISTORY as u64;
        for i in 2..t - 1 {
            a.start("", false, i);
        }
        assert_eq!(a.breach(&l, false, t - 1), None);
        a.start("", false, t - 1);
        assert_eq!(a.breach(&l, false, t), Some(Breach::CallsPerDay(MAX_COUNT_LIMIT)));
        assert_eq!(a.started.len(), MAX_HISTORY, "every start of the day is kept");
        assert_eq!(a.breach(&l, true, t), Some(Breach::CallsPerDay(MAX_COUNT_LIMIT)));
        assert_eq!(a.usage(t).international_last_day, 2);
        // Without limits nothing is denied, and the history stays bounded.
        assert_eq!(a.breach(&CallLimits::default(), true, t), None);
    }

    #[test]
    fn limits_above_what_is_counted_exactly_are_refused() {
        assert_eq!(CallLimits::default().check(), Ok(()));
        let ok = CallLimits {
            calls_per_hour: Some(MAX_COUNT_LIMIT),
            calls_per_day: Some(MAX_COUNT_LIMIT),
            concurrent: Some(MAX_ACTIVE as u32),
            international_per_day: Some(MAX_COUNT_LIMIT),
            minutes_per_day: Some(u32::MAX),
        };
        assert_eq!(ok.check(), Ok(()));
        let e = CallLimits {
            calls_per_day: Some(MAX_COUNT_LIMIT + 1),
            ..ok
        }
        .check()
        .unwrap_err();
        assert_eq!(e.name, "calls_per_day");
        assert!(e.to_string().contains("calls_per_day = 100001"), "{e}");
        let e = CallLimits {
            concurrent: Some(MAX_ACTIVE as u32 + 1),
            ..ok
        }
        .check()
        .unwrap_err();
        assert_eq!(e.name, "concurrent");
    }
}
