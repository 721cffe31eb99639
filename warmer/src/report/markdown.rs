//! `report.md`: the report for a pull request, a chat message or a terminal.

use std::fmt::Write;

use schemas::Report;
use schemas::report::{EntryOutcome, Outcome, TargetStatus};

use super::{bytes, pct, rate_before, reason_text, window_rate};

/// The whole report as Markdown.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Warm run {}\n", report.run_id);
    let _ = writeln!(out, "{}\n", headline(report));
    let t = &report.timings;
    let _ = writeln!(
        out,
        "- started {}, {} in {:.1} s (warming {:.1} s)",
        t.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        outcome(report.outcome),
        t.total_ms as f64 / 1000.0,
        t.warm_ms as f64 / 1000.0
    );
    let _ = writeln!(
        out,
        "- manifest `{}`: {} entries, sha256 `{}`",
        report.manifest.path,
        report.manifest.entries,
        report
            .manifest
            .sha256
            .get(..12)
            .unwrap_or(&report.manifest.sha256)
    );
    if let Some(line) = super::shards_line(report) {
        let _ = writeln!(out, "- {line}");
    }
    let _ = writeln!(out, "- source `{}`", report.source);
    if let Some(error) = &report.source_error {
        let _ = writeln!(out, "- **source failed**: {}", cell(error));
    }
    if let Some(env) = &report.environment {
        let _ = writeln!(out, "- environment `{env}`");
    }
    if report.dry_run {
        let _ = writeln!(
            out,
            "- dry run: nothing was written; the counts say what would have been"
        );
    }

    let _ = writeln!(out, "\n## Did warming help?\n");
    match &report.observation {
        Some(o) if o.observe_ms > 0 => {
            let before = match o.baseline_hit_rate {
                Some(rate) => format!("the baseline hit rate given ({})", pct(rate)),
                None => "an equal window just before warming".to_owned(),
            };
            let _ = writeln!(
                out,
                "Hit rate of live traffic over {:.0} s just after warming, beside {before}. \
                 Coverage is the share of the manifest's request weight present in the store.\n",
                o.observe_ms as f64 / 1000.0
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "No live traffic was observed (`--observe`): coverage only. Coverage is the \
                 share of the manifest's request weight present in the store.\n"
            );
        }
    }
    let _ = writeln!(
        out,
        "| target | hit rate before | hit rate after | change | coverage before | coverage after |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for target in &report.targets {
        let before = rate_before(report, target);
        let after = target.window_after.as_ref().and_then(|w| w.hit_rate);
        let change = match (before, after) {
            (Some(b), Some(a)) => format!("{:+.1} pts", (a - b) * 100.0),
            _ => "–".to_owned(),
        };
        let before_text = if target.window_before.is_some() {
            window_rate(target.window_before.as_ref())
        } else {
            before.map_or("not measured".to_owned(), pct)
        };
        let _ = writeln!(
            out,
            "| `{}` | {before_text} | {} | {change} | {} | {} |",
            target.url,
            window_rate(target.window_after.as_ref()),
            target
                .coverage_before
                .as_ref()
                .map_or("unknown".into(), |c| pct(c.share)),
            target
                .coverage_after
                .as_ref()
                .map_or("unknown".into(), |c| pct(c.share)),
        );
    }
    let windows: Vec<_> = report
        .targets
        .iter()
        .flat_map(|t| {
            [("before", &t.window_before), ("after", &t.window_after)]
                .into_iter()
                .filter_map(move |(phase, w)| Some((t, phase, w.as_ref()?)))
        })
        .collect();
    if !windows.is_empty() {
        let _ = writeln!(out, "\n| target | window | from | to | hits | misses |");
        let _ = writeln!(out, "|---|---|---|---|---:|---:|");
        for (target, phase, w) in windows {
            let _ = writeln!(
                out,
                "| `{}` | {phase} warming | {} | {} | {} | {} |",
                target.url,
                w.started_at.format("%H:%M:%S%.3f"),
                w.finished_at.format("%H:%M:%S%.3f"),
                w.hits,
                w.misses
            );
        }
    }
    let counted = super::counted_targets(report);
    if !counted.is_empty() {
        let _ = writeln!(
            out,
            "
The stores' cumulative read counters when warming started and ended (the \
             difference includes the warmer's own probes):\n"
        );
        let _ = writeln!(
            out,
            "| target | hits before | misses before | hits after | misses after |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for (target, before, after) in counted {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                target.url, before.hits, before.misses, after.hits, after.misses
            );
        }
    }

    if let Some(p) = &report.prediction {
        let _ = writeln!(out, "\n## Predicted vs measured\n");
        let _ = writeln!(
            out,
            "The analyzer's backtest replayed {} reads after {} through an LRU of {} cold and \
             warmed with this ranking.\n",
            p.test_requests,
            p.split_at.format("%Y-%m-%d %H:%M UTC"),
            bytes(p.capacity_bytes)
        );
        let _ = writeln!(out, "| | before warming (cold) | after warming | oracle |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| predicted, first {} reads | {} | {} | {} |",
            p.first_requests,
            pct(p.early.cold),
            pct(p.early.warmed),
            pct(p.early.oracle)
        );
        let _ = writeln!(
            out,
            "| predicted, whole test window | {} | {} | {} |",
            pct(p.whole.cold),
            pct(p.whole.warmed),
            pct(p.whole.oracle)
        );
        for target in &report.targets {
            let _ = writeln!(
                out,
                "| measured at `{}` | {} | {} | |",
                target.url,
                rate_before(report, target).map_or("not measured".into(), pct),
                window_rate(target.window_after.as_ref())
            );
        }
    }

    let _ = writeln!(out, "\n## What it cost\n");
    let _ = writeln!(
        out,
        "| target | status | written | bytes written | budget | keys/s |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
    for target in &report.targets {
        let status = match target.status {
            TargetStatus::Ok => "ok".to_owned(),
            TargetStatus::Failed => format!(
                "**failed**: {}",
                cell(target.error.as_deref().unwrap_or("unknown"))
            ),
        };
        let budget = match target.budget_bytes {
            Some(budget) if budget > 0 => format!(
                "{} ({} used)",
                bytes(budget),
                pct(target.bytes_written as f64 / budget as f64)
            ),
            _ => "none known".to_owned(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {status} | {} | {} | {budget} | {:.0} |",
            target.url,
            target.counts.written,
            bytes(target.bytes_written),
            target.keys_per_s
        );
    }

    let _ = writeln!(out, "\n## Where every entry ended up\n");
    let _ = write!(out, "| target |");
    for outcome in EntryOutcome::ALL {
        let _ = write!(out, " {} |", outcome.label());
    }
    let _ = writeln!(out, "\n|---|{}", "---:|".repeat(EntryOutcome::ALL.len()));
    for target in &report.targets {
        let _ = write!(out, "| `{}` |", target.url);
        for (_, n) in target.counts.iter() {
            let _ = write!(out, " {n} |");
        }
        let _ = writeln!(out);
    }
    for target in &report.targets {
        if let Some(rank) = target.budget_cut_rank {
            let _ = writeln!(
                out,
                "\nAt `{}` the budget cut the manifest at rank {rank}.",
                target.url
            );
        }
        if !target.failure_reasons.is_empty() {
            let _ = writeln!(out, "\nFailures at `{}` by reason:\n", target.url);
            for (reason, count) in &target.failure_reasons {
                let _ = writeln!(out, "- {count} × {}", cell(reason));
            }
        }
    }

    let _ = writeln!(out, "\n## Per category\n");
    let _ = writeln!(
        out,
        "| target | category | entries | written | coverage before | coverage after |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
    for target in &report.targets {
        for (name, category) in &target.categories {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} |",
                target.url,
                cell(name),
                category.counts.total(),
                category.counts.written,
                category
                    .coverage_before
                    .as_ref()
                    .map_or("unknown".into(), |c| pct(c.share)),
                category
                    .coverage_after
                    .as_ref()
                    .map_or("unknown".into(), |c| pct(c.share)),
            );
        }
    }

    let _ = writeln!(out, "\n## Top keys not warmed\n");
    let mut any = false;
    for target in &report.targets {
        if target.not_warmed.is_empty() {
            continue;
        }
        any = true;
        let _ = writeln!(out, "At `{}`:\n", target.url);
        let _ = writeln!(out, "| rank | key | category | requests | why |");
        let _ = writeln!(out, "|---:|---|---|---:|---|");
        for entry in &target.not_warmed {
            let why = match &entry.detail {
                Some(detail) => format!("{}: {}", reason_text(entry.reason), detail),
                None => reason_text(entry.reason).to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | {} |",
                entry.rank,
                cell(&entry.key).replace('`', "'"),
                cell(&entry.category),
                entry.requests,
                cell(&why)
            );
        }
        if target.counts.not_attempted > 0 {
            let _ = writeln!(
                out,
                "\n{} entries were not reached before the run stopped.",
                target.counts.not_attempted
            );
        }
        out.push('\n');
    }
    if !any {
        let _ = writeln!(out, "Every entry the run reached is in its stores.");
    }
    out
}

/// One sentence: did warming help, how much, at what cost.
pub fn headline(report: &Report) -> String {
    let mut parts = Vec::new();
    for target in &report.targets {
        let mut part = format!("`{}`: {} written", target.url, target.counts.written);
        if let (Some(before), Some(after)) = (
            target.coverage_before.as_ref(),
            target.coverage_after.as_ref(),
        ) {
            let _ = write!(
                part,
                ", coverage {} → {}",
                pct(before.share),
                pct(after.share)
            );
        }
        if let (Some(before), Some(after)) = (
            rate_before(report, target),
            target.window_after.as_ref().and_then(|w| w.hit_rate),
        ) {
            let _ = write!(part, ", hit rate {} → {}", pct(before), pct(after));
        }
        parts.push(part);
    }
    parts.join("; ")
}

pub(crate) fn outcome(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Completed => "completed",
        Outcome::TimedOut => "stopped by its timeout",
        Outcome::Interrupted => "interrupted",
    }
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
