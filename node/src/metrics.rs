//! Prometheus metrics: one documented series per event a user would graph. Served at
//! `GET /metrics` by the API.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label set naming where an accepted sighting came from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// `local` (API/CLI) or `gossip`.
    pub source: &'static str,
}

/// Label set naming why a sighting was rejected.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A stable reason label (see `sighting::Error::label` and the engine's limits).
    pub reason: &'static str,
}

/// Label set naming a gossip verdict.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabel {
    /// `accept`, `ignore` or `reject`.
    pub verdict: &'static str,
}

/// Label set naming an enforcer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnforcerLabel {
    /// Its name (`nftables`, `kamailio`, `file:PATH`).
    pub enforcer: String,
}

/// Label set naming an enforcer and an attempt's result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnforcerResultLabel {
    /// Its name.
    pub enforcer: String,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Label set of a detector event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DetectLabel {
    /// The event kind (`auth-failure`, `scanner`, …).
    pub kind: &'static str,
    /// What became of it: `detected`, `counted`, `never_report`, `recently_registered`,
    /// `registered`, `ignored`.
    pub verdict: &'static str,
}

/// Label set of a call decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    /// The rule that decided (`allowed`, `premium-rate`, `country`, …).
    pub rule: &'static str,
}

/// Label set of an audit finding's severity.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabel {
    /// `high`, `medium` or `low`.
    pub severity: &'static str,
}

/// A histogram family with the enforcer latency buckets.
pub type LatencyFamily = Family<EnforcerLabel, Histogram, fn() -> Histogram>;

fn enforce_latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// Every metric of the node.
pub struct Metrics {
    registry: Registry,
    /// Sightings merged into the ledger, by source.
    pub accepted: Family<SourceLabel, Counter>,
    /// Sightings refused, by reason.
    pub rejected: Family<ReasonLabel, Counter>,
    /// Gossip messages by the verdict given to gossipsub.
    pub gossip: Family<VerdictLabel, Counter>,
    /// Bytes of gossip message data received (before validation; duplicates that
    /// gossipsub drops itself are not seen here).
    pub gossip_bytes_received: Counter,
    /// Connected peers.
    pub peers: Gauge,
    /// Records in the ledger.
    pub records: Gauge,
    /// Targets currently blocked.
    pub blocked: Gauge,
    /// Seconds from a sighting's observed-at to its merge here (gossip and sync).
    pub propagation: Histogram,
    /// Sync sessions this node initiated, by result.
    pub sync_sessions: Family<ResultLabel, Counter>,
    /// Reconcile round trips this node initiated.
    pub sync_rounds: Counter,
    /// Bytes written by the sync protocol (both roles).
    pub sync_bytes_sent: Counter,
    /// Bytes read by the sync protocol (both roles).
    pub sync_bytes_received: Counter,
    /// Records fetched from peers by sync and merged.
    pub sync_records_fetched: Counter,
    /// Seconds per completed sync session.
    pub sync_duration: Histogram,
    /// Peers cut off for breaking the sync protocol or sending invalid records.
    pub sync_misbehaving: Counter,
    /// Enforcer attempts (diffs and full replaces), by enforcer and result.
    pub enforce_applies: Family<EnforcerResultLabel, Counter>,
    /// Entries each enforcer holds in its system.
    pub enforce_entries: Family<EnforcerLabel, Gauge>,
    /// Seconds from a decision change to the enforcer having applied it.
    pub enforce_latency: LatencyFamily,
    /// Detector events by kind and verdict.
    pub detect_events: Family<DetectLabel, Counter>,
    /// Log lines whose address field appeared more than once (crafted): ignored.
    pub detect_ambiguous: Counter,
    /// Events dropped because the detector's queue was full.
    pub detect_dropped: Counter,
    /// Datagrams and connections on the sensor that were not SIP requests.
    pub sensor_garbage: Counter,
    /// Call authorisations by the rule that decided.
    pub call_decisions: Family<RuleLabel, Counter>,
    /// Findings of the last scheduled audit, by severity.
    pub audit_findings: Family<SeverityLabel, Gauge>,
}

