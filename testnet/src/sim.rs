//! `fraudmesh-testnet sim`: a deterministic, seeded simulation of the mesh's gossip at
//! sizes no machine holds as real node stacks (1000 nodes and more).
//!
//! What is real: every node has a core identity and its own core [`Ledger`]; every
//! sighting is a record signed with the core; a node counts a receipt as new exactly when
//! the core's merge changed its ledger. What is modelled, in virtual time (a seeded event
//! queue, so the same seed gives the same report): a gossipsub 1.2 mesh of degree D
//! (each node with D symmetric mesh links), eager push along mesh links, link latency
//! drawn per link, a validation delay before forwarding (our nodes validate before they
//! forward), rust-libp2p's forwarding rule (not to the peer it came from, not to the
//! publisher, not to peers that already sent a copy while validation was pending, not to
//! peers that sent IDONTWANT), and IDONTWANT sent to all mesh peers on first receipt.
//! Left out: lazy gossip (IHAVE/IWANT) and the sync protocol, which repair losses in the
//! real mesh; so with `loss` > 0 the delivery ratio shows what eager push alone reaches.

use fraudmesh::identity::Identity;
use fraudmesh::ledger::Ledger;
use fraudmesh::sighting::{sign, Draft, Evidence, Kind, Record};
use fraudmesh::target::Target;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimArgs {
    /// Nodes.
    pub nodes: usize,
    /// Mesh degree (gossipsub D).
    pub degree: usize,
    /// Sightings published (from random nodes, spread over one second).
    pub sightings: usize,
    /// Random seed.
    pub seed: u64,
    /// Send IDONTWANT on first receipt (gossipsub 1.2).
    pub idontwant: bool,
    /// Validation delay before forwarding, µs.
    pub validation_delay_us: u64,
    /// Least link latency, µs.
    pub latency_min_us: u64,
    /// Largest link latency, µs.
    pub latency_max_us: u64,
    /// Probability that a transmission is lost.
    pub loss: f64,
}

impl Default for SimArgs {
    fn default() -> Self {
        Self {
            nodes: 1000,
            degree: 6,
            sightings: 100,
            seed: 1,
            // As the node runs: rust-libp2p sends IDONTWANT only for messages of 1 kB and
            // more, and a sighting envelope is about 150 bytes.
            idontwant: false,
            validation_delay_us: 100,
            latency_min_us: 200,
            latency_max_us: 5000,
            loss: 0.0,
        }
    }
}

/// Arguments the simulation cannot run with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// Too few nodes.
    #[error("--nodes must be at least 2 (got {0})")]
    Nodes(usize),
    /// Degree out of range.
    #[error("--degree must be between 1 and nodes - 1 (got {0})")]
    Degree(usize),
    /// No sightings.
    #[error("--sightings must be at least 1")]
    Sightings,
    /// Latency bounds reversed.
    #[error("the latency bounds are reversed")]
    Latency,
    /// Loss out of range.
    #[error("--loss must be in [0, 1) (got {0})")]
    Loss(f64),
}

/// Summary statistics.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Stats {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Stats {
    fn of(values: &mut [f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Self {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            p50: rank(0.5),
            p99: rank(0.99),
            max: values[values.len() - 1],
        }
    }
}

/// What the simulation found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SimReport {
    /// Nodes.
    pub nodes: usize,
    /// Mesh degree.
    pub degree: usize,
    /// Sightings published.
    pub sightings: usize,
    /// Seed.
    pub seed: u64,
    /// Whether IDONTWANT was on.
    pub idontwant: bool,
    /// Link loss probability.
    pub loss: f64,
    /// (node, sighting) pairs that received the sighting / all pairs.
    pub delivery_ratio: f64,
    /// Hops from the publisher to each first receipt.
    pub hops: Stats,
    /// Virtual ms from publishing to each first receipt.
    pub delivery_ms: Stats,
    /// Full copies received per node per sighting (the first one included).
    pub copies_per_node_per_sighting: f64,
    /// Most copies of one sighting at one node.
    pub copies_max: u32,
    /// IDONTWANT messages sent per node per sighting.
    pub idontwant_per_node_per_sighting: f64,
    /// Sighting bytes received per node per sighting (copies × record size).
    pub bytes_per_node_per_sighting: f64,
    /// Size of one signed record on the wire, bytes.
    pub record_bytes: usize,
}

