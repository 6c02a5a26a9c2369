//! Prometheus metrics: one documented series per event a user would graph. Served at
//! `GET /metrics` by the API.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use std::sync::atomic::AtomicU64;

/// Label set naming where an accepted sighting came from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// `local` (API/CLI) or `gossip`.
    pub source: &'static str,
}

/// Label set naming a reason: why a sighting was rejected, or why a stored entry was
/// skipped at start.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A stable reason label (see `sighting::Error::label`, the engine's limits and
    /// `store_load_skipped`).
    pub reason: &'static str,
}

/// Label set naming a gossip verdict.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabel {
    /// `accept`, `ignore` or `reject`.
    pub verdict: &'static str,
}

/// Label set naming a connection's direction.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `in` (the peer dialled) or `out` (this node dialled).
    pub direction: &'static str,
}

/// Label set of a connection a bound denied.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeniedLabel {
    /// `in` or `out`.
    pub direction: &'static str,
    /// The bound: `pending_incoming`, `pending_outgoing`, `incoming`, `outgoing`,
    /// `per_peer`, `total`, `per_ip`, `memory`, `refused` (fault injection) or `other`.
    pub reason: &'static str,
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
    /// What became of it: `detected`, `counted`, `unproven`, `never_report`,
    /// `recently_registered`, `registered`, `ignored`, `capped`.
    pub verdict: &'static str,
}

/// Label set of a request on the sensor.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SensorLabel {
    /// `udp` or `tcp`.
    pub transport: &'static str,
    /// What became of it: `proven` (reported: a nonce echoed, or over TCP), `challenged`
    /// (answered with a nonce), `limited` (over a rate or size bound: dropped),
    /// `unanswerable` (an ACK without a valid nonce, or headers a response needs missing).
    pub outcome: &'static str,
}

/// Label set of a detector event without proof of return routability.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnprovenLabel {
    /// The event kind (`auth-failure`, `scanner`, …).
    pub kind: &'static str,
    /// Why it is unproven (`udp`, `no-transport`, `nonce-not-sent`, `nonce-not-bound`,
    /// `legacy-line`, …; see `fraudmesh::detect::logs`).
    pub reason: &'static str,
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

/// Registers metrics with their help texts.
struct Registrar(Registry);

impl Registrar {
    /// A new metric of type `M` registered as `name`.
    fn add<M: Metric + Clone + Default>(&mut self, name: &str, help: &str) -> M {
        self.add_with(name, help, M::default())
    }

