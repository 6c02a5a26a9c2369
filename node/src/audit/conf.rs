//! A reader for Asterisk's configuration syntax: `[section]`, `[name](!)` templates and
//! `[name](tpl1,tpl2)` sections that inherit them, `[name](+)` additions, `key = value`
//! and `key => value`, `;` and `;-- … --;` comments, `#include` / `#tryinclude` with
//! globs. Relative includes are resolved against the configuration directory, as
//! Asterisk does (not against the including file's directory). `#exec` is never run.
//!
//! Values may be secrets: problems are reported with the file and line only, never with
//! the line's text.

use super::Problem;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Deepest chain of includes followed (Asterisk itself stops loops; we stop here too).
const MAX_INCLUDE_DEPTH: usize = 10;
/// Deepest chain of templates followed.
const MAX_TEMPLATE_DEPTH: usize = 10;

/// Where something was read: a file and a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    /// The file, as opened.
    pub file: String,
    /// The line, from 1.
    pub line: usize,
}

/// One `key = value` line.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The key, as written.
    pub key: String,
    /// The value, trimmed (may be a secret: never print it).
    pub value: String,
    /// Where it was written.
    pub loc: Loc,
}

/// One `[section]` with its own entries (templates not yet applied).
#[derive(Debug, Clone)]
pub struct Section {
    /// Its name.
    pub name: String,
    /// Declared with `(!)`: a template, not a live object.
    pub is_template: bool,
    /// Templates it inherits from, in order.
    pub templates: Vec<String>,
    /// Where its header is.
    pub loc: Loc,
    /// Its own entries, in order.
    pub entries: Vec<Setting>,
}

/// A configuration file with everything it includes.
#[derive(Debug, Default)]
pub struct Conf {
    /// Sections in file order.
    pub sections: Vec<Section>,
    /// Files read (the top file and every include).
    pub files: Vec<String>,
    /// What could not be read or parsed.
    pub problems: Vec<Problem>,
}

impl Conf {
    /// Reads `root/name` and its includes. `None` when the file does not exist.
    pub fn read(root: &Path, name: &str) -> Option<Conf> {
        let path = root.join(name);
        if !path.exists() {
            return None;
        }
        Some(Self::read_with(root, |r| r.file(&path, 0, false, None)))
    }

    /// Parses text as the file `file` (includes resolved against `root`).
    pub fn parse(root: &Path, file: &str, text: &[u8]) -> Conf {
        Self::read_with(root, |r| r.bytes(file, text, 0))
    }

    /// A configuration filled by `read` through a fresh reader.
    fn read_with(root: &Path, read: impl FnOnce(&mut Reader<'_>)) -> Conf {
        let mut conf = Conf::default();
        read(&mut Reader {
            root,
            conf: &mut conf,
            current: None,
            seen: HashSet::new(),
        });
        conf
    }

    /// The section's entries with its templates applied: inherited entries first (in
    /// template order), then its own. A template that does not exist is a problem.
    pub fn resolved<'a>(&'a self, section: &'a Section, problems: &mut Vec<Problem>) -> Vec<&'a Setting> {
        let mut out = Vec::new();
        self.collect(section, 0, &mut out, problems);
        out
    }

    fn collect<'a>(&'a self, s: &'a Section, depth: usize, out: &mut Vec<&'a Setting>, problems: &mut Vec<Problem>) {
        if depth > MAX_TEMPLATE_DEPTH {
            problems.push(Problem::at(&s.loc, "templates nest too deep (a loop?)"));
            return;
        }
        for t in &s.templates {
            // The last template of that name declared before use, else any.
            match self.sections.iter().rev().find(|x| &x.name == t && x.is_template) {
                Some(tpl) => self.collect(tpl, depth + 1, out, problems),
                None => match self.sections.iter().rev().find(|x| &x.name == t) {
                    Some(tpl) if !std::ptr::eq(tpl, s) => self.collect(tpl, depth + 1, out, problems),
                    _ => problems.push(Problem::at(&s.loc, &format!("template [{t}] is not defined"))),
                },
            }
        }
        out.extend(s.entries.iter());
    }
}

/// The last entry of `key` (case-insensitive) in resolved entries.
pub fn last<'a>(entries: &[&'a Setting], key: &str) -> Option<&'a Setting> {
    entries.iter().rev().find(|e| e.key.eq_ignore_ascii_case(key)).copied()
}

/// Every entry of `key` (case-insensitive), in order.
pub fn all<'a>(entries: &[&'a Setting], key: &str) -> Vec<&'a Setting> {
    entries
        .iter()
        .filter(|e| e.key.eq_ignore_ascii_case(key))
        .copied()
        .collect()
}

