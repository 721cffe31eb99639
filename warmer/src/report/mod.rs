//! What a run leaves for people and machines: the summary printed at its end, `report.md` and
//! a self-contained `report.html` in its run directory, a row per target in the run history
//! (`runs.parquet`), and Prometheus metrics.
//!
//! # Layout
//!
//! - [`markdown`] renders `report.md`.
//! - [`html`] renders `report.html` and the trend page over the history, with inline SVG
//!   charts (`svg`).
//! - [`history`] reads and appends the Parquet run history.
//! - [`merge`] makes one report of a deploy's shards' reports (`warmer report --merge`).
//! - [`metrics`] renders the Prometheus textfile and pushes to a Pushgateway.

pub mod history;
pub mod html;
pub mod markdown;
pub mod merge;
pub mod metrics;
mod svg;

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use schemas::Report;
use schemas::report::{
    Counts, Coverage, EntryOutcome, HitCounters, HitWindow, Outcome, RankPoint, TargetReport,
    TargetStatus,
};

use crate::manifest::ManifestFile;
use crate::rundir::{WriteError, write_atomically};

/// What to observe around a warm, and where a run's outputs beyond its run directory go.
#[derive(Debug, Clone, Default)]
pub struct ReportSettings {
    /// The length of the live-traffic windows before and after warming (`--observe`).
    pub observe: Option<Duration>,
    /// The hit rate to compare with instead of a window before warming.
    pub baseline_hit_rate: Option<f64>,
    /// The run history to append to; none to keep no history.
    pub history: Option<PathBuf>,
    /// The Prometheus textfile to write (`--metrics-file`).
    pub metrics_file: Option<PathBuf>,
    /// The Pushgateway to push the metrics to (`--pushgateway`).
    pub pushgateway: Option<String>,
}

/// Writes `report.md` and `report.html` into `run_dir`, appends the run to the history, and
/// writes and pushes the metrics. Only the run directory's files can fail the run: a history
/// or metrics failure is logged, so monitoring never breaks a deploy.
pub fn write_outputs(
    report: &Report,
    run_dir: &Path,
    settings: &ReportSettings,
) -> Result<(), WriteError> {
    write_atomically(
        &run_dir.join("report.md"),
        markdown::render(report).as_bytes(),
    )?;
    write_atomically(
        &run_dir.join("report.html"),
        html::render(report).as_bytes(),
    )?;
    if let Some(path) = &settings.history
        && let Err(error) = history::append(path, report)
    {
        tracing::warn!(error = format!("{error:#}"), "run history not updated");
    }
    if let Some(path) = &settings.metrics_file {
        let text = metrics::render(report, metrics::last_success(path, report));
        if let Err(source) = write_atomically(path, text.as_bytes()) {
            tracing::warn!(error = %source, path = %path.display(), "metrics file not written");
        }
    }
    if let Some(url) = &settings.pushgateway {
        let text = metrics::render(report, metrics::success_time(report));
        if let Err(error) = metrics::push(url, report, &text) {
            tracing::warn!(error = format!("{error:#}"), "metrics not pushed");
        }
    }
    Ok(())
}

/// Points of the cumulative request weight along the manifest's ranks: every rank of the
/// first 100, then about 400 evenly spaced, and the last. Always the whole manifest's, for a
/// shard's run too: the shards' reports then share one curve, on which each one's budget cut
/// is a manifest rank.
pub async fn rank_curve(manifest: &Arc<ManifestFile>) -> Vec<RankPoint> {
    let last = manifest.whole_entries;
    let step = (last.max(1) / 400).max(1);
    let mut points = Vec::new();
    let mut entries = crate::manifest::whole_batches(manifest, 5000, 2);
    let mut rank = 0u64;
    let mut requests = 0u64;
    while let Some(batch) = entries.recv().await {
        let Ok(batch) = batch else {
            return Vec::new();
        };
        for entry in batch {
            rank += 1;
            requests += entry.requests;
            if rank <= 100 || rank.is_multiple_of(step) || rank == last {
                points.push(RankPoint { rank, requests });
            }
        }
    }
    points
}