    /// `metric` registered as `name` (a metric is a shared handle: what the returned one
    /// counts, the registry's copy shows).
    fn add_with<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.0.register(name, help, metric.clone());
        metric
    }
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
    /// Received sightings dropped before their signature check as duplicates: held in the
    /// ledger, recently relayed without being stored, or repeated within one message.
    pub duplicates: Counter,
    /// Gossip messages only partly relayable, whose relayable part this node published as
    /// a new envelope.
    pub relay_republished: Counter,
    /// Such envelopes dropped because the network's publish queue was full.
    pub relay_dropped: Counter,
    /// Records of strangers held (at most `limits.max_stranger_records`).
    pub stranger_records: Gauge,
    /// Strangers' records evicted to admit a stranger with fewer records.
    pub stranger_evictions: Counter,
    /// Reporters the stranger rate limiter tracks (bounded; least recently used go first).
    pub stranger_rate_tracked: Gauge,
    /// Record writes and removals the store refused (failed writes are retried).
    pub store_write_errors: Counter,
    /// Records whose write failed and is not yet retried successfully.
    pub store_unwritten: Gauge,
    /// Stored entries skipped while loading at start, by reason (`unreadable`, `corrupt`).
    pub store_load_skipped: Family<ReasonLabel, Counter>,
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
    /// Inbound sync requests dropped unanswered, by reason (`busy`: the peer already has
    /// one in work or all answer slots are taken; `rate`: over the peer's budget).
    pub sync_requests_refused: Family<ReasonLabel, Counter>,
    /// Established connections, by direction.
    pub connections: Family<DirectionLabel, Gauge>,
    /// Connections in their handshake (incoming) or being dialled (outgoing).
    pub connections_pending: Family<DirectionLabel, Gauge>,
    /// Connections a bound denied, by direction and bound.
    pub connections_denied: Family<DeniedLabel, Counter>,
    /// Connections of idle strangers closed because the node had more peers than it wants
    /// (also counted in `connections_pruned{reason="idle"}`).
    pub idle_closed: Counter,
    /// Connections the node closed to stay within its peer bounds, by reason
    /// (`surplus`: beyond `max_peers`; `idle`: idle strangers beyond `target_peers`).
    pub connections_pruned: Family<ReasonLabel, Counter>,
    /// Redials of seeds and lost peers started (with backoff, while below target).
    pub redials: Counter,
    /// Addresses learned from peers (identify, Kademlia) that the dial policy dropped.
    pub dial_addresses_filtered: Counter,
    /// Reachability: 1 for the current state (`public`, `private`, `unknown`), 0 else.
    pub reachability: Family<StateLabel, Gauge>,
    /// Relay reservations this node holds (as a client behind NAT).
    pub relay_reservations: Gauge,
    /// Reservations other nodes hold on this node (as a relay).
    pub relay_served_reservations: Gauge,
    /// Circuits this node relays now.
    pub relay_circuits: Gauge,
    /// Hole punches (DCUtR) by result (`success`, `failure`).
    pub hole_punches: Family<ResultLabel, Counter>,
    /// Connected peers by how they are reached (`direct`, `relayed`) and the transport.
    pub peers_by_connection: Family<ConnectionLabel, Gauge>,
    /// Enforcer attempts (diffs and full replaces), by enforcer and result.
    pub enforce_applies: Family<EnforcerResultLabel, Counter>,
    /// Entries each enforcer holds in its system.
    pub enforce_entries: Family<EnforcerLabel, Gauge>,
    /// Seconds from a decision change to the enforcer having applied it.
    pub enforce_latency: LatencyFamily,
    /// Detector events by kind and verdict.
    pub detect_events: Family<DetectLabel, Counter>,
    /// Detector events that prove nothing about their source (it may be forged): counted
    /// here, never reported.
    pub detect_unproven: Family<UnprovenLabel, Counter>,
    /// Detections held because the node reached `detect.max_reports_per_minute`.
    pub detect_reports_capped: Counter,
    /// Log lines whose address field appeared more than once (crafted): ignored.
    pub detect_ambiguous: Counter,
    /// Events dropped because the detector's queue was full.
    pub detect_dropped: Counter,
    /// Datagrams and connections on the sensor that were not SIP requests.
    pub sensor_garbage: Counter,
    /// SIP requests on the sensor by transport and outcome.
    pub sensor_requests: Family<SensorLabel, Counter>,
    /// Call authorisations by the rule that decided.
    pub call_decisions: Family<RuleLabel, Counter>,
    /// Call authorisations answered per `calls.on_error` because the node could not
    /// decide, by reason (`timeout`: no decision within the API's wait; `error`: the policy
    /// stopped or its storage failed).
    pub call_fallbacks: Family<ReasonLabel, Counter>,
    /// Seconds per flush of the call counters' store (one per batch of requests).
    pub call_store_flush: Histogram,
    /// Keys the call counters' store wrote or removed.
    pub call_store_writes: Counter,
    /// Unreadable call counter entries skipped at start.
    pub call_store_skipped: Counter,
    /// Findings of the last scheduled audit, by severity.
    pub audit_findings: Family<SeverityLabel, Gauge>,
    /// Endorsement records held (of trusted organisations), by state: `active`,
    /// `revoked`, `expired` (until collected).
    pub endorsements: Family<StateLabel, Gauge>,
    /// Endorsements received (gossip, sync) or given locally, by what became of them:
    /// `merged`, `local`, `duplicate`, `superseded`, `untrusted_org` (relayed, not
    /// stored), `org_rate`, or the error's label (`fraudmesh::endorsement::Error`).
    pub endorsements_received: Family<VerdictLabel, Counter>,
    /// The operator's allows in force.
    pub allows: Gauge,
    /// Reputation factor (0..1) of each trusted reporter with a penalty on this node.
    pub reporter_reputation: Family<ReporterLabel, Gauge<f64, AtomicU64>>,
}

