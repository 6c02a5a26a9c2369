//! Asterisk's files where secrets and bindings live: `pjsip.conf` (auth sections, with
//! the endpoints that use them), `sip.conf` (`secret`), `voicemail.conf` (mailbox PINs),
//! `manager.conf` (AMI: `enabled`, `bindaddr`, users' `secret`, `permit`/`deny`) and
//! `http.conf` (`enabled`, `bindaddr`, TLS). A file that is absent is skipped.

use super::conf::{all, is_true, last, Conf, Loc, Section, Setting};
use super::Audit;
use fraudmesh::audit::{self as rules, Bind, Issue, Names};
use std::collections::HashMap;
use std::path::Path;

/// Audits an Asterisk configuration directory.
pub fn audit(root: &Path, out: &mut Audit) {
    if let Some(c) = read(root, "pjsip.conf", out) {
        pjsip(&c, out);
    }
    if let Some(c) = read(root, "sip.conf", out) {
        sip(&c, out);
    }
    if let Some(c) = read(root, "voicemail.conf", out) {
        voicemail(&c, out);
    }
    if let Some(c) = read(root, "manager.conf", out) {
        manager(&c, out);
    }
    if let Some(c) = read(root, "http.conf", out) {
        http(&c, out);
    }
}

fn read(root: &Path, name: &str, out: &mut Audit) -> Option<Conf> {
    let mut c = Conf::read(root, name)?;
    out.files.extend(c.files.iter().cloned());
    out.problems.append(&mut c.problems);
    Some(c)
}

/// Live (non-template) sections with their templates applied.
fn live<'a>(c: &'a Conf, out: &mut Audit) -> Vec<(&'a Section, Vec<&'a Setting>)> {
    c.sections
        .iter()
        .filter(|s| !s.is_template)
        .map(|s| (s, c.resolved(s, &mut out.problems)))
        .collect()
}

fn kind(entries: &[&Setting]) -> Option<String> {
    last(entries, "type").map(|e| e.value.to_ascii_lowercase())
}

fn pjsip(c: &Conf, out: &mut Audit) {
    let sections = live(c, out);
    // auth section → endpoints using it (their names are the extension numbers).
    let mut users: HashMap<&str, Vec<&str>> = HashMap::new();
    for (s, e) in &sections {
        if kind(e).as_deref() == Some("endpoint") {
            for a in all(e, "auth").into_iter().chain(all(e, "outbound_auth")) {
                for name in a.value.split(',').map(str::trim) {
                    users.entry(name).or_default().push(&s.name);
                }
            }
        }
    }
    for (s, e) in &sections {
        if kind(e).as_deref() != Some("auth") {
            continue;
        }
        let auth_type = last(e, "auth_type").map(|x| x.value.to_ascii_lowercase());
        if !matches!(auth_type.as_deref(), None | Some("userpass") | Some("")) {
            continue; // md5 hashes and OAuth cannot be judged here.
        }
        let mut names = vec![s.name.as_str()];
        if let Some(u) = last(e, "username") {
            names.push(&u.value);
        }
        names.extend(users.get(s.name.as_str()).into_iter().flatten().copied());
        let subject = format!("auth {}", s.name);
        match last(e, "password") {
            Some(p) => out.password(&p.value, &Names(names), &p.loc, &subject, "password"),
            None => out.issue(Issue::Empty, &s.loc, &subject, "password"),
        }
    }
}

fn sip(c: &Conf, out: &mut Audit) {
    for (s, e) in live(c, out) {
        if s.name.eq_ignore_ascii_case("general") || s.name.eq_ignore_ascii_case("authentication") {
            continue;
        }
        let Some(secret) = last(&e, "secret") else { continue };
        let mut names = vec![s.name.as_str()];
        for k in ["username", "defaultuser", "fromuser"] {
            if let Some(u) = last(&e, k) {
                names.push(&u.value);
            }
        }
        out.password(
            &secret.value,
            &Names(names),
            &secret.loc,
            &format!("peer {}", s.name),
            "secret",
        );
    }
}

