//! The file enforcer: the list written to a file for anything that reads one — Asterisk
//! ACL includes, FreeSWITCH ACL lists (with `fs_cli -x reloadacl` as hook), pfSense URL
//! aliases, `ipset restore`, scripts.
//!
//! Formats:
//! - `plain`: `header`, then one `line` per entry (a template, default `{value}`), then
//!   `footer`. Placeholders: `{value}` (a bare address for hosts, CIDR for prefixes),
//!   `{cidr}` (always with the length), `{addr}`, `{prefix_len}`, `{mask}` (netmask, as
//!   Asterisk's `deny=ADDR/MASK` wants), `{until}` (RFC 3339), `{until_unix}` (seconds),
//!   `{timeout}` (seconds left).
//! - `ipset`: input for `ipset restore`: creates (if missing) and refills two `hash:net`
//!   sets with timeouts, `NAME` for IPv4 and `NAME6` for IPv6.
//! - `json`: `{"updated", "count", "entries": [{"value", "cidr", "until"}]}`.
//!
//! Every write is atomic (a temporary file with a random name, created new so that no
//! planted link is followed, in the same directory, synced, then renamed, the directory
//! synced: [`crate::fsutil::write_atomically`]), mode 0644, so a reader sees the old list
//! or the new one, never half of one. Then `hook` runs, if
//! set; its failure counts as the enforcer's failure and the write is retried.

use super::{Enforcer, NetBlock, Removed};
use crate::fsutil::write_atomically;
use crate::time::rfc3339;
use anyhow::{anyhow, bail, Context};
use fraudmesh::Millis;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// Longest a hook may run.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// ipset's largest timeout, seconds.
const IPSET_MAX_TIMEOUT: u64 = 2_147_483;
/// The written file's permissions: readable by the PBX or script that reads it, as
/// `File::create` under the usual umask 022 gave before the write was shared.
const FILE_MODE: u32 = 0o644;

/// What a file looks like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One templated line per entry between a header and a footer.
    #[default]
    Plain,
    /// `ipset restore` input.
    Ipset,
    /// A JSON document.
    Json,
}

/// `[[enforce.files]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// The file to write.
    pub path: PathBuf,
    /// `plain` (default), `ipset` or `json`.
    #[serde(default)]
    pub format: Format,
    /// `plain`: text before the entries.
    #[serde(default)]
    pub header: String,
    /// `plain`: the line of one entry. Default `{value}`.
    #[serde(default = "default_line")]
    pub line: String,
    /// `plain`: text after the entries.
    #[serde(default)]
    pub footer: String,
    /// `ipset`: the IPv4 set's name (the IPv6 set's name ends in 6). Default `fraudmesh`.
    #[serde(default = "default_ipset_name")]
    pub ipset_name: String,
    /// A command (program and arguments) run after each write, e.g.
    /// `["fs_cli", "-x", "reloadacl"]`. Default none.
    #[serde(default)]
    pub hook: Vec<String>,
    /// The shortest time between two writes; changes meanwhile are batched. Default 1s.
    #[serde(default = "default_min_interval", with = "humantime_serde")]
    pub min_interval: Duration,
}

fn default_line() -> String {
    "{value}".into()
}

fn default_ipset_name() -> String {
    "fraudmesh".into()
}

fn default_min_interval() -> Duration {
    Duration::from_secs(1)
}

impl FilesConfig {
    /// Checks the settings; errors start with `key`.
    pub fn validate(&self, key: &str) -> anyhow::Result<()> {
        if self.path.as_os_str().is_empty() || self.path.file_name().is_none() {
            bail!("{key}.path: a file path is needed");
        }
        Template::parse(&self.line).with_context(|| format!("{key}.line"))?;
        let name_ok = !self.ipset_name.is_empty()
            && self.ipset_name.len() <= 30
            && self
                .ipset_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            bail!(
                "{key}.ipset_name: 1 to 30 letters, digits, '_' or '-', got {:?}",
                self.ipset_name
            );
        }
        if self.hook.first().is_some_and(|p| p.is_empty()) {
            bail!("{key}.hook: the first element is the program to run");
        }
        Ok(())
    }
}

/// One piece of a line template.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Value,
    Cidr,
    Addr,
    PrefixLen,
    Mask,
    Until,
    UntilUnix,
    Timeout,
}

/// A parsed `line` template.
#[derive(Debug, Clone, PartialEq)]
struct Template(Vec<Piece>);

