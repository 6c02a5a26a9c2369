//! The call policy actor: it owns the core's [`CallPolicy`] and the call counters' own
//! store (`calls/store.rs`), decides requests in batches, writes what each changed (a
//! few keys per call) and flushes the store once per batch before it answers (group
//! commit: one flush for every request that arrived meanwhile); a breach can report the
//! dialled number to the mesh. It runs on a thread of its own, so neither its decisions
//! nor its flushes wait for the async runtime's workers (busy with gossip and sync under
//! load).

use super::store::{Before, CallStore};
use super::AccountView;
use crate::engine::EngineHandle;
use crate::metrics::Metrics;
use anyhow::anyhow;
use fraudmesh::calls::account::Account;
use fraudmesh::calls::policy::{CallDecision, CallPolicy, CallRequest, CallRules, FraudNumbers};
use fraudmesh::sighting::{Draft, Evidence, Kind};
use fraudmesh::target::Target;
use fraudmesh::Millis;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Most requests decided before one flush.
const BATCH: usize = 256;
/// How often what expired is forgotten.
const HOUSEKEEPING: Duration = Duration::from_secs(60);

/// A request to the actor.
pub(super) enum Cmd {
    Authorize {
        req: CallRequest,
        count: bool,
        reply: oneshot::Sender<anyhow::Result<CallDecision>>,
    },
    End {
        account: String,
        call_id: String,
        reply: oneshot::Sender<anyhow::Result<bool>>,
    },
    Accounts {
        reply: oneshot::Sender<Vec<AccountView>>,
    },
    Unlock {
        account: String,
        reply: oneshot::Sender<anyhow::Result<bool>>,
    },
    /// Forget what expired (every minute).
    Expire,
}

fn view(name: &str, a: &Account, now: Millis) -> AccountView {
    let u = a.usage(now);
    AccountView {
        account: name.to_string(),
        locked: a.lock.is_some(),
        lock_reason: a.lock.as_ref().map(|l| l.reason.clone()),
        locked_since: a.lock.as_ref().map(|l| l.since),
        calls_last_hour: u.calls_last_hour,
        calls_last_day: u.calls_last_day,
        international_last_day: u.international_last_day,
        active: u.active,
        minutes_last_day: u.ms_last_day / 60_000,
    }
}

/// Sends one reply once the batch is stored (or with the storage error).
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

/// A reply of `value` once the batch is stored: the error of its own write, else the
/// batch's flush error, else the value.
fn answer<T: Send + 'static>(reply: oneshot::Sender<anyhow::Result<T>>, value: anyhow::Result<T>) -> Answer {
    Box::new(move |err: Option<&str>| {
        let _ = reply.send(match (value, err) {
            (Err(e), _) => Err(e),
            (Ok(_), Some(e)) => Err(anyhow!("{e}")),
            (Ok(v), None) => Ok(v),
        });
    })
}

/// The core's call policy with every change written to the call store (not yet
/// flushed: the actor flushes once per batch).
pub(super) struct Counters {
    pub(super) policy: CallPolicy,
    pub(super) store: CallStore,
}

impl Counters {
    /// The policy over what `store` holds, with what expired while the node was down
    /// forgotten (and removed from the store).
    pub(super) fn restore(rules: CallRules, mut store: CallStore, now: Millis) -> Self {
        let mut policy = CallPolicy::new(rules);
        for (name, account) in store.take_loaded() {
            policy.restore(name, account);
        }
        let mut c = Self { policy, store };
        if let Err(e) = c.expire(now) {
            tracing::error!(error = %format!("{e:#}"), "removing expired call counters failed");
        }
        c
    }

    /// Decides a call and counts it when allowed (or locks the account on a breach).
    pub(super) fn authorize(
        &mut self,
        req: &CallRequest,
        fraud: &dyn FraudNumbers,
        now: Millis,
    ) -> (CallDecision, anyhow::Result<()>) {
        let before = Before::start(self.policy.account(&req.account), &req.call_id, now);
        let d = self.policy.authorize(req, fraud, now);
        let stored = self.record(&req.account, &before, now);
        (d, stored)
    }

    /// Ends `account`'s call `call_id`; whether it was in progress.
    pub(super) fn end(&mut self, account: &str, call_id: &str, now: Millis) -> anyhow::Result<bool> {
        let before = Before::end(self.policy.account(account), call_id);
        let ended = self.policy.end(account, call_id, now);
        if ended {
            self.record(account, &before, now)?;
        }
        Ok(ended)
    }

    /// Lifts a lock; whether the account was locked.
    pub(super) fn unlock(&mut self, account: &str, now: Millis) -> anyhow::Result<bool> {
        let was = self.policy.unlock(account);
        if was {
            self.record(account, &Before::other(), now)?;
        }
        Ok(was)
    }

