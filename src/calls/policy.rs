//! The call policy: may this account call this number now? Rules in order, each answer
//! naming its rule and a reason for people:
//!
//! 1. `emergency`: an emergency or toll-free short number ([`super::emergency`]) passes;
//! 2. `always-allow`: so does a number of the operator's [`CallRules::always_allow`];
//!    neither is counted, locks or reports, and neither creates account state;
//! 3. `too-many-accounts`: an account without state while [`CallRules::max_accounts`]
//!    accounts have some is denied (state is bounded however many names a PBX sends);
//! 4. `locked`: an account locked by an earlier breach;
//! 5. `invalid-number`: what was dialled is no number;
//! 6. `fraud-number`: a number prefix the mesh decided to block, unless it is under
//!    [`CallRules::never_deny`];
//! 7. `premium-rate`, 8. `country`, 9. `limit-…`: the account's limits.
//!
//! Only a call allowed by the last rules (`allowed`) is counted; only a breach may lock
//! the account or report the number.

use super::account::{Account, CallLimits, Lock, DAY};
use super::emergency;
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
    /// Numbers that always pass like emergency numbers (rule `always-allow`), in the form
    /// [`number::allow_key`] gives: `+` and the E.164 digits for numbers libphonenumber
    /// knows as valid (matching them dialled in any form), national digits for short
    /// numbers (`1414`).
    pub always_allow: BTreeSet<String>,
    /// E.164 digit prefixes (no `+`) the mesh's fraud-number rule never denies (the
    /// operator's own numbers, its bank's); the local premium, country and limit rules
    /// still apply.
    pub never_deny: Vec<String>,
    /// Most accounts with state; a call of a further account is denied
    /// (`too-many-accounts`), emergency and always-allowed calls excepted.
    pub max_accounts: usize,
}