/// What part of the manifest the report is about, for a shard's or a merged report.
pub(crate) fn shards_line(report: &Report) -> Option<String> {
    if let Some(shard) = report.shard {
        return Some(format!(
            "shard {shard} of the manifest: the counts and coverage are over its entries only"
        ));
    }
    let runs = &report.merged_from;
    (!runs.is_empty()).then(|| {
        let each: Vec<String> = runs
            .iter()
            .map(|r| {
                let outcome = serde_json::to_value(r.outcome).unwrap_or_default();
                format!(
                    "{} `{}` ({})",
                    r.shard,
                    r.run_dir,
                    outcome.as_str().unwrap_or("")
                )
            })
            .collect();
        format!("merged from {} shards: {}", runs.len(), each.join(", "))
    })
}

/// A share as a percentage with one decimal.
pub(crate) fn pct(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// A window's hit rate, or why there is none.
pub(crate) fn window_rate(window: Option<&HitWindow>) -> String {
    match window {
        Some(HitWindow {
            hit_rate: Some(rate),
            ..
        }) => pct(*rate),
        Some(_) => "no reads".to_owned(),
        None => "not measured".to_owned(),
    }
}

/// The hit rate to compare the window after warming with: the window before, else the
/// baseline given on the command line.
pub(crate) fn rate_before(report: &Report, target: &TargetReport) -> Option<f64> {
    target
        .window_before
        .as_ref()
        .and_then(|w| w.hit_rate)
        .or_else(|| report.observation.as_ref()?.baseline_hit_rate)
}

/// Bytes in binary units.
/// The targets whose read counters were read when warming started and ended, with both.
pub(crate) fn counted_targets(report: &Report) -> Vec<(&TargetReport, &HitCounters, &HitCounters)> {
    report
        .targets
        .iter()
        .filter_map(|t| {
            Some((
                t,
                t.hit_counters_before.as_ref()?,
                t.hit_counters_after.as_ref()?,
            ))
        })
        .collect()
}

pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Why an entry was not warmed, in words.
pub(crate) fn reason_text(reason: EntryOutcome) -> &'static str {
    match reason {
        EntryOutcome::SourceMiss => "the source had no value",
        EntryOutcome::InvalidKey => "key not valid for this store",
        EntryOutcome::SkippedBudget => "over the byte budget",
        EntryOutcome::SkippedNearExpiry => "about to expire",
        EntryOutcome::Failed => "the store refused the write",
        other => other.as_str(),
    }
}

