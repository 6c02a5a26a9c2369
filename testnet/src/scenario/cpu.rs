//! CPU time per received sighting (`attack-wave`): each node's CPU time over the wave
//! minus what it spends idle in the same time, over the sightings it received.
//!
//! The idle rate comes from a window of the wave's planned length right before the wave,
//! with the mesh formed and nothing asked of the nodes (the testnet only reads
//! `/proc`), so timers, heartbeats, pings and discovery — what a node spends anyway — are
//! taken out. The wave window runs from the first report until [`SETTLE`] after the last
//! acknowledgement, long enough for every sighting to reach every node (p99 latency is
//! well below it) and before the convergence check starts polling the nodes' APIs, which
//! would count as sighting work. CPU time is user + system from `/proc/<pid>/stat`, in
//! clock ticks of 10 ms: with the default 200 targets a node's figure is good to about
//! ±100 µs, the mean over many nodes far better; more `--targets` sharpen both.

use super::wave::Sent;
use super::Ctx;
use serde_json::json;
use std::time::{Duration, Instant};

/// How long after the last acknowledgement the wave window stays open.
pub(super) const SETTLE: Duration = Duration::from_secs(2);

/// Every node's CPU time at one moment (`None`: not running).
#[derive(Debug, Clone)]
pub(super) struct CpuSample {
    at: Instant,
    cpu_ms: Vec<Option<u64>>,
}

impl Ctx {
    /// Every node's CPU time now.
    pub(super) fn cpu_sample(&self) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            cpu_ms: self.cluster.members.iter().map(|m| m.cpu_ms()).collect(),
        }
    }

    /// Measures the idle rate over `len`, right now: returns the samples at both ends.
    pub(super) async fn idle_window(&mut self, len: Duration) -> (CpuSample, CpuSample) {
        self.phase("idle baseline", len.as_millis() as u64);
        let start = self.cpu_sample();
        let end_at = tokio::time::Instant::now() + len;
        // Only /proc is read meanwhile (RSS), which costs the nodes nothing.
        while tokio::time::Instant::now() < end_at {
            self.sample_rss();
            self.bar.set_position(start.at.elapsed().as_millis() as u64);
            tokio::time::sleep_until(end_at.min(tokio::time::Instant::now() + Duration::from_millis(250))).await;
        }
        (start, self.cpu_sample())
    }

    /// Records `cpu_us_per_sighting` (mean and max over the nodes, and each node's in
    /// its report) from the idle and wave windows' samples.
    pub(super) fn record_cpu(&mut self, idle: &(CpuSample, CpuSample), wave: &(CpuSample, CpuSample), sent: &[Sent]) {
        let received: Vec<usize> = (0..self.args.nodes)
            .map(|i| sent.iter().filter(|s| s.reporter != i).count())
            .collect();
        let per_node = per_sighting_us(idle, wave, &received);
        let values: Vec<(usize, f64)> = per_node
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i, v)))
            .collect();
        if values.is_empty() {
            return;
        }
        let mean = values.iter().map(|(_, v)| v).sum::<f64>() / values.len() as f64;
        let (max_node, max) = values
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, 0.0));
        let secs = |w: &(CpuSample, CpuSample)| (w.1.at - w.0.at).as_secs_f64();
        let idle_ms_per_s = mean_rate(idle);
        self.figure(
            "cpu_us_per_sighting",
            json!({
                "mean": round1(mean),
                "max": round1(max),
                "max_node": max_node,
                "idle_cpu_ms_per_s_mean": round1(idle_ms_per_s),
                "idle_window_s": round1(secs(idle)),
                "wave_window_s": round1(secs(wave)),
            }),
        );
        self.cpu_us_per_sighting = per_node;
    }
}

/// Each node's CPU per received sighting, µs: wave CPU minus the idle rate times the
/// wave window's length, over `received[i]`. `None` for a node not running in both
/// windows or that received nothing.
fn per_sighting_us(
    idle: &(CpuSample, CpuSample),
    wave: &(CpuSample, CpuSample),
    received: &[usize],
) -> Vec<Option<f64>> {
    let idle_s = (idle.1.at - idle.0.at).as_secs_f64();
    let wave_s = (wave.1.at - wave.0.at).as_secs_f64();
    received
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let used = |w: &(CpuSample, CpuSample)| {
                Some(w.1.cpu_ms.get(i).copied()?? as f64 - w.0.cpu_ms.get(i).copied()?? as f64)
            };
            let (idle_ms, wave_ms) = (used(idle)?, used(wave)?);
            if n == 0 || idle_s <= 0.0 {
                return None;
            }
            let net_ms = wave_ms - idle_ms / idle_s * wave_s;
            Some(net_ms * 1000.0 / n as f64)
        })
        .collect()
}

/// Mean idle CPU over the running nodes, ms per second.
fn mean_rate(w: &(CpuSample, CpuSample)) -> f64 {
    let s = (w.1.at - w.0.at).as_secs_f64();
    let rates: Vec<f64> =
        w.0.cpu_ms
            .iter()
            .zip(&w.1.cpu_ms)
            .filter_map(|(a, b)| Some((b.as_ref()? - a.as_ref()?) as f64 / s))
            .collect();
    if rates.is_empty() || s <= 0.0 {
        return 0.0;
    }
    rates.iter().sum::<f64>() / rates.len() as f64
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, cpu_ms: &[Option<u64>]) -> CpuSample {
        CpuSample {
            at,
            cpu_ms: cpu_ms.to_vec(),
        }
    }

    #[test]
    fn idle_rate_is_taken_out_and_scaled_to_the_wave_window() {
        let t0 = Instant::now();
        let (t1, t2, t3) = (
            t0 + Duration::from_secs(2),
            t0 + Duration::from_secs(3),
            t0 + Duration::from_secs(7),
        );
        // Node 0: 10 ms/s idle, 140 ms over a 4 s wave (40 idle): 100 ms for 200 sightings.
        // Node 1: stopped during the wave. Node 2: received nothing.
        let idle = (
            sample(t0, &[Some(100), Some(0), Some(0)]),
            sample(t1, &[Some(120), Some(0), Some(0)]),
        );
        let wave = (
            sample(t2, &[Some(130), Some(0), Some(0)]),
            sample(t3, &[Some(270), None, Some(50)]),
        );
        let v = per_sighting_us(&idle, &wave, &[200, 200, 0]);
        assert_eq!(v.len(), 3);
        assert!((v[0].unwrap() - 500.0).abs() < 1e-6, "{v:?}");
        assert_eq!((v[1], v[2]), (None, None));
        assert!((mean_rate(&idle) - 20.0 / 6.0).abs() < 1e-9);
    }
}
