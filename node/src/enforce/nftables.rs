//! The nftables enforcer: a table of its own (default `inet fraudmesh`) that drops
//! traffic from blocked addresses and prefixes to the SIP ports (or to every port).
//!
//! What the table holds:
//! - `hosts4` / `hosts6`: single addresses, hash sets with `flags timeout`. Hash sets
//!   stay fast at any size (100,000 load in about 0.4 s, a diff on 500,000 in ms).
//! - `nets4_LEN` / `nets6_LEN`: prefixes, one small `flags interval, timeout` set per
//!   prefix length in use (`nets4_24`, `nets6_48`). Interval sets get slow when large
//!   (every `nft` call on one holding 500k entries takes about a minute), so hosts never
//!   go there; and an interval set refuses overlapping elements, which prefixes of one
//!   length never are, while a /16 and a /24 inside it would be.
//! - `chain input` (hook input, policy accept) sends packets to the configured protocols
//!   and ports (or all packets with `all_ports`) to `chain block`, which drops those from
//!   an address in any of the sets.
//!
//! Every element carries its own timeout (the entry's remaining time), so a block ends
//! on time even if the node is down. Each change is one `nft -f -` transaction:
//! - a full replace declares the table, deletes it and declares it again complete with
//!   its elements, atomically: traffic is never unprotected, other tables are untouched;
//! - a diff must not fail as a whole because one element is in an unexpected state (in
//!   one transaction, deleting an absent element fails everything, and adding an element
//!   that exists keeps its old timeout). So a lifted block is `add` then `delete` (the
//!   add makes the delete safe whether or not the timeout already fired), and a renewal
//!   is `add`, `delete`, `add … timeout N`. An entry this enforcer never added (or whose
//!   timeout surely fired) is a plain `add … timeout N`, which keeps large diffs as cheap
//!   as a raw load. Blocks that ended by expiry need nothing.
//!
//! Whether the state was lost (`nft flush ruleset`, a restart of nftables.service) is a
//! terse listing of chains and sets, a few ms whatever the set sizes: listing rules or
//! elements would dump every element (seconds at 500k). `fraudmesh enforce --remove`
//! deletes the table.

use super::{Enforcer, NetBlock, Removed};
use anyhow::{anyhow, bail, Context};
use fraudmesh::Millis;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Elements per `add element` statement (keeps statements, and nft's error echoes of
/// them, of a bounded size).
const CHUNK: usize = 1000;
/// Longest element timeout written, seconds (a year; nft refuses far larger values).
pub const MAX_TIMEOUT_S: u64 = 365 * 24 * 3600;
/// Margin after an element's timeout before this enforcer counts it as surely gone.
const GONE_MARGIN: Duration = Duration::from_secs(2);
/// How often the record of what the kernel may still hold is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Lines of nft's stderr kept in an error, and characters per line (nft echoes the
/// offending statement, which may hold a thousand elements).
const ERR_LINES: usize = 6;
const ERR_LINE_CHARS: usize = 200;

/// `[enforce.nftables]`: its presence enables the enforcer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NftablesConfig {
    /// The table's family. Only `inet` (IPv4 and IPv6 in one table). Default `inet`.
    #[serde(default = "default_family")]
    pub family: String,
    /// The table's name; the enforcer owns it whole. Default `fraudmesh`.
    #[serde(default = "default_table")]
    pub table: String,
    /// Destination ports protected. Default `[5060, 5061]`.
    #[serde(default = "default_ports")]
    pub ports: Vec<u32>,
    /// Transport protocols protected: `udp`, `tcp`, `sctp`. Default `["udp", "tcp"]`.
    #[serde(default = "default_protocols")]
    pub protocols: Vec<String>,
    /// Drop everything from blocked sources, not only to `ports`. Default false.
    #[serde(default)]
    pub all_ports: bool,
    /// The input hook priority of the table's chain (lower runs earlier). Default -10.
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// The program and arguments that run nft, e.g. `["sudo", "nft"]` or
    /// `["ip", "netns", "exec", "pbx", "nft"]`. Default `["nft"]`.
    #[serde(default = "default_command")]
    pub command: Vec<String>,
}

fn default_family() -> String {
    "inet".into()
}

fn default_table() -> String {
    "fraudmesh".into()
}

fn default_ports() -> Vec<u32> {
    vec![5060, 5061]
}

