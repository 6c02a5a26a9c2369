//! Built-in patterns for the logs of Asterisk (18+, PJSIP and chan_sip, security events),
//! FreeSWITCH 1.10 and Kamailio 5.x (the lines of fraudmesh's example cfg), turning one
//! log line into one event: what happened, from which address, the username tried, and
//! what [`Proof`] the line carries that the source really receives packets there.
//!
//! Every log has one [`Format`] and only that format's patterns read it (a `src=` line in
//! an Asterisk log or in syslog is nothing). A [`Reader`] reads one log and remembers what
//! later lines are judged by: the digest nonces Asterisk's `ChallengeSent` events say it
//! sent, and to which address.
//!
//! # Anchoring
//!
//! Attackers control parts of these lines (From users, account ids, Call-IDs, nonces they
//! send back), so each pattern is anchored to the structure the stack itself writes:
//!
//! - Asterisk security events are parsed as the `key="value"` list res_security_log
//!   writes, whose order is fixed: `SecurityEvent`, `EventTV`, `Severity`, `Service`,
//!   `EventVersion` (nothing an attacker chooses), then `AccountID` and `SessionID`
//!   (attacker text, written unescaped), `LocalAddress`, `RemoteAddress`, then the event's
//!   own fields. The event name is the first quoted value of the line: an `AccountID`
//!   holding `SecurityEvent="SuccessfulAuth"` changes nothing. The remote address is the
//!   one whose `",LocalAddress="…",RemoteAddress="…"` pair is followed by nothing but the
//!   event's known trailing fields up to the end of the line, whose values hold no
//!   unescaped quote — copies smuggled into `AccountID`/`SessionID` are always followed by
//!   the real `SessionID`/`LocalAddress`, so they never qualify. A trailing field this
//!   module does not know makes the line ambiguous (it fails closed until the patterns'
//!   version adds it).
//! - Where the stack writes the address last (FreeSWITCH, Kamailio), the whole line is
//!   matched up to its end; text before the address cannot move it.
//! - Elsewhere (PJSIP and chan_sip notices) the address field must appear exactly once; a
//!   line with more than one gives no event and is counted as `ambiguous`.
//!
//! # Proof per pattern
//!
//! Only a proven event counts toward a report (the pipeline counts the others by reason).
//! "Handshake" transports are TCP, TLS, WS, WSS (and SCTP for Kamailio).
//!
//! | format | pattern | line | event | proof |
//! | --- | --- | --- | --- | --- |
//! | asterisk | `asterisk-security-auth` | `SecurityEvent="InvalidPassword"` (chan_sip) | auth-failure | handshake if `RemoteAddress` is over a handshake transport; over UDP nonce-echo when `ReceivedChallenge` is a nonce a `ChallengeSent` line of the same log sent to that same address within [`NONCE_MEMORY_MS`]; else none (`nonce-not-sent`) |
//! | asterisk | `asterisk-security-auth` | `SecurityEvent="ChallengeResponseFailed"` | auth-failure | handshake as above; over UDP, PJSIP (`Service="PJSIP"`): nonce-echo when its `Challenge` (the nonce the client sent back) was sent to that address as above, else none (`nonce-not-sent`); chan_sip: none (`no-nonce`, the line shows the PBX's nonce, not the client's) |
//! | asterisk | `asterisk-security-account` | `SecurityEvent="InvalidAccountID"` | unknown-account | handshake as above; over UDP none (`udp`: no challenge precedes it) |
//! | asterisk | `asterisk-security-acl` | `SecurityEvent="FailedACL"` | acl-rejected | handshake as above; over UDP none (`udp`) |
//! | asterisk | `asterisk-security-success` | `SecurityEvent="SuccessfulAuth"` | registered | handshake as above; over UDP nonce-echo with `UsingPassword="1"` (a digest answered), none with `"0"` (`no-password`) |
//! | asterisk | — | `SecurityEvent="ChallengeSent"` | (remembered: nonce → address) | — |
//! | asterisk | `asterisk-pjsip-no-endpoint`, `asterisk-pjsip-auth` | `Request '…' from '…' failed for 'ADDR:PORT' … - No matching endpoint found` / `Failed to authenticate` | unknown-account / auth-failure | none (`no-transport`: neither transport nor nonce in the line) |
//! | asterisk | `asterisk-chan-sip-registration` | `Registration from '…' failed for 'ADDR:PORT' - Wrong password` … | auth-failure | none (`no-transport`) |
//! | asterisk | `asterisk-chan-sip-extension` | `Call from '…' (ADDR:PORT) to extension '…' rejected because extension not found …` | no-such-extension | none (`no-transport`) |
//! | asterisk | `asterisk-pjsip-extension` | `Call (TRANSPORT:ADDR:PORT) to extension '…' rejected because extension not found …` | no-such-extension | handshake if TRANSPORT is one; else none (`udp`) |
//! | freeswitch | `freeswitch-auth` | `SIP auth failure (…) on sofia profile '…' for […] from ip ADDR` | auth-failure | none (`nonce-not-bound`: sofia only checks that the nonce is one it issued, not to whom — one nonce fetched from anywhere answers for any forged source) |
//! | freeswitch | `freeswitch-no-user` | `Can't find user […] from ADDR` | unknown-account | none (`nonce-not-bound`) |
//! | kamailio | `kamailio-auth` | `<script>: fraudmesh: auth-failure user=U proto=P nonce=N src=ADDR` | auth-failure | nonce-echo when `nonce=echoed` (the shipped cfg binds nonces to the source address, `auth_checks_*` bit 8, and writes `echoed` only when the answered nonce passed that check); else handshake if P is a handshake transport; else none (`udp`) |
//! | kamailio | `kamailio-registered` | `<script>: fraudmesh: registered user=U proto=P src=ADDR` | registered | nonce-echo (written only after a successful check of such a nonce) |
//! | kamailio | `kamailio-scanner`, `kamailio-pike` | `<script>: fraudmesh: scanner ua=UA proto=P src=ADDR`, `… pike-blocked method=M proto=P src=ADDR` | scanner, flood | handshake if P is one; else none (`udp`) |
//! | kamailio | `kamailio-legacy-*` | the same lines without `proto=` (cfg before pattern version 2) | as above | none (`legacy-line`) |
//! | custom | `[[detect.patterns]]` | the operator's regex | its `kind` | the `proof` the operator configured for it |
//!
//! The sensor's events (not log lines) carry the proof the sensor establishes itself.
//!
//! [`PATTERNS_VERSION`] changes whenever a built-in pattern does.

