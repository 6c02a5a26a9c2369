//! Detectors: turn the attacks on the PBX beside this node into signed sightings with no
//! operator in the loop — log files and journal units followed line by line ([`tail`]),
//! decoy SIP listeners ([`sensor`]) — through the core's rules (patterns and their proof
//! of return routability, never-report list, thresholds, report cap) into the same path
//! as a manual report.
//!
//! Every event carries a [`Proof`]; the core counts only proven ones. The never-report
//! list is the config's (allowlist, loopback, seeds, own listen addresses, interface
//! addresses when listening on an unspecified address, `detect.never_report`) plus what
//! changes while the node runs: the addresses libp2p listens on and the fraudmesh peers
//! it is connected to, refreshed every `REFRESH` (10 s) and again before each report.
//!
//! Configured under `[detect]` ([`config`]); nothing is followed or listened on by default.

pub mod config;
pub mod sensor;
pub mod tail;

pub use config::{DetectConfig, LogSource, PatternConfig, SensorConfig, ThresholdConfig};

use crate::engine::EngineHandle;
use crate::metrics::Metrics;
use crate::net::NetHandle;
use fraudmesh::detect::logs::{CustomPattern, EventKind, Format, Outcome, Reader};
use fraudmesh::detect::pipeline::{Disposition, Pipeline, Rules};
use fraudmesh::detect::window::Detection;
pub use fraudmesh::detect::Proof;
use fraudmesh::sighting::{Draft, Evidence};
use fraudmesh::target::Target;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Events waiting for the detector.
const QUEUE: usize = 4096;
/// How often the detector refreshes its own and its peers' addresses and prunes idle
/// windows.
const REFRESH: Duration = Duration::from_secs(10);

/// Where lines come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A file.
    File(PathBuf),
    /// A systemd unit's journal.
    Journal(String),
}

/// The compiled `[detect]` section.
#[derive(Debug, Clone)]
pub struct Detect {
    /// Never-report rules, thresholds and the report cap.
    pub rules: Rules,
    /// Followed logs and their formats.
    pub sources: Vec<(Source, Format)>,
    /// The operator's patterns.
    pub custom: Vec<CustomPattern>,
    /// Decoy UDP listeners.
    pub sensor_udp: Vec<SocketAddr>,
    /// Decoy TCP listeners.
    pub sensor_tcp: Vec<SocketAddr>,
}

/// An event from a log line or the sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// What happened.
    pub kind: EventKind,
    /// From where.
    pub source: IpAddr,
    /// The username tried, if known.
    pub username: Option<String>,
    /// The SIP method (sensor).
    pub method: Option<String>,
    /// The user agent (sensor).
    pub user_agent: Option<String>,
    /// The pattern or listener that saw it.
    pub via: String,
    /// What proves that `source` receives packets at that address: only a proven event
    /// counts toward a report. Log lines get it from their pattern (see
    /// `fraudmesh::detect::logs`); the sensor sets it from its own exchange
    /// ([`Proof::Handshake`] for a TCP connection, [`Proof::NonceEcho`] for an answer
    /// that echoes a nonce it sent to that address, [`Proof::None`] otherwise).
    pub proof: Proof,
}

/// The way events reach the detector: a bounded queue; an event that does not fit is
/// counted and dropped.
#[derive(Clone)]
pub struct Sink {
    tx: mpsc::Sender<Observed>,
    metrics: Arc<Metrics>,
}

impl Sink {
    /// Queues `ev`, or counts it as dropped when the queue is full.
    pub fn send(&self, ev: Observed) {
        if self.tx.try_send(ev).is_err() {
            self.metrics.detect_dropped.inc();
        }
    }

    /// The node's metrics, for what the followers and listeners count themselves.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl Detect {
    /// Whether anything is followed or listened on.
    pub fn is_active(&self) -> bool {
        !self.sources.is_empty() || !self.sensor_udp.is_empty() || !self.sensor_tcp.is_empty()
    }

    /// Reads one log line seen at `now` with `reader` (the built-in patterns of its
    /// format), then the operator's patterns for that format.
    pub fn interpret(&self, reader: &mut Reader, line: &str, now: fraudmesh::Millis) -> Outcome {
        match reader.read(line, now) {
            Outcome::Unknown => {}
            known => return known,
        }
        for p in self.custom.iter().filter(|p| p.applies_to(reader.format())) {
            if let Some(e) = p.parse_line(line) {
                return Outcome::Event(e);
            }
        }
        Outcome::Unknown
    }
}

/// The target a detection reports: the address, or the IPv6 /64.
pub fn target(d: &Detection<EventKind>) -> Target {
    if d.source.prefix_len() == d.source.max_prefix_len() {
        Target::host(d.source.addr())
    } else {
        Target::Ip(d.source.trunc())
    }
}

