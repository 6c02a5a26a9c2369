//! Anti-entropy cost: what one full reconciliation of two million-record sets puts on
//! the wire, and how long it takes.
//!
//! Data (seeded): each side holds 1,000,000 items `(observed_at, id)` with random 32-byte
//! ids, observed within the last 7 days. `d` items differ, half only on each side, placed
//! either uniformly over the 7 days ("spread", the worst case) or within the newest hour
//! ("recent", a node back from an outage). A last case is a fresh node (empty) against a
//! million. The session runs in memory through `fraudmesh::sync`, with frame size limit 0
//! (= `MAX_MESSAGE_BYTES`, 2 MiB) and 500 000, and a fresh `Responder` per message as the
//! node does. Rows marked `raw` drive the `negentropy` crate directly: `raw, none` with no
//! frame limit at all (which `fraudmesh::sync` does not allow), and `raw, 500 000` without
//! the `MAX_ROUNDS` cut-off, shown when the API run was cut off, to show how many round
//! trips completion would take.
//!
//! Reported: round trips; bytes on the wire in both directions (negentropy messages only,
//! no transport framing); sync overhead per differing record; that overhead relative to
//! the encoded size of the differing records themselves (a real signed sighting's
//! `encode().len()`); and wall time of the session (building both sides included: the API
//! rows rebuild the responder over a million items for every message, `raw` rows once).
//! Goals: 1,000 differences in ≤ 1 MB of sync overhead and ≤ 3 round trips; ≤ 64 bytes of
//! overhead per difference at 100,000 differences.
//!
//! Run: `cargo bench -p fraudmesh --bench sync` (prints a table; no criterion).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use fraudmesh::identity::Identity;
use fraudmesh::sighting::{sign, Draft, Evidence, Kind, RecordId};
use fraudmesh::sync::{Initiator, Item, Responder, MAX_MESSAGE_BYTES};
use fraudmesh::target::{Bounds, Target};
use negentropy::{Id, Negentropy, NegentropyStorageVector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const N: usize = 1_000_000;
const NOW: u64 = 1_700_000_000_000;
const WEEK_MS: u64 = 7 * 24 * 3600 * 1000;
const HOUR_MS: u64 = 3600 * 1000;

#[derive(Clone, Copy)]
enum Placement {
    Spread,
    Recent,
    /// The initiator holds nothing: a fresh node.
    Fresh,
}

impl Placement {
    fn name(self) -> &'static str {
        match self {
            Self::Spread => "spread",
            Self::Recent => "recent",
            Self::Fresh => "fresh node",
        }
    }
}

/// Two sides of `N` items each, `d` of them differing (half on each side).
struct Case {
    a: Vec<Item>,
    b: Vec<Item>,
    only_a: HashSet<RecordId>,
    only_b: HashSet<RecordId>,
}

fn case(d: usize, placement: Placement, seed: u64) -> Case {
    let mut rng = StdRng::seed_from_u64(seed);
    if let Placement::Fresh = placement {
        let mut b: Vec<Item> = (0..N).map(|_| (NOW - rng.gen_range(0..WEEK_MS), rng.gen())).collect();
        b.sort_unstable();
        let only_b = b.iter().map(|i| i.1).collect();
        return Case {
            a: Vec::new(),
            b,
            only_a: HashSet::new(),
            only_b,
        };
    }
    let common: Vec<Item> = (0..N - d / 2)
        .map(|_| (NOW - rng.gen_range(0..WEEK_MS), rng.gen()))
        .collect();
    let differing = |rng: &mut StdRng| -> Vec<Item> {
        (0..d / 2)
            .map(|_| {
                let age = match placement {
                    Placement::Spread | Placement::Fresh => rng.gen_range(0..WEEK_MS),
                    Placement::Recent => rng.gen_range(0..HOUR_MS),
                };
                (NOW - age, rng.gen())
            })
            .collect()
    };
    let (xa, xb) = (differing(&mut rng), differing(&mut rng));
    let only_a = xa.iter().map(|i| i.1).collect();
    let only_b = xb.iter().map(|i| i.1).collect();
    let mut a: Vec<Item> = common.iter().copied().chain(xa).collect();
    let mut b: Vec<Item> = common.into_iter().chain(xb).collect();
    a.sort_unstable();
    b.sort_unstable();
    Case { a, b, only_a, only_b }
}