/// Label set naming a session result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok`, `failed` or `misbehaved`.
    pub result: &'static str,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fraudmesh");
        let accepted = Family::<SourceLabel, Counter>::default();
        registry.register(
            "sightings_accepted",
            "Sightings merged into the ledger, by source",
            accepted.clone(),
        );
        let rejected = Family::<ReasonLabel, Counter>::default();
        registry.register("sightings_rejected", "Sightings refused, by reason", rejected.clone());
        let gossip = Family::<VerdictLabel, Counter>::default();
        registry.register(
            "gossip_messages",
            "Gossip messages by validation verdict",
            gossip.clone(),
        );
        let gossip_bytes_received = Counter::default();
        registry.register(
            "gossip_bytes_received",
            "Bytes of gossip message data received for validation",
            gossip_bytes_received.clone(),
        );
        let peers = Gauge::default();
        registry.register("peers", "Connected peers", peers.clone());
        let records = Gauge::default();
        registry.register("ledger_records", "Records held in the ledger", records.clone());
        let blocked = Gauge::default();
        registry.register("blocked_targets", "Targets currently blocked", blocked.clone());
        let propagation = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ]);
        registry.register(
            "propagation_delay_seconds",
            "Delay from a sighting's observed-at to its merge on this node (gossip)",
            propagation.clone(),
        );
        let sync_sessions = Family::<ResultLabel, Counter>::default();
        registry.register(
            "sync_sessions",
            "Sync sessions initiated, by result",
            sync_sessions.clone(),
        );
        let sync_rounds = Counter::default();
        registry.register("sync_rounds", "Reconcile round trips initiated", sync_rounds.clone());
        let sync_bytes_sent = Counter::default();
        registry.register(
            "sync_bytes_sent",
            "Bytes written by the sync protocol",
            sync_bytes_sent.clone(),
        );
        let sync_bytes_received = Counter::default();
        registry.register(
            "sync_bytes_received",
            "Bytes read by the sync protocol",
            sync_bytes_received.clone(),
        );
        let sync_records_fetched = Counter::default();
        registry.register(
            "sync_records_fetched",
            "Records fetched from peers by sync and merged",
            sync_records_fetched.clone(),
        );
        let sync_duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        registry.register(
            "sync_duration_seconds",
            "Duration of completed sync sessions",
            sync_duration.clone(),
        );
        let sync_misbehaving = Counter::default();
        registry.register(
            "sync_misbehaving_peers",
            "Peers cut off for breaking the sync protocol",
            sync_misbehaving.clone(),
        );
        let enforce_applies = Family::<EnforcerResultLabel, Counter>::default();
        registry.register(
            "enforce_applies",
            "Enforcer attempts to apply the list, by enforcer and result",
            enforce_applies.clone(),
        );
        let enforce_entries = Family::<EnforcerLabel, Gauge>::default();
        registry.register(
            "enforce_entries",
            "Entries each enforcer holds in its system",
            enforce_entries.clone(),
        );
        let enforce_latency: LatencyFamily = Family::new_with_constructor(enforce_latency_histogram);
        registry.register(
            "enforce_latency_seconds",
            "Delay from a decision change to the enforcer having applied it",
            enforce_latency.clone(),
        );
        let detect_events = Family::<DetectLabel, Counter>::default();
        registry.register(
            "detect_events",
            "Detector events (log lines, sensor hits) by kind and verdict",
            detect_events.clone(),
        );
        let detect_ambiguous = Counter::default();
        registry.register(
            "detect_ambiguous_lines",
            "Log lines ignored because their address field appeared more than once",
            detect_ambiguous.clone(),
        );
        let detect_dropped = Counter::default();
        registry.register(
            "detect_dropped_events",
            "Detector events dropped because its queue was full",
            detect_dropped.clone(),
        );
        let sensor_garbage = Counter::default();
        registry.register(
            "sensor_garbage",
            "Sensor datagrams and connections that were not SIP requests",
            sensor_garbage.clone(),
        );
        let call_decisions = Family::<RuleLabel, Counter>::default();
        registry.register(
            "call_decisions",
            "Call authorisations by the rule that decided",
            call_decisions.clone(),
        );
        let audit_findings = Family::<SeverityLabel, Gauge>::default();
        registry.register(
            "audit_findings",
            "Findings of the last scheduled PBX audit, by severity",
            audit_findings.clone(),
        );
        Self {
            call_decisions,
            audit_findings,
            detect_events,
            detect_ambiguous,
            detect_dropped,
            sensor_garbage,
            enforce_applies,
            enforce_entries,
            enforce_latency,
            sync_sessions,
            sync_rounds,
            sync_bytes_sent,
            sync_bytes_received,
            sync_records_fetched,
            sync_duration,
            sync_misbehaving,
            registry,
            accepted,
            rejected,
            gossip,
            gossip_bytes_received,
            peers,
            records,
            blocked,
            propagation,
        }
    }

    /// Counts one rejection.
    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// One sample line of the text exposition: `name{label="value",…} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series name as exposed (with `_total`, `_bucket`, `_count`, … suffixes).
    pub name: String,
    /// The labels in the order written, values unescaped.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A parsed `GET /metrics` answer, for the node's tests, its benches and the testnet.
/// Comments (`# HELP`, `# TYPE`, `# EOF`) and lines that are not samples are skipped.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    samples: Vec<Sample>,
}

impl Scrape {
    /// Parses the text exposition format.
    pub fn parse(text: &str) -> Self {
        Self {
            samples: text.lines().filter_map(parse_sample).collect(),
        }
    }

