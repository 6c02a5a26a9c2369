//! The audit for people: findings grouped by severity, each with where, what and the
//! fix; then what could not be checked, the probes, and the counts.

use super::Report;
use fraudmesh::audit::Severity;
use std::fmt::Write;

/// The human form of a report.
pub fn human(r: &Report) -> String {
    let mut out = String::new();
    for severity in Severity::ALL {
        let group: Vec<_> = r.findings.iter().filter(|f| f.severity == severity).collect();
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{} ({})", severity.as_str().to_uppercase(), group.len());
        for f in group {
            let at = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!("{file}:{line}"),
                (Some(file), None) => file.clone(),
                _ => String::new(),
            };
            let _ = writeln!(out, "  {:<20} {:<28} {at}", f.rule, f.subject);
            let _ = writeln!(out, "      {}", f.message);
            let _ = writeln!(out, "      fix: {}", f.fix);
        }
    }
    if !r.errors.is_empty() {
        let _ = writeln!(out, "NOT CHECKED ({})", r.errors.len());
        for e in &r.errors {
            let at = match (&e.file, e.line) {
                (Some(file), Some(line)) => format!("{file}:{line}: "),
                (Some(file), None) => format!("{file}: "),
                _ => String::new(),
            };
            let _ = writeln!(out, "  {at}{}", e.message);
        }
    }
    if !r.probes.is_empty() {
        let _ = writeln!(out, "PROBES");
        for p in &r.probes {
            let state = if p.open { "open" } else { "closed" };
            let _ = writeln!(out, "  {:<28} {:<7} {}", p.address, state, p.service);
        }
    }
    if r.files.is_empty() && r.probes.is_empty() && r.errors.is_empty() {
        let _ = writeln!(
            out,
            "no PBX configuration found (looked in /etc/asterisk and /etc/freeswitch unless [audit] says \
             otherwise): give --asterisk DIR, --freeswitch DIR or --probe HOST"
        );
    }
    let s = &r.summary;
    let _ = writeln!(
        out,
        "{} files read; {} high, {} medium, {} low; {} not checked",
        r.files.len(),
        s.high,
        s.medium,
        s.low,
        s.errors
    );
    out
}
