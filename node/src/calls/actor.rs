//! The call policy actor: it owns the core's [`CallPolicy`], decides requests in batches
//! and persists every changed account's counters and locks in sled before it answers
//! (group commit: one flush for every request that arrived meanwhile); a breach can
//! report the dialled number to the mesh.

use super::AccountView;
use crate::engine::EngineHandle;
use crate::metrics::Metrics;
use anyhow::{anyhow, Context};
use fraudmesh::calls::account::{Account, Active, Lock};
use fraudmesh::calls::policy::{CallDecision, CallPolicy, CallRequest, FraudNumbers};
use fraudmesh::sighting::{Draft, Evidence, Kind};
use fraudmesh::target::Target;
use fraudmesh::Millis;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most requests decided before one flush.
const BATCH: usize = 256;

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
}

/// An account's state as stored (JSON in sled).
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    started: Vec<(Millis, bool)>,
    active: Vec<(String, Millis, bool)>,
    ended: Vec<(Millis, Millis)>,
    lock: Option<(Millis, String)>,
}

impl From<&Account> for Stored {
    fn from(a: &Account) -> Self {
        Self {
            started: a.started.iter().copied().collect(),
            active: a
                .active
                .iter()
                .map(|(id, x)| (id.clone(), x.started, x.international))
                .collect(),
            ended: a.ended.iter().copied().collect(),
            lock: a.lock.as_ref().map(|l| (l.since, l.reason.clone())),
        }
    }
}

impl From<Stored> for Account {
    fn from(s: Stored) -> Self {
        Account {
            started: s.started.into(),
            active: s
                .active
                .into_iter()
                .map(|(id, started, international)| (id, Active { started, international }))
                .collect(),
            ended: s.ended.into(),
            lock: s.lock.map(|(since, reason)| Lock { since, reason }),
        }
    }
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

/// A reply of `value` once the batch is stored, or the storage error.
fn answer<T: Send + 'static>(reply: oneshot::Sender<anyhow::Result<T>>, value: T) -> Answer {
    Box::new(move |err: Option<&str>| {
        let _ = reply.send(match err {
            None => Ok(value),
            Some(e) => Err(anyhow!("{e}")),
        });
    })
}

/// Reads every stored account into `policy`; an unreadable one starts afresh.
pub(super) fn restore(mut policy: CallPolicy, tree: &sled::Tree) -> anyhow::Result<CallPolicy> {
    for item in tree.iter() {
        let (k, v) = item.context("reading stored call accounts")?;
        let name = String::from_utf8_lossy(&k).into_owned();
        match serde_json::from_slice::<Stored>(&v) {
            Ok(s) => policy.restore(name, s.into()),
            Err(e) => tracing::warn!(account = %name, error = %e, "unreadable stored call account: starting it afresh"),
        }
    }
    Ok(policy)
}

/// The actor: the call policy, where it is stored, and where breaches are reported.
pub(super) struct Actor {
    pub(super) policy: CallPolicy,
    pub(super) tree: sled::Tree,
    pub(super) engine: EngineHandle,
    pub(super) metrics: Arc<Metrics>,
    pub(super) ttl_s: u32,
}

/// What deciding a batch changed and owes.
#[derive(Default)]
struct Batch {
    /// Accounts whose state changed.
    dirty: HashSet<String>,
    /// Replies sent once the changes are stored.
    answers: Vec<Answer>,
}