impl Template {
    fn parse(text: &str) -> anyhow::Result<Self> {
        if text.contains('\n') {
            bail!("one line only: the template may not contain a newline");
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| anyhow!("an unclosed '{{' in {text:?}"))?;
            let name = &rest[open + 1..open + close];
            pieces.push(match name {
                "value" => Piece::Value,
                "cidr" => Piece::Cidr,
                "addr" => Piece::Addr,
                "prefix_len" => Piece::PrefixLen,
                "mask" => Piece::Mask,
                "until" => Piece::Until,
                "until_unix" => Piece::UntilUnix,
                "timeout" => Piece::Timeout,
                other => bail!(
                    "unknown placeholder {{{other}}}: use value, cidr, addr, prefix_len, mask, until, until_unix or timeout"
                ),
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Self(pieces))
    }

    fn render(&self, out: &mut String, net: &IpNet, until: Millis, now: Millis) {
        for p in &self.0 {
            // Writing into a String cannot fail.
            let _ = match p {
                Piece::Text(t) => out.write_str(t),
                Piece::Value => write!(out, "{}", value(net)),
                Piece::Cidr => write!(out, "{net}"),
                Piece::Addr => write!(out, "{}", net.addr()),
                Piece::PrefixLen => write!(out, "{}", net.prefix_len()),
                Piece::Mask => write!(out, "{}", net.netmask()),
                Piece::Until => out.write_str(&rfc3339(until)),
                Piece::UntilUnix => write!(out, "{}", until / 1000),
                Piece::Timeout => write!(out, "{}", until.saturating_sub(now).div_ceil(1000)),
            };
        }
    }
}

/// A host bare, a prefix in CIDR.
fn value(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// Writes the list to one file.
pub struct FilesEnforcer {
    config: FilesConfig,
    template: Template,
    list: BTreeMap<IpNet, Millis>,
}

impl FilesEnforcer {
    /// An enforcer for one validated `[[enforce.files]]` entry.
    pub fn new(config: FilesConfig) -> Self {
        // Validated with the config; an invalid template here writes bare values.
        let template = Template::parse(&config.line).unwrap_or(Template(vec![Piece::Value]));
        Self {
            config,
            template,
            list: BTreeMap::new(),
        }
    }

    /// The file's content for the current list at `now`.
    fn render(&self, now: Millis) -> String {
        let mut out = String::with_capacity(self.list.len() * 24 + 256);
        match self.config.format {
            Format::Plain => {
                push_block(&mut out, &self.config.header);
                for (net, until) in &self.list {
                    self.template.render(&mut out, net, *until, now);
                    out.push('\n');
                }
                push_block(&mut out, &self.config.footer);
            }
            Format::Ipset => {
                let v4 = &self.config.ipset_name;
                let v6 = format!("{v4}6");
                let _ = writeln!(out, "create {v4} hash:net family inet timeout 0 maxelem 1048576 -exist");
                let _ = writeln!(
                    out,
                    "create {v6} hash:net family inet6 timeout 0 maxelem 1048576 -exist"
                );
                let _ = writeln!(out, "flush {v4}");
                let _ = writeln!(out, "flush {v6}");
                for (net, until) in &self.list {
                    let set = if net.addr().is_ipv4() { v4 } else { &v6 };
                    let timeout = until.saturating_sub(now).div_ceil(1000).clamp(1, IPSET_MAX_TIMEOUT);
                    let _ = writeln!(out, "add {set} {} timeout {timeout} -exist", value(net));
                }
            }
            Format::Json => {
                let entries: Vec<serde_json::Value> = self
                    .list
                    .iter()
                    .map(|(net, until)| {
                        serde_json::json!({
                            "value": value(net),
                            "cidr": net.to_string(),
                            "until": rfc3339(*until),
                        })
                    })
                    .collect();
                let doc = serde_json::json!({
                    "updated": rfc3339(now),
                    "count": entries.len(),
                    "entries": entries,
                });
                out = format!("{doc:#}\n");
            }
        }
        out
    }

    async fn write(&self, now: Millis) -> anyhow::Result<()> {
        let text = self.render(now);
        let path = self.config.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, text.as_bytes(), FILE_MODE))
            .await
            .context("the writer task ended")??;
        self.run_hook().await
    }

