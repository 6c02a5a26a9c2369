//! The PBX audit (`fraudmesh audit`, and `[audit]` on a schedule in the node): reads the
//! files where Asterisk and FreeSWITCH keep secrets and bindings, judges them with the
//! core's pure rules (`fraudmesh::audit`), and optionally probes named hosts for open
//! management ports.
//!
//! Secrets are read on the box, judged, and dropped: no finding, problem, log line or
//! output of this module holds one. A file that cannot be read or parsed is a
//! [`Problem`] with its file and line, and the audit goes on.

pub mod asterisk;
pub mod conf;
pub mod freeswitch;
pub mod probe;
pub mod report;
pub mod schedule;

use conf::Loc;
use fraudmesh::audit::{self as rules, Issue, Names, Severity};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Exit status of `fraudmesh audit` when a high-severity finding exists.
pub const EXIT_HIGH: u8 = 2;

fn severity<S: serde::Serializer>(s: &Severity, out: S) -> Result<S::Ok, S::Error> {
    out.serialize_str(s.as_str())
}

/// One weakness found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// `high`, `medium` or `low`.
    #[serde(serialize_with = "severity")]
    pub severity: Severity,
    /// The stable rule id (see [`rules::Issue::rule`]).
    pub rule: &'static str,
    /// The file it is in (null for probes).
    pub file: Option<String>,
    /// The line, from 1 (null for probes).
    pub line: Option<usize>,
    /// What it is about: an account, a mailbox, a service — never a secret.
    pub subject: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

/// Something that could not be checked: a file that cannot be read, a line that does
/// not parse, a host that does not resolve. The message never quotes file content.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The file, when there is one.
    pub file: Option<String>,
    /// The line, when known.
    pub line: Option<usize>,
    /// What went wrong.
    pub message: String,
}

impl Problem {
    /// At a line of a file.
    pub fn at(loc: &Loc, message: &str) -> Self {
        Self {
            file: Some(loc.file.clone()),
            line: Some(loc.line).filter(|l| *l > 0),
            message: message.to_string(),
        }
    }

    /// About a whole file.
    pub fn file(file: &str, message: &str) -> Self {
        Self {
            file: Some(file.to_string()),
            line: None,
            message: message.to_string(),
        }
    }

    /// About no file.
    pub fn other(message: &str) -> Self {
        Self {
            file: None,
            line: None,
            message: message.to_string(),
        }
    }
}

/// Counts of findings by severity, and of problems.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// High-severity findings.
    pub high: usize,
    /// Medium-severity findings.
    pub medium: usize,
    /// Low-severity findings.
    pub low: usize,
    /// Problems (entries of `errors`).
    pub errors: usize,
}

/// The result of one audit: the JSON document of `fraudmesh audit --json`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    /// Findings, most severe first, then by file and line.
    pub findings: Vec<Finding>,
    /// What could not be checked.
    pub errors: Vec<Problem>,
    /// Counts.
    pub summary: Summary,
    /// Every file read.
    pub files: Vec<String>,
    /// Every port probed, open or not.
    pub probes: Vec<probe::PortResult>,
}

impl Report {
    /// Whether a high-severity finding exists (the audit's exit status is then
    /// [`EXIT_HIGH`]).
    pub fn has_high(&self) -> bool {
        self.summary.high > 0
    }

    /// Findings of one severity.
    pub fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }
}

/// Collects findings and problems while an audit runs.
#[derive(Debug, Default)]
pub struct Audit {
    /// Findings so far.
    pub findings: Vec<Finding>,
    /// Problems so far.
    pub problems: Vec<Problem>,
    /// Files read so far.
    pub files: Vec<String>,
    /// Ports probed so far.
    pub probes: Vec<probe::PortResult>,
}

impl Audit {
    /// Records an issue about `what` ("password", "voicemail PIN", …) of `subject`.
    pub fn issue(&mut self, issue: Issue, loc: &Loc, subject: &str, what: &str) {
        self.findings.push(Finding {
            severity: issue.severity(),
            rule: issue.rule(),
            file: Some(loc.file.clone()),
            line: Some(loc.line),
            subject: subject.to_string(),
            message: issue.message(what),
            fix: issue.fix(what.contains("PIN")),
        });
    }

    /// Judges a password and records what is wrong with it.
    pub fn password(&mut self, secret: &str, names: &Names<'_>, loc: &Loc, subject: &str, what: &str) {
        for issue in rules::judge_password(secret, names) {
            self.issue(issue, loc, subject, what);
        }
    }