fn default_protocols() -> Vec<String> {
    vec!["udp".into(), "tcp".into()]
}

fn default_priority() -> i32 {
    -10
}

fn default_command() -> Vec<String> {
    vec!["nft".into()]
}

impl Default for NftablesConfig {
    fn default() -> Self {
        Self {
            family: default_family(),
            table: default_table(),
            ports: default_ports(),
            protocols: default_protocols(),
            all_ports: false,
            priority: default_priority(),
            command: default_command(),
        }
    }
}

impl NftablesConfig {
    /// Checks the settings; errors start with `key`.
    pub fn validate(&self, key: &str) -> anyhow::Result<()> {
        if self.family != "inet" {
            bail!(
                "{key}.family: only \"inet\" is supported (one table for IPv4 and IPv6), got {:?}",
                self.family
            );
        }
        let t = &self.table;
        let name_ok = t.len() <= 64
            && t.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            bail!("{key}.table: 1 to 64 letters, digits or '_', starting with a letter, got {t:?}");
        }
        if let Some(p) = self.ports.iter().find(|p| !(1..=65535).contains(*p)) {
            bail!("{key}.ports: {p} is not a port (1 to 65535)");
        }
        if !self.all_ports && self.ports.is_empty() {
            bail!("{key}.ports: at least one port, or all_ports = true");
        }
        if let Some(p) = self
            .protocols
            .iter()
            .find(|p| !["udp", "tcp", "sctp"].contains(&p.as_str()))
        {
            bail!("{key}.protocols: {p:?} is not one of udp, tcp, sctp");
        }
        if !self.all_ports && self.protocols.is_empty() {
            bail!("{key}.protocols: at least one protocol, or all_ports = true");
        }
        if self.command.first().is_none_or(|p| p.is_empty()) {
            bail!("{key}.command: the first element is the program to run (e.g. \"nft\")");
        }
        Ok(())
    }
}

/// One of the table's sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetName {
    /// IPv4 hosts.
    Hosts4,
    /// IPv6 hosts.
    Hosts6,
    /// IPv4 prefixes of one length.
    Nets4(u8),
    /// IPv6 prefixes of one length.
    Nets6(u8),
}

impl SetName {
    /// The set an entry belongs to: hosts never go into an interval set.
    pub fn of(net: &IpNet) -> Self {
        let host = net.prefix_len() == net.max_prefix_len();
        match (net, host) {
            (IpNet::V4(_), true) => Self::Hosts4,
            (IpNet::V6(_), true) => Self::Hosts6,
            (IpNet::V4(n), false) => Self::Nets4(n.prefix_len()),
            (IpNet::V6(n), false) => Self::Nets6(n.prefix_len()),
        }
    }

    fn is_interval(self) -> bool {
        matches!(self, Self::Nets4(_) | Self::Nets6(_))
    }

    /// Its declaration inside the table block.
    fn declaration(self) -> String {
        let (ty, flags) = match self {
            Self::Hosts4 => ("ipv4_addr", "timeout"),
            Self::Hosts6 => ("ipv6_addr", "timeout"),
            Self::Nets4(_) => ("ipv4_addr", "interval, timeout"),
            Self::Nets6(_) => ("ipv6_addr", "interval, timeout"),
        };
        format!("set {self} {{ type {ty}; flags {flags}; }}")
    }

    /// The rule in `chain block` that drops traffic from it.
    fn rule(self) -> String {
        let proto = match self {
            Self::Hosts4 | Self::Nets4(_) => "ip",
            Self::Hosts6 | Self::Nets6(_) => "ip6",
        };
        format!("{proto} saddr @{self} drop")
    }
}

impl std::fmt::Display for SetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hosts4 => f.write_str("hosts4"),
            Self::Hosts6 => f.write_str("hosts6"),
            Self::Nets4(len) => write!(f, "nets4_{len}"),
            Self::Nets6(len) => write!(f, "nets6_{len}"),
        }
    }
}

