//! `--half-life auto`, the default: the half-life chosen by a backtest on the dataset itself.
//!
//! No fixed half-life is best for every workload: a long one averages more reads when
//! popularity is stable, a short one follows popularity when it drifts. So the window's end is
//! cut into [`FOLDS`] judged windows of a [`JUDGED_SHARE_DIVISOR`]th of the span each. In each
//! fold, every candidate half-life ranks the events before the judged window under the same
//! budget and rules, and scores the keys of that manifest read in the judged window: a cache
//! warmed with the manifest hits each of them on its first read where a cold one misses, the
//! extra early hits that `tests/tests/rank_quality.rs` measures, counted without replaying a
//! cache. The candidate with the most over the folds wins (ties: the longest half-life, which
//! averages the most reads), and the whole window is ranked with it.
//!
//! The backtest rides on the aggregation ranking runs anyway: beside the key-stats columns,
//! per key, each candidate's weighted reads over the whole window and before each fold, and
//! the reads before and in each fold's judged window. Then, per fold and candidate, a sort and
//! a greedy pack of the eligible keys. The chosen candidate's whole-window sums are the sums
//! `--half-life` of its span gives (the same fixed-point weights, against the same end), so
//! auto's manifest ranks as that explicit half-life's does. The sums are integers, so the
//! choice does not depend on the order the events are folded in: same input, same manifest.
//!
//! Keys are classified and excluded once, by the whole window's figures (`--window`, deleted,
//! category rules), except that a key must also pass the one-hit-wonder rule in the train part
//! alone; a key's miss cost is its whole window's.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use schemas::Manifest;
use schemas::manifest::{BacktestFold, HalfLifeBacktest, HalfLifeCandidate};

use super::aggregate::files_and_span;
use super::key_stats::DatasetStats;
use super::tally::{Plan, tally};
use super::{
    Candidate, Packer, RankError, RankOptions, eligible, first_chunk, generated_at, in_order,
    manifest_of,
};
use crate::rank::WEIGHT_SCALE;

/// Folds of the backtest: the last `FOLDS` judged windows of the span, each judging the
/// candidates trained on everything before it. Several would average out where one window
/// falls in a workload's cycle, but each costs a column per candidate in the aggregation; on
/// the workloads of `tests/tests/rank_quality.rs`, two chose as one did in 14 of 15 traces.
pub const FOLDS: i64 = 1;

/// A judged window is this fraction of the span: the early reads after a deploy, 12 minutes of
/// 8 hours of logs. A cache warmed at a deploy gains on the keys read before the warmed keys
/// that nobody reads are evicted; on the drifting workloads of `tests/tests/rank_quality.rs`,
/// judging on a twentieth (the length of the test's own early window) chose half-lives too
/// long for the first minutes, three times in six.
pub const JUDGED_SHARE_DIVISOR: i64 = 40;

