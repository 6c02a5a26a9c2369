//! FreeSWITCH's files where secrets and bindings live: the user directory
//! (`directory/**/*.xml`: each `<user id>`'s `password` and `vm-password` params) and
//! `autoload_configs/event_socket.conf.xml` (`listen-ip`, `password`,
//! `apply-inbound-acl`). Pre-processor variables (`$${default_password}`, set with
//! `<X-PRE-PROCESS cmd="set" data="name=value"/>` in `vars.xml` or anywhere read) are
//! resolved: the stock `default_password` is 1234.
//!
//! Values may be secrets: problems say the file and line, never a value.

use super::conf::Loc;
use super::{Audit, Problem};
use fraudmesh::audit::{self as rules, Bind, Names};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The event socket's password when its config sets none (mod_event_socket's default).
const ESL_DEFAULT_PASSWORD: &str = "ClueCon";

/// Pre-processor variables: name → value.
type Vars = HashMap<String, String>;

/// One XML element as read: name, raw attribute values, line of its `<`.
#[derive(Debug, Clone)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    line: usize,
}

impl Element {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// An element with its ancestors (outermost first).
struct Visited {
    el: Element,
    ancestors: Vec<Element>,
}

impl Visited {
    fn within(&self, name: &str) -> Option<&Element> {
        self.ancestors.iter().rev().find(|a| a.name == name)
    }
}

/// Audits a FreeSWITCH configuration directory.
pub fn audit(root: &Path, out: &mut Audit) {
    let mut vars = Vars::new();
    let vars_file = root.join("vars.xml");
    if vars_file.exists() {
        read(&vars_file, out, &mut vars);
    }
    let pattern = root.join("directory").join("**").join("*.xml");
    let mut files: Vec<PathBuf> = glob::glob(&pattern.to_string_lossy())
        .map(|paths| paths.filter_map(Result::ok).collect())
        .unwrap_or_default();
    files.sort();
    let mut users = Vec::new();
    for f in &files {
        if let Some(visited) = read(f, out, &mut vars) {
            users.push((f.display().to_string(), visited));
        }
    }
    for (file, visited) in &users {
        directory(file, visited, &vars, out);
    }
    let esl = root.join("autoload_configs").join("event_socket.conf.xml");
    if esl.exists() {
        if let Some(visited) = read(&esl, out, &mut vars) {
            event_socket(&esl.display().to_string(), &visited, &vars, out);
        }
    }
}

/// `password` and `vm-password` params of users.
fn directory(file: &str, visited: &[Visited], vars: &Vars, out: &mut Audit) {
    for v in visited {
        if v.el.name != "param" || v.ancestors.last().map(|a| a.name.as_str()) != Some("params") {
            continue;
        }
        // Gateways hold credentials for a provider, not for a user of ours.
        let (Some(user), None) = (v.within("user"), v.within("gateway")) else {
            continue;
        };
        let Some(id) = user.attr("id") else { continue };
        let loc = Loc {
            file: file.to_string(),
            line: v.el.line,
        };
        let subject = format!("user {id}");
        let Some(value) = resolve(v.el.attr("value").unwrap_or(""), vars, &loc, out) else {
            continue;
        };
        match v.el.attr("name") {
            Some("password") => {
                let mut names = vec![id];
                names.extend(user.attr("number-alias"));
                out.password(&value, &Names(names), &loc, &subject, "password");
            }
            Some("vm-password") => {
                for issue in rules::judge_pin(&value, id) {
                    out.issue(issue, &loc, &subject, "voicemail PIN");
                }
            }
            _ => {}
        }
    }
}

/// `listen-ip`, `password` and `apply-inbound-acl` of the event socket.
fn event_socket(file: &str, visited: &[Visited], vars: &Vars, out: &mut Audit) {
    let Some(settings) = visited.iter().find(|v| v.el.name == "settings") else {
        return;
    };
    let at = |line| Loc {
        file: file.to_string(),
        line,
    };
    let param = |name: &str| {
        visited
            .iter()
            .find(|v| v.el.name == "param" && v.within("settings").is_some() && v.el.attr("name") == Some(name))
    };
    let subject = "event socket";
    match param("password") {
        Some(p) => {
            let loc = at(p.el.line);
            if let Some(value) = resolve(p.el.attr("value").unwrap_or(""), vars, &loc, out) {
                out.password(&value, &Names(Vec::new()), &loc, subject, "event socket password");
            }
        }
        None => out.password(
            ESL_DEFAULT_PASSWORD,
            &Names(Vec::new()),
            &at(settings.el.line),
            subject,
            "event socket password (not set: the default applies)",
        ),
    }
    let restricted = param("apply-inbound-acl")
        .and_then(|p| p.el.attr("value"))
        .is_some_and(|v| !v.trim().is_empty());
    // mod_event_socket listens on 127.0.0.1 unless told otherwise.
    let (bind, loc) = match param("listen-ip") {
        Some(p) => {
            let loc = at(p.el.line);
            let bind = resolve(p.el.attr("value").unwrap_or(""), vars, &loc, out)
                .and_then(|ip| rules::classify_bind(&ip))
                .unwrap_or(Bind::Specific);
            (bind, loc)
        }
        None => (Bind::Loopback, at(settings.el.line)),
    };
    if let Some(issue) = rules::judge_binding("FreeSWITCH event socket", bind, restricted) {
        out.issue(issue, &loc, subject, "event socket");
    }
}

/// Expands `$${name}`; `None` (with a problem for an unknown variable) when the value
/// cannot be known here, including run-time `${…}` variables.
fn resolve(value: &str, vars: &Vars, loc: &Loc, out: &mut Audit) -> Option<String> {
    match expand(value, vars) {
        Ok(v) if v.contains("${") => None,
        Ok(v) => Some(v),
        Err(name) => {
            let msg = format!("pre-processor variable $${{{name}}} is not set: value not checked");
            out.problems.push(Problem::at(loc, &msg));
            None
        }
    }
}

/// Replaces every `$${name}` with its value; `Err(name)` for an unset one.
fn expand(value: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find("$${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let name = &after[..end];
        out.push_str(vars.get(name).ok_or_else(|| name.to_string())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Reads one XML file: every element with its ancestors, pre-processor `set`s applied to
/// `vars` in order. A file that cannot be read or parsed becomes a problem (what was
/// read before a syntax error is still returned).
fn read(path: &Path, out: &mut Audit, vars: &mut Vars) -> Option<Vec<Visited>> {
    let file = path.display().to_string();
    let text = load(path, &file, out)?;
    Some(walk(&text, &file, out, vars))
}

/// A file's text, recorded as read; `None` (with a problem) when it cannot be read or is
/// not UTF-8.
fn load(path: &Path, file: &str, out: &mut Audit) -> Option<String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            out.problems.push(Problem::file(file, &format!("cannot read: {e}")));
            return None;
        }
    };
    out.files.push(file.to_string());
    match String::from_utf8(bytes) {
        Ok(t) => Some(t),
        Err(e) => {
            let line = line_of(e.as_bytes(), e.utf8_error().valid_up_to());
            let loc = Loc {
                file: file.to_string(),
                line,
            };
            out.problems.push(Problem::at(&loc, "not valid UTF-8: file skipped"));
            None
        }
    }
}

/// Every element of the XML `text` of `file` with its ancestors, pre-processor `set`s
/// applied to `vars` in order; a syntax error ends the walk with a problem.
fn walk(text: &str, file: &str, out: &mut Audit, vars: &mut Vars) -> Vec<Visited> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut visited = Vec::new();
    let loc = |pos: u64| Loc {
        file: file.to_string(),
        line: line_of(text.as_bytes(), pos as usize),
    };
    loop {
        let pos = reader.buffer_position();
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(e) => {
                let msg = format!("malformed XML: {}", describe(&e));
                out.problems.push(Problem::at(&loc(reader.error_position()), &msg));
                break;
            }
        };
        match event {
            Event::Start(e) => {
                let Some(el) = element(&e, loc(pos), out) else { break };
                preprocess(&el, vars);
                visited.push(Visited {
                    el: el.clone(),
                    ancestors: stack.clone(),
                });
                stack.push(el);
            }
            Event::Empty(e) => {
                let Some(el) = element(&e, loc(pos), out) else { break };
                preprocess(&el, vars);
                visited.push(Visited {
                    el,
                    ancestors: stack.clone(),
                });
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Eof => {
                if let Some(open) = stack.last() {
                    let msg = format!("<{}> is never closed", open.name);
                    out.problems.push(Problem::at(
                        &Loc {
                            file: file.to_string(),
                            line: open.line,
                        },
                        &msg,
                    ));
                }
                break;
            }
            _ => {}
        }
    }
    visited
}

