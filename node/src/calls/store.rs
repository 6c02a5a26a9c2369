//! The call counters' own storage: a sled database at `DIR/calls/`, apart from the
//! ledger's, written incrementally and flushed by the call policy actor once per batch of
//! requests before any of them is answered (group commit: nothing acknowledged is lost on
//! a crash).
//!
//! Every item of the core's [`Account`] is one key, so a call writes a constant number of
//! keys whatever the account's history (a counted call: its `S` and `A` keys; an end: its
//! `A` key removed and an `E` key; a lock or unlock: the `L` key):
//!
//! ```text
//! NAME = the account name's length (u16) and bytes; numbers big-endian
//! NAME 'S' start seq       → international (1 byte)  a call started      (Account::started)
//! NAME 'A' start call id   → international (1 byte)  a call in progress  (Account::active)
//! NAME 'E' end seq         → duration                a call ended        (Account::ended)
//! NAME 'L'                 → since, reason (UTF-8)   the lock            (Account::lock)
//! ```
//!
//! Times are ms since the epoch and `seq` this store's counter, so the keys of an account
//! sort as the core orders its entries, and calls in progress by age (those the core ends
//! after `max_call` are found without reading the others). When the core forgets its
//! oldest entries (older than a day, or over its per-account bounds) the store removes as
//! many of its oldest keys, and an account the core drops entirely loses all its keys:
//! the store holds what the core holds and is bounded as the core is. The store's flush is
//! its own: gossip and sync writes to the ledger's database never share it.
//!
//! [`CallStore::open`] reads the accounts back; an unreadable entry is skipped with a
//! warning, counted and removed, never a reason not to start. It also imports, once, what
//! earlier versions kept as one JSON document per account in the ledger database's
//! `call_accounts` tree, and drops that tree.

use super::legacy::Legacy;
use anyhow::{anyhow, Context};
use fraudmesh::calls::account::{Account, Active, Lock};
use fraudmesh::Millis;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// The ledger database's tree where earlier versions kept every account as JSON.
pub const LEGACY_TREE: &str = "call_accounts";
/// The tree of account items in the call store's database.
const TREE: &str = "accounts";
/// The call store's page cache.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// Unreadable entries after which loading stops reading (sled may keep answering the
/// same error).
const MAX_LOAD_ERRORS: u64 = 1000;

const STARTED: u8 = b'S';
const ACTIVE: u8 = b'A';
const ENDED: u8 = b'E';
const LOCK: u8 = b'L';

/// What the store holds of one account: how many of each item, and its lock.
#[derive(Debug, Default, Clone)]
struct Held {
    started: usize,
    active: usize,
    ended: usize,
    lock: Option<Lock>,
    /// A write failed midway: rewrite the whole account at its next change.
    broken: bool,
}

/// Keys written or removed, and their bytes (keys and values), since the store opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Keys inserted or removed.
    pub keys: u64,
    /// Bytes of the keys and values inserted, and of the keys removed.
    pub bytes: u64,
}

/// An account as it was before a change, as far as [`CallStore::record`] needs it.
#[derive(Debug, Clone)]
pub struct Before {
    op: Op,
    /// Calls started at `now` (the last entries of `started`): one more once a call is
    /// counted.
    started_now: usize,
    /// The call's entry in progress, if it had one.
    active: Option<Active>,
}

#[derive(Debug, Clone)]
enum Op {
    Start(String),
    End(String),
    Other,
}

fn started_at(a: Option<&Account>, now: Millis) -> usize {
    a.map_or(0, |a| a.started.iter().rev().take_while(|(t, _)| *t == now).count())
}

impl Before {
    /// Before the core decides (and maybe counts) call `call_id` of account `a` at `now`.
    pub fn start(a: Option<&Account>, call_id: &str, now: Millis) -> Self {
        Self {
            started_now: started_at(a, now),
            active: a.and_then(|a| a.active.get(call_id)).copied(),
            op: Op::Start(call_id.to_string()),
        }
    }

    /// Before the core ends call `call_id` of account `a`.
    pub fn end(a: Option<&Account>, call_id: &str) -> Self {
        Self {
            started_now: 0,
            active: a.and_then(|a| a.active.get(call_id)).copied(),
            op: Op::End(call_id.to_string()),
        }
    }

