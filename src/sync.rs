//! Anti-entropy: range-based set reconciliation of the active record ids between two
//! peers, so that a node that joined late, restarted or was cut off catches up with
//! traffic proportional to what it misses, not to the size of the list.
//!
//! The protocol is negentropy v1 (<https://github.com/hoytech/negentropy>), implemented by
//! the `negentropy` crate; this module chooses the set, bounds the work a peer can cause,
//! and turns the crate's errors into typed ones. It is pure: no I/O, no clock (the caller
//! passes `now`), and the same inputs always give the same messages.
//!
//! # What is reconciled
//! The set is [`items`]: one [`Item`] `(observed_at, id)` per ledger entry that is
//! *active* at `now`, where `id` is the record id, SHA-256 of the signed bytes. Only the
//! unexpired window is listed, so expired records never travel: neither side offers
//! them nor asks for them. Items are ordered by observed-at (then id), which is the
//! order negentropy splits ranges in: a range is a time window. Old windows hold records
//! every node has had for a long time and settle with one matching fingerprint; the
//! differences of a node that was away for an hour sit in the last hour and only that
//! window is split down to ids.
//!
//! Two edges are harmless by construction. Each side lists its set at its own `now`, so
//! a record that expires between the two clocks is a difference; the receiver refuses it
//! as expired, exactly as on gossip. And the ledger keeps only the newest record per
//! (reporter, target): a peer still holding an older record of the same key sees both ids
//! as differences; it receives the newer one, which replaces its old one, while the old
//! one it offers is stale at the other side and dropped there.
//!
//! # Message flow
//! The [`Initiator`] opens a session ([`Initiator::new`]): its first message covers the
//! whole set as 16 ranges with a fingerprint each (or lists every id, below 32 items).
//! The [`Responder`] answers each range ([`Responder::respond`]): an equal fingerprint
//! settles it; a different one is split into 16 sub-ranges with their fingerprints, or,
//! when the range holds fewer than 32 items, answered with the list of every id it holds
//! there. The initiator does the same with the answer ([`Initiator::step`]), and every id
//! list it receives settles that range for good: ids it holds there that the list lacks
//! go to [`Initiator::have`], ids in the list it lacks go to [`Initiator::need`]. The
//! session is over when the initiator has nothing left to say (`step` returns `None`).
//!
//! Each round trip divides the differing ranges by 16 twice (once per side), so the
//! number of round trips grows with log₁₆ of the set size: on a set of a million
//! records, 10, 1,000 or 100,000 differences take 3 round trips when messages are large
//! enough. Then the caller moves the records themselves: it fetches `need` from the peer
//! and pushes `have` to it, and every record is validated on arrival like a gossiped one
//! (size, clock window, signature, id = SHA-256 of the bytes received).
//!
//! What it costs (`benches/sync.rs`, a million records per side): differences that fall
//! in one recent window, as after an outage, cost 27–37 bytes each at 100,000 and
//! ~390 bytes each at 1,000; differences spread evenly over the whole week are the worst
//! case, ~1.4 kB each at 1,000 and ~470 bytes each at 100,000, because a differing range
//! ends as a list of all ~15 ids of its smallest range, sent by both sides. A fresh node
//! pays 32 bytes per id it fetches.
//!
//! The responder keeps no state between messages: each message names the bounds of its
//! ranges, so a node can build a fresh [`Responder`] per request from its current items
//! (a request-response protocol serves it). If the set changed in between, the session
//! still ends correctly; what was added meanwhile is found by the next session.
//!
//! # Bounds
//! - A message is at most [`MAX_MESSAGE_BYTES`]; a larger one is refused before it is
//!   parsed. The frame size limit given to [`Initiator::new`] / [`Responder::new`] makes
//!   each side stop filling a message near that size and send a single fingerprint for the
//!   rest of the set instead, so big differences take more round trips, never bigger
//!   messages. It must lie in [`MIN_FRAME_SIZE_LIMIT`]`..=`[`MAX_MESSAGE_BYTES`]; `0`
//!   selects [`MAX_MESSAGE_BYTES`]. (Negentropy's own "0 = unlimited" is not offered: a
//!   peer could then ask for every id in one message, 32 MB at a million records, with a
//!   five-byte request.)
//! - A session is at most [`MAX_ROUNDS`] round trips. The ids found in completed rounds
//!   stay valid when a session is cut off, so a caller may move those records and start
//!   a new session that continues with what is left.
//! - Answering one message costs the responder time linear in the set plus the message
//!   (ranges are disjoint and ascending); the node bounds how often a peer may ask.
//!
//! # Lying peers and forged fingerprints
//! A negentropy fingerprint of a range is the first 16 bytes of
//! SHA-256(`sum` ‖ varint(`count`)), where `sum` is the sum of the range's 32-byte ids
//! read as little-endian integers, modulo 2²⁵⁶, and `count` the number of ids. Two sides
//! with equal fingerprints settle the range without exchanging its ids.
//!
//! Reconciliation is not a proof, and fingerprints are not what stops a liar. A peer
//! chooses the set it presents: to hide records from its partner it needs no forgery at
//! all; it leaves them out of its set, or answers a range as settled, or answers with the
//! bare version byte, which the initiator reads as "nothing differs"
//! (`version_only_answer_ends_the_session` below). No reconciliation protocol can prevent
//! this. What bounds the harm is elsewhere:
//! - sync only adds: `have` and `need` lead to transfers of signed records, each checked on
//!   arrival. A lie can make a node miss records, or fetch ids that do not exist (bounded
//!   by the message and round bounds), never accept a false record or drop a true one;
//! - a liar withholds only what it would itself have delivered, in that session. Gossip
//!   floods every record through the mesh and a node syncs with several peers, any one
//!   of which delivers it. Hiding records harms the liar's own partners' catch-up from
//!   the liar, nothing more.
//!
//! What fingerprints must guarantee is that two *honest* peers never settle a range on
//! which they differ, even when a third party shapes their sets:
//! - By accident: ids are SHA-256 outputs of signed bytes, so range sums are uniform;
//!   two different ranges compare equal with probability about 2⁻¹²⁸.
//! - With records the attacker did not sign: an id is SHA-256(payload ‖ signature) of
//!   bytes signed by their reporter. The attacker can neither choose the id of a record
//!   signed by someone else (a SHA-256 preimage) nor create records in another
//!   reporter's name (an ed25519 forgery), so it cannot make another reporter's records
//!   cancel out of a sum by itself.
//! - With records the attacker signs itself, it *can* choose among ids freely: every
//!   fresh signature (a new nonce, a new count or evidence string) is a new random id, for
//!   about the cost of one signature. The SHA-256 over the sum does not help once sums and
//!   counts are equal, and the sum is linear. If honest A holds S ∪ {R} ∪ P and honest B
//!   holds S ∪ Q, with P and Q the attacker's records, |Q| = |P| + 1 and
//!   Σ Q − Σ P ≡ id(R) (mod 2²⁵⁶), every range covering R, P and Q has the same
//!   fingerprint at A and at B, and their session does not move R from A to B. Finding
//!   such P and Q is a k-sum (generalised birthday) problem modulo 2²⁵⁶; Wagner's k-tree
//!   algorithm solves it with k = 2ᵃ of the attacker's records for about k·2^(256/(a+1))
//!   signatures: ~2³⁹ with 128 records, ~2³³ (a couple of core-days at ~50,000
//!   signatures a second) with 1,024, ~2³¹ (half a core-day) with 32,768. (The weak point
//!   is the linear sum, not the 16-byte truncation: colliding the truncated hashes of two
//!   different sums would take ~2⁶⁴.) This is the best attack we know of; it is feasible
//!   for a patient attacker, not cheap, and it buys little: the work
//!   starts only once R exists and is being gossiped; the attacker needs thousands of
//!   its own active records (bounded per reporter and for all strangers together, and
//!   each one exposing its key); the records must sit in exactly those ranges at
//!   exactly those two peers; and any gossip message or third peer that moves R, or any
//!   one of P and Q, ends the effect. Without a target (Σ Q = Σ P: keeping two peers'
//!   views of the attacker's *own* records apart) the work can be done in advance, but
//!   the effect again lasts only until gossip or a third peer moves one of those records,
//!   and a stranger's records cannot block anything on their own. In every case the
//!   result is a delayed catch-up between one pair of peers, never a forged, dropped or
//!   wrongly accepted record.

