//! Explaining a decision to an operator: every record on a target with its reporter's
//! weight and whether it counted, and one sentence saying why the target is or is not
//! blocked.

use super::{Allow, Policy, Verdict, Weighed, Weight, FULL};
use crate::identity::PublicKey;
use crate::ledger::RecordSummary;
use crate::sighting::{Kind, RecordId};
use crate::target::Target;
use crate::Millis;
use std::fmt::Write as _;

/// Why a target is or is not blocked, record by record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The decision.
    pub verdict: Verdict,
    /// The block threshold, thousandths.
    pub threshold: Weight,
    /// Every record given, in the order given.
    pub records: Vec<ExplainedRecord>,
    /// The operator's allow covering the target, if any (its target may be broader or
    /// narrower than the one explained).
    pub allowed: Option<(Target, Allow)>,
    /// One sentence saying why the target is or is not blocked.
    pub why: String,
}

/// One record of an [`Explanation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainedRecord {
    /// The record id.
    pub id: RecordId,
    /// Who signed it.
    pub reporter: PublicKey,
    /// What it says.
    pub kind: Kind,
    /// How many events it summarises.
    pub count: u32,
    /// When the reporter saw it, ms.
    pub observed_at: Millis,
    /// When it stops being active, ms.
    pub expires_at: Millis,
    /// The reporter's weight now.
    pub weighed: Weighed,
    /// Whether it adds to the score.
    pub counted: bool,
    /// Why it counts or not: `"counted"`, `"stranger"` (neither this node, nor a peer, nor
    /// actively endorsed by a trusted organisation: also a revoked or expired member),
    /// `"expired"` (the record itself) or `"retraction"`.
    pub reason: &'static str,
}

impl Policy {
    /// Explains the decision on one target: every record with its reporter's weight and
    /// whether it counted, the threshold, the operator's allow, and one sentence why.
    pub fn explain<'a>(
        &self,
        target: &Target,
        records: impl IntoIterator<Item = &'a RecordSummary>,
        now: Millis,
    ) -> Explanation {
        let (verdict, records) = self.judge(target, records, now, true);
        let allowed = self.allowed(target, now).map(|(t, a)| (t.clone(), a.clone()));
        let threshold = self.trust.threshold;
        let why = if verdict.allowlisted && verdict.score >= threshold {
            "not blocked: the target overlaps the allowlist".to_string()
        } else if let Some((t, a)) = &allowed {
            let mut w = String::from("not blocked: allowed by the operator");
            if t != target {
                let _ = write!(w, " (as {t})");
            }
            match a.until {
                Some(u) => {
                    let _ = write!(w, " until {}", utc(u));
                }
                None => w.push_str(" indefinitely"),
            }
            let _ = write!(w, ": {}", a.reason);
            w
        } else if verdict.allowlisted {
            "not blocked: the target overlaps the allowlist".to_string()
        } else if verdict.blocked {
            format!(
                "blocked: trusted weight {} reaches the threshold {}",
                decimal(verdict.score),
                decimal(threshold)
            )
        } else if records.iter().any(|r| r.counted) {
            format!(
                "not blocked: trusted weight {} is below the threshold {}",
                decimal(verdict.score),
                decimal(threshold)
            )
        } else if records.iter().any(|r| r.reason == "stranger") {
            "not blocked: only strangers accuse it".to_string()
        } else {
            "not blocked: no active accusation".to_string()
        };
        Explanation {
            verdict,
            threshold,
            records,
            allowed,
            why,
        }
    }
}

/// A weight in thousandths as a decimal: 1500 → "1.5", 1000 → "1.0", 250 → "0.25".
pub fn decimal(w: Weight) -> String {
    let frac = format!("{:03}", w % FULL);
    let frac = frac.trim_end_matches('0');
    format!("{}.{}", w / FULL, if frac.is_empty() { "0" } else { frac })
}

/// An instant as RFC 3339 UTC to the second, e.g. `2026-11-27T20:30:00Z`.
pub fn utc(ms: Millis) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
