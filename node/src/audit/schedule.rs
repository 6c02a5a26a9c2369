//! The node's scheduled audit: one task runs [`super::run`] on a blocking thread every
//! `audit.interval` (the first at start), publishes the last result on a watch channel
//! for `GET /v1/audit`, and sets the `fraudmesh_audit_findings{severity}` gauge.

use super::{AuditConfig, Report};
use crate::metrics::{Metrics, SeverityLabel};
use fraudmesh::audit::Severity;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What `GET /v1/audit` shows.
#[derive(Debug, Clone, Default)]
pub struct AuditStatus {
    /// The configured interval; `None`: the scheduled audit is off.
    pub interval: Option<Duration>,
    /// Audits completed since start.
    pub runs: u64,
    /// The last one: when it finished (ms since the epoch), how long it took, its report.
    pub last: Option<(u64, Duration, Report)>,
}

impl AuditStatus {
    /// The JSON of `GET /v1/audit`: `state` is `off` (no `audit.interval`), `pending`
    /// (configured, first run not finished) or `done`; the report's fields are null
    /// until there is one.
    pub fn to_json(&self) -> Value {
        let state = match (&self.interval, &self.last) {
            (None, _) => "off",
            (Some(_), None) => "pending",
            (Some(_), Some(_)) => "done",
        };
        let interval = self.interval.map(|i| humantime::format_duration(i).to_string());
        let mut v = json!({
            "state": state, "interval": interval, "runs": self.runs, "at": null, "duration_ms": null,
            "findings": null, "errors": null, "summary": null, "files": null, "probes": null,
        });
        if let Some((at, took, report)) = &self.last {
            v["at"] = json!(at);
            v["duration_ms"] = json!(took.as_millis() as u64);
            if let Ok(Value::Object(fields)) = serde_json::to_value(report) {
                for (k, x) in fields {
                    v[k] = x;
                }
            }
        }
        v
    }
}

/// Starts the scheduled audit when `audit.interval` is set. The receiver always holds
/// the current [`AuditStatus`]; the task (if any) runs until aborted.
pub fn start(
    config: &AuditConfig,
    metrics: Arc<Metrics>,
) -> (watch::Receiver<AuditStatus>, Option<tokio::task::JoinHandle<()>>) {
    let (tx, rx) = watch::channel(AuditStatus {
        interval: config.interval,
        ..AuditStatus::default()
    });
    let Some(interval) = config.interval else {
        return (rx, None);
    };
    let options = config.options();
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let started = Instant::now();
            let o = options.clone();
            let report = match tokio::task::spawn_blocking(move || super::run(&o)).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "the audit thread failed");
                    continue;
                }
            };
            let took = started.elapsed();
            for s in Severity::ALL {
                metrics
                    .audit_findings
                    .get_or_create(&SeverityLabel { severity: s.as_str() })
                    .set(report.count(s) as i64);
            }
            for e in &report.errors {
                tracing::warn!(file = ?e.file, line = ?e.line, problem = %e.message, "audit: not checked");
            }
            tracing::info!(
                high = report.summary.high,
                medium = report.summary.medium,
                low = report.summary.low,
                errors = report.summary.errors,
                files = report.files.len(),
                ms = took.as_millis() as u64,
                "audit done"
            );
            tx.send_modify(|s| {
                s.runs += 1;
                s.last = Some((crate::now_ms(), took, report));
            });
        }
    });
    (rx, Some(task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_says_off_pending_and_done() {
        let off = AuditStatus::default().to_json();
        assert_eq!(off["state"], "off");
        assert!(off["findings"].is_null());
        let mut s = AuditStatus {
            interval: Some(Duration::from_secs(3600)),
            ..AuditStatus::default()
        };
        let pending = s.to_json();
        assert_eq!(pending["state"], "pending");
        assert_eq!(pending["interval"], "1h");
        assert!(pending["summary"].is_null() && pending["at"].is_null());
        s.runs = 1;
        s.last = Some((42, Duration::from_millis(7), Report::default()));
        let done = s.to_json();
        assert_eq!(done["state"], "done");
        assert_eq!(done["at"], 42);
        assert_eq!(done["summary"]["high"], 0);
        assert!(done["findings"].as_array().is_some_and(Vec::is_empty));
    }
}
