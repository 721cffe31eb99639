//! Prometheus metrics of the last run, for batch-job monitoring: a textfile for node_exporter's
//! textfile collector (`--metrics-file`), or a push to a Pushgateway (`--pushgateway`).
//!
//! Every metric is a gauge about the last run. `cachewarm_run_last_success_timestamp_seconds`
//! survives failed runs: the textfile carries the previous value over, and a failed run's push
//! uses POST, which leaves the metrics it does not name (that one) in place; a successful run
//! PUTs, replacing the whole group.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use schemas::Report;
use schemas::report::{Outcome, TargetStatus};

/// The metric that says when a run last succeeded.
const LAST_SUCCESS: &str = "cachewarm_run_last_success_timestamp_seconds";

/// How long a push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the run did what it was asked: completed, nothing failed, not a dry run.
pub fn succeeded(report: &Report) -> bool {
    report.outcome == Outcome::Completed
        && report.source_error.is_none()
        && !report.dry_run
        && report.targets.iter().all(|t| t.status == TargetStatus::Ok)
}

/// The run's finish time when it succeeded.
pub fn success_time(report: &Report) -> Option<f64> {
    succeeded(report).then(|| report.timings.finished_at.timestamp_millis() as f64 / 1000.0)
}

/// The last success to write into the textfile at `path`: this run's, else the one the file
/// already holds.
pub fn last_success(path: &Path, report: &Report) -> Option<f64> {
    success_time(report).or_else(|| {
        let text = std::fs::read_to_string(path).ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(LAST_SUCCESS)?.trim().parse().ok())
    })
}

/// The metrics in the Prometheus text exposition format (version 0.0.4).
pub fn render(report: &Report, last_success: Option<f64>) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, samples: Vec<(Vec<(&str, String)>, f64)>| {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in samples {
            let labels = if labels.is_empty() {
                String::new()
            } else {
                let inner: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                format!("{{{}}}", inner.join(","))
            };
            let _ = writeln!(out, "{name}{labels} {}", number(value));
        }
    };
    let outcome = serde_json::to_value(report.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    family(
        "cachewarm_run_info",
        "The last warm run; always 1, its labels say which run.",
        vec![(
            vec![
                ("run_id", report.run_id.clone()),
                (
                    "environment",
                    report.environment.clone().unwrap_or_default(),
                ),
                ("outcome", outcome),
                ("manifest_sha256", report.manifest.sha256.clone()),
            ],
            1.0,
        )],
    );
    family(
        "cachewarm_run_success",
        "1 when the last run completed with every store and the source working, else 0.",
        vec![(vec![], if succeeded(report) { 1.0 } else { 0.0 })],
    );
    family(
        "cachewarm_run_finished_timestamp_seconds",
        "When the last run finished, Unix time.",
        vec![(
            vec![],
            report.timings.finished_at.timestamp_millis() as f64 / 1000.0,
        )],
    );
    family(
        LAST_SUCCESS,
        "When a run last succeeded, Unix time.",
        last_success.map(|t| (vec![], t)).into_iter().collect(),
    );
    family(
        "cachewarm_run_duration_seconds",
        "Wall time of the last run, observation windows included.",
        vec![(vec![], report.timings.total_ms as f64 / 1000.0)],
    );
    family(
        "cachewarm_run_warm_duration_seconds",
        "Wall time the last run spent writing.",
        vec![(vec![], report.timings.warm_ms as f64 / 1000.0)],
    );
    family(
        "cachewarm_run_manifest_entries",
        "Entries in the last run's manifest.",
        vec![(vec![], report.manifest.entries as f64)],
    );
    let per_target = |f: &dyn Fn(&schemas::report::TargetReport) -> Option<f64>| {
        report
            .targets
            .iter()
            .filter_map(|t| Some((vec![("target", t.url.clone())], f(t)?)))
            .collect::<Vec<_>>()
    };
    family(
        "cachewarm_run_target_up",
        "1 when the target stayed reachable for the whole last run, else 0.",
        per_target(&|t| {
            Some(if t.status == TargetStatus::Ok {
                1.0
            } else {
                0.0
            })
        }),
    );
    let mut keys = Vec::new();
    for t in &report.targets {
        for (result, n) in t.counts.iter() {
            keys.push((
                vec![
                    ("target", t.url.clone()),
                    ("result", result.as_str().to_owned()),
                ],
                n as f64,
            ));
        }
    }
    family(
        "cachewarm_run_keys",
        "Manifest entries of the last run by what became of them at each target.",
        keys,
    );
    family(
        "cachewarm_run_bytes_written",
        "Key and value bytes the last run wrote to each target.",
        per_target(&|t| Some(t.bytes_written as f64)),
    );
    family(
        "cachewarm_run_budget_bytes",
        "The byte budget of each target in the last run, where its capacity is known.",
        per_target(&|t| t.budget_bytes.map(|b| b as f64)),
    );
    family(
        "cachewarm_run_keys_per_second",
        "Entries handled per second of warming in the last run.",
        per_target(&|t| Some(t.keys_per_s)),
    );
    let mut coverage = Vec::new();
    let mut hit_ratio = Vec::new();
    let mut failures = Vec::new();
    for t in &report.targets {
        let label = |phase: &str| vec![("target", t.url.clone()), ("phase", phase.to_owned())];
        if let Some(c) = &t.coverage_before {
            coverage.push((label("before"), c.share));
        }
        if let Some(c) = &t.coverage_after {
            coverage.push((label("after"), c.share));
        }
        let window = |phase: &str| vec![("target", t.url.clone()), ("window", phase.to_owned())];
        if let Some(rate) = t.window_before.as_ref().and_then(|w| w.hit_rate) {
            hit_ratio.push((window("before"), rate));
        }
        if let Some(rate) = report
            .observation
            .as_ref()
            .and_then(|o| o.baseline_hit_rate)
        {
            hit_ratio.push((window("baseline"), rate));
        }
        if let Some(rate) = t.window_after.as_ref().and_then(|w| w.hit_rate) {
            hit_ratio.push((window("after"), rate));
        }
        for (reason, n) in &t.failure_reasons {
            failures.push((
                vec![("target", t.url.clone()), ("reason", reason.clone())],
                *n as f64,
            ));
        }
    }
    family(
        "cachewarm_run_coverage_ratio",
        "Share of the manifest's request weight present in each target before and after the last run.",
        coverage,
    );
    family(
        "cachewarm_run_hit_ratio",
        "Hit rate of live traffic at each target in the observation window before and after warming (or the baseline given).",
        hit_ratio,
    );
    family(
        "cachewarm_run_write_failures",
        "Writes the stores refused in the last run, by reason.",
        failures,
    );
    out
}

