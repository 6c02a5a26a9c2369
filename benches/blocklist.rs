//! Blocklist hot path against a plain `HashSet<IpAddr>` of the same hosts.
//!
//! Data: 1,000,000 random IPv4 hosts + 50,000 random IPv4 prefixes (/16–/31),
//! seeded. Probes: 4096 addresses, half inserted hosts, a quarter inside
//! prefixes, a quarter random. Goal: `is_blocked` at most 1.5x the baseline.
//!
//! Run: `cargo bench --bench blocklist -- --warm-up-time 1 --measurement-time 3`

use std::collections::HashSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion};
use fraudmesh::blocklist::{Blocklist, BlocklistBuilder};
use ipnet::{IpNet, Ipv4Net};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const HOSTS: usize = 1_000_000;
const PREFIXES: usize = 50_000;
const PROBES: usize = 4096;

struct Data {
    hosts: Vec<Ipv4Addr>,
    prefixes: Vec<Ipv4Net>,
    probes: Vec<IpAddr>,
}

fn data() -> Data {
    let mut rng = StdRng::seed_from_u64(0x00f7_a0d0_b10c);
    let hosts: Vec<Ipv4Addr> = (0..HOSTS).map(|_| Ipv4Addr::from(rng.gen::<u32>())).collect();
    let prefixes: Vec<Ipv4Net> = (0..PREFIXES)
        .map(|_| {
            let len = rng.gen_range(16..=31u8);
            match Ipv4Net::new(Ipv4Addr::from(rng.gen::<u32>()), len) {
                Ok(n) => n.trunc(),
                Err(_) => unreachable!("16..=31 is a valid IPv4 prefix length"),
            }
        })
        .collect();
    let probes: Vec<IpAddr> = (0..PROBES)
        .map(|i| match i % 4 {
            0 | 1 => IpAddr::V4(hosts[rng.gen_range(0..hosts.len())]),
            2 => {
                let n = prefixes[rng.gen_range(0..prefixes.len())];
                let offset = rng.gen::<u32>() & u32::from(n.hostmask());
                IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | offset))
            }
            _ => IpAddr::V4(Ipv4Addr::from(rng.gen::<u32>())),
        })
        .collect();
    Data {
        hosts,
        prefixes,
        probes,
    }
}

fn all_nets(d: &Data) -> Vec<IpNet> {
    d.hosts
        .iter()
        .map(|&a| IpNet::from(IpAddr::V4(a)))
        .chain(d.prefixes.iter().map(|&n| IpNet::V4(n)))
        .collect()
}

fn build(nets: &[IpNet]) -> Blocklist {
    let mut b = BlocklistBuilder::new();
    b.reserve_hosts(HOSTS, 0);
    b.extend(nets.iter().copied());
    b.build()
}

fn bench_lookup(c: &mut Criterion) {
    let d = data();
    let bl = build(&all_nets(&d));
    let baseline: HashSet<IpAddr> = d.hosts.iter().map(|&a| IpAddr::V4(a)).collect();
    eprintln!(
        "blocklist: {} hosts, {} prefixes, {} merged ranges, ~{:.1} MiB heap; \
         baseline HashSet<IpAddr>: capacity {}, ~{:.1} MiB",
        bl.host_count(),
        bl.prefix_count(),
        bl.range_count(),
        bl.approx_heap_bytes() as f64 / (1 << 20) as f64,
        baseline.capacity(),
        // Buckets (capacity * 8 / 7, power of two) * (entry + control byte).
        ((baseline.capacity() * 8 / 7).next_power_of_two() * (std::mem::size_of::<IpAddr>() + 1)) as f64
            / (1 << 20) as f64,
    );
    let hits = d.probes.iter().filter(|&&p| bl.is_blocked(p)).count();
    eprintln!("probes blocked: {hits}/{PROBES}");

    let mut g = c.benchmark_group("is_blocked");
    g.bench_function("hit-or-miss mix", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let ip = d.probes[i % PROBES];
            i = i.wrapping_add(1);
            black_box(bl.is_blocked(black_box(ip)))
        })
    });
    g.bench_function("HashSet<IpAddr> exact (baseline)", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let ip = d.probes[i % PROBES];
            i = i.wrapping_add(1);
            black_box(baseline.contains(black_box(&ip)))
        })
    });
    g.finish();
}

fn bench_build(c: &mut Criterion) {
    let d = data();
    let nets = all_nets(&d);
    let mut g = c.benchmark_group("build");
    g.sample_size(10);
    g.bench_function("1M hosts + 50k prefixes", |b| {
        b.iter_with_large_drop(|| build(black_box(&nets)))
    });
    g.finish();
}

criterion_group!(benches, bench_lookup, bench_build);
criterion_main!(benches);
