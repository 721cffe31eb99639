//! The per-key aggregation as one SQL query (`analyzer aggregate-sql`), for engines that scale
//! out: a `SELECT` over a relation named `events` (the dataset's columns, `schemas::event`)
//! whose result is the key-stats table (`schemas::key_stats`), computed as `aggregate` computes
//! it on one machine.
//!
//! Written once; a thin dialect layer spells the few functions the engines name differently:
//! timestamps to and from µs, integer division, identifier quoting and the median. Every
//! literal is cast to DOUBLE or BIGINT, since Spark and Trino read `0.5` as a DECIMAL.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use schemas::event::columns as event;
use schemas::key_stats::{WEIGHT_SCALE, columns as out};

use super::aggregate::{AUTO_HALF_LIFE_DIVISOR, HalfLife};

/// The SQL engines the query is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// Spark SQL 3.4 and later (Databricks, EMR, Dataproc, `spark-submit`).
    Spark,
    /// DuckDB 1.0 and later.
    Duckdb,
    /// Trino (and Athena v3, Starburst).
    Trino,
}

/// What to aggregate with.
#[derive(Debug, Clone)]
pub struct SqlOptions {
    pub dialect: Dialect,
    /// `Auto` or `EighthOfSpan`: an eighth of the events' span (one query cannot backtest).
    pub half_life: HalfLife,
    /// The instant weights are relative to; the last event when not given, as `analyzer
    /// rank` does.
    pub reference_time: Option<DateTime<Utc>>,
    /// Approximate medians (`percentile_approx`, `approx_quantile`); Trino's are always.
    pub approx_medians: bool,
}

/// Options that would make partial aggregates that cannot be merged.
#[derive(Debug, thiserror::Error)]
#[error(
    "--reference-time needs --half-life (a duration or `off`): an automatic half-life follows \
     each part's own span, so parts aggregated with it could not be added up"
)]
pub struct AutoHalfLifeWithReference;

impl Dialect {
    fn quote(self, name: &str) -> String {
        match self {
            Dialect::Spark => format!("`{name}`"),
            Dialect::Duckdb | Dialect::Trino => format!("\"{name}\""),
        }
    }

    /// Microseconds since the epoch of a timestamp.
    fn micros(self, ts: &str) -> String {
        match self {
            Dialect::Spark => format!("unix_micros({ts})"),
            Dialect::Duckdb => format!("epoch_us({ts})"),
            // to_unixtime is seconds as a DOUBLE: within 0.25 µs for this century, so rounding
            // its µs gives the exact value.
            Dialect::Trino => format!("CAST(round(to_unixtime({ts}) * 1000000) AS BIGINT)"),
        }
    }

    /// The UTC timestamp of microseconds since the epoch.
    fn timestamp(self, micros: &str) -> String {
        match self {
            Dialect::Spark => format!("timestamp_micros({micros})"),
            Dialect::Duckdb => format!("make_timestamp({micros})"),
            Dialect::Trino => format!("from_unixtime_nanos({micros} * 1000)"),
        }
    }

    fn integer_division(self, left: &str, right: &str) -> String {
        match self {
            Dialect::Spark => format!("({left}) DIV {right}"),
            Dialect::Duckdb => format!("({left}) // {right}"),
            Dialect::Trino => format!("({left}) / {right}"),
        }
    }

    /// The median of a DOUBLE: exact ones interpolate between the two middle values, as
    /// polars does.
    fn median(self, value: &str, approx: bool) -> String {
        match (self, approx) {
            (Dialect::Spark, false) => format!("percentile({value}, 0.5)"),
            (Dialect::Spark, true) => format!("percentile_approx({value}, 0.5)"),
            (Dialect::Duckdb, false) => format!("quantile_cont({value}, 0.5)"),
            (Dialect::Duckdb, true) => format!("approx_quantile({value}, 0.5)"),
            (Dialect::Trino, _) => format!("approx_percentile({value}, 0.5)"),
        }
    }
}

