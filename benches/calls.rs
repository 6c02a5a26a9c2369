//! Decisions per second of the pure call policy on one core: a mix of ordinary national,
//! international, premium-rate, toll-free and garbage numbers from 1,000 accounts with
//! limits set, a mesh fraud list of 10,000 prefixes, each allowed call ended again.
//!
//! Run: `cargo bench --bench calls -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fraudmesh::calls::policy::{CallPolicy, CallRequest, CallRules, Countries};
use phonenumber::country::Id;
use std::collections::BTreeSet;
use std::hint::black_box;

const NUMBERS: [&str; 8] = [
    "044 668 18 00",
    "+41 79 123 45 67",
    "0900 123 456",
    "0800 123 456",
    "0044 20 7946 0958",
    "+49 30 901820",
    "+882 13 112345",
    "*97",
];

fn bench(c: &mut Criterion) {
    let mut rules = CallRules::new(Id::CH);
    rules.countries = Countries::Deny(BTreeSet::from([882, 883]));
    rules.limits.calls_per_hour = Some(1000);
    rules.limits.concurrent = Some(10);
    rules.limits.minutes_per_day = Some(10_000);
    let mut policy = CallPolicy::new(rules);
    let fraud: BTreeSet<String> = (0..10_000).map(|i| format!("99{i:06}")).collect();
    let requests: Vec<CallRequest> = (0..4096)
        .map(|i| CallRequest {
            account: format!("{}", 1000 + i % 1000),
            to: NUMBERS[i % NUMBERS.len()].to_string(),
            call_id: format!("call-{i}"),
        })
        .collect();
    let mut g = c.benchmark_group("calls");
    g.throughput(Throughput::Elements(requests.len() as u64));
    let mut now = 0u64;
    g.bench_function("authorize+end", |b| {
        b.iter(|| {
            for r in &requests {
                now += 1;
                let d = policy.authorize(black_box(r), &fraud, now);
                if d.allow {
                    policy.end(&r.account, &r.call_id, now + 1);
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
