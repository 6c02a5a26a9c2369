//! Built-in patterns for the logs of Asterisk (18+, PJSIP and chan_sip, security events),
//! FreeSWITCH 1.10 and Kamailio 5.x (the lines of fraudmesh's example cfg), turning one
//! log line into one event: what happened, from which address, and the username tried.
//!
//! The address comes only from the field the SIP stack itself wrote. Attackers control
//! other parts of these lines (From users, account ids, Call-IDs, extensions), so each
//! pattern names its trusted field and a line counts only when that field is found
//! exactly once — or, where the stack writes it last, at the very end of the line. A
//! crafted header that repeats the field yields no event at all (and is counted as
//! `ambiguous`), never an event against another address.
//!
//! [`PATTERNS_VERSION`] changes whenever a built-in pattern does.

use regex::Regex;
use std::net::IpAddr;
use std::sync::OnceLock;

/// The version of the built-in patterns.
pub const PATTERNS_VERSION: u32 = 1;

/// What a log line says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A wrong password or failed digest challenge.
    AuthFailure,
    /// An account, endpoint or user that does not exist.
    UnknownAccount,
    /// Refused by an ACL.
    AclRejected,
    /// A call to an extension that does not exist (toll-fraud probing).
    NoSuchExtension,
    /// A known scanner's user agent.
    Scanner,
    /// A flood the SIP stack itself blocked (Kamailio pike).
    Flood,
    /// A successful registration or authentication: this source is a legitimate device.
    Registered,
}

impl EventKind {
    /// A stable name for configs, metrics and output.
    pub fn label(self) -> &'static str {
        match self {
            Self::AuthFailure => "auth-failure",
            Self::UnknownAccount => "unknown-account",
            Self::AclRejected => "acl-rejected",
            Self::NoSuchExtension => "no-such-extension",
            Self::Scanner => "scanner",
            Self::Flood => "flood",
            Self::Registered => "registered",
        }
    }

    /// The kind of sighting a detection of this kind is reported as.
    pub fn sighting_kind(self) -> crate::sighting::Kind {
        use crate::sighting::Kind;
        match self {
            Self::AuthFailure | Self::UnknownAccount | Self::AclRejected => Kind::AuthFailure,
            Self::NoSuchExtension => Kind::TollFraud,
            Self::Scanner | Self::Registered => Kind::Scan,
            Self::Flood => Kind::InviteFlood,
        }
    }

    /// Every event kind, in the order of help texts.
    pub const ALL: [EventKind; 7] = [
        Self::AuthFailure,
        Self::UnknownAccount,
        Self::AclRejected,
        Self::NoSuchExtension,
        Self::Scanner,
        Self::Flood,
        Self::Registered,
    ];

    /// The event kind whose [`label`](Self::label) is `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.label() == s)
    }
}

/// Which SIP stack wrote a log (Asterisk, FreeSWITCH, Kamailio): selects the patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Asterisk's `messages`/`full`/`security` logs.
    Asterisk,
    /// FreeSWITCH's `freeswitch.log`.
    FreeSwitch,
    /// Kamailio's syslog lines from fraudmesh's example cfg.
    Kamailio,
}

impl Format {
    /// A stable name for configs and output (`asterisk`, `freeswitch`, `kamailio`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Asterisk => "asterisk",
            Self::FreeSwitch => "freeswitch",
            Self::Kamailio => "kamailio",
        }
    }

    /// The format whose [`label`](Self::label) is `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Asterisk, Self::FreeSwitch, Self::Kamailio]
            .into_iter()
            .find(|f| f.label() == s)
    }
}

/// One event read from a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// What the line records (an auth failure, a registration, ...).
    pub kind: EventKind,
    /// The source address the SIP stack saw.
    pub source: IpAddr,
    /// The username tried, if the line has one (attacker-supplied: evidence only).
    pub username: Option<String>,
    /// The pattern that matched.
    pub pattern: &'static str,
}

/// What reading one log line gave: an event, a suspicious near-match, or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A pattern matched and its address field is trustworthy.
    Event(LogEvent),
    /// A pattern's line, but its trusted field appears more than once (a crafted header)
    /// or holds no valid address: no event.
    Ambiguous(&'static str),
    /// Not a line any pattern knows.
    Unknown,
}

