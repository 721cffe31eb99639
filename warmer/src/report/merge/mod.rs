//! One report for a whole deploy from its shards' reports (`warmer report --merge RUN_DIR…`).
//!
//! The shards' run directories are checked first: every one a shard's finished invocation
//! (its `report.json` as new as its checkpoint), of the same manifest, targets, shard count
//! and kind of run (dry or real), and together exactly the shards `0..count`, none twice.
//! A refusal names the run directory and the field.
//!
//! Counts, bytes, budgets, failures by reason, retries, verification counts and the coverage
//! parts (requests present and total, keys present) are sums: the shards' entries are
//! disjoint and together the manifest. The rest is not additive:
//! - a coverage share is recomputed from the summed parts (the share of the whole manifest's
//!   request weight), and absent when any shard has none (a store it could not probe);
//! - `keys_per_s` is the sum of the shards' rates (the deploy's pace while they run side by
//!   side);
//! - the store's own read counters and the live-traffic windows measure the whole store, not
//!   a shard, so summing would count the same reads n times: the counters and window before
//!   are those of the shard that started first, after those of the shard that finished last;
//! - timings span the first start to the last end; `warm_ms` is the longest shard's;
//! - the outcome is the worst (interrupted, then timed out, then completed);
//! - ranks are the manifest's in every shard, so the budget cut is the lowest shard's cut,
//!   and the entries not warmed and mismatches the lowest-ranked of all shards;
//! - throttling: the lowest baseline and threshold, the highest peak, backoffs summed, the
//!   lowest rate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemas::report::{
    CategoryReport, Coverage, MISMATCHES_LISTED, MergedRun, NOT_WARMED_LISTED, Outcome,
    TargetReport, TargetStatus, ThrottleReport, Timings, Verification,
};
use schemas::{Checkpoint, Report, Shard};

use crate::rundir::{REPORT_FILE, read_checkpoint};

/// Why the run directories cannot make one report.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge: give the run directories of every shard")]
    Empty,
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is not a report", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("run directory `{}`: {message}", dir.display())]
    Refused { dir: PathBuf, message: String },
    #[error("shard {missing} of {count} is missing\nhint: give the run directory of every shard")]
    Missing { missing: String, count: u32 },
}

/// One shard's run: its directory, report and checkpoint.
struct ShardRun {
    dir: PathBuf,
    shard: Shard,
    report: Report,
}

/// Reads and checks the shards' run directories, and merges their reports.
pub fn merge_run_dirs(dirs: &[PathBuf]) -> Result<Report, MergeError> {
    let mut runs = dirs
        .iter()
        .map(|dir| read_run(dir))
        .collect::<Result<Vec<_>, _>>()?;
    check(&runs)?;
    runs.sort_by_key(|run| run.shard.index);
    Ok(merge(&runs))
}

fn read_run(dir: &Path) -> Result<ShardRun, MergeError> {
    let refused = |message: String| MergeError::Refused {
        dir: dir.to_path_buf(),
        message,
    };
    let path = dir.join(REPORT_FILE);
    let bytes = std::fs::read(&path).map_err(|source| MergeError::Read {
        path: path.clone(),
        source,
    })?;
    let report: Report =
        serde_json::from_slice(&bytes).map_err(|source| MergeError::Parse { path, source })?;
    if !report.merged_from.is_empty() {
        return Err(refused(
            "field `merged_from`: this is a merged report already; give the shards' own run \
             directories"
                .to_owned(),
        ));
    }
    let Some(shard) = report.shard else {
        return Err(refused(
            "field `shard` is absent from report.json: the run warmed the whole manifest, not \
             a shard of it (`warmer run --shard i/n`)"
                .to_owned(),
        ));
    };
    // A checkpoint newer than the report: the last invocation was killed, and the report
    // does not count what it did.
    let checkpoint: Checkpoint = read_checkpoint(dir).map_err(refused)?;
    if report.timings.finished_at < checkpoint.updated_at {
        return Err(refused(format!(
            "field `timings.finished_at` of report.json ({}) is older than the checkpoint's \
             `updated_at` ({}): the shard's last run was killed before its report\n\
             hint: resume it (`warmer run --resume {} --shard {shard}`), then merge",
            report.timings.finished_at,
            checkpoint.updated_at,
            dir.display()
        )));
    }
    Ok(ShardRun {
        dir: dir.to_path_buf(),
        shard,
        report,
    })
}

