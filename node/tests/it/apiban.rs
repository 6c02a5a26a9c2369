//! The APIBAN-compatible list against a real node, driven as the APIBAN clients drive
//! it: a key from `fraudmesh bouncers add` in the URL, `/banned` then `/banned/{ID}`
//! until `"no new bans"`, starting from the clients' default ID `100`, and `check`.

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeSet;

/// GET; (status, parsed body, raw body).
fn get(api: &str, path: &str) -> (u16, Value, String) {
    let (code, body) = http(api, "GET", path, &[], "");
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
    (code, v, body)
}

/// One batch: (addresses, ID).
fn batch(api: &str, path: &str) -> (Vec<String>, String) {
    let (code, v, body) = get(api, path);
    assert_eq!(code, 200, "GET {path}: {body}");
    let ips = v["ipaddress"]
        .as_array()
        .unwrap_or_else(|| panic!("ipaddress is a list: {body}"))
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let id = v["ID"].as_str().unwrap_or_else(|| panic!("ID is a string: {body}"));
    assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()), "{body}");
    (ips, id.to_string())
}

const END: &str = r#"{"ipaddress":["no new bans"],"ID":"none"}"#;
const UNAUTHORIZED: &str = r#"{"ipaddress":"none","ID":"unauthorized"}"#;
const NOT_BLOCKED: &str = r#"{"ipaddress":["not blocked"],"ID":"none"}"#;

/// Follows the list from `path` to its end as a client does; every batch and the last ID.
fn walk(api: &str, key: &str, first: &str) -> (Vec<Vec<String>>, String) {
    let mut batches = Vec::new();
    let mut path = first.to_string();
    let mut last = String::new();
    for _ in 0..100 {
        let (code, _, body) = get(api, &path);
        if code == 400 {
            assert_eq!(body, END, "GET {path}");
            return (batches, last);
        }
        let (ips, id) = batch(api, &path);
        if !last.is_empty() {
            assert!(id.parse::<u64>().unwrap() > last.parse::<u64>().unwrap(), "IDs grow");
        }
        batches.push(ips);
        path = format!("/api/{key}/banned/{id}");
        last = id;
    }
    panic!("the walk from {first} never ended");
}

#[test]
fn clients_walk_every_address_once_in_batches_of_250() {
    let mut n = Node::init(&[]);
    let key = cli_ok(&n.dir, &["bouncers", "add", "kamailio"]).trim().to_string();
    n.start();
    let api = n.api();

    // Nothing blocked yet: the end of the list, as apiban.org says it.
    let (code, _, body) = get(&api, &format!("/api/{key}/banned"));
    assert_eq!((code, body.as_str()), (400, END));

    let mut targets: Vec<String> = (0..600)
        .map(|i| format!("198.18.{}.{}", i / 200, i % 200 + 1))
        .collect();
    targets.push("198.51.100.0/24".into());
    targets.push("2001:db8::7".into());
    targets.push("+4190066".into());
    let args: Vec<&str> = targets.iter().map(String::as_str).collect();
    n.report(&args);
    let expected: BTreeSet<String> = targets[..602].iter().cloned().collect();

    // Kamailio starts at /banned; the other clients at /banned/100. Both walk it all.
    let (batches, last) = walk(&api, &key, &format!("/api/{key}/banned"));
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![250, 250, 102]);
    let all: Vec<String> = batches.concat();
    let seen: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(seen.len(), all.len(), "every address once");
    assert_eq!(seen, expected, "addresses bare, prefixes as CIDR, no numbers");
    let (from_100, last_100) = walk(&api, &key, &format!("/api/{key}/banned/100"));
    assert_eq!(
        (from_100, &last_100),
        (batches.clone(), &last),
        "100 is the beginning too"
    );

    // At the end, the end again; a new block is the next answer after the last ID.
    let after_last = format!("/api/{key}/banned/{last}");
    let (code, _, body) = get(&api, &after_last);
    assert_eq!((code, body.as_str()), (400, END));
    n.report(&["192.0.2.77"]);
    let (ips, next) = batch(&api, &after_last);
    assert_eq!(ips, vec!["192.0.2.77"]);
    assert!(next.parse::<u64>().unwrap() > last.parse::<u64>().unwrap());
    // Renewing a block keeps its ID: it is not sent again.
    let until = n.check("192.0.2.77")["until"].as_u64().unwrap();
    n.report(&["192.0.2.77", "--ttl", "48h"]);
    assert!(n.check("192.0.2.77")["until"].as_u64().unwrap() > until, "renewed");
    let (code, _, body) = get(&api, &format!("/api/{key}/banned/{next}"));
    assert_eq!((code, body.as_str()), (400, END), "renewed, not new");

    // A restart numbers the blocks again: an ID from before it starts from the beginning.
    n.stop();
    n.start();
    let api = n.api();
    let (batches, _) = walk(&api, &key, &format!("/api/{key}/banned/{next}"));
    let seen: BTreeSet<String> = batches.concat().into_iter().collect();
    let mut with_new = expected.clone();
    with_new.insert("192.0.2.77".into());
    assert_eq!(seen, with_new);
}