/// Asterisk's true values.
pub fn is_true(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "yes" | "true" | "y" | "t" | "1" | "on"
    )
}

struct Reader<'r> {
    root: &'r Path,
    conf: &'r mut Conf,
    /// Index of the section entries go to.
    current: Option<usize>,
    /// Files on the current include chain (loops are refused).
    seen: HashSet<PathBuf>,
}

impl Reader<'_> {
    /// Reads one file; `optional` for `#tryinclude`.
    fn file(&mut self, path: &Path, depth: usize, optional: bool, from: Option<&Loc>) {
        let shown = path.display().to_string();
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if self.seen.contains(&key) {
            let at = from.cloned().unwrap_or(Loc { file: shown, line: 0 });
            self.conf
                .problems
                .push(Problem::at(&at, "include loop: the file includes itself"));
            return;
        }
        match std::fs::read(path) {
            Ok(bytes) => {
                self.conf.files.push(shown.clone());
                self.seen.insert(key.clone());
                self.bytes(&shown, &bytes, depth);
                self.seen.remove(&key);
            }
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => self
                .conf
                .problems
                .push(Problem::file(&shown, &format!("cannot read: {e}"))),
        }
    }

    fn bytes(&mut self, file: &str, bytes: &[u8], depth: usize) {
        let mut in_block = false;
        for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            let loc = Loc {
                file: file.to_string(),
                line: i + 1,
            };
            let Ok(line) = std::str::from_utf8(raw) else {
                self.conf
                    .problems
                    .push(Problem::at(&loc, "not valid UTF-8: line skipped"));
                continue;
            };
            let line = strip_comments(line.trim_end_matches('\r'), &mut in_block);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(directive) = line.strip_prefix('#') {
                self.directive(directive, &loc, depth);
            } else if line.starts_with('[') {
                self.header(line, &loc);
            } else {
                self.entry(line, &loc);
            }
        }
    }

    fn directive(&mut self, d: &str, loc: &Loc, depth: usize) {
        let (word, arg) = d.split_once(char::is_whitespace).unwrap_or((d, ""));
        let optional = match word {
            "include" => false,
            "tryinclude" => true,
            "exec" | "tryexec" => {
                self.conf
                    .problems
                    .push(Problem::at(loc, "#exec is not followed: the audit runs no commands"));
                return;
            }
            _ => {
                self.conf.problems.push(Problem::at(loc, "unknown directive"));
                return;
            }
        };
        let arg = arg.trim().trim_matches(|c| c == '"' || c == '<' || c == '>');
        if arg.is_empty() {
            self.conf.problems.push(Problem::at(loc, "#include without a file"));
            return;
        }
        if depth >= MAX_INCLUDE_DEPTH {
            self.conf.problems.push(Problem::at(loc, "includes nest too deep"));
            return;
        }
        let pattern = if Path::new(arg).is_absolute() {
            PathBuf::from(arg)
        } else {
            self.root.join(arg)
        };
        let has_glob = arg.contains(['*', '?', '[']);
        if !has_glob {
            if !optional && !pattern.exists() {
                let msg = format!("included file {} does not exist", pattern.display());
                self.conf.problems.push(Problem::at(loc, &msg));
                return;
            }
            self.file(&pattern, depth + 1, optional, Some(loc));
            return;
        }
        let paths: Vec<PathBuf> = match glob::glob(&pattern.to_string_lossy()) {
            Ok(paths) => paths.filter_map(Result::ok).collect(),
            Err(_) => {
                self.conf.problems.push(Problem::at(loc, "bad #include pattern"));
                return;
            }
        };
        if paths.is_empty() && !optional {
            let msg = format!("#include {} matched no file", pattern.display());
            self.conf.problems.push(Problem::at(loc, &msg));
        }
        for p in paths {
            self.file(&p, depth + 1, optional, Some(loc));
        }
    }

    fn header(&mut self, line: &str, loc: &Loc) {
        let Some(end) = line.find(']') else {
            self.conf
                .problems
                .push(Problem::at(loc, "section header without a closing ']'"));
            self.current = None;
            return;
        };
        let name = line[1..end].trim().to_string();
        let rest = line[end + 1..].trim();
        let mut options = Vec::new();
        if !rest.is_empty() {
            match rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
                Some(inner) => options = inner.split(',').map(|o| o.trim().to_string()).collect(),
                None => {
                    self.conf
                        .problems
                        .push(Problem::at(loc, "unexpected text after the section header"));
                    self.current = None;
                    return;
                }
            }
        }
        if name.is_empty() {
            self.conf.problems.push(Problem::at(loc, "empty section name"));
            self.current = None;
            return;
        }
        if options.iter().any(|o| o == "+") {
            if let Some(i) = self.conf.sections.iter().rposition(|s| s.name == name) {
                self.current = Some(i);
                return;
            }
        }
        self.conf.sections.push(Section {
            name,
            is_template: options.iter().any(|o| o == "!"),
            templates: options
                .into_iter()
                .filter(|o| !o.is_empty() && o != "!" && o != "+")
                .collect(),
            loc: loc.clone(),
            entries: Vec::new(),
        });
        self.current = Some(self.conf.sections.len() - 1);
    }

    fn entry(&mut self, line: &str, loc: &Loc) {
        let Some((key, value)) = line.split_once('=') else {
            self.conf
                .problems
                .push(Problem::at(loc, "expected `key = value`, a [section] or a #include"));
            return;
        };
        let value = value.strip_prefix('>').unwrap_or(value).trim();
        let key = key.trim();
        if key.is_empty() {
            self.conf.problems.push(Problem::at(loc, "a value without a key"));
            return;
        }
        let Some(i) = self.current else {
            self.conf
                .problems
                .push(Problem::at(loc, "a setting outside any [section]"));
            return;
        };
        self.conf.sections[i].entries.push(Setting {
            key: key.to_string(),
            value: value.to_string(),
            loc: loc.clone(),
        });
    }
}

