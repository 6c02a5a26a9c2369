//! The PBX audit's judging rules, pure: no I/O, no clock. The node reads the files and
//! probes the ports (`fraudmesh-node`'s `audit` module); these rules judge what it found. Given a secret and the names it
//! belongs to (an account, a username, a mailbox) or a binding and its ACL, they say what
//! is wrong as [`Issue`]s. A secret goes in and never comes out: no issue carries it, and
//! every message is a fixed text about the kind of weakness.

use std::net::IpAddr;

/// Shortest acceptable password.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Shortest acceptable voicemail PIN.
pub const MIN_PIN_LEN: usize = 6;
/// zxcvbn score (0–4) below which a password counts as guessable: 3 is "safely
/// unguessable: moderate protection from offline slow-hash scenario".
pub const MIN_ZXCVBN_SCORE: u8 = 3;
/// Length from which a password that zxcvbn rates 4 is long enough that missing
/// character classes matter little (random hex, passphrases): reported as low.
pub const LONG_PASSWORD_LEN: usize = 16;

/// Secrets shipped as defaults by PBX distributions and tools, compared without case.
/// Attackers try exactly these first.
const KNOWN_DEFAULTS: &[&str] = &[
    "ClueCon",      // FreeSWITCH event socket
    "amp111",       // FreePBX/AMP manager.conf
    "amp109",       // FreePBX/AMP database and ARI
    "fop555",       // Flash Operator Panel
    "passw0rd",     // Elastix
    "eLaStIx.2oo7", // Elastix root/admin
    "password",
    "secret",
    "admin",
    "changeme",
    "default",
    "asterisk",
    "freeswitch",
    "welcome",
];

/// How severe a finding is. Ordered: `High` is greatest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing; not an open door.
    Low,
    /// Weakens the box; fix soon.
    Medium,
    /// An open door attackers look for: fix before exposing the box (non-zero exit).
    High,
}

impl Severity {
    /// `high`, `medium` or `low`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }

    /// Every severity, most severe first.
    pub const ALL: [Severity; 3] = [Self::High, Self::Medium, Self::Low];
}

/// One thing wrong, with a stable rule id, a severity and fixed texts (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issue {
    /// The secret is empty: anyone can use the account.
    Empty,
    /// A well-known vendor or distribution default.
    KnownDefault,
    /// Trivial: repeated characters, a short repeated pattern, a run of sequential digits.
    Trivial,
    /// Equal to (or contains only) the account's own name, username or mailbox number.
    SameAsName,
    /// A password shorter than [`MIN_PASSWORD_LEN`].
    ShortPassword,
    /// zxcvbn rates it below [`MIN_ZXCVBN_SCORE`]; the warning is zxcvbn's fixed text.
    Guessable {
        /// zxcvbn's score, 0–4.
        score: u8,
        /// zxcvbn's warning, if any (a fixed sentence such as "This is a very common password").
        warning: Option<String>,
    },
    /// Lacks some of: digits, letters, upper case, lower case.
    MissingClasses {
        /// What is missing, e.g. `["digits", "upper case letters"]`.
        missing: Vec<&'static str>,
        /// Long and rated 4 by zxcvbn: reported as low.
        long: bool,
    },
    /// A voicemail PIN shorter than [`MIN_PIN_LEN`] digits.
    ShortPin,
    /// A management interface listening on every address with no ACL.
    OpenManagement {
        /// What it is: `AMI`, `Asterisk HTTP/ARI`, `FreeSWITCH event socket`.
        service: &'static str,
    },
    /// An HTTP interface on a non-loopback address without TLS.
    HttpWithoutTls,
    /// A port that accepted a TCP connection from this node (`--probe`).
    OpenPort {
        /// `HOST:PORT`.
        target: String,
        /// What usually listens there.
        service: String,
        /// A management interface (not SIP): medium, else low.
        management: bool,
    },
}

