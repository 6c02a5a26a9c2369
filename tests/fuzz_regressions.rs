//! Inputs the fuzz targets (`fuzz/`, `scripts/fuzz.sh`) found, replayed in the ordinary
//! test suite. Each input is committed under `tests/fixtures/fuzz/` (and in the target's
//! seed corpus) and checked for the property its target asserts.

use fraudmesh::calls::number::{normalise, region, NumberError};
use fraudmesh::calls::policy::{CallPolicy, CallRequest, CallRules};
use fraudmesh::sync::{Initiator, Item, Responder, MAX_ROUNDS};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashSet};
use std::path::Path;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `numbers` target's regions (its first input byte picks the home one).
const REGIONS: [&str; 8] = ["CH", "DE", "US", "GB", "FR", "IT", "AT", "NL"];

/// `numbers`: "+882 13 112345" dialled from a US home was checked as +882 3112345 (the
/// phonenumber crate stripped the US national prefix 1 from an international number).
/// A normalised number must be a fixed point from every home region.
#[test]
fn fuzz_numbers_international_digits_are_judged_as_dialled() {
    let input = fixture("numbers-882-from-us");
    let text = std::str::from_utf8(&input[1..]).unwrap();
    let to = text.lines().next().unwrap();
    for home in REGIONS {
        let home = region(home).unwrap();
        if let Ok(n) = normalise(to, home) {
            for other in REGIONS {
                let again = normalise(&n.e164(), region(other).unwrap());
                assert_eq!(again.as_ref().ok(), Some(&n), "{to:?} → {} from {other}", n.e164());
            }
        }
    }
    assert_eq!(normalise(to, region("US").unwrap()).unwrap().digits, "88213112345");
    // The same misreading with a number's own prefix: St Petersburg from Russia.
    assert_eq!(
        normalise("+7 812 123 45 67", region("RU").unwrap()).unwrap().digits,
        "78121234567"
    );
    // A trunk prefix written after the country code is still understood…
    assert_eq!(
        normalise("+41 (0)44 668 18 00", region("CH").unwrap()).unwrap().digits,
        "41446681800"
    );
    // …and what can only be read as other digits is refused, not judged as another number.
    assert!(matches!(
        normalise("011 882 13 112345", region("US").unwrap()),
        Err(NumberError::Misread(..))
    ));
}

/// The call policy checks the number dialled: a mesh block of a prefix stops a number
/// under it whatever the home region (from the US, "+44 1 20 7946 0958" was checked as
/// +44 20 7946 0958, a valid London number, so a block of +4412 let it through).
#[test]
fn fuzz_numbers_a_blocked_prefix_holds_from_every_home() {
    for (to, prefix) in [("+882 13 112345", "88213"), ("+44 1 20 7946 0958", "4412")] {
        let blocked: BTreeSet<String> = [prefix.to_string()].into();
        for home in REGIONS {
            let mut policy = CallPolicy::new(CallRules::new(region(home).unwrap()));
            let req = CallRequest {
                account: "1001".into(),
                to: to.into(),
                call_id: "c".into(),
            };
            let d = policy.authorize(&req, &blocked, 1_800_000_000_000);
            assert!(!d.allow, "{to} allowed from {home}: {} ({})", d.rule, d.reason);
        }
    }
}

/// `sync`: a responder's answer with one byte changed made the initiator `need` ids it
/// holds (the changed range bound compares the peer's list with another range of ours).
/// That is the peer's claim, as `Initiator::need` says; what must hold is that the session
/// ends within `MAX_ROUNDS`, `have` names only ids we hold, and no id is named twice.
#[test]
fn fuzz_sync_a_garbled_answer_ends_the_session_within_bounds() {
    let input = fixture("sync-garbled-bound");
    assert_eq!(input[0] % 3, 1, "a meddled session (mode 1 of the sync target)");
    let item = |i: u32| -> Item {
        (
            1_700_000_000_000 + u64::from(i % 97) * 1000,
            Sha256::digest(i.to_le_bytes()).into(),
        )
    };
    let a: Vec<Item> = (0..600).map(item).collect();
    let b: Vec<Item> = (200..800).map(item).collect();
    let ours: HashSet<[u8; 32]> = b.iter().map(|(_, id)| *id).collect();
    let limit = match input[1] % 4 {
        0 => 0,
        k => 4096 * u64::from(k),
    };
    let edits: Vec<(usize, u8)> = input[2..]
        .chunks_exact(3)
        .map(|c| (usize::from(u16::from_le_bytes([c[0], c[1]])), c[2]))
        .collect();
    let (mut init, mut msg) = Initiator::new(&b, limit).unwrap();
    let mut round = 0;
    loop {
        let mut answer = Responder::new(&a, limit).unwrap().respond(&msg).unwrap();
        if let Some(&(at, x)) = edits.get(round) {
            let i = at % answer.len();
            answer[i] ^= x;
        }
        round += 1;
        match init.step(&answer) {
            Ok(Some(next)) => msg = next,
            Ok(None) | Err(_) => break,
        }
        assert!(round <= MAX_ROUNDS);
    }
    assert!(init.is_finished());
    assert!(init.have().iter().all(|id| ours.contains(id)));
    assert_eq!(init.have().iter().collect::<HashSet<_>>().len(), init.have().len());
    assert_eq!(init.need().iter().collect::<HashSet<_>>().len(), init.need().len());
}
