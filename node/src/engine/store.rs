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

use anyhow::Context;
use fraudmesh::identity::PublicKey;
use fraudmesh::sighting::Record;
use fraudmesh::target::Target;
use prost::Message;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

/// The records tree.
const RECORDS_TREE: &str = "records.v1";

/// What the engine needs from storage. Shared between the engine (reads) and the
/// writer thread (writes), so every method takes `&self`; sled is internally synchronised.
pub trait Store: Send + Sync {
    /// Calls `f` with every stored record's encoded bytes, one at a time (a million
    /// records must not be held twice in memory while the ledger is rebuilt).
    fn for_each(&self, f: &mut dyn FnMut(&[u8]) -> anyhow::Result<()>) -> anyhow::Result<()>;
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
}

fn key(reporter: &PublicKey, target: &Target) -> Vec<u8> {
    let mut k = reporter.as_bytes().to_vec();
    k.extend_from_slice(&target.to_proto().encode_to_vec());
    k
}

/// sled-backed store.
pub struct SledStore {
    db: sled::Db,
    records: sled::Tree,
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
        Ok(Self { db, records })
    }

    /// Another tree of the same database, for state kept beside the ledger (call
    /// counters). Trees are independent; flushing the database flushes them all.
    pub fn tree(&self, name: &str) -> anyhow::Result<sled::Tree> {
        self.db
            .open_tree(name)
            .with_context(|| format!("opening the {name} tree"))
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
}

/// Writes queued to the writer thread before the engine waits (backpressure).
const WRITE_QUEUE: usize = 64;

/// Called with the result of a flush.
pub type Done = Box<dyn FnOnce(anyhow::Result<()>) + Send>;

enum Op {
    Put(Vec<Record>),
    Remove(Vec<(PublicKey, Target)>),
    Flush(Done),
}

/// The store's writer thread. Operations run in the order they were queued, so a flush
/// covers every write queued before it. Dropping the writer drains the queue, flushes
/// and joins the thread.
pub struct Writer {
    tx: Option<mpsc::SyncSender<Op>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread writing to `store`.
    pub fn start(store: Arc<dyn Store>) -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Op>(WRITE_QUEUE);
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                // A write that failed since the last flush makes that flush fail: an
                // acknowledgement must never cover a record that is not on disk.
                let mut failed: Option<String> = None;
                for op in rx {
                    match op {
                        Op::Put(records) => {
                            let refs: Vec<&Record> = records.iter().collect();
                            if let Err(e) = store.put(&refs) {
                                tracing::error!(error = %e, "writing records failed");
                                failed = Some(format!("{e:#}"));
                            }
                        }
                        Op::Remove(keys) => {
                            if let Err(e) = store.remove(&keys) {
                                tracing::error!(error = %e, "removing records failed");
                            }
                        }
                        Op::Flush(done) => {
                            let result = match failed.take() {
                                Some(e) => Err(anyhow::anyhow!("an earlier write failed: {e}")),
                                None => store.flush(),
                            };
                            done(result);
                        }
                    }
                }
                if let Err(e) = store.flush() {
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

    /// Queues records to write (replacing older ones of the same reporter and target).
    pub fn put(&self, records: Vec<Record>) {
        if !records.is_empty() {
            self.send(Op::Put(records));
        }
    }

    /// Queues removals.
    pub fn remove(&self, keys: Vec<(PublicKey, Target)>) {
        if !keys.is_empty() {
            self.send(Op::Remove(keys));
        }
    }

    /// Flushes everything queued so far, then calls `done` (on the writer thread).
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

#[cfg(test)]
mod tests {
    use super::*;
    use fraudmesh::identity::Identity;
    use fraudmesh::sighting::{sign, Draft, Evidence, Kind};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store whose writes fail, counting flushes.
    struct Broken(AtomicUsize);

    impl Store for Broken {
        fn for_each(&self, _: &mut dyn FnMut(&[u8]) -> anyhow::Result<()>) -> anyhow::Result<()> {
            Ok(())
        }
        fn put(&self, _: &[&Record]) -> anyhow::Result<()> {
            anyhow::bail!("disk full")
        }
        fn get(&self, _: &PublicKey, _: &Target) -> anyhow::Result<Option<Vec<u8>>> {
            Ok(None)
        }
        fn remove(&self, _: &[(PublicKey, Target)]) -> anyhow::Result<()> {
            Ok(())
        }
        fn flush(&self) -> anyhow::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn size_on_disk(&self) -> u64 {
            0
        }
    }

    fn record() -> Record {
        sign(
            &Identity::from_secret([8; 32]),
            Draft {
                target: Target::parse("192.0.2.3", Default::default()).unwrap(),
                kind: Kind::Scan,
                observed_at: 1,
                ttl_s: 60,
                count: 1,
                evidence: Evidence::default(),
            },
        )
    }

    #[test]
    fn a_failed_write_fails_the_next_flush_so_nothing_is_acknowledged_wrongly() {
        let store = Arc::new(Broken(AtomicUsize::new(0)));
        let writer = Writer::start(store.clone()).unwrap();
        writer.put(vec![record()]);
        let err = writer.flush_wait().unwrap_err();
        assert!(format!("{err:#}").contains("disk full"), "{err:#}");
        // The failure is reported once; later flushes reach the store again.
        writer.flush_wait().unwrap();
        assert_eq!(store.0.load(Ordering::SeqCst), 1);
        drop(writer);
        assert_eq!(store.0.load(Ordering::SeqCst), 2, "dropping the writer flushes");
    }

    #[test]
    fn writes_are_on_disk_when_the_flush_returns() {
        let tmp = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(tmp.path(), 1 << 20).unwrap());
        let writer = Writer::start(store.clone()).unwrap();
        let r = record();
        writer.put(vec![r.clone()]);
        writer.flush_wait().unwrap();
        let s = r.sighting();
        assert_eq!(store.get(&s.reporter, &s.target).unwrap(), Some(r.encode()));
    }
}