    /// Forgets what is older than the core keeps, in memory and in the store.
    pub(super) fn expire(&mut self, now: Millis) -> anyhow::Result<()> {
        self.policy.expire(now);
        let mut names = self.store.names();
        names.extend(self.policy.accounts().map(|(n, _)| n.clone()));
        let mut first_err = None;
        for name in names {
            if let Err(e) = self.record(&name, &Before::other(), now) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn record(&mut self, name: &str, before: &Before, now: Millis) -> anyhow::Result<()> {
        let max = self.policy.rules().max_call_ms;
        self.store.record(name, before, self.policy.account(name), now, max)
    }
}

/// The actor: the call policy and its store, and where breaches are reported.
pub(super) struct Actor {
    pub(super) counters: Counters,
    pub(super) engine: EngineHandle,
    pub(super) metrics: Arc<Metrics>,
    pub(super) ttl_s: u32,
    /// Where reports of breached numbers run.
    pub(super) runtime: tokio::runtime::Handle,
}

/// Sends [`Cmd::Expire`] every [`HOUSEKEEPING`] while the actor takes commands.
pub(super) async fn housekeeping(tx: mpsc::WeakSender<Cmd>) {
    let mut every = tokio::time::interval(HOUSEKEEPING);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(tx) = tx.upgrade() else { break };
        if tx.send(Cmd::Expire).await.is_err() {
            break;
        }
    }
}

impl Actor {
    /// Takes requests in batches until every handle is gone, then flushes (blocking: run
    /// it on a thread of its own).
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        while let Some(first) = rx.blocking_recv() {
            let mut cmds = vec![first];
            while cmds.len() < BATCH {
                match rx.try_recv() {
                    Ok(c) => cmds.push(c),
                    Err(_) => break,
                }
            }
            self.handle(cmds);
        }
        let _ = self.flush();
    }

    /// Decides everything, writes what changed, flushes once, then answers.
    fn handle(&mut self, cmds: Vec<Cmd>) {
        let now = crate::now_ms();
        let fraud = self.engine.blocklist();
        let mut answers = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            self.decide(cmd, &*fraud, now, &mut answers);
        }
        let err = self.flush();
        for answer in answers {
            answer(err.as_deref());
        }
    }

    /// Flushes what the batch wrote (timed); the error, if any.
    fn flush(&mut self) -> Option<String> {
        let t = Instant::now();
        match self.counters.store.flush() {
            Ok(flushed) => {
                if flushed {
                    self.metrics.call_store_flush.observe(t.elapsed().as_secs_f64());
                }
                None
            }
            Err(e) => {
                let e = format!("{e:#}");
                tracing::error!(error = %e, "storing call counters failed");
                Some(e)
            }
        }
    }

    /// Decides one request; its reply waits in `answers` unless nothing is to be stored.
    fn decide(&mut self, cmd: Cmd, fraud: &dyn FraudNumbers, now: Millis, answers: &mut Vec<Answer>) {
        let written = self.counters.store.written().keys;
        match cmd {
            Cmd::Authorize { req, count, reply } => {
                if !count {
                    let _ = reply.send(Ok(self.counters.policy.check(&req, fraud, now)));
                    return;
                }
                let (d, stored) = self.counters.authorize(&req, fraud, now);
                self.counted(&req, &d);
                answers.push(answer(reply, stored.map(|()| d)));
            }
            Cmd::End {
                account,
                call_id,
                reply,
            } => {
                answers.push(answer(reply, self.counters.end(&account, &call_id, now)));
            }
            Cmd::Accounts { reply } => {
                let mut all: Vec<AccountView> = self.counters.policy.accounts().map(|(n, a)| view(n, a, now)).collect();
                all.sort_by(|a, b| a.account.cmp(&b.account));
                let _ = reply.send(all);
            }
            Cmd::Unlock { account, reply } => {
                let was = self.counters.unlock(&account, now);
                if matches!(was, Ok(true)) {
                    tracing::info!(%account, "account unlocked");
                }
                answers.push(answer(reply, was));
            }
            // Removals only: this batch's flush makes them durable (lost ones are found
            // again at the next start).
            Cmd::Expire => {
                if let Err(e) = self.counters.expire(now) {
                    tracing::error!(error = %format!("{e:#}"), "removing expired call counters failed");
                }
            }
        }
        self.metrics
            .call_store_writes
            .inc_by(self.counters.store.written().keys - written);
    }

    /// Counts a decision in the metrics, logs a lock and reports a breached number.
    fn counted(&self, req: &CallRequest, d: &CallDecision) {
        self.metrics
            .call_decisions
            .get_or_create(&crate::metrics::RuleLabel { rule: d.rule })
            .inc();
        if d.locked_now {
            tracing::warn!(account = %req.account, reason = %d.reason, "account locked");
        }
        if let Some(digits) = d.report.clone() {
            let _guard = self.runtime.enter();
            report_number(&self.engine, &digits, &req.account, d.rule, self.ttl_s);
        }
    }
}

/// Reports a dialled number to the mesh as a toll-fraud destination.
fn report_number(engine: &EngineHandle, digits: &str, account: &str, rule: &str, ttl_s: u32) {
    let Ok(target) = Target::number(digits) else {
        return;
    };
    let draft = Draft {
        target,
        kind: Kind::TollFraud,
        observed_at: crate::now_ms(),
        ttl_s,
        count: 1,
        evidence: Evidence {
            reason: format!("account {account} breached {rule}"),
            ..Evidence::default()
        }
        .truncated(),
    };
    let engine = engine.clone();
    let digits = digits.to_string();
    tokio::spawn(async move {
        match engine.report(vec![draft]).await {
            Ok(_) => tracing::warn!(number = %format!("+{digits}"), "reported a toll-fraud destination to the mesh"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "reporting a toll-fraud number failed"),
        }
    });
}