    /// The samples named exactly `name`, whatever their labels.
    pub fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The sum of every sample named `name` over all its label sets; 0 when there is none.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples(name).map(|s| s.value).sum()
    }

    /// The sum of the samples named `name` that carry every `(label, value)` of `labels`
    /// (other labels may differ), or `None` when no sample does. With every label of the
    /// series given, that is the one sample's value.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples(name)
            .filter(|s| labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .map(|s| s.value)
            .reduce(|a, b| a + b)
    }
}

/// One sample line, or `None` for comments, blank lines and anything malformed.
fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let valid_name = name
        .chars()
        .enumerate()
        .all(|(i, c)| c == '_' || c == ':' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    if name.is_empty() || !valid_name {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once('=')?;
            let mut chars = after.strip_prefix('"')?.char_indices();
            let mut value = String::new();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((key.trim().to_string(), value));
            rest = &after[1 + end + 1..];
        }
    }
    // The value, then an optional timestamp and (OpenMetrics) an exemplar: ignored.
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[cfg(test)]
mod scrape_tests {
    use super::*;

    const TEXT: &str = "# HELP fraudmesh_gossip_messages Gossip messages by verdict.\n\
        # TYPE fraudmesh_gossip_messages counter\n\
        fraudmesh_gossip_messages_total{verdict=\"accept\"} 5\n\
        fraudmesh_gossip_messages_total{verdict=\"reject\"} 2\n\
        fraudmesh_gossip_messages_total_extra 100\n\
        fraudmesh_enforce_applies_total{enforcer=\"file:/tmp/a \\\"b\\\",c}\",result=\"ok\"} 3\n\
        fraudmesh_enforce_applies_total{enforcer=\"file:/tmp/x\",result=\"error\"} 1\n\
        fraudmesh_enforce_applies_total{enforcer=\"nftables\",result=\"ok\"} 4\n\
        fraudmesh_propagation_delay_seconds_bucket{le=\"+Inf\"} 9\n\
        fraudmesh_propagation_delay_seconds_count 9\n\
        fraudmesh_peers 3 1700000000000\n\
        fraudmesh_records 1.5e3\n\
        not a sample\n\
        # EOF\n";

    #[test]
    fn sums_over_label_sets_of_the_exact_name_only() {
        let s = Scrape::parse(TEXT);
        assert_eq!(s.sum("fraudmesh_gossip_messages_total"), 7.0);
        assert_eq!(s.sum("fraudmesh_enforce_applies_total"), 8.0);
        assert_eq!(s.sum("fraudmesh_propagation_delay_seconds_count"), 9.0);
        assert_eq!(s.sum("fraudmesh_peers"), 3.0, "a timestamp is not the value");
        assert_eq!(s.sum("fraudmesh_records"), 1500.0);
        assert_eq!(s.sum("fraudmesh_nothing"), 0.0);
        assert_eq!(s.sum("fraudmesh_gossip"), 0.0, "names are not prefixes");
    }

    #[test]
    fn value_matches_the_given_labels_and_says_when_nothing_does() {
        let s = Scrape::parse(TEXT);
        let m = "fraudmesh_gossip_messages_total";
        assert_eq!(s.value(m, &[("verdict", "reject")]), Some(2.0));
        assert_eq!(s.value(m, &[("verdict", "ignore")]), None);
        assert_eq!(s.value(m, &[]), Some(7.0));
        assert_eq!(s.value("fraudmesh_nothing", &[]), None);
        let applies = "fraudmesh_enforce_applies_total";
        assert_eq!(s.value(applies, &[("result", "ok")]), Some(7.0));
        assert_eq!(
            s.value(applies, &[("enforcer", "nftables"), ("result", "ok")]),
            Some(4.0)
        );
        assert_eq!(s.value(applies, &[("enforcer", "nftables"), ("result", "error")]), None);
        assert_eq!(
            s.value("fraudmesh_propagation_delay_seconds_bucket", &[("le", "+Inf")]),
            Some(9.0)
        );
    }

    #[test]
    fn label_values_are_unescaped_and_samples_can_be_filtered() {
        let s = Scrape::parse(TEXT);
        let files: Vec<&str> = s
            .samples("fraudmesh_enforce_applies_total")
            .filter_map(|x| x.label("enforcer"))
            .filter(|e| e.starts_with("file:"))
            .collect();
        assert_eq!(files, ["file:/tmp/a \"b\",c}", "file:/tmp/x"]);
        assert_eq!(s.samples("fraudmesh_gossip_messages_total_extra").count(), 1);
    }

    #[test]
    fn the_nodes_own_exposition_parses() {
        let m = Metrics::new();
        m.reject("invalid_signature");
        m.reject("invalid_signature");
        m.reject("envelope_decode");
        let s = Scrape::parse(&m.encode());
        let r = "fraudmesh_sightings_rejected_total";
        assert_eq!(s.value(r, &[("reason", "invalid_signature")]), Some(2.0));
        assert_eq!(s.sum(r), 3.0);
    }
}