    async fn run_hook(&self) -> anyhow::Result<()> {
        let Some((program, args)) = self.config.hook.split_first() else {
            return Ok(());
        };
        let run = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(HOOK_TIMEOUT, run)
            .await
            .map_err(|_| anyhow!("hook {program:?} still running after {}s", HOOK_TIMEOUT.as_secs()))?
            .with_context(|| format!("starting hook {program:?}"))?;
        if !out.status.success() {
            bail!(
                "hook {program:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

fn push_block(out: &mut String, text: &str) {
    if !text.is_empty() {
        out.push_str(text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
}

impl Enforcer for FilesEnforcer {
    fn name(&self) -> String {
        format!("file:{}", self.config.path.display())
    }

    async fn replace(&mut self, entries: &[NetBlock], now: Millis) -> anyhow::Result<()> {
        self.list = entries.iter().map(|e| (e.net, e.until)).collect();
        self.write(now).await
    }

    async fn apply(&mut self, set: &[NetBlock], removed: &[Removed], now: Millis) -> anyhow::Result<()> {
        for r in removed {
            self.list.remove(&r.net);
        }
        for e in set {
            self.list.insert(e.net, e.until);
        }
        self.write(now).await
    }

    /// Writes an empty list (an include that vanished could break the PBX's reload)
    /// and runs the hook.
    async fn remove(&mut self) -> anyhow::Result<()> {
        self.list.clear();
        if !self.config.path.exists() {
            return Ok(());
        }
        self.write(crate::now_ms()).await
    }

    fn min_interval(&self) -> Duration {
        self.config.min_interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(format: Format) -> FilesConfig {
        FilesConfig {
            path: "/nonexistent/list".into(),
            format,
            header: String::new(),
            line: default_line(),
            footer: String::new(),
            ipset_name: default_ipset_name(),
            hook: Vec::new(),
            min_interval: default_min_interval(),
        }
    }

    fn with(mut e: FilesEnforcer, nets: &[&str], until: Millis) -> FilesEnforcer {
        for n in nets {
            e.list.insert(n.parse().unwrap(), until);
        }
        e
    }

    #[test]
    fn plain_templates_render_every_placeholder() {
        let mut c = config(Format::Plain);
        c.header = "[acl]".into();
        c.line = "deny={addr}/{mask} ; {value} {cidr} {prefix_len} {until_unix} {timeout} {until}".into();
        c.footer = "; end".into();
        let e = with(FilesEnforcer::new(c), &["192.0.2.1/32", "198.51.100.0/24"], 3_600_000);
        assert_eq!(
            e.render(1_000),
            "[acl]\n\
             deny=192.0.2.1/255.255.255.255 ; 192.0.2.1 192.0.2.1/32 32 3600 3599 1970-01-01T01:00:00Z\n\
             deny=198.51.100.0/255.255.255.0 ; 198.51.100.0/24 198.51.100.0/24 24 3600 3599 1970-01-01T01:00:00Z\n\
             ; end\n"
        );
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        for (line, needle) in [
            ("{nope}", "unknown placeholder {nope}"),
            ("deny={value", "unclosed"),
            ("a\nb", "one line"),
        ] {
            let mut c = config(Format::Plain);
            c.line = line.into();
            let err = format!("{:#}", c.validate("enforce.files[0]").unwrap_err());
            assert!(err.contains("enforce.files[0].line") && err.contains(needle), "{err}");
        }
        let mut c = config(Format::Ipset);
        c.ipset_name = "no spaces".into();
        assert!(c.validate("k").is_err());
    }

    #[test]
    fn ipset_output_splits_families_and_bounds_timeouts() {
        let e = with(
            FilesEnforcer::new(config(Format::Ipset)),
            &["192.0.2.1/32", "2001:db8::/48"],
            10_000,
        );
        let text = e.render(0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                "create fraudmesh hash:net family inet timeout 0 maxelem 1048576 -exist",
                "create fraudmesh6 hash:net family inet6 timeout 0 maxelem 1048576 -exist",
                "flush fraudmesh",
                "flush fraudmesh6",
                "add fraudmesh 192.0.2.1 timeout 10 -exist",
                "add fraudmesh6 2001:db8::/48 timeout 10 -exist",
            ]
        );
        // Past its end but not yet removed: still a positive timeout.
        assert!(e.render(20_000).contains("192.0.2.1 timeout 1 "));
    }

    #[test]
    fn json_output_is_a_document_with_every_entry() {
        let e = with(FilesEnforcer::new(config(Format::Json)), &["192.0.2.1/32"], 10_000);
        let v: serde_json::Value = serde_json::from_str(&e.render(0)).unwrap();
        assert_eq!(v["count"], 1);
        assert_eq!(v["entries"][0]["value"], "192.0.2.1");
        assert_eq!(v["entries"][0]["cidr"], "192.0.2.1/32");
        assert_eq!(v["entries"][0]["until"], "1970-01-01T00:00:10Z");
    }

    #[test]
    fn atomic_writes_replace_the_file_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.txt");
        write_atomically(&path, b"one\n", FILE_MODE).unwrap();
        write_atomically(&path, b"two\n", FILE_MODE).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("list.txt")]);
        assert!(write_atomically(&dir.path().join("missing/list.txt"), b"x", FILE_MODE).is_err());
    }
}
