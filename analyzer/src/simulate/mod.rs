//! Simulate: a backtest of the ranking. The dataset is split in time; a manifest is ranked
//! from the train window alone, and the test window is replayed through an LRU cache of the
//! target's capacity three times: cold, pre-loaded with that manifest, and pre-loaded with a
//! clairvoyant oracle's choice (the best keys per byte under the same budget, chosen knowing
//! the test window: an upper bound no predictor reaches).
//!
//! The replay is read-through, like the applications whose logs are replayed: a read that
//! misses fills the key, a write stores it, a delete drops it.

pub mod lru;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use polars::prelude::*;
use schemas::Manifest;
use schemas::event::columns;
use schemas::manifest::{HitRates, Prediction};

use crate::rank::{self, RankError, RankOptions};
use lru::Lru;

/// Errors while simulating.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Rank(#[from] RankError),
    #[error("failed to read the test window of `{path}`")]
    Polars {
        path: PathBuf,
        #[source]
        source: PolarsError,
    },
    #[error(
        "the simulation needs the cache's capacity: give --capacity SIZE or --capacity-from URL"
    )]
    NoCapacity,
    #[error("the split {split} leaves no {which} window in the dataset ({start} to {end})")]
    EmptySide {
        split: DateTime<Utc>,
        which: &'static str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    #[error("the dataset holds more than 4 billion distinct keys in the test window")]
    TooManyKeys,
}

/// Where the train window ends and the test window starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Split {
    At(DateTime<Utc>),
    /// This share of the dataset's time span trains; the rest tests.
    Share(f64),
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// How the manifest is ranked (its `until` is set to the split).
    pub rank: RankOptions,
    /// The simulated cache's capacity; by default the budget's capacity.
    pub capacity: Option<u64>,
    pub split: Split,
    /// The early window, in read requests; by default a tenth of the test window's reads.
    pub first: Option<u64>,
}

/// The outcome: the prediction for the manifest header, the train manifest it is about, and
/// how fast the replay ran.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub prediction: Prediction,
    pub train_manifest: Manifest,
    /// Read and write requests replayed per second of replay, over all replays.
    pub replay_requests_per_s: f64,
}

/// The kinds of operation the replay tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceOp {
    Read,
    Write,
    Delete,
    Touch,
    Other,
}

/// One replayed request.
#[derive(Debug, Clone, Copy)]
pub struct TraceEvent {
    pub key: u32,
    pub op: TraceOp,
    /// Identical requests this row stands for.
    pub count: u32,
}

/// The test window, with keys mapped to dense ids.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub events: Vec<TraceEvent>,
    pub keys: Vec<String>,
    pub ids: HashMap<String, u32>,
    /// The first value size logged for each id in the test window.
    pub value_sizes: Vec<Option<u64>>,
}

impl Trace {
    /// The id of `key`, added when new.
    pub fn id(&mut self, key: &str) -> u32 {
        if let Some(&id) = self.ids.get(key) {
            return id;
        }
        let id = self.keys.len() as u32;
        self.keys.push(key.to_owned());
        self.ids.insert(key.to_owned(), id);
        self.value_sizes.push(None);
        id
    }

    /// Read requests in the trace.
    pub fn reads(&self) -> u64 {
        self.events
            .iter()
            .filter(|e| e.op == TraceOp::Read)
            .map(|e| u64::from(e.count))
            .sum()
    }

    /// Read requests per key id over the first `first` reads (or all, with `None`).
    pub fn read_counts(&self, first: Option<u64>) -> Vec<u64> {
        let mut counts = vec![0u64; self.keys.len()];
        let mut reads = 0u64;
        for event in &self.events {
            if first.is_some_and(|first| reads >= first) {
                break;
            }
            if event.op == TraceOp::Read {
                counts[event.key as usize] += u64::from(event.count);
                reads += u64::from(event.count);
            }
        }
        counts
    }
}

/// Hits and reads of one replay, over the early window and over the whole trace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayOutcome {
    pub early_reads: u64,
    pub early_hits: u64,
    pub reads: u64,
    pub hits: u64,
}

impl ReplayOutcome {
    pub fn early_hit_rate(&self) -> f64 {
        ratio(self.early_hits, self.early_reads)
    }

