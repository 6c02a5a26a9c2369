//! The CrowdSec-compatible decisions API against a real node, driven as a bouncer drives
//! it: keys from `fraudmesh bouncers add`, `X-Api-Key`, the stream with startup and
//! deltas, deletions, and `GET /v1/decisions?ip=`.

use crate::common::*;
use serde_json::Value;

fn get(api: &str, path: &str, key: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = key.map(|k| vec![("X-Api-Key", k)]).unwrap_or_default();
    let (code, body) = http(api, "GET", path, &headers, "");
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
    (code, v)
}

fn values(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .map(|a| a.iter().map(|d| d["value"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn bouncers_follow_the_stream_with_their_own_cursor() {
    let mut n = Node::init(&[]);
    // Keys work without a running node, and a running node sees new ones at once.
    let key_a = cli_ok(&n.dir, &["bouncers", "add", "firewall"]).trim().to_string();
    assert_eq!(key_a.len(), 64, "{key_a}");
    n.start();
    let key_b = cli_ok(&n.dir, &["bouncers", "add", "nginx"]).trim().to_string();
    let listed = cli_json(&n.dir, &["bouncers", "list", "--json"]);
    assert_eq!(listed["bouncers"].as_array().unwrap().len(), 2, "{listed}");
    assert!(
        !cli(&n.dir, &["bouncers", "add", "firewall"]).status.success(),
        "names are unique"
    );
    assert!(!cli(&n.dir, &["bouncers", "add", "no spaces"]).status.success());
    let api = n.api();

    n.report(&["192.0.2.10", "198.51.100.0/24", "+4190066"]);
    let (code, s) = get(&api, "/v1/decisions/stream?startup=true", Some(&key_a));
    assert_eq!(code, 200, "{s}");
    assert_eq!(
        values(&s["new"]),
        vec!["192.0.2.10", "198.51.100.0/24"],
        "numbers are not decisions: {s}"
    );
    assert_eq!(values(&s["deleted"]), Vec::<String>::new());
    let d = s["new"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["value"] == "192.0.2.10")
        .unwrap()
        .clone();
    for k in [
        "id", "origin", "type", "scope", "value", "duration", "until", "scenario",
    ] {
        assert!(d.get(k).is_some(), "{k} missing in {d}");
    }
    assert_eq!(
        (d["type"].as_str(), d["scope"].as_str(), d["origin"].as_str()),
        (Some("ban"), Some("Ip"), Some("fraudmesh"))
    );
    assert!(
        d["duration"].as_str().unwrap().ends_with('s') && d["until"].as_str().unwrap().ends_with('Z'),
        "{d}"
    );

    // Nothing changed: an empty delta for A.
    let (_, s) = get(&api, "/v1/decisions/stream?startup=false", Some(&key_a));
    assert_eq!((values(&s["new"]), values(&s["deleted"])), (vec![], vec![]), "{s}");
    // A change: only the delta, and the deletion carries the id A was given.
    n.report(&["192.0.2.11"]);
    cli_ok(&n.dir, &["retract", "192.0.2.10"]);
    let (_, s) = get(&api, "/v1/decisions/stream", Some(&key_a));
    assert_eq!(values(&s["new"]), vec!["192.0.2.11"], "{s}");
    assert_eq!(values(&s["deleted"]), vec!["192.0.2.10"], "{s}");
    assert_eq!(s["deleted"][0]["id"], d["id"]);
    // B has its own cursor: its first call gets the whole list as it is now.
    let (_, s) = get(&api, "/v1/decisions/stream?startup=false", Some(&key_b));
    assert_eq!(values(&s["new"]), vec!["192.0.2.11", "198.51.100.0/24"], "{s}");

    // Point queries, prefixes included.
    let (code, v) = get(&api, "/v1/decisions?ip=198.51.100.77", Some(&key_b));
    assert_eq!(code, 200);
    assert_eq!(values(&v), vec!["198.51.100.0/24"], "{v}");
    let (_, v) = get(&api, "/v1/decisions?ip=203.0.113.1", Some(&key_b));
    assert!(v.is_null(), "nothing matches: null, as CrowdSec answers: {v}");
    let (code, _) = get(&api, "/v1/decisions?ip=not-an-ip", Some(&key_b));
    assert_eq!(code, 400);
    let (code, _) = get(&api, "/v1/decisions/stream?startup=maybe", Some(&key_b));
    assert_eq!(code, 400);

    // Missing, wrong and deleted keys: 403.
    assert_eq!(get(&api, "/v1/decisions/stream", None).0, 403);
    assert_eq!(get(&api, "/v1/decisions/stream", Some("wrong")).0, 403);
    assert_eq!(get(&api, "/v1/decisions?ip=192.0.2.11", Some("wrong")).0, 403);
    cli_ok(&n.dir, &["bouncers", "delete", "nginx"]);
    assert_eq!(get(&api, "/v1/decisions/stream", Some(&key_b)).0, 403);
    assert!(!cli(&n.dir, &["bouncers", "delete", "nginx"]).status.success());
    assert_eq!(get(&api, "/v1/decisions/stream", Some(&key_a)).0, 200);
}