#[derive(Default)]
struct Outcome {
    rounds: usize,
    to_responder: usize,
    to_initiator: usize,
    largest: usize,
    time: Duration,
    exact: bool,
    /// have + need as the crate reported them, duplicates included (raw runs only).
    raw_reported: Option<usize>,
    cut_off: Option<String>,
    found: usize,
}

/// A session through `fraudmesh::sync`.
fn run_api(c: &Case, frame: u64) -> Outcome {
    let started = Instant::now();
    let mut o = Outcome::default();
    let (mut init, mut msg) = Initiator::new(&c.a, frame).expect("initiator");
    loop {
        let mut resp = Responder::new(&c.b, frame).expect("responder");
        let answer = resp.respond(&msg).expect("respond");
        o.to_responder += msg.len();
        o.to_initiator += answer.len();
        o.largest = o.largest.max(msg.len()).max(answer.len());
        match init.step(&answer) {
            Ok(Some(next)) => msg = next,
            Ok(None) => break,
            Err(e) => {
                o.cut_off = Some(format!("{e}"));
                break;
            }
        }
    }
    o.time = started.elapsed();
    o.rounds = init.rounds();
    let have: HashSet<RecordId> = init.have().iter().copied().collect();
    let need: HashSet<RecordId> = init.need().iter().copied().collect();
    o.found = have.len() + need.len();
    o.exact = have == c.only_a && need == c.only_b && init.have().len() + init.need().len() == have.len() + need.len();
    o
}

/// A session driving the negentropy crate directly (`frame` 0 = no limit at all).
fn run_raw(c: &Case, frame: u64) -> Outcome {
    let started = Instant::now();
    let storage = |items: &[Item]| {
        let mut s = NegentropyStorageVector::with_capacity(items.len());
        for &(t, id) in items {
            s.insert(t, Id::from_byte_array(id)).expect("insert");
        }
        s.seal().expect("seal");
        s
    };
    let (sa, sb) = (storage(&c.a), storage(&c.b));
    let mut o = Outcome::default();
    let mut init = Negentropy::borrowed(&sa, frame).expect("initiator");
    let mut resp = Negentropy::borrowed(&sb, frame).expect("responder");
    let (mut have, mut need) = (Vec::new(), Vec::new());
    let mut msg = init.initiate().expect("initiate");
    loop {
        let answer = resp.reconcile(&msg).expect("reconcile");
        o.rounds += 1;
        o.to_responder += msg.len();
        o.to_initiator += answer.len();
        o.largest = o.largest.max(msg.len()).max(answer.len());
        match init
            .reconcile_with_ids(&answer, &mut have, &mut need)
            .expect("reconcile_with_ids")
        {
            Some(next) => msg = next,
            None => break,
        }
    }
    o.time = started.elapsed();
    let h: HashSet<RecordId> = have.iter().map(|i| i.to_bytes()).collect();
    let n: HashSet<RecordId> = need.iter().map(|i| i.to_bytes()).collect();
    o.found = h.len() + n.len();
    o.exact = h == c.only_a && n == c.only_b;
    o.raw_reported = Some(have.len() + need.len());
    o
}

/// The encoded size of a typical signed sighting.
fn record_bytes() -> usize {
    let r = sign(
        &Identity::from_secret([7; 32]),
        Draft {
            target: Target::parse("203.0.113.77", Bounds::default()).expect("target"),
            kind: Kind::AuthFailure,
            observed_at: NOW,
            ttl_s: 24 * 3600,
            count: 12,
            evidence: Evidence {
                method: "REGISTER".into(),
                user_agent: "friendly-scanner".into(),
                reason: "12 failed REGISTERs in 60 s".into(),
                usernames: vec!["100".into(), "101".into(), "admin".into()],
            },
        },
    );
    r.encode().len()
}

fn kb(n: usize) -> String {
    format!("{:.1} kB", n as f64 / 1000.0)
}

/// The cases measured: where the differences lie and how many there are.
const CASES: [(Placement, usize); 7] = [
    (Placement::Spread, 10),
    (Placement::Spread, 1_000),
    (Placement::Spread, 100_000),
    (Placement::Recent, 10),
    (Placement::Recent, 1_000),
    (Placement::Recent, 100_000),
    (Placement::Fresh, N),
];