/// An element as nft writes it: a bare address for hosts, CIDR for prefixes.
fn element(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

fn timeout_s(e: &NetBlock, now: Millis) -> u64 {
    e.remaining_s(now).min(MAX_TIMEOUT_S)
}

/// What one diff does to one set.
#[derive(Debug, Default)]
struct SetOps {
    /// Added then deleted: lifted blocks and renewals (first half).
    delete: Vec<IpNet>,
    /// Added with a timeout: new entries and renewals (second half).
    add: Vec<(IpNet, u64)>,
}

/// Keeps the nftables table equal to the list.
pub struct NftablesEnforcer {
    config: NftablesConfig,
    /// Interval sets the table holds (declared by the last replace or a later diff).
    net_sets: BTreeSet<SetName>,
    /// Elements the kernel may hold, and until when at the latest (monotonic, like the
    /// kernel's timeouts). Pruned now and then.
    present: HashMap<IpNet, Instant>,
    last_prune: Instant,
}

impl NftablesEnforcer {
    /// An enforcer for a validated `[enforce.nftables]`.
    pub fn new(config: NftablesConfig) -> Self {
        Self {
            config,
            net_sets: BTreeSet::new(),
            present: HashMap::new(),
            last_prune: Instant::now(),
        }
    }

    /// `family name`, as statements name the table.
    fn table(&self) -> String {
        format!("{} {}", self.config.family, self.config.table)
    }

    /// The rule of `chain input` that sends packets to `chain block`.
    fn jump_rule(&self) -> String {
        if self.config.all_ports {
            return "jump block".into();
        }
        let list = |items: Vec<String>| {
            if items.len() == 1 {
                items.into_iter().next().unwrap_or_default()
            } else {
                format!("{{ {} }}", items.join(", "))
            }
        };
        let protos = list(self.config.protocols.clone());
        let ports = list(self.config.ports.iter().map(u32::to_string).collect());
        format!("meta l4proto {protos} th dport {ports} jump block")
    }

    /// The full replace: the table declared (so the delete cannot fail), deleted, and
    /// declared again complete with every element; one transaction. Returns the script
    /// and the interval sets it declares.
    pub fn replace_script(&self, entries: &[NetBlock], now: Millis) -> (String, BTreeSet<SetName>) {
        let mut by_set: BTreeMap<SetName, Vec<&NetBlock>> = BTreeMap::new();
        by_set.insert(SetName::Hosts4, Vec::new());
        by_set.insert(SetName::Hosts6, Vec::new());
        for e in entries {
            by_set.entry(SetName::of(&e.net)).or_default().push(e);
        }
        let table = self.table();
        let mut s = String::with_capacity(entries.len() * 32 + 1024);
        let _ = writeln!(s, "table {table}\ndelete table {table}\ntable {table} {{");
        for set in by_set.keys() {
            let _ = writeln!(s, "\t{}", set.declaration());
        }
        let _ = writeln!(
            s,
            "\tchain input {{\n\t\ttype filter hook input priority {}; policy accept;\n\t\t{}\n\t}}",
            self.config.priority,
            self.jump_rule()
        );
        s.push_str("\tchain block {\n");
        for set in by_set.keys() {
            let _ = writeln!(s, "\t\t{}", set.rule());
        }
        s.push_str("\t}\n}\n");
        for (set, list) in &by_set {
            for chunk in list.chunks(CHUNK) {
                let _ = write!(s, "add element {table} {set} {{ ");
                for (i, e) in chunk.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    let _ = write!(s, "{sep}{} timeout {}s", element(&e.net), timeout_s(e, now));
                }
                s.push_str(" }\n");
            }
        }
        let nets = by_set.into_keys().filter(|s| s.is_interval()).collect();
        (s, nets)
    }

    /// One diff as one transaction, or `None` when there is nothing to do. Returns the
    /// script and the interval sets it declares.
    pub fn diff_script(&self, set: &[NetBlock], removed: &[Removed], now: Millis) -> Option<(String, Vec<SetName>)> {
        let at = Instant::now();
        let may_hold = |net: &IpNet| self.present.get(net).is_some_and(|until| *until > at);
        // Removals first, then sets (a target in both ends up set); the last set wins.
        let mut last: HashMap<IpNet, Option<u64>> = HashMap::with_capacity(set.len() + removed.len());
        let mut order: Vec<IpNet> = Vec::with_capacity(set.len() + removed.len());
        for r in removed.iter().filter(|r| !r.expired) {
            if last.insert(r.net, None).is_none() {
                order.push(r.net);
            }
        }
        for e in set {
            if last.insert(e.net, Some(timeout_s(e, now))).is_none() {
                order.push(e.net);
            }
        }
        let mut ops: BTreeMap<SetName, SetOps> = BTreeMap::new();
        for net in order {
            let name = SetName::of(&net);
            let timeout = last.get(&net).copied().flatten();
            // A set never declared since the last replace cannot hold what is lifted.
            if timeout.is_none() && name.is_interval() && !self.net_sets.contains(&name) {
                continue;
            }
            let o = ops.entry(name).or_default();
            match timeout {
                None => o.delete.push(net),
                Some(t) => {
                    if may_hold(&net) {
                        o.delete.push(net);
                    }
                    o.add.push((net, t));
                }
            }
        }
        if ops.is_empty() {
            return None;
        }
        let table = self.table();
        let mut s = String::with_capacity(set.len() * 32 + removed.len() * 48 + 256);
        let mut declared = Vec::new();
        for name in ops.keys().filter(|n| n.is_interval() && !self.net_sets.contains(n)) {
            let _ = writeln!(
                s,
                "add {}",
                name.declaration().replacen("set ", &format!("set {table} "), 1)
            );
            let _ = writeln!(s, "add rule {table} block {}", name.rule());
            declared.push(*name);
        }
        for (name, o) in &ops {
            let list = |nets: &[IpNet]| nets.iter().map(element).collect::<Vec<_>>().join(", ");
            for chunk in o.delete.chunks(CHUNK) {
                let _ = writeln!(s, "add element {table} {name} {{ {} }}", list(chunk));
                let _ = writeln!(s, "delete element {table} {name} {{ {} }}", list(chunk));
            }
            for chunk in o.add.chunks(CHUNK) {
                let _ = write!(s, "add element {table} {name} {{ ");
                for (i, (net, t)) in chunk.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    let _ = write!(s, "{sep}{} timeout {t}s", element(net));
                }
                s.push_str(" }\n");
            }
        }
        Some((s, declared))
    }

    /// Runs nft with `args`, `script` on its stdin; returns stdout.
    async fn nft(&self, args: &[&str], script: &str) -> anyhow::Result<String> {
        let (program, pre) = self
            .config
            .command
            .split_first()
            .ok_or_else(|| anyhow!("enforce.nftables.command is empty"))?;
        let mut child = tokio::process::Command::new(program)
            .args(pre)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {:?}", self.config.command))?;
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("nft's stdin"))?;
        let bytes = script.as_bytes().to_vec();
        let write = async move {
            let r = stdin.write_all(&bytes).await;
            drop(stdin);
            r
        };
        let (written, out) = tokio::join!(write, child.wait_with_output());
        let out = out.with_context(|| format!("running {:?}", self.config.command))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let mut lines: Vec<String> = stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(ERR_LINES)
                .map(|l| match l.char_indices().nth(ERR_LINE_CHARS) {
                    Some((i, _)) => format!("{}…", &l[..i]),
                    None => l.to_string(),
                })
                .collect();
            if lines.is_empty() {
                lines.push("no message".into());
            }
            bail!("nft failed ({}): {}", out.status, lines.join(" | "));
        }
        written.context("writing the script to nft")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn remember(&mut self, net: IpNet, timeout_s: u64) {
        let until = Instant::now() + Duration::from_secs(timeout_s) + GONE_MARGIN;
        self.present.insert(net, until);
    }

    /// The chains and sets of this enforcer's table in a terse listing of `family`'s
    /// chains and sets (declarations only).
    fn parse_listing(&self, text: &str) -> BTreeSet<String> {
        let header = format!("table {} {{", self.table());
        let mut ours = false;
        let mut names = BTreeSet::new();
        for line in text.lines() {
            if line.starts_with("table ") {
                ours = line.trim_end() == header;
                continue;
            }
            if line.starts_with('}') {
                ours = false;
                continue;
            }
            let t = line.trim();
            if ours && t.ends_with('{') && (t.starts_with("chain ") || t.starts_with("set ")) {
                names.insert(t.trim_end_matches('{').trim().to_string());
            }
        }
        names
    }
}