    /// The report: findings sorted, counts made.
    pub fn finish(mut self) -> Report {
        self.findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.file.cmp(&b.file))
                .then_with(|| a.line.cmp(&b.line))
                .then_with(|| a.subject.cmp(&b.subject))
        });
        self.files.dedup();
        let mut report = Report {
            findings: self.findings,
            errors: self.problems,
            files: self.files,
            probes: self.probes,
            summary: Summary::default(),
        };
        report.summary = Summary {
            high: report.count(Severity::High),
            medium: report.count(Severity::Medium),
            low: report.count(Severity::Low),
            errors: report.errors.len(),
        };
        report
    }
}

/// What to audit.
#[derive(Debug, Clone)]
pub struct Options {
    /// An Asterisk configuration directory.
    pub asterisk: Option<PathBuf>,
    /// A FreeSWITCH configuration directory.
    pub freeswitch: Option<PathBuf>,
    /// Hosts to probe (only these).
    pub probe: Vec<String>,
    /// Whether a directory that does not exist is a problem (given on the command line)
    /// or just skipped (the defaults: a box runs Asterisk or FreeSWITCH, rarely both).
    pub explicit: bool,
    /// Ports probed on each host: [`probe::PORTS`] (tests use their own listeners).
    pub ports: Vec<(u16, &'static str)>,
    /// Timeout of each connect.
    pub timeout: Duration,
}

impl Options {
    /// Exactly what the command line names.
    pub fn explicit(asterisk: Option<PathBuf>, freeswitch: Option<PathBuf>, probe: Vec<String>) -> Self {
        Self {
            asterisk,
            freeswitch,
            probe,
            explicit: true,
            ports: probe::PORTS.to_vec(),
            timeout: probe::TIMEOUT,
        }
    }
}

/// Runs an audit (blocking: file reads and connects; run it on a blocking thread).
pub fn run(o: &Options) -> Report {
    let mut a = Audit::default();
    type Reader = fn(&std::path::Path, &mut Audit);
    let dirs: [(&Option<PathBuf>, Reader); 2] = [(&o.asterisk, asterisk::audit), (&o.freeswitch, freeswitch::audit)];
    for (dir, read) in dirs {
        let Some(dir) = dir else { continue };
        if dir.is_dir() {
            read(dir, &mut a);
        } else if o.explicit || dir.exists() {
            a.problems.push(Problem::file(
                &dir.display().to_string(),
                "not a directory (or does not exist)",
            ));
        }
    }
    for host in &o.probe {
        match probe::probe(host, &o.ports, o.timeout) {
            Ok(ports) => {
                for p in ports.iter().filter(|p| p.open) {
                    let issue = Issue::OpenPort {
                        target: p.address.clone(),
                        service: p.service.clone(),
                        management: p.is_management(),
                    };
                    a.findings.push(Finding {
                        severity: issue.severity(),
                        rule: issue.rule(),
                        file: None,
                        line: None,
                        subject: format!("{} port {}", p.host, p.port),
                        message: issue.message(""),
                        fix: issue.fix(false),
                    });
                }
                a.probes.extend(ports);
            }
            Err(e) => a.problems.push(Problem::other(&e.to_string())),
        }
    }
    a.finish()
}

/// `[audit]`: the scheduled audit. Off unless `interval` is set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// How often the node audits (the first run at start). Default: never.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Asterisk's configuration directory (skipped when absent). Default `/etc/asterisk`.
    pub asterisk: PathBuf,
    /// FreeSWITCH's configuration directory (skipped when absent). Default `/etc/freeswitch`.
    pub freeswitch: PathBuf,
    /// Hosts to probe for open management ports. Default none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub probe: Vec<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            interval: None,
            asterisk: PathBuf::from("/etc/asterisk"),
            freeswitch: PathBuf::from("/etc/freeswitch"),
            probe: Vec::new(),
        }
    }
}

impl AuditConfig {
    /// The defaults (left out of `init`'s file).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the keys; errors name them.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.interval.is_some_and(|i| i < Duration::from_secs(1)) {
            anyhow::bail!("audit.interval: must be at least 1s");
        }
        if let Some(i) = self.probe.iter().position(|h| h.trim().is_empty()) {
            anyhow::bail!("audit.probe[{i}]: empty host");
        }
        Ok(())
    }

    /// What a run audits: the directories that exist, and the probe hosts.
    pub fn options(&self) -> Options {
        Options {
            asterisk: Some(self.asterisk.clone()),
            freeswitch: Some(self.freeswitch.clone()),
            probe: self.probe.clone(),
            explicit: false,
            ports: probe::PORTS.to_vec(),
            timeout: probe::TIMEOUT,
        }
    }
}
