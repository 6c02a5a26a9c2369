//! `logs`: each built-in format's line reader (`fraudmesh::detect::logs::Reader::read`,
//! what the node's log followers call on every line: Asterisk's security log, PJSIP and
//! chan_sip lines; FreeSWITCH; Kamailio), one reader per format across the input's lines
//! (a reader remembers security-log nonces between lines), plus the line timestamp reader.
//!
//! Properties: an event's source address is written in the line itself (as an address
//! token that parses to the same address, so an attacker's free-text field such as a
//! username cannot name someone else's address without the stack's own field saying it
//! too); an event's username occurs in the line; nothing panics.
#![no_main]

use fraudmesh::detect::logs::{self, Format, Outcome, Reader};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

/// Every address-looking token of a line, as addresses.
fn addresses(line: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for tok in line.split(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.')) {
        // "1.2.3.4:5060" and "[::1]:5060" carry ports; try the token and its prefixes up to
        // each ':' (IPv6 addresses themselves contain ':').
        let tok = tok.trim_matches(|c| c == '.' || c == ':');
        if let Ok(ip) = tok.parse::<IpAddr>() {
            out.push(ip);
        }
        for (i, _) in tok.match_indices(':') {
            if let Ok(ip) = tok[..i].parse::<IpAddr>() {
                out.push(ip);
            }
        }
        // IPv4 embedded at the end of an IPv6 form (::ffff:1.2.3.4) or after it.
        if let Some(i) = tok.rfind(':') {
            if let Ok(ip) = tok[i + 1..].parse::<IpAddr>() {
                out.push(ip);
            }
        }
    }
    out
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut readers = [Format::Asterisk, Format::FreeSwitch, Format::Kamailio].map(Reader::new);
    for (n, line) in text.lines().enumerate() {
        let _ = logs::timestamp(line);
        for reader in &mut readers {
            let outcome = reader.read(line, n as u64 * 1000);
            if let Outcome::Event(e) = &outcome {
                let found = addresses(line)
                    .into_iter()
                    .any(|ip| canonical(ip) == canonical(e.source));
                assert!(
                    found,
                    "{:?} event from {} (pattern {}) whose address is not in the line {line:?}",
                    reader.format(),
                    e.source,
                    e.pattern
                );
                if let Some(u) = &e.username {
                    assert!(line.contains(u.as_str()), "username {u:?} is not in the line {line:?}");
                }
            }
            // A fresh reader may only know less (no nonce history), never see another
            // address in the same line.
            if let (Outcome::Event(a), Outcome::Event(b)) = (&outcome, logs::parse_line(line, reader.format())) {
                assert_eq!(a.source, b.source, "the address depends on earlier lines: {line:?}");
            }
        }
    }
});