/// The draft reporting a detection.
pub fn draft(d: &Detection<EventKind>, first: &Observed, ttl_s: u32, now: fraudmesh::Millis) -> Draft {
    let secs = d.last_at.saturating_sub(d.first_at).div_ceil(1000);
    Draft {
        target: target(d),
        kind: d.kind.sighting_kind(),
        observed_at: now,
        ttl_s,
        count: d.count,
        evidence: Evidence {
            method: first.method.clone().unwrap_or_default(),
            user_agent: first.user_agent.clone().unwrap_or_default(),
            reason: format!(
                "{} x{} in {secs}s ({}, {})",
                d.kind.label(),
                d.count,
                first.via,
                first.proof.label()
            ),
            usernames: d.usernames.clone(),
        }
        .truncated(),
    }
}

/// Starts the followers, the sensor and the detector; it ends when `shutdown` turns true.
pub fn start(
    detect: Detect,
    engine: EngineHandle,
    net: NetHandle,
    metrics: Arc<Metrics>,
    ttl_s: u32,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let sink = Sink {
        tx,
        metrics: metrics.clone(),
    };
    let mut tasks = Vec::new();
    for (source, format) in &detect.sources {
        let follower = tail::Follower::new(source.clone());
        tasks.push(tail::spawn(
            follower,
            *format,
            detect.clone(),
            sink.clone(),
            shutdown.clone(),
        ));
    }
    for addr in &detect.sensor_udp {
        tasks.push(sensor::spawn_udp(*addr, sink.clone(), shutdown.clone())?);
    }
    for addr in &detect.sensor_tcp {
        tasks.push(sensor::spawn_tcp(*addr, sink.clone(), shutdown.clone())?);
    }
    drop(sink);
    tasks.push(tokio::spawn(run(
        Pipeline::new(detect.rules),
        rx,
        engine,
        net,
        metrics,
        ttl_s,
        shutdown,
    )));
    Ok(tasks)
}

async fn run(
    mut pipeline: Pipeline,
    mut rx: mpsc::Receiver<Observed>,
    engine: EngineHandle,
    net: NetHandle,
    metrics: Arc<Metrics>,
    ttl_s: u32,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut housekeeping = tokio::time::interval(REFRESH);
    loop {
        let ev = tokio::select! {
            _ = shutdown.changed() => break,
            _ = housekeeping.tick() => {
                pipeline.prune(crate::now_ms());
                refresh(&mut pipeline, &net);
                continue;
            }
            ev = rx.recv() => match ev { Some(ev) => ev, None => break },
        };
        let now = crate::now_ms();
        let mut verdict = pipeline.observe(ev.kind, ev.source, ev.username.as_deref(), ev.proof, now);
        if let Disposition::Detected(d) = &verdict {
            // A peer may have connected, or an interface come up, since the last refresh.
            refresh(&mut pipeline, &net);
            if pipeline.covers_never_reported(d.source) {
                verdict = Disposition::NeverReport;
            }
        }
        count(&metrics, &ev, &verdict);
        match verdict {
            Disposition::Detected(d) => {
                let draft = draft(&d, &ev, ttl_s, now);
                match engine.report(vec![draft]).await {
                    Ok(_) => tracing::info!(
                        source = %target(&d), kind = d.kind.label(), count = d.count, via = %ev.via,
                        proof = ev.proof.label(), usernames = ?d.usernames, "detected an attacker: reported"
                    ),
                    Err(e) => {
                        tracing::warn!(source = %target(&d), error = %format!("{e:#}"), "reporting a detection failed")
                    }
                }
            }
            Disposition::Capped { warn: true } => tracing::warn!(
                max_per_minute = pipeline.rules().max_reports_per_minute,
                source = %ev.source, kind = ev.kind.label(),
                "detection reports capped: more attackers crossed a threshold this minute than \
                 detect.max_reports_per_minute allows; the rest are held and reported as the cap frees up"
            ),
            _ => {}
        }
    }
}

/// Counts one event's verdict (and, when unproven or capped, why).
fn count(metrics: &Metrics, ev: &Observed, verdict: &Disposition) {
    use crate::metrics::{DetectLabel, UnprovenLabel};
    metrics
        .detect_events
        .get_or_create(&DetectLabel {
            kind: ev.kind.label(),
            verdict: verdict.label(),
        })
        .inc();
    match verdict {
        Disposition::Unproven(reason) => {
            metrics
                .detect_unproven
                .get_or_create(&UnprovenLabel {
                    kind: ev.kind.label(),
                    reason,
                })
                .inc();
        }
        Disposition::Capped { .. } => {
            metrics.detect_reports_capped.inc();
        }
        _ => {}
    }
}

/// Refreshes the addresses that change while the node runs: its own (libp2p expands an
/// unspecified listen address into every interface's) and its peers'.
fn refresh(pipeline: &mut Pipeline, net: &NetHandle) {
    pipeline.set_local(own_addresses(net));
    pipeline.set_peers(net.peer_addresses());
}

/// The addresses the node listens on (an unspecified listen address is expanded by
/// libp2p into every interface's).
fn own_addresses(net: &NetHandle) -> Vec<IpAddr> {
    use libp2p::multiaddr::Protocol;
    net.listen_addrs()
        .iter()
        .flat_map(|a| a.iter())
        .filter_map(|p| match p {
            Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
            Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
            _ => None,
        })
        .collect()
}
