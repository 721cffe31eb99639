//! Adaptive throttling: keep the store's latency for live traffic near what it was before
//! warming, by AIMD on the target's write rate, and hold nothing back when there is no live
//! traffic to protect.
//!
//! **Is there live traffic?** The store's own read counters (Redis `keyspace_hits` and
//! `keyspace_misses`, memcached `get_hits` and `get_misses`) say how many reads its clients
//! made; the run's own reads of the target (`--verify`'s read-backs) are taken off. Over the
//! baseline window before warming, and then every [`TRAFFIC_EVERY`], other clients reading at
//! least [`LIVE_READS`] a second make the traffic live; it is gone after [`QUIET_LOOKS`] quiet
//! looks. While it is not, the run writes as fast as the store takes it: a burst that slows
//! nobody down costs nothing, and on an idle store the latency probes only ever measured the
//! run itself (a run then slowed itself down to 155
//! writes/s and warmed a tenth of its manifest before its timeout). A store without read
//! counters is always treated as live. Traffic that only writes is not seen; a cache's traffic
//! reads.
//!
//! **How slow is live traffic?** The latency is measured the way a live client sees it: round
//! trips that do no work (Redis `PING`, memcached `mn`) on a connection of their own, not the
//! run's pipelined one, whose answers wait behind the run's own batches, and from a thread of
//! their own ([`Prober`]), not the run's runtime: there a probe's answer also waited for the
//! run's busy workers to look at it, and the probes measured the warmer, not the store (200 µs
//! and more where the store answered a live reader in 50 µs, so the run slowed itself down to
//! 100 writes/s and warmed nothing of note). A probe is a [`BURST`] of round trips back to
//! back, and counts as the slowest of them but the first (see [`burst`]): a lone round trip
//! from a sleeping thread times the machine's wakeups, not the store. Before warming, the
//! median of a few probes spread over [`BASELINE_WINDOW`] is the baseline. While warming with
//! live traffic, a task beside the write loop probes every [`PROBE_EVERY`]; the median of the
//! last [`WINDOW`] probes is compared with `multiple × baseline` (and never less than the
//! baseline plus [`NOISE_FLOOR`]). Each probe is already a tail (the slowest of its burst);
//! the median over probes keeps one spell of the host's CPU going elsewhere (the source's
//! answers being decoded, another process) from counting as the store's latency: with the
//! slowest, such spells cut the rate again and again whatever the run wrote, down to 100
//! writes/s (bench/throttle/run, docs/benchmarks.md).
//!
//! **How fast may the run go?** With live traffic a run starts at [`START_RATE`] and, until
//! the first cut, grows by half per `PROBE_EVERY` of time (as TCP's slow start), so it does not
//! open with a burst the store's clients pay for. Above the threshold, the write rate is halved
//! (from what the run achieved over the last probe interval) and the probe window starts
//! afresh, so one slow spell is not punished twice. Below it, the rate grows by a hundredth of
//! the rate the last cut was made from per `PROBE_EVERY`: back there in a second. (Grown by a
//! hundredth of the fastest rate ever seen, each step after a cut was 1,500 writes/s and more,
//! since the slow start overshoots to 150,000 writes/s before its cut, and the run was back at
//! the rate that had been cut within a tenth of a second.) Past twice the fastest rate achieved,
//! the limit is lifted. Growth is counted in time, not in probes, since a slow probe delays the
//! next. While a limit holds, the writes go out in pipelines of [`LIVE_PIPELINE`], each paced
//! on its own ([`Gate`]): a whole batch sent at once is a burst that a live client's command
//! waits behind, however low the average rate. A pipeline's task that the timer wakes late has
//! the time made up, up to a [`TIMER_TICK`] (see [`Pace::catching_up`]): without, the limit
//! capped the run at 16,500 writes/s whatever its value. `--rate` still caps the rate.
//!
//! **Whose CPU?** Once live traffic is seen, the run's threads give way on the host's CPUs
//! ([`priority`]): on a host the run shares with the store or the application, a live client's
//! command otherwise waits for a core the run's threads hold, which no write rate the probes
//! can see accounts for.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schemas::report::ThrottleReport;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use crate::priority;
use crate::run::pace::Pace;
use crate::store::{Role, Store, StoreUrl};