/// The fixed candidates, kept when the window allows them (see [`candidates`]): a spread of
/// round spans from minutes to a month, each about two to three times the one before.
const LADDER: [Duration; 12] = [
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(15 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(3600),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(12 * 3600),
    Duration::from_secs(24 * 3600),
    Duration::from_secs(3 * 24 * 3600),
    Duration::from_secs(7 * 24 * 3600),
    Duration::from_secs(30 * 24 * 3600),
];

/// The candidate half-lives of a window of `span`, shortest first, `off` (`None`) last: the
/// `LADDER`'s rungs from a 32nd of the span to half the span, an eighth of the span (the
/// SQL aggregation's default, unless a rung is near it), and `off`.
///
/// Below a 32nd of the span, reads older than the last few percent of the window weigh next to
/// nothing, and the tail of keys is ranked on a handful of reads. Above half the span the
/// ranking is close to `off`'s: on the workloads of `tests/tests/rank_quality.rs` 6 h and 12 h
/// (of 8 h) never beat both `off` and the shorter ones, and each candidate costs the
/// aggregation two columns per fold.
pub fn candidates(span: Duration) -> Vec<Option<Duration>> {
    let mut spans: Vec<Duration> = LADDER
        .iter()
        .copied()
        .filter(|rung| *rung >= span / 32 && *rung <= span / 2)
        .collect();
    // In whole seconds, and only when no rung is within a quarter of it: a near twin would
    // rank almost alike and only split the choice.
    let eighth = Duration::from_secs((span / 8).as_secs());
    let near = |rung: &Duration| rung.as_secs_f64() / eighth.as_secs_f64();
    if !eighth.is_zero() && !spans.iter().any(|rung| (0.8..=1.25).contains(&near(rung))) {
        spans.push(eighth);
    }
    spans.sort();
    let mut all: Vec<Option<Duration>> = spans.into_iter().map(Some).collect();
    all.push(None);
    all
}

/// Ranks the dataset at `dataset` with the half-life its own backtest chooses.
pub fn rank(dataset: &Path, options: &RankOptions) -> Result<Manifest, RankError> {
    let (files, start, end) = files_and_span(dataset, options.until)?;
    let span_us = end - start;
    let judged_us = span_us / JUDGED_SHARE_DIVISOR;
    // (split, judged until) of each fold, the oldest first.
    let folds: Vec<(i64, i64)> = (1..=FOLDS)
        .rev()
        .map(|k| (end - k * judged_us, end - (k - 1) * judged_us))
        .collect();
    let spans = candidates(Duration::from_micros(u64::try_from(span_us).unwrap_or(0)));

    let plan = Plan {
        until: options.until.map(|until| until.timestamp_micros()),
        end,
        half_lives: spans.iter().flatten().copied().collect(),
        folds: folds.clone(),
    };
    let started = std::time::Instant::now();
    // Off's weights are the reads' counts in fixed point: the key-stats column itself.
    let mut tally = tally(&files, plan)?;
    let aggregated = started.elapsed();
    // The plan's number of each candidate with a half-life (`off` has none).
    let summed: Vec<Option<usize>> = spans
        .iter()
        .scan(0, |next, half_life| {
            Some(half_life.map(|_| {
                *next += 1;
                *next - 1
            }))
        })
        .collect();
    let stats = DatasetStats::from_keys(std::mem::take(&mut tally.keys), dataset)?;

    let budget = options.budget.bytes;
    // Classified once, for the backtest and the manifest alike.
    let eligible = eligible(&stats, options)?;
    let (chosen, record) = {
        let category_budgets = eligible.category_budgets(budget);
        let smallest = eligible
            .candidates
            .iter()
            .map(|c| c.footprint)
            .min()
            .unwrap_or(0);
        let chunk = first_chunk(&eligible.candidates, budget);
        // The candidates packed by `scores` (`None`: left out), as `build_manifest` packs:
        // by score, ties by key; the keys read in the judged window it takes.
        let pack = |scores: &mut dyn Iterator<Item = Option<f64>>, judged: &[bool]| -> u64 {
            let mut order: Vec<(f64, u32)> = scores
                .enumerate()
                .filter_map(|(position, score)| Some((score?, position as u32)))
                .collect();
            // Ties broken by key as `build_manifest` breaks them; the keys are only compared
            // on a tie, rare among scores.
            let key = |position: u32| eligible.candidates[position as usize].stats.key.as_str();
            let by_score = |a: &(f64, u32), b: &(f64, u32)| {
                b.0.total_cmp(&a.0).then_with(|| key(a.1).cmp(key(b.1)))
            };
            let mut packer = Packer::new(budget, category_budgets.clone());
            let mut hits = 0;
            in_order(&mut order, chunk, by_score, |&(_, position)| {
                let candidate = &eligible.candidates[position as usize];
                if packer.take(candidate) && judged[candidate.index] {
                    hits += 1;
                }
                packer.bytes.saturating_add(smallest) <= budget
            });
            hits
        };
        let mut hits = vec![0u64; spans.len()];
        let mut oracle_hits = 0;
        let mut train_reads: Vec<u64> = stats.keys.iter().map(|k| k.requests).collect();
        let mut judged_reads = Vec::with_capacity(folds.len());
        for fold in 0..folds.len() {
            judged_reads.push(tally.judged(fold));
        }
        // The latest fold first, so that each one's train reads are its window's and the later
        // windows' reads short of the whole.
        for (fold, reads) in judged_reads.iter().enumerate().rev() {
            for (train, judged) in train_reads.iter_mut().zip(reads) {
                // As the tally sums: wrapping (a debug build does not panic where release wraps).
                *train = train.wrapping_sub(*judged);
            }
            let judged: Vec<bool> = reads.iter().map(|&reads| reads > 0).collect();
            let candidate_hits = |i: usize| -> u64 {
                let train_weights = match summed[i] {
                    Some(h) => tally.trained(h, fold),
                    None => train_reads
                        .iter()
                        .map(|reads| reads.wrapping_mul(WEIGHT_SCALE as u64))
                        .collect(),
                };
                let mut scores = eligible.candidates.iter().map(|c| {
                    let trained =
                        train_reads[c.index] >= c.min_requests.max(1) && train_weights[c.index] > 0;
                    trained.then(|| c.score(train_weights[c.index], 1.0))
                });
                pack(&mut scores, &judged)
            };
            // The candidates packed on every core, each on its own.
            let next = AtomicUsize::new(0);
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
            let found: Vec<(usize, u64)> = std::thread::scope(|scope| {
                let threads: Vec<_> = (0..workers.min(spans.len()))
                    .map(|_| {
                        scope.spawn(|| {
                            let mut found = Vec::new();
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                if i >= spans.len() {
                                    return found;
                                }
                                found.push((i, candidate_hits(i)));
                            }
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .flat_map(|thread| thread.join().expect("a backtest thread panicked"))
                    .collect()
            });
            for (i, found) in found {
                hits[i] += found;
            }
            // The oracle knows which keys are read: all of them it can fit, smallest first.
            let mut scores = eligible
                .candidates
                .iter()
                .map(|c| judged[c.index].then(|| 1.0 / c.footprint as f64));
            oracle_hits += pack(&mut scores, &judged);
        }
        // The most hits; ties to the later candidate, the longer half-life (`off` last).
        let chosen = (0..spans.len())
            .max_by_key(|&i| (hits[i], i))
            .unwrap_or(spans.len() - 1);
        let instant = |micros| DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default();
        let record = HalfLifeBacktest {
            folds: folds
                .iter()
                .map(|&(split, until)| BacktestFold {
                    split_at: instant(split),
                    judged_until: instant(until),
                })
                .collect(),
            oracle_hits,
            candidates: spans
                .iter()
                .zip(&hits)
                .map(|(half_life, &hits)| HalfLifeCandidate {
                    half_life_s: half_life.map(|h| h.as_secs_f64()),
                    hits,
                    share: (oracle_hits > 0).then(|| hits as f64 / oracle_hits as f64),
                })
                .collect(),
        };
        tracing::debug!(
            ?aggregated,
            backtest = ?started.elapsed() - aggregated,
            "half-life auto: aggregated, then packed {} candidates in {} folds",
            spans.len(),
            folds.len()
        );
        (chosen, record)
    };

    // The chosen half-life's sums, by key; `off`'s are the key-stats rows' own.
    let weights = spans[chosen].and(summed[chosen]).map(|h| tally.weighted(h));
    drop(tally);
    let weighted = |candidate: &Candidate| {
        weights
            .as_ref()
            .map_or(candidate.stats.weighted_requests, |w| w[candidate.index])
    };
    let half_life = spans[chosen].or(stats.half_life);
    let mut manifest = manifest_of(
        &stats,
        eligible,
        &weighted,
        half_life,
        options,
        generated_at(),
    )?;
    if let Some(scoring) = manifest.header.scoring.as_mut() {
        scoring.half_life_backtest = Some(record);
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(h: u64) -> Duration {
        Duration::from_secs(h * 3600)
    }

    /// The candidates follow the window's span: minutes for an hour of logs, hours for a day,
    /// days for a month, always with `off`, and an eighth of the span unless a rung is near it.
    #[test]
    fn candidates_follow_the_span() {
        let minutes = |m: u64| Some(Duration::from_secs(m * 60));
        assert_eq!(
            candidates(hours(8)),
            vec![
                minutes(15),
                minutes(30),
                Some(hours(1)),
                Some(hours(3)),
                None
            ]
        );
        assert_eq!(
            candidates(hours(1)),
            vec![
                minutes(5),
                Some(Duration::from_secs(450)),
                minutes(15),
                minutes(30),
                None
            ]
        );
        assert_eq!(
            candidates(hours(30 * 24)),
            vec![Some(hours(24)), Some(hours(72)), Some(hours(168)), None]
        );
        assert_eq!(candidates(Duration::ZERO), vec![None]);
    }
}
