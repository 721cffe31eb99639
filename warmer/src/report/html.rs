//! `report.html` and the trend page: one self-contained file each, inline CSS and SVG, no
//! script and no external resource, so they open offline and from a CI artifact as they are.

use std::fmt::Write;

use schemas::Report;
use schemas::report::{EntryOutcome, TargetStatus};

use super::history::Row;
use super::markdown::{headline, outcome};
use super::svg::{BarGroup, Line, Marker, bar_chart, esc, line_chart, shorten};
use super::{bytes, pct, rate_before, reason_text, window_rate};

const CSS: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#1a202c}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #e2e8f0}
.lead{font-size:1.05rem;color:#2d3748}.muted{fill:#718096;color:#718096}
table{border-collapse:collapse;margin:.5rem 0;font-size:13px}th,td{padding:.25rem .6rem;border-bottom:1px solid #edf2f7;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}code{font-size:12px;background:#f7fafc;padding:0 .2rem}
svg.chart{width:100%;height:auto;max-width:720px;display:block;margin:.5rem 0}
svg .grid{stroke:#edf2f7}svg .tick{font-size:11px;fill:#4a5568}svg .axis{font-size:12px;fill:#2d3748}
svg .label{font-size:12px;fill:#2d3748}svg .marker line{stroke:#c53030;stroke-dasharray:4 3}svg .marker text{font-size:11px;fill:#c53030}
.failed{color:#c53030;font-weight:600}.scroll{overflow-x:auto}figcaption{color:#4a5568;font-size:13px}
";

/// The run's report as one HTML page.
pub fn render(report: &Report) -> String {
    let mut out = page_start(&format!("Warm run {}", report.run_id));
    let _ = write!(
        out,
        "<h1>Warm run {}</h1><p class=\"lead\">{}</p>",
        esc(&report.run_id),
        esc(&headline(report).replace('`', ""))
    );
    let t = &report.timings;
    let _ = write!(
        out,
        "<ul><li>started {}, {} in {:.1} s (warming {:.1} s)</li>\
         <li>manifest <code>{}</code>: {} entries, sha256 <code>{}</code></li>\
         <li>source <code>{}</code></li>",
        t.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        outcome(report.outcome),
        t.total_ms as f64 / 1000.0,
        t.warm_ms as f64 / 1000.0,
        esc(&report.manifest.path),
        report.manifest.entries,
        esc(report
            .manifest
            .sha256
            .get(..12)
            .unwrap_or(&report.manifest.sha256)),
        esc(&report.source)
    );
    if let Some(line) = super::shards_line(report) {
        let _ = write!(out, "<li>{}</li>", esc(&line.replace('`', "")));
    }
    if let Some(error) = &report.source_error {
        let _ = write!(
            out,
            "<li class=\"failed\">source failed: {}</li>",
            esc(error)
        );
    }
    if let Some(env) = &report.environment {
        let _ = write!(out, "<li>environment <code>{}</code></li>", esc(env));
    }
    if report.dry_run {
        out.push_str("<li>dry run: nothing was written; the counts say what would have been</li>");
    }
    out.push_str("</ul>");

    hit_rates(&mut out, report);
    coverage_by_rank(&mut out, report);
    cost(&mut out, report);
    categories(&mut out, report);
    not_warmed(&mut out, report);
    out.push_str("</body></html>\n");
    out
}

fn hit_rates(out: &mut String, report: &Report) {
    out.push_str("<h2>Hit rate before vs after warming</h2>");
    let baseline = report
        .observation
        .as_ref()
        .and_then(|o| o.baseline_hit_rate);
    let before_name = if baseline.is_some() {
        "baseline (given)"
    } else {
        "before warming"
    };
    let mut series = vec![before_name, "after warming"];
    if report.prediction.is_some() {
        series.extend([
            "predicted cold (first reads)",
            "predicted warmed (first reads)",
        ]);
    }
    let groups: Vec<BarGroup> = report
        .targets
        .iter()
        .map(|target| {
            let mut values = vec![
                rate_before(report, target),
                target.window_after.as_ref().and_then(|w| w.hit_rate),
            ];
            if let Some(p) = &report.prediction {
                values.extend([Some(p.early.cold), Some(p.early.warmed)]);
            }
            BarGroup {
                label: target.url.clone(),
                values,
            }
        })
        .collect();
    out.push_str("<figure>");
    out.push_str(&bar_chart(
        "chart-hit-rate",
        "Hit rate of live traffic before and after warming",
        &series,
        &groups,
        1.0,
        &|v| pct(v),
    ));
    let caption = match &report.observation {
        Some(o) if o.observe_ms > 0 => format!(
            "The stores' own read counters over {:.0} s of live traffic just after warming, \
             beside {}.",
            o.observe_ms as f64 / 1000.0,
            if baseline.is_some() {
                "the baseline given on the command line"
            } else {
                "an equal window just before warming"
            }
        ),
        _ => "No live traffic was observed (run with --observe to measure hit rates).".to_owned(),
    };
    let _ = write!(out, "<figcaption>{}</figcaption></figure>", esc(&caption));
    let measured = report
        .targets
        .iter()
        .any(|t| t.window_before.is_some() || t.window_after.is_some());
    if measured {
        out.push_str(
            "<table><tr><th>target</th><th>window</th><th>from</th><th>to</th>\
             <th class=\"n\">hits</th><th class=\"n\">misses</th><th class=\"n\">hit rate</th>\
             </tr>",
        );
    }
    for target in &report.targets {
        for (phase, window) in [
            ("before warming", &target.window_before),
            ("after warming", &target.window_after),
        ] {
            let Some(w) = window else { continue };
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{phase}</td><td>{}</td><td>{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&target.url),
                w.started_at.format("%H:%M:%S%.3f"),
                w.finished_at.format("%H:%M:%S%.3f"),
                w.hits,
                w.misses,
                window_rate(Some(w))
            );
        }
    }
    if measured {
        out.push_str("</table>");
    }
    let counted = super::counted_targets(report);
    if !counted.is_empty() {
        out.push_str(
            "<p>The stores' cumulative read counters when warming started and ended (the \
             difference includes the warmer's own probes):</p><table><tr><th>target</th>\
             <th class=\"n\">hits before</th><th class=\"n\">misses before</th>\
             <th class=\"n\">hits after</th><th class=\"n\">misses after</th></tr>",
        );
        for (target, before, after) in counted {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&target.url),
                before.hits,
                before.misses,
                after.hits,
                after.misses
            );
        }
        out.push_str("</table>");
    }
    if let Some(p) = &report.prediction {
        let _ = write!(
            out,
            "<p>Predicted by the analyzer's backtest: {} reads after {} replayed through an LRU \
             of {}; over the first {} reads {} cold, {} warmed with this ranking, {} for an \
             oracle; over the whole window {} cold, {} warmed.</p>",
            p.test_requests,
            p.split_at.format("%Y-%m-%d %H:%M UTC"),
            bytes(p.capacity_bytes),
            p.first_requests,
            pct(p.early.cold),
            pct(p.early.warmed),
            pct(p.early.oracle),
            pct(p.whole.cold),
            pct(p.whole.warmed)
        );
    }
}

fn coverage_by_rank(out: &mut String, report: &Report) {
    out.push_str("<h2>Coverage by rank</h2><figure>");
    let total = report.rank_curve.last().map_or(0, |p| p.requests).max(1) as f64;
    let mut points: Vec<(f64, f64)> = vec![(0.0, 0.0)];
    points.extend(
        report
            .rank_curve
            .iter()
            .map(|p| (p.rank as f64, p.requests as f64 / total)),
    );
    // A shard's (or a merged) report counts part of the manifest; its curve is the whole's.
    let whole = report.shard.is_none() && report.merged_from.is_empty();
    let entries = report
        .rank_curve
        .last()
        .map_or(report.manifest.entries, |p| {
            p.rank.max(report.manifest.entries)
        })
        .max(1) as f64;
    let mut markers = Vec::new();
    for target in &report.targets {
        if let Some(rank) = target.budget_cut_rank {
            markers.push(Marker {
                x: rank as f64,
                label: format!("budget cut at rank {rank} ({})", shorten(&target.url, 28)),
            });
        }
        // Where the run stopped is a manifest rank only for a whole-manifest run.
        if whole && target.counts.not_attempted > 0 {
            let reached = report.manifest.entries - target.counts.not_attempted;
            markers.push(Marker {
                x: reached as f64,
                label: format!(
                    "run stopped at rank {reached} ({})",
                    shorten(&target.url, 28)
                ),
            });
        }
    }
    out.push_str(&line_chart(
        "chart-coverage-by-rank",
        "Share of the manifest's request weight carried by its first N keys",
        "rank (the first N keys of the manifest)",
        &[Line {
            name: "cumulative share of request weight",
            points,
        }],
        &markers,
        (0.0, entries),
        &|x| format!("{x:.0}"),
    ));
    out.push_str(
        "<figcaption>How much of the manifest's request weight its first N keys carry; the \
         warmer writes in this order, so a budget cut or a stop leaves the left part warm.\
         </figcaption></figure>",
    );
}

fn cost(out: &mut String, report: &Report) {
    out.push_str("<h2>What it cost</h2><figure>");
    let groups: Vec<BarGroup> = report
        .targets
        .iter()
        .map(|t| BarGroup {
            label: t.url.clone(),
            values: vec![
                t.budget_bytes
                    .filter(|&b| b > 0)
                    .map(|b| t.bytes_written as f64 / b as f64),
            ],
        })
        .collect();
    out.push_str(&bar_chart(
        "chart-budget",
        "Bytes written against the budget",
        &["share of the byte budget written"],
        &groups,
        1.0,
        &|v| pct(v),
    ));
    out.push_str("</figure>");
    out.push_str("<div class=\"scroll\"><table><tr><th>target</th><th>status</th>");
    for outcome in EntryOutcome::ALL {
        let _ = write!(out, "<th class=\"n\">{}</th>", outcome.label());
    }
    out.push_str(
        "<th class=\"n\">bytes</th><th class=\"n\">budget</th><th class=\"n\">keys/s</th></tr>",
    );
    for t in &report.targets {
        let c = &t.counts;
        let status = match t.status {
            TargetStatus::Ok => "ok".to_owned(),
            TargetStatus::Failed => format!(
                "<span class=\"failed\">failed: {}</span>",
                esc(t.error.as_deref().unwrap_or("unknown"))
            ),
        };
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{status}</td>",
            esc(&t.url)
        );
        for (_, n) in c.iter() {
            let _ = write!(out, "<td class=\"n\">{n}</td>");
        }
        let _ = write!(
            out,
            "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.0}</td></tr>",
            bytes(t.bytes_written),
            t.budget_bytes.map_or("none known".into(), bytes),
            t.keys_per_s
        );
    }
    out.push_str("</table></div>");
    for t in &report.targets {
        if t.failure_reasons.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "<p>Failures at <code>{}</code> by reason:</p><ul>",
            esc(&t.url)
        );
        for (reason, count) in &t.failure_reasons {
            let _ = write!(out, "<li>{count} × {}</li>", esc(reason));
        }
        out.push_str("</ul>");
    }
}

