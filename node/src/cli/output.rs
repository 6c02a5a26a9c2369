//! How the CLI prints the node's answers: one JSON document with `--json` (keys sorted,
//! as the API's `serde_json` documents always printed), else lines for a person.

use crate::http::types::{
    Accounts, AllowView, Allows, Blocklist, CallAnswer, CheckAnswer, Endorsements, Enforcers, ExplainedRecord,
    Explanation, NodeStatus, Peers,
};
use crate::time::rfc3339;
use serde::Serialize;

/// Prints `doc` as one JSON line with `json`, else in its human form.
pub fn show<T: Serialize>(doc: &T, json: bool, human: fn(&T)) {
    if json {
        print_json(doc);
    } else {
        human(doc);
    }
}

/// Prints one JSON document on one line, its keys sorted.
pub fn print_json<T: Serialize>(doc: &T) {
    // Through a `Value`, whose maps are sorted: the order the CLI always printed.
    match serde_json::to_value(doc) {
        Ok(v) => println!("{v}"),
        Err(e) => eprintln!("error: encoding the answer as JSON: {e}"),
    }
}

/// A time in ms since the Unix epoch, or `-` when there is none.
pub fn time(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".into(), rfc3339)
}

/// A float as JSON writes it (`1.0`, not `1`).
fn number(x: f64) -> String {
    serde_json::Value::from(x).to_string()
}

/// `check`.
pub fn check(v: &CheckAnswer) {
    let reporters = v.reporters.len();
    if v.blocked {
        println!(
            "{}: BLOCKED until {} ({reporters} reporter(s))",
            v.target,
            time(v.until)
        );
    } else {
        println!("{}: not blocked ({reporters} reporter(s))", v.target);
    }
    for m in &v.matches {
        let note = if m.allowlisted { " (allowlisted)" } else { "" };
        // Strangers' weight is shown apart: it never counts toward a block.
        let strangers = if m.stranger_score > 0.0 {
            format!(" (+{} from strangers, not counted)", number(m.stranger_score))
        } else {
            String::new()
        };
        println!(
            "  {} score {}{}{} reporters: {}",
            m.target,
            number(m.score),
            strangers,
            note,
            m.reporters.join(", ")
        );
    }
}

/// `list`.
pub fn list(v: &Blocklist) {
    list_blocked(v);
    if !v.allowed.is_empty() {
        println!();
        println!("allowed here (local overrides, never blocked):");
        allow_lines(&v.allowed);
    }
}

/// One line per override.
fn allow_lines(allows: &[AllowView]) {
    for a in allows {
        let until = a
            .until
            .map_or_else(|| "until removed".to_string(), |u| format!("until {}", time(Some(u))));
        println!("  {:<42} {until}, since {}: {}", a.target, time(Some(a.at)), a.reason);
    }
}

/// `allow --list`.
pub fn allows(v: &Allows) {
    if v.allows.is_empty() {
        println!("no overrides (make one: fraudmesh allow TARGET --reason TEXT)");
        return;
    }
    allow_lines(&v.allows);
}

/// `endorsements list`.
pub fn endorsements(v: &Endorsements) {
    if v.endorsements.is_empty() {
        println!("no endorsements (publish one: fraudmesh endorsements add LINE)");
        return;
    }
    println!(
        "{:<54} {:<20} {:<8} {:<22} {:<54}",
        "MEMBER", "NAME", "STATE", "UNTIL", "ORGANISATION"
    );
    for e in &v.endorsements {
        let state = match (e.kind.as_str(), e.active) {
            ("revoke", _) => "revoked",
            (_, true) => "active",
            (_, false) => "expired",
        };
        let org = match &e.org_name {
            Some(n) => format!("{} ({n})", e.org),
            None => e.org.clone(),
        };
        let name = if e.name.is_empty() { "-" } else { e.name.as_str() };
        println!(
            "{:<54} {:<20} {:<8} {:<22} {org}",
            e.member,
            name,
            state,
            time(Some(e.expires_at_ms))
        );
    }
}

/// `explain`: what an operator needs to answer "why is this blocked?".
pub fn explain(v: &Explanation) {
    if v.blocked {
        println!(
            "{}: BLOCKED until {} (score {} of threshold {})",
            v.target,
            time(v.until),
            number(v.score),
            number(v.threshold)
        );
    } else {
        println!(
            "{}: not blocked (score {} of threshold {})",
            v.target,
            number(v.score),
            number(v.threshold)
        );
    }
    println!("why: {}", v.why);
    if let Some(a) = &v.allowed {
        let until = a
            .until
            .map_or_else(|| "until removed".to_string(), |u| format!("until {}", time(Some(u))));
        println!(
            "allowed here: {} overridden {until} (since {}): {}",
            a.target,
            time(Some(a.at)),
            a.reason
        );
    }
    if v.allowlisted {
        println!("allowlisted: policy.allowlist (or this node's own addresses) covers it");
    }
    if v.stranger_score > 0.0 {
        println!("strangers: {} (shown, never counted)", number(v.stranger_score));
    }
    if v.records.is_empty() {
        println!("no records on it");
        return;
    }
    println!("records ({}):", v.records.len());
    for r in &v.records {
        record(r, &v.target);
    }
}

