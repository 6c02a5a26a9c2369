//! The `[detect]` section: which logs are followed (each with its format: one SIP stack's
//! patterns read its log, nothing else does), the operator's patterns (with what a match
//! proves), threshold overrides, the never-report list, the report cap and the sensor's
//! listeners, and their validation into a [`Detect`] with errors that name the key.

use super::{Detect, Source};
use anyhow::{anyhow, bail, Context};
use fraudmesh::detect::logs::{CustomPattern, EventKind, Format};
use fraudmesh::detect::pipeline::Rules;
use fraudmesh::detect::window::Threshold;
use fraudmesh::detect::Proof;
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
    /// Most detections this node reports in any minute; beyond it they are held (and
    /// counted in `fraudmesh_detect_reports_capped_total`). Default 60.
    pub max_reports_per_minute: u32,
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
            max_reports_per_minute: Rules::DEFAULT_MAX_REPORTS_PER_MINUTE,
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
    /// Whose log it is: `asterisk`, `freeswitch`, `kamailio` (that stack's patterns) or
    /// `custom` (only `[[detect.patterns]]`). Required.
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
    /// What a matching line proves about its source, as the operator knows the stack:
    /// `handshake` (written only for TCP/TLS connections), `nonce-echo` (only after the
    /// source answered a challenge sent to its address) or `none` (counted, never
    /// reported). Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
    /// The format of the logs it reads (`asterisk`, `freeswitch`, `kamailio`, `custom`);
    /// default: every followed log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
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
        if self.max_reports_per_minute == 0 {
            bail!(
                "detect.max_reports_per_minute: must be at least 1 (turn a kind off with \
                 [detect.thresholds.KIND] enabled = false)"
            );
        }
        Ok(Detect {
            rules: Rules {
                thresholds,
                never,
                registered_grace_ms: self.registered_grace.as_millis() as u64,
                max_windows: MAX_WINDOWS,
                max_reports_per_minute: self.max_reports_per_minute,
            },
            sources,
            custom,
            sensor_udp,
            sensor_tcp,
        })
    }

    /// `[[detect.logs]]`: each a file or a journal unit, with its format.
    fn sources(&self) -> anyhow::Result<Vec<(Source, Format)>> {
        let mut sources = Vec::new();
        for (i, l) in self.logs.iter().enumerate() {
            let key = format!("detect.logs[{i}]");
            let name = match (&l.path, &l.journal) {
                (Some(p), _) => format!(" ({})", p.display()),
                (None, Some(u)) => format!(" (journal {u})"),
                (None, None) => String::new(),
            };
            let format = match &l.format {
                None => bail!(
                    "{key}{name}: format is required: one of {} (only that SIP stack's patterns read \
                     the log; `custom` for a log only [[detect.patterns]] read)",
                    formats()
                ),
                Some(f) => format_named(f).with_context(|| format!("{key}{name}.format"))?,
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
            let key = format!("detect.patterns[{i}]");
            let kind = kind(&p.kind).with_context(|| format!("{key}.kind"))?;
            let proof = match p.proof.as_deref() {
                Some("handshake") => Proof::Handshake,
                Some("nonce-echo") => Proof::NonceEcho,
                Some("none") => Proof::None { reason: "custom" },
                Some(other) => bail!("{key}.proof: {other:?} is not one of handshake, nonce-echo, none"),
                None => bail!(
                    "{key}.proof is required: what a matching line proves about its source — handshake \
                     (the stack writes it only for TCP/TLS connections), nonce-echo (only after the source \
                     answered a challenge sent to its address) or none (counted, never reported)"
                ),
            };
            let format = match &p.format {
                None => None,
                Some(f) => Some(format_named(f).with_context(|| format!("{key}.format"))?),
            };
            custom.push(
                CustomPattern::new(&p.name, kind, &p.regex, proof, format).with_context(|| format!("{key}.regex"))?,
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

/// The formats' names, for errors.
fn formats() -> String {
    let all: Vec<&str> = Format::ALL.iter().map(|f| f.label()).collect();
    all.join(", ")
}

fn format_named(name: &str) -> anyhow::Result<Format> {
    Format::parse(name).ok_or_else(|| anyhow!("{name:?} is not one of {}", formats()))
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
    use fraudmesh::detect::logs::{Outcome, Reader};

    fn compile(text: &str) -> anyhow::Result<Detect> {
        let c: DetectConfig = toml::from_str(text).map_err(|e| anyhow!("{e}"))?;
        c.compile(&[])
    }

    #[test]
    fn config_errors_name_the_key() {
        for (text, needle) in [
            ("[[logs]]\npath = \"/x\"\nformat = \"yate\"", "detect.logs[0] (/x).format"),
            (
                "[[logs]]\npath = \"/var/log/syslog\"",
                "detect.logs[0] (/var/log/syslog): format is required",
            ),
            ("[[logs]]\njournal = \"kamailio\"", "detect.logs[0] (journal kamailio): format"),
            (
                "[[logs]]\npath = \"/x\"\njournal = \"k\"\nformat = \"kamailio\"",
                "exactly one of path or journal",
            ),
            (
                "[[logs]]\njournal = \"bad unit;rm\"\nformat = \"kamailio\"",
                "detect.logs[0].journal",
            ),
            (
                "[[patterns]]\nname = \"x\"\nkind = \"auth-failure\"\nregex = \"no addr\"\nproof = \"none\"",
                "detect.patterns[0].regex",
            ),
            (
                "[[patterns]]\nname = \"x\"\nkind = \"hacking\"\nregex = \"(?P<addr>.*)\"\nproof = \"none\"",
                "detect.patterns[0].kind",
            ),
            (
                "[[patterns]]\nname = \"x\"\nkind = \"scanner\"\nregex = \"(?P<addr>.*)\"",
                "detect.patterns[0].proof is required",
            ),
            (
                "[[patterns]]\nname = \"x\"\nkind = \"scanner\"\nregex = \"(?P<addr>.*)\"\nproof = \"trust-me\"",
                "detect.patterns[0].proof",
            ),
            (
                "[[patterns]]\nname = \"x\"\nkind = \"scanner\"\nregex = \"(?P<addr>.*)\"\nproof = \"none\"\nformat = \"yate\"",
                "detect.patterns[0].format",
            ),
            ("max_reports_per_minute = 0", "detect.max_reports_per_minute"),
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
    fn custom_patterns_come_after_the_builtins_and_read_their_format_only() {
        let d = compile(
            "[[patterns]]\nname = \"gw\"\nkind = \"auth-failure\"\nproof = \"handshake\"\nformat = \"custom\"\nregex = '^gw: bad login (?P<user>\\S+) from (?P<addr>\\S+)$'\n\
             [[patterns]]\nname = \"any\"\nkind = \"scanner\"\nproof = \"none\"\nregex = '^probe from (?P<addr>\\S+)$'",
        )
        .unwrap();
        let mut custom = Reader::new(Format::Custom);
        let Outcome::Event(e) = d.interpret(&mut custom, "gw: bad login bob from 203.0.113.4", 0) else {
            panic!("custom pattern did not match");
        };
        assert_eq!(
            (e.source.to_string(), e.username.as_deref(), e.proof),
            ("203.0.113.4".into(), Some("bob"), Proof::Handshake)
        );
        assert_eq!(d.interpret(&mut custom, "unrelated", 0), Outcome::Unknown);
        // A pattern with a format reads only logs of it; one without reads every log.
        let mut asterisk = Reader::new(Format::Asterisk);
        assert_eq!(
            d.interpret(&mut asterisk, "gw: bad login bob from 203.0.113.4", 0),
            Outcome::Unknown
        );
        let Outcome::Event(e) = d.interpret(&mut asterisk, "probe from 203.0.113.5", 0) else {
            panic!("a pattern without format did not read an Asterisk log");
        };
        assert_eq!(e.proof, Proof::None { reason: "custom" });
    }

    #[test]
    fn every_log_has_its_format_and_the_report_cap_a_default() {
        let d = compile(
            "max_reports_per_minute = 7\n[[logs]]\npath = \"/var/log/asterisk/security\"\nformat = \"asterisk\"\n\
             [[logs]]\njournal = \"kamailio\"\nformat = \"kamailio\"",
        )
        .unwrap();
        assert_eq!(
            d.sources,
            vec![
                (Source::File("/var/log/asterisk/security".into()), Format::Asterisk),
                (Source::Journal("kamailio".into()), Format::Kamailio)
            ]
        );
        assert_eq!(d.rules.max_reports_per_minute, 7);
        assert_eq!(compile("").unwrap().rules.max_reports_per_minute, 60);
    }
}
