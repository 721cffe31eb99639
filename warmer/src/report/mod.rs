//! The human summary of a run's report, printed to stdout at the end of a run.

use std::fmt::Write;
use std::path::Path;

use schemas::Report;
use schemas::report::{Coverage, Outcome, TargetStatus};

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
        let _ = writeln!(
            out,
            "    written {}, already present {}, source miss {}, invalid key {}, over budget {}, \
             near expiry {}, failed {}, not attempted {}",
            c.written,
            c.already_present,
            c.source_miss,
            c.invalid_key,
            c.skipped_budget,
            c.skipped_near_expiry,
            c.failed,
            c.not_attempted
        );
        let _ = writeln!(
            out,
            "    coverage of the manifest's request weight: {} before, {} after",
            percent(target.coverage_before.as_ref()),
            percent(target.coverage_after.as_ref())
        );
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
    out
}

fn percent(coverage: Option<&Coverage>) -> String {
    coverage.map_or("unknown".to_owned(), |c| format!("{:.1}%", c.share * 100.0))
}
