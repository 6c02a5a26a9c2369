//! Detectors: turn the attacks on the PBX beside this node into signed sightings with no
//! operator in the loop — log files and journal units followed line by line ([`tail`]),
//! decoy SIP listeners ([`sensor`]) — through the core's rules (patterns, never-report
//! list, thresholds) into the same path as a manual report.
//!
//! Configured under `[detect]` ([`config`]); nothing is followed or listened on by default.

pub mod config;
pub mod sensor;
pub mod tail;

pub use config::{DetectConfig, LogSource, PatternConfig, SensorConfig, ThresholdConfig};

use crate::engine::EngineHandle;
use crate::metrics::Metrics;
use crate::net::NetHandle;
use fraudmesh::detect::logs::{self, CustomPattern, EventKind, Format, Outcome};
use fraudmesh::detect::pipeline::{Disposition, Pipeline, Rules};
use fraudmesh::detect::window::Detection;
use fraudmesh::sighting::{Draft, Evidence};
use fraudmesh::target::Target;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Events waiting for the detector.
const QUEUE: usize = 4096;

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
    /// Never-report rules and thresholds.
    pub rules: Rules,
    /// Followed logs and their formats.
    pub sources: Vec<(Source, Option<Format>)>,
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

    /// Reads one log line: the built-in patterns (of `format`, or all), then the custom
    /// ones.
    pub fn interpret(&self, line: &str, format: Option<Format>) -> Outcome {
        match logs::parse_line(line, format) {
            Outcome::Unknown => {}
            known => return known,
        }
        for p in &self.custom {
            if let Some(e) = p.parse_line(line) {
                return Outcome::Event(e);
            }
        }
        Outcome::Unknown
    }
}

/// The draft reporting a detection.
pub fn draft(d: &Detection<EventKind>, first: &Observed, ttl_s: u32, now: fraudmesh::Millis) -> Draft {
    let secs = d.last_at.saturating_sub(d.first_at).div_ceil(1000);
    Draft {
        target: Target::host(d.source),
        kind: d.kind.sighting_kind(),
        observed_at: now,
        ttl_s,
        count: d.count,
        evidence: Evidence {
            method: first.method.clone().unwrap_or_default(),
            user_agent: first.user_agent.clone().unwrap_or_default(),
            reason: format!("{} x{} in {secs}s ({})", d.kind.label(), d.count, first.via),
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
    let mut housekeeping = tokio::time::interval(Duration::from_secs(30));
    loop {
        let ev = tokio::select! {
            _ = shutdown.changed() => break,
            _ = housekeeping.tick() => {
                pipeline.prune(crate::now_ms());
                pipeline.set_local(own_addresses(&net));
                continue;
            }
            ev = rx.recv() => match ev { Some(ev) => ev, None => break },
        };
        let now = crate::now_ms();
        let verdict = pipeline.observe(ev.kind, ev.source, ev.username.as_deref(), now);
        metrics
            .detect_events
            .get_or_create(&crate::metrics::DetectLabel {
                kind: ev.kind.label(),
                verdict: verdict_label(&verdict),
            })
            .inc();
        let Disposition::Detected(d) = verdict else {
            continue;
        };
        let draft = draft(&d, &ev, ttl_s, now);
        match engine.report(vec![draft]).await {
            Ok(_) => tracing::info!(
                source = %d.source, kind = d.kind.label(), count = d.count, via = %ev.via,
                usernames = ?d.usernames, "detected an attacker: reported"
            ),
            Err(e) => tracing::warn!(source = %d.source, error = %format!("{e:#}"), "reporting a detection failed"),
        }
    }
}

fn verdict_label(v: &Disposition) -> &'static str {
    match v {
        Disposition::Detected(_) => "detected",
        Disposition::Counted => "counted",
        Disposition::NeverReport => "never_report",
        Disposition::RecentlyRegistered => "recently_registered",
        Disposition::Registered => "registered",
        Disposition::Ignored => "ignored",
    }
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