/// The least time between two latency probes during the warm.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// Probes whose slowest is compared with the threshold.
const WINDOW: usize = 5;
/// Probes needed in the window before the first decision.
const MIN_SAMPLES: usize = 3;
/// Probes taken for the baseline before warming.
const BASELINE_PROBES: usize = 15;
/// The baseline's probes are spread over this long, and the store's read counters read at
/// its start and end: the first look at live traffic.
const BASELINE_WINDOW: Duration = Duration::from_millis(150);
/// How often live traffic is looked for again during the warm.
const TRAFFIC_EVERY: Duration = Duration::from_millis(100);
/// Other clients' reads per second from which the traffic is live.
const LIVE_READS: f64 = 10.0;
/// Live traffic is gone after this many quiet looks in a row: a slow live client may not read
/// in every look.
const QUIET_LOOKS: u32 = 5;
/// The writes of one pipeline while a limit holds: a live client's command that arrives behind
/// one waits for all of them (about 2 µs each for Redis at 100 B), so a pipeline stays well
/// under the [`NOISE_FLOOR`] a run may add to live traffic's latency.
const LIVE_PIPELINE: usize = 8;
/// The timer's resolution: how late a paced pipeline's task may wake (see
/// [`Pace::catching_up`]).
const TIMER_TICK: Duration = Duration::from_millis(1);
/// The threshold is at least this much above the baseline.
const NOISE_FLOOR: Duration = Duration::from_micros(50);
/// The write rate is never cut below this (writes/s), so the run always moves on.
const MIN_RATE: f64 = 100.0;
/// The write rate a run starts at, writes/s.
const START_RATE: f64 = 10_000.0;
/// A probe that takes longer counts as this slow.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Round trips in one probe, back to back; the probe is the slowest of them but the first.
const BURST: usize = 16;

/// The throttle's connection to a target, on a thread of its own with a runtime of its own, so
/// a probe's round trip is timed as a live client's is: not delayed by the run's own work.
#[derive(Debug)]
pub(crate) struct Prober {
    asks: mpsc::UnboundedSender<Ask>,
}

#[derive(Debug)]
enum Ask {
    /// One probe: a burst of round trips (see [`burst`]).
    Ping(oneshot::Sender<Option<Duration>>),
    /// The store's read counter (see [`read_counter`]).
    Reads(oneshot::Sender<Option<u64>>),
}

impl Prober {
    /// Connects to `url` from a new thread; `None` when the thread or the connection failed.
    /// The thread ends when the prober is dropped.
    pub async fn connect(url: StoreUrl) -> Option<Prober> {
        let (asks, mut asked) = mpsc::unbounded_channel::<Ask>();
        let (ready, connected) = oneshot::channel::<bool>();
        std::thread::Builder::new()
            .name("cachewarm-probe".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let Ok(runtime) = runtime else {
                    let _ = ready.send(false);
                    return;
                };
                runtime.block_on(async move {
                    let Ok(store) = Store::connect(&url, Role::Target).await else {
                        let _ = ready.send(false);
                        return;
                    };
                    let _ = ready.send(true);
                    while let Some(ask) = asked.recv().await {
                        match ask {
                            Ask::Ping(reply) => drop(reply.send(burst(&store).await)),
                            Ask::Reads(reply) => drop(reply.send(read_counter(&store).await)),
                        }
                    }
                });
            })
            .ok()?;
        connected.await.unwrap_or(false).then_some(Prober { asks })
    }

    async fn ping(&self) -> Option<Duration> {
        self.ask(Ask::Ping).await
    }

    async fn reads(&self) -> Option<u64> {
        self.ask(Ask::Reads).await
    }

    /// Sends the thread the question `ask` makes of a reply channel, and waits for the answer;
    /// `None` when the thread is gone or had no answer.
    async fn ask<T>(&self, ask: impl FnOnce(oneshot::Sender<Option<T>>) -> Ask) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.asks.send(ask(reply)).ok()?;
        answer.await.ok().flatten()
    }
}

/// One target's adaptive throttle.
#[derive(Debug)]
pub(crate) struct Throttle {
    /// A connection of its own to the target.
    probe: Prober,
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
    /// The rate the last cut was made from: the store's live clients felt the run there.
    cut_from: f64,
    peak: Duration,
    backoffs: u64,
    lowest: Option<f64>,
    /// What the store's read counters said last; `None`: it keeps none, and the traffic is
    /// taken as live throughout.
    traffic: Option<Traffic>,
    live: bool,
    /// Whether live traffic was seen at all.
    seen_live: bool,
}

/// The store's read counters since the warm began, and the run's own reads.
///
/// Others' reads are counted cumulatively, against the highest count seen: the run's own reads
/// are counted when they are sent, the store counts them when it executes them, so a look
/// that falls in between sees others' count dip, and the next sees it come back up; only a
/// rise past the highest count is news.
#[derive(Debug)]
struct Traffic {
    /// The store's count when the warm began.
    start: u64,
    /// The run's own reads sent since then.
    own: u64,
    /// The highest count of others' reads seen.
    high: u64,
    at: Instant,
    /// Quiet looks in a row.
    quiet: u32,
}

impl Traffic {
    fn new(start: u64) -> Traffic {
        Traffic {
            start,
            own: 0,
            high: 0,
            at: Instant::now(),
            quiet: 0,
        }
    }