fn voicemail(c: &Conf, out: &mut Audit) {
    for (s, e) in live(c, out) {
        if ["general", "zonemessages"]
            .iter()
            .any(|n| s.name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        for entry in e {
            let mailbox = entry.key.as_str();
            // `mailbox => pin,Full Name,email,pager,options`; a leading '-' forbids the
            // user changing the PIN and is not part of it.
            let pin = entry.value.split(',').next().unwrap_or("").trim();
            let pin = pin.strip_prefix('-').unwrap_or(pin);
            let subject = format!("mailbox {mailbox}@{}", s.name);
            for issue in rules::judge_pin(pin, mailbox) {
                out.issue(issue, &entry.loc, &subject, "voicemail PIN");
            }
        }
    }
}

fn manager(c: &Conf, out: &mut Audit) {
    let sections = live(c, out);
    let general = sections.iter().find(|(s, _)| s.name.eq_ignore_ascii_case("general"));
    let enabled = general
        .and_then(|(_, e)| last(e, "enabled"))
        .is_some_and(|e| is_true(&e.value));
    // AMI binds every address unless told otherwise.
    let (bind, bind_loc) = match general.and_then(|(_, e)| last(e, "bindaddr")) {
        Some(b) => (rules::classify_bind(&b.value).unwrap_or(Bind::Specific), b.loc.clone()),
        None => (
            Bind::All,
            general.map(|(s, _)| s.loc.clone()).unwrap_or_else(|| file_loc(c)),
        ),
    };
    for (s, e) in &sections {
        if s.name.eq_ignore_ascii_case("general") {
            continue;
        }
        let subject = format!("AMI user {}", s.name);
        match last(e, "secret") {
            Some(secret) => out.password(
                &secret.value,
                &Names(vec![&s.name]),
                &secret.loc,
                &subject,
                "AMI secret",
            ),
            None => out.issue(Issue::Empty, &s.loc, &subject, "AMI secret"),
        }
        if !enabled {
            continue;
        }
        let deny: Vec<&str> = all(e, "deny").iter().map(|x| x.value.as_str()).collect();
        let permit: Vec<&str> = all(e, "permit").iter().map(|x| x.value.as_str()).collect();
        let restricted = rules::acl_restricts(&deny, &permit, last(e, "acl").is_some());
        if let Some(issue) = rules::judge_binding("AMI", bind, restricted) {
            out.issue(issue, &bind_loc, &subject, "AMI");
        }
    }
}

fn http(c: &Conf, out: &mut Audit) {
    let sections = live(c, out);
    let Some((_, e)) = sections.iter().find(|(s, _)| s.name.eq_ignore_ascii_case("general")) else {
        return;
    };
    if !last(e, "enabled").is_some_and(|x| is_true(&x.value)) {
        return;
    }
    // Without bindaddr Asterisk's HTTP server does not listen.
    if let Some(b) = last(e, "bindaddr") {
        let bind = rules::classify_bind(&b.value).unwrap_or(Bind::Specific);
        let subject = "Asterisk HTTP server";
        if let Some(issue) = rules::judge_binding("Asterisk HTTP/ARI", bind, false) {
            out.issue(issue, &b.loc, subject, "HTTP");
        }
        let tls = last(e, "tlsenable").is_some_and(|x| is_true(&x.value));
        if bind != Bind::Loopback && !tls {
            out.issue(Issue::HttpWithoutTls, &b.loc, subject, "HTTP");
        }
    }
    if last(e, "tlsenable").is_some_and(|x| is_true(&x.value)) {
        if let Some(b) = last(e, "tlsbindaddr") {
            let bind = rules::classify_bind(&b.value).unwrap_or(Bind::Specific);
            if let Some(issue) = rules::judge_binding("Asterisk HTTPS/ARI", bind, false) {
                out.issue(issue, &b.loc, "Asterisk HTTPS server", "HTTPS");
            }
        }
    }
}

fn file_loc(c: &Conf) -> Loc {
    Loc {
        file: c.files.first().cloned().unwrap_or_default(),
        line: 1,
    }
}