/// Pushes `text` to the Pushgateway at `base` under job `cachewarm` (and the run's
/// environment, when named): PUT after a success, POST otherwise (see the module docs).
pub fn push(base: &str, report: &Report, text: &str) -> anyhow::Result<()> {
    let mut url = format!("{}/metrics/job/cachewarm", base.trim_end_matches('/'));
    if let Some(environment) = &report.environment {
        // Base64 (URL-safe) keeps any value, slashes included, one path segment.
        let _ = write!(url, "/environment@base64/{}", base64url(environment));
    }
    if let Some(shard) = report.shard {
        // The shards of a deploy push side by side: a group each, or they would replace each
        // other's metrics.
        let _ = write!(url, "/shard/{}of{}", shard.index, shard.count);
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(PUSH_TIMEOUT))
        .build()
        .into();
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    let result = if succeeded(report) {
        agent
            .put(&url)
            .header("Content-Type", content_type)
            .send(text)
    } else {
        agent
            .post(&url)
            .header("Content-Type", content_type)
            .send(text)
    };
    result
        .map(drop)
        .with_context(|| format!("failed to push metrics to `{}`", crate::store::redact(&url)))
}

/// A label value escaped for the text format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// RFC 4648 base64 with the URL-safe alphabet, no padding: what the Pushgateway accepts after
/// `@base64` in a grouping-key label.
fn base64url(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    if out.is_empty() {
        // An empty label value is written as a lone `=` in base64 form.
        out.push('=');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc4648() {
        assert_eq!(base64url("f"), "Zg");
        assert_eq!(base64url("fo"), "Zm8");
        assert_eq!(base64url("foo"), "Zm9v");
        assert_eq!(base64url("foob"), "Zm9vYg");
        assert_eq!(base64url("a/b?"), "YS9iPw");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
