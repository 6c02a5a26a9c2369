//! `fraudmesh detect test FILE`: replays a log file through the detection patterns and
//! thresholds with the lines' own timestamps, and shows what the node would report.

use super::output::print_json;
use super::LogFormat;
use crate::daemon::{config, dir::NodeDir};
use crate::detect::Detect;
use anyhow::Context;
use fraudmesh::detect::logs::{self, Outcome};
use fraudmesh::detect::pipeline::{Disposition, Pipeline};
use serde::Serialize;
use std::path::Path;

/// What a replay found (the `--json` document).
#[derive(Debug, Serialize)]
pub struct Replay {
    /// The file replayed.
    pub file: String,
    /// Non-empty lines read.
    pub lines: usize,
    /// Version of the built-in patterns.
    pub patterns_version: u32,
    /// Each line's event.
    pub events: Vec<Event>,
    /// Lines ignored because their address field appears more than once.
    pub ambiguous: Vec<Ambiguous>,
    /// The reports the thresholds would make.
    pub reports: Vec<Report>,
}

/// One line's event.
#[derive(Debug, Serialize)]
pub struct Event {
    /// Line number, from 1.
    pub line: usize,
    /// The event kind.
    pub kind: &'static str,
    /// The source address.
    pub source: String,
    /// The username tried, if the line names one.
    pub username: Option<String>,
    /// The pattern that matched.
    pub pattern: String,
}

/// A line ignored as ambiguous.
#[derive(Debug, Serialize)]
pub struct Ambiguous {
    /// Line number, from 1.
    pub line: usize,
    /// The pattern whose address field appeared more than once.
    pub pattern: String,
}

/// A report the thresholds would make.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The line that crossed the threshold.
    pub line: usize,
    /// The source reported.
    pub source: String,
    /// The detection's event kind.
    pub kind: &'static str,
    /// The sighting kind it is reported as.
    pub sighting_kind: &'static str,
    /// Events counted.
    pub count: u32,
    /// Seconds from the first event to the last, rounded up.
    pub seconds: u64,
    /// Usernames tried.
    pub usernames: Vec<String>,
}

/// Runs the command: DIR's `[detect]` settings when it has a config, the defaults otherwise.
pub fn command(dir: &NodeDir, file: &Path, format: Option<LogFormat>, json: bool) -> anyhow::Result<()> {
    let detect = config::check(dir)?.detect;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let replay = replay(&detect, &bytes, format, file);
    if json {
        print_json(&replay);
    } else {
        print_human(&replay);
    }
    Ok(())
}

/// Feeds every line through the patterns and the thresholds, its clock taken from the
/// lines' own timestamps (never going back).
fn replay(detect: &Detect, bytes: &[u8], format: Option<LogFormat>, file: &Path) -> Replay {
    let format = format.map(LogFormat::format);
    let mut pipeline = Pipeline::new(detect.rules.clone());
    let mut out = Replay {
        file: file.display().to_string(),
        lines: 0,
        patterns_version: logs::PATTERNS_VERSION,
        events: Vec::new(),
        ambiguous: Vec::new(),
        reports: Vec::new(),
    };
    let mut clock = 0;
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        if raw.is_empty() {
            continue;
        }
        out.lines += 1;
        let line = String::from_utf8_lossy(raw);
        let line = line.trim_end_matches('\r');
        clock = logs::timestamp(line).unwrap_or(clock).max(clock);
        match detect.interpret(line, format) {
            Outcome::Event(e) => {
                out.events.push(Event {
                    line: i + 1,
                    kind: e.kind.label(),
                    source: e.source.to_string(),
                    username: e.username.clone(),
                    pattern: e.pattern.to_string(),
                });
                if let Disposition::Detected(d) = pipeline.observe(e.kind, e.source, e.username.as_deref(), clock) {
                    out.reports.push(Report {
                        line: i + 1,
                        source: d.source.to_string(),
                        kind: d.kind.label(),
                        sighting_kind: d.kind.sighting_kind().as_str(),
                        count: d.count,
                        seconds: d.last_at.saturating_sub(d.first_at).div_ceil(1000),
                        usernames: d.usernames,
                    });
                }
            }
            Outcome::Ambiguous(p) => out.ambiguous.push(Ambiguous {
                line: i + 1,
                pattern: p.to_string(),
            }),
            Outcome::Unknown => {}
        }
    }
    out
}

fn print_human(r: &Replay) {
    for e in &r.events {
        let user = e.username.as_ref().map(|u| format!(" user {u}")).unwrap_or_default();
        println!("line {}: {} from {}{user} ({})", e.line, e.kind, e.source, e.pattern);
    }
    for a in &r.ambiguous {
        println!(
            "line {}: ignored: its address field appears more than once ({})",
            a.line, a.pattern
        );
    }
    if !r.reports.is_empty() {
        println!("would report:");
    }
    for x in &r.reports {
        println!(
            "  {} as {} ({} x{} in {}s, usernames: {}) at line {}",
            x.source,
            x.sighting_kind,
            x.kind,
            x.count,
            x.seconds,
            x.usernames.join(","),
            x.line,
        );
    }
    println!(
        "{} lines, {} events, {} ignored as ambiguous, {} reports",
        r.lines,
        r.events.len(),
        r.ambiguous.len(),
        r.reports.len()
    );
}