impl Issue {
    /// The stable rule id.
    pub fn rule(&self) -> &'static str {
        match self {
            Self::Empty => "empty-secret",
            Self::KnownDefault => "default-secret",
            Self::Trivial => "trivial-secret",
            Self::SameAsName => "secret-equals-name",
            Self::ShortPassword => "short-password",
            Self::Guessable { .. } => "guessable-password",
            Self::MissingClasses { .. } => "simple-password",
            Self::ShortPin => "short-pin",
            Self::OpenManagement { .. } => "open-management",
            Self::HttpWithoutTls => "http-without-tls",
            Self::OpenPort { .. } => "open-port",
        }
    }

    /// Its severity.
    pub fn severity(&self) -> Severity {
        match self {
            Self::Empty
            | Self::KnownDefault
            | Self::Trivial
            | Self::SameAsName
            | Self::ShortPassword
            | Self::Guessable { .. }
            | Self::OpenManagement { .. } => Severity::High,
            Self::MissingClasses { long: true, .. } | Self::OpenPort { management: false, .. } => Severity::Low,
            Self::OpenPort { management: true, .. } => Severity::Medium,
            Self::MissingClasses { long: false, .. } | Self::ShortPin | Self::HttpWithoutTls => Severity::Medium,
        }
    }

    /// One line saying what is wrong (no secret in it).
    pub fn message(&self, what: &str) -> String {
        match self {
            Self::Empty => format!("the {what} is empty"),
            Self::KnownDefault => format!("the {what} is a well-known default that attackers try first"),
            Self::Trivial => format!("the {what} is trivial (repeated or sequential characters)"),
            Self::SameAsName => format!("the {what} is the same as the account's name, username or mailbox"),
            Self::ShortPassword => format!("the {what} is shorter than {MIN_PASSWORD_LEN} characters"),
            Self::Guessable { score, warning } => match warning {
                Some(w) => format!("the {what} is easy to guess (strength {score}/4: {w})"),
                None => format!("the {what} is easy to guess (strength {score}/4)"),
            },
            Self::MissingClasses { missing, .. } => format!("the {what} has no {}", missing.join(", no ")),
            Self::ShortPin => format!("the {what} is shorter than {MIN_PIN_LEN} digits"),
            Self::OpenManagement { service } => {
                format!("{service} listens on all addresses with no ACL: reachable from anywhere the host is")
            }
            Self::HttpWithoutTls => {
                "the HTTP interface listens beyond loopback without TLS: logins cross the network in clear text".into()
            }
            Self::OpenPort { target, service, .. } => {
                format!("{target} ({service}) accepts TCP connections from this node")
            }
        }
    }

    /// One line saying how to fix it; `pin` when the secret is a voicemail PIN.
    pub fn fix(&self, pin: bool) -> String {
        match self {
            Self::Empty | Self::KnownDefault | Self::Trivial | Self::SameAsName | Self::ShortPin if pin => {
                format!("use a voicemail PIN of at least {MIN_PIN_LEN} random digits, not the mailbox number")
            }
            Self::Empty
            | Self::KnownDefault
            | Self::Trivial
            | Self::SameAsName
            | Self::ShortPassword
            | Self::Guessable { .. } => {
                "set a random secret of 16+ characters (e.g. `openssl rand -base64 18`) and update the device".into()
            }
            Self::MissingClasses { .. } => "use a random secret mixing upper and lower case letters and digits".into(),
            Self::ShortPin => {
                format!("use a voicemail PIN of at least {MIN_PIN_LEN} random digits, not the mailbox number")
            }
            Self::OpenManagement { service } => match *service {
                "AMI" => {
                    "bind AMI to 127.0.0.1 (bindaddr) or give every user deny=0.0.0.0/0.0.0.0 and a narrow permit="
                        .into()
                }
                "FreeSWITCH event socket" => {
                    "set listen-ip to 127.0.0.1 or add apply-inbound-acl (e.g. loopback.auto)".into()
                }
                _ => "bind it to 127.0.0.1 (or a management network) and firewall the port from the WAN".into(),
            },
            Self::HttpWithoutTls => "enable TLS (tlsenable=yes) or bind the plain HTTP server to 127.0.0.1".into(),
            Self::OpenPort { management: true, .. } => {
                "firewall this port from the internet, or bind the service to 127.0.0.1 if only local tools use it"
                    .into()
            }
            Self::OpenPort { management: false, .. } => {
                "expected on a PBX: allow SIP only from your phones and trunks where you can".into()
            }
        }
    }
}

/// The names a secret belongs to: the account or section, its username, its mailbox.
/// A secret equal to any of them is trivial.
#[derive(Debug, Clone, Default)]
pub struct Names<'a>(pub Vec<&'a str>);

/// Judges an account password (SIP, AMI, event socket). Reports the most telling issue
/// first: an empty, default, trivial, name-equal or short password gets that one issue
/// only (one fix covers all); otherwise guessable and missing classes are both checked.
pub fn judge_password(secret: &str, names: &Names<'_>) -> Vec<Issue> {
    if let Some(issue) = judge_trivial(secret, names) {
        return vec![issue];
    }
    if secret.chars().count() < MIN_PASSWORD_LEN {
        return vec![Issue::ShortPassword];
    }
    let mut out = Vec::new();
    let inputs: Vec<&str> = names.0.iter().copied().filter(|n| !n.is_empty()).collect();
    let entropy = zxcvbn::zxcvbn(secret, &inputs);
    let score = u8::from(entropy.score());
    if score < MIN_ZXCVBN_SCORE {
        let warning = entropy.feedback().and_then(|f| f.warning()).map(|w| w.to_string());
        out.push(Issue::Guessable { score, warning });
    }
    let missing = missing_classes(secret);
    if !missing.is_empty() {
        let long = score == 4 && secret.chars().count() >= LONG_PASSWORD_LEN;
        out.push(Issue::MissingClasses { missing, long });
    }
    out
}