/// How a pattern finds its trusted address field.
enum Anchor {
    /// `addr` must match exactly once in the line.
    Once(&'static str),
    /// `addr` is matched only at the end of the line.
    End(&'static str),
}

struct Builtin {
    name: &'static str,
    format: Format,
    kind: EventKind,
    /// Recognises the line (cheap, unanchored).
    line: &'static str,
    /// The trusted field with a group `addr`.
    addr: Anchor,
    /// Where the username is (a group `user`), if anywhere.
    user: Option<&'static str>,
}

/// An Asterisk security event (res_security_log) whose `SecurityEvent` field matches
/// `line`: the address is its `RemoteAddress`, the username its `AccountID`.
const fn asterisk_security(name: &'static str, kind: EventKind, line: &'static str) -> Builtin {
    Builtin {
        name,
        format: Format::Asterisk,
        kind,
        line,
        addr: Anchor::Once(r#"RemoteAddress="IPV[46]/[A-Za-z]+/(?P<addr>[0-9A-Fa-f:.]+)/\d+""#),
        user: Some(r#"AccountID="(?P<user>[^"]{0,64})""#),
    }
}

const BUILTINS: &[Builtin] = &[
    // Asterisk security events (res_security_log): RemoteAddress="IPV4/UDP/203.0.113.5/5060".
    asterisk_security(
        "asterisk-security-auth",
        EventKind::AuthFailure,
        r#"SecurityEvent="(?:ChallengeResponseFailed|InvalidPassword)""#,
    ),
    asterisk_security(
        "asterisk-security-account",
        EventKind::UnknownAccount,
        r#"SecurityEvent="InvalidAccountID""#,
    ),
    asterisk_security(
        "asterisk-security-acl",
        EventKind::AclRejected,
        r#"SecurityEvent="FailedACL""#,
    ),
    asterisk_security(
        "asterisk-security-success",
        EventKind::Registered,
        r#"SecurityEvent="SuccessfulAuth""#,
    ),
    // PJSIP: Request 'REGISTER' from '<sip:100@x>' failed for '203.0.113.5:5060' (callid: …) - No matching endpoint found
    Builtin {
        name: "asterisk-pjsip-no-endpoint",
        format: Format::Asterisk,
        kind: EventKind::UnknownAccount,
        line: r"Request '[A-Z]+' from '.*' failed for '.* - (?:No matching endpoint found|Not match Endpoint)\s*$",
        addr: Anchor::Once(r"failed for '(?:\[(?P<addr>[0-9A-Fa-f:.]+)\]|(?P<addr4>[0-9.]+)):\d+'"),
        user: Some(r"from '[^']*<sips?:(?P<user>[^@>;']{1,64})@"),
    },
    Builtin {
        name: "asterisk-pjsip-auth",
        format: Format::Asterisk,
        kind: EventKind::AuthFailure,
        line: r"Request '[A-Z]+' from '.*' failed for '.* - (?:Failed to authenticate|No matching endpoint found after \d+ tries)",
        addr: Anchor::Once(r"failed for '(?:\[(?P<addr>[0-9A-Fa-f:.]+)\]|(?P<addr4>[0-9.]+)):\d+'"),
        user: Some(r"from '[^']*<sips?:(?P<user>[^@>;']{1,64})@"),
    },
    // chan_sip: Registration from '"100" <sip:100@x>' failed for '203.0.113.5:5060' - Wrong password
    Builtin {
        name: "asterisk-chan-sip-registration",
        format: Format::Asterisk,
        kind: EventKind::AuthFailure,
        line: r"Registration from '.*' failed for '.* - (?:Wrong password|No matching peer found|Username/auth name mismatch|Device does not match ACL|Not a local domain|Peer is not supposed to register)",
        addr: Anchor::Once(r"failed for '(?:\[(?P<addr>[0-9A-Fa-f:.]+)\]|(?P<addr4>[0-9.]+))(?::\d+)?'"),
        user: Some(r"Registration from '[^']*<sips?:(?P<user>[^@>;']{1,64})@"),
    },
    // chan_sip: Call from '' (203.0.113.5:5060) to extension '0090…' rejected because extension not found in context 'public'.
    Builtin {
        name: "asterisk-chan-sip-extension",
        format: Format::Asterisk,
        kind: EventKind::NoSuchExtension,
        line: r"Call from '[^']*' \(.*\) to extension '.*' rejected because extension not found",
        addr: Anchor::Once(r"\((?:\[(?P<addr>[0-9A-Fa-f:.]+)\]|(?P<addr4>[0-9.]+)):\d+\) to extension '"),
        user: None,
    },
    // PJSIP: Call (UDP:203.0.113.5:5060) to extension '0090…' rejected because extension not found in context 'x'.
    Builtin {
        name: "asterisk-pjsip-extension",
        format: Format::Asterisk,
        kind: EventKind::NoSuchExtension,
        line: r"Call \([A-Za-z]+:.*\) to extension '.*' rejected because extension not found",
        addr: Anchor::Once(
            r"Call \([A-Za-z]+:(?:\[(?P<addr>[0-9A-Fa-f:.]+)\]|(?P<addr4>[0-9.]+)):\d+\) to extension '",
        ),
        user: None,
    },
    // FreeSWITCH: SIP auth failure (REGISTER) on sofia profile 'internal' for [100@x] from ip 203.0.113.5
    Builtin {
        name: "freeswitch-auth",
        format: Format::FreeSwitch,
        kind: EventKind::AuthFailure,
        line: r"SIP auth failure \([A-Z]+\) on sofia profile '[^']*' for \[",
        addr: Anchor::End(r" from ip (?P<addr>[0-9A-Fa-f:.]+)\s*$"),
        user: Some(r"for \[(?P<user>[^@\]]{1,64})@"),
    },
    // FreeSWITCH: Can't find user [100@x] from 203.0.113.5
    Builtin {
        name: "freeswitch-no-user",
        format: Format::FreeSwitch,
        kind: EventKind::UnknownAccount,
        line: r"Can't find user \[",
        addr: Anchor::End(r"\] from (?P<addr>[0-9A-Fa-f:.]+)\s*$"),
        user: Some(r"Can't find user \[(?P<user>[^@\]]{1,64})@"),
    },
    // Kamailio, the example cfg's lines: `fraudmesh: <event> user=<user> src=<addr>` with
    // the source last.
    Builtin {
        name: "kamailio-auth",
        format: Format::Kamailio,
        kind: EventKind::AuthFailure,
        line: r"fraudmesh: auth-failure ",
        addr: Anchor::End(r" src=(?P<addr>[0-9A-Fa-f:.]+)\s*$"),
        user: Some(r"fraudmesh: auth-failure user=(?P<user>\S{1,64}) "),
    },
    Builtin {
        name: "kamailio-scanner",
        format: Format::Kamailio,
        kind: EventKind::Scanner,
        line: r"fraudmesh: scanner ",
        addr: Anchor::End(r" src=(?P<addr>[0-9A-Fa-f:.]+)\s*$"),
        user: None,
    },
    Builtin {
        name: "kamailio-pike",
        format: Format::Kamailio,
        kind: EventKind::Flood,
        line: r"fraudmesh: pike-blocked ",
        addr: Anchor::End(r" src=(?P<addr>[0-9A-Fa-f:.]+)\s*$"),
        user: None,
    },
    Builtin {
        name: "kamailio-registered",
        format: Format::Kamailio,
        kind: EventKind::Registered,
        line: r"fraudmesh: registered ",
        addr: Anchor::End(r" src=(?P<addr>[0-9A-Fa-f:.]+)\s*$"),
        user: Some(r"fraudmesh: registered user=(?P<user>\S{1,64}) "),
    },
];

struct Compiled {
    name: &'static str,
    format: Format,
    kind: EventKind,
    line: Regex,
    addr: Regex,
    at_end: bool,
    user: Option<Regex>,
}

fn compiled() -> &'static [Compiled] {
    static ALL: OnceLock<Vec<Compiled>> = OnceLock::new();
    ALL.get_or_init(|| {
        BUILTINS
            .iter()
            .map(|b| {
                let (addr, at_end) = match b.addr {
                    Anchor::Once(r) => (r, false),
                    Anchor::End(r) => (r, true),
                };
                // The patterns are constants covered by tests.
                Compiled {
                    name: b.name,
                    format: b.format,
                    kind: b.kind,
                    line: Regex::new(b.line).expect("built-in line pattern"),
                    addr: Regex::new(addr).expect("built-in address pattern"),
                    at_end,
                    user: b.user.map(|u| Regex::new(u).expect("built-in user pattern")),
                }
            })
            .collect()
    })
}

/// The names of the built-in patterns of a format.
pub fn pattern_names(format: Format) -> Vec<&'static str> {
    BUILTINS.iter().filter(|b| b.format == format).map(|b| b.name).collect()
}

/// Lines longer than this are not parsed (no SIP stack writes them; an attacker might).
pub const MAX_LINE: usize = 8192;

/// Reads one line with the built-in patterns of `format`, or of every format when
/// `None`.
pub fn parse_line(line: &str, format: Option<Format>) -> Outcome {
    if line.len() > MAX_LINE {
        return Outcome::Unknown;
    }
    for c in compiled() {
        if format.is_some_and(|f| f != c.format) || !c.line.is_match(line) {
            continue;
        }
        let source = if c.at_end {
            c.addr.captures(line).and_then(|m| address(&m))
        } else {
            let mut found = c.addr.captures_iter(line);
            match (found.next(), found.next()) {
                (Some(m), None) => address(&m),
                _ => None,
            }
        };
        let Some(source) = source else {
            return Outcome::Ambiguous(c.name);
        };
        let username = c
            .user
            .as_ref()
            .and_then(|u| u.captures(line))
            .and_then(|m| m.name("user"))
            .map(|m| m.as_str().to_string())
            .filter(|u| !u.is_empty());
        return Outcome::Event(LogEvent {
            kind: c.kind,
            source,
            username,
            pattern: c.name,
        });
    }
    Outcome::Unknown
}

/// The address in a match's `addr` (or `addr4`) group.
fn address(m: &regex::Captures<'_>) -> Option<IpAddr> {
    let text = m.name("addr").or_else(|| m.name("addr4"))?.as_str();
    let text = text.trim_start_matches('[').trim_end_matches(']');
    text.parse().ok()
}

/// The time a log line was written, from its leading timestamp, in ms on a scale that
/// only orders lines of one log (for `fraudmesh detect test`, which replays a file;
/// live tailing uses the time a line arrives). Understands `2026-11-24 10:23:45[.frac]`
/// (bracketed or not, also with a `T`) and `Nov 24 10:23:45` (syslog, Asterisk's
/// default; the year is taken as 1970).
pub fn timestamp(line: &str) -> Option<crate::Millis> {
    static ISO: OnceLock<Regex> = OnceLock::new();
    static SYSLOG: OnceLock<Regex> = OnceLock::new();
    let head = &line[..line.len().min(64)];
    let head = head.trim_start_matches('[');
    let iso = ISO.get_or_init(|| {
        Regex::new(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?").expect("constant")
    });
    let sys = SYSLOG.get_or_init(|| {
        Regex::new(
            r"^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?",
        )
        .expect("constant")
    });
    let num = |m: Option<regex::Match<'_>>| m.and_then(|m| m.as_str().parse::<u64>().ok());
    let millis = |m: Option<regex::Match<'_>>| {
        m.map_or(0, |m| {
            let digits: String = m.as_str().chars().chain("000".chars()).take(3).collect();
            digits.parse::<u64>().unwrap_or(0)
        })
    };
    let (y, mo, d, h, mi, s, ms) = if let Some(c) = iso.captures(head) {
        (
            num(c.get(1))?,
            num(c.get(2))?,
            num(c.get(3))?,
            num(c.get(4))?,
            num(c.get(5))?,
            num(c.get(6))?,
            millis(c.get(7)),
        )
    } else if let Some(c) = sys.captures(head) {
        let months = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let mo = months.iter().position(|m| Some(*m) == c.get(1).map(|x| x.as_str()))? as u64 + 1;
        (
            1970,
            mo,
            num(c.get(2))?,
            num(c.get(3))?,
            num(c.get(4))?,
            num(c.get(5))?,
            millis(c.get(6)),
        )
    } else {
        return None;
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from 1970-01-01 to y-mo-d in the proleptic Gregorian calendar.
    let (y, mo) = (y as i64, mo as i64);
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + mi * 60 + s;
    Some(secs * 1000 + ms)
}

/// An operator's own pattern: a regex with a named group `addr` (and optionally
/// `user`), and the kind of event it means.
#[derive(Debug, Clone)]
pub struct CustomPattern {
    /// Its name in output and metrics.
    pub name: String,
    /// What a match means.
    pub kind: EventKind,
    regex: Regex,
}

/// Why a custom pattern is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    /// Not a valid regex.
    #[error("not a valid regex: {0}")]
    Regex(String),
    /// No `(?P<addr>…)` group.
    #[error("the regex needs a named group (?P<addr>...) matching the source address")]
    NoAddr,
}

impl CustomPattern {
    /// Compiles a custom pattern.
    pub fn new(name: &str, kind: EventKind, regex: &str) -> Result<Self, PatternError> {
        let regex = Regex::new(regex).map_err(|e| PatternError::Regex(e.to_string()))?;
        if !regex.capture_names().any(|n| n == Some("addr")) {
            return Err(PatternError::NoAddr);
        }
        Ok(Self {
            name: name.to_string(),
            kind,
            regex,
        })
    }

    /// The event in `line`, if the regex matches exactly once with a valid address.
    pub fn parse_line(&self, line: &str) -> Option<LogEvent> {
        if line.len() > MAX_LINE {
            return None;
        }
        let mut found = self.regex.captures_iter(line);
        let (Some(m), None) = (found.next(), found.next()) else {
            return None;
        };
        Some(LogEvent {
            kind: self.kind,
            source: address(&m)?,
            username: m.name("user").map(|u| u.as_str().chars().take(64).collect()),
            pattern: "custom",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(line: &str) -> LogEvent {
        match parse_line(line, None) {
            Outcome::Event(e) => e,
            other => panic!("{line}\n→ {other:?}"),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn asterisk_security_events() {
        let e = event(
            r#"[2026-11-24 10:23:45] SECURITY[2345] res_security_log.c: SecurityEvent="ChallengeResponseFailed",EventTV="2026-11-24T10:23:45.123+0000",Severity="Error",Service="PJSIP",EventVersion="1",AccountID="1001",SessionID="b7e1c",LocalAddress="IPV4/UDP/192.0.2.1/5060",RemoteAddress="IPV4/UDP/203.0.113.5/5060",Challenge="1b2c3d",ReceivedChallenge="1b2c3d",ReceivedHash="9f8e""#,
        );
        assert_eq!(
            (e.kind, e.source, e.username.as_deref()),
            (EventKind::AuthFailure, ip("203.0.113.5"), Some("1001"))
        );
        let e = event(
            r#"[2026-11-24 10:23:46] SECURITY[2345] res_security_log.c: SecurityEvent="InvalidAccountID",EventTV="2026-11-24T10:23:46.001+0000",Severity="Error",Service="PJSIP",EventVersion="1",AccountID="admin",SessionID="x",LocalAddress="IPV6/UDP/2001:db8::1/5060",RemoteAddress="IPV6/UDP/2001:db8:bad::7/5062""#,
        );
        assert_eq!((e.kind, e.source), (EventKind::UnknownAccount, ip("2001:db8:bad::7")));
        let e = event(
            r#"[2026-11-24 10:23:47] SECURITY[2345] res_security_log.c: SecurityEvent="FailedACL",EventTV="2026-11-24T10:23:47.001+0000",Severity="Error",Service="PJSIP",EventVersion="1",AccountID="1001",SessionID="x",LocalAddress="IPV4/TCP/192.0.2.1/5060",RemoteAddress="IPV4/TCP/198.51.100.9/40312",ACLName="office""#,
        );
        assert_eq!((e.kind, e.source), (EventKind::AclRejected, ip("198.51.100.9")));
        let e = event(
            r#"[2026-11-24 10:23:48] SECURITY[2345] res_security_log.c: SecurityEvent="SuccessfulAuth",EventTV="2026-11-24T10:23:48.001+0000",Severity="Informational",Service="PJSIP",EventVersion="1",AccountID="1001",SessionID="x",LocalAddress="IPV4/UDP/192.0.2.1/5060",RemoteAddress="IPV4/UDP/192.0.2.50/5060",UsingPassword="1""#,
        );
        assert_eq!((e.kind, e.source), (EventKind::Registered, ip("192.0.2.50")));
    }

    #[test]
    fn asterisk_pjsip_and_chan_sip_lines() {
        let e = event("[2026-11-24 10:24:01] NOTICE[2399] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '\"100\" <sip:100@192.0.2.1>' failed for '203.0.113.5:5060' (callid: 1a2b3c) - No matching endpoint found");
        assert_eq!(
            (e.kind, e.source, e.username.as_deref()),
            (EventKind::UnknownAccount, ip("203.0.113.5"), Some("100"))
        );
        let e = event("[2026-11-24 10:24:02] NOTICE[2399] res_pjsip/pjsip_distributor.c: Request 'INVITE' from '<sip:9001@192.0.2.1>' failed for '[2001:db8::66]:5070' (callid: zz) - Failed to authenticate");
        assert_eq!((e.kind, e.source), (EventKind::AuthFailure, ip("2001:db8::66")));
        let e = event("[2026-11-24 10:24:03] NOTICE[2400] chan_sip.c: Registration from '\"200\" <sip:200@192.0.2.1>' failed for '198.51.100.20:5060' - Wrong password");
        assert_eq!(
            (e.kind, e.source, e.username.as_deref()),
            (EventKind::AuthFailure, ip("198.51.100.20"), Some("200"))
        );
        let e = event("[2026-11-24 10:24:04] NOTICE[2401][C-00000003] chan_sip.c: Call from '' (198.51.100.21:5060) to extension '0090012345' rejected because extension not found in context 'public'.");
        assert_eq!((e.kind, e.source), (EventKind::NoSuchExtension, ip("198.51.100.21")));
        let e = event("[2026-11-24 10:24:05] NOTICE[2402] res_pjsip_session.c: Call (UDP:198.51.100.22:5060) to extension '00972599' rejected because extension not found in context 'from-external'.");
        assert_eq!((e.kind, e.source), (EventKind::NoSuchExtension, ip("198.51.100.22")));
    }

    #[test]
    fn freeswitch_and_kamailio_lines() {
        let e = event("2026-11-24 10:25:01.123456 [WARNING] sofia_reg.c:1871 SIP auth failure (REGISTER) on sofia profile 'internal' for [1001@192.0.2.1] from ip 203.0.113.8");
        assert_eq!(
            (e.kind, e.source, e.username.as_deref()),
            (EventKind::AuthFailure, ip("203.0.113.8"), Some("1001"))
        );
        let e = event(
            "2026-11-24 10:25:02.000001 [WARNING] sofia_reg.c:3212 Can't find user [9999@192.0.2.1] from 203.0.113.9",
        );
        assert_eq!((e.kind, e.source), (EventKind::UnknownAccount, ip("203.0.113.9")));
        let e = event("Nov 24 10:26:01 pbx /usr/sbin/kamailio[812]: WARNING: <script>: fraudmesh: auth-failure user=1001 src=203.0.113.10");
        assert_eq!(
            (e.kind, e.source, e.username.as_deref()),
            (EventKind::AuthFailure, ip("203.0.113.10"), Some("1001"))
        );
        let e = event("Nov 24 10:26:02 pbx /usr/sbin/kamailio[812]: NOTICE: <script>: fraudmesh: scanner ua=friendly-scanner src=203.0.113.11");
        assert_eq!((e.kind, e.source), (EventKind::Scanner, ip("203.0.113.11")));
        assert_eq!(
            parse_line("Nov 24 10:26:03 pbx kernel: eth0 up", None),
            Outcome::Unknown
        );
        // A format given restricts the patterns.
        assert_eq!(
            parse_line(
                "2026-11-24 10:25:02.000001 [WARNING] sofia_reg.c:3212 Can't find user [9@x] from 203.0.113.9",
                Some(Format::Asterisk)
            ),
            Outcome::Unknown
        );
    }

    #[test]
    fn smuggled_addresses_never_become_events() {
        // The From display name repeats the trusted field: no event, not 9.9.9.9.
        let crafted = [
            "[2026-11-24 10:24:01] NOTICE[2399] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '\"x' failed for '9.9.9.9:5060' y\" <sip:100@192.0.2.1>' failed for '203.0.113.5:5060' (callid: 1) - No matching endpoint found",
            "[2026-11-24 10:24:01] NOTICE[2399] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '<sip:100@192.0.2.1>' failed for '203.0.113.5:5060' (callid: failed for '9.9.9.9:5060') - No matching endpoint found",
            r#"[2026-11-24 10:23:45] SECURITY[2345] res_security_log.c: SecurityEvent="InvalidAccountID",EventTV="x",Severity="Error",Service="PJSIP",EventVersion="1",AccountID="a",RemoteAddress="IPV4/UDP/9.9.9.9/5060",SessionID="x",LocalAddress="IPV4/UDP/192.0.2.1/5060",RemoteAddress="IPV4/UDP/203.0.113.5/5060""#,
            "[2026-11-24 10:24:04] NOTICE[2401] chan_sip.c: Call from '' (198.51.100.21:5060) to extension '(9.9.9.9:5060) to extension '' rejected because extension not found in context 'public'.",
        ];
        for line in crafted {
            assert!(matches!(parse_line(line, None), Outcome::Ambiguous(_)), "{line}");
        }
        // Where the stack writes the address last, text before it cannot move it.
        let e = event("2026-11-24 10:25:01.123456 [WARNING] sofia_reg.c:1871 SIP auth failure (REGISTER) on sofia profile 'internal' for [x] from ip 9.9.9.9 @192.0.2.1] from ip 203.0.113.8");
        assert_eq!(e.source, ip("203.0.113.8"));
        let e = event("Nov 24 10:26:01 pbx kamailio[812]: WARNING: <script>: fraudmesh: auth-failure user=a src=9.9.9.9 src=203.0.113.10");
        assert_eq!(e.source, ip("203.0.113.10"));
    }

    #[test]
    fn timestamps_of_each_format() {
        assert_eq!(timestamp("[2026-11-24 10:23:45] NOTICE"), Some(1_795_515_825_000));
        assert_eq!(
            timestamp("2026-11-24 10:23:45.123456 [WARNING] x"),
            Some(1_795_515_825_123)
        );
        assert_eq!(timestamp("2026-11-24T10:23:45.5+0000 x"), Some(1_795_515_825_500));
        assert_eq!(timestamp("1970-01-02 00:00:01 x"), Some(86_401_000));
        assert_eq!(timestamp("[Jan  2 00:00:01] NOTICE"), Some(86_401_000));
        assert_eq!(timestamp("Jan 2 00:00:01 host kamailio"), Some(86_401_000));
        assert_eq!(timestamp("no time here"), None);
        assert_eq!(timestamp("2026-13-24 10:23:45 bad month"), None);
    }

    #[test]
    fn custom_patterns_need_an_address_group() {
        assert_eq!(
            CustomPattern::new("x", EventKind::AuthFailure, "failed from (\\S+)").unwrap_err(),
            PatternError::NoAddr
        );
        assert!(matches!(
            CustomPattern::new("x", EventKind::AuthFailure, "(").unwrap_err(),
            PatternError::Regex(_)
        ));
        let p = CustomPattern::new(
            "gw",
            EventKind::AuthFailure,
            r"^auth failed user=(?P<user>\S+) ip=(?P<addr>\S+)$",
        )
        .unwrap();
        let e = p.parse_line("auth failed user=bob ip=203.0.113.77").unwrap();
        assert_eq!((e.source, e.username.as_deref()), (ip("203.0.113.77"), Some("bob")));
        assert_eq!(p.parse_line("auth failed user=bob ip=not-an-ip"), None);
    }

    #[test]
    fn every_builtin_pattern_compiles_and_is_named_once() {
        let names: std::collections::BTreeSet<_> = BUILTINS.iter().map(|b| b.name).collect();
        assert_eq!(names.len(), BUILTINS.len());
        assert_eq!(compiled().len(), BUILTINS.len());
        assert_eq!(
            pattern_names(Format::FreeSwitch),
            vec!["freeswitch-auth", "freeswitch-no-user"]
        );
    }

    proptest! {
        #[test]
        fn random_lines_never_panic(line in ".{0,300}") {
            let _ = parse_line(&line, None);
        }

        #[test]
        fn random_bytes_in_known_lines_never_panic(junk in ".{0,80}", at in 0usize..200) {
            let base = "[2026-11-24 10:24:01] NOTICE[2399] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '<sip:100@192.0.2.1>' failed for '203.0.113.5:5060' (callid: 1) - No matching endpoint found";
            let mut at = at.min(base.len());
            while !base.is_char_boundary(at) { at -= 1; }
            let line = format!("{}{}{}", &base[..at], junk, &base[at..]);
            let _ = parse_line(&line, None);
        }
    }
}