    /// Others' reads per second since the last look, the store's count being `reads`.
    fn others_per_second(&mut self, reads: u64) -> f64 {
        let others = reads.saturating_sub(self.start).saturating_sub(self.own);
        let new = others.saturating_sub(self.high);
        self.high = self.high.max(others);
        let elapsed = std::mem::replace(&mut self.at, Instant::now()).elapsed();
        new as f64 / elapsed.as_secs_f64().max(1e-3)
    }
}

impl Throttle {
    /// Measures the baseline and looks for live traffic on `probe`; `None` when the store has
    /// no latency to measure.
    pub async fn start(probe: Prober, multiple: f64) -> Option<Throttle> {
        let before = probe.reads().await;
        let opened = Instant::now();
        let mut samples = Vec::with_capacity(BASELINE_PROBES);
        for n in 1..=BASELINE_PROBES {
            samples.push(probe.ping().await?);
            tokio::time::sleep_until(
                opened + BASELINE_WINDOW.mul_f64(n as f64 / BASELINE_PROBES as f64),
            )
            .await;
        }
        let baseline = median(&mut samples);
        let threshold = baseline.mul_f64(multiple).max(baseline + NOISE_FLOOR);
        let traffic = match (before, probe.reads().await) {
            (Some(before), Some(after)) => {
                let mut traffic = Traffic::new(before);
                Some((traffic.others_per_second(after), traffic))
            }
            _ => None,
        };
        let live = traffic.as_ref().is_none_or(|(rate, _)| *rate >= LIVE_READS);
        tracing::debug!(?baseline, ?threshold, live, "store latency before warming");
        Some(Throttle {
            probe,
            baseline,
            threshold,
            samples: VecDeque::with_capacity(WINDOW),
            last_probe: Instant::now(),
            sent: 0,
            limit: live.then_some(START_RATE),
            slow_start: true,
            fastest: 0.0,
            cut_from: 0.0,
            peak: Duration::ZERO,
            backoffs: 0,
            lowest: None,
            traffic: traffic.map(|(_, traffic)| traffic),
            live,
            seen_live: live,
        })
    }

    /// Runs beside the write loop until `done` fires (or its sender is dropped): every
    /// [`PROBE_EVERY`], takes what the write tasks told `gate` they sent and read, looks for
    /// live traffic and probes the latency when it is time, and sets the gate's limit. Returns
    /// itself, for the report.
    pub async fn control(mut self, gate: Arc<Gate>, mut done: oneshot::Receiver<()>) -> Throttle {
        self.warm_begins().await;
        if self.live {
            priority::give_way();
        }
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick is now: a step then would take the writes booked in the first
        // microseconds for a rate.
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut done => break,
                _ = tick.tick() => {}
            }
            let writes = gate.sent.swap(0, Ordering::Relaxed);
            if let Some(limit) = self.step(writes, &gate).await {
                gate.set(limit);
            }
        }
        self
    }

    /// Reads the store's read counters afresh as the warm begins: what the run read before
    /// (the coverage probe) is not live traffic.
    async fn warm_begins(&mut self) {
        if let Some(traffic) = &mut self.traffic
            && let Some(reads) = self.probe.reads().await
        {
            *traffic = Traffic::new(reads);
        }
        self.last_probe = Instant::now();
        self.sent = 0;
    }

    /// Counts `writes` sent since the last step; looks for live traffic (with the reads of the
    /// run's own `gate` was told of) and probes the latency when it is time, and returns the new
    /// write-rate limit when it changed (`Some(None)`: lifted).
    async fn step(&mut self, writes: u64, gate: &Gate) -> Option<Option<f64>> {
        self.sent += writes;
        if let Some(change) = self.look_for_traffic(gate).await {
            return Some(change);
        }
        if !self.live {
            return None;
        }
        // The steps come every PROBE_EVERY (see `control`), so each probes.
        let elapsed = self.last_probe.elapsed();
        self.last_probe = Instant::now();
        let latency = self.probe.ping().await.unwrap_or(PROBE_TIMEOUT);
        let achieved = self.sent as f64 / elapsed.as_secs_f64().max(1e-3);
        self.sent = 0;
        self.fastest = self.fastest.max(achieved);
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(latency);
        if self.samples.len() < MIN_SAMPLES {
            return None;
        }
        let now = median(&mut self.samples.iter().copied().collect::<Vec<_>>());
        self.peak = self.peak.max(now);
        if now > self.threshold {
            // Multiplicative decrease, from what the run really achieved (a limit above it
            // would not slow anything down).
            let from = self.limit.map_or(achieved, |limit| limit.min(achieved));
            let cut = (from / 2.0).max(MIN_RATE);
            self.cut_from = from;
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
        // Both per PROBE_EVERY of time, however long the probes took.
        let steps = (elapsed.as_secs_f64() / PROBE_EVERY.as_secs_f64()).min(50.0);
        let raised = if self.slow_start {
            limit * 1.5f64.powf(steps)
        } else {
            limit + (self.cut_from / 100.0).max(MIN_RATE) * steps
        };
        self.limit = (raised < 2.0 * self.fastest).then_some(raised);
        Some(self.limit)
    }

    /// Every [`TRAFFIC_EVERY`], whether other clients read the store; the new limit when live
    /// traffic came (the slow start again) or went (none).
    async fn look_for_traffic(&mut self, gate: &Gate) -> Option<Option<f64>> {
        let traffic = self.traffic.as_mut()?;
        if traffic.at.elapsed() < TRAFFIC_EVERY {
            return None;
        }
        let reads = self.probe.reads().await?;
        // Taken once the count is back: every read the store counted by then had been told
        // (before it was sent). Taken before, the reads told and run during the count's round
        // trip showed as another client's.
        traffic.own += gate.own_reads.swap(0, Ordering::Relaxed);
        let rate = traffic.others_per_second(reads);
        let live = rate >= LIVE_READS;
        traffic.quiet = if live { 0 } else { traffic.quiet + 1 };
        if live == self.live || (!live && traffic.quiet < QUIET_LOOKS) {
            return None;
        }
        self.live = live;
        self.seen_live |= live;
        if live {
            priority::give_way();
        }
        tracing::debug!(
            live,
            reads_per_second = rate,
            "live traffic on the store changed"
        );
        self.samples.clear();
        self.last_probe = Instant::now();
        self.sent = 0;
        self.slow_start = true;
        self.limit = live.then_some(START_RATE);
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
            live_traffic: self.seen_live,
        }
    }
}

