//! What a testnet run found: `report.json` and the plain summary table printed at the
//! end. Field names are a contract (tools read `report.json`).

use serde::Serialize;
use std::fmt::Write as _;

/// Percentiles of a set of latencies, ms.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// How many values.
    pub samples: usize,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (any order); all zero when empty.
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Self {
            p50: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
            max: v[v.len() - 1],
            samples: v.len(),
        }
    }
}

/// One checked expectation of a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Expectation {
    /// What is expected, in words.
    pub name: String,
    /// Whether it held.
    pub pass: bool,
    /// The figure it was judged by.
    pub figure: String,
}

impl Expectation {
    /// An expectation with its verdict and figure.
    pub fn new(name: impl Into<String>, pass: bool, figure: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            pass,
            figure: figure.into(),
        }
    }
}

/// A figure before and after a scenario's load.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Change {
    /// Before the load.
    pub before: u64,
    /// After it.
    pub after: u64,
    /// `after - before` (negative when it shrank).
    pub growth: i64,
}

impl Change {
    /// The change from `before` to `after`.
    pub fn new(before: u64, after: u64) -> Self {
        Self {
            before,
            after,
            growth: after as i64 - before as i64,
        }
    }
}

/// What a node spent on a scenario's load (the `flood`): each figure before and after.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Resources {
    /// Resident set size, bytes.
    pub rss_bytes: Change,
    /// Bytes its store uses on disk (`store_bytes` of `GET /v1/status`).
    pub store_bytes: Change,
    /// CPU time used by the process since it started (user + system), ms.
    pub cpu_ms: Change,
    /// Records in its ledger.
    pub records: Change,
}

/// One node's figures.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    /// Its position in the cluster.
    pub index: usize,
    /// Its peer id.
    pub peer_id: String,
    /// Report→blocked latency on this node, ms.
    pub latency_ms: Percentiles,
    /// Targets it blocked at the end.
    pub blocked: usize,
    /// Gossip messages it received for validation (all verdicts).
    pub messages: u64,
    /// Bytes it received: gossip message data plus sync traffic.
    pub bytes: u64,
    /// Invalid gossip messages it rejected.
    pub rejected: u64,
    /// Largest resident set size seen, bytes.
    pub rss_bytes_max: u64,
    /// How often it was started (more than once under churn).
    pub starts: u32,
    /// What it is in the scenario (`relay`, `leaf`, `strict`, …), when the scenario lays
    /// the cluster out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// What it spent on the scenario's load, when the scenario measures that.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// CPU time it spent per sighting it received, µs (wave CPU minus idle CPU over the
    /// same time), when the scenario measures it (`attack-wave`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_sighting: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Nodes in the mesh.
    pub nodes: usize,
    /// Seed peers among them.
    pub seeds: usize,
    /// Scenario name.
    pub scenario: String,
    /// Random seed (same seed, same targets, reporters and fault schedule).
    pub seed: u64,
    /// Whether every node ended up blocking every acknowledged target (in `flood`: every
    /// node that trusts the reporters).
    pub converged: bool,
    /// Report→blocked latency over every (node, target) pair except the reporter's own.
    pub latency_ms: Percentiles,
    /// Mean gossip messages received per node.
    pub messages_per_node: f64,
    /// Mean bytes received per node (gossip data + sync).
    pub bytes_per_node: f64,
    /// Largest resident set size of any node, bytes.
    pub rss_bytes_max: u64,
    /// Targets reported and acknowledged.
    pub targets: usize,
    /// Wall time of the scenario (after the mesh formed), seconds.
    pub duration_s: f64,
    /// Each expectation with pass/fail and its figure.
    pub expectations: Vec<Expectation>,
    /// Scenario-specific figures (catch-up, heal, kills…).
    pub figures: serde_json::Map<String, serde_json::Value>,
    /// Fraction of (node, target) pairs blocked over time, ms after the first report.
    pub convergence: Vec<(u64, f64)>,
    /// Per node.
    pub per_node: Vec<NodeReport>,
    /// Plot files written beside report.json.
    pub plots: Vec<String>,
}

impl Report {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.expectations.iter().all(|e| e.pass)
    }

    /// The plain summary table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let l = &self.latency_ms;
        let _ = writeln!(
            s,
            "scenario {}   nodes {} (seeds {})   seed {}   {:.1} s",
            self.scenario, self.nodes, self.seeds, self.seed, self.duration_s
        );
        let _ = writeln!(s, "{:<34} {}", "converged", if self.converged { "yes" } else { "NO" });
        let _ = writeln!(s, "{:<34} {}", "targets acknowledged", self.targets);
        let _ = writeln!(
            s,
            "{:<34} p50 {:.0}  p95 {:.0}  p99 {:.0}  max {:.0}  ({} pairs)",
            "report→blocked latency, ms", l.p50, l.p95, l.p99, l.max, l.samples
        );
        let _ = writeln!(s, "{:<34} {:.0}", "gossip messages per node", self.messages_per_node);
        let _ = writeln!(s, "{:<34} {:.0}", "bytes received per node", self.bytes_per_node);
        let _ = writeln!(
            s,
            "{:<34} {:.1} MiB",
            "largest node RSS",
            self.rss_bytes_max as f64 / (1024.0 * 1024.0)
        );
        for (k, v) in &self.figures {
            let _ = writeln!(s, "{k:<34} {v}");
        }
        self.resources_table(&mut s);
        let _ = writeln!(s);
        let width = self
            .expectations
            .iter()
            .map(|e| e.name.len())
            .max()
            .unwrap_or(10)
            .max(11);
        let _ = writeln!(s, "{:<width$}  result  figure", "expectation");
        for e in &self.expectations {
            let _ = writeln!(
                s,
                "{:<width$}  {:<6}  {}",
                e.name,
                if e.pass { "PASS" } else { "FAIL" },
                e.figure
            );
        }
        s
    }

    /// The per-node table of what the load cost, when the scenario measured it.
    fn resources_table(&self, s: &mut String) {
        if self.per_node.iter().all(|p| p.resources.is_none()) {
            return;
        }
        let mib = |b: i64| b as f64 / (1024.0 * 1024.0);
        let _ = writeln!(
            s,
            "\n{:<5} {:<9} {:>22} {:>22} {:>9} {:>17}",
            "node", "role", "RSS MiB (growth)", "store MiB (growth)", "CPU s", "records"
        );
        for p in &self.per_node {
            let Some(r) = &p.resources else { continue };
            let _ = writeln!(
                s,
                "{:<5} {:<9} {:>22} {:>22} {:>9.2} {:>17}",
                p.index,
                p.role.as_deref().unwrap_or("-"),
                format!("{:.1} ({:+.1})", mib(r.rss_bytes.after as i64), mib(r.rss_bytes.growth)),
                format!(
                    "{:.1} ({:+.1})",
                    mib(r.store_bytes.after as i64),
                    mib(r.store_bytes.growth)
                ),
                r.cpu_ms.growth as f64 / 1000.0,
                format!("{} → {}", r.records.before, r.records.after),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v);
        assert_eq!((p.p50, p.p95, p.p99, p.max, p.samples), (50.0, 95.0, 99.0, 100.0, 100));
        let p = Percentiles::of(&[7.0]);
        assert_eq!((p.p50, p.p99, p.max), (7.0, 7.0, 7.0));
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
    }

    #[test]
    fn change_may_shrink() {
        assert_eq!(Change::new(10, 25).growth, 15);
        assert_eq!(Change::new(25, 10).growth, -15);
    }
}