/// Removes `;` comments (`\;` is a literal semicolon) and `;-- … --;` block comments,
/// which may span lines (`in_block` carries the state).
fn strip_comments(line: &str, in_block: &mut bool) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    loop {
        if *in_block {
            match rest.find("--;") {
                Some(i) => {
                    *in_block = false;
                    rest = &rest[i + 3..];
                }
                None => return out,
            }
        }
        let mut chars = rest.char_indices().peekable();
        let mut cut = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' if chars.peek().map(|(_, n)| *n) == Some(';') => {
                    out.push(';');
                    chars.next();
                }
                ';' => {
                    cut = Some(i);
                    break;
                }
                c => out.push(c),
            }
        }
        let Some(i) = cut else { return out };
        if rest[i..].starts_with(";--") {
            *in_block = true;
            rest = &rest[i + 3..];
        } else {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Conf {
        Conf::parse(Path::new("/nonexistent"), "test.conf", text.as_bytes())
    }

    #[test]
    fn sections_templates_and_values() {
        let c = parse(
            "[general]\nenabled = yes ; comment\n\n[tpl](!)\ntype=auth\npassword=a\\;b\n\
             [101](tpl)\nusername => 101\n[101](+)\nextra=1\n",
        );
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.sections.len(), 3);
        let s = &c.sections[2];
        assert_eq!(s.name, "101");
        let mut p = Vec::new();
        let r = c.resolved(s, &mut p);
        assert_eq!(last(&r, "password").map(|e| e.value.as_str()), Some("a;b"));
        assert_eq!(last(&r, "password").map(|e| e.loc.line), Some(6));
        assert_eq!(last(&r, "username").map(|e| e.value.as_str()), Some("101"));
        assert_eq!(last(&r, "extra").map(|e| e.loc.line), Some(10));
        assert!(c.sections[1].is_template);
    }

    #[test]
    fn block_comments_span_lines() {
        let c = parse("[a]\nx=1 ;-- hidden\nsecret=2\n--; y=3\n");
        let keys: Vec<&str> = c.sections[0].entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["x", "y"]);
    }

    #[test]
    fn problems_name_the_line_not_its_text() {
        let c = parse("[a]\nsecret hunter2\n[broken\nb=1\n[c](x\n");
        let msgs: Vec<String> = c
            .problems
            .iter()
            .map(|p| format!("{:?}:{:?} {}", p.file, p.line, p.message))
            .collect();
        assert_eq!(c.problems.len(), 4, "{msgs:?}");
        assert_eq!(c.problems[0].line, Some(2));
        assert_eq!(c.problems[1].line, Some(3));
        // `b=1` after a broken header lands nowhere.
        assert_eq!(c.problems[2].line, Some(4));
        assert!(msgs.iter().all(|m| !m.contains("hunter2")));
    }

    #[test]
    fn missing_template_is_a_problem() {
        let c = parse("[a](nope)\nx=1\n");
        let mut p = Vec::new();
        let r = c.resolved(&c.sections[0], &mut p);
        assert_eq!(r.len(), 1);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].line, Some(1));
    }
}