/// Judges a voicemail PIN of `mailbox`: empty, default or trivial, equal to the mailbox,
/// or shorter than [`MIN_PIN_LEN`].
pub fn judge_pin(pin: &str, mailbox: &str) -> Vec<Issue> {
    if let Some(issue) = judge_trivial(pin, &Names(vec![mailbox])) {
        return vec![issue];
    }
    if pin.chars().count() < MIN_PIN_LEN {
        return vec![Issue::ShortPin];
    }
    Vec::new()
}

/// Empty, known default, equal to a name, or trivial.
fn judge_trivial(secret: &str, names: &Names<'_>) -> Option<Issue> {
    if secret.is_empty() {
        return Some(Issue::Empty);
    }
    if KNOWN_DEFAULTS.iter().any(|d| d.eq_ignore_ascii_case(secret)) {
        return Some(Issue::KnownDefault);
    }
    let lower = secret.to_lowercase();
    if names
        .0
        .iter()
        .any(|n| !n.is_empty() && (n.to_lowercase() == lower || is_repetition_of(&lower, &n.to_lowercase())))
    {
        return Some(Issue::SameAsName);
    }
    if is_trivial(secret) {
        return Some(Issue::Trivial);
    }
    None
}

/// Repeated characters (`0000`, `aaaa`), a short unit repeated (`1212`, `123123`,
/// `abcabc`) or a run of consecutive digits up or down (`1234`, `987654`, `7890`).
pub fn is_trivial(secret: &str) -> bool {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 1 {
        return true;
    }
    // One character, or a unit of up to 3 characters, repeated at least twice.
    for unit in 1..=3.min(chars.len() / 2) {
        if chars.len() % unit == 0 && chars.chunks(unit).all(|c| c == &chars[..unit]) {
            return true;
        }
    }
    if chars.len() >= 3 && chars.iter().all(char::is_ascii_digit) {
        let digits: Vec<i32> = chars.iter().map(|c| (*c as i32) - ('0' as i32)).collect();
        let step = |d: i32| {
            digits
                .windows(2)
                .all(|w| (w[1] - w[0]).rem_euclid(10) == d.rem_euclid(10))
        };
        if step(1) || step(-1) {
            return true;
        }
    }
    false
}

/// `secret` is `name` repeated (`101101`) or `name` followed or preceded by trivial
/// padding is not counted: only exact repetition.
fn is_repetition_of(secret: &str, name: &str) -> bool {
    !name.is_empty()
        && secret.len() > name.len()
        && secret.len() % name.len() == 0
        && secret == name.repeat(secret.len() / name.len())
}

/// The character classes a password lacks.
pub fn missing_classes(secret: &str) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !secret.chars().any(|c| c.is_ascii_digit()) {
        missing.push("digits");
    }
    if !secret.chars().any(char::is_alphabetic) {
        missing.push("letters");
    } else {
        if !secret.chars().any(char::is_uppercase) {
            missing.push("upper case letters");
        }
        if !secret.chars().any(char::is_lowercase) {
            missing.push("lower case letters");
        }
    }
    missing
}

/// Where a service listens, as read from its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// Every address (`0.0.0.0`, `::`, `*`).
    All,
    /// Loopback only.
    Loopback,
    /// A specific non-loopback address.
    Specific,
    /// Not listening (disabled, or no address configured where one is required).
    Off,
}

/// Classifies an address as written in a config: `0.0.0.0`, `::`, `[::]:8088`,
/// `127.0.0.1:5038`, `*`. `None` when it is not an address (a host name, a typo).
pub fn classify_bind(text: &str) -> Option<Bind> {
    let t = text.trim();
    if t == "*" || t.is_empty() {
        return Some(Bind::All);
    }
    let ip = parse_addr(t)?;
    Some(if ip.is_unspecified() {
        Bind::All
    } else if ip.is_loopback() {
        Bind::Loopback
    } else {
        Bind::Specific
    })
}

/// An address with or without a port: `1.2.3.4`, `1.2.3.4:80`, `::`, `[::1]:80`.
fn parse_addr(t: &str) -> Option<IpAddr> {
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = t.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = t.strip_prefix('[').and_then(|r| r.split(']').next())?;
    inner.parse().ok()
}

