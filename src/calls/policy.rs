//! The call policy: may this account call this number now? Rules in order — a locked
//! account, a number that is no number, a fraud number the mesh decided to block,
//! premium rate, countries, then the account's limits — each answer naming its rule and
//! a reason for people.

use super::account::{Account, CallLimits, Lock, DAY};
use super::number::{self, NumberError, NumberKind};
use crate::Millis;
use phonenumber::country::Id;
use std::collections::{BTreeSet, HashMap};

/// Which countries may be called, by calling code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Countries {
    /// Any country.
    #[default]
    Any,
    /// Every country except these.
    Deny(BTreeSet<u16>),
    /// Only these (the home country is always allowed).
    AllowOnly(BTreeSet<u16>),
}

/// Per-account overrides of the global [`CallRules`]; `None` keeps the global rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountRules {
    /// May call premium-rate numbers.
    pub allow_premium: bool,
    /// Countries instead of the global rule.
    pub countries: Option<Countries>,
    /// CallLimits instead of the global ones.
    pub limits: Option<CallLimits>,
}

/// The call policy's settings: home country, premium-rate and country rules, limits
/// and per-account overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRules {
    /// The home country: national numbers are read as its.
    pub home: Id,
    /// Deny numbers libphonenumber types as premium rate.
    pub deny_premium: bool,
    /// More E.164 digit prefixes treated as premium rate (e.g. `"4184"`).
    pub premium_prefixes: Vec<String>,
    /// Which countries may be called.
    pub countries: Countries,
    /// CallLimits of every account without its own.
    pub limits: CallLimits,
    /// Overrides by account name.
    pub accounts: HashMap<String, AccountRules>,
    /// Lock an account when it breaches a limit, until an operator unlocks it.
    pub lock_on_breach: bool,
    /// Report the dialled number to the mesh when a limit is breached.
    pub report_on_breach: bool,
    /// A call not ended after this long stops counting as in progress, ms.
    pub max_call_ms: Millis,
}

impl CallRules {
    /// Premium rate denied, any country, no limits, no locks.
    pub fn new(home: Id) -> Self {
        Self {
            home,
            deny_premium: true,
            premium_prefixes: Vec::new(),
            countries: Countries::Any,
            limits: CallLimits::default(),
            accounts: HashMap::new(),
            lock_on_breach: false,
            report_on_breach: false,
            max_call_ms: 4 * 3_600_000,
        }
    }
}

/// Number prefixes the mesh decided to block.
pub trait FraudNumbers {
    /// The blocked prefix covering these E.164 digits, if any.
    fn blocked_prefix(&self, digits: &str) -> Option<String>;
}

impl FraudNumbers for BTreeSet<String> {
    fn blocked_prefix(&self, digits: &str) -> Option<String> {
        (1..=digits.len())
            .rev()
            .map(|n| &digits[..n])
            .find(|p| self.contains(*p))
            .map(str::to_string)
    }
}

impl FraudNumbers for crate::blocklist::Blocklist {
    fn blocked_prefix(&self, digits: &str) -> Option<String> {
        self.blocked_number_prefix(digits).map(str::to_string)
    }
}

/// One outgoing call the SIP stack asks about, before it is placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRequest {
    /// The calling account (authenticated user).
    pub account: String,
    /// The number as dialled (national or international form, any punctuation).
    pub to: String,
    /// The call's id, to match its end.
    pub call_id: String,
}

/// The answer to one [`CallRequest`]: allowed or not, by which rule, and what follows
/// (a lock, a fraud number to report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallDecision {
    /// Whether the call may go ahead.
    pub allow: bool,
    /// The rule that decided (`allowed` when none denied).
    pub rule: &'static str,
    /// Why the call was allowed or denied, a sentence for people.
    pub reason: String,
    /// The number in E.164, when it is one.
    pub e164: Option<String>,
    /// Whether this call's breach locked the account (it was not locked before).
    pub locked_now: bool,
    /// Digits to report to the mesh as a fraud number (a breach with reporting on).
    pub report: Option<String>,
    /// The number is outside the home country (false when it is no number).
    pub international: bool,
}

