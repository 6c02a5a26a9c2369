//! Durable storage of the ledger, behind a small trait so the engine does not depend on
//! sled (the seam if sled ever has to go, as it did for garage).
//!
//! Tree names carry a version (`records.v1`): a future format change writes a new tree
//! and migrates, instead of misreading old bytes. Records are keyed by
//! `reporter (32 bytes) || encoded target`, so a newer record of the same reporter and
//! target overwrites the older one in place, exactly like the ledger.
//!
//! Writes go through a [`Writer`]: the store's own thread, so that ingesting sightings
//! never waits on the disk (verification is the engine thread's work, writing the
//! store's). sled flushes in the background every 500 ms; a write made through the API
//! is acknowledged only once the writer has flushed it.
//!
//! A write that fails is not forgotten: the writer keeps the record (the newest per key)
//! and writes it again before every flush, and a flush fails as long as any write queued
//! before it is not on disk. So an acknowledgement always covers exactly what is durable:
//! the caller whose records failed hears it from its own flush, a later caller only while
//! the disk still refuses (then its own records could not be made durable either).
//!
//! Loading at start never stops at one bad entry: [`Store::scan`] passes unreadable
//! entries as errors and goes on, and the engine removes entries that do not decode.
//!
//! Beside the records, the store keeps a few small [`Table`]s, each a tree of its own:
//! the endorsements of trusted organisations (`endorsements.v1`, keyed by
//! `org || member`), the operator's allows (`allows.v1`, keyed by the encoded target) and
//! the reporters' reputation penalties (`reputation.v1`, keyed by the reporter). Their
//! writes go through the same writer, in order with the records', and are retried and
//! covered by flushes the same way.

use crate::metrics::Metrics;
use anyhow::Context;
use fraudmesh::identity::PublicKey;
use fraudmesh::sighting::Record;
use fraudmesh::target::Target;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

/// The records tree.
const RECORDS_TREE: &str = "records.v1";

/// A small table kept beside the records (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Endorsement records of trusted organisations, keyed by `org || member`.
    Endorsements,
    /// The operator's allows, keyed by the encoded target.
    Allows,
    /// Reputation penalties, keyed by the reporter's key.
    Reputation,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 3] = [Table::Endorsements, Table::Allows, Table::Reputation];

    /// Its tree's name (versioned like the records').
    pub fn tree(self) -> &'static str {
        match self {
            Table::Endorsements => "endorsements.v1",
            Table::Allows => "allows.v1",
            Table::Reputation => "reputation.v1",
        }
    }
}

/// One write to a table: the value to store under the key, or `None` to remove it.
pub type TableWrite = (Vec<u8>, Option<Vec<u8>>);

/// One entry met by [`Store::scan`]: its raw key and value, or why it could not be read.
pub type Scanned<'a> = anyhow::Result<(&'a [u8], &'a [u8])>;