/// `written 3, already present 1, …`: each outcome's label and count, `outcomes` of them.
pub(crate) fn counts_line(counts: &Counts, outcomes: &[EntryOutcome]) -> String {
    outcomes
        .iter()
        .map(|&o| format!("{} {}", o.label(), counts.get(o)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A few lines that say what the run did and where its report is.
pub fn summary(report: &Report, run_dir: &Path) -> String {
    let mut out = String::new();
    let outcome = match report.outcome {
        Outcome::Completed => "completed",
        Outcome::TimedOut => "stopped by its timeout",
        Outcome::Interrupted => "interrupted",
    };
    let dry = if report.dry_run {
        " (dry run: nothing written)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "warm run {} {outcome} in {:.1}s{dry}: manifest {} ({} entries), source {}",
        report.run_id,
        report.timings.total_ms as f64 / 1000.0,
        report.manifest.path,
        report.manifest.entries,
        report.source,
    );
    if let Some(error) = &report.source_error {
        let _ = writeln!(out, "  source failed: {error}");
    }
    for target in &report.targets {
        let status = match target.status {
            TargetStatus::Ok => "ok".to_owned(),
            TargetStatus::Failed => format!(
                "FAILED: {}",
                target.error.as_deref().unwrap_or("unknown error")
            ),
        };
        let c = &target.counts;
        let _ = writeln!(out, "  {} ({}): {status}", target.url, target.kind);
        let _ = writeln!(out, "    {}", counts_line(c, &EntryOutcome::ALL));
        let _ = writeln!(
            out,
            "    coverage of the manifest's request weight: {} before, {} after",
            percent(target.coverage_before.as_ref()),
            percent(target.coverage_after.as_ref())
        );
        if target.window_before.is_some() || target.window_after.is_some() {
            let before = match &target.window_before {
                Some(_) => window_rate(target.window_before.as_ref()),
                None => rate_before(report, target).map_or("not measured".into(), pct),
            };
            let _ = writeln!(
                out,
                "    hit rate of live traffic: {before} before, {} after warming",
                window_rate(target.window_after.as_ref())
            );
        }
        match target.stopped_by.as_deref() {
            Some("high_water") => {
                let _ = writeln!(
                    out,
                    "    stopped at the high-water mark: the store's used memory reached the \
                     share of its capacity warming may push it to"
                );
            }
            Some("max_entries") => {
                let _ = writeln!(
                    out,
                    "    stopped at max_entries: the cache table holds as many rows as its \
                     MAX_ENTRIES (past it, Django culls a third)"
                );
            }
            Some(_) => {
                let _ = writeln!(
                    out,
                    "    stopped at max_fill: the run's byte budget ({} bytes) was spent",
                    target.budget_bytes.unwrap_or(0)
                );
            }
            None => {}
        }
        if let Some(throttle) = &target.throttle {
            if throttle.live_traffic {
                let lowest = throttle
                    .lowest_rate
                    .map_or(String::new(), |rate| format!(", down to {rate} writes/s"));
                let _ = writeln!(
                    out,
                    "    store latency {} µs before warming, peak {} µs (limit {} µs); \
                     slowed down {} times{lowest}",
                    throttle.baseline_us,
                    throttle.peak_us,
                    throttle.threshold_us,
                    throttle.backoffs
                );
            } else {
                let _ = writeln!(
                    out,
                    "    no live traffic on the store: the run was not slowed down"
                );
            }
        }
        if target.retries > 0 {
            let _ = writeln!(out, "    store calls retried: {}", target.retries);
        }
        if let Some(v) = &target.verification {
            let _ = writeln!(
                out,
                "    read back: verified {}, mismatched {}, changed by the live app {}",
                v.verified, v.mismatched, v.changed
            );
            for m in &v.mismatches {
                let _ = writeln!(
                    out,
                    "      MISMATCH rank {} `{}`: {}",
                    m.rank, m.key, m.reason
                );
            }
        }
        if c.written == 0 && c.already_present > 0 && !report.dry_run {
            let _ = writeln!(
                out,
                "    nothing new written: {} entries were already present",
                c.already_present
            );
        }
    }
    let report_path = run_dir.join("report.json");
    // Absolute, so the line means the same thing in a deploy log whatever the working directory.
    let report_path = std::path::absolute(&report_path).unwrap_or(report_path);
    let _ = writeln!(out, "report: {}", report_path.display());
    let html_path = report_path.with_file_name("report.html");
    let _ = writeln!(out, "html report: {}", html_path.display());
    out
}

fn percent(coverage: Option<&Coverage>) -> String {
    coverage.map_or("unknown".to_owned(), |c| format!("{:.1}%", c.share * 100.0))
}

#[cfg(test)]
pub(crate) mod tests {
    use schemas::Report;

    /// A report with one target, a window after warming and a hostile key.
    pub fn sample() -> Report {
        serde_json::from_value(serde_json::json!({
            "schema": "cachewarm.report/v1",
            "run_id": "20261121T000000000Z-1",
            "generator": "warmer test",
            "manifest": {"path": "m.json", "sha256": "ab".repeat(32), "entries": 3},
            "environment": "prod",
            "source": "redis://replica:6379",
            "source_error": null,
            "dry_run": false,
            "outcome": "completed",
            "timings": {
                "started_at": "2026-11-21T00:00:00Z",
                "finished_at": "2026-11-21T00:00:09Z",
                "total_ms": 9000,
                "warm_ms": 1000
            },
            "targets": [{
                "url": "redis://new:6379",
                "kind": "redis",
                "status": "ok",
                "error": null,
                "counts": {"written": 1, "already_present": 0, "source_miss": 0,
                    "invalid_key": 0, "skipped_budget": 1, "skipped_near_expiry": 0,
                    "failed": 1, "not_attempted": 0},
                "bytes_written": 100,
                "budget_bytes": 150,
                "keys_per_s": 3.0,
                "coverage_before": null,
                "coverage_after": {"share": 0.5, "requests_present": 5,
                    "requests_total": 10, "keys_present": 1},
                "hit_counters_before": {"hits": 1, "misses": 2},
                "hit_counters_after": {"hits": 3, "misses": 4},
                "failure_reasons": {"OOM": 1},
                "categories": {"default": {"counts": {"written": 1, "already_present": 0,
                    "source_miss": 0, "invalid_key": 0, "skipped_budget": 1,
                    "skipped_near_expiry": 0, "failed": 1, "not_attempted": 0},
                    "coverage_before": null, "coverage_after": null}},
                "window_after": {"started_at": "2026-11-21T00:00:05Z",
                    "finished_at": "2026-11-21T00:00:09Z", "hits": 3, "misses": 1,
                    "hit_rate": 0.75},
                "budget_cut_rank": 2,
                "not_warmed": [
                    {"rank": 2, "key": "<script>alert(1)</script>", "category": "default",
                     "requests": 3, "reason": "skipped_budget"},
                    {"rank": 3, "key": "a|b", "category": "default", "requests": 2,
                     "reason": "failed", "detail": "OOM"}
                ]
            }],
            "observation": {"observe_ms": 4000, "baseline_hit_rate": 0.25},
            "rank_curve": [{"rank": 1, "requests": 5}, {"rank": 3, "requests": 10}]
        }))
        .expect("a valid report")
    }

    /// The page is self-contained and inert: no script, nothing fetched, keys escaped, every
    /// chart present.
    #[test]
    fn html_is_self_contained_and_escaped() {
        let html = super::html::render(&sample());
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        for needle in ["src=", "href=", "url(", "@import"] {
            assert!(!html.contains(needle), "{needle} in the page");
        }
        for id in [
            "chart-hit-rate",
            "chart-coverage-by-rank",
            "chart-budget",
            "chart-categories",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert!(html.contains("budget cut at rank 2"));
    }

    /// Markdown tables survive keys with pipes; the baseline stands in for the window before.
    #[test]
    fn markdown_compares_with_the_baseline() {
        let md = super::markdown::render(&sample());
        assert!(md.contains("a\\|b"), "{md}");
        assert!(md.contains("| 25.0% | 75.0% | +50.0 pts |"), "{md}");
    }

    /// The deploy log's summary, whole: what a deploy shows of the run (reviewed in
    /// `snapshots/`; `cargo insta review` after a deliberate change).
    #[test]
    fn summary_text() {
        let summary = super::summary(
            &sample(),
            std::path::Path::new("/runs/20261121T000000000Z-1"),
        );
        insta::assert_snapshot!(summary);
    }

    /// The markdown report, whole.
    #[test]
    fn markdown_report() {
        insta::assert_snapshot!(super::markdown::render(&sample()));
    }

    /// The history appends and reads back what it was given.
    #[test]
    fn history_round_trip() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("runs.parquet");
        let report = sample();
        super::history::append(&path, &report).expect("first append");
        super::history::append(&path, &report).expect("second append");
        let rows = super::history::read(&path).expect("read back");
        let expected = super::history::Row::from_report(&report);
        assert_eq!(rows, [expected.clone(), expected].concat());
        assert_eq!(rows[0].hit_rate_after, Some(0.75));
        assert_eq!(rows[0].baseline_hit_rate, Some(0.25));
    }
}
