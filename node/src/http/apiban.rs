//! An APIBAN-compatible list, so the published APIBAN clients (the bash and Go iptables
//! clients, the Kamailio `http_client` route, libraries such as `cgrates/baningo`) can
//! enforce the mesh's list by pointing at a local node instead of apiban.org. The key
//! in the URL is a bouncer key from `fraudmesh bouncers add NAME`: the same registry as
//! the CrowdSec API.
//!
//! - `GET /api/{key}/banned`: the first batch of addresses in force;
//! - `GET /api/{key}/banned/{ID}`: the next batch after `ID`, the ID of the previous
//!   answer;
//! - `GET /api/{key}/check/{ip}`: whether one address is blocked (by itself or by a
//!   prefix covering it).
//!
//! # What APIBAN answers, and where that was checked
//!
//! - Batches of 250, oldest first; `200 {"ipaddress": ["1.2.3.4", ...], "ID": "..."}`,
//!   the ID a decimal string to send back for the next batch; when nothing is left,
//!   `400 {"ipaddress": ["no new bans"], "ID": "none"}`. A bad key gets
//!   `403 {"ipaddress": "none", "ID": "unauthorized"}` (a string, not a list). Source:
//!   apiban.org/doc.html ("Banned", "Authentication", "Errors"; stored copies of
//!   several versions of the page, also at www.apiban.org and beta.apiban.org).
//! - Check: 2xx means banned, 4xx (the newest page says 404) means not banned. Bodies
//!   differ between versions of the page (`{"ipaddress": ["1.2.3.251"], "ID": "..."}`
//!   and `{"ipaddress": ["not blocked"], "ID": "none"}` in one, `"blocked"`/`"ok"`
//!   strings in another). The list forms are the ones clients parse: `cgrates/baningo`
//!   `apiban.go` (`CheckIP`) calls an address banned only on a 2xx whose `ID` is not
//!   `"none"` and whose `ipaddress` is exactly `[the address it asked about]`, and not
//!   banned on a 4xx with `ID` `"none"` and `["not blocked"]`, and treats a string
//!   `ipaddress` as a bad request; `palner/apiban` `clients/go/apiban/apiban.go`
//!   (`Check`, GET versions) treats 400/404 or `["not blocked"]` as not blocked, and
//!   its `apiban_test.go` mocks exactly these two bodies. So: banned is 200 with the
//!   address as it was asked, not banned is 404 `["not blocked"]`, `"none"`.
//! - Clients start from ID `"100"`, not from `/banned`: `palner/apiban`
//!   `clients/go/apiban/apiban.go` (`Banned` with no start), `clients/go/apiban-iptables/
//!   apiban-iptables-client.go` (empty LKID, `FULL`, a new chain), `clients/bash/
//!   apiban.sh` and `apiban-nft.sh`, `cgrates/baningo` (`GetBannedIPs`). Kamailio
//!   (`palner/apiban` `README.md`) asks `/banned` while its stored ID is 0, then
//!   `/banned/ID`, and stops on any status but 200. Every client treats `ID` as an
//!   opaque string; the bash clients require it to match `^[0-9]+$`.
//! - apiban.org answers "not banned" for a `check` of anything, addresses or not
//!   (`palner/apiban` issue #35); here an unparsable address is a 400.
//! - The newest `palner/apiban` Go library (`clients/go/apiban/apiban.go`) has moved to
//!   `POST /api/get` and `POST /api/check` with `Authorization: Bearer KEY`; that
//!   version is not served here, only the documented `GET` API above.
//!
//! # The ID
//!
//! Stateless: the ID is `BASE + decision id`, where the decision id is the block's
//! stable id in the decision log and `BASE` is fixed for the life of the process (the
//! wall clock in ms when it first served APIBAN, times 10^6). A batch holds the blocks
//! in force whose ID is greater than the cursor, in ID order; its ID is the last one's.
//! A renewed block keeps its ID and is not sent again; a block that ends and begins
//! again gets a new one. The offset is there because decision ids start at 1 and start
//! over when the node restarts (the log is rebuilt in memory): a bare decision id would
//! make the clients that begin at `"100"` skip the first hundred blocks, and a client
//! holding an ID from before a restart skip blocks until the new ids passed it. Any ID
//! this process did not give out (below `BASE`: `"100"`, apiban.org's, an earlier
//! run's; or beyond the last block) starts from the beginning, which the clients take
//! as duplicates at worst. A non-numeric ID is a 400.
//!
//! # Limits
//!
//! - APIBAN has no deletions: a client keeps an address until it flushes (the Go
//!   iptables client flushes its chain weekly; a Kamailio htable needs `autoexpire`).
//! - Prefixes are listed as CIDR (`198.51.100.0/24`), addresses bare. The bash clients
//!   (`iptables -s`, `nft ... saddr`) take CIDR; the Go iptables client appends `/32`
//!   to every entry, so it fails (logs and skips) on a prefix; Kamailio's htable
//!   matches `$si` exactly, so a prefix entry never matches there (`check` does cover
//!   prefixes).
//! - IPv6 addresses are listed too; the iptables and nft clients are IPv4-only and fail
//!   (log and skip) on them, Kamailio matches them.
//! - Only address and prefix blocks are listed; number blocks are for call policy.
//! - No rate limit (apiban.org answers 429 past a few requests a minute).