use crate::ledger::Ledger;
use crate::sighting::RecordId;
use crate::Millis;
use negentropy::{Id, Negentropy, NegentropyStorageVector};
use std::collections::HashSet;

/// One element of the reconciliation set: `(observed_at, id)` of an active record.
pub type Item = (Millis, RecordId);

/// Largest negentropy message either side sends or accepts: 2 MiB.
///
/// It holds about 65,000 ids, so a peer that lacks a whole million-record list receives
/// it in about 16 round trips, while one message stays a modest allocation; with the
/// length prefix and the protobuf envelope of `/fraudmesh/sync/1` it stays well within
/// that protocol's 4 MiB bound. At 1,000 differences on a million records the largest
/// message is about half a megabyte, so the common case never hits the bound.
pub const MAX_MESSAGE_BYTES: usize = 2 * 1024 * 1024;

/// Smallest frame size limit negentropy accepts.
pub const MIN_FRAME_SIZE_LIMIT: u64 = 4096;

/// Most round trips in one session.
///
/// Bounds what one session can cost: at most `MAX_ROUNDS` answers of at most
/// [`MAX_MESSAGE_BYTES`] each. Measured on a million records with the largest frames
/// (`benches/sync.rs`): a fresh node fetching every id takes 16 round trips, 100,000
/// differences spread over the whole week 26. Smaller frames take more (with 500 kB
/// frames: 65 and 102). A session that needs more ends with [`Error::TooManyRounds`]
/// while keeping the ids found so far, so the caller moves those records and the next
/// session starts from a smaller difference.
pub const MAX_ROUNDS: usize = 64;