/// The query, with a comment saying how it was made.
pub fn aggregate_sql(options: &SqlOptions) -> Result<String, AutoHalfLifeWithReference> {
    let eighth = matches!(options.half_life, HalfLife::Auto | HalfLife::EighthOfSpan);
    if options.reference_time.is_some() && eighth {
        return Err(AutoHalfLifeWithReference);
    }
    let d = options.dialect;
    let q = |name: &str| d.quote(name);
    let e = |name: &str| format!("e.{}", d.quote(name));
    let double = |expr: &str| format!("CAST({expr} AS DOUBLE)");
    let ts_us = d.micros(&e(event::TS));

    // The one-row relation of the reference time and half-life, in µs.
    let reference = match options.reference_time {
        Some(at) => format!("CAST({} AS BIGINT)", at.timestamp_micros()),
        None => format!("MAX({ts_us})"),
    };
    let half_life = match options.half_life {
        HalfLife::Off => "CAST(NULL AS BIGINT)".to_owned(),
        HalfLife::Fixed(span) => format!("CAST({} AS BIGINT)", span.as_micros()),
        // A span of zero weighs every read 1, as `aggregate` does. One query cannot backtest
        // candidates, so `Auto` is an eighth of the span too, as `aggregate` alone takes it.
        HalfLife::Auto | HalfLife::EighthOfSpan => format!(
            "NULLIF({}, 0)",
            d.integer_division(
                &format!("MAX({ts_us}) - MIN({ts_us})"),
                &AUTO_HALF_LIFE_DIVISOR.to_string()
            )
        ),
    };
    let bounds_from = if options.reference_time.is_none() || eighth {
        " FROM events AS e".to_owned()
    } else {
        String::new()
    };

    let count = double(&e(event::COUNT));
    let weight = format!(
        "CASE WHEN b.{hl} IS NULL THEN {one} \
         ELSE POWER({half}, {age} / {span}) END",
        hl = q("half_life_us"),
        one = double("1"),
        half = double("0.5"),
        age = double(&format!("b.{} - {ts_us}", q("reference_us"))),
        span = double(&format!("b.{}", q("half_life_us"))),
    );
    // Rounded to the nearest 2^-20 per read, as `aggregate` does: + 0.5, then down.
    let weighted = format!(
        "CAST(FLOOR({count} * ({weight}) * {scale} + {half}) AS BIGINT)",
        scale = double(&format!("{}", WEIGHT_SCALE as u64)),
        half = double("0.5"),
    );
    let op = e(event::OP);
    let is_read = format!("{op} = 'get'");
    let is_write = format!("{op} IN ('set', 'add', 'replace', 'cas')");
    let is_miss = format!("{is_read} AND {} = FALSE", e(event::HIT));
    let sum_count_if = |condition: &str| {
        format!(
            "CAST(SUM(CASE WHEN {condition} THEN {} ELSE 0 END) AS BIGINT)",
            e(event::COUNT)
        )
    };
    let median = |value: &str| {
        format!(
            "CAST(ROUND({}) AS BIGINT)",
            d.median(&double(value), options.approx_medians)
        )
    };
    let ts = e(event::TS);
    let latency = e(event::LATENCY_US);

    let columns: Vec<(String, &str)> = vec![
        (e(event::KEY), out::KEY),
        (sum_count_if(&is_read), out::REQUESTS),
        (
            sum_count_if(&format!("{is_read} AND {} = TRUE", e(event::HIT))),
            out::HITS,
        ),
        (sum_count_if(&is_miss), out::MISSES),
        (
            format!("CAST(SUM(CASE WHEN {is_read} THEN {weighted} ELSE 0 END) AS BIGINT)"),
            out::WEIGHTED_REQUESTS,
        ),
        (sum_count_if(&is_write), out::WRITES),
        (format!("MIN({ts})"), out::FIRST_SEEN),
        (
            format!("MAX(CASE WHEN {is_read} THEN {ts} END)"),
            out::LAST_READ,
        ),
        (format!("MAX({ts})"), out::LAST_SEEN),
        // The last delete at the instant of the last access, as `aggregate` decides it.
        (
            format!("COALESCE(MAX(CASE WHEN {op} = 'delete' THEN {ts} END) = MAX({ts}), FALSE)"),
            out::DELETED_LAST,
        ),
        (median(&e(event::VALUE_SIZE)), out::VALUE_SIZE),
        (
            median(&format!(
                "CASE WHEN {is_write} THEN {} END",
                e(event::TTL_S)
            )),
            out::TTL_S,
        ),
        (
            format!(
                "CAST(SUM(CASE WHEN {is_miss} AND {latency} IS NOT NULL THEN {latency} ELSE 0 END) AS BIGINT)"
            ),
            out::MISS_LATENCY_US,
        ),
        (
            format!(
                "CAST(SUM(CASE WHEN {is_miss} AND {latency} IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT)"
            ),
            out::MISS_LATENCIES,
        ),
        (
            d.timestamp(&format!("MAX(b.{})", q("reference_us"))),
            out::REFERENCE_TIME,
        ),
        (format!("MAX(b.{})", q("half_life_us")), out::HALF_LIFE_US),
    ];

    let mut sql = String::new();
    let _ = writeln!(
        sql,
        "-- The key-stats table (schemas/json/key-stats.v1.schema.json) of the access events in \
         the relation events,"
    );
    let _ = writeln!(
        sql,
        "-- from analyzer {} aggregate-sql --dialect {} --half-life {} --reference-time {}{}.",
        env!("CARGO_PKG_VERSION"),
        match d {
            Dialect::Spark => "spark",
            Dialect::Duckdb => "duckdb",
            Dialect::Trino => "trino",
        },
        match options.half_life {
            HalfLife::Auto | HalfLife::EighthOfSpan => "span/8".to_owned(),
            HalfLife::Off => "off".to_owned(),
            HalfLife::Fixed(span) => humantime::format_duration(span).to_string(),
        },
        options
            .reference_time
            .map_or("last-event".to_owned(), |at| at.to_rfc3339()),
        if options.approx_medians {
            " --approx-medians"
        } else {
            ""
        },
    );
    let _ = writeln!(
        sql,
        "WITH b AS (\n  SELECT {reference} AS {}, {half_life} AS {}{bounds_from}\n)",
        q("reference_us"),
        q("half_life_us"),
    );
    sql.push_str("SELECT\n");
    let last = columns.len() - 1;
    for (i, (expr, name)) in columns.iter().enumerate() {
        let comma = if i == last { "" } else { "," };
        let _ = writeln!(sql, "  {expr} AS {}{comma}", q(name));
    }
    let _ = writeln!(sql, "FROM events AS e CROSS JOIN b");
    let _ = write!(sql, "GROUP BY {}", e(event::KEY));
    sql.push('\n');
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dialect: Dialect) -> SqlOptions {
        SqlOptions {
            dialect,
            half_life: HalfLife::Auto,
            reference_time: None,
            approx_medians: false,
        }
    }

    /// The result's columns are the key-stats table's, in its order, in every dialect: the
    /// reader finds them by name, and people reading the table by position.
    #[test]
    fn every_dialect_selects_the_key_stats_columns_in_order() {
        for dialect in [Dialect::Spark, Dialect::Duckdb, Dialect::Trino] {
            let sql = aggregate_sql(&options(dialect)).unwrap();
            let select = sql.split_once("\nSELECT\n").unwrap().1;
            let aliases: Vec<String> = select
                .lines()
                .take_while(|line| line.starts_with("  "))
                .map(|line| {
                    let alias = line.trim_end_matches(',').rsplit(" AS ").next().unwrap();
                    alias.trim_matches(['`', '"']).to_owned()
                })
                .collect();
            assert_eq!(aliases, schemas::key_stats::columns::ALL, "{dialect:?}");
        }
    }

    /// Each dialect spells timestamps, division, quoting and medians its own way; a function
    /// of another engine's in the text would fail there.
    #[test]
    fn dialects_use_their_own_functions() {
        let spark = aggregate_sql(&options(Dialect::Spark)).unwrap();
        let duckdb = aggregate_sql(&options(Dialect::Duckdb)).unwrap();
        let trino = aggregate_sql(&options(Dialect::Trino)).unwrap();
        for (sql, own, foreign) in [
            (
                &spark,
                ["unix_micros(", " DIV 8", "percentile("],
                ["epoch_us(", "\""],
            ),
            (
                &duckdb,
                ["epoch_us(", " // 8", "quantile_cont("],
                ["unix_micros(", "`"],
            ),
            (
                &trino,
                ["to_unixtime(", ") / 8", "approx_percentile("],
                ["epoch_us(", "`"],
            ),
        ] {
            for word in own {
                assert!(sql.contains(word), "{word} missing from\n{sql}");
            }
            for word in foreign {
                assert!(!sql.contains(word), "{word} in\n{sql}");
            }
        }
        let approx = SqlOptions {
            approx_medians: true,
            ..options(Dialect::Spark)
        };
        assert!(
            aggregate_sql(&approx)
                .unwrap()
                .contains("percentile_approx(")
        );
    }

    /// With the reference time and half-life given, parts of the dataset can be aggregated
    /// apart and added up: the query reads them from its text, and the events only once.
    #[test]
    fn a_given_reference_time_and_half_life_are_literals() {
        let at = DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let given = SqlOptions {
            half_life: HalfLife::Fixed(std::time::Duration::from_secs(3 * 3600)),
            reference_time: Some(at),
            ..options(Dialect::Spark)
        };
        let sql = aggregate_sql(&given).unwrap();
        assert!(sql.contains(&format!("CAST({} AS BIGINT)", at.timestamp_micros())));
        assert!(sql.contains("CAST(10800000000 AS BIGINT)"));
        assert_eq!(sql.matches("FROM events").count(), 1, "{sql}");

        let auto = SqlOptions {
            half_life: HalfLife::Auto,
            ..given
        };
        assert!(aggregate_sql(&auto).is_err());
    }
}
