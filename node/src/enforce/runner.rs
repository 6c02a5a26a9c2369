//! The loop that drives one enforcer from the decision log: a full replace on start,
//! then each change as it happens, a full replace again when the external system lost
//! its state or after any failure, retries with exponential backoff, metrics, and the
//! state that `GET /v1/enforce` and `fraudmesh enforce status` show.

use super::{split, Enforcer, NetBlock};
use crate::backoff::Backoff;
use crate::engine::EngineHandle;
use crate::metrics::{EnforcerLabel, EnforcerResultLabel, Metrics};
use crate::now_ms;
use fraudmesh::decisions::Delta;
use fraudmesh::Millis;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// First retry delay after a failure.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the runner asks whether the system lost its state.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Longest one call into an enforcer may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// What an enforcer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Nothing applied yet.
    Starting,
    /// The last apply succeeded.
    Ok,
    /// The last attempt failed; retrying with backoff.
    Retrying,
}

impl State {
    /// Its name in the API and the CLI (`starting`, `ok`, `retrying`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ok => "ok",
            Self::Retrying => "retrying",
        }
    }
}

/// One enforcer's state, as `fraudmesh enforce status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnforcerStatus {
    /// Its name (`nftables`, `kamailio`, `file:PATH`).
    pub name: String,
    /// What it is doing.
    pub state: State,
    /// Entries it holds (addresses and prefixes).
    pub entries: usize,
    /// When the last successful apply ended, ms since the Unix epoch.
    pub last_apply: Option<Millis>,
    /// How long the last successful apply took, ms.
    pub last_apply_ms: Option<f64>,
    /// Successful applies (diffs and full replaces).
    pub applies: u64,
    /// Full replaces among them.
    pub full_syncs: u64,
    /// Failed attempts.
    pub errors: u64,
    /// The last failure's message (kept after recovery, with its time).
    pub last_error: Option<String>,
    /// When the last failure happened, ms since the Unix epoch.
    pub last_error_at: Option<Millis>,
}

impl EnforcerStatus {
    fn new(name: String) -> Self {
        Self {
            name,
            state: State::Starting,
            entries: 0,
            last_apply: None,
            last_apply_ms: None,
            applies: 0,
            full_syncs: 0,
            errors: 0,
            last_error: None,
            last_error_at: None,
        }
    }
}

/// The running enforcers of a node.
#[derive(Default)]
pub struct Enforcers {
    statuses: Vec<Arc<Mutex<EnforcerStatus>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A shared view of every enforcer's state, for the API.
#[derive(Clone, Default)]
pub struct StatusBoard(Arc<Vec<Arc<Mutex<EnforcerStatus>>>>);

impl StatusBoard {
    /// Every enforcer's state, in config order.
    pub fn snapshot(&self) -> Vec<EnforcerStatus> {
        self.0
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }
}

impl Enforcers {
    /// Starts a runner for `enforcer`.
    pub fn spawn<E: Enforcer>(
        &mut self,
        enforcer: E,
        engine: &EngineHandle,
        metrics: &Arc<Metrics>,
        shutdown: &watch::Receiver<bool>,
    ) {
        let status = Arc::new(Mutex::new(EnforcerStatus::new(enforcer.name())));
        self.statuses.push(status.clone());
        let runner = Runner {
            label: EnforcerLabel {
                enforcer: enforcer.name(),
            },
            enforcer,
            engine: engine.clone(),
            metrics: metrics.clone(),
            status,
            held: HashSet::new(),
        };
        self.tasks.push(tokio::spawn(runner.run(shutdown.clone())));
    }

    /// The state board the API reads.
    pub fn board(&self) -> StatusBoard {
        StatusBoard(Arc::new(self.statuses.clone()))
    }