use super::bouncers::Denied;
use super::ApiState;
use crate::now_ms;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fraudmesh::decisions::{Block, Delta};
use fraudmesh::target::Target;
use serde::Serialize;
use std::net::IpAddr;
use std::sync::OnceLock;

/// Addresses per answer, as apiban.org sends them.
pub const BATCH: usize = 250;
/// `BASE` is the wall clock in ms times this: room for a million changes of the
/// decision log per ms between two starts before an old ID could look current.
const BASE_PER_MS: u64 = 1_000_000;

/// Every answer: `{"ipaddress": ..., "ID": "..."}`, in APIBAN's key order and case.
#[derive(Serialize)]
struct Answer<T: Serialize> {
    ipaddress: T,
    #[serde(rename = "ID")]
    id: String,
}

fn answer<T: Serialize>(status: StatusCode, ipaddress: T, id: &str) -> Response {
    let body = Answer {
        ipaddress,
        id: id.to_string(),
    };
    (status, Json(body)).into_response()
}

fn unauthorized() -> Response {
    answer(StatusCode::FORBIDDEN, "none", "unauthorized")
}

fn no_new_bans() -> Response {
    answer(StatusCode::BAD_REQUEST, ["no new bans"], "none")
}

fn not_blocked() -> Response {
    answer(StatusCode::NOT_FOUND, ["not blocked"], "none")
}

/// A refused request: the message where APIBAN puts its descriptions, and an ID that
/// is neither a cursor nor `"none"`, so no client takes it for data or for the end.
fn bad_request(msg: String) -> Response {
    answer(StatusCode::BAD_REQUEST, msg, "bad request")
}

fn failed(msg: String) -> Response {
    answer(StatusCode::INTERNAL_SERVER_ERROR, msg, "error")
}

/// `BASE` of this process (see the module doc).
fn base() -> u64 {
    static BASE: OnceLock<u64> = OnceLock::new();
    *BASE.get_or_init(|| now_ms().saturating_mul(BASE_PER_MS))
}

/// Checks the key in the URL.
fn authorize(s: &ApiState, key: &str) -> Result<(), Denied> {
    s.bouncers.admit(Some(key)).map(drop)
}

/// APIBAN's answer to a refused key: 403 `unauthorized` for an unknown one.
fn refusal(d: Denied) -> Response {
    match d {
        Denied::UnknownKey => unauthorized(),
        Denied::Registry(e) => failed(e),
    }
}

/// An ID as a client sends it back: decimal digits only.
fn parse_id(text: &str) -> Result<u64, String> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u64>() {
        Ok(n) if digits => Ok(n),
        _ => Err(format!(
            "ID {text:?} is not one this API gives: send the ID of the previous answer, or ask /banned for the first batch"
        )),
    }
}

/// The decision id after which to list, for a client's ID: its own part when this
/// process gave it out (`base ..= base + head`), else 0 (from the beginning).
fn position(id: u64, base: u64, head: u64) -> u64 {
    match id.checked_sub(base) {
        Some(after) if after <= head => after,
        _ => 0,
    }
}

/// The address or prefix blocks with a decision id above `after`, in id order, at most
/// `max` of them.
fn batch(active: &[Block], after: u64, max: usize) -> Vec<&Block> {
    let mut next: Vec<&Block> = active
        .iter()
        .filter(|d| d.id > after && d.target.ip_net().is_some())
        .collect();
    next.sort_unstable_by_key(|d| d.id);
    next.truncate(max);
    next
}

/// `GET /api/{key}/banned`.
pub async fn banned_first(State(s): State<ApiState>, Path(key): Path<String>) -> Response {
    banned_after(&s, &key, None).await
}

/// `GET /api/{key}/banned/{id}`.
pub async fn banned(State(s): State<ApiState>, Path((key, id)): Path<(String, String)>) -> Response {
    banned_after(&s, &key, Some(&id)).await
}