use super::Proof;
use crate::Millis;
use regex::Regex;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::OnceLock;

/// The version of the built-in patterns.
pub const PATTERNS_VERSION: u32 = 2;

/// How long a digest nonce Asterisk sent is remembered, ms: an answer with it counts as
/// an echo for this long (PJSIP's nonces live 32 s, chan_sip's as long as the dialog).
pub const NONCE_MEMORY_MS: Millis = 5 * 60_000;
/// Most nonces remembered per log; the oldest go first. A flood of challenges to forged
/// sources can push a real attacker's nonces out (its failures then count as unproven):
/// it can never make a forged source proven.
pub const MAX_NONCES: usize = 65_536;
/// Longest nonce remembered (Asterisk's are under 64 characters).
const MAX_NONCE_LEN: usize = 128;

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

/// Which SIP stack wrote a log (Asterisk, FreeSWITCH, Kamailio), or `Custom` for a log
/// only the operator's patterns read: selects the patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Asterisk's `messages`/`full`/`security` logs.
    Asterisk,
    /// FreeSWITCH's `freeswitch.log`.
    FreeSwitch,
    /// Kamailio's lines from fraudmesh's example cfg.
    Kamailio,
    /// No built-in patterns: only `[[detect.patterns]]`.
    Custom,
}

impl Format {
    /// Every format, in the order of help texts.
    pub const ALL: [Format; 4] = [Self::Asterisk, Self::FreeSwitch, Self::Kamailio, Self::Custom];

    /// A stable name for configs and output (`asterisk`, `freeswitch`, `kamailio`,
    /// `custom`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Asterisk => "asterisk",
            Self::FreeSwitch => "freeswitch",
            Self::Kamailio => "kamailio",
            Self::Custom => "custom",
        }
    }

    /// The format whose [`label`](Self::label) is `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.label() == s)
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
    /// What the line proves about the source (see the module's table).
    pub proof: Proof,
}

/// What reading one log line gave: an event, a suspicious near-match, or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A pattern matched and its address field is trustworthy.
    Event(LogEvent),
    /// A pattern's line whose address field cannot be located unambiguously (it appears
    /// more than once, or the line breaks the stack's field structure) or holds no valid
    /// address: no event.
    Ambiguous(&'static str),
    /// Not a line any pattern knows.
    Unknown,
}

/// Lines longer than this are not parsed (no SIP stack writes them; an attacker might).
pub const MAX_LINE: usize = 8192;

/// Whether a transport name (`TCP`, `tls`, `WSS`, `UDP6`, …) runs over a completed
/// handshake.
fn handshake_transport(t: &str) -> bool {
    let t = t.to_ascii_uppercase();
    matches!(t.trim_end_matches('6'), "TCP" | "TLS" | "WS" | "WSS" | "SCTP")
}