impl Enforcer for NftablesEnforcer {
    fn name(&self) -> String {
        "nftables".into()
    }

    async fn replace(&mut self, entries: &[NetBlock], now: Millis) -> anyhow::Result<()> {
        let (script, nets) = self.replace_script(entries, now);
        self.net_sets.clear();
        self.present.clear();
        self.nft(&["-f", "-"], &script)
            .await
            .with_context(|| format!("loading table {} ({} entries)", self.table(), entries.len()))?;
        self.net_sets = nets;
        for e in entries {
            self.remember(e.net, timeout_s(e, now));
        }
        self.last_prune = Instant::now();
        Ok(())
    }

    async fn apply(&mut self, set: &[NetBlock], removed: &[Removed], now: Millis) -> anyhow::Result<()> {
        let Some((script, declared)) = self.diff_script(set, removed, now) else {
            return Ok(());
        };
        self.nft(&["-f", "-"], &script).await.with_context(|| {
            format!(
                "applying {} set and {} removed to table {}",
                set.len(),
                removed.len(),
                self.table()
            )
        })?;
        self.net_sets.extend(declared);
        for r in removed.iter().filter(|r| !r.expired) {
            self.present.remove(&r.net);
        }
        for e in set {
            self.remember(e.net, timeout_s(e, now));
        }
        if self.last_prune.elapsed() >= PRUNE_EVERY {
            let at = Instant::now();
            self.present.retain(|_, until| *until > at);
            self.last_prune = at;
        }
        Ok(())
    }