/// The reconciliation set: active entries of the ledger at `now`, sorted by
/// `(observed_at, id)`.
///
/// An entry observed at `u64::MAX` is left out: that timestamp is the protocol's
/// "infinity" bound and cannot be reconciled (no accepted record has it: it would be
/// future-dated).
pub fn items(ledger: &Ledger, now: Millis) -> Vec<Item> {
    let mut out: Vec<Item> = ledger
        .entries()
        .filter(|e| e.is_active(now) && e.observed_at() != u64::MAX)
        .map(|e| (e.observed_at(), *e.id()))
        .collect();
    out.sort_unstable();
    out
}

/// Why a reconciliation step failed. Every error ends the session.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A received message is larger than [`MAX_MESSAGE_BYTES`]; refused unparsed.
    #[error("message of {len} bytes exceeds the bound of {max}")]
    Oversized {
        /// Size of the received message, bytes.
        len: usize,
        /// The bound, [`MAX_MESSAGE_BYTES`].
        max: usize,
    },
    /// A received message does not parse: truncated, an unknown mode, a bound longer than
    /// an id, a missing or invalid version byte.
    #[error("garbled message: {0}")]
    Garbled(#[source] negentropy::Error),
    /// The responder answered in another negentropy protocol version (a version this
    /// side does not speak, so not necessarily a fault).
    #[error("peer speaks another negentropy protocol version")]
    UnsupportedVersion,
    /// The session needed more than [`MAX_ROUNDS`] round trips. The ids found so far are
    /// kept and valid.
    #[error("no agreement after {max} round trips")]
    TooManyRounds {
        /// The bound, [`MAX_ROUNDS`].
        max: usize,
    },
    /// [`Initiator::step`] was called after the session ended.
    #[error("the session is already over")]
    Finished,
    /// The frame size limit is neither 0 nor within
    /// [`MIN_FRAME_SIZE_LIMIT`]`..=`[`MAX_MESSAGE_BYTES`].
    #[error("frame size limit {0} is outside {MIN_FRAME_SIZE_LIMIT}..={MAX_MESSAGE_BYTES} (0 selects the maximum)")]
    FrameSizeLimit(u64),
    /// An item is observed at `u64::MAX`, the protocol's infinity bound.
    #[error("an item is observed at u64::MAX, which the protocol reserves")]
    ReservedTimestamp,
    /// Negentropy refused an operation for another reason. No peer input is known to
    /// cause this; it would be a bug here.
    #[error("negentropy: {0}")]
    Protocol(#[source] negentropy::Error),
}

impl Error {
    /// A short, stable label for metrics (`reason="..."`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Oversized { .. } => "oversized",
            Self::Garbled(_) => "garbled",
            Self::UnsupportedVersion => "unsupported_version",
            Self::TooManyRounds { .. } => "too_many_rounds",
            Self::Finished => "finished",
            Self::FrameSizeLimit(_) => "frame_size_limit",
            Self::ReservedTimestamp => "reserved_timestamp",
            Self::Protocol(_) => "protocol",
        }
    }

    /// Whether the peer certainly broke the protocol (it sent something oversized or
    /// malformed). [`Error::TooManyRounds`] is not counted: an honest peer reaches it on
    /// big differences with small frames (as does one stalling on purpose).
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, Self::Oversized { .. } | Self::Garbled(_))
    }
}

/// Sorts negentropy's errors into ours: parse failures are the peer's garbling.
fn classify(e: negentropy::Error) -> Error {
    use negentropy::Error as N;
    match e {
        N::ParseEndsPrematurely
        | N::UnexpectedMode(_)
        | N::IdTooBig
        | N::InvalidIdSize
        | N::ProtocolVersionNotFound
        | N::InvalidProtocolVersion
        | N::TryFromSlice => Error::Garbled(e),
        N::UnsupportedProtocolVersion => Error::UnsupportedVersion,
        other => Error::Protocol(other),
    }
}