/// Whether an Asterisk ACL (the `permit`/`deny` lines of one user, in order) restricts
/// who may connect. Asterisk allows by default and the last matching rule wins, so a
/// list restricts only if it denies something and permits nothing to everyone.
pub fn acl_restricts(deny: &[&str], permit: &[&str], named_acl: bool) -> bool {
    if named_acl {
        return true;
    }
    let everyone = |s: &&str| {
        let s = s.trim();
        let (addr, mask) = s.split_once('/').unwrap_or((s, ""));
        classify_bind(addr) == Some(Bind::All) && matches!(mask.trim(), "0" | "0.0.0.0" | "" | "::")
    };
    !deny.is_empty() && !permit.iter().any(everyone)
}

/// A management service bound as `bind` with an ACL (`restricted`): the issue, if any.
pub fn judge_binding(service: &'static str, bind: Bind, restricted: bool) -> Option<Issue> {
    (bind == Bind::All && !restricted).then_some(Issue::OpenManagement { service })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(v: &[Issue]) -> Vec<&'static str> {
        v.iter().map(Issue::rule).collect()
    }

    #[test]
    fn trivial_secrets() {
        for s in [
            "1234", "0000", "1111", "4321", "987654", "7890", "1212", "123123", "aaaa", "x", "abcabc",
        ] {
            assert!(is_trivial(s), "{s}");
        }
        for s in ["1235", "5821", "Vq7#mZ2p", "12a4", "1324"] {
            assert!(!is_trivial(s), "{s}");
        }
    }

    #[test]
    fn passwords_get_one_telling_issue() {
        let names = Names(vec!["101", "alice"]);
        assert_eq!(rules(&judge_password("", &names)), ["empty-secret"]);
        assert_eq!(rules(&judge_password("ClueCon", &names)), ["default-secret"]);
        assert_eq!(rules(&judge_password("AMP111", &names)), ["default-secret"]);
        assert_eq!(rules(&judge_password("1234", &names)), ["trivial-secret"]);
        assert_eq!(rules(&judge_password("101", &names)), ["secret-equals-name"]);
        assert_eq!(rules(&judge_password("101101", &names)), ["secret-equals-name"]);
        assert_eq!(rules(&judge_password("Alice", &names)), ["secret-equals-name"]);
        assert_eq!(rules(&judge_password("Xk3#b", &names)), ["short-password"]);
        assert_eq!(rules(&judge_password("Password1", &names)), ["guessable-password"]);
        assert!(rules(&judge_password("Summer2024", &names)).contains(&"guessable-password"));
        assert!(judge_password("Vq7#mZ2p!Lr9wT4e", &names).is_empty());
        let phrase = judge_password("correct-horse-battery-staple-lantern", &names);
        assert_eq!(rules(&phrase), ["simple-password"]);
        assert_eq!(phrase[0].severity(), Severity::Low);
        let medium = judge_password("q8v3m2x7k9z4", &names);
        assert_eq!(rules(&medium), ["simple-password"]);
        assert_eq!(medium[0].severity(), Severity::Medium);
    }

    #[test]
    fn pins() {
        assert_eq!(rules(&judge_pin("1234", "1000")), ["trivial-secret"]);
        assert_eq!(rules(&judge_pin("1000", "1000")), ["secret-equals-name"]);
        assert_eq!(rules(&judge_pin("58213", "1000")), ["short-pin"]);
        assert!(judge_pin("582961", "1000").is_empty());
        assert_eq!(rules(&judge_pin("", "1000")), ["empty-secret"]);
    }

    #[test]
    fn messages_never_hold_the_secret() {
        let secret = "Summer2024";
        for issue in judge_password(secret, &Names(vec!["x"])) {
            assert!(!issue.message("password").contains(secret));
            assert!(!issue.fix(false).contains(secret));
        }
    }

    #[test]
    fn bindings_and_acls() {
        assert_eq!(classify_bind("0.0.0.0"), Some(Bind::All));
        assert_eq!(classify_bind("[::]:8088"), Some(Bind::All));
        assert_eq!(classify_bind("::"), Some(Bind::All));
        assert_eq!(classify_bind("127.0.0.1:5038"), Some(Bind::Loopback));
        assert_eq!(classify_bind("::1"), Some(Bind::Loopback));
        assert_eq!(classify_bind("192.0.2.10"), Some(Bind::Specific));
        assert_eq!(classify_bind("pbx.example"), None);
        assert!(!acl_restricts(&[], &["192.168.1.0/255.255.255.0"], false));
        assert!(acl_restricts(&["0.0.0.0/0.0.0.0"], &["192.168.1.0/24"], false));
        assert!(!acl_restricts(&["0.0.0.0/0.0.0.0"], &["0.0.0.0/0.0.0.0"], false));
        assert!(acl_restricts(&[], &[], true));
        assert_eq!(
            judge_binding("AMI", Bind::All, false).map(|i| i.rule()),
            Some("open-management")
        );
        assert_eq!(judge_binding("AMI", Bind::All, true), None);
        assert_eq!(judge_binding("AMI", Bind::Loopback, false), None);
    }
}