    /// True when the table, a chain or a set of it is missing. Rules and elements are
    /// not listed: that would dump every element, seconds at 500,000.
    async fn lost_state(&mut self) -> anyhow::Result<bool> {
        let family = self.config.family.clone();
        let script = format!("list chains {family}\nlist sets {family}\n");
        let text = self
            .nft(&["-t", "-f", "-"], &script)
            .await
            .context("listing nftables chains and sets")?;
        let names = self.parse_listing(&text);
        let mut want = vec!["chain input".to_string(), "chain block".to_string()];
        want.extend(
            [SetName::Hosts4, SetName::Hosts6]
                .iter()
                .chain(&self.net_sets)
                .map(|s| format!("set {s}")),
        );
        Ok(want.iter().any(|w| !names.contains(w)))
    }

    /// Deletes the table (declared first, so an absent table is no error).
    async fn remove(&mut self) -> anyhow::Result<()> {
        let table = self.table();
        self.nft(&["-f", "-"], &format!("table {table}\ndelete table {table}\n"))
            .await
            .with_context(|| format!("deleting table {table}"))?;
        self.net_sets.clear();
        self.present.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(net: &str, until: Millis) -> NetBlock {
        NetBlock {
            net: net.parse().unwrap(),
            until,
        }
    }

    fn removed(net: &str, expired: bool) -> Removed {
        Removed {
            net: net.parse().unwrap(),
            expired,
        }
    }

    #[test]
    fn replace_declares_the_whole_table_in_one_transaction() {
        let e = NftablesEnforcer::new(NftablesConfig::default());
        let entries = [
            entry("192.0.2.1/32", 10_000),
            entry("2001:db8::1/128", 20_000),
            entry("198.51.100.0/24", 30_000),
            entry("203.0.113.0/24", 30_000),
            entry("10.1.0.0/16", 30_000),
            entry("2001:db8:1::/48", 40_500),
        ];
        let (script, nets) = e.replace_script(&entries, 0);
        assert_eq!(
            script,
            "table inet fraudmesh\n\
             delete table inet fraudmesh\n\
             table inet fraudmesh {\n\
             \tset hosts4 { type ipv4_addr; flags timeout; }\n\
             \tset hosts6 { type ipv6_addr; flags timeout; }\n\
             \tset nets4_16 { type ipv4_addr; flags interval, timeout; }\n\
             \tset nets4_24 { type ipv4_addr; flags interval, timeout; }\n\
             \tset nets6_48 { type ipv6_addr; flags interval, timeout; }\n\
             \tchain input {\n\
             \t\ttype filter hook input priority -10; policy accept;\n\
             \t\tmeta l4proto { udp, tcp } th dport { 5060, 5061 } jump block\n\
             \t}\n\
             \tchain block {\n\
             \t\tip saddr @hosts4 drop\n\
             \t\tip6 saddr @hosts6 drop\n\
             \t\tip saddr @nets4_16 drop\n\
             \t\tip saddr @nets4_24 drop\n\
             \t\tip6 saddr @nets6_48 drop\n\
             \t}\n\
             }\n\
             add element inet fraudmesh hosts4 { 192.0.2.1 timeout 10s }\n\
             add element inet fraudmesh hosts6 { 2001:db8::1 timeout 20s }\n\
             add element inet fraudmesh nets4_16 { 10.1.0.0/16 timeout 30s }\n\
             add element inet fraudmesh nets4_24 { 198.51.100.0/24 timeout 30s, 203.0.113.0/24 timeout 30s }\n\
             add element inet fraudmesh nets6_48 { 2001:db8:1::/48 timeout 41s }\n"
        );
        assert_eq!(
            nets.into_iter().collect::<Vec<_>>(),
            vec![SetName::Nets4(16), SetName::Nets4(24), SetName::Nets6(48)]
        );
    }

    #[test]
    fn an_empty_list_still_declares_the_host_sets_and_chains() {
        let e = NftablesEnforcer::new(NftablesConfig::default());
        let (script, nets) = e.replace_script(&[], 0);
        assert!(nets.is_empty());
        assert!(script.contains("set hosts4 {") && script.contains("set hosts6 {"));
        assert!(script.contains("ip6 saddr @hosts6 drop"));
        assert!(!script.contains("add element"));
    }

    #[test]
    fn hosts_never_go_into_interval_sets() {
        let e = NftablesEnforcer::new(NftablesConfig::default());
        let entries: Vec<NetBlock> = (0..3000u32)
            .map(|i| NetBlock {
                net: IpNet::new(std::net::Ipv4Addr::from(0xC000_0000 + i).into(), 32).unwrap(),
                until: 5_000,
            })
            .collect();
        let (script, nets) = e.replace_script(&entries, 0);
        assert!(nets.is_empty());
        let adds: Vec<&str> = script.lines().filter(|l| l.starts_with("add element")).collect();
        assert_eq!(adds.len(), 3, "chunks of {CHUNK}");
        assert!(adds
            .iter()
            .all(|l| l.starts_with("add element inet fraudmesh hosts4 {")));
        assert_eq!(SetName::of(&"2001:db8::5/128".parse().unwrap()), SetName::Hosts6);
        assert_eq!(SetName::of(&"2001:db8::/127".parse().unwrap()), SetName::Nets6(127));
    }

    #[test]
    fn a_diff_adds_new_entries_plainly_and_renews_or_lifts_robustly() {
        let mut e = NftablesEnforcer::new(NftablesConfig::default());
        e.net_sets.insert(SetName::Nets4(24));
        let later = Instant::now() + Duration::from_secs(60);
        for held in ["192.0.2.2/32", "192.0.2.3/32", "198.51.100.0/24"] {
            e.present.insert(held.parse().unwrap(), later);
        }
        let set = [
            entry("192.0.2.1/32", 10_000), // new
            entry("192.0.2.2/32", 20_000), // renewed
            entry("2001:db8::/48", 5_000), // new, in a set not yet declared
        ];
        let gone = [
            removed("192.0.2.3/32", false),    // retracted
            removed("192.0.2.4/32", true),     // expired: its timeout does it
            removed("198.51.100.0/24", false), // retracted prefix
            removed("203.0.113.0/28", false),  // a set never declared: nothing to do
        ];
        let (script, declared) = e.diff_script(&set, &gone, 0).unwrap();
        assert_eq!(
            script,
            "add set inet fraudmesh nets6_48 { type ipv6_addr; flags interval, timeout; }\n\
             add rule inet fraudmesh block ip6 saddr @nets6_48 drop\n\
             add element inet fraudmesh hosts4 { 192.0.2.3, 192.0.2.2 }\n\
             delete element inet fraudmesh hosts4 { 192.0.2.3, 192.0.2.2 }\n\
             add element inet fraudmesh hosts4 { 192.0.2.1 timeout 10s, 192.0.2.2 timeout 20s }\n\
             add element inet fraudmesh nets4_24 { 198.51.100.0/24 }\n\
             delete element inet fraudmesh nets4_24 { 198.51.100.0/24 }\n\
             add element inet fraudmesh nets6_48 { 2001:db8::/48 timeout 5s }\n"
        );
        assert_eq!(declared, vec![SetName::Nets6(48)]);
        // Only expiries: nothing to run.
        assert!(e.diff_script(&[], &[removed("192.0.2.4/32", true)], 0).is_none());
    }

    #[test]
    fn a_target_lifted_and_set_in_one_diff_ends_up_set_once() {
        let mut e = NftablesEnforcer::new(NftablesConfig::default());
        e.present.insert(
            "192.0.2.9/32".parse().unwrap(),
            Instant::now() + Duration::from_secs(60),
        );
        let set = [entry("192.0.2.9/32", 3_000), entry("192.0.2.9/32", 9_000)];
        let (script, _) = e.diff_script(&set, &[removed("192.0.2.9/32", false)], 0).unwrap();
        assert_eq!(
            script,
            "add element inet fraudmesh hosts4 { 192.0.2.9 }\n\
             delete element inet fraudmesh hosts4 { 192.0.2.9 }\n\
             add element inet fraudmesh hosts4 { 192.0.2.9 timeout 9s }\n"
        );
    }

    #[test]
    fn ports_protocols_and_all_ports_shape_the_jump() {
        let mut c = NftablesConfig {
            ports: vec![5080],
            protocols: vec!["udp".into()],
            priority: 5,
            table: "voip_guard".into(),
            ..NftablesConfig::default()
        };
        let e = NftablesEnforcer::new(c.clone());
        let (script, _) = e.replace_script(&[], 0);
        assert!(script.contains("table inet voip_guard {"), "{script}");
        assert!(script.contains(
            "\t\ttype filter hook input priority 5; policy accept;\n\t\tmeta l4proto udp th dport 5080 jump block\n"
        ));
        c.all_ports = true;
        let (script, _) = NftablesEnforcer::new(c).replace_script(&[], 0);
        assert!(script.contains("policy accept;\n\t\tjump block\n"), "{script}");
    }

    #[test]
    fn timeouts_are_the_remaining_time_within_bounds() {
        let e = NftablesEnforcer::new(NftablesConfig::default());
        let far = MAX_TIMEOUT_S * 1000 * 3;
        let (script, _) = e.replace_script(&[entry("192.0.2.1/32", 1_500), entry("192.0.2.2/32", far)], 1_000);
        assert!(
            script.contains("192.0.2.1 timeout 1s, 192.0.2.2 timeout 31536000s"),
            "{script}"
        );
    }

    #[test]
    fn bad_settings_are_refused_with_the_key() {
        let k = "enforce.nftables";
        let with = |change: fn(&mut NftablesConfig)| {
            let mut c = NftablesConfig::default();
            change(&mut c);
            c
        };
        let bad = [
            (with(|c| c.family = "ip".into()), "family"),
            (with(|c| c.table = "no spaces".into()), "table"),
            (with(|c| c.table = "1abc".into()), "table"),
            (with(|c| c.ports = vec![0]), "ports"),
            (with(|c| c.ports = vec![65536]), "ports"),
            (with(|c| c.ports = vec![]), "ports"),
            (with(|c| c.protocols = vec!["icmp".into()]), "protocols"),
            (with(|c| c.command = vec![]), "command"),
        ];
        for (c, key) in bad {
            let err = format!("{:#}", c.validate(k).unwrap_err());
            assert!(err.starts_with(&format!("{k}.{key}:")), "{err}");
        }
        NftablesConfig::default().validate(k).unwrap();
        NftablesConfig {
            ports: vec![],
            all_ports: true,
            ..Default::default()
        }
        .validate(k)
        .unwrap();
        let c: NftablesConfig = toml::from_str("command = [\"sudo\", \"nft\"]").unwrap();
        assert_eq!(c.ports, vec![5060, 5061]);
        assert_eq!(c.command, vec!["sudo", "nft"]);
    }

    #[test]
    fn the_listing_is_read_for_this_table_only() {
        let e = NftablesEnforcer::new(NftablesConfig::default());
        let text = "table inet other {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n\
                    table inet fraudmesh {\n\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n\t}\n\tchain block {\n\t}\n}\n\
                    table inet other {\n\tset hosts6 {\n\t\ttype ipv6_addr\n\t}\n}\n\
                    table inet fraudmesh {\n\tset hosts4 {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t}\n\tset nets4_24 {\n\t\ttype ipv4_addr\n\t\tflags interval,timeout\n\t}\n}\n";
        let names: Vec<String> = e.parse_listing(text).into_iter().collect();
        assert_eq!(names, vec!["chain block", "chain input", "set hosts4", "set nets4_24"]);
    }
}
