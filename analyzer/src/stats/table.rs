//! The stats as an aligned text table, in the column order of Twitter's table where the two
//! share a column, and the duration labels of that table.

use super::{GroupStats, Stats};

/// Shares below this are left out of the text mixes (they print as `0.00`); JSON keeps them.
const SHOWN_SHARE: f64 = 0.005;
/// What a figure that cannot be computed prints as.
const NOT_AVAILABLE: &str = "n/a";

/// A duration as Twitter's table writes TTLs: whole seconds below an hour (`240s`), hours
/// below a day (`1.8h`, `24h` for 86,399 s), days above (`4d`, `92.6d`), one decimal at most.
pub fn duration_label(seconds: u64) -> String {
    let scaled = |unit: f64, suffix: &str| {
        let text = format!("{:.1}", seconds as f64 / unit);
        format!("{}{suffix}", text.strip_suffix(".0").unwrap_or(&text))
    };
    match seconds {
        0..3_600 => format!("{seconds}s"),
        3_600..86_400 => scaled(3_600.0, "h"),
        _ => scaled(86_400.0, "d"),
    }
}

#[derive(Debug, Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// The columns: header, alignment, and the cell of a group.
type Column = (&'static str, Align, fn(&GroupStats) -> String);

const COLUMNS: [Column; 15] = [
    ("group", Align::Left, |g| g.group.clone()),
    ("miss ratio", Align::Right, |g| {
        optional(g.production_miss_ratio, |r| format!("{r:.4}"))
    }),
    ("key size", Align::Right, |g| {
        format!("{:.0}", g.key_size_mean)
    }),
    ("value size", Align::Right, |g| {
        optional(g.value_size_mean, |s| format!("{s:.0}"))
    }),
    ("kqps", Align::Right, |g| {
        optional(g.kqps, |k| format!("{k:.2}"))
    }),
    ("mean freq", Align::Right, |g| {
        format!("{:.1}", g.mean_frequency)
    }),
    ("one-hit-wonder %", Align::Right, |g| {
        format!("{:.2}", 100.0 * g.one_hit_wonder_ratio)
    }),
    ("compulsory miss %", Align::Right, |g| {
        format!("{:.2}", 100.0 * g.compulsory_miss_ratio)
    }),
    ("common TTL", Align::Left, |g| {
        mix(g.ttls.iter().map(|t| (t.label.as_str(), t.share)))
    }),
    ("operation", Align::Left, |g| {
        mix(g.ops.iter().map(|o| (o.op.as_str(), o.share)))
    }),
    ("Zipf alpha", Align::Right, |g| {
        optional(g.zipf_alpha, |a| format!("{a:.4}"))
    }),
    ("keys", Align::Right, |g| g.keys.to_string()),
    ("requests", Align::Right, |g| g.requests.to_string()),
    ("span", Align::Right, |g| {
        duration_label(g.span_s.round() as u64)
    }),
    ("req/s", Align::Right, |g| {
        optional(g.requests_per_s, |r| format!("{r:.1}"))
    }),
];

fn optional(value: Option<f64>, show: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| NOT_AVAILABLE.to_owned(), show)
}

/// `name:share` pairs as in Twitter's table (`get:0.93 set:0.07`), leaving out shares that
/// round to zero.
fn mix<'a>(entries: impl Iterator<Item = (&'a str, f64)>) -> String {
    let shown: Vec<String> = entries
        .filter(|(_, share)| *share >= SHOWN_SHARE)
        .map(|(name, share)| format!("{name}:{share:.2}"))
        .collect();
    if shown.is_empty() {
        NOT_AVAILABLE.to_owned()
    } else {
        shown.join(" ")
    }
}

/// The stats as a table: a header, a rule, one line per group, then the overall row.
pub fn render_table(stats: &Stats) -> String {
    let rows: Vec<Vec<String>> = stats
        .groups
        .iter()
        .chain(std::iter::once(&stats.overall))
        .map(|group| COLUMNS.iter().map(|(_, _, cell)| cell(group)).collect())
        .collect();
    let widths: Vec<usize> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (header, _, _))| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .chain([header.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(&COLUMNS)
            .zip(&widths)
            .map(|((cell, (_, align, _)), &width)| match align {
                Align::Left => format!("{cell:<width$}"),
                Align::Right => format!("{cell:>width$}"),
            })
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&mut COLUMNS.iter().map(|(header, _, _)| *header));
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    out.push_str(&line(&mut rule.iter().map(String::as_str)));
    for row in &rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The labels Twitter's table prints for the TTLs behind them.
    #[test]
    fn durations_as_twitter_writes_them() {
        let cases = [
            (240, "240s"),
            (1_380, "1380s"),
            (3_600, "1h"),
            (6_480, "1.8h"),
            (27_000, "7.5h"),
            (86_399, "24h"),
            (86_400, "1d"),
            (103_680, "1.2d"),
            (345_600, "4d"),
            (8_000_640, "92.6d"),
        ];
        for (seconds, label) in cases {
            assert_eq!(duration_label(seconds), label, "{seconds} s");
        }
    }
}