impl SimReport {
    /// A plain summary table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "simulation: {} nodes, mesh degree {}, {} sightings, seed {}, IDONTWANT {}, loss {}",
            self.nodes,
            self.degree,
            self.sightings,
            self.seed,
            if self.idontwant { "on" } else { "off" },
            self.loss
        );
        let _ = writeln!(s, "{:<36} {:.4}", "delivery ratio", self.delivery_ratio);
        let h = &self.hops;
        let _ = writeln!(
            s,
            "{:<36} mean {:.2}  p50 {}  p99 {}  max {}",
            "hops", h.mean, h.p50, h.p99, h.max
        );
        let d = &self.delivery_ms;
        let _ = writeln!(
            s,
            "{:<36} mean {:.1}  p50 {:.1}  p99 {:.1}  max {:.1}",
            "delivery, virtual ms", d.mean, d.p50, d.p99, d.max
        );
        let _ = writeln!(
            s,
            "{:<36} {:.2} (max {})",
            "copies per node per sighting", self.copies_per_node_per_sighting, self.copies_max
        );
        let _ = writeln!(
            s,
            "{:<36} {:.2}",
            "IDONTWANT sent per node per sighting", self.idontwant_per_node_per_sighting
        );
        let _ = writeln!(
            s,
            "{:<36} {:.0} (record {} bytes)",
            "bytes per node per sighting", self.bytes_per_node_per_sighting, self.record_bytes
        );
        s
    }
}

/// An event of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A copy of sighting `s` arrives at `to` from `from` (`hops` from the publisher).
    Copy { to: u32, from: u32, s: u32, hops: u16 },
    /// An IDONTWANT for `s` arrives at `to` from `from`.
    DontWant { to: u32, from: u32, s: u32 },
    /// `node` finished validating `s` and forwards it.
    Validated { node: u32, s: u32 },
}

/// One node's state for one sighting.
#[derive(Debug, Clone, Default)]
struct Seen {
    first_from: Option<u32>,
    hops: u16,
    /// Peers that sent a copy or IDONTWANT: they get nothing from us.
    skip: Vec<u32>,
    copies: u32,
    forwarded: bool,
}

/// A random connected mesh where every node has about `degree` symmetric links.
fn mesh(rng: &mut StdRng, n: usize, degree: usize) -> Vec<Vec<u32>> {
    let mut links: Vec<HashSet<u32>> = vec![HashSet::new(); n];
    // A random ring first: connected whatever happens next.
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(rng);
    for w in 0..n {
        let (a, b) = (order[w], order[(w + 1) % n]);
        if a != b {
            links[a as usize].insert(b);
            links[b as usize].insert(a);
        }
    }
    // Then random pairs among nodes still below the degree.
    let mut tries = 0;
    while tries < n * degree * 20 {
        tries += 1;
        let a = rng.gen_range(0..n);
        let b = rng.gen_range(0..n);
        if a == b || links[a].len() >= degree || links[b].len() >= degree || links[a].contains(&(b as u32)) {
            continue;
        }
        links[a].insert(b as u32);
        links[b].insert(a as u32);
    }
    links
        .into_iter()
        .map(|l| {
            let mut v: Vec<u32> = l.into_iter().collect();
            v.sort_unstable();
            v
        })
        .collect()
}

