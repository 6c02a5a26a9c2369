//! Enforcers: keep the systems in front of the PBX (firewall, SIP proxy, ACL files)
//! equal to the decided list.
//!
//! Each enforcer implements [`Enforcer`]: it applies a diff (entries set with their end,
//! entries removed), replaces everything on start and whenever the external system lost
//! its state, and removes what it put there on `fraudmesh enforce --remove`. The
//! [`runner`] drives one per configured system from the engine's decision log: it applies
//! each change within milliseconds, retries failures with backoff (the node never stops
//! for them), counts them in metrics and keeps the state `fraudmesh enforce status`
//! shows. Only address and prefix blocks reach enforcers; number blocks are for call
//! policy.

pub mod files;
pub mod kamailio;
pub mod nftables;
pub mod runner;

use crate::engine::EngineHandle;
use crate::metrics::Metrics;
use fraudmesh::decisions::{Block, Change};
use fraudmesh::Millis;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub use runner::{EnforcerStatus, Enforcers};

/// An address or prefix to block, and when its block ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetBlock {
    /// What to block (a host is a /32 or /128).
    pub net: IpNet,
    /// When the block ends unless renewed, ms since the Unix epoch.
    pub until: Millis,
}

impl NetBlock {
    /// The entry of a decision, or `None` for a number block.
    pub fn of(d: &Block) -> Option<Self> {
        Some(Self {
            net: d.target.ip_net()?,
            until: d.until,
        })
    }

    /// Whole seconds left at `now`, at least 1 (an entry about to end still gets a
    /// timeout, never "forever").
    pub fn remaining_s(&self, now: Millis) -> u64 {
        self.until.saturating_sub(now).div_ceil(1000).max(1)
    }

    /// Whether this is a single address.
    pub fn is_host(&self) -> bool {
        self.net.prefix_len() == self.net.max_prefix_len()
    }
}

/// An address or prefix no longer blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// What was blocked.
    pub net: IpNet,
    /// True when its time ran out: an enforcer whose entries carry their own timeout has
    /// nothing to do (the entry is gone already or about to go); false when the block was
    /// lifted early (retraction, allowlist) and the entry must be deleted now.
    pub expired: bool,
}

/// Splits decision-log changes into what enforcers see.
pub fn split(changes: &[Change]) -> (Vec<NetBlock>, Vec<Removed>) {
    let mut set = Vec::new();
    let mut removed = Vec::new();
    for c in changes {
        match c {
            Change::Set(d) => set.extend(NetBlock::of(d)),
            Change::Removed { target, expired, .. } => {
                if let Some(net) = target.ip_net() {
                    removed.push(Removed { net, expired: *expired });
                }
            }
        }
    }
    (set, removed)
}

/// Something that enforces the list in an external system.
///
/// Calls never overlap. After an error the runner calls [`Enforcer::replace`] next, so an
/// enforcer need not undo a half-applied diff.
pub trait Enforcer: Send + 'static {
    /// Its name in status, logs and metric labels (`nftables`, `kamailio`, `file:PATH`).
    fn name(&self) -> String;

    /// Makes the system hold exactly `entries` (this enforcer's own entries: nothing
    /// else in the system is touched).
    fn replace(&mut self, entries: &[NetBlock], now: Millis) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Applies one diff: `set` are new entries or entries whose end moved; `removed` are
    /// entries to drop (see [`Removed::expired`]).
    fn apply(
        &mut self,
        set: &[NetBlock],
        removed: &[Removed],
        now: Millis,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Whether the system lost what was applied (it restarted, or someone flushed it);
    /// the runner then replaces everything. Asked every few seconds.
    fn lost_state(&mut self) -> impl Future<Output = anyhow::Result<bool>> + Send {
        async { Ok(false) }
    }

    /// Removes everything this enforcer put into the system.
    fn remove(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// The shortest time between two applies (changes meanwhile are batched). Zero for
    /// systems that take diffs cheaply.
    fn min_interval(&self) -> Duration {
        Duration::ZERO
    }
}

/// `[enforce]`: which systems to keep equal to the list. Everything is off by default:
/// the node blocks nothing anywhere until the operator says where.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EnforceConfig {
    /// `[[enforce.files]]`: list files for anything else.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<files::FilesConfig>,
    /// `[enforce.nftables]`: a table of its own dropping blocked sources; present = on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nftables: Option<nftables::NftablesConfig>,
    /// `[enforce.kamailio]`: a Kamailio htable over JSON-RPC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kamailio: Option<kamailio::KamailioConfig>,
}

