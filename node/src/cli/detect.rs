//! `fraudmesh detect test FILE`: replays a log file through the patterns of its format and
//! the thresholds with the lines' own timestamps, and shows what the node would report —
//! and which events it would not count for lack of proof that their source is real.
//!
//! The format is `--format`, else that of DIR's `[[detect.logs]]` entry for FILE, else the
//! built-in format whose patterns recognise most of FILE's lines.

use super::output::print_json;
use super::LogFormat;
use crate::daemon::{config, dir::NodeDir};
use crate::detect::{Detect, Source};
use anyhow::{bail, Context};
use fraudmesh::detect::logs::{self, Format, Outcome, Reader};
use fraudmesh::detect::pipeline::{Disposition, Pipeline};
use serde::Serialize;
use std::path::Path;

/// What a replay found (the `--json` document).
#[derive(Debug, Serialize)]
pub struct Replay {
    /// The file replayed.
    pub file: String,
    /// The format it was read as.
    pub format: &'static str,
    /// Non-empty lines read.
    pub lines: usize,
    /// Version of the built-in patterns.
    pub patterns_version: u32,
    /// Each line's event.
    pub events: Vec<Event>,
    /// Lines ignored because their address field cannot be located unambiguously.
    pub ambiguous: Vec<Ambiguous>,
    /// Events without proof that their source receives packets there (never reported).
    pub unproven: usize,
    /// Detections held by the report cap.
    pub capped: usize,
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
    /// What the line proves about its source: `handshake`, `nonce-echo` or `none`.
    pub proof: &'static str,
    /// Why it proves nothing (with `proof: none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unproven: Option<&'static str>,
}

/// A line ignored as ambiguous.
#[derive(Debug, Serialize)]
pub struct Ambiguous {
    /// Line number, from 1.
    pub line: usize,
    /// The pattern whose address field could not be located.
    pub pattern: String,
}

/// A report the thresholds would make.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The line that crossed the threshold.
    pub line: usize,
    /// The source reported: an address, or an IPv6 /64.
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
    let format = match format {
        Some(f) => f.format(),
        None => configured_format(&detect, file).map_or_else(|| guess_format(&detect, &bytes, file), Ok)?,
    };
    let replay = replay(&detect, &bytes, format, file);
    if json {
        print_json(&replay);
    } else {
        print_human(&replay);
    }
    Ok(())
}

/// The format of the `[[detect.logs]]` entry that follows `file`, if any.
fn configured_format(detect: &Detect, file: &Path) -> Option<Format> {
    let same = |p: &Path| p == file || matches!((p.canonicalize(), file.canonicalize()), (Ok(a), Ok(b)) if a == b);
    detect.sources.iter().find_map(|(s, f)| match s {
        Source::File(p) if same(p) => Some(*f),
        _ => None,
    })
}

/// The built-in format whose patterns recognise most lines of the file.
fn guess_format(detect: &Detect, bytes: &[u8], file: &Path) -> anyhow::Result<Format> {
    let builtin = [Format::Asterisk, Format::FreeSwitch, Format::Kamailio];
    let mut scores: Vec<(usize, Format)> = builtin
        .into_iter()
        .map(|f| {
            let mut reader = Reader::new(f);
            let known = lines(bytes)
                .filter(|(_, line)| !matches!(detect.interpret(&mut reader, line, 0), Outcome::Unknown))
                .count();
            (known, f)
        })
        .collect();
    scores.sort_by_key(|s| std::cmp::Reverse(s.0));
    match scores.as_slice() {
        [(0, _), ..] => bail!(
            "no built-in patterns recognise a line of {}: say whose log it is with --format",
            file.display()
        ),
        [(a, f), (b, g), ..] if a == b => bail!(
            "the patterns of {} and {} recognise as many lines of {}: say whose log it is with --format",
            f.label(),
            g.label(),
            file.display()
        ),
        [(_, f), ..] => Ok(*f),
        [] => unreachable!("three formats"),
    }
}

/// The non-empty lines of a file with their numbers (from 1).
fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, String)> + '_ {
    bytes.split(|b| *b == b'\n').enumerate().filter_map(|(i, raw)| {
        let line = String::from_utf8_lossy(raw);
        let line = line.trim_end_matches('\r');
        (!line.is_empty()).then(|| (i + 1, line.to_string()))
    })
}

/// Feeds every line through the patterns of `format` and the thresholds, its clock taken
/// from the lines' own timestamps (never going back).
fn replay(detect: &Detect, bytes: &[u8], format: Format, file: &Path) -> Replay {
    let mut reader = Reader::new(format);
    let mut pipeline = Pipeline::new(detect.rules.clone());
    let mut out = Replay {
        file: file.display().to_string(),
        format: format.label(),
        lines: 0,
        patterns_version: logs::PATTERNS_VERSION,
        events: Vec::new(),
        ambiguous: Vec::new(),
        unproven: 0,
        capped: 0,
        reports: Vec::new(),
    };
    let mut clock = 0;
    for (n, line) in lines(bytes) {
        out.lines += 1;
        clock = logs::timestamp(&line).unwrap_or(clock).max(clock);
        match detect.interpret(&mut reader, &line, clock) {
            Outcome::Event(e) => {
                out.events.push(Event {
                    line: n,
                    kind: e.kind.label(),
                    source: e.source.to_string(),
                    username: e.username.clone(),
                    pattern: e.pattern.to_string(),
                    proof: e.proof.label(),
                    unproven: e.proof.unproven_reason(),
                });
                match pipeline.observe(e.kind, e.source, e.username.as_deref(), e.proof, clock) {
                    Disposition::Detected(d) => out.reports.push(Report {
                        line: n,
                        source: crate::detect::target(&d).to_string(),
                        kind: d.kind.label(),
                        sighting_kind: d.kind.sighting_kind().as_str(),
                        count: d.count,
                        seconds: d.last_at.saturating_sub(d.first_at).div_ceil(1000),
                        usernames: d.usernames,
                    }),
                    Disposition::Unproven(_) => out.unproven += 1,
                    Disposition::Capped { .. } => out.capped += 1,
                    _ => {}
                }
            }
            Outcome::Ambiguous(p) => out.ambiguous.push(Ambiguous {
                line: n,
                pattern: p.to_string(),
            }),
            Outcome::Unknown => {}
        }
    }
    out
}

fn print_human(r: &Replay) {
    println!("{} read as {}", r.file, r.format);
    for e in &r.events {
        let user = e.username.as_ref().map(|u| format!(" user {u}")).unwrap_or_default();
        let proof = match e.unproven {
            Some(why) => format!("unproven: {why}, never counted"),
            None => format!("proof: {}", e.proof),
        };
        println!(
            "line {}: {} from {}{user} ({}, {proof})",
            e.line, e.kind, e.source, e.pattern
        );
    }
    for a in &r.ambiguous {
        println!(
            "line {}: ignored: its address field cannot be located unambiguously ({})",
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
        "{} lines, {} events ({} unproven), {} ignored as ambiguous, {} reports ({} held by the report cap)",
        r.lines,
        r.events.len(),
        r.unproven,
        r.ambiguous.len(),
        r.reports.len(),
        r.capped
    );
}
