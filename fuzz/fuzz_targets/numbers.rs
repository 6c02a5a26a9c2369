//! `numbers`: number normalisation (`fraudmesh::calls::number::normalise`, `allow_key`)
//! and the call policy (`CallPolicy::authorize` / `check`, what `POST /v1/calls/authorize`
//! runs) on fuzzed `to` and `from` numbers and account names.
//!
//! Input: `to`, `from` and the account, separated by `\n`; the first byte picks the home
//! region.
//!
//! Properties: a normalised number is a fixed point (its E.164 form normalises to itself,
//! from its home region and from another the input picks), so the same number always gives the same key; an emergency
//! number is always allowed; a call to a number under a blocked prefix is never allowed
//! unless emergency or always-allowed; `check` and the first `authorize` of an account
//! agree; nothing panics.
#![no_main]

use fraudmesh::calls::number::{self, region};
use fraudmesh::calls::policy::{CallPolicy, CallRequest, CallRules};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;

const REGIONS: [&str; 8] = ["CH", "DE", "US", "GB", "FR", "IT", "AT", "NL"];
const NOW: u64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let home = region(REGIONS[first as usize % REGIONS.len()]).expect("known region");
    let mut parts = text.splitn(3, '\n');
    let to = parts.next().unwrap_or_default();
    let from = parts.next().unwrap_or_default();
    let account = parts.next().unwrap_or_default();

    for dialled in [to, from] {
        let n = number::normalise(dialled, home);
        let key = number::allow_key(dialled, home);
        if let Ok(n) = &n {
            assert!(n.digits.bytes().all(|b| b.is_ascii_digit()), "{n:?}");
            assert_eq!(key.as_deref(), Some(n.e164().as_str()));
            // From the home region and one other the input picks (all eight per input
            // made the target 4x slower).
            let other = REGIONS[(first as usize / REGIONS.len()) % REGIONS.len()];
            for other in [home, region(other).expect("known region")] {
                let again = number::normalise(&n.e164(), other);
                assert_eq!(
                    again.as_ref().ok(),
                    Some(n),
                    "{dialled:?} → {} is no fixed point",
                    n.e164()
                );
            }
        }
    }

    let mut policy = CallPolicy::new(CallRules::new(home));
    let req = CallRequest {
        account: account.to_string(),
        to: to.to_string(),
        call_id: from.to_string(),
    };
    let none: BTreeSet<String> = BTreeSet::new();
    let checked = policy.check(&req, &none, NOW);
    let decided = policy.authorize(&req, &none, NOW);
    assert_eq!((checked.allow, checked.rule), (decided.allow, decided.rule));
    if checked.rule == "emergency" {
        assert!(checked.allow);
    }
    // The mesh blocks a prefix of this very number: denied unless it must pass.
    if let Some(e164) = &checked.e164 {
        let digits = e164.trim_start_matches('+');
        let cut = (first as usize % digits.len().max(1)) + 1;
        let blocked: BTreeSet<String> = [digits[..cut.min(digits.len())].to_string()].into();
        let d = CallPolicy::new(CallRules::new(home)).check(&req, &blocked, NOW);
        if !matches!(d.rule, "emergency" | "always-allow") {
            assert!(
                !d.allow,
                "{e164} allowed under the blocked prefix {blocked:?}: {}",
                d.rule
            );
        }
    }
});