/// The default [`CallRules::max_accounts`].
pub const DEFAULT_MAX_ACCOUNTS: usize = 10_000;

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
            always_allow: BTreeSet::new(),
            never_deny: Vec::new(),
            max_accounts: DEFAULT_MAX_ACCOUNTS,
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
    /// Allowed without being counted (emergency, always-allow).
    fn pass(rule: &'static str, reason: String, e164: Option<String>) -> Self {
        Self {
            allow: true,
            ..Self::deny(rule, reason, e164)
        }
    }

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
    /// Emergency and always-allowed calls, and every denial but a breach, change no
    /// state; an account gets state only from a counted call or a lock.
    pub fn authorize(&mut self, req: &CallRequest, fraud: &dyn FraudNumbers, now: Millis) -> CallDecision {
        let mut d = self.decide(req, fraud, now);
        if matches!(d.rule, "emergency" | "always-allow" | "too-many-accounts") {
            return d;
        }
        let breach = d.rule.starts_with("limit-");
        if breach && self.rules.report_on_breach {
            d.report = d.e164.as_ref().map(|e| e.trim_start_matches('+').to_string());
        }
        let lock = breach && self.rules.lock_on_breach;
        if !d.allow && !lock && !self.accounts.contains_key(&req.account) {
            return d;
        }
        let max = self.rules.max_call_ms;
        let account = self.accounts.entry(req.account.clone()).or_default();
        if d.allow {
            account.start(&req.call_id, d.international, now);
        } else if lock && account.lock.is_none() {
            account.lock = Some(Lock {
                since: now,
                reason: d.reason.clone(),
            });
            d.locked_now = true;
            d.reason = format!("{}; the account is now locked until an operator unlocks it", d.reason);
        }
        account.expire(now, max);
        d
    }

    /// Decides a call without counting it (for explaining).
    pub fn check(&self, req: &CallRequest, fraud: &dyn FraudNumbers, now: Millis) -> CallDecision {
        self.decide(req, fraud, now)
    }

    fn decide(&self, req: &CallRequest, fraud: &dyn FraudNumbers, now: Millis) -> CallDecision {
        let home = self.rules.home;
        if let Some(kind) = emergency::classify(&req.to, home) {
            return CallDecision::pass(
                "emergency",
                format!("{} is {}: always allowed", req.to.trim(), kind.describe()),
                None,
            );
        }
        let normalised = number::normalise(&req.to, home);
        if !self.rules.always_allow.is_empty() {
            if let Some(key) = number::allow_key_of(&req.to, home, &normalised) {
                if self.rules.always_allow.contains(&key) {
                    let e164 = normalised.as_ref().ok().map(number::Number::e164);
                    return CallDecision::pass("always-allow", format!("{key} is in always_allow"), e164);
                }
            }
        }
        let overrides = self.rules.accounts.get(&req.account);
        let account = self.accounts.get(&req.account);
        if account.is_none() && self.accounts.len() >= self.rules.max_accounts {
            return CallDecision::deny(
                "too-many-accounts",
                format!(
                    "account {} is new and {} accounts already have call state (max_accounts)",
                    req.account,
                    self.accounts.len()
                ),
                None,
            );
        }
        if let Some(lock) = account.and_then(|a| a.lock.as_ref()) {
            return CallDecision::deny(
                "locked",
                format!("account {} is locked: {}", req.account, lock.reason),
                None,
            );
        }
        let n = match normalised {
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
        let never_deny = || self.rules.never_deny.iter().any(|p| n.digits.starts_with(p.as_str()));
        if let Some(p) = fraud.blocked_prefix(&n.digits).filter(|_| !never_deny()) {
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
        // An account without state breaches a limit of 0.
        let fresh = Account::default();
        if let Some(b) = account.unwrap_or(&fresh).breach(&limits, international, now) {
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

    /// Ends `account`'s call `call_id`; returns whether that account had it in progress
    /// (another account's call of the same id is not touched).
    pub fn end(&mut self, account: &str, call_id: &str, now: Millis) -> bool {
        self.accounts.get_mut(account).is_some_and(|a| a.end(call_id, now))
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

    /// Forgets old history of every account; drops accounts with nothing left (no lock,
    /// no call in progress, no call started or ended in the last day).
    pub fn expire(&mut self, now: Millis) {
        let max = self.rules.max_call_ms;
        for a in self.accounts.values_mut() {
            a.expire(now, max);
        }
        let recent = |t: Millis| now.saturating_sub(t) < DAY;
        self.accounts.retain(|_, a| {
            a.lock.is_some()
                || !a.active.is_empty()
                || a.started.iter().any(|(t, _)| recent(*t))
                || a.ended.iter().any(|(t, _)| recent(*t))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        assert!(!p.end("1002", "a", 2), "another account's call is not ended");
        assert!(p.end("1001", "a", 2));
        assert!(p.authorize(&req("1001", "044 668 18 01", "b"), &none(), 3).allow);
        for to in ["", "*97", "sip:x@y", "1001", "+"] {
            let d = p.authorize(&req("1001", to, "z"), &none(), 4);
            assert_eq!((d.allow, d.rule), (false, "invalid-number"), "{to:?}: {d:?}");
            assert!(!d.reason.is_empty());
        }
    }

    /// A policy with account `1001` locked after a breach.
    fn locked(home: Id) -> CallPolicy {
        let mut r = CallRules::new(home);
        r.limits.calls_per_hour = Some(0);
        r.lock_on_breach = true;
        let mut p = CallPolicy::new(r);
        let d = p.authorize(&req("1001", "+41 44 668 18 00", "x"), &none(), 0);
        assert_eq!((d.rule, d.locked_now), ("limit-calls-per-hour", true), "{d:?}");
        p
    }

    #[test]
    fn emergency_numbers_pass_a_locked_account_uncounted_in_every_form() {
        let fraud = BTreeSet::from(["41".to_string(), "1".to_string(), "4".to_string(), "3".to_string()]);
        for (home, cc, numbers) in emergency::EMERGENCY {
            let mut p = locked(home);
            let before = p.account("1001").cloned();
            for n in numbers {
                for to in [n.to_string(), format!("+{cc} {n}"), format!("00{cc}{n}")] {
                    let d = p.authorize(&req("1001", &to, "e"), &fraud, 1);
                    assert_eq!(
                        (d.allow, d.rule, d.locked_now, &d.report),
                        (true, "emergency", false, &None),
                        "{home:?} {to}: {d:?}"
                    );
                    assert!(d.reason.contains("an emergency number"), "{}", d.reason);
                }
            }
            assert!(
                p.authorize(&req("1001", "112", "e"), &fraud, 1).allow,
                "the EU's 112 in {home:?}"
            );
            assert_eq!(p.account("1001").cloned(), before, "{home:?}: nothing counted");
            assert_eq!(
                p.authorize(&req("1001", "+41 44 668 18 00", "y"), &none(), 1).rule,
                "locked"
            );
        }
        // Toll-free short numbers too, and neither creates state for a new account.
        let mut p = CallPolicy::new(CallRules::new(Id::CH));
        let d = p.authorize(&req("new", "147", "c"), &none(), 0);
        assert_eq!((d.allow, d.rule), (true, "emergency"));
        assert!(d.reason.contains("toll-free"), "{}", d.reason);
        assert!(p.account("new").is_none());
    }

    #[test]
    fn always_allow_passes_before_the_lock_and_matches_any_form() {
        let mut p = locked(Id::CH);
        let mut rules = p.rules().clone();
        rules.always_allow = ["1414", "0800 123 456", "+44 20 7946 0958"]
            .iter()
            .map(|s| number::allow_key(s, Id::CH).unwrap())
            .collect();
        p.rules = rules;
        let before = p.account("1001").cloned();
        for to in [
            "1414",
            "+41 1414",
            "0800123456",
            "+41 800 123 456",
            "0041 800 123 456",
            "0044 20 7946 0958",
        ] {
            let d = p.authorize(&req("1001", to, "a"), &none(), 1);
            assert_eq!((d.allow, d.rule), (true, "always-allow"), "{to}: {d:?}");
        }
        assert_eq!(p.account("1001").cloned(), before, "nothing counted");
        for to in ["1415", "0800 123 457", "+44 20 7946 0959"] {
            assert_eq!(p.authorize(&req("1001", to, "b"), &none(), 1).rule, "locked", "{to}");
        }
    }

    #[test]
    fn never_deny_beats_the_mesh_but_not_local_rules() {
        let mut r = CallRules::new(Id::CH);
        r.never_deny = vec!["41446681".into(), "41900".into()];
        let mut p = CallPolicy::new(r);
        let fraud = BTreeSet::from(["41446".to_string(), "41900".to_string(), "4420794".to_string()]);
        assert_eq!(
            p.authorize(&req("1001", "044 668 18 00", "a"), &fraud, 0).rule,
            "allowed"
        );
        assert_eq!(
            p.authorize(&req("1001", "044 667 00 00", "b"), &fraud, 0).rule,
            "fraud-number"
        );
        assert_eq!(
            p.authorize(&req("1001", "0900 123 456", "c"), &fraud, 0).rule,
            "premium-rate",
            "local premium rule still applies"
        );
        assert_eq!(
            p.authorize(&req("1001", "+44 20 7946 0958", "d"), &fraud, 0).rule,
            "fraud-number"
        );
    }

    #[test]
    fn accounts_are_capped_but_emergency_still_passes() {
        let mut r = CallRules::new(Id::CH);
        r.max_accounts = 2;
        let mut p = CallPolicy::new(r);
        assert!(p.authorize(&req("a", "044 668 18 00", "1"), &none(), 0).allow);
        // A denied call creates no state.
        assert_eq!(
            p.authorize(&req("x", "0900 123 456", "2"), &none(), 0).rule,
            "premium-rate"
        );
        assert!(p.account("x").is_none());
        assert!(p.authorize(&req("b", "044 668 18 00", "3"), &none(), 0).allow);
        let d = p.authorize(&req("c", "044 668 18 00", "4"), &none(), 0);
        assert_eq!((d.allow, d.rule), (false, "too-many-accounts"), "{d:?}");
        assert!(p.account("c").is_none());
        assert_eq!(
            p.check(&req("c", "044 668 18 00", "4"), &none(), 0).rule,
            "too-many-accounts"
        );
        assert!(p.authorize(&req("c", "112", "5"), &none(), 0).allow);
        assert!(
            p.authorize(&req("a", "044 668 18 01", "6"), &none(), 0).allow,
            "known accounts go on"
        );
        // Once an account's state expires there is room again.
        p.end("a", "1", 10);
        p.end("a", "6", 10);
        p.end("b", "3", 10);
        p.expire(DAY + 20);
        assert!(p.authorize(&req("c", "044 668 18 00", "7"), &none(), DAY + 20).allow);
    }

    #[test]
    fn a_limit_of_zero_denies_the_first_call() {
        let mut r = CallRules::new(Id::CH);
        r.limits.international_per_day = Some(0);
        let mut p = CallPolicy::new(r);
        assert_eq!(
            p.authorize(&req("1001", "+44 20 7946 0958", "a"), &none(), 0).rule,
            "limit-international-per-day"
        );
        assert!(p.account("1001").is_none(), "no lock: a denial leaves no state");
        assert!(
            p.authorize(&req("1001", "044 668 18 00", "b"), &none(), 0).allow,
            "national calls go on"
        );
    }

    fn any_number() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("044 668 18 00".to_string()),
            Just("+44 20 7946 0958".to_string()),
            Just("0900 123 456".to_string()),
            Just("+1 212 555 0100".to_string()),
            "[0-9]{3,12}",
        ]
    }

    proptest! {
        /// Whatever happened before and whatever the rules, an emergency number is allowed
        /// and changes no account.
        #[test]
        fn emergency_is_decided_before_any_state(
            calls in proptest::collection::vec((0u8..4, any_number(), 0u64..10_000_000), 0..40),
            per_hour in proptest::option::of(0u32..5),
            concurrent in proptest::option::of(0u32..3),
            lock_on_breach: bool,
            max_accounts in 0usize..4,
            emergency in prop::sample::select(vec!["112", "117", "118", "144", "+41 144", "0041117", "911", "147"]),
        ) {
            let mut r = CallRules::new(Id::CH);
            r.limits.calls_per_hour = per_hour;
            r.limits.concurrent = concurrent;
            r.lock_on_breach = lock_on_breach;
            r.max_accounts = max_accounts;
            r.countries = Countries::AllowOnly(BTreeSet::new());
            let mut p = CallPolicy::new(r);
            let fraud = BTreeSet::from(["41".to_string(), "44".to_string()]);
            let mut now = 0;
            for (i, (who, to, dt)) in calls.iter().enumerate() {
                now += dt;
                p.authorize(&req(&format!("a{who}"), to, &format!("c{i}")), &fraud, now);
            }
            let before: Vec<(String, Account)> = {
                let mut v: Vec<_> = p.accounts().map(|(n, a)| (n.clone(), a.clone())).collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            };
            for who in 0..5 {
                let d = p.authorize(&req(&format!("a{who}"), emergency, "e"), &fraud, now + 1);
                prop_assert!(d.allow && d.rule == "emergency" && !d.locked_now && d.report.is_none(), "{:?}", d);
            }
            let mut after: Vec<_> = p.accounts().map(|(n, a)| (n.clone(), a.clone())).collect();
            after.sort_by(|a, b| a.0.cmp(&b.0));
            prop_assert_eq!(before, after);
        }
    }
}
