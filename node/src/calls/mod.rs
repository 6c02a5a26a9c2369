//! Call authorisation on the node: the `[calls]` config, starting the actor
//! (`calls/actor.rs`) that owns the core's call policy and writes every account's
//! counters and locks to their own sled database (`calls/store.rs`, `DIR/calls/`) before
//! it answers (earlier versions' format, imported once: `calls/legacy.rs`), and the handle
//! through which the HTTP API asks it.
//!
//! Fraud numbers come from the mesh: number targets blocked by the node's decided list
//! (number sightings from trusted reporters, the same rule as addresses). A breach can
//! report the dialled number to the mesh (`report_on_breach`).

mod actor;
mod legacy;
mod store;

pub use store::{CallStore, LEGACY_TREE};

use crate::engine::EngineHandle;
use crate::metrics::Metrics;
use actor::Cmd;
use anyhow::{anyhow, bail, Context};
use fraudmesh::calls::account::CallLimits;
use fraudmesh::calls::number;
use fraudmesh::calls::policy::{AccountRules, CallDecision, CallRequest, CallRules, Countries};
use fraudmesh::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Requests waiting for the actor.
const QUEUE: usize = 4096;

/// `[calls]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// ISO code of the home country: national numbers are read as its. Default `CH`.
    pub home_country: String,
    /// Deny premium-rate numbers (libphonenumber's type). Default true.
    pub deny_premium: bool,
    /// More premium prefixes, E.164 with `+` (e.g. `"+4184"`).
    pub premium_prefixes: Vec<String>,
    /// Calling codes never allowed (e.g. `[882, 883]`).
    pub deny_countries: Vec<u16>,
    /// If not empty: only these calling codes (and the home country) are allowed.
    pub allow_only_countries: Vec<u16>,
    /// CallLimits of every account.
    pub limits: LimitsConfig,
    /// Lock an account on a breach until `fraudmesh accounts unlock`. Default true.
    pub lock_on_breach: bool,
    /// Report the dialled number to the mesh (kind toll-fraud) on a breach. Default false.
    pub report_on_breach: bool,
    /// A call not ended after this long stops counting as in progress. Default 4h.
    #[serde(with = "humantime_serde")]
    pub max_call: Duration,
    /// What the API answers when the node cannot decide: `allow` (fail open) or `deny`
    /// (fail closed). Default `allow`.
    pub on_error: OnError,
    /// Numbers that always pass, like emergency numbers (rule `always-allow`), before
    /// every other rule and never counted: E.164 (`"+41800123456"`), national
    /// (`"0800 123 456"`, matching every form of the same number) or short numbers
    /// (`"1414"`).
    pub always_allow: Vec<String>,
    /// E.164 prefixes or numbers with `+` (e.g. `"+41446681"`) the mesh's fraud-number
    /// rule never denies; the local premium, country and limit rules still apply.
    pub never_deny: Vec<String>,
    /// Most accounts with call state; a call of a further account is denied
    /// (`too-many-accounts`), emergency calls excepted. Default 10000.
    pub max_accounts: usize,
    /// Per-account overrides: `[calls.accounts.NAME]`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub accounts: BTreeMap<String, AccountConfig>,
}

/// What to answer when the node cannot decide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Let the call through (a node problem never stops calls).
    #[default]
    Allow,
    /// Refuse the call (no call without a decision).
    Deny,
}

/// CallLimits (absent: unlimited).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Calls started in any hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_per_hour: Option<u32>,
    /// Calls started in any 24 hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_per_day: Option<u32>,
    /// Calls at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<u32>,
    /// International calls in any 24 hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub international_per_day: Option<u32>,
    /// Minutes of calls in any 24 hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minutes_per_day: Option<u32>,
}

