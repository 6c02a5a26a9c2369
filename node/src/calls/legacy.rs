//! The format earlier versions kept call counters in: one JSON document per account in
//! the ledger database's `call_accounts` tree, rewritten whole on every call. The call
//! store (`calls/store.rs`) imports it once and drops the tree.

use fraudmesh::calls::account::{Account, Active, Lock};
use fraudmesh::Millis;
use serde::{Deserialize, Serialize};

/// Earlier versions' JSON document of one account in the ledger database's
/// `call_accounts` tree.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Legacy {
    started: Vec<(Millis, bool)>,
    active: Vec<(String, Millis, bool)>,
    ended: Vec<(Millis, Millis)>,
    lock: Option<(Millis, String)>,
}

impl From<&Account> for Legacy {
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

impl From<Legacy> for Account {
    fn from(s: Legacy) -> Self {
        let mut a = Account {
            started: s.started.into(),
            active: s
                .active
                .into_iter()
                .map(|(id, started, international)| (id, Active { started, international }))
                .collect(),
            ended: s.ended.into(),
            lock: s.lock.map(|(since, reason)| Lock { since, reason }),
        };
        // The store keeps entries in time order, as the core makes them.
        a.started.make_contiguous().sort_by_key(|(t, _)| *t);
        a.ended.make_contiguous().sort_by_key(|(t, _)| *t);
        a
    }
}
