//! `sync`: catch-up sync frames against a responder and an initiator holding real sets
//! (`fraudmesh::sync::{Responder, Initiator}`, what the node's sync protocol runs; the
//! frames are decoded as the node decodes them, `SyncRequest` / `SyncResponse`).
//!
//! Input: the first byte is a mode.
//! - 0: the rest is a `SyncRequest` a peer sent: its `reconcile` is answered by a fresh
//!   responder over set A (as the node answers each request); the same bytes as a
//!   `SyncResponse` are fed to an initiator over set B.
//! - 1: a real session of B (initiator) with A (responder) through a meddler: the rest is
//!   a list of (offset, xor) edits applied to the responder's answers, round by round.
//! - 2: the rest is a list of length-prefixed answers fed to an initiator over B.
//!
//! Properties: every message either side sends stays within its frame limit; a session
//! ends within `MAX_ROUNDS` answers and refuses steps after its end; `have` only names
//! ids we hold, each id is named once; an untouched session finds exactly
//! the two differences.
#![no_main]

use fraudmesh::proto::{SyncRequest, SyncResponse};
use fraudmesh::sync::{Error, Initiator, Item, Responder, MAX_MESSAGE_BYTES, MAX_ROUNDS, MIN_FRAME_SIZE_LIMIT};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::OnceLock;

/// The node's frame limit (`net::sync::FRAME_LIMIT`).
const FRAME_LIMIT: u64 = MAX_MESSAGE_BYTES as u64;

struct Sets {
    a: Vec<Item>,
    b: Vec<Item>,
    b_ids: HashSet<[u8; 32]>,
}

/// A: items 0..600, B: items 200..800 (400 shared), ids SHA-256 of the index.
fn sets() -> &'static Sets {
    static SETS: OnceLock<Sets> = OnceLock::new();
    SETS.get_or_init(|| {
        let item = |i: u32| -> Item {
            let id: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
            (1_700_000_000_000 + u64::from(i % 97) * 1000, id)
        };
        let a: Vec<Item> = (0..600).map(item).collect();
        let b: Vec<Item> = (200..800).map(item).collect();
        let b_ids = b.iter().map(|(_, id)| *id).collect();
        Sets { a, b, b_ids }
    })
}

fn check_ids(init: &Initiator, s: &Sets) {
    let have: HashSet<_> = init.have().iter().collect();
    let need: HashSet<_> = init.need().iter().collect();
    assert_eq!(have.len(), init.have().len(), "an id in `have` twice");
    assert_eq!(need.len(), init.need().len(), "an id in `need` twice");
    assert!(
        init.have().iter().all(|id| s.b_ids.contains(id)),
        "`have` names an id we do not hold"
    );
    // `need` is the peer's claim (`Initiator::need`): a garbled or lying answer can name
    // ids we hold (found by this target: a changed range bound compares the peer's list
    // with another range of ours). Harmless: the node skips records it holds when they
    // arrive. Only untouched sessions are held to exactness (mode 1).
}

fn check_sent(msg: &[u8], limit: u64) {
    assert!(msg.len() <= MAX_MESSAGE_BYTES);
    if limit > 0 {
        assert!(
            msg.len() as u64 <= limit,
            "a message of {} bytes over the limit {limit}",
            msg.len()
        );
    }
}

fn finish(init: &mut Initiator, s: &Sets) {
    assert!(init.is_finished());
    assert!(init.rounds() <= MAX_ROUNDS, "{} rounds", init.rounds());
    assert!(
        matches!(init.step(&[0x61]), Err(Error::Finished)),
        "a step after the end"
    );
    check_ids(init, s);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let s = sets();
    match mode % 3 {
        0 => {
            if let Ok(req) = SyncRequest::decode(rest) {
                if !req.reconcile.is_empty() {
                    let mut r = Responder::new(&s.a, FRAME_LIMIT).expect("own items");
                    if let Ok(answer) = r.respond(&req.reconcile) {
                        check_sent(&answer, FRAME_LIMIT);
                    }
                }
            }
            if let Ok(resp) = SyncResponse::decode(rest) {
                let (mut init, first) = Initiator::new(&s.b, FRAME_LIMIT).expect("own items");
                check_sent(&first, FRAME_LIMIT);
                if let Ok(Some(next)) = init.step(&resp.reconcile) {
                    check_sent(&next, FRAME_LIMIT);
                }
                check_ids(&init, s);
            }
        }
        1 => {
            let limit = match rest.first() {
                Some(&b) if b % 4 != 0 => MIN_FRAME_SIZE_LIMIT * u64::from(b % 4),
                _ => FRAME_LIMIT,
            };
            let edits: Vec<(usize, u8)> = rest
                .get(1..)
                .unwrap_or_default()
                .chunks_exact(3)
                .map(|c| (usize::from(u16::from_le_bytes([c[0], c[1]])), c[2]))
                .collect();
            let (mut init, mut msg) = Initiator::new(&s.b, limit).expect("own items");
            let mut round = 0;
            loop {
                check_sent(&msg, limit);
                // The node builds a responder per request.
                let mut r = Responder::new(&s.a, limit).expect("own items");
                let Ok(mut answer) = r.respond(&msg) else {
                    panic!("the responder refused an initiator's message");
                };
                check_sent(&answer, limit);
                if let Some(&(at, x)) = edits.get(round) {
                    if !answer.is_empty() {
                        let i = at % answer.len();
                        answer[i] ^= x;
                    }
                }
                round += 1;
                match init.step(&answer) {
                    Ok(Some(next)) => msg = next,
                    Ok(None) | Err(_) => break,
                }
                assert!(round <= MAX_ROUNDS, "the session did not end");
            }
            finish(&mut init, s);
            if edits.iter().take(round).all(|&(_, x)| x == 0) {
                let a: HashSet<_> = s.a.iter().map(|(_, id)| id).collect();
                let have: HashSet<_> = init.have().iter().collect();
                let need: HashSet<_> = init.need().iter().collect();
                assert_eq!(have, s.b_ids.iter().filter(|id| !a.contains(id)).collect());
                assert_eq!(need, a.into_iter().filter(|id| !s.b_ids.contains(*id)).collect());
            }
        }
        _ => {
            let (mut init, first) = Initiator::new(&s.b, FRAME_LIMIT).expect("own items");
            check_sent(&first, FRAME_LIMIT);
            let mut rest = rest;
            let mut steps = 0;
            while rest.len() >= 2 && !init.is_finished() {
                let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
                let (answer, tail) = rest[2..].split_at(n);
                rest = tail;
                steps += 1;
                match init.step(answer) {
                    Ok(Some(next)) => check_sent(&next, FRAME_LIMIT),
                    Ok(None) | Err(_) => {}
                }
                check_ids(&init, s);
                assert!(steps <= MAX_ROUNDS, "more than MAX_ROUNDS answers taken");
            }
            if init.is_finished() {
                finish(&mut init, s);
            }
        }
    }
});