/// The shards make one deploy: same manifest, targets, count and kind of run, every shard
/// exactly once.
fn check(runs: &[ShardRun]) -> Result<(), MergeError> {
    let first = runs.first().ok_or(MergeError::Empty)?;
    let refuse = |run: &ShardRun, field: &str, theirs: String, ours: String| {
        Err(MergeError::Refused {
            dir: run.dir.clone(),
            message: format!(
                "field `{field}` is {theirs}, but {ours} in `{}`: not a shard of the same deploy",
                first.dir.display()
            ),
        })
    };
    let urls = |r: &Report| r.targets.iter().map(|t| t.url.clone()).collect::<Vec<_>>();
    let mut seen: BTreeMap<u32, &ShardRun> = BTreeMap::new();
    for run in runs {
        let (r, f) = (&run.report, &first.report);
        if r.manifest.sha256 != f.manifest.sha256 {
            refuse(
                run,
                "manifest.sha256",
                r.manifest.sha256.clone(),
                f.manifest.sha256.clone(),
            )?;
        }
        if run.shard.count != first.shard.count {
            let (theirs, ours) = (run.shard.to_string(), first.shard.to_string());
            refuse(run, "shard.count", theirs, ours)?;
        }
        if urls(r) != urls(f) {
            refuse(
                run,
                "targets",
                format!("{:?}", urls(r)),
                format!("{:?}", urls(f)),
            )?;
        }
        if r.dry_run != f.dry_run {
            refuse(run, "dry_run", r.dry_run.to_string(), f.dry_run.to_string())?;
        }
        if let Some(other) = seen.insert(run.shard.index, run) {
            return Err(MergeError::Refused {
                dir: run.dir.clone(),
                message: format!(
                    "field `shard` is {}, as in `{}`: the same shard twice",
                    run.shard,
                    other.dir.display()
                ),
            });
        }
    }
    let count = first.shard.count;
    let missing: Vec<String> = (0..count)
        .filter(|index| !seen.contains_key(index))
        .map(|index| format!("{index}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing {
            missing: missing.join(", "),
            count,
        });
    }
    Ok(())
}

/// The merged report of checked shards, sorted by shard index.
fn merge(runs: &[ShardRun]) -> Report {
    let reports: Vec<&Report> = runs.iter().map(|r| &r.report).collect();
    let first = reports[0];
    let started = reports
        .iter()
        .min_by_key(|r| r.timings.started_at)
        .copied()
        .unwrap_or(first);
    let finished = reports
        .iter()
        .max_by_key(|r| r.timings.finished_at)
        .copied()
        .unwrap_or(first);
    let joined = |each: &dyn Fn(&Report) -> Option<String>| {
        let lines: Vec<String> = runs
            .iter()
            .filter_map(|run| each(&run.report).map(|e| format!("shard {}: {e}", run.shard)))
            .collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    };
    let outcome = [Outcome::Interrupted, Outcome::TimedOut]
        .into_iter()
        .find(|o| reports.iter().any(|r| r.outcome == *o))
        .unwrap_or(Outcome::Completed);
    let all_same = |value: &dyn Fn(&Report) -> &Option<String>| {
        reports
            .iter()
            .all(|r| value(r) == value(first))
            .then(|| value(first).clone())
            .flatten()
    };
    let mut sources: Vec<&str> = reports.iter().map(|r| r.source.as_str()).collect();
    sources.dedup();
    Report {
        schema: first.schema.clone(),
        run_id: format!("merged-{}", first.run_id),
        generator: format!("warmer {}", env!("CARGO_PKG_VERSION")),
        manifest: schemas::report::ManifestRef {
            entries: reports.iter().map(|r| r.manifest.entries).sum(),
            ..first.manifest.clone()
        },
        environment: all_same(&|r| &r.environment),
        source: sources.join(", "),
        source_error: joined(&|r| r.source_error.clone()),
        dry_run: first.dry_run,
        outcome,
        timings: Timings {
            started_at: started.timings.started_at,
            finished_at: finished.timings.finished_at,
            total_ms: (finished.timings.finished_at - started.timings.started_at)
                .num_milliseconds()
                .max(0) as u64,
            warm_ms: reports.iter().map(|r| r.timings.warm_ms).max().unwrap_or(0),
        },
        targets: (0..first.targets.len())
            .map(|t| merge_target(runs, t, started, finished))
            .collect(),
        observation: reports.iter().find_map(|r| r.observation.clone()),
        prediction: reports.iter().find_map(|r| r.prediction.clone()),
        rank_curve: reports
            .iter()
            .map(|r| r.rank_curve.clone())
            .find(|c| !c.is_empty())
            .unwrap_or_default(),
        loader: merge_loaders(&reports),
        shard: None,
        merged_from: runs
            .iter()
            .map(|run| MergedRun {
                shard: run.shard,
                run_id: run.report.run_id.clone(),
                run_dir: run.dir.display().to_string(),
                outcome: run.report.outcome,
            })
            .collect(),
    }
}