impl From<LimitsConfig> for CallLimits {
    fn from(l: LimitsConfig) -> Self {
        CallLimits {
            calls_per_hour: l.calls_per_hour,
            calls_per_day: l.calls_per_day,
            concurrent: l.concurrent,
            international_per_day: l.international_per_day,
            minutes_per_day: l.minutes_per_day,
        }
    }
}

/// `[calls.accounts.NAME]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AccountConfig {
    /// May call premium-rate numbers.
    pub allow_premium: bool,
    /// Calling codes never allowed for this account (replaces the global lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny_countries: Option<Vec<u16>>,
    /// Only these calling codes for this account (replaces the global lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_only_countries: Option<Vec<u16>>,
    /// CallLimits of this account (replaces the global limits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsConfig>,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            home_country: "CH".into(),
            deny_premium: true,
            premium_prefixes: Vec::new(),
            deny_countries: Vec::new(),
            allow_only_countries: Vec::new(),
            limits: LimitsConfig::default(),
            lock_on_breach: true,
            report_on_breach: false,
            max_call: Duration::from_secs(4 * 3600),
            on_error: OnError::Allow,
            always_allow: Vec::new(),
            never_deny: Vec::new(),
            max_accounts: fraudmesh::calls::policy::DEFAULT_MAX_ACCOUNTS,
            accounts: BTreeMap::new(),
        }
    }
}

fn countries(deny: &[u16], allow_only: &[u16], key: &str) -> anyhow::Result<Countries> {
    for c in deny.iter().chain(allow_only) {
        if *c == 0 || *c > 999 {
            bail!("{key}: {c} is not a country calling code (1 to 999)");
        }
    }
    match (deny.is_empty(), allow_only.is_empty()) {
        (true, true) => Ok(Countries::Any),
        (false, true) => Ok(Countries::Deny(deny.iter().copied().collect())),
        (true, false) => Ok(Countries::AllowOnly(allow_only.iter().copied().collect())),
        (false, false) => bail!("{key}: give deny_countries or allow_only_countries, not both"),
    }
}

impl CallsConfig {
    /// Whether everything is at its default.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Validates into the core's rules; errors name the key.
    pub fn compile(&self) -> anyhow::Result<CallRules> {
        let home = number::region(&self.home_country)
            .filter(|r| number::calling_code(*r).is_some())
            .ok_or_else(|| {
                anyhow!(
                    "calls.home_country: {:?} is not an ISO country code such as CH or DE",
                    self.home_country
                )
            })?;
        let mut rules = CallRules::new(home);
        rules.deny_premium = self.deny_premium;
        for (i, p) in self.premium_prefixes.iter().enumerate() {
            let digits = p.strip_prefix('+').unwrap_or(p);
            fraudmesh::blocklist::validate_number_prefix(digits)
                .map_err(|e| anyhow!("calls.premium_prefixes[{i}]: {p:?}: {e}"))?;
            rules.premium_prefixes.push(digits.to_string());
        }
        for (i, n) in self.always_allow.iter().enumerate() {
            let key = number::allow_key(n, home).ok_or_else(|| {
                anyhow!(
                    "calls.always_allow[{i}]: {n:?} is not a number of {}: give it in E.164 (+41…), national \
                     form, or as a short number of at most {} digits",
                    self.home_country,
                    fraudmesh::calls::emergency::MAX_SHORT_DIGITS
                )
            })?;
            rules.always_allow.insert(key);
        }
        for (i, p) in self.never_deny.iter().enumerate() {
            let digits = p.strip_prefix('+').ok_or_else(|| {
                anyhow!("calls.never_deny[{i}]: {p:?}: give an E.164 prefix with +, e.g. \"+41446681\"")
            })?;
            fraudmesh::blocklist::validate_number_prefix(digits)
                .map_err(|e| anyhow!("calls.never_deny[{i}]: {p:?}: {e}"))?;
            rules.never_deny.push(digits.to_string());
        }
        if self.max_accounts == 0 {
            bail!("calls.max_accounts: must be at least 1");
        }
        rules.max_accounts = self.max_accounts;
        rules.countries = countries(&self.deny_countries, &self.allow_only_countries, "calls")?;
        rules.limits = self.limits.into();
        rules.limits.check().map_err(|e| anyhow!("calls.limits: {e}"))?;
        rules.lock_on_breach = self.lock_on_breach;
        rules.report_on_breach = self.report_on_breach;
        rules.max_call_ms = self.max_call.as_millis() as u64;
        if rules.max_call_ms == 0 {
            bail!("calls.max_call: must be above zero");
        }
        for (name, a) in &self.accounts {
            let key = format!("calls.accounts.{name}");
            let countries = match (&a.deny_countries, &a.allow_only_countries) {
                (None, None) => None,
                (d, o) => Some(countries(
                    d.as_deref().unwrap_or(&[]),
                    o.as_deref().unwrap_or(&[]),
                    &key,
                )?),
            };
            let limits: Option<CallLimits> = a.limits.map(Into::into);
            if let Some(l) = &limits {
                l.check().map_err(|e| anyhow!("{key}.limits: {e}"))?;
            }
            rules.accounts.insert(
                name.clone(),
                AccountRules {
                    allow_premium: a.allow_premium,
                    countries,
                    limits,
                },
            );
        }
        Ok(rules)
    }
}