/// How a built-in pattern decides its event's proof.
#[derive(Clone, Copy)]
enum ProofRule {
    /// Never proven, for this reason.
    Never(&'static str),
    /// Handshake when the `transport` group names a handshake transport; else none (`udp`).
    Transport,
    /// Nonce-echo when the `nonce` group says `echoed`; else as [`Self::Transport`].
    NonceOrTransport,
    /// Always this proof (the stack writes the line only after it).
    Always(Proof),
}

/// How a pattern finds its trusted address field.
enum Anchor {
    /// In the whole-line pattern's `addr`/`addr4` group (the address is written last).
    Line,
    /// A separate regex with `addr`/`addr4` that must match exactly once in the line.
    Once(&'static str),
}

struct Builtin {
    name: &'static str,
    format: Format,
    kind: EventKind,
    /// The whole line, anchored at both ends; may name `user`, `transport`, `nonce`
    /// (and `addr`/`addr4` with [`Anchor::Line`]).
    line: &'static str,
    /// Where the address is.
    addr: Anchor,
    /// Where the username is (a group `user`) when the line pattern has none.
    user: Option<&'static str>,
    /// What the line proves.
    proof: ProofRule,
}

/// A Kamailio line of fraudmesh's cfg: `<script>: fraudmesh: EVENT FIELDS src=ADDR`. The
/// first `<` of the line must open `<script>` (xlog's prefix; Kamailio's own messages
/// start with `<core>` or a module name, and quote attacker text after it).
macro_rules! kamailio {
    ($body:literal) => {
        concat!(
            r"^[^<]*<script>: fraudmesh: ",
            $body,
            r" src=\[?(?P<addr>[0-9A-Fa-f:.]+)\]?\s*$"
        )
    };
}

/// A PJSIP/chan_sip notice: the message starts after the log's prefix, which holds no `'`.
macro_rules! notice {
    ($body:literal) => {
        concat!(r"^[^']*?: ", $body)
    };
}

/// A FreeSWITCH warning from sofia_reg.c: the log's prefix holds no `[`.
macro_rules! sofia {
    ($body:literal) => {
        concat!(r"^[^\[]*\[WARNING\] sofia_reg\.c:\d+ ", $body)
    };
}

const BUILTINS: &[Builtin] = &[
    // PJSIP: Request 'REGISTER' from '<sip:100@x>' failed for '203.0.113.5:5060' (callid: …) - No matching endpoint found
    Builtin {
        name: "asterisk-pjsip-no-endpoint",
        format: Format::Asterisk,
        kind: EventKind::UnknownAccount,
        line: notice!(
            r"Request '[A-Z]+' from '.*' failed for '.* - (?:No matching endpoint found|Not match Endpoint)\s*$"
        ),
        addr: Anchor::Once(r"failed for '(?:\[(?P<addr>[0-9A-Fa-f:.]+)\]|(?P<addr4>[0-9.]+)):\d+'"),
        user: Some(r"from '[^']*<sips?:(?P<user>[^@>;']{1,64})@"),
        proof: ProofRule::Never("no-transport"),
    },
    Builtin {
        name: "asterisk-pjsip-auth",
        format: Format::Asterisk,
        kind: EventKind::AuthFailure,
        line: notice!(
            r"Request '[A-Z]+' from '.*' failed for '.* - (?:Failed to authenticate|No matching endpoint found after \d+ tries.*)\s*$"
        ),
        addr: Anchor::Once(r"failed for '(?:\[(?P<addr>[0-9A-Fa-f:.]+)\]|(?P<addr4>[0-9.]+)):\d+'"),
        user: Some(r"from '[^']*<sips?:(?P<user>[^@>;']{1,64})@"),
        proof: ProofRule::Never("no-transport"),
    },
    // chan_sip: Registration from '"100" <sip:100@x>' failed for '203.0.113.5:5060' - Wrong password
    Builtin {
        name: "asterisk-chan-sip-registration",
        format: Format::Asterisk,
        kind: EventKind::AuthFailure,
        line: notice!(
            r"Registration from '.*' failed for '.* - (?:Wrong password|No matching peer found|Username/auth name mismatch|Device does not match ACL|Not a local domain|Peer is not supposed to register)\s*$"
        ),
        addr: Anchor::Once(r"failed for '(?:\[(?P<addr>[0-9A-Fa-f:.]+)\]|(?P<addr4>[0-9.]+))(?::\d+)?'"),
        user: Some(r"Registration from '[^']*<sips?:(?P<user>[^@>;']{1,64})@"),
        proof: ProofRule::Never("no-transport"),
    },
    // chan_sip: Call from '' (203.0.113.5:5060) to extension '0090…' rejected because extension not found in context 'public'.
    Builtin {
        name: "asterisk-chan-sip-extension",
        format: Format::Asterisk,
        kind: EventKind::NoSuchExtension,
        line: notice!(
            r"Call from '.*' \(.*\) to extension '.*' rejected because extension not found in context '.*'\.?\s*$"
        ),
        addr: Anchor::Once(r"\((?:\[(?P<addr>[0-9A-Fa-f:.]+)\]|(?P<addr4>[0-9.]+)):\d+\) to extension '"),
        user: None,
        proof: ProofRule::Never("no-transport"),
    },
    // PJSIP: Call (UDP:203.0.113.5:5060) to extension '0090…' rejected because extension not found in context 'x'.
    Builtin {
        name: "asterisk-pjsip-extension",
        format: Format::Asterisk,
        kind: EventKind::NoSuchExtension,
        line: concat!(
            r"^[^'(]*?: Call \((?P<transport>[A-Za-z0-9]+):.*\) to extension '.*' rejected because extension not found",
            r" in context '.*'\.?\s*$"
        ),
        addr: Anchor::Once(
            r"Call \([A-Za-z0-9]+:(?:\[(?P<addr>[0-9A-Fa-f:.]+)\]|(?P<addr4>[0-9.]+)):\d+\) to extension '",
        ),
        user: None,
        proof: ProofRule::Transport,
    },
    // FreeSWITCH: SIP auth failure (REGISTER) on sofia profile 'internal' for [100@x] from ip 203.0.113.5
    Builtin {
        name: "freeswitch-auth",
        format: Format::FreeSwitch,
        kind: EventKind::AuthFailure,
        line: sofia!(
            r"SIP auth failure \([A-Z]+\) on sofia profile '[^']*' for \[(?P<user>[^@\]]{0,64}).*\] from ip (?P<addr>[0-9A-Fa-f:.]+)\s*$"
        ),
        addr: Anchor::Line,
        user: None,
        proof: ProofRule::Never("nonce-not-bound"),
    },
    // FreeSWITCH: Can't find user [100@x] from 203.0.113.5
    Builtin {
        name: "freeswitch-no-user",
        format: Format::FreeSwitch,
        kind: EventKind::UnknownAccount,
        line: sofia!(r"Can't find user \[(?P<user>[^@\]]{0,64}).*\] from (?P<addr>[0-9A-Fa-f:.]+)\s*$"),
        addr: Anchor::Line,
        user: None,
        proof: ProofRule::Never("nonce-not-bound"),
    },
    // Kamailio, the example cfg's lines (pattern version 2): source last, every field one
    // token (the cfg replaces spaces and control characters in user and user agent).
    Builtin {
        name: "kamailio-auth",
        format: Format::Kamailio,
        kind: EventKind::AuthFailure,
        line: kamailio!(r"auth-failure user=(?P<user>\S*) proto=(?P<transport>[a-z0-9]+) nonce=(?P<nonce>echoed|none)"),
        addr: Anchor::Line,
        user: None,
        proof: ProofRule::NonceOrTransport,
    },
    Builtin {
        name: "kamailio-registered",
        format: Format::Kamailio,
        kind: EventKind::Registered,
        line: kamailio!(r"registered user=(?P<user>\S*) proto=(?P<transport>[a-z0-9]+)"),
        addr: Anchor::Line,
        user: None,
        proof: ProofRule::Always(Proof::NonceEcho),
    },
    Builtin {
        name: "kamailio-scanner",
        format: Format::Kamailio,
        kind: EventKind::Scanner,
        line: kamailio!(r"scanner ua=\S* proto=(?P<transport>[a-z0-9]+)"),
        addr: Anchor::Line,
        user: None,
        proof: ProofRule::Transport,
    },
    Builtin {
        name: "kamailio-pike",
        format: Format::Kamailio,
        kind: EventKind::Flood,
        line: kamailio!(r"pike-blocked method=\S* proto=(?P<transport>[a-z0-9]+)"),
        addr: Anchor::Line,
        user: None,
        proof: ProofRule::Transport,
    },
    // The lines of the cfg before pattern version 2 (no proto=, no nonce=): recognised,
    // never proven.
    Builtin {
        name: "kamailio-legacy-auth",
        format: Format::Kamailio,
        kind: EventKind::AuthFailure,
        line: kamailio!(r"auth-failure user=(?P<user>\S*)"),
        addr: Anchor::Line,
        user: None,
        proof: ProofRule::Never("legacy-line"),
    },
    Builtin {
        name: "kamailio-legacy-registered",
        format: Format::Kamailio,
        kind: EventKind::Registered,
        line: kamailio!(r"registered user=(?P<user>\S*)"),
        addr: Anchor::Line,
        user: None,
        proof: ProofRule::Never("legacy-line"),
    },
    Builtin {
        name: "kamailio-legacy-scanner",
        format: Format::Kamailio,
        kind: EventKind::Scanner,
        line: kamailio!(r"scanner ua=\S*"),
        addr: Anchor::Line,
        user: None,
        proof: ProofRule::Never("legacy-line"),
    },
    Builtin {
        name: "kamailio-legacy-pike",
        format: Format::Kamailio,
        kind: EventKind::Flood,
        line: kamailio!(r"pike-blocked method=\S*"),
        addr: Anchor::Line,
        user: None,
        proof: ProofRule::Never("legacy-line"),
    },
];

struct Compiled {
    name: &'static str,
    format: Format,
    kind: EventKind,
    line: Regex,
    once: Option<Regex>,
    user: Option<Regex>,
    proof: ProofRule,
}

fn compiled() -> &'static [Compiled] {
    static ALL: OnceLock<Vec<Compiled>> = OnceLock::new();
    ALL.get_or_init(|| {
        BUILTINS
            .iter()
            .map(|b| {
                // The patterns are constants covered by tests.
                Compiled {
                    name: b.name,
                    format: b.format,
                    kind: b.kind,
                    line: Regex::new(b.line).expect("built-in line pattern"),
                    once: match b.addr {
                        Anchor::Line => None,
                        Anchor::Once(r) => Some(Regex::new(r).expect("built-in address pattern")),
                    },
                    user: b.user.map(|u| Regex::new(u).expect("built-in user pattern")),
                    proof: b.proof,
                }
            })
            .collect()
    })
}

/// The names of the built-in patterns of a format.
pub fn pattern_names(format: Format) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    if format == Format::Asterisk {
        names.extend(SECURITY_PATTERNS);
    }
    names.extend(BUILTINS.iter().filter(|b| b.format == format).map(|b| b.name));
    names
}

