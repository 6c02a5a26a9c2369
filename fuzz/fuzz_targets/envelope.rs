//! `envelope`: gossip bytes → decode → validate → merge into a ledger, the core calls the
//! node's `Engine::gossip` makes in order (`Envelope::decode`, `Pending::check_wire`,
//! `verify_batch`, `AcceptLimits::admit`, `Ledger::merge`), at a fixed clock.
//!
//! Input: the first byte is a mode, the rest an `Envelope`. In "sign" mode (odd first
//! byte) the sightings whose payload decodes are re-signed with one of two fixed keys
//! (their reporter replaced, `observed_at` moved near the clock), chosen per sighting by
//! the first byte's bits, so valid records mix with forged ones without the fuzzer having
//! to find signatures.
//!
//! Properties: a record that passes the checks has the id `wire_id` gives before any
//! verification; a verified record round-trips (`encode` → `decode_stored`, and its wire
//! form through the checks again) to the same id; one record's verdict in a batch is its
//! verdict alone (never depends on its envelope-mates); merging is idempotent and the
//! ledger it gives does not depend on the order records arrive in.
#![no_main]

use ed25519_dalek::{Signer, SigningKey};
use fraudmesh::identity::KeyCache;
use fraudmesh::ledger::Ledger;
use fraudmesh::proto;
use fraudmesh::sighting::{self, wire_id, AcceptLimits, Pending, Record, DOMAIN};
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// The receiver's clock.
const NOW: u64 = 1_800_000_000_000;
/// The node's bound on an envelope (`engine::MAX_ENVELOPE_BYTES`).
const MAX_ENVELOPE_BYTES: usize = 64 * 1024;
/// The node's bound on sightings per envelope (`engine::MAX_ENVELOPE_SIGHTINGS`).
const MAX_ENVELOPE_SIGHTINGS: usize = 256;

fn resign(s: &mut proto::SignedSighting, key: &SigningKey) {
    let Ok(mut p) = proto::Sighting::decode(s.payload.as_ref()) else {
        return;
    };
    p.reporter = key.verifying_key().to_bytes().to_vec().into();
    p.observed_at_ms = NOW - p.observed_at_ms % (10 * 24 * 3600 * 1000);
    let payload = p.encode_to_vec();
    let mut m = vec![DOMAIN.len() as u8];
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&payload);
    s.signature = key.sign(&m).to_bytes().to_vec().into();
    s.payload = payload.into();
}

fn ledger_of(records: &[Record]) -> Vec<(Vec<u8>, [u8; 32])> {
    let mut ledger = Ledger::new();
    for r in records {
        ledger.merge(r);
    }
    let mut out: Vec<_> = ledger
        .entries()
        .map(|e| (e.reporter().as_bytes().to_vec(), *e.id()))
        .collect();
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return;
    }
    let Ok(mut env) = proto::Envelope::decode(bytes) else {
        return;
    };
    if env.sightings.is_empty() || env.sightings.len() > MAX_ENVELOPE_SIGHTINGS {
        return;
    }
    if mode & 1 == 1 {
        let keys = [SigningKey::from_bytes(&[7; 32]), SigningKey::from_bytes(&[9; 32])];
        for (i, s) in env.sightings.iter_mut().enumerate() {
            match (mode >> (1 + i % 7)) & 3 {
                0 => {}
                k => resign(s, &keys[k as usize % 2]),
            }
        }
    }
    let limits = AcceptLimits::default();
    let mut cache = KeyCache::new(16);
    let mut pending = Vec::new();
    for s in &env.sightings {
        if let Ok(p) = Pending::check_wire_cached(s, NOW, &limits, &mut cache) {
            assert_eq!(p.id(), wire_id(s), "the id before verification is not the record's id");
            pending.push(p);
        }
    }
    let alone: Vec<Result<Record, sighting::Error>> = pending.iter().cloned().map(Pending::verify).collect();
    let batch = sighting::verify_batch(pending);
    assert_eq!(alone.len(), batch.len());
    let mut records = Vec::new();
    for (a, b) in alone.iter().zip(&batch) {
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a.id(), b.id()),
            (Err(a), Err(b)) => assert_eq!(a.label(), b.label()),
            _ => panic!("a record's verdict depends on its envelope-mates: alone {a:?}, in the batch {b:?}"),
        }
        let Ok(r) = b else { continue };
        let stored = Record::decode_stored(&r.encode(), &mut cache).expect("a verified record decodes from the store");
        assert_eq!(stored.id(), r.id(), "stored round trip changed the id");
        let wire = r.to_proto();
        assert_eq!(&wire_id(&wire), r.id());
        let again = sighting::verify(
            &wire,
            NOW,
            &AcceptLimits {
                bounds: fraudmesh::target::PROTOCOL_BOUNDS,
                max_ttl_s: sighting::PROTOCOL_MAX_TTL_S,
                ..limits
            },
        )
        .expect("a verified record verifies again from its wire form");
        assert_eq!(again.id(), r.id(), "wire round trip changed the id");
        if limits.admit(r.sighting()).is_ok() {
            records.push(r.clone());
        }
    }
    // Merging: idempotent, and independent of arrival order.
    let mut ledger = Ledger::new();
    for r in &records {
        ledger.merge(r);
    }
    for r in &records {
        assert!(!ledger.merge(r).changed(), "merging a record twice changed the ledger");
    }
    let mut reversed = records.clone();
    reversed.reverse();
    assert_eq!(
        ledger_of(&records),
        ledger_of(&reversed),
        "the ledger depends on arrival order"
    );
});