async fn banned_after(s: &ApiState, key: &str, id: Option<&str>) -> Response {
    if let Err(d) = authorize(s, key) {
        return refusal(d);
    }
    let id = match id.map(parse_id).transpose() {
        Ok(id) => id.unwrap_or(0),
        Err(msg) => return bad_request(msg),
    };
    let (active, head) = match s.engine.decisions(0).await {
        Ok(Delta::Full { active, head }) => (active, head),
        Ok(Delta::Changes { .. }) => return failed("the decision log gave changes, not the full list".into()),
        Err(e) => return failed(format!("{e:#}")),
    };
    let base = base();
    let list = batch(&active, position(id, base, head), BATCH);
    let Some(last) = list.last() else {
        return no_new_bans();
    };
    let next = base.saturating_add(last.id).to_string();
    let addresses: Vec<String> = list.iter().map(|d| d.target.to_string()).collect();
    answer(StatusCode::OK, addresses, &next)
}

/// `GET /api/{key}/check/{ip}`.
pub async fn check(State(s): State<ApiState>, Path((key, ip)): Path<(String, String)>) -> Response {
    if let Err(d) = authorize(&s, &key) {
        return refusal(d);
    }
    let addr: IpAddr = match ip.parse() {
        Ok(a) => a,
        Err(_) => return bad_request(format!("{ip:?} is not an IP address")),
    };
    let found = match s.engine.decisions_for(Target::host(addr)).await {
        Ok(found) => found,
        Err(e) => return failed(format!("{e:#}")),
    };
    // Narrowest first: the address's own block before the prefixes covering it.
    match found.iter().find(|d| d.target.ip_net().is_some()) {
        // The address as it was asked: clients compare it with what they sent.
        Some(d) => answer(StatusCode::OK, [ip.as_str()], &base().saturating_add(d.id).to_string()),
        None => not_blocked(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fraudmesh::target::Bounds;

    fn decision(id: u64, target: &str) -> Block {
        Block {
            id,
            target: Target::parse(target, Bounds::default()).unwrap(),
            since: 0,
            until: 1,
        }
    }

    fn body(r: Response) -> (u16, String) {
        let status = r.status().as_u16();
        let bytes = futures::executor::block_on(axum::body::to_bytes(r.into_body(), usize::MAX)).unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[test]
    fn fixed_answers_are_apibans_byte_for_byte() {
        assert_eq!(
            body(no_new_bans()),
            (400, r#"{"ipaddress":["no new bans"],"ID":"none"}"#.into())
        );
        assert_eq!(
            body(unauthorized()),
            (403, r#"{"ipaddress":"none","ID":"unauthorized"}"#.into())
        );
        assert_eq!(
            body(not_blocked()),
            (404, r#"{"ipaddress":["not blocked"],"ID":"none"}"#.into())
        );
        assert_eq!(
            body(answer(StatusCode::OK, ["192.0.2.1"], "17")),
            (200, r#"{"ipaddress":["192.0.2.1"],"ID":"17"}"#.into())
        );
    }

    #[test]
    fn ids_are_decimal_digits_only() {
        assert_eq!(parse_id("0"), Ok(0));
        assert_eq!(parse_id("100"), Ok(100));
        assert_eq!(parse_id("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "",
            "none",
            "-1",
            "+1",
            "1.5",
            "1e3",
            " 1",
            "0x10",
            "18446744073709551616",
        ] {
            let e = parse_id(bad).unwrap_err();
            assert!(e.contains("previous answer"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn ids_this_process_did_not_give_start_over() {
        let base = 1_700_000_000_000 * BASE_PER_MS;
        assert_eq!(position(base + 7, base, 10), 7);
        assert_eq!(position(base + 10, base, 10), 10, "the last block");
        assert_eq!(position(base, base, 10), 0);
        assert_eq!(position(0, base, 10), 0, "/banned");
        assert_eq!(position(100, base, 10), 0, "the clients' default");
        assert_eq!(position(1_612_345_678, base, 10), 0, "an apiban.org ID");
        assert_eq!(position(base - 1, base, 10), 0, "an earlier run's");
        assert_eq!(position(base + 11, base, 10), 0, "never given out");
        assert_eq!(position(u64::MAX, base, 10), 0);
    }

    #[test]
    fn batches_follow_decision_ids_and_skip_numbers() {
        let active = vec![
            decision(5, "192.0.2.5"),
            decision(2, "198.51.100.0/24"),
            decision(3, "+4190066"),
            decision(9, "2001:db8::9"),
            decision(1, "192.0.2.1"),
        ];
        let ids = |after, max| -> Vec<u64> { batch(&active, after, max).iter().map(|d| d.id).collect() };
        assert_eq!(ids(0, BATCH), vec![1, 2, 5, 9], "id order, no number blocks");
        assert_eq!(ids(0, 2), vec![1, 2]);
        assert_eq!(ids(2, 2), vec![5, 9]);
        assert_eq!(ids(9, 2), Vec::<u64>::new());
        let shown: Vec<String> = batch(&active, 0, BATCH).iter().map(|d| d.target.to_string()).collect();
        assert_eq!(shown, vec!["192.0.2.1", "198.51.100.0/24", "192.0.2.5", "2001:db8::9"]);
    }
}