fn categories(out: &mut String, report: &Report) {
    out.push_str("<h2>Per category</h2><figure>");
    let several = report.targets.len() > 1;
    let groups: Vec<BarGroup> = report
        .targets
        .iter()
        .flat_map(|t| {
            t.categories.iter().map(move |(name, c)| BarGroup {
                label: if several {
                    format!("{name} @ {}", t.url)
                } else {
                    name.clone()
                },
                values: vec![
                    c.coverage_before.as_ref().map(|c| c.share),
                    c.coverage_after.as_ref().map(|c| c.share),
                ],
            })
        })
        .collect();
    out.push_str(&bar_chart(
        "chart-categories",
        "Coverage of each category's request weight before and after warming",
        &["coverage before", "coverage after"],
        &groups,
        1.0,
        &|v| pct(v),
    ));
    out.push_str(
        "<figcaption>The share of each category's request weight present in the store.\
         </figcaption></figure>",
    );
}

fn not_warmed(out: &mut String, report: &Report) {
    out.push_str("<h2>Top keys not warmed</h2>");
    let mut any = false;
    for t in &report.targets {
        if t.not_warmed.is_empty() {
            continue;
        }
        any = true;
        let _ = write!(
            out,
            "<p>At <code>{}</code>:</p><table class=\"not-warmed\"><tr><th class=\"n\">rank</th>\
             <th>key</th><th>category</th><th class=\"n\">requests</th><th>why</th></tr>",
            esc(&t.url)
        );
        for e in &t.not_warmed {
            let why = match &e.detail {
                Some(detail) => format!("{}: {detail}", reason_text(e.reason)),
                None => reason_text(e.reason).to_owned(),
            };
            let _ = write!(
                out,
                "<tr><td class=\"n\">{}</td><td><code>{}</code></td><td>{}</td>\
                 <td class=\"n\">{}</td><td>{}</td></tr>",
                e.rank,
                esc(&shorten(&e.key, 80)),
                esc(&e.category),
                e.requests,
                esc(&why)
            );
        }
        out.push_str("</table>");
        if t.counts.not_attempted > 0 {
            let _ = write!(
                out,
                "<p>{} entries were not reached before the run stopped.</p>",
                t.counts.not_attempted
            );
        }
    }
    if !any {
        out.push_str("<p>Every entry the run reached is in its stores.</p>");
    }
}