impl SimArgs {
    /// Checks the arguments.
    fn check(&self) -> Result<(), SimError> {
        if self.nodes < 2 {
            return Err(SimError::Nodes(self.nodes));
        }
        if self.degree == 0 || self.degree >= self.nodes {
            return Err(SimError::Degree(self.degree));
        }
        if self.sightings == 0 {
            return Err(SimError::Sightings);
        }
        if self.latency_min_us > self.latency_max_us {
            return Err(SimError::Latency);
        }
        if !(0.0..1.0).contains(&self.loss) {
            return Err(SimError::Loss(self.loss));
        }
        Ok(())
    }
}

/// The mesh: each node's peers (sorted) and the latency of each link.
struct Links {
    peers: Vec<Vec<u32>>,
    /// By (node, index of the peer in its list); both directions of a link share it.
    latency: Vec<Vec<u64>>,
    /// The latency of a pair that is not linked.
    fallback_us: u64,
}

impl Links {
    /// A random mesh with a latency drawn for every link.
    fn new(rng: &mut StdRng, args: &SimArgs) -> Self {
        let n = args.nodes;
        let peers = mesh(rng, n, args.degree);
        let mut latency: Vec<Vec<u64>> = peers.iter().map(|l| vec![0; l.len()]).collect();
        for a in 0..n {
            for (i, &b) in peers[a].iter().enumerate() {
                if (b as usize) > a {
                    let l = rng.gen_range(args.latency_min_us..=args.latency_max_us);
                    latency[a][i] = l;
                    if let Ok(j) = peers[b as usize].binary_search(&(a as u32)) {
                        latency[b as usize][j] = l;
                    }
                }
            }
        }
        Self {
            peers,
            latency,
            fallback_us: args.latency_max_us,
        }
    }

    /// The peers of node `a`.
    fn of(&self, a: u32) -> &[u32] {
        &self.peers[a as usize]
    }

    /// The latency from `a` to `b`, µs.
    fn latency(&self, a: u32, b: u32) -> u64 {
        self.peers[a as usize]
            .binary_search(&b)
            .map_or(self.fallback_us, |i| self.latency[a as usize][i])
    }
}

/// Each sighting's publisher and its real record, signed by the publisher's real
/// identity.
fn sightings(rng: &mut StdRng, args: &SimArgs) -> (Vec<u32>, Vec<Record>) {
    let n = args.nodes;
    let publishers: Vec<u32> = (0..args.sightings).map(|_| rng.gen_range(0..n as u32)).collect();
    let identities: Vec<Identity> = (0..n).map(|_| Identity::from_secret(rng.gen())).collect();
    let records = publishers
        .iter()
        .enumerate()
        .map(|(k, &p)| {
            let ip = Ipv4Addr::from(0xC612_0000u32 + k as u32 + 1);
            sign(
                &identities[p as usize],
                Draft {
                    target: Target::Ip(std::net::IpAddr::V4(ip).into()),
                    kind: Kind::Scan,
                    observed_at: 1_700_000_000_000,
                    ttl_s: 3600,
                    count: 1,
                    evidence: Evidence::default(),
                },
            )
        })
        .collect();
    (publishers, records)
}

/// A running simulation: the mesh, every node's ledger and per-sighting state, the
/// event queue in virtual time (µs) and what was measured so far.
struct Sim<'a> {
    args: &'a SimArgs,
    rng: StdRng,
    links: Links,
    publishers: Vec<u32>,
    records: Vec<Record>,
    ledgers: Vec<Ledger>,
    seen: Vec<Vec<Seen>>,
    /// (at, sequence number, event): the sequence keeps equal times in push order.
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    published_at: Vec<u64>,
    hops: Vec<f64>,
    delivery: Vec<f64>,
    idontwants: u64,
}