    pub fn hit_rate(&self) -> f64 {
        ratio(self.hits, self.reads)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Replays `trace` through an LRU cache of `capacity` bytes (item `i` taking `sizes[i]`),
/// first loaded with `preload` in order (as the warmer writes, rank order), and counts hits.
/// A read of `count` identical requests that misses is one miss and `count - 1` hits.
pub fn replay(
    trace: &Trace,
    sizes: &[u64],
    capacity: u64,
    preload: &[u32],
    first: u64,
) -> ReplayOutcome {
    let mut cache = Lru::new(sizes, capacity);
    for &id in preload {
        cache.insert(id);
    }
    let mut outcome = ReplayOutcome::default();
    for event in &trace.events {
        match event.op {
            TraceOp::Read => {
                let count = u64::from(event.count);
                let hits = if cache.touch(event.key) {
                    count
                } else {
                    cache.insert(event.key);
                    count - 1
                };
                if outcome.reads < first {
                    outcome.early_reads += count;
                    outcome.early_hits += hits;
                }
                outcome.reads += count;
                outcome.hits += hits;
            }
            TraceOp::Write => cache.insert(event.key),
            TraceOp::Delete => cache.remove(event.key),
            TraceOp::Touch => {
                cache.touch(event.key);
            }
            TraceOp::Other => {}
        }
    }
    outcome
}

/// The best keys under `budget` bytes given their read counts: greedy by reads per byte (ties
/// by id), skipping keys that do not fit. Keys never read are not chosen.
pub fn pack_by_density(counts: &[u64], sizes: &[u64], budget: u64) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..counts.len() as u32)
        .filter(|&id| counts[id as usize] > 0)
        .collect();
    ids.sort_by(|&a, &b| {
        let da = counts[a as usize] as f64 / sizes[a as usize].max(1) as f64;
        let db = counts[b as usize] as f64 / sizes[b as usize].max(1) as f64;
        db.total_cmp(&da).then(a.cmp(&b))
    });
    let mut used = 0u64;
    ids.retain(|&id| {
        let size = sizes[id as usize];
        if used + size <= budget {
            used += size;
            true
        } else {
            false
        }
    });
    ids
}