impl CallDecision {
    fn deny(rule: &'static str, reason: String, e164: Option<String>) -> Self {
        Self {
            allow: false,
            rule,
            reason,
            e164,
            locked_now: false,
            report: None,
            international: false,
        }
    }
}

/// The policy and every account's state.
#[derive(Debug, Clone)]
pub struct CallPolicy {
    rules: CallRules,
    home_code: u16,
    accounts: HashMap<String, Account>,
}

impl CallPolicy {
    /// A policy with no account state yet.
    pub fn new(rules: CallRules) -> Self {
        Self {
            home_code: number::calling_code(rules.home).unwrap_or(0),
            rules,
            accounts: HashMap::new(),
        }
    }

    /// The settings this policy applies.
    pub fn rules(&self) -> &CallRules {
        &self.rules
    }

    /// Decides a call and counts it when allowed (or locks the account on a breach).
    pub fn authorize(&mut self, req: &CallRequest, fraud: &dyn FraudNumbers, now: Millis) -> CallDecision {
        let mut d = self.decide(req, fraud, now);
        let max = self.rules.max_call_ms;
        let lock = self.rules.lock_on_breach;
        let report = self.rules.report_on_breach;
        let account = self.accounts.entry(req.account.clone()).or_default();
        if d.allow {
            account.start(&req.call_id, d.international, now);
        } else if d.rule.starts_with("limit-") {
            if lock && account.lock.is_none() {
                account.lock = Some(Lock {
                    since: now,
                    reason: d.reason.clone(),
                });
                d.locked_now = true;
                d.reason = format!("{}; the account is now locked until an operator unlocks it", d.reason);
            }
            if report {
                d.report = d.e164.as_ref().map(|e| e.trim_start_matches('+').to_string());
            }
        }
        account.expire(now, max);
        d
    }

    /// Decides a call without counting it (for explaining).
    pub fn check(&self, req: &CallRequest, fraud: &dyn FraudNumbers, now: Millis) -> CallDecision {
        self.decide(req, fraud, now)
    }

    fn decide(&self, req: &CallRequest, fraud: &dyn FraudNumbers, now: Millis) -> CallDecision {
        let overrides = self.rules.accounts.get(&req.account);
        let account = self.accounts.get(&req.account);
        if let Some(lock) = account.and_then(|a| a.lock.as_ref()) {
            return CallDecision::deny(
                "locked",
                format!("account {} is locked: {}", req.account, lock.reason),
                None,
            );
        }
        let n = match number::normalise(&req.to, self.rules.home) {
            Ok(n) => n,
            Err(e) => {
                let e164 = match &e {
                    NumberError::Invalid(x) => Some(x.clone()),
                    _ => None,
                };
                return CallDecision::deny("invalid-number", e.to_string(), e164);
            }
        };
        let e164 = Some(n.e164());
        if let Some(p) = fraud.blocked_prefix(&n.digits) {
            return CallDecision::deny(
                "fraud-number",
                format!("{} is a fraud destination shared by the mesh (+{p})", n.e164()),
                e164,
            );
        }
        let allow_premium = overrides.is_some_and(|o| o.allow_premium);
        if !allow_premium {
            if self.rules.deny_premium && n.kind == NumberKind::PremiumRate {
                return CallDecision::deny("premium-rate", format!("{} is a premium-rate number", n.e164()), e164);
            }
            if let Some(p) = self
                .rules
                .premium_prefixes
                .iter()
                .find(|p| n.digits.starts_with(p.as_str()))
            {
                return CallDecision::deny(
                    "premium-rate",
                    format!("{} is in the premium prefix +{p}", n.e164()),
                    e164,
                );
            }
        }
        let countries = overrides
            .and_then(|o| o.countries.as_ref())
            .unwrap_or(&self.rules.countries);
        let denied = match countries {
            Countries::Any => false,
            Countries::Deny(codes) => codes.contains(&n.country_code),
            Countries::AllowOnly(codes) => n.country_code != self.home_code && !codes.contains(&n.country_code),
        };
        if denied {
            let region = n.region.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
            return CallDecision::deny(
                "country",
                format!("calls to +{}{region} are not allowed", n.country_code),
                e164,
            );
        }
        let limits = overrides.and_then(|o| o.limits).unwrap_or(self.rules.limits);
        let international = n.country_code != self.home_code;
        if let Some(b) = account.and_then(|a| a.breach(&limits, international, now)) {
            return CallDecision::deny(b.rule(), format!("account {}: {}", req.account, b.reason()), e164);
        }
        CallDecision {
            allow: true,
            rule: "allowed",
            reason: format!("{} may be called", n.e164()),
            e164,
            locked_now: false,
            report: None,
            international,
        }
    }

