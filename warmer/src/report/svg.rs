//! Inline SVG charts: plain markup, no script, so a report opens offline in any browser and
//! the charts are in the document itself (and in its DOM once rendered).

use std::fmt::Write;

/// Escapes text for HTML and SVG content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The colours of the series, in order; also used by the legend swatches in the CSS.
pub const COLOURS: [&str; 6] = [
    "#9aa5b1", "#2f855a", "#3182ce", "#dd6b20", "#805ad5", "#c53030",
];

/// A named line of (x, y) points, y a share between 0 and 1.
#[derive(Debug)]
pub struct Line<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// A vertical marker at `x` with a label.
#[derive(Debug)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

const WIDTH: f64 = 720.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;

/// A line chart of shares (0–100 %) over `x` from `x_min` to `x_max`, with vertical markers.
pub fn line_chart(
    id: &str,
    title: &str,
    x_label: &str,
    lines: &[Line<'_>],
    markers: &[Marker],
    (x_min, x_max): (f64, f64),
    x_format: &dyn Fn(f64) -> String,
) -> String {
    let height = 280.0;
    let bottom = 44.0;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = height - TOP - bottom;
    let span = (x_max - x_min).max(f64::EPSILON);
    let sx = |x: f64| LEFT + (x - x_min) / span * plot_w;
    let sy = |y: f64| TOP + (1.0 - y.clamp(0.0, 1.0)) * plot_h;
    let mut svg = open(id, title, height);
    for tick in 0..=4 {
        let share = tick as f64 / 4.0;
        let y = sy(share);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{:.0}%</text>"#,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            share * 100.0
        );
    }
    for tick in 0..=4 {
        let x = x_min + span * tick as f64 / 4.0;
        let _ = write!(
            svg,
            r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            sx(x),
            TOP + plot_h + 16.0,
            esc(&x_format(x))
        );
    }
    let _ = write!(
        svg,
        r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        height - 6.0,
        esc(x_label)
    );
    for (i, marker) in markers.iter().enumerate() {
        let x = sx(marker.x);
        let _ = write!(
            svg,
            r#"<g class="marker"><line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}"/><text x="{:.1}" y="{:.1}">{}</text></g>"#,
            TOP + plot_h,
            x + 4.0,
            TOP + 12.0 + 14.0 * i as f64,
            esc(&marker.label)
        );
    }
    for (i, line) in lines.iter().enumerate() {
        if line.points.is_empty() {
            continue;
        }
        let colour = COLOURS[(i + 1) % COLOURS.len()];
        let mut d = String::new();
        for (j, &(x, y)) in line.points.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if j == 0 { "M" } else { " L" },
                sx(x),
                sy(y)
            );
        }
        let _ = write!(
            svg,
            r#"<path class="series" d="{d}" fill="none" stroke="{colour}" stroke-width="2"><title>{}</title></path>"#,
            esc(line.name)
        );
        // Dots for sparse lines (a run history), where a lone point draws no line.
        if line.points.len() <= 60 {
            for &(x, y) in &line.points {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                    sx(x),
                    sy(y)
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

/// One row of a bar chart: a label and one value per series (`None`: not measured).
#[derive(Debug)]
pub struct BarGroup {
    pub label: String,
    pub values: Vec<Option<f64>>,
}

/// Horizontal grouped bars, one group per row, one bar per series; values between 0 and
/// `max`, labelled with `format`.
pub fn bar_chart(
    id: &str,
    title: &str,
    series: &[&str],
    groups: &[BarGroup],
    max: f64,
    format: &dyn Fn(f64) -> String,
) -> String {
    let label_w = 200.0;
    let bar_h = 14.0;
    let gap = 10.0;
    let group_h = bar_h * series.len() as f64 + gap;
    // Legend entries flow into rows across the plot's width.
    let mut legend = Vec::with_capacity(series.len());
    let (mut x, mut row) = (label_w, 0.0);
    for name in series {
        let w = 24.0 + 6.5 * name.chars().count() as f64;
        if x + w > WIDTH - RIGHT && x > label_w {
            x = label_w;
            row += 1.0;
        }
        legend.push((x, TOP + 16.0 * row));
        x += w;
    }
    let legend_h = 22.0 + 16.0 * row;
    let height = TOP + legend_h + group_h * groups.len().max(1) as f64 + 8.0;
    let plot_w = WIDTH - label_w - RIGHT - 70.0;
    let max = if max > 0.0 { max } else { 1.0 };
    let mut svg = open(id, title, height);
    for (s, (name, (x, y))) in series.iter().zip(legend).enumerate() {
        let _ = write!(
            svg,
            r#"<rect x="{x:.1}" y="{y:.1}" width="10" height="10" fill="{}"/><text class="tick" x="{:.1}" y="{:.1}">{}</text>"#,
            COLOURS[s % COLOURS.len()],
            x + 14.0,
            y + 9.0,
            esc(name)
        );
    }
    for (g, group) in groups.iter().enumerate() {
        let y0 = TOP + legend_h + group_h * g as f64;
        let _ = write!(
            svg,
            r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            label_w - 8.0,
            y0 + group_h / 2.0,
            esc(&shorten(&group.label, 30))
        );
        for (s, value) in group.values.iter().enumerate() {
            let y = y0 + bar_h * s as f64;
            match value {
                Some(value) => {
                    let w = (value / max).clamp(0.0, 1.0) * plot_w;
                    let _ = write!(
                        svg,
                        r#"<rect class="bar" x="{label_w}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect><text class="tick" x="{:.1}" y="{:.1}">{}</text>"#,
                        bar_h - 2.0,
                        COLOURS[s % COLOURS.len()],
                        esc(series.get(s).copied().unwrap_or("")),
                        esc(&format(*value)),
                        label_w + w + 4.0,
                        y + bar_h - 4.0,
                        esc(&format(*value))
                    );
                }
                None => {
                    let _ = write!(
                        svg,
                        r#"<text class="tick muted" x="{:.1}" y="{:.1}">{}: not measured</text>"#,
                        label_w + 4.0,
                        y + bar_h - 4.0,
                        esc(series.get(s).copied().unwrap_or(""))
                    );
                }
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

fn open(id: &str, title: &str, height: f64) -> String {
    format!(
        r#"<svg class="chart" id="{}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0}" role="img" aria-label="{}"><title>{}</title>"#,
        esc(id),
        esc(title),
        esc(title)
    )
}

/// `text` cut to `max` characters with an ellipsis.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
