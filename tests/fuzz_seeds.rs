//! Writes the binary seed corpora of the fuzz targets `envelope` and `sync`
//! (`fuzz/corpus/<target>/`) from real signed records and real reconciliation messages.
//! Ignored in ordinary runs; regenerate with
//! `cargo test -p fraudmesh --test fuzz_seeds -- --ignored`.

use fraudmesh::identity::Identity;
use fraudmesh::proto;
use fraudmesh::sighting::{sign, Draft, Evidence, Kind};
use fraudmesh::sync::{Initiator, Item, Responder, MIN_FRAME_SIZE_LIMIT};
use fraudmesh::target::{Bounds, Target};
use prost::Message;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The fuzz targets' clock (`NOW` in `fuzz/fuzz_targets/envelope.rs`).
const NOW: u64 = 1_800_000_000_000;

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn record(id: &Identity, target: &str, kind: Kind, at: u64) -> proto::SignedSighting {
    sign(
        id,
        Draft {
            target: Target::parse(target, Bounds::default()).unwrap(),
            kind,
            observed_at: at,
            ttl_s: 3600,
            count: 3,
            evidence: Evidence {
                method: "REGISTER".into(),
                user_agent: "friendly-scanner".into(),
                reason: "auth failures".into(),
                usernames: vec!["100".into(), "admin".into()],
            },
        },
    )
    .to_proto()
}

#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn write_fuzz_seeds() {
    let a = Identity::from_secret([1; 32]);
    let b = Identity::from_secret([2; 32]);
    let targets = [
        "203.0.113.7",
        "198.51.100.0/24",
        "2001:db8::1",
        "2001:db8:1::/48",
        "+41900123456",
        "tel:+882345",
    ];
    let kinds = Kind::ALL;
    let dir = corpus("envelope");
    let mut n = 0;
    for (i, t) in targets.iter().enumerate() {
        for (j, id) in [&a, &b].into_iter().enumerate() {
            let one = record(id, t, kinds[(i + j) % kinds.len()], NOW - 60_000 * (i as u64 + 1));
            let env = proto::Envelope {
                sightings: vec![one.clone()],
                ..Default::default()
            }
            .encode_to_vec();
            for mode in [0u8, 1] {
                let mut bytes = vec![mode];
                bytes.extend_from_slice(&env);
                write(&dir, &format!("one-{n:02}-{mode}"), &bytes);
            }
            n += 1;
        }
    }
    // Envelopes of several records: all valid, one forged, one duplicated, one expired.
    let all: Vec<_> = targets.iter().map(|t| record(&a, t, Kind::Scan, NOW - 1000)).collect();
    let mut forged = all.clone();
    let mut sig = forged[1].signature.to_vec();
    sig[5] ^= 1;
    forged[1].signature = sig.into();
    let mut dup = all.clone();
    dup.push(all[0].clone());
    let expired = vec![
        record(&a, targets[0], Kind::Scan, NOW - 30 * 24 * 3600 * 1000),
        all[1].clone(),
    ];
    for (name, sightings) in [("all", all), ("forged", forged), ("dup", dup), ("expired", expired)] {
        let env = proto::Envelope {
            sightings,
            ..Default::default()
        }
        .encode_to_vec();
        for mode in [0u8, 1, 0x7f] {
            let mut bytes = vec![mode];
            bytes.extend_from_slice(&env);
            write(&dir, &format!("{name}-{mode}"), &bytes);
        }
    }

    // sync: requests and answers of real sessions over the fuzz target's sets.
    let item = |i: u32| -> Item {
        (
            1_700_000_000_000 + u64::from(i % 97) * 1000,
            Sha256::digest(i.to_le_bytes()).into(),
        )
    };
    let set_a: Vec<Item> = (0..600).map(item).collect();
    let set_b: Vec<Item> = (200..800).map(item).collect();
    let dir = corpus("sync");
    for limit in [0, MIN_FRAME_SIZE_LIMIT] {
        let (mut init, mut msg) = Initiator::new(&set_b, limit).unwrap();
        let mut round = 0;
        loop {
            let answer = Responder::new(&set_a, limit).unwrap().respond(&msg).unwrap();
            let req = proto::SyncRequest {
                reconcile: msg.clone().into(),
                want: vec![set_a[round].1.to_vec().into()],
                give: vec![],
                ..Default::default()
            };
            let resp = proto::SyncResponse {
                reconcile: answer.clone().into(),
                records: vec![],
                ..Default::default()
            };
            let mut bytes = vec![0u8];
            bytes.extend_from_slice(&req.encode_to_vec());
            write(&dir, &format!("request-{limit}-{round}"), &bytes);
            let mut bytes = vec![3u8];
            bytes.extend_from_slice(&resp.encode_to_vec());
            write(&dir, &format!("response-{limit}-{round}"), &bytes);
            let mut bytes = vec![2u8];
            bytes.extend_from_slice(&(answer.len() as u16).to_le_bytes());
            bytes.extend_from_slice(&answer);
            write(&dir, &format!("answer-{limit}-{round}"), &bytes);
            round += 1;
            match init.step(&answer).unwrap() {
                Some(next) => msg = next,
                None => break,
            }
            if round > 8 {
                break;
            }
        }
    }
    for (name, bytes) in [
        ("session", &[1u8, 0][..]),
        ("session-4k", &[1, 1, 5, 0, 1]),
        ("session-12k", &[1, 3]),
    ] {
        write(&dir, name, bytes);
    }
}