    /// Ends a call; returns whether it was in progress.
    pub fn end(&mut self, account: &str, call_id: &str, now: Millis) -> bool {
        self.accounts.get_mut(account).is_some_and(|a| a.end(call_id, now))
    }

    /// Ends a call by id alone (the PBX may not say whose it was).
    pub fn end_call(&mut self, call_id: &str, now: Millis) -> Option<String> {
        let name = self
            .accounts
            .iter()
            .find(|(_, a)| a.active.contains_key(call_id))
            .map(|(n, _)| n.clone())?;
        self.end(&name, call_id, now);
        Some(name)
    }

    /// Lifts a lock; returns whether the account was locked.
    pub fn unlock(&mut self, account: &str) -> bool {
        self.accounts.get_mut(account).and_then(|a| a.lock.take()).is_some()
    }

    /// Every account with state, by name.
    pub fn accounts(&self) -> impl Iterator<Item = (&String, &Account)> {
        self.accounts.iter()
    }

    /// The calling state of the account `name`, if it has any.
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.get(name)
    }

    /// Puts back an account's state (from storage).
    pub fn restore(&mut self, name: String, account: Account) {
        self.accounts.insert(name, account);
    }

    /// Forgets old history of every account; drops accounts with nothing left.
    pub fn expire(&mut self, now: Millis) {
        let max = self.rules.max_call_ms;
        for a in self.accounts.values_mut() {
            a.expire(now, max);
        }
        self.accounts.retain(|_, a| {
            a.lock.is_some() || !a.active.is_empty() || a.started.iter().any(|(t, _)| now.saturating_sub(*t) < DAY)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(account: &str, to: &str, call_id: &str) -> CallRequest {
        CallRequest {
            account: account.into(),
            to: to.into(),
            call_id: call_id.into(),
        }
    }

    fn none() -> BTreeSet<String> {
        BTreeSet::new()
    }

    #[test]
    fn premium_numbers_are_denied_and_ordinary_ones_allowed() {
        let mut p = CallPolicy::new(CallRules::new(Id::CH));
        for to in [
            "0900 123 456",
            "0901123456",
            "0906123456",
            "0041900123456",
            "+41906123456",
        ] {
            let d = p.authorize(&req("1001", to, to), &none(), 0);
            assert_eq!((d.allow, d.rule), (false, "premium-rate"), "{to}: {d:?}");
        }
        for to in ["0800 123 456", "044 668 18 00", "+41 79 123 45 67"] {
            let d = p.authorize(&req("1001", to, to), &none(), 0);
            assert!(d.allow, "{to}: {d:?}");
        }
        // A per-account exception, and extra prefixes.
        let mut r = CallRules::new(Id::CH);
        r.premium_prefixes = vec!["4184".into()];
        r.accounts.insert(
            "hotline".into(),
            AccountRules {
                allow_premium: true,
                ..AccountRules::default()
            },
        );
        let mut p = CallPolicy::new(r);
        assert!(p.authorize(&req("hotline", "0900123456", "a"), &none(), 0).allow);
        assert_eq!(
            p.authorize(&req("1001", "0840 123 456", "b"), &none(), 0).rule,
            "premium-rate"
        );
    }

    #[test]
    fn country_deny_and_allow_only_lists() {
        let mut r = CallRules::new(Id::CH);
        r.countries = Countries::Deny(BTreeSet::from([882, 44]));
        let mut p = CallPolicy::new(r.clone());
        let d = p.authorize(&req("1001", "0044 20 7946 0958", "a"), &none(), 0);
        assert_eq!((d.allow, d.rule), (false, "country"), "{d:?}");
        assert!(d.reason.contains("+44 (GB)"), "{}", d.reason);
        assert_eq!(
            p.authorize(&req("1001", "+88213112345", "b"), &none(), 0).rule,
            "country"
        );
        assert!(p.authorize(&req("1001", "+49 30 901820", "c"), &none(), 0).allow);
        r.countries = Countries::AllowOnly(BTreeSet::from([49]));
        r.accounts.insert(
            "export".into(),
            AccountRules {
                countries: Some(Countries::Any),
                ..AccountRules::default()
            },
        );
        let mut p = CallPolicy::new(r);
        assert!(p.authorize(&req("1001", "+49 30 901820", "d"), &none(), 0).allow);
        assert!(
            p.authorize(&req("1001", "044 668 18 00", "e"), &none(), 0).allow,
            "home is always allowed"
        );
        assert_eq!(
            p.authorize(&req("1001", "+33 1 42 68 53 00", "f"), &none(), 0).rule,
            "country"
        );
        assert!(p.authorize(&req("export", "+33 1 42 68 53 00", "g"), &none(), 0).allow);
    }

    #[test]
    fn fraud_numbers_from_the_mesh_are_denied_by_prefix() {
        let mut p = CallPolicy::new(CallRules::new(Id::CH));
        let fraud = BTreeSet::from(["4420794".to_string()]);
        let d = p.authorize(&req("1001", "0044 20 7946 0958", "a"), &fraud, 0);
        assert_eq!((d.allow, d.rule), (false, "fraud-number"), "{d:?}");
        assert!(d.reason.contains("+4420794"));
        assert!(p.authorize(&req("1001", "0044 20 7000 0000", "b"), &fraud, 0).allow);
    }

    #[test]
    fn a_breach_locks_the_account_until_unlocked_and_can_report() {
        let mut r = CallRules::new(Id::CH);
        r.limits.calls_per_hour = Some(2);
        r.lock_on_breach = true;
        r.report_on_breach = true;
        let mut p = CallPolicy::new(r);
        assert!(p.authorize(&req("1001", "044 668 18 00", "a"), &none(), 0).allow);
        assert!(p.authorize(&req("1001", "044 668 18 01", "b"), &none(), 1).allow);
        // check explains without counting.
        let explained = p.check(&req("1001", "044 668 18 02", "c"), &none(), 2);
        assert_eq!(explained.rule, "limit-calls-per-hour");
        assert!(p.account("1001").unwrap().lock.is_none(), "check changed nothing");
        let d = p.authorize(&req("1001", "0044 20 7946 0958", "c"), &none(), 2);
        assert_eq!(
            (d.allow, d.rule, d.locked_now),
            (false, "limit-calls-per-hour", true),
            "{d:?}"
        );
        assert_eq!(d.report.as_deref(), Some("442079460958"));
        // Locked: even after the hour, and even for an allowed number.
        let later = 2 * 3_600_000;
        assert_eq!(
            p.authorize(&req("1001", "044 668 18 00", "d"), &none(), later).rule,
            "locked"
        );
        assert!(
            p.authorize(&req("1002", "044 668 18 00", "e"), &none(), later).allow,
            "other accounts go on"
        );
        assert!(p.unlock("1001"));
        assert!(!p.unlock("1001"));
        assert!(p.authorize(&req("1001", "044 668 18 00", "f"), &none(), later).allow);
    }

    #[test]
    fn concurrency_is_freed_by_ends_and_garbage_is_denied_with_a_reason() {
        let mut r = CallRules::new(Id::CH);
        r.limits.concurrent = Some(1);
        let mut p = CallPolicy::new(r);
        assert!(p.authorize(&req("1001", "044 668 18 00", "a"), &none(), 0).allow);
        assert_eq!(
            p.authorize(&req("1001", "044 668 18 01", "b"), &none(), 1).rule,
            "limit-concurrent"
        );
        assert_eq!(p.end_call("a", 2).as_deref(), Some("1001"));
        assert!(p.authorize(&req("1001", "044 668 18 01", "b"), &none(), 3).allow);
        for to in ["", "*97", "sip:x@y", "1001", "+"] {
            let d = p.authorize(&req("1001", to, "z"), &none(), 4);
            assert_eq!((d.allow, d.rule), (false, "invalid-number"), "{to:?}: {d:?}");
            assert!(!d.reason.is_empty());
        }
    }
}