    /// Waits for every runner to end (after shutdown was signalled). Entries stay in
    /// their systems: they expire on their own, and protection lasts across a restart.
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

struct Runner<E> {
    enforcer: E,
    label: EnforcerLabel,
    engine: EngineHandle,
    metrics: Arc<Metrics>,
    status: Arc<Mutex<EnforcerStatus>>,
    /// What the system holds, as far as this runner applied it.
    held: HashSet<IpNet>,
}

/// Why one attempt failed.
struct Failed(String);

/// Where a runner stands between attempts.
struct Progress {
    /// The decision log position applied last.
    cursor: u64,
    /// Whether the next attempt is a full replace.
    full: bool,
    /// The delay before the next retry after a failure.
    backoff: Backoff,
    /// When a failed attempt is retried (`None`: not failing).
    retry_at: Option<Instant>,
    /// The earliest next apply after a success (the enforcer's `min_interval`).
    not_before: Instant,
    /// When to ask next whether the system lost its state.
    next_check: Instant,
    /// When the oldest change not yet applied was noticed (for the latency histogram).
    noticed: Option<Instant>,
}

impl Progress {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            cursor: 0,
            full: true,
            backoff: Backoff::new(MIN_BACKOFF, MAX_BACKOFF),
            retry_at: None,
            not_before: now,
            next_check: now + CHECK_EVERY,
            noticed: Some(now),
        }
    }

    /// Whether an apply must wait (for a retry, or the enforcer's `min_interval`).
    fn waiting(&self, now: Instant) -> bool {
        self.retry_at.map_or(now < self.not_before, |t| now < t)
    }

    /// When to look again if nothing changes.
    fn wake(&self, waiting: bool) -> Instant {
        match (waiting, self.retry_at) {
            (true, Some(t)) => t,
            (true, None) => self.not_before,
            _ => self.next_check,
        }
    }
}