/// An element's name and attributes; `None` (with a problem) when an attribute is broken.
fn element(e: &BytesStart<'_>, loc: Loc, out: &mut Audit) -> Option<Element> {
    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let parsed = a.ok().and_then(|a| {
            let value = a.normalized_value(quick_xml::XmlVersion::Implicit1_0).ok()?;
            Some((String::from_utf8_lossy(a.key.as_ref()).into_owned(), value.into_owned()))
        });
        match parsed {
            Some(kv) => attrs.push(kv),
            None => {
                out.problems
                    .push(Problem::at(&loc, &format!("malformed attribute in <{name}>")));
                return None;
            }
        }
    }
    Some(Element {
        name,
        attrs,
        line: loc.line,
    })
}

/// Applies `<X-PRE-PROCESS cmd="set" data="name=value"/>`.
fn preprocess(el: &Element, vars: &mut Vars) {
    if el.name != "X-PRE-PROCESS" || el.attr("cmd") != Some("set") {
        return;
    }
    if let Some((name, value)) = el.attr("data").and_then(|d| d.split_once('=')) {
        // A value built from variables not set yet stays as written (and is not judged).
        let value = expand(value, vars).unwrap_or_else(|_| value.to_string());
        vars.insert(name.trim().to_string(), value);
    }
}

