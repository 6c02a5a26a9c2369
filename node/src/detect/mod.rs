//! Detectors: turn the attacks on the PBX beside this node into signed sightings with no
//! operator in the loop — log files and journal units followed line by line ([`tail`]),
//! decoy SIP listeners ([`sensor`]) — through the core's rules (patterns, never-report
//! list, thresholds) into the same path as a manual report.
//!
//! Configured under `[detect]`; nothing is followed or listened on by default.

pub mod sensor;
pub mod tail;

use crate::engine::EngineHandle;
use crate::metrics::Metrics;
use crate::net::NetHandle;
use anyhow::{anyhow, bail, Context};
use fraudmesh::detect::logs::{self, CustomPattern, EventKind, Format, Outcome};
use fraudmesh::detect::pipeline::{Pipeline, Rules, Verdict};
use fraudmesh::detect::window::{Detection, Threshold};
use fraudmesh::sighting::{Draft, Evidence};
use fraudmesh::target::Target;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Events waiting for the detector.
const QUEUE: usize = 4096;
/// Most (source, kind) windows held.
const MAX_WINDOWS: usize = 100_000;

/// `[detect]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// `[[detect.logs]]`: files or journal units to follow.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogSource>,
    /// `[[detect.patterns]]`: the operator's own patterns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<PatternConfig>,
    /// `[detect.thresholds.KIND]`: overrides of the default thresholds.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds: BTreeMap<String, ThresholdConfig>,
    /// Addresses and prefixes never reported (trunks, carriers); the policy allowlist,
    /// loopback, this node's addresses and the seeds are added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub never_report: Vec<String>,
    /// A source that registered successfully is never reported for this long.
    #[serde(with = "humantime_serde")]
    pub registered_grace: Duration,
    /// `[detect.sensor]`: decoy SIP listeners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor: Option<SensorConfig>,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            logs: Vec::new(),
            patterns: Vec::new(),
            thresholds: BTreeMap::new(),
            never_report: Vec::new(),
            registered_grace: Duration::from_secs(30 * 60),
            sensor: None,
        }
    }
}

/// One followed log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogSource {
    /// A file (followed across rotation and truncation; it may not exist yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Or a systemd unit whose journal is followed (`journalctl -f -u UNIT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
    /// `asterisk`, `freeswitch` or `kamailio`; default: any (recognised line by line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// One operator pattern.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    /// Its name.
    pub name: String,
    /// What a match means: `auth-failure`, `unknown-account`, `acl-rejected`,
    /// `no-such-extension`, `scanner`, `flood` or `registered`.
    pub kind: String,
    /// A regex with a named group `addr` (and optionally `user`); anchor it.
    pub regex: String,
}

/// Threshold overrides of one kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    /// Events within the window that make a detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// The window.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "humantime_serde")]
    pub window: Option<Duration>,
    /// Distinct usernames within the window that make a detection (0: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct_usernames: Option<u32>,
    /// Quiet time after a detection.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "humantime_serde")]
    pub cooldown: Option<Duration>,
    /// `false` turns the kind off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `[detect.sensor]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SensorConfig {
    /// UDP addresses to listen on, e.g. `["0.0.0.0:5062"]`: ports no device of yours uses.
    pub udp: Vec<String>,
    /// TCP addresses to listen on.
    pub tcp: Vec<String>,
}

impl DetectConfig {
    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Validates and compiles; `implicit` are never-reported nets from the rest of the
    /// config (allowlist, loopback, own listen addresses, seeds). Errors name the key.
    pub fn compile(&self, implicit: &[IpNet]) -> anyhow::Result<Detect> {
        let mut sources = Vec::new();
        for (i, l) in self.logs.iter().enumerate() {
            let key = format!("detect.logs[{i}]");
            let format = match &l.format {
                None => None,
                Some(f) => Some(
                    Format::parse(f)
                        .ok_or_else(|| anyhow!("{key}.format: {f:?} is not one of asterisk, freeswitch, kamailio"))?,
                ),
            };
            let source = match (&l.path, &l.journal) {
                (Some(p), None) if !p.as_os_str().is_empty() => Source::File(p.clone()),
                (None, Some(u)) if valid_unit(u) => Source::Journal(u.clone()),
                (None, Some(u)) => bail!("{key}.journal: {u:?} is not a systemd unit name"),
                _ => bail!("{key}: give exactly one of path or journal"),
            };
            sources.push((source, format));
        }
        let mut custom = Vec::new();
        for (i, p) in self.patterns.iter().enumerate() {
            let kind = kind(&p.kind).with_context(|| format!("detect.patterns[{i}].kind"))?;
            custom.push(
                CustomPattern::new(&p.name, kind, &p.regex).with_context(|| format!("detect.patterns[{i}].regex"))?,
            );
        }
        let mut thresholds = Rules::default_thresholds();
        for (name, t) in &self.thresholds {
            let key = format!("detect.thresholds.{name}");
            let k = kind(name).with_context(|| key.clone())?;
            if k == EventKind::Registered {
                bail!("{key}: registrations are never reported (see detect.registered_grace)");
            }
            if t.enabled == Some(false) {
                thresholds.remove(&k);
                continue;
            }
            let base = thresholds.get(&k).copied().unwrap_or(Threshold {
                count: 5,
                window_ms: 60_000,
                distinct_usernames: 0,
                cooldown_ms: 600_000,
            });
            let ms = |d: Option<Duration>, default: u64| d.map_or(default, |d| d.as_millis() as u64);
            let merged = Threshold {
                count: t.count.unwrap_or(base.count),
                window_ms: ms(t.window, base.window_ms),
                distinct_usernames: t.distinct_usernames.unwrap_or(base.distinct_usernames),
                cooldown_ms: ms(t.cooldown, base.cooldown_ms),
            };
            if merged.count == 0 || merged.window_ms == 0 {
                bail!("{key}: count and window must be above zero");
            }
            thresholds.insert(k, merged);
        }
        let mut never = implicit.to_vec();
        for (i, n) in self.never_report.iter().enumerate() {
            let net: IpNet = n
                .parse()
                .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| anyhow!("detect.never_report[{i}]: {n:?} is not an address or prefix"))?;
            never.push(net);
        }
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        if let Some(s) = &self.sensor {
            for (list, out, key) in [(&s.udp, &mut udp, "udp"), (&s.tcp, &mut tcp, "tcp")] {
                for (i, a) in list.iter().enumerate() {
                    out.push(a.parse::<SocketAddr>().map_err(|_| {
                        anyhow!("detect.sensor.{key}[{i}]: expected HOST:PORT such as 0.0.0.0:5062, got {a:?}")
                    })?);
                }
            }
        }
        Ok(Detect {
            rules: Rules {
                thresholds,
                never,
                registered_grace_ms: self.registered_grace.as_millis() as u64,
                max_windows: MAX_WINDOWS,
            },
            sources,
            custom,
            sensor_udp: udp,
            sensor_tcp: tcp,
        })
    }
}