/// Runs the backtest on the dataset at `dataset`.
pub fn simulate(dataset: &Path, options: &SimulateOptions) -> Result<Simulation, SimulateError> {
    let capacity = options
        .capacity
        .or(options.rank.budget.capacity)
        .ok_or(SimulateError::NoCapacity)?;
    let files = rank::dataset_files(dataset)?;
    let polars_error = |source| SimulateError::Polars {
        path: dataset.to_path_buf(),
        source,
    };
    let instant = |micros| DateTime::from_timestamp_micros(micros).unwrap_or_default();
    let (start, end) = rank::time_span(&files, None)
        .map_err(polars_error)?
        .map(|(start, end)| (instant(start), instant(end)))
        .ok_or_else(|| RankError::NoEvents(dataset.to_path_buf()))?;
    let split = match options.split {
        Split::At(at) => at,
        Split::Share(share) => start + (end - start) * ((share * 1e6).round() as i32) / 1_000_000,
    };
    if split <= start || split > end {
        let which = if split <= start { "train" } else { "test" };
        return Err(SimulateError::EmptySide {
            split,
            which,
            start,
            end,
        });
    }
    let mut rank_options = options.rank.clone();
    rank_options.until = Some(split);
    let train_manifest = rank::rank(dataset, &rank_options)?;

    let mut trace = load_trace(&files, split).map_err(polars_error)?;
    if trace.events.is_empty() {
        return Err(SimulateError::EmptySide {
            split,
            which: "test",
            start,
            end,
        });
    }
    let preload: Vec<u32> = train_manifest
        .entries
        .iter()
        .map(|entry| trace.id(&entry.key))
        .collect();
    if trace.keys.len() >= u32::MAX as usize {
        return Err(SimulateError::TooManyKeys);
    }
    let overhead = options.rank.item_overhead;
    let manifest_sizes: HashMap<&str, u64> = train_manifest
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.size_bytes))
        .collect();
    let typical_value = typical(&trace.value_sizes);
    let sizes: Vec<u64> = trace
        .keys
        .iter()
        .zip(&trace.value_sizes)
        .map(|(key, value)| {
            let size = match (value, manifest_sizes.get(key.as_str())) {
                (Some(value), _) => key.len() as u64 + value,
                (None, Some(size)) => *size,
                (None, None) => key.len() as u64 + typical_value,
            };
            size + overhead
        })
        .collect();

    let test_requests = trace.reads();
    let first = options
        .first
        .unwrap_or_else(|| (test_requests / 10).max(1))
        .min(test_requests);
    let budget = options.rank.budget.bytes;
    let started = Instant::now();
    let cold = replay(&trace, &sizes, capacity, &[], first);
    let warmed = replay(&trace, &sizes, capacity, &preload, first);
    let early_oracle_keys = pack_by_density(&trace.read_counts(Some(first)), &sizes, budget);
    let early_oracle = replay(&trace, &sizes, capacity, &early_oracle_keys, first);
    let whole_oracle_keys = pack_by_density(&trace.read_counts(None), &sizes, budget);
    let whole_oracle = replay(&trace, &sizes, capacity, &whole_oracle_keys, first);
    let elapsed = started.elapsed().as_secs_f64();
    let replayed = 4 * trace.events.len() as u64;

    let oracle_gain = early_oracle.early_hits.saturating_sub(cold.early_hits);
    let prediction = Prediction {
        split_at: split,
        capacity_bytes: capacity,
        budget_bytes: budget,
        test_requests,
        first_requests: first,
        early: HitRates {
            cold: cold.early_hit_rate(),
            warmed: warmed.early_hit_rate(),
            oracle: early_oracle.early_hit_rate(),
        },
        whole: HitRates {
            cold: cold.hit_rate(),
            warmed: warmed.hit_rate(),
            oracle: whole_oracle.hit_rate(),
        },
        early_gain_vs_oracle: (oracle_gain > 0)
            .then(|| (warmed.early_hits as f64 - cold.early_hits as f64) / oracle_gain as f64),
    };
    Ok(Simulation {
        prediction,
        train_manifest,
        replay_requests_per_s: if elapsed > 0.0 {
            replayed as f64 / elapsed
        } else {
            f64::INFINITY
        },
    })
}

fn typical(sizes: &[Option<u64>]) -> u64 {
    let mut known: Vec<u64> = sizes.iter().flatten().copied().collect();
    known.sort_unstable();
    known.get(known.len() / 2).copied().unwrap_or(0)
}

/// The events from `split` on, in time order (events at the same instant in dataset order).
fn load_trace(files: &[PathBuf], split: DateTime<Utc>) -> PolarsResult<Trace> {
    let frame = rank::scan(files, None)?
        .filter(
            col(columns::TS)
                .cast(DataType::Int64)
                .gt_eq(lit(split.timestamp_micros())),
        )
        .select([
            col(columns::TS),
            col(columns::KEY),
            col(columns::OP),
            col(columns::COUNT),
            col(columns::VALUE_SIZE),
        ])
        .sort(
            [columns::TS],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .collect()?;
    let keys = frame.column(columns::KEY)?.str()?;
    let ops = frame.column(columns::OP)?.str()?;
    let counts = frame.column(columns::COUNT)?.u32()?;
    let value_sizes = frame.column(columns::VALUE_SIZE)?.u32()?;
    let mut trace = Trace {
        events: Vec::with_capacity(frame.height()),
        ..Trace::default()
    };
    for (((key, op), count), value_size) in keys
        .iter()
        .zip(ops.iter())
        .zip(counts.iter())
        .zip(value_sizes.iter())
    {
        let id = trace.id(key.unwrap_or_default());
        if let Some(size) = value_size
            && trace.value_sizes[id as usize].is_none()
            && size > 0
        {
            trace.value_sizes[id as usize] = Some(u64::from(size));
        }
        let op = match op.unwrap_or_default() {
            "get" => TraceOp::Read,
            "set" | "add" | "replace" | "cas" => TraceOp::Write,
            "delete" => TraceOp::Delete,
            "touch" => TraceOp::Touch,
            _ => TraceOp::Other,
        };
        trace.events.push(TraceEvent {
            key: id,
            op,
            count: count.unwrap_or(1).max(1),
        });
    }
    Ok(trace)
}