impl<E: Enforcer> Runner<E> {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut heads = self.engine.watch_decisions();
        let mut p = Progress::new();
        while !*shutdown.borrow() {
            let now = Instant::now();
            let head = *heads.borrow_and_update();
            let pending = p.full || head != p.cursor;
            if pending && p.noticed.is_none() {
                p.noticed = Some(now);
            }
            let waiting = p.waiting(now);
            if pending && !waiting {
                self.attempt(&mut p).await;
                continue;
            }
            if !waiting && now >= p.next_check {
                p.next_check = now + CHECK_EVERY;
                self.check(&mut p).await;
                continue;
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                changed = heads.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep_until(p.wake(waiting)) => {}
            }
        }
    }

    /// Applies what is pending; on failure, schedules a retry.
    async fn attempt(&mut self, p: &mut Progress) {
        let was_full = p.full;
        match self.step(p.full, p.cursor).await {
            Ok(head) => self.caught_up(p, head, was_full),
            Err(Failed(msg)) => self.retry_later(p, &msg, p.retry_at.is_none()),
        }
    }

    /// After a successful attempt that reached `head`.
    fn caught_up(&self, p: &mut Progress, head: u64, was_full: bool) {
        p.cursor = head;
        p.full = false;
        if p.retry_at.take().is_some() {
            tracing::info!(enforcer = %self.label.enforcer, "enforcer recovered");
        }
        p.backoff.reset();
        p.not_before = Instant::now() + self.enforcer.min_interval();
        if let Some(t) = p.noticed.take() {
            let family = &self.metrics.enforce_latency;
            family.get_or_create(&self.label).observe(t.elapsed().as_secs_f64());
        }
        if was_full {
            tracing::debug!(enforcer = %self.label.enforcer, entries = self.held.len(), "full list applied");
        }
    }

    /// Asks the system whether it lost its entries; a failure counts like a failed apply.
    async fn check(&mut self, p: &mut Progress) {
        match tokio::time::timeout(CALL_TIMEOUT, self.enforcer.lost_state()).await {
            Ok(Ok(false)) => {}
            Ok(Ok(true)) => {
                tracing::warn!(enforcer = %self.label.enforcer, "the system lost its entries (restarted?): applying the full list");
                p.full = true;
            }
            Ok(Err(e)) => self.retry_later(p, &format!("{e:#}"), true),
            Err(_) => self.retry_later(p, "checking the system timed out", true),
        }
    }

    /// Records a failure and schedules a full replace after the next backoff delay (every
    /// failure advances the backoff the same way).
    fn retry_later(&self, p: &mut Progress, msg: &str, first: bool) {
        let delay = p.backoff.next_delay();
        self.failed(msg, first, delay);
        p.full = true;
        p.retry_at = Some(Instant::now() + delay);
    }

    /// One attempt: a full replace or the diff since `cursor`. Returns the new cursor.
    async fn step(&mut self, full: bool, cursor: u64) -> Result<u64, Failed> {
        let started = Instant::now();
        let delta = self
            .engine
            .decisions(if full { 0 } else { cursor })
            .await
            .map_err(|e| Failed(format!("reading the decision log: {e:#}")))?;
        let head = delta.head();
        // After a full replace of an empty list the cursor is 0, and "what changed since
        // 0?" is answered with the full list: with nothing held, that is a plain diff.
        let as_diff = !full && self.held.is_empty();
        if self.send(&delta, as_diff, now_ms()).await? {
            let is_full = matches!(delta, Delta::Full { .. }) && !as_diff;
            self.succeeded(started, is_full);
        }
        Ok(head)
    }

    /// Sends `delta` to the enforcer and tracks what the system holds; `false` when there
    /// was nothing to send.
    async fn send(&mut self, delta: &Delta, as_diff: bool, now: Millis) -> Result<bool, Failed> {
        match delta {
            Delta::Full { active, .. } if as_diff => {
                let set: Vec<NetBlock> = active.iter().filter_map(NetBlock::of).collect();
                if set.is_empty() {
                    return Ok(false);
                }
                within_timeout(self.enforcer.apply(&set, &[], now)).await?;
                self.held.extend(set.iter().map(|e| e.net));
            }
            Delta::Full { active, .. } => {
                let entries: Vec<NetBlock> = active.iter().filter_map(NetBlock::of).collect();
                within_timeout(self.enforcer.replace(&entries, now)).await?;
                self.held = entries.iter().map(|e| e.net).collect();
            }
            Delta::Changes { changes, .. } => {
                let (set, removed) = split(changes);
                if set.is_empty() && removed.is_empty() {
                    return Ok(false);
                }
                within_timeout(self.enforcer.apply(&set, &removed, now)).await?;
                for r in &removed {
                    self.held.remove(&r.net);
                }
                self.held.extend(set.iter().map(|e| e.net));
            }
        }
        Ok(true)
    }

    /// Records a successful apply that began at `started`.
    fn succeeded(&self, started: Instant, is_full: bool) {
        let took = started.elapsed();
        self.metrics
            .enforce_applies
            .get_or_create(&self.result_label("ok"))
            .inc();
        self.metrics
            .enforce_entries
            .get_or_create(&self.label)
            .set(self.held.len() as i64);
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.state = State::Ok;
        s.entries = self.held.len();
        s.last_apply = Some(now_ms());
        s.last_apply_ms = Some(took.as_secs_f64() * 1000.0);
        s.applies += 1;
        s.full_syncs += u64::from(is_full);
    }

    fn result_label(&self, result: &'static str) -> EnforcerResultLabel {
        EnforcerResultLabel {
            enforcer: self.label.enforcer.clone(),
            result,
        }
    }

    /// Records a failure; logs a warning on the first of a run of failures, then quietly.
    fn failed(&self, msg: &str, first: bool, retry_in: Duration) {
        if first {
            tracing::warn!(enforcer = %self.label.enforcer, error = %msg, retry_in = ?retry_in, "enforcer failed; retrying with backoff");
        } else {
            tracing::debug!(enforcer = %self.label.enforcer, error = %msg, retry_in = ?retry_in, "enforcer still failing");
        }
        self.metrics
            .enforce_applies
            .get_or_create(&self.result_label("error"))
            .inc();
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.state = State::Retrying;
        s.errors += 1;
        s.last_error = Some(msg.to_string());
        s.last_error_at = Some(now_ms());
    }
}

/// One call into an enforcer, bounded by [`CALL_TIMEOUT`].
async fn within_timeout(call: impl std::future::Future<Output = anyhow::Result<()>>) -> Result<(), Failed> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failed(format!("{e:#}"))),
        Err(_) => Err(Failed(format!("gave no answer within {}s", CALL_TIMEOUT.as_secs()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_are_the_json_names() {
        for s in [State::Starting, State::Ok, State::Retrying] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