    /// Before any other change (a lock lifted, expiry).
    pub fn other() -> Self {
        Self {
            op: Op::Other,
            started_now: 0,
            active: None,
        }
    }
}

/// The call counters' database and what it holds of each account.
pub struct CallStore {
    /// The items (the tree keeps its database open).
    tree: sled::Tree,
    held: HashMap<String, Held>,
    /// The next `seq`.
    seq: u64,
    written: Written,
    /// Written since the last flush.
    dirty: bool,
    /// Unreadable entries skipped while opening.
    skipped: u64,
    /// Parts of accounts rewritten whole because they differed from what the store
    /// expected (should stay 0).
    resyncs: u64,
    /// Accounts read at opening, until [`CallStore::take_loaded`].
    loaded: BTreeMap<String, Account>,
}

/// One readable entry.
enum Item {
    Started(Millis, bool),
    Active(String, Active),
    Ended(Millis, Millis),
    Lock(Lock),
}

fn be(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

/// The key prefix of account `name`.
fn prefix(name: &str) -> anyhow::Result<Vec<u8>> {
    let n = name.as_bytes();
    let len = u16::try_from(n.len()).map_err(|_| anyhow!("account name over 65,535 bytes"))?;
    let mut k = Vec::with_capacity(2 + n.len() + 17);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(n);
    Ok(k)
}

fn key(prefix: &[u8], tag: u8, rest: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 1 + rest.iter().map(|r| r.len()).sum::<usize>());
    k.extend_from_slice(prefix);
    k.push(tag);
    for r in rest {
        k.extend_from_slice(r);
    }
    k
}

/// Reads one entry: the account's name, the item and its `seq` (for `S` and `E`).
fn parse(k: &[u8], v: &[u8]) -> Option<(String, Item, u64)> {
    let len = usize::from(u16::from_be_bytes(k.get(..2)?.try_into().ok()?));
    let name = std::str::from_utf8(k.get(2..2 + len)?).ok()?.to_string();
    let tag = *k.get(2 + len)?;
    let rest = &k[3 + len..];
    let timed = || Some((be(rest.get(..8)?)?, be(rest.get(8..)?)?));
    let item = match tag {
        STARTED => {
            let (t, seq) = timed()?;
            let international = match v {
                [0] => false,
                [1] => true,
                _ => return None,
            };
            return Some((name, Item::Started(t, international), seq));
        }
        ENDED => {
            let (end, seq) = timed()?;
            return Some((name, Item::Ended(end, be(v)?), seq));
        }
        ACTIVE if rest.len() >= 8 && (v == [0] || v == [1]) => Item::Active(
            std::str::from_utf8(&rest[8..]).ok()?.to_string(),
            Active {
                started: be(&rest[..8])?,
                international: v == [1],
            },
        ),
        LOCK if rest.is_empty() && v.len() >= 8 => Item::Lock(Lock {
            since: be(&v[..8])?,
            reason: std::str::from_utf8(&v[8..]).ok()?.to_string(),
        }),
        _ => return None,
    };
    Some((name, item, 0))
}