fn main() {
    let rec = record_bytes();
    print_header(rec);
    let mut goals = Vec::new();
    for (i, (placement, d)) in CASES.into_iter().enumerate() {
        let c = case(d, placement, 0x5eed + i as u64);
        for (frame, o) in runs(&c) {
            print_row(placement, d, frame, &o, rec);
            goals.extend(goal(placement, d, frame, &o));
        }
    }
    print_goals(&goals);
    time_responder_build();
}

/// The set sizes, the frame limits and the table's head.
fn print_header(rec: usize) {
    println!("Set: {N} items per side; typical encoded signed sighting: {rec} bytes (real record, encode().len()).");
    println!(
        "fraudmesh::sync frame 0 = MAX_MESSAGE_BYTES = {MAX_MESSAGE_BYTES} bytes; `raw` = negentropy crate, no limit."
    );
    println!();
    println!(
        "| placement | diffs | frame | rounds | initiator→ | responder→ | total | largest msg | B/diff | overhead/records | time | exact |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
}

/// Every session run on one case, labelled by its frame limit: the API at 2 MiB and
/// 500 000, the crate without a limit, and the crate at 500 000 when the API was cut off.
fn runs(c: &Case) -> Vec<(&'static str, Outcome)> {
    let mut runs = vec![
        ("0 (= 2 MiB)", run_api(c, 0)),
        ("500 000", run_api(c, 500_000)),
        ("raw, none", run_raw(c, 0)),
    ];
    if runs[1].1.cut_off.is_some() {
        runs.push(("raw, 500 000", run_raw(c, 500_000)));
    }
    runs
}

/// One table row.
fn print_row(placement: Placement, d: usize, frame: &str, o: &Outcome, rec: usize) {
    let total = o.to_responder + o.to_initiator;
    let per = total as f64 / d as f64;
    println!(
        "| {} | {d} | {frame} | {} | {} | {} | {} | {} | {} | {} | {:.0} ms | {} |",
        placement.name(),
        o.rounds,
        kb(o.to_responder),
        kb(o.to_initiator),
        kb(total),
        kb(o.largest),
        if o.cut_off.is_some() {
            "n/a".into()
        } else {
            format!("{per:.1}")
        },
        if o.cut_off.is_some() {
            "n/a".into()
        } else {
            format!("{:.3}", per / rec as f64)
        },
        o.time.as_secs_f64() * 1000.0,
        exact(o, d),
    );
}

/// The "exact" cell: whether the session found exactly the differences.
fn exact(o: &Outcome, d: usize) -> String {
    match o.raw_reported {
        _ if o.cut_off.is_some() => format!(
            "cut off ({}); {} of {d} found",
            o.cut_off.as_deref().unwrap_or(""),
            o.found
        ),
        Some(n) if n != d => format!("yes ({n} reported: {} duplicates)", n - d),
        _ if o.exact => "yes".into(),
        _ => "NO".into(),
    }
}

/// The goal line an API run at 1,000 or 100,000 differences is judged by, if any.
fn goal(placement: Placement, d: usize, frame: &str, o: &Outcome) -> Option<String> {
    if o.raw_reported.is_some() {
        return None;
    }
    let total = o.to_responder + o.to_initiator;
    let per = total as f64 / d as f64;
    match d {
        1_000 => Some(format!(
            "{} 1,000 diffs, frame {frame}: {} ≤ 1 MB: {}; {} round trips ≤ 3: {}",
            placement.name(),
            kb(total),
            if total <= 1_000_000 { "met" } else { "MISSED" },
            o.rounds,
            if o.rounds <= 3 { "met" } else { "MISSED" },
        )),
        100_000 => Some(format!(
            "{} 100,000 diffs, frame {frame}: {per:.1} B/diff ≤ 64: {}",
            placement.name(),
            match o.cut_off {
                Some(_) => "MISSED (cut off before completion)",
                None if per <= 64.0 => "met",
                None => "MISSED",
            },
        )),
        _ => None,
    }
}

fn print_goals(goals: &[String]) {
    println!();
    println!("Goals:");
    for g in goals {
        println!("- {g}");
    }
}

/// What a node pays per request to build a responder over its items.
fn time_responder_build() {
    let c = case(0, Placement::Spread, 1);
    let started = Instant::now();
    let r = Responder::new(&c.a, 0).expect("responder");
    println!();
    println!(
        "Building one Responder over {N} sorted items: {:.1} ms.",
        started.elapsed().as_secs_f64() * 1000.0
    );
    drop(r);
}
