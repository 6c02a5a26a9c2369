//! The `[detect]` section: which logs are followed, the operator's patterns, threshold
//! overrides, the never-report list and the sensor's listeners, and their validation
//! into a [`Detect`] with errors that name the key.

use super::{Detect, Source};
use anyhow::{anyhow, bail, Context};
use fraudmesh::detect::logs::{CustomPattern, EventKind, Format};
use fraudmesh::detect::pipeline::Rules;
use fraudmesh::detect::window::Threshold;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

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
        let sources = self.sources()?;
        let custom = self.custom_patterns()?;
        let thresholds = self.thresholds()?;
        let never = self.never_report(implicit)?;
        let (sensor_udp, sensor_tcp) = self.sensor_addrs()?;
        Ok(Detect {
            rules: Rules {
                thresholds,
                never,
                registered_grace_ms: self.registered_grace.as_millis() as u64,
                max_windows: MAX_WINDOWS,
            },
            sources,
            custom,
            sensor_udp,
            sensor_tcp,
        })
    }

    /// `[[detect.logs]]`: each a file or a journal unit, with its format.
    fn sources(&self) -> anyhow::Result<Vec<(Source, Option<Format>)>> {
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
        Ok(sources)
    }

    /// `[[detect.patterns]]`, compiled.
    fn custom_patterns(&self) -> anyhow::Result<Vec<CustomPattern>> {
        let mut custom = Vec::new();
        for (i, p) in self.patterns.iter().enumerate() {
            let kind = kind(&p.kind).with_context(|| format!("detect.patterns[{i}].kind"))?;
            custom.push(
                CustomPattern::new(&p.name, kind, &p.regex).with_context(|| format!("detect.patterns[{i}].regex"))?,
            );
        }
        Ok(custom)
    }

    /// The default thresholds with `[detect.thresholds.KIND]` applied.
    fn thresholds(&self) -> anyhow::Result<HashMap<EventKind, Threshold>> {
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
            thresholds.insert(k, t.over(base, &key)?);
        }
        Ok(thresholds)
    }

    /// `implicit` and `detect.never_report`.
    fn never_report(&self, implicit: &[IpNet]) -> anyhow::Result<Vec<IpNet>> {
        let mut never = implicit.to_vec();
        for (i, n) in self.never_report.iter().enumerate() {
            let net: IpNet = n
                .parse()
                .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| anyhow!("detect.never_report[{i}]: {n:?} is not an address or prefix"))?;
            never.push(net);
        }
        Ok(never)
    }

    /// `[detect.sensor]`: the UDP and the TCP addresses.
    fn sensor_addrs(&self) -> anyhow::Result<(Vec<SocketAddr>, Vec<SocketAddr>)> {
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
        Ok((udp, tcp))
    }
}

impl ThresholdConfig {
    /// `base` with these overrides; errors start with `key`.
    fn over(&self, base: Threshold, key: &str) -> anyhow::Result<Threshold> {
        let ms = |d: Option<Duration>, default: u64| d.map_or(default, |d| d.as_millis() as u64);
        let merged = Threshold {
            count: self.count.unwrap_or(base.count),
            window_ms: ms(self.window, base.window_ms),
            distinct_usernames: self.distinct_usernames.unwrap_or(base.distinct_usernames),
            cooldown_ms: ms(self.cooldown, base.cooldown_ms),
        };
        if merged.count == 0 || merged.window_ms == 0 {
            bail!("{key}: count and window must be above zero");
        }
        Ok(merged)
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

#[cfg(test)]
mod tests {
    use super::*;
    use fraudmesh::detect::logs::Outcome;

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
