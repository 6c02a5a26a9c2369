//! A strict parser for the SIP requests a decoy listener receives, and the user agents of
//! known scanners.
//!
//! The sensor only needs the method, the request URI, the From user, the Call-ID and the
//! User-Agent, and it parses bytes sent by attackers: every size is bounded, anything
//! that is not a well-formed request (RFC 3261 request line, `Name: value` headers ending
//! in an empty line) is refused with a reason, and nothing here panics on any input.

use thiserror::Error;

/// Largest message accepted (a UDP SIP request must fit a datagram; scanners send ~500 B).
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Most header lines.
pub const MAX_HEADERS: usize = 100;
/// Longest request URI or header value kept.
pub const MAX_FIELD: usize = 1024;

/// Why bytes are not a SIP request.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SipError {
    /// Larger than [`MAX_MESSAGE`].
    #[error("message too large ({0} bytes, at most {MAX_MESSAGE})")]
    TooLarge(usize),
    /// Not UTF-8 in the start line or headers.
    #[error("not text")]
    NotText,
    /// A response, not a request.
    #[error("a response, not a request")]
    Response,
    /// The first line is not `METHOD URI SIP/2.0`.
    #[error("bad request line")]
    BadRequestLine,
    /// A header line without a name and a colon, or a bad name.
    #[error("bad header line")]
    BadHeader,
    /// More than [`MAX_HEADERS`] headers, or a field longer than [`MAX_FIELD`].
    #[error("too many or too long headers")]
    HeadersTooLarge,
    /// No empty line ending the headers.
    #[error("headers not terminated")]
    Unterminated,
}

/// The parts of a request the sensor reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// The method (`REGISTER`, `INVITE`, `OPTIONS`, …).
    pub method: String,
    /// The Request-URI of the request line, as sent (attacker-supplied).
    pub uri: String,
    /// The user part of the From URI, if any.
    pub from_user: Option<String>,
    /// The Call-ID header, if present (attacker-supplied).
    pub call_id: Option<String>,
    /// The User-Agent header, if present (attacker-supplied; matched against known scanners).
    pub user_agent: Option<String>,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Parses one SIP request (the headers; a body after the empty line is ignored).
pub fn parse(bytes: &[u8]) -> Result<Request, SipError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(SipError::TooLarge(bytes.len()));
    }
    // Only the head must be text; a body may be anything.
    let head_end = find_head_end(bytes).ok_or(SipError::Unterminated)?;
    let head = std::str::from_utf8(&bytes[..head_end]).map_err(|_| SipError::NotText)?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = lines.next().ok_or(SipError::BadRequestLine)?;
    if start.starts_with("SIP/") {
        return Err(SipError::Response);
    }
    let mut parts = start.split(' ');
    let (Some(method), Some(uri), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SipError::BadRequestLine);
    };
    if !is_token(method) || !version.eq_ignore_ascii_case("SIP/2.0") || uri.is_empty() || !uri.contains(':') {
        return Err(SipError::BadRequestLine);
    }
    if uri.len() > MAX_FIELD || uri.chars().any(char::is_control) {
        return Err(SipError::BadRequestLine);
    }
    let mut req = Request {
        method: method.to_string(),
        uri: uri.to_string(),
        ..Request::default()
    };
    let mut count = 0;
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // A folded continuation of the previous header: allowed, not needed.
            continue;
        }
        count += 1;
        if count > MAX_HEADERS || line.len() > MAX_FIELD + 64 {
            return Err(SipError::HeadersTooLarge);
        }
        let (name, value) = line.split_once(':').ok_or(SipError::BadHeader)?;
        let name = name.trim_end();
        if !is_token(name) {
            return Err(SipError::BadHeader);
        }
        let value = value.trim();
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(SipError::BadHeader);
        }
        match name.to_ascii_lowercase().as_str() {
            "user-agent" => req.user_agent = Some(value.to_string()),
            "call-id" | "i" => req.call_id = Some(value.to_string()),
            "from" | "f" => req.from_user = uri_user(value),
            _ => {}
        }
    }
    Ok(req)
}

/// The end of the head (the index of the empty line's start), accepting CRLF or LF.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            let rest = &bytes[i + 1..];
            if rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
                return Some(i + 1);
            }
        }
        i += 1;
    }
    None
}