/// The store's cumulative reads (hits and misses); `None` when it keeps no count or the read
/// failed.
async fn read_counter(store: &Store) -> Option<u64> {
    match tokio::time::timeout(PROBE_TIMEOUT, store.hit_counters()).await {
        Ok(Ok(Some(counters))) => Some(counters.hits + counters.misses),
        _ => None,
    }
}

/// One probe: [`BURST`] round trips back to back, the slowest but the first. A lone round trip
/// from a thread that slept times the machine's wakeups (its median was 170 µs, its tail
/// milliseconds, where a busy client's round trip took 20 µs): the first of a burst pays for
/// the wakeup, and the rest see what a busy live client sees, the store's queue and its CPU.
async fn burst(store: &Store) -> Option<Duration> {
    let mut slowest = Duration::ZERO;
    for n in 0..BURST {
        let latency = ping(store).await?;
        if n > 0 || latency >= PROBE_TIMEOUT {
            slowest = slowest.max(latency);
        }
    }
    Some(slowest)
}

/// One round trip; `None` when the store has nothing to probe or the probe failed.
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

/// Between the write tasks and the throttle: the adaptive limit, on which each pipeline of a
/// batch books its writes before it goes (see the module's header), and what the tasks sent
/// and read back since the throttle last looked.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    pace: Mutex<Option<Pace>>,
    sent: AtomicU64,
    /// Reads of the store's the run is about to send (`--verify`'s read-backs), as its read
    /// counters count them.
    pub own_reads: AtomicU64,
}

impl Gate {
    pub fn new(limit: Option<f64>) -> Gate {
        let gate = Gate::default();
        gate.set(limit);
        gate
    }

    /// A new limit (`None`: lifted).
    pub fn set(&self, limit: Option<f64>) {
        *self
            .pace
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            limit.map(|rate| Pace::catching_up(rate as u64, TIMER_TICK));
    }

    /// How many of `writes` go in the next pipeline, and when; all of them and now while no
    /// limit holds.
    pub fn book(&self, writes: usize) -> (usize, Option<Instant>) {
        let mut pace = self
            .pace
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (n, at) = match pace.as_mut() {
            Some(pace) => {
                let n = writes.min(LIVE_PIPELINE);
                (n, Some(pace.book(n as u64)))
            }
            None => (writes, None),
        };
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        (n, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The run's read-backs are told before they are sent and counted by the store once it
    /// runs them: a look in between sees others' count dip, the next sees it back, and
    /// neither is taken for another client's reads; another client's reads are.
    #[test]
    fn own_reads_in_flight_are_not_live_traffic() {
        let mut traffic = Traffic::new(1_000);
        traffic.own += 50;
        // The store has not run them yet.
        assert_eq!(traffic.others_per_second(1_000), 0.0);
        // It has now, and 200 more are told.
        traffic.own += 200;
        assert_eq!(traffic.others_per_second(1_050), 0.0);
        assert_eq!(traffic.others_per_second(1_250), 0.0);
        // 30 reads of another client's.
        assert!(traffic.others_per_second(1_280) > 0.0);
        assert_eq!(traffic.high, 30);
    }
}