/// The trend page over the run history: one line per target and measure.
pub fn render_trend(rows: &[Row]) -> String {
    let mut out = page_start("cachewarm: warm runs over time");
    let _ = write!(
        out,
        "<h1>Warm runs over time</h1><p class=\"lead\">{} runs, {} rows (one per run and \
         target).</p>",
        rows.iter()
            .map(|r| r.run_id.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        rows.len()
    );
    let mut targets: Vec<&str> = rows.iter().map(|r| r.target_url.as_str()).collect();
    targets.sort_unstable();
    targets.dedup();
    let times: Vec<f64> = rows.iter().map(|r| r.started_at_s()).collect();
    let range = (
        times.iter().copied().fold(f64::INFINITY, f64::min),
        times.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let range = if range.0.is_finite() {
        range
    } else {
        (0.0, 1.0)
    };
    let format_time = |x: f64| {
        chrono::DateTime::from_timestamp(x as i64, 0)
            .map_or(String::new(), |t| t.format("%m-%d %H:%M").to_string())
    };
    let series =
        |f: &dyn Fn(&Row) -> Option<f64>, suffix: &str| -> Vec<(String, Vec<(f64, f64)>)> {
            targets
                .iter()
                .map(|target| {
                    let points = rows
                        .iter()
                        .filter(|r| r.target_url == *target)
                        .filter_map(|r| Some((r.started_at_s(), f(r)?)))
                        .collect();
                    (format!("{target} {suffix}"), points)
                })
                .collect()
        };
    for (id, title, lines) in [
        (
            "chart-trend-hit-rate",
            "Hit rate after warming, before it (or the baseline given), per run",
            [
                series(&|r| r.hit_rate_after, "after"),
                series(&|r| r.hit_rate_before, "before"),
                series(&|r| r.baseline_hit_rate, "baseline"),
            ]
            .concat(),
        ),
        (
            "chart-trend-coverage",
            "Coverage of the manifest's request weight after (and before) each run",
            [
                series(&|r| r.coverage_after, "after"),
                series(&|r| r.coverage_before, "before"),
            ]
            .concat(),
        ),
        (
            "chart-trend-budget",
            "Share of the byte budget written per run",
            series(
                &|r| Some(r.bytes_written as f64 / r.budget_bytes.filter(|&b| b > 0)? as f64),
                "",
            ),
        ),
    ] {
        let lines: Vec<Line<'_>> = lines
            .iter()
            .map(|(name, points)| Line {
                name,
                points: points.clone(),
            })
            .collect();
        let _ = write!(out, "<h2>{}</h2><figure>", esc(title));
        out.push_str(&line_chart(
            id,
            title,
            "run start (UTC)",
            &lines,
            &[],
            range,
            &format_time,
        ));
        out.push_str("<figcaption>");
        for (i, line) in lines.iter().enumerate() {
            let _ = write!(
                out,
                "<span style=\"color:{}\">■</span> {} ",
                super::svg::COLOURS[(i + 1) % super::svg::COLOURS.len()],
                esc(line.name)
            );
        }
        out.push_str("</figcaption></figure>");
    }
    out.push_str(
        "<h2>Runs</h2><table><tr><th>started</th><th>run</th><th>target</th><th>outcome</th>\
         <th class=\"n\">written</th><th class=\"n\">bytes</th><th class=\"n\">seconds</th>\
         <th class=\"n\">hit rate before</th><th class=\"n\">after</th></tr>",
    );
    for r in rows.iter().rev() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{:.1}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            format_time(r.started_at_s()),
            esc(&r.run_id),
            esc(&r.target_url),
            esc(&r.outcome),
            r.written,
            bytes(r.bytes_written),
            r.total_ms as f64 / 1000.0,
            r.hit_rate_before.map_or("–".into(), pct),
            r.hit_rate_after.map_or("–".into(), pct),
        );
    }
    out.push_str("</table></body></html>\n");
    out
}

fn page_start(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body>",
        esc(title)
    )
}
