//! The attack wave: what happens at which time (reports and faults), timed reports sent
//! concurrently from the first running reporter, and the acknowledged ones.

use super::Ctx;
use crate::client::report_scan;
use anyhow::Context;
use fraudmesh_node::now_ms;
use std::time::{Duration, Instant};

/// One acknowledged report.
#[derive(Debug, Clone)]
pub(super) struct Sent {
    pub(super) target: String,
    pub(super) reporter: usize,
    pub(super) at_ms: u64,
}

/// Something the attack wave does at a time.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// Report target `i` on the first running node of the list.
    Report(usize, Vec<usize>),
    /// kill -9 a node.
    Kill(usize),
    /// Start it again.
    Restart(usize),
}

impl Ctx {
    /// Reports every target at the run's rate, the reporters taking turns; returns when
    /// the wave started (ms) and the acknowledged reports.
    pub(super) async fn steady_wave(
        &mut self,
        targets: &[String],
        reporters: &[usize],
    ) -> anyhow::Result<(u64, Vec<Sent>)> {
        let wave_start = now_ms();
        let steps = report_steps(0..targets.len(), reporters, self.args.rate, 0);
        let sent = self.wave(targets, steps).await?;
        Ok((wave_start, sent))
    }

    /// Runs the steps at their times (ms after the start); returns the acknowledged
    /// reports. Reports go out concurrently, so a slow answer delays nothing.
    pub(super) async fn wave(&mut self, targets: &[String], steps: Vec<(u64, Step)>) -> anyhow::Result<Vec<Sent>> {
        let reports = steps.iter().filter(|(_, s)| matches!(s, Step::Report(..))).count();
        self.phase("attacking", reports as u64);
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        let mut last_rss = Instant::now();
        for (at, step) in steps {
            tokio::time::sleep_until(start + Duration::from_millis(at)).await;
            match step {
                Step::Report(t, candidates) => tasks.extend(self.report(&targets[t], &candidates)?),
                Step::Kill(i) => {
                    tracing::info!(node = i, "kill -9");
                    self.cluster.kill9(i).await?;
                }
                Step::Restart(i) => {
                    tracing::info!(node = i, "restart");
                    self.cluster.spawn(i)?;
                    self.cluster.wait_started(i).await?;
                }
            }
            if last_rss.elapsed() > Duration::from_millis(250) {
                self.sample_rss();
                last_rss = Instant::now();
            }
        }
        let mut sent = Vec::new();
        for t in tasks {
            if let Some(s) = t.await.context("a report task failed")? {
                sent.push(s);
            }
        }
        Ok(sent)
    }

    /// Sends one report from the first running node of `candidates` in a task of its
    /// own; `None` when none runs.
    fn report(
        &self,
        target: &str,
        candidates: &[usize],
    ) -> anyhow::Result<Option<tokio::task::JoinHandle<Option<Sent>>>> {
        let Some(reporter) = candidates
            .iter()
            .copied()
            .find(|&i| self.cluster.members[i].api.is_some())
        else {
            return Ok(None);
        };
        let api = self.api(reporter)?.clone();
        let target = target.to_string();
        let bar = self.bar.clone();
        Ok(Some(tokio::spawn(async move {
            let at_ms = now_ms();
            let ok = report_scan(&api, &target).await;
            bar.inc(1);
            ok.ok().map(|()| Sent {
                target,
                reporter,
                at_ms,
            })
        })))
    }
}

/// Report steps for `targets[range]` at the run's rate, reporters taken in turn from
/// `reporters` (falling back to the next running one).
pub(super) fn report_steps(
    range: std::ops::Range<usize>,
    reporters: &[usize],
    rate: f64,
    offset_ms: u64,
) -> Vec<(u64, Step)> {
    range
        .enumerate()
        .map(|(k, t)| {
            let at = offset_ms + (k as f64 * 1000.0 / rate) as u64;
            let mut order = reporters.to_vec();
            order.rotate_left(k % reporters.len());
            (at, Step::Report(t, order))
        })
        .collect()
}
