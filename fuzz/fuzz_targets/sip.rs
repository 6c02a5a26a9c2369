//! `sip`: the sensor's SIP request parser (`fraudmesh::detect::sip::parse`, what the
//! decoy sensor calls on every UDP datagram and TCP head it receives).
//!
//! Properties: a parse never panics; an accepted request's fields come from the input
//! (method and URI as the start line wrote them, within their bounds, no control
//! characters); a body after the head changes nothing; the answer is deterministic.
#![no_main]

use fraudmesh::detect::sip::{self, SipError, MAX_FIELD, MAX_MESSAGE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = sip::parse(data);
    assert_eq!(parsed, sip::parse(data), "not deterministic");
    let Ok(req) = parsed else {
        if let Err(SipError::TooLarge(n)) = parsed {
            assert_eq!(n, data.len());
            assert!(n > MAX_MESSAGE);
        }
        return;
    };
    assert!(data.len() <= MAX_MESSAGE);
    let start = format!("{} {} ", req.method, req.uri);
    assert!(data.starts_with(start.as_bytes()), "start line not as sent: {start:?}");
    assert!(!req.method.is_empty() && req.method.is_ascii());
    assert!(req.uri.len() <= MAX_FIELD && req.uri.contains(':'));
    assert!(!req.uri.chars().any(char::is_control));
    for v in [&req.user_agent, &req.call_id].into_iter().flatten() {
        assert!(v.len() <= MAX_FIELD + 64, "header value longer than a header line");
        assert!(
            !v.chars().any(|c| c.is_control() && c != '\t'),
            "control character kept: {v:?}"
        );
    }
    if let Some(u) = &req.from_user {
        assert!(!u.is_empty() && u.chars().count() <= 64);
        assert!(!u.contains(['@', '>', ';', ' ']));
    }
    // Whatever follows the head is a body, ignored.
    if data.len() + 3 <= MAX_MESSAGE {
        let mut more = data.to_vec();
        more.extend_from_slice(b"\xff\x00x");
        assert_eq!(sip::parse(&more).as_ref(), Ok(&req), "a body changed the request");
    }
    if let Some(agent) = &req.user_agent {
        let _ = sip::scanner(agent);
    }
});