impl<'a> Sim<'a> {
    fn new(args: &'a SimArgs) -> Self {
        let mut rng = StdRng::seed_from_u64(args.seed);
        let links = Links::new(&mut rng, args);
        let (publishers, records) = sightings(&mut rng, args);
        let n = args.nodes;
        Self {
            args,
            rng,
            links,
            publishers,
            records,
            ledgers: (0..n).map(|_| Ledger::new()).collect(),
            seen: vec![vec![Seen::default(); args.sightings]; n],
            queue: BinaryHeap::new(),
            seq: 0,
            published_at: vec![0u64; args.sightings],
            hops: Vec::new(),
            delivery: Vec::new(),
            idontwants: 0,
        }
    }

    fn push(&mut self, at: u64, e: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, e)));
    }

    /// Sends a copy of `s` from `from` to `to` after the link latency, unless lost.
    fn send_copy(&mut self, now: u64, from: u32, to: u32, s: u32, hops: u16) {
        if self.rng.gen_bool(self.args.loss) {
            return;
        }
        let e = Event::Copy { to, from, s, hops };
        self.push(now + self.links.latency(from, to), e);
    }

    /// Every publisher publishes its sighting at a random time in the first second.
    fn publish_all(&mut self) {
        for k in 0..self.publishers.len() {
            let p = self.publishers[k];
            let at = self.rng.gen_range(0..1_000_000u64);
            self.published_at[k] = at;
            self.ledgers[p as usize].merge(&self.records[k]);
            let st = &mut self.seen[p as usize][k];
            st.first_from = Some(p);
            st.forwarded = true;
            for peer in self.links.of(p).to_vec() {
                self.send_copy(at, p, peer, k as u32, 1);
            }
        }
    }

    /// Runs events until none is left.
    fn drain(&mut self) {
        while let Some(Reverse((now, _, event))) = self.queue.pop() {
            match event {
                Event::Copy { to, from, s, hops } => self.on_copy(now, to, from, s, hops),
                Event::DontWant { to, from, s } => {
                    let st = &mut self.seen[to as usize][s as usize];
                    if !st.forwarded && !st.skip.contains(&from) {
                        st.skip.push(from);
                    }
                }
                Event::Validated { node, s } => self.on_validated(now, node, s),
            }
        }
    }

    /// A copy arrives: the core merges it; a new one is measured, announced with
    /// IDONTWANT (when on) and validated before it is forwarded.
    fn on_copy(&mut self, now: u64, to: u32, from: u32, s: u32, h: u16) {
        let new = self.ledgers[to as usize].merge(&self.records[s as usize]).changed();
        let st = &mut self.seen[to as usize][s as usize];
        st.copies += 1;
        if !st.skip.contains(&from) {
            st.skip.push(from);
        }
        if !new {
            return;
        }
        st.first_from = Some(from);
        st.hops = h;
        self.hops.push(f64::from(h));
        self.delivery
            .push((now - self.published_at[s as usize]) as f64 / 1000.0);
        if self.args.idontwant {
            for peer in self.links.of(to).to_vec() {
                if peer != from {
                    self.idontwants += 1;
                    self.push(
                        now + self.links.latency(to, peer),
                        Event::DontWant { to: peer, from: to, s },
                    );
                }
            }
        }
        self.push(now + self.args.validation_delay_us, Event::Validated { node: to, s });
    }

    /// Validated: forward to every mesh peer that did not send it, nor IDONTWANT, and
    /// is not its publisher.
    fn on_validated(&mut self, now: u64, node: u32, s: u32) {
        let publisher = self.publishers[s as usize];
        let st = &mut self.seen[node as usize][s as usize];
        st.forwarded = true;
        let skip = st.skip.clone();
        let h = st.hops;
        for peer in self.links.of(node).to_vec() {
            if skip.contains(&peer) || peer == publisher {
                continue;
            }
            self.send_copy(now, node, peer, s, h + 1);
        }
    }

    /// The figures.
    fn report(mut self) -> SimReport {
        let args = self.args;
        let pairs = (args.nodes * args.sightings) as f64;
        // Publishers receive nothing (everyone skips them): copies are per receiving pair.
        let receiving_pairs = pairs - args.sightings as f64;
        let copies: u64 = self.seen.iter().flatten().map(|st| u64::from(st.copies)).sum();
        let copies_max = self.seen.iter().flatten().map(|st| st.copies).max().unwrap_or(0);
        let received = self.seen.iter().flatten().filter(|st| st.first_from.is_some()).count() as f64;
        let record_bytes = self.records.first().map_or(0, |r| r.encode().len());
        SimReport {
            nodes: args.nodes,
            degree: args.degree,
            sightings: args.sightings,
            seed: args.seed,
            idontwant: args.idontwant,
            loss: args.loss,
            delivery_ratio: received / pairs,
            hops: Stats::of(&mut self.hops),
            delivery_ms: Stats::of(&mut self.delivery),
            copies_per_node_per_sighting: copies as f64 / receiving_pairs,
            copies_max,
            idontwant_per_node_per_sighting: self.idontwants as f64 / pairs,
            bytes_per_node_per_sighting: copies as f64 * record_bytes as f64 / receiving_pairs,
            record_bytes,
        }
    }
}