#[test]
fn check_bad_keys_ids_and_addresses() {
    let mut n = Node::init(&[]);
    let key = cli_ok(&n.dir, &["bouncers", "add", "opensips"]).trim().to_string();
    n.start();
    let api = n.api();
    n.report(&["192.0.2.10", "198.51.100.0/24", "2001:db8::7", "+4190066"]);

    // Banned: 200, the address as asked and an ID; a prefix covers its addresses.
    for ip in ["192.0.2.10", "198.51.100.77", "2001:db8::7", "2001:DB8:0::7"] {
        let (code, v, body) = get(&api, &format!("/api/{key}/check/{ip}"));
        assert_eq!(code, 200, "{ip}: {body}");
        assert_eq!(v["ipaddress"], serde_json::json!([ip]), "{body}");
        assert!(v["ID"].as_str().unwrap().parse::<u64>().is_ok(), "{body}");
    }
    // Not banned: 404 "not blocked".
    for ip in ["192.0.2.11", "203.0.113.1", "::1"] {
        let (code, _, body) = get(&api, &format!("/api/{key}/check/{ip}"));
        assert_eq!((code, body.as_str()), (404, NOT_BLOCKED), "{ip}");
    }

    let (first, first_id) = batch(&api, &format!("/api/{key}/banned"));
    assert_eq!(first.len(), 3, "{first:?}");

    // Not an address: 400 saying so.
    for bad in ["not-an-ip", "999.1.1.1", "192.0.2.0%2F24", "1.2.3"] {
        let (code, v, body) = get(&api, &format!("/api/{key}/check/{bad}"));
        assert_eq!(code, 400, "{bad}: {body}");
        assert_eq!(v["ID"], "bad request", "{body}");
        assert!(v["ipaddress"].as_str().unwrap().contains("not an IP address"), "{body}");
    }
    // Not an ID: 400 saying so.
    for bad in ["none", "abc", "-1", "1.5", "99999999999999999999999"] {
        let (code, v, body) = get(&api, &format!("/api/{key}/banned/{bad}"));
        assert_eq!(code, 400, "{bad}: {body}");
        assert_eq!(v["ID"], "bad request", "{body}");
        assert!(v["ipaddress"].as_str().unwrap().contains("previous answer"), "{body}");
    }
    // Unknown and deleted keys: 403 "unauthorized" on every endpoint, whatever follows.
    let paths = |k: &str| {
        vec![
            format!("/api/{k}/banned"),
            format!("/api/{k}/banned/{first_id}"),
            format!("/api/{k}/banned/abc"),
            format!("/api/{k}/check/192.0.2.10"),
            format!("/api/{k}/check/not-an-ip"),
        ]
    };
    for path in paths("wrong") {
        let (code, _, body) = get(&api, &path);
        assert_eq!((code, body.as_str()), (403, UNAUTHORIZED), "{path}");
    }
    let other = cli_ok(&n.dir, &["bouncers", "add", "gone"]).trim().to_string();
    assert_eq!(batch(&api, &format!("/api/{other}/banned")).0, first);
    cli_ok(&n.dir, &["bouncers", "delete", "gone"]);
    for path in paths(&other) {
        let (code, _, body) = get(&api, &path);
        assert_eq!((code, body.as_str()), (403, UNAUTHORIZED), "{path}");
    }

    // None of it changed anything.
    assert_eq!(batch(&api, &format!("/api/{key}/banned")), (first, first_id.clone()));
    let (code, _, body) = get(&api, &format!("/api/{key}/banned/{first_id}"));
    assert_eq!((code, body.as_str()), (400, END));
    assert_eq!(get(&api, &format!("/api/{key}/check/192.0.2.10")).0, 200);
}
