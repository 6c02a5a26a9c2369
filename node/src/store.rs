//! Durable storage of the ledger, behind a small trait so the engine does not depend on
//! sled (the seam if sled ever has to go, as it did for garage).
//!
//! Tree names carry a version (`records.v1`): a future format change writes a new tree
//! and migrates, instead of misreading old bytes. Records are keyed by
//! `reporter (32 bytes) || encoded target`, so a newer record of the same reporter and
//! target overwrites the older one in place, exactly like the ledger.
//!
//! sled flushes to disk in the background every 500 ms; [`Store::flush`] forces it, and
//! the engine calls it before acknowledging any write made through the API.

use anyhow::Context;
use fraudmesh::identity::PublicKey;
use fraudmesh::sighting::Record;
use fraudmesh::target::Target;
use prost::Message;
use std::path::Path;

/// The records tree.
const RECORDS_TREE: &str = "records.v1";

/// What the engine needs from storage.
pub trait Store: Send {
    /// Calls `f` with every stored record's encoded bytes, one at a time (a million
    /// records must not be held twice in memory while the ledger is rebuilt).
    fn for_each(&self, f: &mut dyn FnMut(&[u8]) -> anyhow::Result<()>) -> anyhow::Result<()>;
    /// Inserts or replaces records (keyed by reporter and target).
    fn put(&mut self, records: &[&Record]) -> anyhow::Result<()>;
    /// The stored bytes of one (reporter, target), if any.
    fn get(&self, reporter: &PublicKey, target: &Target) -> anyhow::Result<Option<Vec<u8>>>;
    /// Removes the records of these (reporter, target) keys.
    fn remove(&mut self, keys: &[(PublicKey, Target)]) -> anyhow::Result<()>;
    /// Makes everything written so far durable.
    fn flush(&mut self) -> anyhow::Result<()>;
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
}

#[cfg(test)]
impl SledStore {
    /// Writes raw bytes under a raw key (tests of corrupt data).
    pub fn put_raw(&mut self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
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

    fn put(&mut self, records: &[&Record]) -> anyhow::Result<()> {
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

    fn remove(&mut self, keys: &[(PublicKey, Target)]) -> anyhow::Result<()> {
        let mut batch = sled::Batch::default();
        for (reporter, target) in keys {
            batch.remove(key(reporter, target));
        }
        self.records.apply_batch(batch).context("removing records")
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.db.flush().context("flushing the database")?;
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}