impl CallStore {
    /// Opens (or creates) the store at `path` and reads every account back. When `legacy`
    /// (the ledger database) still has the `call_accounts` tree of earlier versions, its
    /// accounts are imported and the tree dropped.
    pub fn open(path: &Path, legacy: Option<&sled::Db>) -> anyhow::Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            // The actor flushes each batch itself (and nothing else writes here).
            .flush_every_ms(None)
            .open()
            .with_context(|| {
                format!(
                    "opening the call counters at {} (is another node using it?)",
                    path.display()
                )
            })?;
        let tree = db.open_tree(TREE).context("opening the call counters' tree")?;
        let mut store = Self {
            tree,
            held: HashMap::new(),
            seq: 0,
            written: Written::default(),
            dirty: false,
            skipped: 0,
            resyncs: 0,
            loaded: BTreeMap::new(),
        };
        store.load()?;
        if let Some(main) = legacy {
            store.migrate(main)?;
        }
        Ok(store)
    }

    fn load(&mut self) -> anyhow::Result<()> {
        let mut bad = Vec::new();
        let mut errors = 0;
        for entry in self.tree.iter() {
            let (k, v) = match entry {
                Ok(kv) => kv,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable call counter entry: skipped");
                    self.skipped += 1;
                    errors += 1;
                    if errors >= MAX_LOAD_ERRORS {
                        break;
                    }
                    continue;
                }
            };
            let Some((name, item, seq)) = parse(&k, &v) else {
                tracing::warn!(key = %hex::encode(&k), "unreadable call counter entry: skipped and removed");
                self.skipped += 1;
                bad.push(k);
                continue;
            };
            self.seq = self.seq.max(seq + 1);
            let a = self.loaded.entry(name.clone()).or_default();
            let h = self.held.entry(name).or_default();
            // Keys come in order: each item's entries in the core's order.
            match item {
                Item::Started(t, international) => {
                    a.started.push_back((t, international));
                    h.started += 1;
                }
                Item::Active(id, x) => {
                    a.active.insert(id, x);
                    h.active += 1;
                }
                Item::Ended(end, duration) => {
                    a.ended.push_back((end, duration));
                    h.ended += 1;
                }
                Item::Lock(l) => {
                    a.lock = Some(l.clone());
                    h.lock = Some(l);
                }
            }
        }
        for k in bad {
            self.remove(&k)?;
        }
        Ok(())
    }

    /// Imports the accounts of the ledger database's [`LEGACY_TREE`], if it has one,
    /// then drops it. Safe to repeat after a crash: an import replaces the account.
    fn migrate(&mut self, main: &sled::Db) -> anyhow::Result<()> {
        if !main.tree_names().iter().any(|n| n.as_ref() == LEGACY_TREE.as_bytes()) {
            return Ok(());
        }
        let old = main.open_tree(LEGACY_TREE)?;
        let mut imported = 0;
        for entry in old.iter() {
            let (k, v) = match entry {
                Ok(kv) => kv,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable account in the old call_accounts tree: skipped");
                    self.skipped += 1;
                    continue;
                }
            };
            let name = String::from_utf8_lossy(&k).into_owned();
            match serde_json::from_slice::<Legacy>(&v) {
                Ok(l) => {
                    let account = Account::from(l);
                    self.replace(&name, &account)?;
                    self.loaded.insert(name, account);
                    imported += 1;
                }
                Err(e) => {
                    tracing::warn!(account = %name, error = %e, "unreadable account in the old call_accounts tree: skipped");
                    self.skipped += 1;
                }
            }
        }
        drop(old);
        self.tree.flush().context("flushing the imported call counters")?;
        self.dirty = false;
        main.drop_tree(LEGACY_TREE)
            .context("dropping the old call_accounts tree")?;
        main.flush().context("flushing the ledger database")?;
        tracing::info!(accounts = imported, "imported the call counters into their own store");
        Ok(())
    }

    /// The accounts read at opening (once).
    pub fn take_loaded(&mut self) -> BTreeMap<String, Account> {
        std::mem::take(&mut self.loaded)
    }

    /// Unreadable entries skipped while opening.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Keys and bytes written since opening.
    pub fn written(&self) -> Written {
        self.written
    }

    /// Parts of accounts rewritten whole because they were not what the store expected.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Every key of the store, in order (tests, debugging).
    pub fn keys(&self) -> Vec<Vec<u8>> {
        self.tree
            .iter()
            .keys()
            .filter_map(Result::ok)
            .map(|k| k.to_vec())
            .collect()
    }

    /// Makes everything written so far durable (blocking); false when nothing was
    /// written since the last flush.
    pub fn flush(&mut self) -> anyhow::Result<bool> {
        if !self.dirty {
            return Ok(false);
        }
        self.tree.flush().context("flushing the call counters")?;
        self.dirty = false;
        Ok(true)
    }

    fn put(&mut self, k: Vec<u8>, v: &[u8]) -> anyhow::Result<()> {
        self.written.keys += 1;
        self.written.bytes += (k.len() + v.len()) as u64;
        self.dirty = true;
        self.tree.insert(k, v).context("writing a call counter")?;
        Ok(())
    }

    fn remove(&mut self, k: &[u8]) -> anyhow::Result<()> {
        self.written.keys += 1;
        self.written.bytes += k.len() as u64;
        self.dirty = true;
        self.tree.remove(k).context("removing a call counter")?;
        Ok(())
    }

    fn next_seq(&mut self) -> [u8; 8] {
        self.seq += 1;
        (self.seq - 1).to_be_bytes()
    }

    fn put_started(&mut self, p: &[u8], t: Millis, international: bool) -> anyhow::Result<()> {
        let seq = self.next_seq();
        self.put(key(p, STARTED, &[&t.to_be_bytes(), &seq]), &[u8::from(international)])
    }

    fn put_ended(&mut self, p: &[u8], end: Millis, duration: Millis) -> anyhow::Result<()> {
        let seq = self.next_seq();
        self.put(key(p, ENDED, &[&end.to_be_bytes(), &seq]), &duration.to_be_bytes())
    }

    fn put_active(&mut self, p: &[u8], id: &str, x: &Active) -> anyhow::Result<()> {
        self.put(
            key(p, ACTIVE, &[&x.started.to_be_bytes(), id.as_bytes()]),
            &[u8::from(x.international)],
        )
    }

    fn put_lock(&mut self, p: &[u8], lock: Option<&Lock>) -> anyhow::Result<()> {
        let k = key(p, LOCK, &[]);
        match lock {
            Some(l) => {
                let mut v = l.since.to_be_bytes().to_vec();
                v.extend_from_slice(l.reason.as_bytes());
                self.put(k, &v)
            }
            None => self.remove(&k),
        }
    }

    /// Replaces every item of `tag` (started, in progress or ended calls) with `a`'s;
    /// how many there are now.
    fn rewrite_items(&mut self, p: &[u8], tag: u8, a: &Account) -> anyhow::Result<usize> {
        self.remove_all(&key(p, tag, &[]))?;
        match tag {
            STARTED => {
                for &(t, international) in &a.started {
                    self.put_started(p, t, international)?;
                }
            }
            ACTIVE => {
                for (id, x) in &a.active {
                    self.put_active(p, id, x)?;
                }
            }
            _ => {
                for &(end, duration) in &a.ended {
                    self.put_ended(p, end, duration)?;
                }
            }
        }
        Ok(match tag {
            STARTED => a.started.len(),
            ACTIVE => a.active.len(),
            _ => a.ended.len(),
        })
    }

    /// The first `n` keys (the oldest) under `prefix`.
    fn first_keys(&self, prefix: &[u8], n: usize) -> anyhow::Result<Vec<sled::IVec>> {
        self.tree
            .scan_prefix(prefix)
            .keys()
            .take(n)
            .collect::<Result<_, _>>()
            .context("reading call counters")
    }

    /// Removes every key under `prefix`.
    fn remove_all(&mut self, prefix: &[u8]) -> anyhow::Result<()> {
        for k in self.first_keys(prefix, usize::MAX)? {
            self.remove(&k)?;
        }
        Ok(())
    }

    /// Writes the changes that made `before` into `after` (`None`: the core dropped the
    /// account) for account `name`: a constant number of keys per call, plus the removal
    /// of what the core forgot. `max_call_ms` is the core's `max_call`.
    pub fn record(
        &mut self,
        name: &str,
        before: &Before,
        after: Option<&Account>,
        now: Millis,
        max_call_ms: Millis,
    ) -> anyhow::Result<()> {
        let p = prefix(name)?;
        let Some(after) = after else {
            if self.held.remove(name).is_some() {
                self.remove_all(&p)?;
            }
            return Ok(());
        };
        let mut held = self.held.remove(name).unwrap_or_default();
        let r = if held.broken {
            self.resyncs += 1;
            self.rewrite(&p, after, &mut held)
        } else {
            self.apply(&p, &mut held, before, after, now, max_call_ms)
        };
        held.broken = r.is_err();
        self.held.insert(name.to_string(), held);
        r
    }

    fn apply(
        &mut self,
        p: &[u8],
        held: &mut Held,
        before: &Before,
        after: &Account,
        now: Millis,
        max_call_ms: Millis,
    ) -> anyhow::Result<()> {
        // What the operation added.
        match &before.op {
            Op::Start(id) => {
                let pushed = started_at(Some(after), now).saturating_sub(before.started_now);
                let n = after.started.len();
                for &(t, international) in after.started.range(n.saturating_sub(pushed)..) {
                    self.put_started(p, t, international)?;
                    held.started += 1;
                }
                if let (None, Some(x)) = (before.active, after.active.get(id)) {
                    self.put_active(p, id, x)?;
                    held.active += 1;
                }
            }
            Op::End(id) => {
                if let (Some(was), false) = (before.active, after.active.contains_key(id)) {
                    self.remove(&key(p, ACTIVE, &[&was.started.to_be_bytes(), id.as_bytes()]))?;
                    held.active -= 1;
                    self.put_ended(p, now, now.saturating_sub(was.started))?;
                    held.ended += 1;
                }
            }
            Op::Other => {}
        }
        // Calls in progress the core dropped: those past `max_call` ended then (their
        // end never came). Keys sort by start, so only those are read.
        let mut stale = Vec::new();
        if held.active > after.active.len() {
            let ap = key(p, ACTIVE, &[]);
            let mut gone = Vec::new();
            for k in self.tree.scan_prefix(&ap).keys() {
                let k = k.context("reading call counters")?;
                let started = k.get(ap.len()..ap.len() + 8).and_then(be).unwrap_or_default();
                if now.saturating_sub(started) <= max_call_ms {
                    break;
                }
                let id = std::str::from_utf8(&k[ap.len() + 8..]).unwrap_or_default();
                if !after.active.contains_key(id) {
                    gone.push((k, started));
                }
            }
            for (k, started) in gone {
                stale.push((started.saturating_add(max_call_ms), max_call_ms));
                self.remove(&k)?;
                held.active -= 1;
            }
        }
        if held.active != after.active.len() {
            self.resyncs += 1;
            held.active = self.rewrite_items(p, ACTIVE, after)?;
        }
        // The oldest starts and ends the core forgot.
        self.trim(p, STARTED, &mut held.started, after.started.len())?;
        if held.started != after.started.len() {
            self.resyncs += 1;
            held.started = self.rewrite_items(p, STARTED, after)?;
        }
        self.trim(p, ENDED, &mut held.ended, after.ended.len().saturating_sub(stale.len()))?;
        for (end, duration) in stale {
            self.put_ended(p, end, duration)?;
            held.ended += 1;
        }
        if held.ended != after.ended.len() {
            self.resyncs += 1;
            held.ended = self.rewrite_items(p, ENDED, after)?;
        }
        if held.lock != after.lock {
            self.put_lock(p, after.lock.as_ref())?;
            held.lock = after.lock.clone();
        }
        Ok(())
    }

    /// Removes the oldest keys of `tag` until `held` is down to `keep`.
    fn trim(&mut self, p: &[u8], tag: u8, held: &mut usize, keep: usize) -> anyhow::Result<()> {
        if *held <= keep {
            return Ok(());
        }
        for k in self.first_keys(&key(p, tag, &[]), *held - keep)? {
            self.remove(&k)?;
            *held -= 1;
        }
        Ok(())
    }

    /// Writes account `name` whole, replacing what the store held of it.
    pub fn replace(&mut self, name: &str, account: &Account) -> anyhow::Result<()> {
        let p = prefix(name)?;
        let mut held = Held::default();
        let r = self.rewrite(&p, account, &mut held);
        held.broken = r.is_err();
        self.held.insert(name.to_string(), held);
        r
    }

    fn rewrite(&mut self, p: &[u8], a: &Account, held: &mut Held) -> anyhow::Result<()> {
        self.remove_all(p)?;
        *held = Held::default();
        held.started = self.rewrite_items(p, STARTED, a)?;
        held.active = self.rewrite_items(p, ACTIVE, a)?;
        held.ended = self.rewrite_items(p, ENDED, a)?;
        if a.lock.is_some() {
            self.put_lock(p, a.lock.as_ref())?;
            held.lock = a.lock.clone();
        }
        Ok(())
    }

    /// Names of the accounts the store holds.
    pub fn names(&self) -> HashSet<String> {
        self.held.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::actor::Counters;
    use super::super::CallsConfig;
    use super::*;
    use fraudmesh::calls::account::{DAY, HOUR};
    use fraudmesh::calls::policy::{CallDecision, CallRequest, CallRules};
    use std::collections::BTreeSet;

    /// Some time in 2023, ms.
    const T0: Millis = 1_700_000_000_000;
    const MIN: Millis = 60_000;

    fn rules(text: &str) -> CallRules {
        toml::from_str::<CallsConfig>(text).unwrap().compile().unwrap()
    }

    /// Opens the store at `dir`. sled's I/O threads may hold a database the test just
    /// dropped a moment longer (a restarted node is a new process): until they let go
    /// its lock is taken, so this polls, up to a deadline.
    fn reopen(dir: &Path, legacy: Option<&sled::Db>) -> CallStore {
        unlocked(|| CallStore::open(dir, legacy))
    }

    /// `f`'s value once the database it opens is no longer locked.
    fn unlocked<T>(mut f: impl FnMut() -> anyhow::Result<T>) -> T {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match f() {
                Ok(s) => return s,
                Err(e) if format!("{e:#}").contains("could not acquire lock") => {
                    assert!(std::time::Instant::now() < deadline, "{e:#}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("{e:#}"),
            }
        }
    }

    fn open(dir: &Path, rules: CallRules, now: Millis) -> Counters {
        Counters::restore(rules, reopen(dir, None), now)
    }

    fn call(c: &mut Counters, account: &str, to: &str, call_id: &str, now: Millis) -> CallDecision {
        let req = CallRequest {
            account: account.into(),
            to: to.into(),
            call_id: call_id.into(),
        };
        let (d, stored) = c.authorize(&req, &BTreeSet::new(), now);
        stored.unwrap();
        d
    }

    fn flush(c: &mut Counters) {
        c.store.flush().unwrap();
    }

    /// The accounts with any state, as the core holds them.
    fn state(c: &Counters) -> BTreeMap<String, Account> {
        c.policy
            .accounts()
            .filter(|(_, a)| **a != Account::default())
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect()
    }

    /// A small deterministic generator (xorshift).
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    #[test]
    fn what_the_core_holds_is_read_back_after_random_calls_ends_locks_and_expiry() {
        let tmp = tempfile::tempdir().unwrap();
        let text = "max_call = \"1h\"\n[limits]\ncalls_per_hour = 12\nconcurrent = 4\n";
        let mut locked = 0;
        let mut c = open(tmp.path(), rules(text), T0);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut now = T0;
        let mut ids: Vec<(String, String)> = Vec::new();
        let numbers = ["044 668 18 00", "+49 30 901820", "0900 123 456", "+44 20 7946 0000"];
        for step in 0..6000u64 {
            // Mostly seconds apart, sometimes hours: windows slide and calls go stale.
            now += match rng.below(100) {
                0 => rng.below(30) * HOUR,
                1..=5 => rng.below(60) * MIN,
                _ => rng.below(20_000),
            };
            let account = format!("{}", 100 + rng.below(6));
            match rng.below(10) {
                0..=5 => {
                    let id = match rng.below(8) {
                        0 => String::new(),
                        1 if !ids.is_empty() => ids[rng.below(ids.len() as u64) as usize].1.clone(),
                        _ => format!("call-{step}"),
                    };
                    call(&mut c, &account, numbers[rng.below(4) as usize], &id, now);
                    ids.push((account, id));
                }
                6 | 7 if !ids.is_empty() => {
                    let (owner, id) = ids.swap_remove(rng.below(ids.len() as u64) as usize);
                    // Sometimes another account tries to end it: nothing changes.
                    let who = if rng.below(5) == 0 { account } else { owner };
                    c.end(&who, &id, now).unwrap();
                }
                8 => {
                    c.unlock(&account, now).unwrap();
                }
                _ => c.expire(now).unwrap(),
            }
            if step % 500 == 499 {
                c.expire(now).unwrap();
                flush(&mut c);
                let held = state(&c);
                let rules = c.policy.rules().clone();
                assert_eq!(c.store.resyncs(), 0, "every change was written incrementally");
                drop(c);
                c = open(tmp.path(), rules, now);
                assert_eq!(state(&c), held, "after step {step}");
                locked += held.values().filter(|a| a.lock.is_some()).count();
            }
        }
        assert!(locked > 0, "accounts were locked");
        // What the store holds is what the core holds, key for key.
        let items: usize = state(&c)
            .values()
            .map(|a| a.started.len() + a.active.len() + a.ended.len() + usize::from(a.lock.is_some()))
            .sum();
        assert_eq!(c.store.keys().len(), items);
    }

    #[test]
    fn a_call_writes_the_same_few_keys_whatever_the_history() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = open(tmp.path(), rules(""), T0);
        let mut per_call = Vec::new();
        // 6,000 calls 20 s apart: the account's history grows for the first day (4,320
        // calls), then slides.
        for i in 0..6000u64 {
            let now = T0 + i * 20_000;
            let before = c.store.written();
            let id = format!("c{i:05}");
            let d = call(&mut c, "busy", "044 668 18 00", &id, now);
            assert!(d.allow);
            assert!(c.end("busy", &id, now + 10_000).unwrap());
            flush(&mut c);
            let after = c.store.written();
            per_call.push((after.keys - before.keys, after.bytes - before.bytes));
        }
        let history = c.policy.account("busy").unwrap().started.len();
        assert!(history > 4000, "{history} calls in the day");
        // Start: the S and A keys; end: A removed, an E key.
        assert_eq!(per_call[10], (4, per_call[10].1));
        assert_eq!(
            per_call[10], per_call[4000],
            "as many keys and bytes with 4,000 calls of history as with 10"
        );
        // Once the day slides, each call also removes its oldest start and end.
        assert_eq!(per_call[5999].0, 6);
        assert!(per_call[5999].1 < 200, "{:?}", per_call[5999]);
        assert_eq!(c.store.resyncs(), 0);
    }

    #[test]
    fn calls_never_ended_cost_the_same_few_keys_once_they_go_stale() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = open(tmp.path(), rules("max_call = \"1h\""), T0);
        let mut per_call = Vec::new();
        // A PBX that never says a call ended: after an hour each call ends the oldest.
        for i in 0..6000u64 {
            let before = c.store.written();
            call(&mut c, "silent", "044 668 18 00", &format!("c{i:05}"), T0 + i * 20_000);
            flush(&mut c);
            per_call.push(c.store.written().keys - before.keys);
        }
        assert_eq!(c.policy.account("silent").unwrap().active.len(), 181);
        // Start: S and A; past an hour also the stale A removed and its E; past a day
        // also the oldest S and E removed.
        assert_eq!(
            (per_call[10], per_call[1000], per_call[4000], per_call[5999]),
            (2, 4, 4, 6)
        );
        assert_eq!(c.store.resyncs(), 0);
        let held = state(&c);
        drop(c);
        let c = open(tmp.path(), rules("max_call = \"1h\""), T0 + 5999 * 20_000);
        assert_eq!(state(&c), held);
    }

    #[test]
    fn expiry_removes_the_keys_of_what_the_core_forgot() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = open(tmp.path(), rules("max_call = \"1h\"\n[limits]\nconcurrent = 2\n"), T0);
        for (i, account) in ["a", "b", "c"].iter().enumerate() {
            // The third call of c breaches the limit and locks it.
            for j in 0..if *account == "c" { 3 } else { 2 } {
                call(
                    &mut c,
                    account,
                    "044 668 18 00",
                    &format!("{account}{j}"),
                    T0 + i as u64,
                );
            }
        }
        c.end("a", "a0", T0 + 5 * MIN).unwrap();
        assert!(c.policy.account("c").unwrap().lock.is_some(), "the third call locked c");
        c.unlock("b", T0).unwrap();
        flush(&mut c);
        let count = |c: &Counters, name: &str| {
            let p = prefix(name).unwrap();
            c.store.keys().iter().filter(|k| k.starts_with(&p)).count()
        };
        assert!(count(&c, "a") >= 4);

        // After the longest call the calls in progress ended (never reported)...
        c.expire(T0 + 2 * HOUR).unwrap();
        assert!(c.policy.account("a").unwrap().active.is_empty());
        assert!(!c.store.keys().iter().any(|k| k.get(3) == Some(&ACTIVE)));
        // ...and a day later only the lock is left.
        c.expire(T0 + DAY + 2 * HOUR).unwrap();
        flush(&mut c);
        assert_eq!(count(&c, "a"), 0);
        assert_eq!(count(&c, "b"), 0);
        assert_eq!(c.store.keys(), vec![key(&prefix("c").unwrap(), LOCK, &[])]);
        drop(c);
        let c = open(tmp.path(), rules(""), T0 + DAY + 2 * HOUR);
        assert_eq!(state(&c).keys().collect::<Vec<_>>(), vec!["c"]);
    }

    #[test]
    fn the_old_call_accounts_tree_is_imported_once_and_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let main = sled::open(tmp.path().join("data")).unwrap();
        let mut expected = BTreeMap::new();
        {
            let old = main.open_tree(LEGACY_TREE).unwrap();
            let mut a = Account::default();
            a.start("x1", true, T0);
            a.start("x2", false, T0 + 10);
            a.end("x2", T0 + 80);
            a.start("", false, T0 + 90);
            a.lock = Some(Lock {
                since: T0 + 100,
                reason: "more than 3 calls in an hour".into(),
            });
            let mut b = Account::default();
            b.start("y", false, T0 + 5);
            for (name, acc) in [("1001", a), ("1002", b)] {
                old.insert(name, serde_json::to_vec(&Legacy::from(&acc)).unwrap())
                    .unwrap();
                expected.insert(name.to_string(), acc);
            }
            old.insert("1003", &b"{not json"[..]).unwrap();
            main.flush().unwrap();
        }
        let mut store = reopen(&tmp.path().join("calls"), Some(&main));
        assert_eq!(store.take_loaded(), expected);
        assert_eq!(store.skipped(), 1, "the unreadable account is skipped");
        assert!(!main.tree_names().iter().any(|n| n.as_ref() == LEGACY_TREE.as_bytes()));
        drop(store);
        // Read back from the new store; nothing imported twice.
        let store = reopen(&tmp.path().join("calls"), Some(&main));
        assert_eq!(store.skipped(), 0);
        let c = Counters::restore(rules(""), store, T0 + 1000);
        assert_eq!(state(&c), expected);
    }

    #[test]
    fn an_unreadable_entry_is_skipped_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = open(tmp.path(), rules(""), T0);
        call(&mut c, "1001", "044 668 18 00", "ok", T0);
        flush(&mut c);
        let held = state(&c);
        drop(c);
        {
            let db = unlocked(|| Ok(sled::open(tmp.path())?));
            let t = db.open_tree(TREE).unwrap();
            let p = prefix("1001").unwrap();
            t.insert(key(&p, STARTED, &[&T0.to_be_bytes()]), &[1u8][..]).unwrap(); // short key
            t.insert(key(&p, STARTED, &[&T0.to_be_bytes(), &[0xff; 8]]), &[7u8][..])
                .unwrap(); // bad value
            t.insert(key(&p, b'?', &[]), &[][..]).unwrap(); // unknown item
            t.insert(&[0xff, 0xff, 1][..], &[][..]).unwrap(); // name longer than the key
            t.insert(key(&prefix("\u{0}x").unwrap(), LOCK, &[]), &[1u8, 2][..])
                .unwrap(); // short lock
            db.flush().unwrap();
        }
        let store = reopen(tmp.path(), None);
        assert_eq!(store.skipped(), 5);
        let c = Counters::restore(rules(""), store, T0);
        assert_eq!(state(&c), held);
        drop(c);
        let store = reopen(tmp.path(), None);
        assert_eq!(store.skipped(), 0, "removed");
    }

    /// The child half of the crash test: counts calls, flushing every few (each flush
    /// acknowledges the calls before it, as the actor answers them), then aborts with
    /// more calls written but not flushed.
    fn crash_child(dir: &Path) -> ! {
        let mut c = open(dir, rules(""), T0);
        let mut acked = 0;
        for i in 0..500u64 {
            call(&mut c, &format!("{}", i % 7), "044 668 18 00", &format!("c{i}"), T0 + i);
            if i % 13 == 12 {
                assert!(c.store.flush().unwrap());
                acked = i + 1;
                std::fs::write(dir.join("acked"), acked.to_string()).unwrap();
            }
        }
        assert!(acked < 500);
        std::process::abort();
    }

    #[test]
    fn a_crash_loses_no_acknowledged_call() {
        const ENV: &str = "FRAUDMESH_TEST_CALL_STORE_CRASH";
        if let Some(dir) = std::env::var_os(ENV) {
            crash_child(Path::new(&dir));
        }
        let tmp = tempfile::tempdir().unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "calls::store::tests::a_crash_loses_no_acknowledged_call",
                "--exact",
                "--test-threads=1",
            ])
            .env(ENV, tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child aborts");
        let acked: u64 = std::fs::read_to_string(tmp.path().join("acked"))
            .unwrap()
            .parse()
            .unwrap();
        let c = open(tmp.path(), rules(""), T0 + 1000);
        for i in 0..acked {
            let a = c.policy.account(&format!("{}", i % 7)).unwrap();
            assert!(
                a.active.contains_key(&format!("c{i}")),
                "call {i} of {acked} acknowledged"
            );
        }
        let counted: usize = state(&c).values().map(|a| a.started.len()).sum();
        assert!(counted as u64 >= acked);
    }
}