/// The names of the patterns of Asterisk's security events.
const SECURITY_PATTERNS: [&str; 4] = [
    "asterisk-security-auth",
    "asterisk-security-account",
    "asterisk-security-acl",
    "asterisk-security-success",
];

/// Reads the lines of one log of one format, in order, with the time each was seen.
#[derive(Debug)]
pub struct Reader {
    format: Format,
    nonces: Nonces,
}

impl Reader {
    /// A reader of a log in `format` that has seen nothing yet.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            nonces: Nonces::default(),
        }
    }

    /// The format read.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Reads one line seen at `now` with the built-in patterns of the format.
    pub fn read(&mut self, line: &str, now: Millis) -> Outcome {
        if line.len() > MAX_LINE {
            return Outcome::Unknown;
        }
        if self.format == Format::Asterisk {
            if let Some(outcome) = self.asterisk_security(line, now) {
                return outcome;
            }
        }
        builtin(line, self.format)
    }

    /// An Asterisk security event (res_security_log), or `None` when the line is none.
    fn asterisk_security(&mut self, line: &str, now: Millis) -> Option<Outcome> {
        let re = security_regexes();
        let head = re.head.captures(line)?;
        let event = head.name("event").map_or("", |m| m.as_str());
        let (kind, name) = match event {
            "InvalidPassword" | "ChallengeResponseFailed" => (Some(EventKind::AuthFailure), SECURITY_PATTERNS[0]),
            "InvalidAccountID" => (Some(EventKind::UnknownAccount), SECURITY_PATTERNS[1]),
            "FailedACL" => (Some(EventKind::AclRejected), SECURITY_PATTERNS[2]),
            "SuccessfulAuth" => (Some(EventKind::Registered), SECURITY_PATTERNS[3]),
            "ChallengeSent" => (None, "asterisk-security-challenge"),
            _ => return Some(Outcome::Unknown),
        };
        let service = head.name("service").map_or("", |m| m.as_str());
        let rest = &line[head.get(0).map_or(0, |m| m.end())..];
        let Some(body) = re.body.captures(rest) else {
            return Some(Outcome::Ambiguous(name));
        };
        let Some(source) = address(&body) else {
            return Some(Outcome::Ambiguous(name));
        };
        let transport = body.name("transport").map_or("", |m| m.as_str());
        let tail = body.name("tail").map_or("", |m| m.as_str());
        let field = |key: &str| {
            re.field
                .captures_iter(tail)
                .find(|c| c.name("key").is_some_and(|k| k.as_str() == key))
                .and_then(|c| c.name("value"))
                .map(|v| v.as_str())
        };
        let Some(kind) = kind else {
            // ChallengeSent: remember where the nonce went.
            if let Some(nonce) = field("Challenge") {
                self.nonces.sent(nonce, source, now);
            }
            return Some(Outcome::Unknown);
        };
        let echoed = |nonce: Option<&str>| match nonce {
            Some(n) if self.nonces.was_sent(n, source, now) => Proof::NonceEcho,
            _ => Proof::None {
                reason: "nonce-not-sent",
            },
        };
        let proof = if handshake_transport(transport) {
            Proof::Handshake
        } else {
            match event {
                "InvalidPassword" => echoed(field("ReceivedChallenge")),
                "ChallengeResponseFailed" if service == "PJSIP" => echoed(field("Challenge")),
                "ChallengeResponseFailed" => Proof::None { reason: "no-nonce" },
                "SuccessfulAuth" if field("UsingPassword") == Some("1") => Proof::NonceEcho,
                "SuccessfulAuth" => Proof::None { reason: "no-password" },
                _ => Proof::None { reason: "udp" },
            }
        };
        // Attacker text up to where the structure resumes: evidence only.
        let account = &rest[..body.get(0).map_or(0, |m| m.start())];
        let username = Some(account.chars().take(64).collect::<String>()).filter(|u| !u.is_empty());
        Some(Outcome::Event(LogEvent {
            kind,
            source,
            username,
            pattern: name,
            proof,
        }))
    }
}

/// The regexes of Asterisk's security events.
struct SecurityRegexes {
    /// From the start of the line to the opening quote of `AccountID`: the fields no
    /// attacker chooses. Nothing before `SecurityEvent` holds a quote.
    head: Regex,
    /// From the end of `AccountID` to the end of the line: the address pair followed only
    /// by the event's own fields.
    body: Regex,
    /// One `,Key="value"` of the tail.
    field: Regex,
}

fn security_regexes() -> &'static SecurityRegexes {
    static RE: OnceLock<SecurityRegexes> = OnceLock::new();
    RE.get_or_init(|| SecurityRegexes {
        head: Regex::new(concat!(
            r#"^[^"]*?: SecurityEvent="(?P<event>[A-Za-z]+)",EventTV="[^"]*",Severity="[A-Za-z]+","#,
            r#"Service="(?P<service>[A-Za-z0-9_]+)",EventVersion="\d+",AccountID=""#
        ))
        .expect("constant"),
        body: Regex::new(concat!(
            r#"",SessionID=".*?",LocalAddress="IPV[46]/[A-Za-z]+/\[?[0-9A-Fa-f:.]+\]?/\d+","#,
            r#"RemoteAddress="IPV[46]/(?P<transport>[A-Za-z]+)/\[?(?P<addr>[0-9A-Fa-f:.]+)\]?/\d+""#,
            r#"(?P<tail>(?:,(?:Challenge|ReceivedChallenge|ReceivedHash|Response|ExpectedResponse|ACLName|"#,
            r#"RequestType|RequestParams|AuthMethod|ExpectedAddress|UsingPassword|AttemptedTransport|Module|"#,
            r#"SessionTV)="(?:[^"\\]|\\.)*")*)\s*$"#
        ))
        .expect("constant"),
        field: Regex::new(r#",(?P<key>[A-Za-z]+)="(?P<value>(?:[^"\\]|\\.)*)""#).expect("constant"),
    })
}