/// One account's figures for `accounts list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountView {
    /// Its name.
    pub account: String,
    /// Whether it is locked.
    pub locked: bool,
    /// Why, when locked.
    pub lock_reason: Option<String>,
    /// Since when, ms since the epoch.
    pub locked_since: Option<Millis>,
    /// Calls started in the last hour.
    pub calls_last_hour: u64,
    /// Calls started in the last 24 hours.
    pub calls_last_day: u64,
    /// International calls started in the last 24 hours.
    pub international_last_day: u64,
    /// Calls in progress.
    pub active: u64,
    /// Minutes of calls in the last 24 hours (ended and in progress).
    pub minutes_last_day: u64,
}

/// The way to the call policy actor.
#[derive(Clone)]
pub struct CallsHandle {
    tx: mpsc::Sender<Cmd>,
    /// What to answer when the node cannot decide.
    pub on_error: OnError,
}

impl CallsHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> anyhow::Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| anyhow!("the call policy stopped"))?;
        rx.await.map_err(|_| anyhow!("the call policy stopped"))
    }

    /// Decides a call; counts it when `count` (and it is allowed).
    pub async fn authorize(&self, req: CallRequest, count: bool) -> anyhow::Result<CallDecision> {
        self.ask(|reply| Cmd::Authorize { req, count, reply }).await?
    }

    /// Ends `account`'s call `call_id`; whether it was in progress (another account's
    /// call is not ended).
    pub async fn end(&self, account: String, call_id: String) -> anyhow::Result<bool> {
        self.ask(|reply| Cmd::End {
            account,
            call_id,
            reply,
        })
        .await?
    }

    /// Every account with state.
    pub async fn accounts(&self) -> anyhow::Result<Vec<AccountView>> {
        self.ask(|reply| Cmd::Accounts { reply }).await
    }

    /// Lifts a lock; whether the account was locked.
    pub async fn unlock(&self, account: String) -> anyhow::Result<bool> {
        self.ask(|reply| Cmd::Unlock { account, reply }).await?
    }
}