/// Sums coverage parts; absent when any shard's is.
fn sum_coverage<'a>(each: impl Iterator<Item = Option<&'a Coverage>>) -> Option<Coverage> {
    let (mut present, mut total, mut keys) = (0, 0, 0);
    for coverage in each {
        let coverage = coverage?;
        present += coverage.requests_present;
        total += coverage.requests_total;
        keys += coverage.keys_present;
    }
    Some(Coverage::new(present, total, keys))
}

fn sum_map(maps: impl Iterator<Item = BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    let mut sum = BTreeMap::new();
    for map in maps {
        for (key, n) in map {
            *sum.entry(key).or_insert(0) += n;
        }
    }
    sum
}

/// Target `t` of every shard, as one.
fn merge_target(runs: &[ShardRun], t: usize, started: &Report, finished: &Report) -> TargetReport {
    let targets: Vec<&TargetReport> = runs.iter().map(|r| &r.report.targets[t]).collect();
    let first = targets[0];
    let mut counts = schemas::report::Counts::default();
    for target in &targets {
        counts.add(&target.counts);
    }
    let errors: Vec<String> = runs
        .iter()
        .filter_map(|run| {
            let error = run.report.targets[t].error.as_ref()?;
            Some(format!("shard {}: {error}", run.shard))
        })
        .collect();
    let mut categories: BTreeMap<String, CategoryReport> = BTreeMap::new();
    let names: Vec<&String> = targets.iter().flat_map(|t| t.categories.keys()).collect();
    for name in names {
        if categories.contains_key(name) {
            continue;
        }
        let each: Vec<Option<&CategoryReport>> =
            targets.iter().map(|t| t.categories.get(name)).collect();
        let mut merged = CategoryReport::default();
        for category in each.iter().flatten() {
            merged.counts.add(&category.counts);
            if let Some(verified) = &category.verification {
                merged
                    .verification
                    .get_or_insert_with(Default::default)
                    .add(verified);
            }
        }
        merged.coverage_before = sum_coverage(
            each.iter()
                .map(|c| c.and_then(|c| c.coverage_before.as_ref())),
        );
        merged.coverage_after = sum_coverage(
            each.iter()
                .map(|c| c.and_then(|c| c.coverage_after.as_ref())),
        );
        categories.insert(name.clone(), merged);
    }
    let mut not_warmed: Vec<_> = targets.iter().flat_map(|t| t.not_warmed.clone()).collect();
    not_warmed.sort_by_key(|n| n.rank);
    not_warmed.truncate(NOT_WARMED_LISTED);
    let cut = targets
        .iter()
        .filter(|t| t.budget_cut_rank.is_some())
        .min_by_key(|t| t.budget_cut_rank);
    TargetReport {
        url: first.url.clone(),
        kind: first.kind.clone(),
        status: if targets.iter().any(|t| t.status == TargetStatus::Failed) {
            TargetStatus::Failed
        } else {
            TargetStatus::Ok
        },
        error: (!errors.is_empty()).then(|| errors.join("\n")),
        counts,
        bytes_written: targets.iter().map(|t| t.bytes_written).sum(),
        budget_bytes: targets.iter().map(|t| t.budget_bytes).sum(),
        keys_per_s: targets.iter().map(|t| t.keys_per_s).sum(),
        coverage_before: sum_coverage(targets.iter().map(|t| t.coverage_before.as_ref())),
        coverage_after: sum_coverage(targets.iter().map(|t| t.coverage_after.as_ref())),
        hit_counters_before: started
            .targets
            .get(t)
            .and_then(|t| t.hit_counters_before.clone()),
        hit_counters_after: finished
            .targets
            .get(t)
            .and_then(|t| t.hit_counters_after.clone()),
        failure_reasons: sum_map(targets.iter().map(|t| t.failure_reasons.clone())),
        categories,
        window_before: targets
            .iter()
            .filter_map(|t| t.window_before.clone())
            .min_by_key(|w| w.started_at),
        window_after: targets
            .iter()
            .filter_map(|t| t.window_after.clone())
            .max_by_key(|w| w.finished_at),
        budget_cut_rank: cut.and_then(|t| t.budget_cut_rank),
        not_warmed,
        stopped_by: cut
            .and_then(|t| t.stopped_by.clone())
            .or_else(|| targets.iter().find_map(|t| t.stopped_by.clone())),
        throttle: merge_throttles(targets.iter().filter_map(|t| t.throttle.as_ref())),
        retries: targets.iter().map(|t| t.retries).sum(),
        verification: merge_verifications(targets.iter().filter_map(|t| t.verification.as_ref())),
    }
}