impl EnforceConfig {
    /// Whether no enforcer is configured.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks every enforcer's settings; errors name the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut paths = std::collections::HashSet::new();
        for (i, f) in self.files.iter().enumerate() {
            f.validate(&format!("enforce.files[{i}]"))?;
            if !paths.insert(&f.path) {
                anyhow::bail!(
                    "enforce.files[{i}].path: {} is written by another entry too",
                    f.path.display()
                );
            }
        }
        if let Some(n) = &self.nftables {
            n.validate("enforce.nftables")?;
        }
        if let Some(k) = &self.kamailio {
            k.validate("enforce.kamailio")?;
        }
        Ok(())
    }

    /// Starts a runner for every configured enforcer.
    pub fn start(&self, engine: &EngineHandle, metrics: &Arc<Metrics>, shutdown: &watch::Receiver<bool>) -> Enforcers {
        let mut all = Enforcers::default();
        for f in &self.files {
            all.spawn(files::FilesEnforcer::new(f.clone()), engine, metrics, shutdown);
        }
        if let Some(n) = &self.nftables {
            all.spawn(nftables::NftablesEnforcer::new(n.clone()), engine, metrics, shutdown);
        }
        if let Some(k) = &self.kamailio {
            all.spawn(kamailio::KamailioEnforcer::new(k.clone()), engine, metrics, shutdown);
        }
        all
    }

    /// Removes what every configured enforcer put into its system; one line per
    /// enforcer, and whether all succeeded.
    pub async fn remove_all(&self) -> (Vec<String>, bool) {
        let mut lines = Vec::new();
        let mut ok = true;
        for f in &self.files {
            remove_one(files::FilesEnforcer::new(f.clone()), &mut lines, &mut ok).await;
        }
        if let Some(n) = &self.nftables {
            remove_one(nftables::NftablesEnforcer::new(n.clone()), &mut lines, &mut ok).await;
        }
        if let Some(k) = &self.kamailio {
            remove_one(kamailio::KamailioEnforcer::new(k.clone()), &mut lines, &mut ok).await;
        }
        (lines, ok)
    }
}

async fn remove_one(mut e: impl Enforcer, lines: &mut Vec<String>, ok: &mut bool) {
    match e.remove().await {
        Ok(()) => lines.push(format!("{}: removed", e.name())),
        Err(err) => {
            *ok = false;
            lines.push(format!("{}: {err:#}", e.name()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fraudmesh::target::Target;

    fn target(s: &str) -> Target {
        Target::parse(
            s,
            fraudmesh::target::Bounds {
                min_v4_len: 0,
                min_v6_len: 0,
            },
        )
        .unwrap()
    }

    #[test]
    fn only_addresses_and_prefixes_reach_enforcers() {
        let d = |t: &str, id| Block {
            id,
            target: target(t),
            since: 0,
            until: 5_000,
        };
        let changes = vec![
            Change::Set(d("192.0.2.1", 1)),
            Change::Set(d("+4190066", 2)),
            Change::Set(d("2001:db8::/48", 3)),
            Change::Removed {
                id: 4,
                target: target("198.51.100.7"),
                expired: true,
            },
            Change::Removed {
                id: 5,
                target: target("+4190067"),
                expired: false,
            },
        ];
        let (set, removed) = split(&changes);
        let nets: Vec<String> = set.iter().map(|e| e.net.to_string()).collect();
        assert_eq!(nets, vec!["192.0.2.1/32", "2001:db8::/48"]);
        assert!(set[0].is_host() && !set[1].is_host());
        assert_eq!(removed.len(), 1);
        assert!(removed[0].expired);
    }

    #[test]
    fn remaining_time_rounds_up_and_never_reaches_zero() {
        let e = NetBlock {
            net: "192.0.2.1/32".parse().unwrap(),
            until: 10_500,
        };
        assert_eq!(e.remaining_s(0), 11);
        assert_eq!(e.remaining_s(10_000), 1);
        assert_eq!(e.remaining_s(20_000), 1);
    }

    #[test]
    fn two_files_entries_may_not_write_one_path() {
        let text = "[[files]]\npath = \"/tmp/a\"\n[[files]]\npath = \"/tmp/a\"\nformat = \"json\"";
        let c: EnforceConfig = toml::from_str(text).unwrap();
        let err = format!("{:#}", c.validate().unwrap_err());
        assert!(err.contains("enforce.files[1].path"), "{err}");
    }
}