impl Actor {
    /// Takes requests in batches until every handle is gone.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut housekeeping = tokio::time::interval(Duration::from_secs(60));
        loop {
            let first = tokio::select! {
                cmd = rx.recv() => match cmd { Some(c) => c, None => break },
                _ = housekeeping.tick() => {
                    self.policy.expire(crate::now_ms());
                    continue;
                }
            };
            let mut cmds = vec![first];
            while cmds.len() < BATCH {
                match rx.try_recv() {
                    Ok(c) => cmds.push(c),
                    Err(_) => break,
                }
            }
            self.handle(cmds).await;
        }
    }

    /// Decides everything, writes what changed, flushes once, then answers.
    async fn handle(&mut self, cmds: Vec<Cmd>) {
        let now = crate::now_ms();
        let fraud = self.engine.blocklist();
        let mut batch = Batch::default();
        for cmd in cmds {
            self.decide(cmd, &*fraud, now, &mut batch);
        }
        let err = persist(&self.policy, &self.tree, &batch.dirty)
            .await
            .err()
            .map(|e| format!("{e:#}"));
        if let Some(e) = &err {
            tracing::error!(error = %e, "storing call counters failed");
        }
        for answer in batch.answers {
            answer(err.as_deref());
        }
    }

    /// Decides one request; its reply waits in `batch` unless nothing is to be stored.
    fn decide(&mut self, cmd: Cmd, fraud: &dyn FraudNumbers, now: Millis, batch: &mut Batch) {
        match cmd {
            Cmd::Authorize { req, count, reply } => {
                let d = self.authorize(&req, count, fraud, now, &mut batch.dirty);
                batch.answers.push(answer(reply, d));
            }
            Cmd::End {
                account,
                call_id,
                reply,
            } => {
                let ended = self.policy.end(&account, &call_id, now);
                if ended {
                    batch.dirty.insert(account);
                }
                batch.answers.push(answer(reply, ended));
            }
            Cmd::Accounts { reply } => {
                let mut all: Vec<AccountView> = self.policy.accounts().map(|(n, a)| view(n, a, now)).collect();
                all.sort_by(|a, b| a.account.cmp(&b.account));
                let _ = reply.send(all);
            }
            Cmd::Unlock { account, reply } => {
                let was = self.policy.unlock(&account);
                if was {
                    batch.dirty.insert(account.clone());
                    tracing::info!(%account, "account unlocked");
                }
                batch.answers.push(answer(reply, was));
            }
        }
    }

    /// Decides a call; when `count`, counts it (marking the account dirty), records the
    /// decision and reports a breached number.
    fn authorize(
        &mut self,
        req: &CallRequest,
        count: bool,
        fraud: &dyn FraudNumbers,
        now: Millis,
        dirty: &mut HashSet<String>,
    ) -> CallDecision {
        if !count {
            return self.policy.check(req, fraud, now);
        }
        dirty.insert(req.account.clone());
        let d = self.policy.authorize(req, fraud, now);
        self.metrics
            .call_decisions
            .get_or_create(&crate::metrics::RuleLabel { rule: d.rule })
            .inc();
        if d.locked_now {
            tracing::warn!(account = %req.account, reason = %d.reason, "account locked");
        }
        if let Some(digits) = d.report.clone() {
            report_number(&self.engine, &digits, &req.account, d.rule, self.ttl_s);
        }
        d
    }
}

async fn persist(policy: &CallPolicy, tree: &sled::Tree, dirty: &HashSet<String>) -> anyhow::Result<()> {
    if dirty.is_empty() {
        return Ok(());
    }
    for name in dirty {
        match policy.account(name) {
            Some(a) => {
                let bytes = serde_json::to_vec(&Stored::from(a))?;
                tree.insert(name.as_bytes(), bytes)?;
            }
            None => {
                tree.remove(name.as_bytes())?;
            }
        }
    }
    tree.flush_async().await.context("flushing call counters")?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_accounts_round_trip() {
        let mut a = Account::default();
        a.start("c1", true, 10);
        a.start("c2", false, 20);
        a.end("c2", 80);
        a.lock = Some(Lock {
            since: 90,
            reason: "limit".into(),
        });
        let bytes = serde_json::to_vec(&Stored::from(&a)).unwrap();
        let back: Account = serde_json::from_slice::<Stored>(&bytes).unwrap().into();
        assert_eq!(back, a);
    }
}