/// A quick-xml error described without quoting the document (it may hold secrets).
fn describe(e: &quick_xml::Error) -> String {
    use quick_xml::Error;
    match e {
        Error::Syntax(s) => s.to_string(),
        Error::IllFormed(i) => i.to_string(),
        Error::InvalidAttr(_) => "malformed attribute".into(),
        Error::Escape(_) => "bad character reference or entity".into(),
        _ => "unreadable".into(),
    }
}

/// The 1-based line of a byte offset.
fn line_of(bytes: &[u8], pos: usize) -> usize {
    bytes[..pos.min(bytes.len())].iter().filter(|b| **b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_expand() {
        let vars: Vars = [("default_password".to_string(), "1234".to_string())].into();
        assert_eq!(expand("$${default_password}", &vars).unwrap(), "1234");
        assert_eq!(expand("x$${default_password}y", &vars).unwrap(), "x1234y");
        assert_eq!(expand("plain", &vars).unwrap(), "plain");
        assert_eq!(expand("$${nope}", &vars).unwrap_err(), "nope");
    }

    #[test]
    fn user_params_and_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("u.xml");
        std::fs::write(
            &f,
            "<include>\n  <user id=\"1000\">\n    <params>\n      <param name=\"password\" value=\"$${default_password}\"/>\n      <param name=\"vm-password\" value=\"1000\"/>\n    </params>\n  </user>\n</include>\n",
        )
        .unwrap();
        let mut out = Audit::default();
        let mut vars: Vars = [("default_password".to_string(), "1234".to_string())].into();
        let v = read(&f, &mut out, &mut vars).unwrap();
        directory(&f.display().to_string(), &v, &vars, &mut out);
        let got: Vec<(&str, usize)> = out.findings.iter().map(|x| (x.rule, x.line.unwrap_or(0))).collect();
        assert_eq!(got, [("trivial-secret", 4), ("secret-equals-name", 5)]);
    }

    #[test]
    fn malformed_xml_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.xml");
        std::fs::write(&f, "<include>\n<user id=\"1\">\n<params>\n</user>\n</include>\n").unwrap();
        let mut out = Audit::default();
        read(&f, &mut out, &mut Vars::new());
        assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
        assert_eq!(out.problems[0].line, Some(4));
    }
}