/// One record of `explain` about `asked` (a record on a broader prefix names it).
fn record(r: &ExplainedRecord, asked: &str) {
    let mark = if r.counted {
        "counted".to_string()
    } else {
        format!("not counted ({})", r.reason)
    };
    let who = match &r.name {
        Some(n) => format!("{n} ({})", r.reporter),
        None => r.reporter.clone(),
    };
    let via = match (r.trusted_via.as_str(), &r.org_name, &r.org) {
        ("org", Some(name), Some(org)) => format!("trusted as a member of {name} ({org})"),
        ("self", ..) => "this node's own report".to_string(),
        ("peer", ..) => "trusted through [[trust.peers]]".to_string(),
        ("stranger", ..) => "a stranger here (neither listed nor endorsed)".to_string(),
        (other, ..) => format!("trusted via {other}"),
    };
    let reputation = if r.weight < r.configured_weight {
        format!(
            " (configured {}, reputation {} after overrides)",
            number(r.configured_weight),
            number(r.reputation)
        )
    } else {
        String::new()
    };
    let on = if r.target.is_empty() || r.target == asked {
        String::new()
    } else {
        format!(" on the prefix {}", r.target)
    };
    println!("  {mark}: {} x{}{on} by {who}", r.kind, r.count);
    println!("    {via}, weight {}{reputation}", number(r.weight));
    println!(
        "    observed {}, expires {}",
        time(Some(r.observed_at_ms)),
        time(Some(r.expires_at_ms))
    );
    let e = &r.evidence;
    let mut evidence = Vec::new();
    if !e.method.is_empty() {
        evidence.push(format!("method {}", e.method));
    }
    if !e.user_agent.is_empty() {
        evidence.push(format!("user agent {:?}", e.user_agent));
    }
    if !e.usernames.is_empty() {
        evidence.push(format!("usernames {}", e.usernames.join(",")));
    }
    if !e.reason.is_empty() {
        evidence.push(format!("reason {:?}", e.reason));
    }
    if !evidence.is_empty() {
        println!("    evidence: {}", evidence.join("; "));
    }
}

/// The blocked part of `list`.
fn list_blocked(v: &Blocklist) {
    if v.blocked.is_empty() {
        println!("nothing blocked");
        return;
    }
    println!("{:<42} {:<22} {:>9} {:>6}", "TARGET", "UNTIL", "REPORTERS", "SCORE");
    for d in &v.blocked {
        println!(
            "{:<42} {:<22} {:>9} {:>6}",
            d.target,
            time(d.until),
            d.reporters.len(),
            number(d.score)
        );
    }
}

/// `status`.
pub fn status(v: &NodeStatus) {
    println!("peer id   {}", v.peer_id);
    println!("version   {}", v.version);
    println!("peers     {} ({} gossiping)", v.peers, v.gossip_peers);
    println!("records   {}", v.records);
    println!("blocked   {}", v.blocked);
    println!("uptime    {}s", v.uptime_s);
    println!("reachable {}", v.reachability);
    for a in &v.listen {
        println!("listen    {a}");
    }
    for a in &v.relays {
        println!("relay     {a}");
    }
}

/// `peers`.
pub fn peers(v: &Peers) {
    if v.peers.is_empty() {
        println!("no peers connected");
        return;
    }
    println!(
        "{:<54} {:<28} {:<8} {:<5} {:>7} {:>6}",
        "PEER", "ADDRESS", "CONN", "VIA", "RTT MS", "GOSSIP"
    );
    for p in &v.peers {
        println!(
            "{:<54} {:<28} {:<8} {:<5} {:>7} {:>6}",
            p.peer_id,
            p.address,
            p.connection,
            p.transport,
            p.rtt_ms.map_or_else(|| "-".into(), |r| r.to_string()),
            if p.gossip { "yes" } else { "no" }
        );
    }
}

/// `calls check`.
pub fn call(v: &CallAnswer) {
    let verdict = if v.allow { "ALLOW" } else { "DENY" };
    println!("{verdict} ({}): {}", v.rule, v.reason);
}

/// `accounts list`.
pub fn accounts(v: &Accounts) {
    if v.accounts.is_empty() {
        println!("no account has called in the last day");
        return;
    }
    for a in &v.accounts {
        let lock = match &a.lock_reason {
            Some(r) => format!("LOCKED since {} ({r})", time(a.locked_since)),
            None => "ok".into(),
        };
        println!(
            "{}: {lock}; calls {} last hour, {} last day ({} international), {} in progress, {} min last day",
            a.account, a.calls_last_hour, a.calls_last_day, a.international_last_day, a.active, a.minutes_last_day,
        );
    }
}

/// `enforce status`.
pub fn enforcers(v: &Enforcers) {
    if v.enforcers.is_empty() {
        println!("no enforcers are configured (see [enforce] in the config)");
        return;
    }
    for e in &v.enforcers {
        let last = match e.last_apply {
            None => "never".to_string(),
            Some(at) => format!("{} ({:.1} ms)", time(Some(at)), e.last_apply_ms.unwrap_or(0.0)),
        };
        println!(
            "{}: {}, {} entries, last apply {last}, {} applies ({} full), {} errors",
            e.name,
            e.state.as_str(),
            e.entries,
            e.applies,
            e.full_syncs,
            e.errors,
        );
        if let Some(err) = &e.last_error {
            println!("  last error {}: {err}", time(e.last_error_at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_json_writes_them_and_missing_times_as_a_dash() {
        assert_eq!(number(1.0), "1.0");
        assert_eq!(number(0.1), "0.1");
        assert_eq!(time(None), "-");
        assert_eq!(time(Some(0)), "1970-01-01T00:00:00Z");
    }
}