/// What the engine needs from storage. Shared between the engine (reads) and the
/// writer thread (writes), so every method takes `&self`; sled is internally synchronised.
pub trait Store: Send + Sync {
    /// Calls `f` with every stored record's encoded bytes, one at a time (a million
    /// records must not be held twice in memory while the ledger is rebuilt).
    fn for_each(&self, f: &mut dyn FnMut(&[u8]) -> anyhow::Result<()>) -> anyhow::Result<()>;
    /// Every stored entry as `Ok((key, value))`, for loading at start; an entry that
    /// cannot be read is passed as `Err` and the scan goes on past it. The default, for
    /// stores without raw keys, is [`Store::for_each`] with empty keys.
    fn scan(&self, f: &mut dyn FnMut(Scanned<'_>)) -> anyhow::Result<()> {
        self.for_each(&mut |v| {
            f(Ok((&[], v)));
            Ok(())
        })
    }
    /// Removes entries by raw key (corrupt ones found by [`Store::scan`]). The default
    /// (for stores whose `scan` gives no keys) has nothing to remove.
    fn remove_raw(&self, keys: &[Vec<u8>]) -> anyhow::Result<()> {
        let _ = keys;
        Ok(())
    }
    /// Inserts or replaces records (keyed by reporter and target).
    fn put(&self, records: &[&Record]) -> anyhow::Result<()>;
    /// The stored bytes of one (reporter, target), if any.
    fn get(&self, reporter: &PublicKey, target: &Target) -> anyhow::Result<Option<Vec<u8>>>;
    /// Removes the records of these (reporter, target) keys.
    fn remove(&self, keys: &[(PublicKey, Target)]) -> anyhow::Result<()>;
    /// Makes everything written so far durable.
    fn flush(&self) -> anyhow::Result<()>;
    /// Bytes on disk, for status.
    fn size_on_disk(&self) -> u64;
    /// Every entry of a table, like [`Store::scan`].
    fn table_scan(&self, table: Table, f: &mut dyn FnMut(Scanned<'_>)) -> anyhow::Result<()>;
    /// Inserts or removes entries of a table, as if in order.
    fn table_write(&self, table: Table, writes: &[TableWrite]) -> anyhow::Result<()>;
}

fn key(reporter: &PublicKey, target: &Target) -> Vec<u8> {
    let mut k = reporter.as_bytes().to_vec();
    k.extend_from_slice(&target.to_proto().encode_to_vec());
    k
}

/// Unreadable entries after which [`SledStore::scan`] stops reading.
const MAX_SCAN_ERRORS: usize = 1000;

/// sled-backed store.
pub struct SledStore {
    db: sled::Db,
    records: sled::Tree,
    /// The trees of [`Table::ALL`], in that order.
    tables: Vec<sled::Tree>,
}

impl SledStore {
    /// Opens (or creates) the database at `path` with a page cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: u64) -> anyhow::Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open()
            .with_context(|| format!("opening the database at {} (is another node using it?)", path.display()))?;
        let records = db.open_tree(RECORDS_TREE)?;
        let tables = Table::ALL
            .iter()
            .map(|t| {
                db.open_tree(t.tree())
                    .with_context(|| format!("opening the tree {}", t.tree()))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { db, records, tables })
    }

    fn table(&self, table: Table) -> &sled::Tree {
        &self.tables[table as usize]
    }

    /// The database itself, for state earlier versions kept beside the ledger (the
    /// call counters' `call_accounts` tree, imported into their own store and dropped).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}

#[cfg(test)]
impl SledStore {
    /// Writes raw bytes under a raw key (tests of corrupt data).
    pub fn put_raw(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        self.records.insert(key, value)?;
        Ok(())
    }
}

impl Store for SledStore {
    fn for_each(&self, f: &mut dyn FnMut(&[u8]) -> anyhow::Result<()>) -> anyhow::Result<()> {
        for v in self.records.iter().values() {
            f(&v.context("reading a stored record")?)?;
        }
        Ok(())
    }

    fn scan(&self, f: &mut dyn FnMut(Scanned<'_>)) -> anyhow::Result<()> {
        // sled may keep answering the same error; past this many the rest is unreachable.
        let mut errors = 0;
        for entry in self.records.iter() {
            match entry {
                Ok((k, v)) => f(Ok((&k, &v))),
                Err(e) => {
                    f(Err(anyhow::Error::new(e).context("reading a stored record")));
                    errors += 1;
                    if errors >= MAX_SCAN_ERRORS {
                        anyhow::bail!("{errors} unreadable entries; the rest of the store was not read");
                    }
                }
            }
        }
        Ok(())
    }

    fn remove_raw(&self, keys: &[Vec<u8>]) -> anyhow::Result<()> {
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k.as_slice());
        }
        self.records.apply_batch(batch).context("removing corrupt records")
    }

    fn put(&self, records: &[&Record]) -> anyhow::Result<()> {
        // Single inserts: measured faster than `apply_batch` here, and durability comes
        // from `flush` anyway (the engine flushes before acknowledging).
        for r in records {
            let s = r.sighting();
            self.records
                .insert(key(&s.reporter, &s.target), r.encode())
                .context("writing a record")?;
        }
        Ok(())
    }

    fn get(&self, reporter: &PublicKey, target: &Target) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self
            .records
            .get(key(reporter, target))
            .context("reading a record")?
            .map(|v| v.to_vec()))
    }

    fn remove(&self, keys: &[(PublicKey, Target)]) -> anyhow::Result<()> {
        let mut batch = sled::Batch::default();
        for (reporter, target) in keys {
            batch.remove(key(reporter, target));
        }
        self.records.apply_batch(batch).context("removing records")
    }

    fn flush(&self) -> anyhow::Result<()> {
        self.db.flush().context("flushing the database")?;
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn table_scan(&self, table: Table, f: &mut dyn FnMut(Scanned<'_>)) -> anyhow::Result<()> {
        let mut errors = 0;
        for entry in self.table(table).iter() {
            match entry {
                Ok((k, v)) => f(Ok((&k, &v))),
                Err(e) => {
                    f(Err(
                        anyhow::Error::new(e).context(format!("reading an entry of {}", table.tree()))
                    ));
                    errors += 1;
                    if errors >= MAX_SCAN_ERRORS {
                        anyhow::bail!("{errors} unreadable entries; the rest of {} was not read", table.tree());
                    }
                }
            }
        }
        Ok(())
    }

    fn table_write(&self, table: Table, writes: &[TableWrite]) -> anyhow::Result<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in writes {
            match v {
                Some(v) => batch.insert(k.as_slice(), v.as_slice()),
                None => batch.remove(k.as_slice()),
            }
        }
        self.table(table)
            .apply_batch(batch)
            .with_context(|| format!("writing to {}", table.tree()))
    }
}

/// Writes queued to the writer thread before the engine waits (backpressure).
const WRITE_QUEUE: usize = 64;
/// Records whose write failed kept for writing again; beyond it they are lost (counted,
/// and every later flush fails: restarting recovers them from peers by sync).
const MAX_UNWRITTEN: usize = 100_000;

/// Called with the result of a flush.
pub type Done = Box<dyn FnOnce(anyhow::Result<()>) + Send>;

/// One change to the store. Changes take effect as if applied in the order given, so a
/// record put and later removed (evicted) in one batch ends removed, and the reverse
/// ends stored.
#[derive(Debug, Clone)]
pub enum Change {
    /// Insert or replace the record of its (reporter, target).
    Put(Record),
    /// Remove the record of this (reporter, target).
    Remove(PublicKey, Target),
    /// Store (`Some`) or remove (`None`) an entry of a table.
    Table(Table, Vec<u8>, Option<Vec<u8>>),
}

enum Op {
    Apply(Vec<Change>),
    Flush(Done),
}

/// The store's writer thread. Operations run in the order they were queued, so a flush
/// covers every write queued before it. Dropping the writer drains the queue, flushes
/// and joins the thread.
pub struct Writer {
    tx: Option<mpsc::SyncSender<Op>>,
    thread: Option<JoinHandle<()>>,
}

/// The writer thread's state: the store and what it could not write yet.
struct Worker {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// The newest record of each key whose write failed, written again before each flush.
    unwritten: HashMap<(PublicKey, Target), Record>,
    /// Records dropped because `unwritten` was full.
    lost: usize,
    /// The newest write of each table entry that failed, written again before each flush.
    unwritten_tables: HashMap<(Table, Vec<u8>), Option<Vec<u8>>>,
    /// The last write error, for the flushes that fail.
    last_error: String,
}

impl Worker {
    /// Applies changes as if one by one in order: changes to different keys commute, so
    /// only the last change of each key is made — every put in one call, every removal
    /// in one batch.
    fn apply(&mut self, changes: Vec<Change>) {
        let mut seen: HashSet<(PublicKey, Target)> = HashSet::with_capacity(changes.len());
        let mut puts: Vec<Record> = Vec::new();
        let mut removals: Vec<(PublicKey, Target)> = Vec::new();
        let mut tables: HashMap<(Table, Vec<u8>), Option<Vec<u8>>> = HashMap::new();
        for c in changes.into_iter().rev() {
            match c {
                Change::Table(table, key, value) => {
                    // Reversed: the first met is the last made.
                    tables.entry((table, key)).or_insert(value);
                }
                Change::Put(r) => {
                    if seen.insert((r.sighting().reporter, r.sighting().target.clone())) {
                        puts.push(r);
                    }
                }
                Change::Remove(reporter, target) => {
                    if seen.insert((reporter, target.clone())) {
                        removals.push((reporter, target));
                    }
                }
            }
        }
        puts.reverse();
        self.remove(removals);
        self.put(puts);
        self.write_tables(tables);
    }

    /// Writes table entries (one batch per table); the failed ones are kept to retry.
    fn write_tables(&mut self, writes: HashMap<(Table, Vec<u8>), Option<Vec<u8>>>) {
        let mut by_table: HashMap<Table, Vec<TableWrite>> = HashMap::new();
        for ((table, key), value) in writes {
            by_table.entry(table).or_default().push((key, value));
        }
        for (table, writes) in by_table {
            match self.store.table_write(table, &writes) {
                Ok(()) => {
                    for (key, _) in writes {
                        self.unwritten_tables.remove(&(table, key));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, entries = writes.len(), table = table.tree(), "writing a table failed; will retry");
                    self.metrics.store_write_errors.inc_by(writes.len() as u64);
                    self.last_error = format!("{e:#}");
                    for (key, value) in writes {
                        self.unwritten_tables.insert((table, key), value);
                    }
                }
            }
        }
    }

    fn put(&mut self, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        let refs: Vec<&Record> = records.iter().collect();
        match self.store.put(&refs) {
            Ok(()) => {
                if !self.unwritten.is_empty() {
                    for r in &records {
                        let s = r.sighting();
                        self.unwritten.remove(&(s.reporter, s.target.clone()));
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = records.len(), "writing records failed; will retry");
                self.metrics.store_write_errors.inc_by(records.len() as u64);
                self.last_error = format!("{e:#}");
                for r in records {
                    let key = (r.sighting().reporter, r.sighting().target.clone());
                    if self.unwritten.len() < MAX_UNWRITTEN || self.unwritten.contains_key(&key) {
                        self.unwritten.insert(key, r);
                    } else {
                        self.lost += 1;
                    }
                }
                self.metrics.store_unwritten.set(self.unwritten.len() as i64);
            }
        }
    }

    fn remove(&mut self, keys: Vec<(PublicKey, Target)>) {
        if keys.is_empty() {
            return;
        }
        for k in &keys {
            self.unwritten.remove(k);
        }
        if let Err(e) = self.store.remove(&keys) {
            // Not retried: a record left on disk is expired or re-admitted at restart.
            tracing::error!(error = %e, "removing records failed");
            self.metrics.store_write_errors.inc_by(keys.len() as u64);
        }
    }

    /// Writes what failed before, flushes, and says whether everything queued so far
    /// is durable.
    fn flush(&mut self) -> anyhow::Result<()> {
        if !self.unwritten.is_empty() {
            let retry: Vec<Record> = self.unwritten.values().cloned().collect();
            self.put(retry);
            self.metrics.store_unwritten.set(self.unwritten.len() as i64);
        }
        if !self.unwritten_tables.is_empty() {
            let retry = std::mem::take(&mut self.unwritten_tables);
            self.write_tables(retry);
        }
        let flushed = self.store.flush();
        if !self.unwritten_tables.is_empty() {
            anyhow::bail!(
                "{} table entries could not be written to the store: {}",
                self.unwritten_tables.len(),
                self.last_error
            );
        }
        if !self.unwritten.is_empty() {
            anyhow::bail!(
                "{} records could not be written to the store: {}",
                self.unwritten.len(),
                self.last_error
            );
        }
        if self.lost > 0 {
            anyhow::bail!(
                "{} records could not be written and were dropped ({}); restart the node to recover them from peers",
                self.lost,
                self.last_error
            );
        }
        flushed
    }
}

impl Writer {
    /// Starts the thread writing to `store`, counting failed writes in `metrics`.
    pub fn start(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Op>(WRITE_QUEUE);
        let mut worker = Worker {
            store,
            metrics,
            unwritten: HashMap::new(),
            unwritten_tables: HashMap::new(),
            lost: 0,
            last_error: String::new(),
        };
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                crate::priority::background();
                for op in rx {
                    match op {
                        Op::Apply(changes) => worker.apply(changes),
                        Op::Flush(done) => done(worker.flush()),
                    }
                }
                if let Err(e) = worker.flush() {
                    tracing::error!(error = %e, "final flush failed");
                }
            })
            .context("starting the store thread")?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn send(&self, op: Op) {
        if let Some(tx) = &self.tx {
            if tx.send(op).is_err() {
                tracing::error!("the store thread is gone; a write was lost");
            }
        }
    }

    /// Queues changes, applied in order.
    pub fn apply(&self, changes: Vec<Change>) {
        if !changes.is_empty() {
            self.send(Op::Apply(changes));
        }
    }

    /// Queues records to write (replacing older ones of the same reporter and target).
    pub fn put(&self, records: Vec<Record>) {
        self.apply(records.into_iter().map(Change::Put).collect());
    }

    /// Queues removals.
    pub fn remove(&self, keys: Vec<(PublicKey, Target)>) {
        self.apply(keys.into_iter().map(|(r, t)| Change::Remove(r, t)).collect());
    }

    /// Flushes everything queued so far, then calls `done` (on the writer thread) with
    /// `Ok` only if every write queued so far is on disk.
    pub fn flush_then(&self, done: Done) {
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError(Op::Flush(done))) = tx.send(Op::Flush(done)) {
                    done(Err(anyhow::anyhow!("the store thread is gone")));
                }
            }
            None => done(Err(anyhow::anyhow!("the store is closed"))),
        }
    }

    /// Flushes everything queued so far and waits for it.
    pub fn flush_wait(&self) -> anyhow::Result<()> {
        let (tx, rx) = mpsc::channel();
        self.flush_then(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        rx.recv().map_err(|_| anyhow::anyhow!("the store thread is gone"))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The tables of a [`MemStore`]: entries by table and raw key.
#[cfg(test)]
pub type MemTables = std::collections::BTreeMap<(Table, Vec<u8>), Vec<u8>>;

/// An in-memory store for tests, with switchable faults.
#[cfg(test)]
#[derive(Default)]
pub struct MemStore {
    /// The entries, by raw key.
    pub entries: std::sync::Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>,
    /// While set, every `put` fails ("disk full").
    pub fail_puts: std::sync::atomic::AtomicBool,
    /// `scan` reports the entry at this position as unreadable (and skips it).
    pub unreadable_at: Option<usize>,
    /// Flushes done.
    pub flushes: std::sync::atomic::AtomicUsize,
    /// The tables' entries, by table and raw key.
    pub tables: std::sync::Mutex<MemTables>,
    /// While set, every table write fails.
    pub fail_tables: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
impl MemStore {
    /// Whether the record of (reporter, target) is stored.
    pub fn has(&self, reporter: &PublicKey, target: &Target) -> bool {
        self.entries.lock().unwrap().contains_key(&key(reporter, target))
    }
}

#[cfg(test)]
impl Store for MemStore {
    fn for_each(&self, f: &mut dyn FnMut(&[u8]) -> anyhow::Result<()>) -> anyhow::Result<()> {
        for v in self.entries.lock().unwrap().values() {
            f(v)?;
        }
        Ok(())
    }
    fn scan(&self, f: &mut dyn FnMut(Scanned<'_>)) -> anyhow::Result<()> {
        for (i, (k, v)) in self.entries.lock().unwrap().iter().enumerate() {
            if Some(i) == self.unreadable_at {
                f(Err(anyhow::anyhow!("injected read error")));
            } else {
                f(Ok((k, v)));
            }
        }
        Ok(())
    }
    fn remove_raw(&self, keys: &[Vec<u8>]) -> anyhow::Result<()> {
        let mut entries = self.entries.lock().unwrap();
        for k in keys {
            entries.remove(k);
        }
        Ok(())
    }
    fn put(&self, records: &[&Record]) -> anyhow::Result<()> {
        if self.fail_puts.load(std::sync::atomic::Ordering::SeqCst) {
            anyhow::bail!("disk full");
        }
        let mut entries = self.entries.lock().unwrap();
        for r in records {
            let s = r.sighting();
            entries.insert(key(&s.reporter, &s.target), r.encode());
        }
        Ok(())
    }
    fn get(&self, reporter: &PublicKey, target: &Target) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.entries.lock().unwrap().get(&key(reporter, target)).cloned())
    }
    fn remove(&self, keys: &[(PublicKey, Target)]) -> anyhow::Result<()> {
        let mut entries = self.entries.lock().unwrap();
        for (r, t) in keys {
            entries.remove(&key(r, t));
        }
        Ok(())
    }
    fn flush(&self) -> anyhow::Result<()> {
        self.flushes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    fn size_on_disk(&self) -> u64 {
        0
    }
    fn table_scan(&self, table: Table, f: &mut dyn FnMut(Scanned<'_>)) -> anyhow::Result<()> {
        for ((t, k), v) in self.tables.lock().unwrap().iter() {
            if *t == table {
                f(Ok((k, v)));
            }
        }
        Ok(())
    }
    fn table_write(&self, table: Table, writes: &[TableWrite]) -> anyhow::Result<()> {
        if self.fail_tables.load(std::sync::atomic::Ordering::SeqCst) {
            anyhow::bail!("disk full");
        }
        let mut tables = self.tables.lock().unwrap();
        for (k, v) in writes {
            match v {
                Some(v) => tables.insert((table, k.clone()), v.clone()),
                None => tables.remove(&(table, k.clone())),
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fraudmesh::identity::Identity;
    use fraudmesh::sighting::{sign, Draft, Evidence, Kind};
    use std::sync::atomic::Ordering;

    fn record(target: &str) -> Record {
        sign(
            &Identity::from_secret([8; 32]),
            Draft {
                target: Target::parse(target, Default::default()).unwrap(),
                kind: Kind::Scan,
                observed_at: 1,
                ttl_s: 60,
                count: 1,
                evidence: Evidence::default(),
            },
        )
    }

    #[test]
    fn a_failed_write_fails_every_flush_until_it_is_written_and_is_never_forgotten() {
        let store = Arc::new(MemStore::default());
        let metrics = Arc::new(Metrics::new());
        let writer = Writer::start(store.clone(), metrics.clone()).unwrap();
        store.fail_puts.store(true, Ordering::SeqCst);
        let r = record("192.0.2.3");
        writer.put(vec![r.clone()]);
        let err = writer.flush_wait().unwrap_err();
        assert!(format!("{err:#}").contains("disk full"), "{err:#}");
        // Still refused: every flush covering the failed write says so.
        assert!(writer.flush_wait().is_err());
        assert_eq!(metrics.store_unwritten.get(), 1);
        // The disk recovers: the next flush writes the record first, then succeeds.
        store.fail_puts.store(false, Ordering::SeqCst);
        writer.flush_wait().unwrap();
        let s = r.sighting();
        assert!(
            store.has(&s.reporter, &s.target),
            "the failed write was kept and retried"
        );
        assert_eq!(metrics.store_unwritten.get(), 0);
        assert!(metrics.store_write_errors.get() >= 2);
        let flushes = store.flushes.load(Ordering::SeqCst);
        drop(writer);
        assert_eq!(
            store.flushes.load(Ordering::SeqCst),
            flushes + 1,
            "dropping the writer flushes"
        );
    }

    #[test]
    fn a_removal_after_a_failed_write_is_not_undone_by_the_retry() {
        let store = Arc::new(MemStore::default());
        let writer = Writer::start(store.clone(), Arc::default()).unwrap();
        store.fail_puts.store(true, Ordering::SeqCst);
        let r = record("192.0.2.4");
        let s = r.sighting();
        writer.put(vec![r.clone()]);
        writer.remove(vec![(s.reporter, s.target.clone())]);
        store.fail_puts.store(false, Ordering::SeqCst);
        writer.flush_wait().unwrap();
        assert!(!store.has(&s.reporter, &s.target));
    }

    #[test]
    fn changes_apply_in_order() {
        let store = Arc::new(MemStore::default());
        let writer = Writer::start(store.clone(), Arc::default()).unwrap();
        let (a, b) = (record("192.0.2.5"), record("192.0.2.6"));
        let key = |r: &Record| (r.sighting().reporter, r.sighting().target.clone());
        writer.apply(vec![
            Change::Put(a.clone()),
            Change::Remove(key(&a).0, key(&a).1),
            Change::Remove(key(&b).0, key(&b).1),
            Change::Put(b.clone()),
        ]);
        writer.flush_wait().unwrap();
        assert!(!store.has(&key(&a).0, &key(&a).1), "put then removed: gone");
        assert!(store.has(&key(&b).0, &key(&b).1), "removed then put: stored");
        // Two records of one key in one batch: the later in order is stored (the engine
        // queues them newest last; the writer does not judge).
        let mut newer = Draft {
            target: b.sighting().target.clone(),
            kind: Kind::Scan,
            observed_at: 2,
            ttl_s: 60,
            count: 1,
            evidence: Evidence::default(),
        };
        let b2 = sign(&Identity::from_secret([8; 32]), newer.clone());
        newer.observed_at = 3;
        let b3 = sign(&Identity::from_secret([8; 32]), newer);
        writer.apply(vec![Change::Put(b3.clone()), Change::Put(b2.clone())]);
        writer.flush_wait().unwrap();
        assert_eq!(store.get(&key(&b).0, &key(&b).1).unwrap(), Some(b2.encode()));
        writer.apply(vec![Change::Put(b2), Change::Put(b3.clone())]);
        writer.flush_wait().unwrap();
        assert_eq!(store.get(&key(&b).0, &key(&b).1).unwrap(), Some(b3.encode()));
    }

    #[test]
    fn writes_are_on_disk_when_the_flush_returns() {
        let tmp = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(tmp.path(), 1 << 20).unwrap());
        let writer = Writer::start(store.clone(), Arc::default()).unwrap();
        let r = record("192.0.2.3");
        writer.put(vec![r.clone()]);
        writer.flush_wait().unwrap();
        let s = r.sighting();
        assert_eq!(store.get(&s.reporter, &s.target).unwrap(), Some(r.encode()));
    }
}