/// Label set naming a reporter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReporterLabel {
    /// Its peer id.
    pub reporter: String,
}

/// Label set naming a state (reachability, endorsements).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `public`, `private` or `unknown`; `active`, `revoked`, `expired`.
    pub state: &'static str,
}

/// Label set of a peer's connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabel {
    /// `direct` or `relayed`.
    pub connection: &'static str,
    /// `tcp`, `quic` or `memory` (relayed: the transport to the relay).
    pub transport: &'static str,
}

/// Label set naming a session result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok`, `failed` or `misbehaved`.
    pub result: &'static str,
}

impl Metrics {
    /// Creates and registers every metric. The fields are initialised in the order
    /// written, which is the order of registration and so of `GET /metrics`.
    pub fn new() -> Self {
        let mut r = Registrar(Registry::with_prefix("fraudmesh"));
        Self {
            // The ledger and gossip.
            accepted: r.add("sightings_accepted", "Sightings merged into the ledger, by source"),
            rejected: r.add("sightings_rejected", "Sightings refused, by reason"),
            gossip: r.add("gossip_messages", "Gossip messages by validation verdict"),
            gossip_bytes_received: r.add(
                "gossip_bytes_received",
                "Bytes of gossip message data received for validation",
            ),
            peers: r.add("peers", "Connected peers"),
            records: r.add("ledger_records", "Records held in the ledger"),
            blocked: r.add("blocked_targets", "Targets currently blocked"),
            propagation: r.add_with(
                "propagation_delay_seconds",
                "Delay from a sighting's observed-at to its merge on this node (gossip)",
                Histogram::new([
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
            ),
            duplicates: r.add(
                "sightings_duplicate",
                "Sightings dropped before the signature check as already held or recently relayed",
            ),
            relay_republished: r.add(
                "gossip_relay_republished",
                "Partly relayable gossip messages whose relayable part was published anew",
            ),
            relay_dropped: r.add(
                "gossip_relay_dropped",
                "Relay envelopes dropped because the publish queue was full",
            ),
            stranger_records: r.add("stranger_records", "Records of strangers held"),
            stranger_evictions: r.add(
                "stranger_evictions",
                "Strangers' records evicted to admit a stranger holding fewer",
            ),
            stranger_rate_tracked: r.add(
                "stranger_rate_tracked",
                "Reporters tracked by the stranger rate limiter",
            ),
            store_write_errors: r.add(
                "store_write_errors",
                "Record writes and removals the store refused (writes are retried)",
            ),
            store_unwritten: r.add(
                "store_unwritten_records",
                "Records whose write failed and awaits a successful retry",
            ),
            store_load_skipped: r.add(
                "store_load_skipped",
                "Stored entries skipped while loading at start, by reason",
            ),
            // Sync.
            sync_sessions: r.add("sync_sessions", "Sync sessions initiated, by result"),
            sync_rounds: r.add("sync_rounds", "Reconcile round trips initiated"),
            sync_bytes_sent: r.add("sync_bytes_sent", "Bytes written by the sync protocol"),
            sync_bytes_received: r.add("sync_bytes_received", "Bytes read by the sync protocol"),
            sync_records_fetched: r.add("sync_records_fetched", "Records fetched from peers by sync and merged"),
            sync_duration: r.add_with(
                "sync_duration_seconds",
                "Duration of completed sync sessions",
                Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            ),
            sync_misbehaving: r.add("sync_misbehaving_peers", "Peers cut off for breaking the sync protocol"),
            sync_requests_refused: r.add(
                "sync_requests_refused",
                "Inbound sync requests dropped unanswered, by reason (busy, rate)",
            ),
            // Connections.
            connections: r.add("connections", "Established connections, by direction"),
            connections_pending: r.add(
                "connections_pending",
                "Connections in their handshake (in) or being dialled (out)",
            ),
            connections_denied: r.add(
                "connections_denied",
                "Connections denied by a connection bound, by direction and bound",
            ),
            idle_closed: r.add(
                "idle_connections_closed",
                "Connections of idle strangers closed while the node had more peers than it wants",
            ),
            connections_pruned: r.add(
                "connections_pruned",
                "Connections closed to stay within the peer bounds, by reason (surplus beyond max_peers, idle beyond target_peers)",
            ),
            redials: r.add(
                "redials",
                "Redials of seeds and lost peers started while below target_peers (with backoff)",
            ),
            dial_addresses_filtered: r.add(
                "dial_addresses_filtered",
                "Addresses learned from peers that the dial policy dropped (private, loopback, ...)",
            ),
            // NAT traversal.
            reachability: r.add(
                "reachability",
                "Whether other nodes can dial this node: 1 for the current state",
            ),
            relay_reservations: r.add("relay_reservations", "Relay reservations this node holds on relays"),
            relay_served_reservations: r.add(
                "relay_served_reservations",
                "Reservations other nodes hold on this node as a relay",
            ),
            relay_circuits: r.add("relay_circuits", "Circuits this node relays now"),
            hole_punches: r.add("hole_punches", "Hole punches (DCUtR) by result"),
            peers_by_connection: r.add(
                "peers_by_connection",
                "Connected peers by connection (direct, relayed) and transport",
            ),
            // Enforcers.
            enforce_applies: r.add(
                "enforce_applies",
                "Enforcer attempts to apply the list, by enforcer and result",
            ),
            enforce_entries: r.add("enforce_entries", "Entries each enforcer holds in its system"),
            enforce_latency: r.add_with(
                "enforce_latency_seconds",
                "Delay from a decision change to the enforcer having applied it",
                Family::new_with_constructor(enforce_latency_histogram),
            ),
            // Detectors.
            detect_events: r.add(
                "detect_events",
                "Detector events (log lines, sensor hits) by kind and verdict",
            ),
            detect_unproven: r.add(
                "detect_unproven_events",
                "Detector events without proof that the source receives packets at its address (never reported), by kind and reason",
            ),
            detect_reports_capped: r.add(
                "detect_reports_capped",
                "Detections held because the node reached detect.max_reports_per_minute",
            ),
            detect_ambiguous: r.add(
                "detect_ambiguous_lines",
                "Log lines ignored because their address field appeared more than once",
            ),
            detect_dropped: r.add(
                "detect_dropped_events",
                "Detector events dropped because its queue was full",
            ),
            sensor_garbage: r.add(
                "sensor_garbage",
                "Sensor datagrams and connections that were not SIP requests",
            ),
            sensor_requests: r.add(
                "sensor_requests",
                "SIP requests on the sensor by transport and outcome (proven, challenged, limited, unanswerable)",
            ),
            // Calls and audits.
            call_decisions: r.add("call_decisions", "Call authorisations by the rule that decided"),
            call_fallbacks: r.add(
                "call_fallbacks",
                "Call authorisations answered per calls.on_error because the node could not decide, by reason (timeout, error)",
            ),
            call_store_flush: r.add_with(
                "call_store_flush_seconds",
                "Duration of the call counters' store flushes (one per batch of requests)",
                Histogram::new([
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            ),
            call_store_writes: r.add(
                "call_store_writes",
                "Keys the call counters' store wrote or removed",
            ),
            call_store_skipped: r.add(
                "call_store_skipped",
                "Unreadable call counter entries skipped (and removed) at start",
            ),
            audit_findings: r.add(
                "audit_findings",
                "Findings of the last scheduled PBX audit, by severity",
            ),
            // Organisations and local overrides.
            endorsements: r.add(
                "endorsements",
                "Endorsement records held of trusted organisations, by state (active, revoked, expired)",
            ),
            endorsements_received: r.add(
                "endorsements_received",
                "Endorsements received or given locally, by what became of them",
            ),
            allows: r.add("allows", "The operator's allows in force (local overrides that win over the mesh)"),
            reporter_reputation: r.add(
                "reporter_reputation",
                "Reputation factor (0..1) of trusted reporters penalised by this node's allows",
            ),
            registry: r.0,
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