fn valid_unit(u: &str) -> bool {
    !u.is_empty() && u.len() <= 256 && u.chars().all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c))
}

fn kind(name: &str) -> anyhow::Result<EventKind> {
    EventKind::parse(name).ok_or_else(|| {
        let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.label()).collect();
        anyhow!("{name:?} is not one of {}", all.join(", "))
    })
}

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
    metrics: std::sync::Arc<Metrics>,
    ttl_s: u32,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let mut tasks = Vec::new();
    for (source, format) in &detect.sources {
        let follower = tail::Follower::new(source.clone());
        tasks.push(tail::spawn(
            follower,
            *format,
            detect.clone(),
            tx.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    for addr in &detect.sensor_udp {
        tasks.push(sensor::spawn_udp(*addr, tx.clone(), metrics.clone(), shutdown.clone())?);
    }
    for addr in &detect.sensor_tcp {
        tasks.push(sensor::spawn_tcp(*addr, tx.clone(), metrics.clone(), shutdown.clone())?);
    }
    drop(tx);
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
    metrics: std::sync::Arc<Metrics>,
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
        let Verdict::Detected(d) = verdict else {
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

fn verdict_label(v: &Verdict) -> &'static str {
    match v {
        Verdict::Detected(_) => "detected",
        Verdict::Counted => "counted",
        Verdict::NeverReport => "never_report",
        Verdict::RecentlyRegistered => "recently_registered",
        Verdict::Registered => "registered",
        Verdict::Ignored => "ignored",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> anyhow::Result<Detect> {
        let c: DetectConfig = toml::from_str(text).map_err(|e| anyhow!("{e}"))?;
        c.compile(&[])
    }

    #[test]
    fn config_errors_name_the_key() {
        for (text, needle) in [
            ("[[logs]]\npath = \"/x\"\nformat = \"yate\"", "detect.logs[0].format"),
            (
                "[[logs]]\npath = \"/x\"\njournal = \"k\"",
                "exactly one of path or journal",
            ),
            ("[[logs]]\njournal = \"bad unit;rm\"", "detect.logs[0].journal"),
            (
                "[[patterns]]\nname = \"x\"\nkind = \"auth-failure\"\nregex = \"no addr\"",
                "detect.patterns[0].regex",
            ),
            (
                "[[patterns]]\nname = \"x\"\nkind = \"hacking\"\nregex = \"(?P<addr>.*)\"",
                "detect.patterns[0].kind",
            ),
            ("[thresholds.auth-failure]\ncount = 0", "count and window"),
            ("[thresholds.registered]\ncount = 1", "never reported"),
            ("never_report = [\"trunk\"]", "detect.never_report[0]"),
            ("[sensor]\nudp = [\"5062\"]", "detect.sensor.udp[0]"),
        ] {
            let err = format!("{:#}", compile(text).expect_err(text));
            assert!(err.contains(needle), "{text}\n→ {err}");
        }
    }

    #[test]
    fn thresholds_override_defaults_field_by_field() {
        let d = compile("[thresholds.auth-failure]\ncount = 10\n[thresholds.scanner]\nenabled = false").unwrap();
        let t = d.rules.thresholds[&EventKind::AuthFailure];
        assert_eq!((t.count, t.window_ms, t.distinct_usernames), (10, 60_000, 3));
        assert!(!d.rules.thresholds.contains_key(&EventKind::Scanner));
        assert!(!d.is_active());
    }

    #[test]
    fn custom_patterns_come_after_the_builtins() {
        let d = compile(
            "[[patterns]]\nname = \"gw\"\nkind = \"auth-failure\"\nregex = '^gw: bad login (?P<user>\\S+) from (?P<addr>\\S+)$'",
        )
        .unwrap();
        let Outcome::Event(e) = d.interpret("gw: bad login bob from 203.0.113.4", None) else {
            panic!("custom pattern did not match");
        };
        assert_eq!(
            (e.source.to_string(), e.username.as_deref()),
            ("203.0.113.4".into(), Some("bob"))
        );
        assert_eq!(d.interpret("unrelated", None), Outcome::Unknown);
    }
}
