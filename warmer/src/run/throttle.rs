//! Adaptive throttling: keep the store's latency for live traffic near what it was before
//! warming, by AIMD on the target's write rate.
//!
//! The latency is measured the way a live client sees it: round trips that do no work (Redis
//! `PING`, memcached `mn`) on a connection of their own, not the run's pipelined one, whose
//! answers wait behind the run's own batches. Before warming, the median of a few probes is the
//! baseline. While warming, a probe goes out after each batch at most every
//! [`PROBE_EVERY`]; the slowest of the last [`WINDOW`] probes is compared with
//! `multiple × baseline` (and never less than the baseline plus [`NOISE_FLOOR`]). The slowest,
//! not the median: live traffic feels the store's tail, and with the median the run kept a live
//! reader's p99 at 8× its idle figure (bench/throttle/run, docs/benchmarks.md), with the
//! slowest at 1.0–1.1×.
//!
//! A run starts at [`START_RATE`] and, until the first cut, grows by half per `PROBE_EVERY`
//! of time (as TCP's slow start), so it does not open with a burst the store's clients pay
//! for. Above the threshold, the write rate is halved (from what the run achieved over the
//! last probe interval) and the probe window starts afresh, so one slow spell is not punished
//! twice. Below it, the rate grows by a hundredth of the fastest rate seen per `PROBE_EVERY`,
//! until it is well past anything achieved and the limit is lifted. Growth is counted in time,
//! not in probes, since probes follow batches and batches may be far apart at a low rate. The
//! rate is enforced by the same pacing as `--rate`, which still caps it.

use std::collections::VecDeque;
use std::time::Duration;

use schemas::report::ThrottleReport;
use tokio::time::Instant;

use crate::store::Store;

/// The least time between two latency probes during the warm.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// Probes whose slowest is compared with the threshold.
const WINDOW: usize = 5;
/// Probes needed in the window before the first decision.
const MIN_SAMPLES: usize = 3;
/// Probes taken for the baseline before warming.
const BASELINE_PROBES: usize = 15;
/// The threshold is at least this much above the baseline.
const NOISE_FLOOR: Duration = Duration::from_micros(50);
/// The write rate is never cut below this (writes/s), so the run always moves on.
const MIN_RATE: f64 = 100.0;
/// The write rate a run starts at, writes/s.
const START_RATE: f64 = 10_000.0;
/// A probe that takes longer counts as this slow.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One target's adaptive throttle.
#[derive(Debug)]
pub(crate) struct Throttle {
    /// A connection of its own to the target.
    probe: Store,
    baseline: Duration,
    threshold: Duration,
    samples: VecDeque<Duration>,
    last_probe: Instant,
    /// Writes sent since the last probe.
    sent: u64,
    /// The write-rate limit now, writes/s; `None`: no adaptive limit.
    limit: Option<f64>,
    /// Before the first cut the limit grows by half per probe from [`START_RATE`] (as TCP's
    /// slow start), so a run does not open with a burst the store's clients pay for.
    slow_start: bool,
    /// The fastest rate achieved over a probe interval.
    fastest: f64,
    peak: Duration,
    backoffs: u64,
    lowest: Option<f64>,
}

impl Throttle {
    /// Measures the baseline on `probe`; `None` when the store has no latency to measure.
    pub async fn start(probe: Store, multiple: f64) -> Option<Throttle> {
        let mut samples = Vec::with_capacity(BASELINE_PROBES);
        for _ in 0..BASELINE_PROBES {
            samples.push(ping(&probe).await?);
        }
        let baseline = median(&mut samples);
        let threshold = baseline.mul_f64(multiple).max(baseline + NOISE_FLOOR);
        tracing::debug!(?baseline, ?threshold, "store latency before warming");
        Some(Throttle {
            probe,
            baseline,
            threshold,
            samples: VecDeque::with_capacity(WINDOW),
            last_probe: Instant::now(),
            sent: 0,
            limit: Some(START_RATE),
            slow_start: true,
            fastest: 0.0,
            peak: Duration::ZERO,
            backoffs: 0,
            lowest: None,
        })
    }

    /// Counts `writes` just sent; probes the latency when it is time, and returns the new
    /// write-rate limit when it changed (`Some(None)`: lifted).
    pub async fn sent(&mut self, writes: u64) -> Option<Option<f64>> {
        self.sent += writes;
        let elapsed = self.last_probe.elapsed();
        if elapsed < PROBE_EVERY {
            return None;
        }
        let latency = ping(&self.probe).await.unwrap_or(PROBE_TIMEOUT);
        let achieved = self.sent as f64 / elapsed.as_secs_f64();
        self.sent = 0;
        self.last_probe = Instant::now();
        self.fastest = self.fastest.max(achieved);
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(latency);
        if self.samples.len() < MIN_SAMPLES {
            return None;
        }
        // The slowest probe of the window, not its median: what live traffic feels is its tail.
        let now = self.samples.iter().copied().max().unwrap_or_default();
        self.peak = self.peak.max(now);
        if now > self.threshold {
            // Multiplicative decrease, from what the run really achieved (a limit above it
            // would not slow anything down).
            let from = self.limit.map_or(achieved, |limit| limit.min(achieved));
            let cut = (from / 2.0).max(MIN_RATE);
            self.limit = Some(cut);
            self.lowest = Some(self.lowest.map_or(cut, |lowest| lowest.min(cut)));
            self.backoffs += 1;
            self.slow_start = false;
            self.samples.clear();
            tracing::debug!(latency = ?now, rate = cut, "store latency up; slowing down");
            return Some(self.limit);
        }
        let limit = self.limit?;
        // Additive increase (multiplicative in slow start); past twice the fastest rate seen the
        // limit holds nothing back.
        // Both per PROBE_EVERY of time, however far apart the batches (and so the probes) are.
        let steps = (elapsed.as_secs_f64() / PROBE_EVERY.as_secs_f64()).min(50.0);
        let raised = if self.slow_start {
            limit * 1.5f64.powf(steps)
        } else {
            limit + (self.fastest / 100.0).max(MIN_RATE) * steps
        };
        self.limit = (raised < 2.0 * self.fastest).then_some(raised);
        Some(self.limit)
    }

    /// The write-rate limit now, writes/s.
    pub fn limit(&self) -> Option<f64> {
        self.limit
    }

    pub fn report(&self) -> ThrottleReport {
        ThrottleReport {
            baseline_us: self.baseline.as_micros() as u64,
            threshold_us: self.threshold.as_micros() as u64,
            peak_us: self.peak.as_micros() as u64,
            backoffs: self.backoffs,
            lowest_rate: self.lowest.map(|rate| rate as u64),
        }
    }
}

/// One probe's round trip; `None` when the store has nothing to probe or the probe failed.
async fn ping(store: &Store) -> Option<Duration> {
    let start = Instant::now();
    match tokio::time::timeout(PROBE_TIMEOUT, store.ping()).await {
        Ok(Ok(true)) => Some(start.elapsed()),
        Ok(Ok(false)) => None,
        Ok(Err(_)) | Err(_) => Some(PROBE_TIMEOUT),
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}