/// Digest nonces a log says were sent, and to which address: a bounded first-in,
/// first-out memory.
#[derive(Debug, Default)]
struct Nonces {
    /// Nonce → (address it was sent to, when).
    sent: HashMap<String, (IpAddr, Millis)>,
    /// Nonces in the order they were sent (an entry whose time differs from `sent`'s was
    /// sent again later and is skipped).
    order: VecDeque<(Millis, String)>,
}

impl Nonces {
    /// `nonce` was sent to `to` at `now`.
    fn sent(&mut self, nonce: &str, to: IpAddr, now: Millis) {
        if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
            return;
        }
        while let Some((at, _)) = self.order.front() {
            if self.order.len() < MAX_NONCES && now.saturating_sub(*at) <= NONCE_MEMORY_MS {
                break;
            }
            if let Some((at, old)) = self.order.pop_front() {
                if self.sent.get(&old).is_some_and(|(_, t)| *t == at) {
                    self.sent.remove(&old);
                }
            }
        }
        self.sent.insert(nonce.to_string(), (canonical(to), now));
        self.order.push_back((now, nonce.to_string()));
    }

    /// Whether `nonce` was sent to `from` within [`NONCE_MEMORY_MS`] before `now`.
    fn was_sent(&self, nonce: &str, from: IpAddr, now: Millis) -> bool {
        self.sent
            .get(nonce)
            .is_some_and(|(to, at)| *to == canonical(from) && now.saturating_sub(*at) <= NONCE_MEMORY_MS)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Reads one line with the regex built-in patterns of `format`.
fn builtin(line: &str, format: Format) -> Outcome {
    for c in compiled().iter().filter(|c| c.format == format) {
        let Some(m) = c.line.captures(line) else {
            continue;
        };
        let source = match &c.once {
            None => address(&m),
            Some(once) => {
                let mut found = once.captures_iter(line);
                match (found.next(), found.next()) {
                    (Some(a), None) => address(&a),
                    _ => None,
                }
            }
        };
        let Some(source) = source else {
            return Outcome::Ambiguous(c.name);
        };
        let username = m
            .name("user")
            .map(|u| u.as_str().to_string())
            .or_else(|| {
                c.user
                    .as_ref()
                    .and_then(|u| u.captures(line))
                    .and_then(|u| u.name("user"))
                    .map(|u| u.as_str().to_string())
            })
            .map(|u| u.chars().take(64).collect::<String>())
            .filter(|u| !u.is_empty());
        let transport = m.name("transport").map_or("", |t| t.as_str());
        let by_transport = || {
            if handshake_transport(transport) {
                Proof::Handshake
            } else {
                Proof::None { reason: "udp" }
            }
        };
        let proof = match c.proof {
            ProofRule::Never(reason) => Proof::None { reason },
            ProofRule::Transport => by_transport(),
            ProofRule::NonceOrTransport if m.name("nonce").is_some_and(|n| n.as_str() == "echoed") => Proof::NonceEcho,
            ProofRule::NonceOrTransport => by_transport(),
            ProofRule::Always(p) => p,
        };
        return Outcome::Event(LogEvent {
            kind: c.kind,
            source,
            username,
            pattern: c.name,
            proof,
        });
    }
    Outcome::Unknown
}

/// Reads one line with the built-in patterns of `format`, remembering nothing (a
/// [`Reader`] also judges a line by the lines before it).
pub fn parse_line(line: &str, format: Format) -> Outcome {
    Reader::new(format).read(line, 0)
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
    let mut end = line.len().min(64);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let head = &line[..end];
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
/// `user`), the kind of event it means, what a match proves about its source (the
/// operator's statement about the line: fraudmesh cannot check it), and the format of the
/// logs it reads (every log when `None`).
#[derive(Debug, Clone)]
pub struct CustomPattern {
    /// Its name in output and metrics.
    pub name: String,
    /// What a match means.
    pub kind: EventKind,
    /// What a match proves.
    pub proof: Proof,
    /// The format of the logs it reads; `None`: every log.
    pub format: Option<Format>,
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
    pub fn new(
        name: &str,
        kind: EventKind,
        regex: &str,
        proof: Proof,
        format: Option<Format>,
    ) -> Result<Self, PatternError> {
        let regex = Regex::new(regex).map_err(|e| PatternError::Regex(e.to_string()))?;
        if !regex.capture_names().any(|n| n == Some("addr")) {
            return Err(PatternError::NoAddr);
        }
        Ok(Self {
            name: name.to_string(),
            kind,
            proof,
            format,
            regex,
        })
    }

    /// Whether it reads logs of `format`.
    pub fn applies_to(&self, format: Format) -> bool {
        self.format.is_none_or(|f| f == format)
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
            proof: self.proof,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(line: &str, format: Format) -> LogEvent {
        match parse_line(line, format) {
            Outcome::Event(e) => e,
            other => panic!("{line}\n→ {other:?}"),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const UDP: Proof = Proof::None { reason: "udp" };

    /// An Asterisk security event line: `fields` between `SecurityEvent` and `AccountID`
    /// are filled in; `account`, the transport, the address and the tail as given.
    fn security(event: &str, account: &str, transport: &str, remote: &str, tail: &str) -> String {
        let v = if remote.contains(':') { "IPV6" } else { "IPV4" };
        format!(
            r#"[2026-11-24 10:23:45] SECURITY[2345] res_security_log.c: SecurityEvent="{event}",EventTV="2026-11-24T10:23:45.123+0000",Severity="Error",Service="PJSIP",EventVersion="1",AccountID="{account}",SessionID="b7e1c",LocalAddress="{v}/{transport}/192.0.2.1/5060",RemoteAddress="{v}/{transport}/{remote}/5060"{tail}"#
        )
    }

    /// The event `r` reads in `line` at `now`.
    fn read(r: &mut Reader, line: &str, now: Millis) -> LogEvent {
        match r.read(line, now) {
            Outcome::Event(e) => e,
            other => panic!("{line}\n→ {other:?}"),
        }
    }

    #[test]
    fn asterisk_security_events_and_their_proof() {
        let r = &mut Reader::new(Format::Asterisk);
        // Over TCP or TLS the handshake proves the source, whatever the event.
        let e = read(r, &security("InvalidAccountID", "admin", "TCP", "203.0.113.5", ""), 0);
        assert_eq!(
            (e.kind, e.source, e.username.as_deref(), e.proof),
            (
                EventKind::UnknownAccount,
                ip("203.0.113.5"),
                Some("admin"),
                Proof::Handshake
            )
        );
        let acl = security("FailedACL", "1001", "TLS", "2001:db8:bad::7", r#",ACLName="office""#);
        let e = read(r, &acl, 0);
        assert_eq!(
            (e.kind, e.source, e.proof),
            (EventKind::AclRejected, ip("2001:db8:bad::7"), Proof::Handshake)
        );
        // Over UDP an unknown account or an ACL failure needs no challenge: unproven.
        let e = read(r, &security("InvalidAccountID", "admin", "UDP", "203.0.113.5", ""), 0);
        assert_eq!(e.proof, UDP);
        // A failed answer over UDP is proven only with a nonce sent to that address.
        let failed = |nonce: &str| {
            security(
                "ChallengeResponseFailed",
                "1001",
                "UDP",
                "203.0.113.6",
                &format!(r#",Challenge="{nonce}",Response="9f8e",ExpectedResponse="""#),
            )
        };
        let not_sent = Proof::None {
            reason: "nonce-not-sent",
        };
        assert_eq!(read(r, &failed("1700000000/aa"), 1_000).proof, not_sent);
        let sent = security(
            "ChallengeSent",
            "1001",
            "UDP",
            "203.0.113.6",
            r#",Challenge="1700000000/aa""#,
        );
        assert_eq!(r.read(&sent, 2_000), Outcome::Unknown);
        assert_eq!(read(r, &failed("1700000000/aa"), 3_000).proof, Proof::NonceEcho);
        // Another address answering with that nonce proves nothing (a nonce fetched from
        // one address, replayed from a forged one).
        let replayed = failed("1700000000/aa").replace("IPV4/UDP/203.0.113.6", "IPV4/UDP/198.51.100.1");
        assert_eq!(read(r, &replayed, 3_000).proof, not_sent);
        // Remembered for NONCE_MEMORY_MS only.
        assert_eq!(
            read(r, &failed("1700000000/aa"), 2_000 + NONCE_MEMORY_MS + 1).proof,
            not_sent
        );
        // chan_sip's InvalidPassword: the nonce the client answered with is ReceivedChallenge.
        let chan_sip =
            |event: &str, tail: &str| security(event, "2002", "UDP", "198.51.100.77", tail).replace("PJSIP", "SIP");
        let _ = r.read(&chan_sip("ChallengeSent", r#",Challenge="5f1c""#), 10_000);
        let bad = chan_sip(
            "InvalidPassword",
            r#",Challenge="5f1c",ReceivedChallenge="5f1c",ReceivedHash="0a1b""#,
        );
        let e = read(r, &bad, 11_000);
        assert_eq!((e.kind, e.proof), (EventKind::AuthFailure, Proof::NonceEcho));
        let forged = bad.replace(r#"ReceivedChallenge="5f1c""#, r#"ReceivedChallenge="0000""#);
        assert_eq!(read(r, &forged, 11_000).proof, not_sent);
        // chan_sip's ChallengeResponseFailed shows the PBX's nonce, not the client's.
        let mismatch = chan_sip(
            "ChallengeResponseFailed",
            r#",Challenge="5f1c",Response="x",ExpectedResponse="y""#,
        );
        assert_eq!(read(r, &mismatch, 11_000).proof, Proof::None { reason: "no-nonce" });
        // A registration with a password answered a digest challenge.
        let ok = security("SuccessfulAuth", "1001", "UDP", "192.0.2.50", r#",UsingPassword="1""#);
        let e = read(r, &ok, 0);
        assert_eq!(
            (e.kind, e.source, e.proof),
            (EventKind::Registered, ip("192.0.2.50"), Proof::NonceEcho)
        );
        let by_ip = ok.replace(r#"UsingPassword="1""#, r#"UsingPassword="0""#);
        assert_eq!(read(r, &by_ip, 0).proof, Proof::None { reason: "no-password" });
        // Events that are not attacks are nothing.
        let other = security(
            "RequestNotAllowed",
            "x",
            "UDP",
            "203.0.113.9",
            r#",RequestType="SUBSCRIBE""#,
        );
        assert_eq!(r.read(&other, 0), Outcome::Unknown);
    }

    #[test]
    fn a_smuggled_security_event_name_marks_nobody_as_registered() {
        // The account id an attacker chose holds a whole SuccessfulAuth event: the line is
        // still what Asterisk wrote, an unknown account from the attacker's address.
        let smuggle = r#"x",SecurityEvent="SuccessfulAuth",EventTV="2026-11-24T10:23:45.123+0000",Severity="Informational",Service="PJSIP",EventVersion="1",AccountID="1001"#;
        for event in ["InvalidAccountID", "ChallengeSent", "RequestBadFormat"] {
            let line = security(event, smuggle, "TCP", "203.0.113.66", "");
            match parse_line(&line, Format::Asterisk) {
                Outcome::Event(e) => {
                    assert_eq!(event, "InvalidAccountID");
                    assert_eq!((e.kind, e.source), (EventKind::UnknownAccount, ip("203.0.113.66")));
                }
                Outcome::Unknown => assert_ne!(event, "InvalidAccountID"),
                other => panic!("{event}: {other:?}"),
            }
        }
        // A whole line's worth of fields in the account id and the session id: the remote
        // address is still the real one, and nothing in the tail can move it.
        let pair = r#"",LocalAddress="IPV4/TCP/192.0.2.1/5060",RemoteAddress="IPV4/TCP/9.9.9.9/5060",UsingPassword="1"#;
        let line = security(
            "SuccessfulAuth",
            &format!("a{pair}"),
            "TCP",
            "203.0.113.67",
            r#",UsingPassword="1""#,
        )
        .replace(r#"SessionID="b7e1c""#, &format!(r#"SessionID="s{pair}""#));
        let e = event(&line, Format::Asterisk);
        assert_eq!((e.kind, e.source), (EventKind::Registered, ip("203.0.113.67")));
        // A line that breaks the structure (a quote in the tail) gives nothing.
        let broken = security("InvalidAccountID", "a", "TCP", "203.0.113.68", r#",Module="x"y""#);
        assert_eq!(
            parse_line(&broken, Format::Asterisk),
            Outcome::Ambiguous("asterisk-security-account")
        );
        // The event name must be the line's first quoted value.
        let late = security("SuccessfulAuth", "a", "TCP", "203.0.113.69", "")
            .replace("res_security_log.c: ", "chan_sip.c: from \"a\": ");
        assert_eq!(parse_line(&late, Format::Asterisk), Outcome::Unknown);
    }

    #[test]
    fn asterisk_pjsip_and_chan_sip_notices_are_unproven_unless_the_transport_says() {
        let e = event("[2026-11-24 10:24:01] NOTICE[2399] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '\"100\" <sip:100@192.0.2.1>' failed for '203.0.113.5:5060' (callid: 1a2b3c) - No matching endpoint found", Format::Asterisk);
        assert_eq!(
            (e.kind, e.source, e.username.as_deref(), e.proof),
            (
                EventKind::UnknownAccount,
                ip("203.0.113.5"),
                Some("100"),
                Proof::None { reason: "no-transport" }
            )
        );
        let e = event("[2026-11-24 10:24:02] NOTICE[2399] res_pjsip/pjsip_distributor.c: Request 'INVITE' from '<sip:9001@192.0.2.1>' failed for '[2001:db8::66]:5070' (callid: zz) - Failed to authenticate", Format::Asterisk);
        assert_eq!((e.kind, e.source), (EventKind::AuthFailure, ip("2001:db8::66")));
        let e = event("[2026-11-24 10:24:03] NOTICE[2400] chan_sip.c: Registration from '\"200\" <sip:200@192.0.2.1>' failed for '198.51.100.20:5060' - Wrong password", Format::Asterisk);
        assert_eq!(
            (e.kind, e.source, e.username.as_deref()),
            (EventKind::AuthFailure, ip("198.51.100.20"), Some("200"))
        );
        let e = event("[2026-11-24 10:24:04] NOTICE[2401][C-00000003] chan_sip.c: Call from '' (198.51.100.21:5060) to extension '0090012345' rejected because extension not found in context 'public'.", Format::Asterisk);
        assert_eq!((e.kind, e.source), (EventKind::NoSuchExtension, ip("198.51.100.21")));
        let e = event("[2026-11-24 10:24:05] NOTICE[2402] res_pjsip_session.c: Call (UDP:198.51.100.22:5060) to extension '00972599' rejected because extension not found in context 'from-external'.", Format::Asterisk);
        assert_eq!(
            (e.kind, e.source, e.proof),
            (EventKind::NoSuchExtension, ip("198.51.100.22"), UDP)
        );
        let e = event("[2026-11-24 10:24:05] NOTICE[2402] res_pjsip_session.c: Call (TCP:198.51.100.22:40312) to extension '00972599' rejected because extension not found in context 'from-external'.", Format::Asterisk);
        assert_eq!(e.proof, Proof::Handshake);
    }

    #[test]
    fn freeswitch_and_kamailio_lines() {
        let e = event("2026-11-24 10:25:01.123456 [WARNING] sofia_reg.c:1871 SIP auth failure (REGISTER) on sofia profile 'internal' for [1001@192.0.2.1] from ip 203.0.113.8", Format::FreeSwitch);
        assert_eq!(
            (e.kind, e.source, e.username.as_deref(), e.proof),
            (
                EventKind::AuthFailure,
                ip("203.0.113.8"),
                Some("1001"),
                Proof::None {
                    reason: "nonce-not-bound"
                }
            )
        );
        let e = event(
            "2026-11-24 10:25:02.000001 [WARNING] sofia_reg.c:3212 Can't find user [9999@192.0.2.1] from 203.0.113.9",
            Format::FreeSwitch,
        );
        assert_eq!((e.kind, e.source), (EventKind::UnknownAccount, ip("203.0.113.9")));
        let k = |line: &str| {
            event(
                &format!("Nov 24 10:26:01 pbx /usr/sbin/kamailio[812]: WARNING: <script>: fraudmesh: {line}"),
                Format::Kamailio,
            )
        };
        let e = k("auth-failure user=1001 proto=udp nonce=echoed src=203.0.113.10");
        assert_eq!(
            (e.kind, e.source, e.username.as_deref(), e.proof),
            (
                EventKind::AuthFailure,
                ip("203.0.113.10"),
                Some("1001"),
                Proof::NonceEcho
            )
        );
        assert_eq!(
            k("auth-failure user=1001 proto=tls nonce=none src=203.0.113.10").proof,
            Proof::Handshake
        );
        assert_eq!(
            k("auth-failure user=1001 proto=udp nonce=none src=203.0.113.10").proof,
            UDP
        );
        assert_eq!(
            k("auth-failure user= proto=udp nonce=echoed src=203.0.113.10").username,
            None
        );
        let e = k("registered user=1001 proto=udp src=2001:db8::10");
        assert_eq!(
            (e.kind, e.source, e.proof),
            (EventKind::Registered, ip("2001:db8::10"), Proof::NonceEcho)
        );
        let e = k("scanner ua=friendly-scanner proto=udp src=203.0.113.11");
        assert_eq!((e.kind, e.proof), (EventKind::Scanner, UDP));
        assert_eq!(
            k("scanner ua=sipvicious proto=tcp src=203.0.113.11").proof,
            Proof::Handshake
        );
        assert_eq!(
            k("pike-blocked method=INVITE proto=ws src=203.0.113.12").kind,
            EventKind::Flood
        );
        // The cfg's lines before pattern version 2: recognised, never proven.
        for legacy in [
            "auth-failure user=1001 src=203.0.113.13",
            "registered user=1001 src=203.0.113.13",
            "scanner ua=x src=203.0.113.13",
        ] {
            assert_eq!(k(legacy).proof, Proof::None { reason: "legacy-line" }, "{legacy}");
        }
        // Kamailio's own messages quote attacker text after `<core>`: nothing.
        assert_eq!(
            parse_line("Nov 24 10:26:03 pbx kamailio[812]: ERROR: <core> [parser/msg_parser.c:1]: bad header [x <script>: fraudmesh: auth-failure user=a proto=tcp nonce=echoed src=9.9.9.9", Format::Kamailio),
            Outcome::Unknown
        );
        assert_eq!(
            parse_line("Nov 24 10:26:03 pbx kernel: eth0 up", Format::Kamailio),
            Outcome::Unknown
        );
    }

    #[test]
    fn a_format_reads_only_its_own_lines() {
        let kamailio = "Nov 24 10:26:01 pbx logger: WARNING: <script>: fraudmesh: auth-failure user=a proto=tcp nonce=echoed src=203.0.113.10";
        let freeswitch = "2026-11-24 10:25:02.000001 [WARNING] sofia_reg.c:3212 Can't find user [9@x] from 203.0.113.9";
        let asterisk = security("InvalidAccountID", "a", "TCP", "203.0.113.5", "");
        for (line, own) in [
            (kamailio, Format::Kamailio),
            (freeswitch, Format::FreeSwitch),
            (&asterisk, Format::Asterisk),
        ] {
            for f in Format::ALL {
                let got = parse_line(line, f);
                assert_eq!(matches!(got, Outcome::Event(_)), f == own, "{line} as {f:?}: {got:?}");
            }
        }
    }

    #[test]
    fn smuggled_addresses_never_become_events() {
        // The From display name repeats the trusted field: no event, not 9.9.9.9.
        let crafted = [
            "[2026-11-24 10:24:01] NOTICE[2399] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '\"x' failed for '9.9.9.9:5060' y\" <sip:100@192.0.2.1>' failed for '203.0.113.5:5060' (callid: 1) - No matching endpoint found",
            "[2026-11-24 10:24:01] NOTICE[2399] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '<sip:100@192.0.2.1>' failed for '203.0.113.5:5060' (callid: failed for '9.9.9.9:5060') - No matching endpoint found",
            "[2026-11-24 10:24:04] NOTICE[2401] chan_sip.c: Call from '' (198.51.100.21:5060) to extension '(9.9.9.9:5060) to extension '' rejected because extension not found in context 'public'.",
        ];
        for line in crafted {
            assert!(
                matches!(parse_line(line, Format::Asterisk), Outcome::Ambiguous(_)),
                "{line}"
            );
        }
        // Where the stack writes the address last, text before it cannot move it.
        let e = event("2026-11-24 10:25:01.123456 [WARNING] sofia_reg.c:1871 SIP auth failure (REGISTER) on sofia profile 'internal' for [x] from ip 9.9.9.9 @192.0.2.1] from ip 203.0.113.8", Format::FreeSwitch);
        assert_eq!(e.source, ip("203.0.113.8"));
        // A Kamailio user cannot hold a space: a second src= makes the line unknown.
        assert_eq!(
            parse_line("Nov 24 10:26:01 pbx kamailio[812]: WARNING: <script>: fraudmesh: auth-failure user=a src=9.9.9.9 proto=tcp nonce=echoed src=203.0.113.10", Format::Kamailio),
            Outcome::Unknown
        );
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
        // A character across the 64th byte is not split.
        assert_eq!(timestamp(&format!("{}é", "x".repeat(63))), None);
    }

    #[test]
    fn custom_patterns_need_an_address_group_and_carry_their_proof() {
        let none = Proof::None { reason: "custom" };
        assert_eq!(
            CustomPattern::new("x", EventKind::AuthFailure, "failed from (\\S+)", none, None).unwrap_err(),
            PatternError::NoAddr
        );
        assert!(matches!(
            CustomPattern::new("x", EventKind::AuthFailure, "(", none, None).unwrap_err(),
            PatternError::Regex(_)
        ));
        let p = CustomPattern::new(
            "gw",
            EventKind::AuthFailure,
            r"^auth failed user=(?P<user>\S+) ip=(?P<addr>\S+)$",
            Proof::Handshake,
            Some(Format::Custom),
        )
        .unwrap();
        let e = p.parse_line("auth failed user=bob ip=203.0.113.77").unwrap();
        assert_eq!(
            (e.source, e.username.as_deref(), e.proof),
            (ip("203.0.113.77"), Some("bob"), Proof::Handshake)
        );
        assert_eq!(p.parse_line("auth failed user=bob ip=not-an-ip"), None);
        assert!(p.applies_to(Format::Custom) && !p.applies_to(Format::Asterisk));
    }

    #[test]
    fn every_builtin_pattern_compiles_and_is_named_once() {
        let mut names: Vec<&str> = Format::ALL.into_iter().flat_map(pattern_names).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
        assert_eq!(compiled().len(), BUILTINS.len());
        let _ = security_regexes();
        assert_eq!(
            pattern_names(Format::FreeSwitch),
            vec!["freeswitch-auth", "freeswitch-no-user"]
        );
        assert!(pattern_names(Format::Custom).is_empty());
    }

    proptest! {
        #[test]
        fn random_lines_never_panic(line in ".{0,300}") {
            for f in Format::ALL {
                let _ = parse_line(&line, f);
            }
            let _ = timestamp(&line);
        }

        #[test]
        fn random_bytes_in_known_lines_never_panic(junk in ".{0,80}", at in 0usize..400) {
            let bases = [
                "[2026-11-24 10:24:01] NOTICE[2399] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '<sip:100@192.0.2.1>' failed for '203.0.113.5:5060' (callid: 1) - No matching endpoint found".to_string(),
                security("InvalidPassword", "1001", "UDP", "203.0.113.5", r#",Challenge="5f1c",ReceivedChallenge="5f1c",ReceivedHash="0a1b""#),
            ];
            for base in &bases {
                let mut at = at.min(base.len());
                while !base.is_char_boundary(at) { at -= 1; }
                let line = format!("{}{}{}", &base[..at], junk, &base[at..]);
                let _ = Reader::new(Format::Asterisk).read(&line, 0);
            }
        }

        /// Whatever an attacker puts in the account id and the session id, a security
        /// event names the real remote address or nothing.
        #[test]
        fn attacker_fields_never_move_the_remote_address(
            account in r#"[ -~]{0,60}"#,
            session in r#"[ -~]{0,60}"#,
            fake in 0u8..=255,
        ) {
            let pair = format!(r#"",LocalAddress="IPV4/TCP/192.0.2.1/5060",RemoteAddress="IPV4/TCP/10.0.0.{fake}/5060"#);
            for (a, s) in [(account.clone(), session.clone()), (format!("{account}{pair}"), session.clone()), (account.clone(), format!("{session}{pair}"))] {
                let line = security("InvalidAccountID", &a, "TCP", "203.0.113.99", "")
                    .replace(r#"SessionID="b7e1c""#, &format!(r#"SessionID="{s}""#));
                match parse_line(&line, Format::Asterisk) {
                    Outcome::Event(e) => prop_assert_eq!(e.source, ip("203.0.113.99")),
                    Outcome::Ambiguous(_) | Outcome::Unknown => {}
                }
            }
        }
    }
}