fn check_size(msg: &[u8]) -> Result<(), Error> {
    if msg.len() > MAX_MESSAGE_BYTES {
        return Err(Error::Oversized {
            len: msg.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    Ok(())
}

fn frame_size_limit(limit: u64) -> Result<u64, Error> {
    match limit {
        0 => Ok(MAX_MESSAGE_BYTES as u64),
        l if (MIN_FRAME_SIZE_LIMIT..=MAX_MESSAGE_BYTES as u64).contains(&l) => Ok(l),
        l => Err(Error::FrameSizeLimit(l)),
    }
}

/// A sealed negentropy session over `items` (sorted and de-duplicated by sealing).
fn session(items: &[Item], frame_size_limit: u64) -> Result<Negentropy<'static, NegentropyStorageVector>, Error> {
    let limit = self::frame_size_limit(frame_size_limit)?;
    let mut storage = NegentropyStorageVector::with_capacity(items.len());
    for &(at, id) in items {
        if at == u64::MAX {
            return Err(Error::ReservedTimestamp);
        }
        storage.insert(at, Id::from_byte_array(id)).map_err(Error::Protocol)?;
    }
    storage.seal().map_err(Error::Protocol)?;
    Negentropy::owned(storage, limit).map_err(Error::Protocol)
}

/// Ids gathered over a session, each once.
#[derive(Debug, Default)]
struct IdSet {
    list: Vec<RecordId>,
    seen: HashSet<RecordId>,
}

impl IdSet {
    fn extend(&mut self, ids: Vec<Id>) {
        for id in ids {
            let id = id.to_bytes();
            if self.seen.insert(id) {
                self.list.push(id);
            }
        }
    }
}

/// The side that starts a session.
#[derive(Debug)]
pub struct Initiator {
    neg: Negentropy<'static, NegentropyStorageVector>,
    have: IdSet,
    need: IdSet,
    rounds: usize,
    finished: bool,
}

impl Initiator {
    /// Starts a session over `items`; returns the first message to send.
    ///
    /// `items` need not be sorted; exact duplicates are merged. `frame_size_limit` bounds
    /// every message this side sends: 0 (the maximum, [`MAX_MESSAGE_BYTES`]) or
    /// [`MIN_FRAME_SIZE_LIMIT`]`..=`[`MAX_MESSAGE_BYTES`].
    pub fn new(items: &[Item], frame_size_limit: u64) -> Result<(Self, Vec<u8>), Error> {
        let mut neg = session(items, frame_size_limit)?;
        let first = neg.initiate().map_err(Error::Protocol)?;
        let me = Self {
            neg,
            have: IdSet::default(),
            need: IdSet::default(),
            rounds: 0,
            finished: false,
        };
        Ok((me, first))
    }

    /// Feeds the responder's answer. Returns the next message to send (`None` when done)
    /// and accumulates ids: `have` = ids we hold that the peer lacks, `need` = ids the
    /// peer holds that we lack.
    ///
    /// Any error ends the session; the ids gathered in earlier rounds are kept (those of
    /// the failing answer are not).
    pub fn step(&mut self, answer: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if self.finished {
            return Err(Error::Finished);
        }
        self.rounds += 1;
        self.finished = true;
        check_size(answer)?;
        let (mut have, mut need) = (Vec::new(), Vec::new());
        let next = self
            .neg
            .reconcile_with_ids(answer, &mut have, &mut need)
            .map_err(classify)?;
        self.have.extend(have);
        self.need.extend(need);
        match next {
            None => Ok(None),
            Some(_) if self.rounds >= MAX_ROUNDS => Err(Error::TooManyRounds { max: MAX_ROUNDS }),
            Some(msg) => {
                // Negentropy keeps every message under the frame size limit, itself at
                // most MAX_MESSAGE_BYTES; checked anyway, as the peer will.
                check_size(&msg)?;
                self.finished = false;
                Ok(Some(msg))
            }
        }
    }

    /// Ids we hold that the peer lacks (so far), each once, in the order found.
    pub fn have(&self) -> &[RecordId] {
        &self.have.list
    }

    /// Ids the peer holds that we lack (so far), each once, in the order found. These are
    /// the peer's claims: the records fetched for them must be verified.
    pub fn need(&self) -> &[RecordId] {
        &self.need.list
    }

    /// Answers processed so far (round trips).
    pub fn rounds(&self) -> usize {
        self.rounds
    }

    /// Whether the session is over (done, or ended by an error).
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// The answering side: stateless per message (the node builds it per request from its
/// current items, so a request-response protocol can serve it). One responder may also
/// answer any number of messages, of any sessions, while its items stay current.
#[derive(Debug)]
pub struct Responder {
    neg: Negentropy<'static, NegentropyStorageVector>,
}

impl Responder {
    /// A responder over `items` (need not be sorted; exact duplicates are merged).
    /// `frame_size_limit` as for [`Initiator::new`].
    pub fn new(items: &[Item], frame_size_limit: u64) -> Result<Self, Error> {
        Ok(Self {
            neg: session(items, frame_size_limit)?,
        })
    }

    /// The answer to one message of an initiator.
    ///
    /// A message in another negentropy version (`0x60..=0x6f` but not `0x61`) is answered
    /// with the bare v1 version byte, as the protocol asks, telling the initiator which
    /// version this side speaks. (To a v1 initiator the same bare byte means "nothing
    /// differs".)
    pub fn respond(&mut self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        check_size(msg)?;
        self.neg.reconcile(msg).map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::sighting::{sign, Draft, Evidence, Kind};
    use crate::target::{Bounds, Target};
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use std::collections::{BTreeSet, HashMap};

    /// What one session put on the wire.
    #[derive(Debug, Default)]
    struct Wire {
        rounds: usize,
        bytes: usize,
        largest: usize,
    }

    /// Runs a full session of `a` (initiator) against `b` (responder). With `fresh`, the
    /// responder is rebuilt for every message, as a request-response node does.
    fn reconcile(a: &[Item], b: &[Item], frame: u64, fresh: bool) -> (Initiator, Wire) {
        let (mut init, mut msg) = Initiator::new(a, frame).unwrap();
        let mut resp = Responder::new(b, frame).unwrap();
        let mut wire = Wire::default();
        loop {
            if fresh {
                resp = Responder::new(b, frame).unwrap();
            }
            let answer = resp.respond(&msg).unwrap();
            wire.bytes += msg.len() + answer.len();
            wire.largest = wire.largest.max(msg.len()).max(answer.len());
            match init.step(&answer).unwrap() {
                Some(next) => msg = next,
                None => break,
            }
        }
        wire.rounds = init.rounds();
        assert!(init.is_finished());
        (init, wire)
    }

    fn random_id(rng: &mut StdRng) -> RecordId {
        rng.gen()
    }

    /// Two overlapping sets out of `universe` random items: each item is left out of `a`
    /// with probability `pa`, out of `b` with `pb` (and dropped when out of both).
    /// Timestamps come from `0..span`: a small span makes many equal timestamps.
    fn two_sets(seed: u64, universe: usize, pa: f64, pb: f64, span: u64) -> (Vec<Item>, Vec<Item>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..universe {
            let item = (rng.gen_range(0..span), random_id(&mut rng));
            let in_a = !rng.gen_bool(pa);
            let in_b = !rng.gen_bool(pb);
            if in_a {
                a.push(item);
            }
            if in_b {
                b.push(item);
            }
        }
        a.shuffle(&mut rng);
        (a, b)
    }

    /// Checks that applying have/need makes both sides equal, and that exactly the
    /// symmetric difference was named, each id once.
    fn assert_exact(a: &[Item], b: &[Item], init: &Initiator) {
        let sa: HashMap<RecordId, Item> = a.iter().map(|i| (i.1, *i)).collect();
        let sb: HashMap<RecordId, Item> = b.iter().map(|i| (i.1, *i)).collect();
        let only_a = sa.keys().filter(|id| !sb.contains_key(*id)).count();
        let only_b = sb.keys().filter(|id| !sa.contains_key(*id)).count();
        assert!(init.have().iter().all(|id| sa.contains_key(id) && !sb.contains_key(id)));
        assert!(init.need().iter().all(|id| sb.contains_key(id) && !sa.contains_key(id)));
        assert_eq!(init.have().len() + init.need().len(), only_a + only_b);
        // Apply: a gains need (from b), b gains have (from a).
        let mut a2: BTreeSet<Item> = a.iter().copied().collect();
        let mut b2: BTreeSet<Item> = b.iter().copied().collect();
        a2.extend(init.need().iter().map(|id| sb[id]));
        b2.extend(init.have().iter().map(|id| sa[id]));
        assert_eq!(a2, b2);
        assert_eq!(a2.len(), sa.len() + only_b);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// Up to 10k items per side, unlimited frames (the 2 MiB maximum).
        #[test]
        fn two_replicas_converge_exactly(
            seed in any::<u64>(),
            universe in 0..=10_000usize,
            pa in 0.0..0.5f64,
            pb in 0.0..0.5f64,
            small_span in any::<bool>(),
            fresh in any::<bool>(),
        ) {
            let span = if small_span { 500 } else { 1_000_000_000 };
            let (a, b) = two_sets(seed, universe, pa, pb, span);
            let (init, wire) = reconcile(&a, &b, 0, fresh);
            assert_exact(&a, &b, &init);
            prop_assert!(wire.largest <= MAX_MESSAGE_BYTES);
        }

        /// The smallest frames, with many differences, so both sides cut messages and
        /// re-send fingerprints for the rest: still exact, every message within the limit.
        #[test]
        fn frame_limited_sessions_converge_exactly(
            seed in any::<u64>(),
            universe in 0..=4_000usize,
            pa in 0.0..0.6f64,
            pb in 0.0..0.6f64,
            small_span in any::<bool>(),
        ) {
            let span = if small_span { 50 } else { 1_000_000_000 };
            let (a, b) = two_sets(seed, universe, pa, pb, span);
            let (init, wire) = reconcile(&a, &b, MIN_FRAME_SIZE_LIMIT, true);
            assert_exact(&a, &b, &init);
            prop_assert!(wire.largest <= MIN_FRAME_SIZE_LIMIT as usize);
        }
    }

    #[test]
    fn identical_and_empty_sets() {
        let (a, _) = two_sets(1, 3000, 0.0, 0.0, 1 << 40);
        let (init, wire) = reconcile(&a, &a, 0, false);
        assert!(init.have().is_empty() && init.need().is_empty());
        assert_eq!(wire.rounds, 1);
        // Fingerprints only: 16 ranges of 16 bytes and a bound each, both ways.
        assert!(wire.bytes < 1000, "{} bytes", wire.bytes);
        let (init, _) = reconcile(&[], &a, 0, false);
        assert_eq!(init.need().len(), a.len());
        let (init, _) = reconcile(&a, &[], 0, false);
        assert_eq!(init.have().len(), a.len());
        let (init, _) = reconcile(&[], &[], 0, false);
        assert!(init.have().is_empty() && init.need().is_empty());
    }

    #[test]
    fn all_timestamps_equal() {
        // Ranges are then told apart by id prefixes in the bounds.
        let (a, b) = two_sets(7, 5000, 0.1, 0.1, 1);
        let (init, _) = reconcile(&a, &b, 0, true);
        assert_exact(&a, &b, &init);
    }

    #[test]
    fn a_fresh_node_catches_up_in_frame_sized_rounds() {
        let (b, _) = two_sets(3, 6000, 0.0, 0.0, 1 << 40);
        let (init, wire) = reconcile(&[], &b, MIN_FRAME_SIZE_LIMIT, true);
        assert_eq!(init.need().len(), b.len());
        // About (4096 - 200) / 32 = 121 ids per answer.
        assert!(wire.rounds >= b.len() / 122, "{} rounds", wire.rounds);
    }

    #[test]
    fn fresh_and_reused_responders_answer_the_same() {
        let (a, b) = two_sets(11, 8000, 0.05, 0.05, 1 << 40);
        let (mut init, mut msg) = Initiator::new(&a, 0).unwrap();
        let mut reused = Responder::new(&b, 0).unwrap();
        loop {
            let answer = reused.respond(&msg).unwrap();
            assert_eq!(answer, Responder::new(&b, 0).unwrap().respond(&msg).unwrap());
            match init.step(&answer).unwrap() {
                Some(next) => msg = next,
                None => break,
            }
        }
        assert_exact(&a, &b, &init);
    }

    #[test]
    fn unsorted_input_and_duplicates_are_normalised() {
        let (a, b) = two_sets(5, 2000, 0.2, 0.2, 1 << 40);
        let mut a_dup = a.clone();
        a_dup.extend_from_slice(&a[..500]);
        a_dup.reverse();
        let (init, _) = reconcile(&a_dup, &b, 0, false);
        assert_exact(&a, &b, &init);
    }

    /// A replica in the simulation.
    struct Replica {
        items: BTreeSet<Item>,
    }

    fn sync_pair(reps: &mut [Replica], i: usize, j: usize, universe: &HashMap<RecordId, Item>) {
        let a: Vec<Item> = reps[i].items.iter().copied().collect();
        let b: Vec<Item> = reps[j].items.iter().copied().collect();
        let (init, _) = reconcile(&a, &b, 0, true);
        let (have, need) = (init.have().to_vec(), init.need().to_vec());
        reps[j].items.extend(have.iter().map(|id| universe[id]));
        reps[i].items.extend(need.iter().map(|id| universe[id]));
    }

    /// Replicas start with random subsets; the network is split into random partitions
    /// in which random pairs sync while new records appear; then the partitions heal.
    /// Nothing crosses a partition while it stands, and afterwards everyone converges to
    /// the union within a bounded number of rounds.
    fn simulate(seed: u64) -> usize {
        const REPLICAS: usize = 24;
        const INITIAL: usize = 300;
        const SPLIT_ROUNDS: usize = 6;
        const HEAL_BOUND: usize = 10;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut universe: HashMap<RecordId, Item> = HashMap::new();
        let fresh_item = |rng: &mut StdRng, universe: &mut HashMap<RecordId, Item>| {
            let item = (rng.gen_range(1_700_000_000_000..1_700_000_600_000u64), random_id(rng));
            universe.insert(item.1, item);
            item
        };
        let initial: Vec<Item> = (0..INITIAL).map(|_| fresh_item(&mut rng, &mut universe)).collect();
        let mut reps: Vec<Replica> = (0..REPLICAS)
            .map(|_| Replica {
                items: initial.iter().copied().filter(|_| rng.gen_bool(0.2)).collect(),
            })
            .collect();

        // Two epochs, each splitting the network into 2–4 new random partitions.
        for _ in 0..2 {
            let parts = rng.gen_range(2..=4usize);
            let part_of: Vec<usize> = (0..REPLICAS).map(|_| rng.gen_range(0..parts)).collect();
            let mut made_in: HashMap<RecordId, usize> = HashMap::new();
            for _ in 0..SPLIT_ROUNDS {
                for _ in 0..3 {
                    let r = rng.gen_range(0..REPLICAS);
                    let item = fresh_item(&mut rng, &mut universe);
                    made_in.insert(item.1, part_of[r]);
                    reps[r].items.insert(item);
                }
                for i in 0..REPLICAS {
                    let peers: Vec<usize> = (0..REPLICAS).filter(|&j| j != i && part_of[j] == part_of[i]).collect();
                    if let Some(&j) = peers.choose(&mut rng) {
                        sync_pair(&mut reps, i, j, &universe);
                    }
                }
            }
            for (r, rep) in reps.iter().enumerate() {
                for item in &rep.items {
                    if let Some(&p) = made_in.get(&item.1) {
                        assert_eq!(p, part_of[r], "seed {seed}: a record crossed a partition");
                    }
                }
            }
        }

        // Heal: everyone syncs with a random peer each round.
        let union: BTreeSet<Item> = reps.iter().flat_map(|r| r.items.iter().copied()).collect();
        for round in 1..=HEAL_BOUND {
            for i in 0..REPLICAS {
                let j = (i + rng.gen_range(1..REPLICAS)) % REPLICAS;
                sync_pair(&mut reps, i, j, &universe);
            }
            if reps.iter().all(|r| r.items == union) {
                return round;
            }
        }
        panic!("seed {seed}: no convergence within {HEAL_BOUND} rounds after healing");
    }

    #[test]
    fn partitioned_replicas_converge_after_healing() {
        for seed in 1..=8 {
            let rounds = simulate(seed);
            eprintln!("seed {seed}: converged {rounds} rounds after healing");
        }
    }

    fn record(reporter: u8, target: &str, observed_at: Millis, ttl_s: u32) -> crate::sighting::Record {
        sign(
            &Identity::from_secret([reporter; 32]),
            Draft {
                target: Target::parse(target, Bounds::default()).unwrap(),
                kind: Kind::Scan,
                observed_at,
                ttl_s,
                count: 1,
                evidence: Evidence::default(),
            },
        )
    }

    #[test]
    fn items_are_the_active_entries_sorted() {
        const NOW: Millis = 1_700_000_000_000;
        let records = [
            record(1, "1.1.1.1", NOW - 10_000, 60),   // active
            record(2, "1.1.1.1", NOW - 120_000, 60),  // expired
            record(1, "2.2.2.2", NOW - 50_000, 3600), // active
            record(3, "3.3.3.3", NOW - 60_000, 60),   // expires exactly at NOW
            record(2, "+41900", NOW + 1_000, 60),     // future but within skew: active
            record(3, "4.4.4.4", NOW - 50_000, 600),  // same time as another: ordered by id
            record(4, "5.5.5.5", u64::MAX, 60),       // the protocol's infinity: never listed
        ];
        let mut ledger = Ledger::new();
        for r in &records {
            ledger.merge(r);
        }
        let got = items(&ledger, NOW);
        let mut want: Vec<Item> = [0, 2, 4, 5]
            .iter()
            .map(|&i| (records[i].sighting().observed_at, *records[i].id()))
            .collect();
        want.sort();
        assert_eq!(got, want);
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ledger.len(), records.len());
        assert_eq!(items(&ledger, NOW - 200_000).len(), records.len() - 1);
        assert!(items(&ledger, u64::MAX).is_empty());
    }

    fn small_sets() -> (Vec<Item>, Vec<Item>) {
        two_sets(99, 400, 0.2, 0.2, 1 << 40)
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000), v1 in any::<bool>()) {
            let (a, b) = small_sets();
            let mut bytes = bytes;
            if v1 && !bytes.is_empty() {
                bytes[0] = 0x61;
            }
            let _ = Responder::new(&b, 0).unwrap().respond(&bytes);
            let (mut init, _) = Initiator::new(&a, 0).unwrap();
            let _ = init.step(&bytes);
        }

        #[test]
        fn mangled_messages_never_panic(
            at in any::<prop::sample::Index>(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<bool>(),
        ) {
            let (a, b) = small_sets();
            let (_, first) = Initiator::new(&a, 0).unwrap();
            let mut resp = Responder::new(&b, 0).unwrap();
            let answer = resp.respond(&first).unwrap();
            for original in [first, answer] {
                let mut m = original;
                for (i, x) in &flips {
                    let i = i.index(m.len());
                    m[i] ^= x;
                }
                if cut {
                    m.truncate(at.index(m.len() + 1));
                }
                let _ = resp.respond(&m);
                let (mut init, _) = Initiator::new(&a, 0).unwrap();
                let _ = init.step(&m);
            }
        }
    }

    #[test]
    fn garbled_and_oversized_messages_are_errors() {
        let (a, b) = small_sets();
        let mut resp = Responder::new(&b, 0).unwrap();
        let step = |m: &[u8]| Initiator::new(&a, 0).unwrap().0.step(m);

        let huge = vec![0x61; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(resp.respond(&huge), Err(Error::Oversized { .. })));
        assert!(matches!(step(&huge), Err(Error::Oversized { .. })));

        assert!(matches!(resp.respond(&[]), Err(Error::Garbled(_))));
        assert!(matches!(step(&[]), Err(Error::Garbled(_))));
        // Not a negentropy version byte at all.
        assert!(matches!(resp.respond(&[0x10]), Err(Error::Garbled(_))));
        // Mode 7 does not exist.
        assert!(matches!(
            resp.respond(&[0x61, 0x00, 0x00, 0x07]),
            Err(Error::Garbled(_))
        ));
        // An id list claiming 2^34 ids with none following.
        let lie = [0x61, 0x00, 0x00, 0x02, 0xc0, 0x80, 0x80, 0x80, 0x00];
        assert!(matches!(resp.respond(&lie), Err(Error::Garbled(_))));
        assert!(matches!(step(&lie), Err(Error::Garbled(_))));
        // A bound longer than an id.
        assert!(matches!(resp.respond(&[0x61, 0x00, 0x21]), Err(Error::Garbled(_))));
        // A truncated fingerprint.
        assert!(matches!(
            resp.respond(&[0x61, 0x00, 0x00, 0x01, 1, 2, 3]),
            Err(Error::Garbled(_))
        ));

        // Another version: the responder says which it speaks, the initiator gives up.
        assert_eq!(resp.respond(&[0x62]).unwrap(), vec![0x61]);
        assert!(matches!(step(&[0x62]), Err(Error::UnsupportedVersion)));

        assert!(Error::Oversized { len: 1, max: 0 }.is_peer_fault());
        assert!(!Error::TooManyRounds { max: MAX_ROUNDS }.is_peer_fault());
        assert_eq!(Error::UnsupportedVersion.label(), "unsupported_version");
    }

    #[test]
    fn an_error_ends_the_session_and_keeps_earlier_ids() {
        // Small frames: ids are found in rounds that are not the last.
        let (a, b) = two_sets(21, 3000, 0.3, 0.3, 1 << 40);
        let (mut init, mut msg) = Initiator::new(&a, MIN_FRAME_SIZE_LIMIT).unwrap();
        let mut resp = Responder::new(&b, MIN_FRAME_SIZE_LIMIT).unwrap();
        while init.have().len() + init.need().len() == 0 {
            msg = init.step(&resp.respond(&msg).unwrap()).unwrap().unwrap();
        }
        let found = (init.have().len(), init.need().len());
        assert!(matches!(init.step(&[0x61, 0x00, 0x00, 0x09]), Err(Error::Garbled(_))));
        assert!(init.is_finished());
        assert!(matches!(init.step(&[0x61]), Err(Error::Finished)));
        assert_eq!((init.have().len(), init.need().len()), found);
    }

    #[test]
    fn a_finished_session_refuses_more() {
        let (a, b) = small_sets();
        let (mut init, _) = reconcile(&a, &b, 0, false);
        assert!(matches!(init.step(&[0x61]), Err(Error::Finished)));
    }

    #[test]
    fn version_only_answer_ends_the_session() {
        // A peer that answers with the bare version byte claims "nothing differs": the
        // initiator cannot tell this from agreement. Hiding records needs no forgery.
        let (a, _) = small_sets();
        let (mut init, _) = Initiator::new(&a, 0).unwrap();
        assert_eq!(init.step(&[0x61]).unwrap(), None);
        assert!(init.have().is_empty() && init.need().is_empty());
    }

    #[test]
    fn a_peer_that_never_agrees_is_cut_off() {
        // Answers every message with one fingerprint over everything that never matches,
        // so the initiator splits again and again.
        let (a, _) = small_sets();
        let (mut init, _) = Initiator::new(&a, 0).unwrap();
        let mut endless = vec![0x61, 0x00, 0x00, 0x01];
        endless.extend_from_slice(&[0xab; 16]);
        for _ in 1..MAX_ROUNDS {
            assert!(init.step(&endless).unwrap().is_some());
        }
        assert!(matches!(
            init.step(&endless),
            Err(Error::TooManyRounds { max: MAX_ROUNDS })
        ));
        assert_eq!(init.rounds(), MAX_ROUNDS);
        assert!(matches!(init.step(&endless), Err(Error::Finished)));
    }

    #[test]
    fn frame_limits_and_reserved_timestamps_are_checked() {
        let (a, _) = small_sets();
        for bad in [1, MIN_FRAME_SIZE_LIMIT - 1, MAX_MESSAGE_BYTES as u64 + 1, u64::MAX] {
            assert!(matches!(Initiator::new(&a, bad), Err(Error::FrameSizeLimit(l)) if l == bad));
            assert!(matches!(Responder::new(&a, bad), Err(Error::FrameSizeLimit(l)) if l == bad));
        }
        for good in [0, MIN_FRAME_SIZE_LIMIT, MAX_MESSAGE_BYTES as u64] {
            assert!(Initiator::new(&a, good).is_ok());
            assert!(Responder::new(&a, good).is_ok());
        }
        let bad = [(u64::MAX, [1; 32])];
        assert!(matches!(Initiator::new(&bad, 0), Err(Error::ReservedTimestamp)));
        assert!(matches!(Responder::new(&bad, 0), Err(Error::ReservedTimestamp)));
    }
}