fn merge_throttles<'a>(each: impl Iterator<Item = &'a ThrottleReport>) -> Option<ThrottleReport> {
    each.fold(None, |merged: Option<ThrottleReport>, t| {
        Some(match merged {
            None => t.clone(),
            Some(m) => ThrottleReport {
                baseline_us: m.baseline_us.min(t.baseline_us),
                threshold_us: m.threshold_us.min(t.threshold_us),
                peak_us: m.peak_us.max(t.peak_us),
                backoffs: m.backoffs + t.backoffs,
                lowest_rate: match (m.lowest_rate, t.lowest_rate) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
                live_traffic: m.live_traffic || t.live_traffic,
            },
        })
    })
}

fn merge_verifications<'a>(each: impl Iterator<Item = &'a Verification>) -> Option<Verification> {
    let mut merged: Option<Verification> = None;
    for v in each {
        let m = merged.get_or_insert_with(Verification::default);
        m.verified += v.verified;
        m.mismatched += v.mismatched;
        m.changed += v.changed;
        m.mismatches.extend(v.mismatches.iter().cloned());
    }
    if let Some(m) = &mut merged {
        m.mismatches.sort_by_key(|m| m.rank);
        m.mismatches.truncate(MISMATCHES_LISTED);
    }
    merged
}

/// The loaders of every shard: processes and requests summed, the first hello, the earliest
/// failures.
fn merge_loaders(reports: &[&Report]) -> Option<schemas::report::LoaderReport> {
    let loaders: Vec<_> = reports.iter().filter_map(|r| r.loader.as_ref()).collect();
    let first = (*loaders.first()?).clone();
    let mut failures: Vec<_> = loaders.iter().flat_map(|l| l.failures.clone()).collect();
    failures.sort_by_key(|f| f.at);
    failures.truncate(schemas::report::LOADER_FAILURES_LISTED);
    Some(schemas::report::LoaderReport {
        workers: loaders.iter().map(|l| l.workers).sum(),
        started: loaders.iter().map(|l| l.started).sum(),
        restarts: loaders.iter().map(|l| l.restarts).sum(),
        requests: loaders.iter().map(|l| l.requests).sum(),
        retries: loaders.iter().map(|l| l.retries).sum(),
        misses: sum_map(loaders.iter().map(|l| l.misses.clone())),
        errors: sum_map(loaders.iter().map(|l| l.errors.clone())),
        failures,
        ..first
    })
}

#[cfg(test)]
mod tests;
