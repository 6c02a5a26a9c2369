//! How the CLI prints the node's answers: one JSON document with `--json` (keys sorted,
//! as the API's `serde_json` documents always printed), else lines for a person.

use crate::http::types::{Accounts, Blocklist, CallAnswer, CheckAnswer, Enforcers, NodeStatus, Peers};
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