/// Starts the actor over `store` (opened with [`CallStore::open`]), restoring every
/// account it holds.
pub fn start(
    rules: CallRules,
    on_error: OnError,
    store: CallStore,
    engine: EngineHandle,
    metrics: Arc<Metrics>,
    ttl_s: u32,
) -> anyhow::Result<(CallsHandle, std::thread::JoinHandle<()>)> {
    metrics.call_store_skipped.inc_by(store.skipped());
    let counters = actor::Counters::restore(rules, store, crate::now_ms());
    let (tx, rx) = mpsc::channel(QUEUE);
    let actor = actor::Actor {
        counters,
        engine,
        metrics,
        ttl_s,
        runtime: tokio::runtime::Handle::current(),
    };
    tokio::spawn(actor::housekeeping(tx.downgrade()));
    // A thread of its own, at normal priority (the runtime's threads run below it, see
    // crate::priority): decisions and flushes never wait for the mesh's work.
    let thread = std::thread::Builder::new()
        .name("calls".into())
        .spawn(move || actor.run(rx))
        .context("starting the call policy's thread")?;
    Ok((CallsHandle { tx, on_error }, thread))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> anyhow::Result<CallRules> {
        let c: CallsConfig = toml::from_str(text).map_err(|e| anyhow!("{e}"))?;
        c.compile()
    }

    #[test]
    fn defaults_compile_and_bad_keys_are_named() {
        let r = compile("").unwrap();
        assert!(r.deny_premium && r.lock_on_breach && !r.report_on_breach);
        for (text, needle) in [
            ("home_country = \"Narnia\"", "calls.home_country"),
            ("premium_prefixes = [\"+41x\"]", "calls.premium_prefixes[0]"),
            ("deny_countries = [1000]", "calling code"),
            ("deny_countries = [44]\nallow_only_countries = [49]", "not both"),
            (
                "[accounts.a]\ndeny_countries = [44]\nallow_only_countries = [49]",
                "calls.accounts.a",
            ),
            ("max_call = \"0s\"", "calls.max_call"),
            ("always_allow = [\"1414\", \"abc\"]", "calls.always_allow[1]"),
            ("always_allow = [\"123456789\"]", "calls.always_allow[0]"),
            ("always_allow = [\"+44 1414\"]", "calls.always_allow[0]"),
            ("never_deny = [\"41446681\"]", "calls.never_deny[0]"),
            ("never_deny = [\"+41x\"]", "calls.never_deny[0]"),
            ("max_accounts = 0", "calls.max_accounts"),
            (
                "[limits]\ncalls_per_day = 100001",
                "calls.limits: calls_per_day = 100001",
            ),
            ("[limits]\nconcurrent = 10001", "calls.limits: concurrent"),
            (
                "[accounts.a.limits]\ncalls_per_hour = 200000",
                "calls.accounts.a.limits: calls_per_hour",
            ),
        ] {
            let err = format!("{:#}", compile(text).expect_err(text));
            assert!(err.contains(needle), "{text}\n→ {err}");
        }
        let r = compile("premium_prefixes = [\"+4184\"]\n[accounts.hotline]\nallow_premium = true\n[accounts.hotline.limits]\nconcurrent = 3").unwrap();
        assert_eq!(r.premium_prefixes, vec!["4184"]);
        assert_eq!(r.accounts["hotline"].limits.unwrap().concurrent, Some(3));
        assert_eq!(r.max_accounts, 10_000);
        assert!(r.always_allow.is_empty() && r.never_deny.is_empty());
        let r = compile(
            "always_allow = [\"1414\", \"0800 123 456\", \"+44 20 7946 0958\", \"+41 143\"]\n\
             never_deny = [\"+41446681\", \"+41 44 668 18 00\"]\nmax_accounts = 5",
        );
        let err = format!("{:#}", r.expect_err("a space in a prefix"));
        assert!(err.contains("calls.never_deny[1]"), "{err}");
        let r = compile(
            "always_allow = [\"1414\", \"0800 123 456\", \"+44 20 7946 0958\", \"+41 143\"]\n\
             never_deny = [\"+41446681\", \"+41446681800\"]\nmax_accounts = 5",
        )
        .unwrap();
        assert_eq!(
            r.always_allow.iter().map(String::as_str).collect::<Vec<_>>(),
            ["+41800123456", "+442079460958", "1414", "143"]
        );
        assert_eq!(r.never_deny, ["41446681", "41446681800"]);
        assert_eq!(r.max_accounts, 5);
    }
}