/// The user part of a `sip:`/`sips:` URI in a From/To value.
fn uri_user(value: &str) -> Option<String> {
    let lower = value.to_ascii_lowercase();
    let at = lower.find("sip:").or_else(|| lower.find("sips:"))?;
    let rest = &value[at..];
    let rest = &rest[rest.find(':')? + 1..];
    let end = rest.find(['@', '>', ';', ' ']).unwrap_or(rest.len());
    if rest[end..].starts_with('@') && end > 0 {
        Some(rest[..end].chars().take(64).collect())
    } else {
        None
    }
}

/// User-agent fragments of SIP scanners and attack tools (matched case-insensitively).
pub const SCANNER_AGENTS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "vaxsipuseragent",
    "pplsip",
    "sip-scan",
    "sipscan",
    "iwar",
    "sundayddr",
    "siparmyknife",
    "smap",
];

/// The scanner a user agent names, if any.
pub fn scanner(user_agent: &str) -> Option<&'static str> {
    let ua = user_agent.to_ascii_lowercase();
    SCANNER_AGENTS.iter().copied().find(|s| ua.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OPTIONS: &str = "OPTIONS sip:100@192.0.2.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK-1\r\n\
        From: \"sipvicious\" <sip:100@1.1.1.1>;tag=6436\r\n\
        To: \"sipvicious\" <sip:100@1.1.1.1>\r\n\
        Call-ID: 1234567@198.51.100.7\r\n\
        CSeq: 1 OPTIONS\r\n\
        User-Agent: friendly-scanner\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn scanner_requests_give_method_user_and_agent() {
        let r = parse(OPTIONS.as_bytes()).unwrap();
        assert_eq!(r.method, "OPTIONS");
        assert_eq!(r.uri, "sip:100@192.0.2.1");
        assert_eq!(r.from_user.as_deref(), Some("100"));
        assert_eq!(r.call_id.as_deref(), Some("1234567@198.51.100.7"));
        assert_eq!(scanner(r.user_agent.as_deref().unwrap()), Some("friendly-scanner"));
        assert_eq!(scanner("Yealink SIP-T46S 66.86.0.15"), None);
        // LF-only line ends and compact headers work too.
        let compact = "REGISTER sip:example.com SIP/2.0\nf: <sip:alice@example.com>\ni: abc\n\n";
        let r = parse(compact.as_bytes()).unwrap();
        assert_eq!(
            (r.from_user.as_deref(), r.call_id.as_deref()),
            (Some("alice"), Some("abc"))
        );
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let cases: &[(&[u8], SipError)] = &[
            (b"SIP/2.0 200 OK\r\n\r\n", SipError::Response),
            (b"OPTIONS sip:x SIP/2.0\r\nVia: x\r\n", SipError::Unterminated),
            (b"OPTIONS sip:x HTTP/1.1\r\n\r\n", SipError::BadRequestLine),
            (b"GET / HTTP/1.1\r\n\r\n", SipError::BadRequestLine),
            (b"OPTIONS  sip:x SIP/2.0\r\n\r\n", SipError::BadRequestLine),
            (b"OPT IONS sip:x SIP/2.0\r\n\r\n", SipError::BadRequestLine),
            (b"OPTIONS sip:x SIP/2.0\r\nno colon here\r\n\r\n", SipError::BadHeader),
            (b"OPTIONS sip:x SIP/2.0\r\nX: a\x01b\r\n\r\n", SipError::BadHeader),
            (b"OPTIONS sip:\xff SIP/2.0\r\n\r\n", SipError::NotText),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                parse(bytes).as_ref().err(),
                Some(want),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let big = vec![b'A'; MAX_MESSAGE + 1];
        assert_eq!(parse(&big), Err(SipError::TooLarge(MAX_MESSAGE + 1)));
        let many = format!("OPTIONS sip:x SIP/2.0\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(parse(many.as_bytes()), Err(SipError::HeadersTooLarge));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn mutated_requests_never_panic(cut in 0usize..400, byte in any::<u8>(), at in 0usize..400) {
            let mut b = OPTIONS.as_bytes().to_vec();
            let at = at.min(b.len() - 1);
            b[at] = byte;
            b.truncate(cut.max(1).min(b.len()));
            let _ = parse(&b);
        }
    }
}