/// Runs the simulation.
pub fn run(args: &SimArgs) -> Result<SimReport, SimError> {
    args.check()?;
    let mut sim = Sim::new(args);
    sim.publish_all();
    sim.drain();
    Ok(sim.report())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> SimArgs {
        SimArgs {
            nodes: 200,
            sightings: 20,
            seed,
            ..SimArgs::default()
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_report_and_another_seed_another() {
        let a = run(&small(3)).unwrap();
        assert_eq!(a, run(&small(3)).unwrap());
        assert_ne!(a.delivery_ms, run(&small(4)).unwrap().delivery_ms);
    }

    #[test]
    fn without_loss_every_node_gets_every_sighting() {
        let r = run(&small(5)).unwrap();
        assert_eq!(r.delivery_ratio, 1.0);
        assert!(r.copies_per_node_per_sighting >= 1.0, "{r:?}");
        assert!(r.hops.max >= 2.0, "200 nodes at degree 6 are more than one hop wide");
        assert!(r.record_bytes > 100);
    }

    #[test]
    fn idontwant_saves_copies() {
        // IDONTWANT only saves copies when it arrives before the neighbour forwards: with
        // a validation delay like the link latency.
        let slow = SimArgs {
            validation_delay_us: 3000,
            ..small(6)
        };
        let on = run(&SimArgs {
            idontwant: true,
            ..slow.clone()
        })
        .unwrap();
        let off = run(&slow).unwrap();
        assert_eq!(off.idontwant_per_node_per_sighting, 0.0);
        assert!(
            on.copies_per_node_per_sighting < off.copies_per_node_per_sighting,
            "on {on:?}\noff {off:?}"
        );
    }

    #[test]
    fn loss_lowers_delivery_without_lazy_gossip() {
        let r = run(&SimArgs { loss: 0.5, ..small(7) }).unwrap();
        assert!(r.delivery_ratio < 1.0 && r.delivery_ratio > 0.0, "{r:?}");
    }

    #[test]
    fn bad_arguments_are_errors() {
        let with = |change: fn(&mut SimArgs)| {
            let mut args = SimArgs::default();
            change(&mut args);
            args
        };
        for (args, e) in [
            (with(|a| a.nodes = 1), SimError::Nodes(1)),
            (with(|a| a.degree = 0), SimError::Degree(0)),
            (
                with(|a| {
                    a.nodes = 5;
                    a.degree = 5;
                }),
                SimError::Degree(5),
            ),
            (with(|a| a.sightings = 0), SimError::Sightings),
            (with(|a| a.loss = 1.0), SimError::Loss(1.0)),
            (
                with(|a| {
                    a.latency_min_us = 9;
                    a.latency_max_us = 1;
                }),
                SimError::Latency,
            ),
        ] {
            assert_eq!(run(&args), Err(e));
        }
    }
}
