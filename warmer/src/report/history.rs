//! The run history: `runs.parquet`, one row per run and target (a run with one target adds one
//! row), for analysts to query with polars, DuckDB or Spark, and for `warmer report --history`.
//!
//! Parquet files cannot be appended to in place: a run reads the rows there are, adds its own
//! and writes the whole file anew (temp file, fsync, rename) under an exclusive lock on
//! `runs.parquet.lock`, so warmers sharing a runs directory (`--shard`) do not lose rows.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arrow_array::builder::{
    BooleanBuilder, Float64Builder, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use schemas::Report;
use schemas::report::EntryOutcome;

/// One run at one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub environment: Option<String>,
    pub manifest_path: String,
    pub manifest_sha256: String,
    pub manifest_entries: u64,
    pub source: String,
    pub source_error: Option<String>,
    /// `completed`, `timed_out` or `interrupted`.
    pub outcome: String,
    pub dry_run: bool,
    pub total_ms: u64,
    pub warm_ms: u64,
    /// The length of the observation windows, when traffic was observed.
    pub observe_ms: Option<u64>,
    pub target_url: String,
    pub target_kind: String,
    /// `ok` or `failed`.
    pub target_status: String,
    pub written: u64,
    pub already_present: u64,
    pub source_miss: u64,
    pub invalid_key: u64,
    pub skipped_budget: u64,
    pub skipped_near_expiry: u64,
    pub failed: u64,
    pub not_attempted: u64,
    pub bytes_written: u64,
    pub budget_bytes: Option<u64>,
    pub keys_per_s: f64,
    pub coverage_before: Option<f64>,
    pub coverage_after: Option<f64>,
    pub hits_before: Option<u64>,
    pub misses_before: Option<u64>,
    /// The hit rate of the window before warming.
    pub hit_rate_before: Option<f64>,
    pub hits_after: Option<u64>,
    pub misses_after: Option<u64>,
    /// The hit rate of the window after warming.
    pub hit_rate_after: Option<f64>,
    /// The hit rate given with `--baseline-hit-rate`.
    pub baseline_hit_rate: Option<f64>,
    /// The analyzer's predicted hit rates over the first reads, cold and warmed.
    pub predicted_cold: Option<f64>,
    pub predicted_warmed: Option<f64>,
}

impl Row {
    /// The rows of one report, one per target.
    pub fn from_report(report: &Report) -> Vec<Row> {
        let outcome = serde_json::to_value(report.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        report
            .targets
            .iter()
            .map(|t| Row {
                run_id: report.run_id.clone(),
                started_at: report.timings.started_at,
                finished_at: report.timings.finished_at,
                environment: report.environment.clone(),
                manifest_path: report.manifest.path.clone(),
                manifest_sha256: report.manifest.sha256.clone(),
                manifest_entries: report.manifest.entries,
                source: report.source.clone(),
                source_error: report.source_error.clone(),
                outcome: outcome.clone(),
                dry_run: report.dry_run,
                total_ms: report.timings.total_ms,
                warm_ms: report.timings.warm_ms,
                observe_ms: report
                    .observation
                    .as_ref()
                    .map(|o| o.observe_ms)
                    .filter(|&ms| ms > 0),
                target_url: t.url.clone(),
                target_kind: t.kind.clone(),
                target_status: match t.status {
                    schemas::report::TargetStatus::Ok => "ok".to_owned(),
                    schemas::report::TargetStatus::Failed => "failed".to_owned(),
                },
                written: t.counts.written,
                already_present: t.counts.already_present,
                source_miss: t.counts.source_miss,
                invalid_key: t.counts.invalid_key,
                skipped_budget: t.counts.skipped_budget,
                skipped_near_expiry: t.counts.skipped_near_expiry,
                failed: t.counts.failed,
                not_attempted: t.counts.not_attempted,
                bytes_written: t.bytes_written,
                budget_bytes: t.budget_bytes,
                keys_per_s: t.keys_per_s,
                coverage_before: t.coverage_before.as_ref().map(|c| c.share),
                coverage_after: t.coverage_after.as_ref().map(|c| c.share),
                hits_before: t.window_before.as_ref().map(|w| w.hits),
                misses_before: t.window_before.as_ref().map(|w| w.misses),
                hit_rate_before: t.window_before.as_ref().and_then(|w| w.hit_rate),
                hits_after: t.window_after.as_ref().map(|w| w.hits),
                misses_after: t.window_after.as_ref().map(|w| w.misses),
                hit_rate_after: t.window_after.as_ref().and_then(|w| w.hit_rate),
                baseline_hit_rate: report
                    .observation
                    .as_ref()
                    .and_then(|o| o.baseline_hit_rate),
                predicted_cold: report.prediction.as_ref().map(|p| p.early.cold),
                predicted_warmed: report.prediction.as_ref().map(|p| p.early.warmed),
            })
            .collect()
    }

    /// The run's start in Unix seconds.
    pub fn started_at_s(&self) -> f64 {
        self.started_at.timestamp_micros() as f64 / 1e6
    }
}

/// Columns of [`Row`], in order: name, type, nullable.
const COLUMNS: &[(&str, Kind, bool)] = &[
    ("run_id", Kind::Text, false),
    ("started_at", Kind::Time, false),
    ("finished_at", Kind::Time, false),
    ("environment", Kind::Text, true),
    ("manifest_path", Kind::Text, false),
    ("manifest_sha256", Kind::Text, false),
    ("manifest_entries", Kind::Count, false),
    ("source", Kind::Text, false),
    ("source_error", Kind::Text, true),
    ("outcome", Kind::Text, false),
    ("dry_run", Kind::Flag, false),
    ("total_ms", Kind::Count, false),
    ("warm_ms", Kind::Count, false),
    ("observe_ms", Kind::Count, true),
    ("target_url", Kind::Text, false),
    ("target_kind", Kind::Text, false),
    ("target_status", Kind::Text, false),
    // One count per outcome, under its name, in `EntryOutcome::ALL` order (`values` and
    // `read` follow it; a test checks).
    (EntryOutcome::Written.as_str(), Kind::Count, false),
    (EntryOutcome::AlreadyPresent.as_str(), Kind::Count, false),
    (EntryOutcome::SourceMiss.as_str(), Kind::Count, false),
    (EntryOutcome::InvalidKey.as_str(), Kind::Count, false),
    (EntryOutcome::SkippedBudget.as_str(), Kind::Count, false),
    (EntryOutcome::SkippedNearExpiry.as_str(), Kind::Count, false),
    (EntryOutcome::Failed.as_str(), Kind::Count, false),
    (EntryOutcome::NotAttempted.as_str(), Kind::Count, false),
    ("bytes_written", Kind::Count, false),
    ("budget_bytes", Kind::Count, true),
    ("keys_per_s", Kind::Real, false),
    ("coverage_before", Kind::Real, true),
    ("coverage_after", Kind::Real, true),
    ("hits_before", Kind::Count, true),
    ("misses_before", Kind::Count, true),
    ("hit_rate_before", Kind::Real, true),
    ("hits_after", Kind::Count, true),
    ("misses_after", Kind::Count, true),
    ("hit_rate_after", Kind::Real, true),
    ("baseline_hit_rate", Kind::Real, true),
    ("predicted_cold", Kind::Real, true),
    ("predicted_warmed", Kind::Real, true),
];

#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Time,
    Count,
    Real,
    Flag,
}

/// The Arrow schema of `runs.parquet`.
pub fn schema() -> SchemaRef {
    let fields: Vec<Field> = COLUMNS
        .iter()
        .map(|&(name, kind, nullable)| {
            let data_type = match kind {
                Kind::Text => DataType::Utf8,
                Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                Kind::Count => DataType::UInt64,
                Kind::Real => DataType::Float64,
                Kind::Flag => DataType::Boolean,
            };
            Field::new(name, data_type, nullable)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// A row's value in one column, for building and reading batches.
enum Value {
    Text(Option<String>),
    Time(DateTime<Utc>),
    Count(Option<u64>),
    Real(Option<f64>),
    Flag(bool),
}

fn values(r: &Row) -> Vec<Value> {
    use Value::{Count, Flag, Real, Text, Time};
    let text = |s: &String| Text(Some(s.clone()));
    vec![
        text(&r.run_id),
        Time(r.started_at),
        Time(r.finished_at),
        Text(r.environment.clone()),
        text(&r.manifest_path),
        text(&r.manifest_sha256),
        Count(Some(r.manifest_entries)),
        text(&r.source),
        Text(r.source_error.clone()),
        text(&r.outcome),
        Flag(r.dry_run),
        Count(Some(r.total_ms)),
        Count(Some(r.warm_ms)),
        Count(r.observe_ms),
        text(&r.target_url),
        text(&r.target_kind),
        text(&r.target_status),
        Count(Some(r.written)),
        Count(Some(r.already_present)),
        Count(Some(r.source_miss)),
        Count(Some(r.invalid_key)),
        Count(Some(r.skipped_budget)),
        Count(Some(r.skipped_near_expiry)),
        Count(Some(r.failed)),
        Count(Some(r.not_attempted)),
        Count(Some(r.bytes_written)),
        Count(r.budget_bytes),
        Real(Some(r.keys_per_s)),
        Real(r.coverage_before),
        Real(r.coverage_after),
        Count(r.hits_before),
        Count(r.misses_before),
        Real(r.hit_rate_before),
        Count(r.hits_after),
        Count(r.misses_after),
        Real(r.hit_rate_after),
        Real(r.baseline_hit_rate),
        Real(r.predicted_cold),
        Real(r.predicted_warmed),
    ]
}

fn to_batch(rows: &[Row]) -> anyhow::Result<RecordBatch> {
    let table: Vec<Vec<Value>> = rows.iter().map(values).collect();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(COLUMNS.len());
    for (c, &(_, kind, _)) in COLUMNS.iter().enumerate() {
        let cells = table.iter().map(|row| &row[c]);
        let array: ArrayRef = match kind {
            Kind::Text => {
                let mut b = StringBuilder::new();
                for cell in cells {
                    if let Value::Text(v) = cell {
                        b.append_option(v.as_deref());
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Time => {
                let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
                for cell in cells {
                    if let Value::Time(t) = cell {
                        b.append_value(t.timestamp_micros());
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Count => {
                let mut b = UInt64Builder::new();
                for cell in cells {
                    if let Value::Count(v) = cell {
                        b.append_option(*v);
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Real => {
                let mut b = Float64Builder::new();
                for cell in cells {
                    if let Value::Real(v) = cell {
                        b.append_option(*v);
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Flag => {
                let mut b = BooleanBuilder::new();
                for cell in cells {
                    if let Value::Flag(v) = cell {
                        b.append_value(*v);
                    }
                }
                Arc::new(b.finish())
            }
        };
        columns.push(array);
    }
    Ok(RecordBatch::try_new(schema(), columns)?)
}

fn from_batch(batch: &RecordBatch, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .with_context(|| format!("column `{name}` is missing"))
    };
    let mut cells: Vec<Vec<Value>> = (0..batch.num_rows()).map(|_| Vec::new()).collect();
    for &(name, kind, _) in COLUMNS {
        let array = column(name)?;
        let wrong = || format!("column `{name}` has type {}", array.data_type());
        for (i, row) in cells.iter_mut().enumerate() {
            let null = array.is_null(i);
            row.push(match kind {
                Kind::Text => {
                    let a = array
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .with_context(wrong)?;
                    Value::Text((!null).then(|| a.value(i).to_owned()))
                }
                Kind::Time => {
                    let a = array
                        .as_any()
                        .downcast_ref::<TimestampMicrosecondArray>()
                        .with_context(wrong)?;
                    Value::Time(DateTime::from_timestamp_micros(a.value(i)).unwrap_or_default())
                }
                Kind::Count => {
                    let a = array
                        .as_any()
                        .downcast_ref::<UInt64Array>()
                        .with_context(wrong)?;
                    Value::Count((!null).then(|| a.value(i)))
                }
                Kind::Real => {
                    let a = array
                        .as_any()
                        .downcast_ref::<Float64Array>()
                        .with_context(wrong)?;
                    Value::Real((!null).then(|| a.value(i)))
                }
                Kind::Flag => {
                    let a = array
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .with_context(wrong)?;
                    Value::Flag(!null && a.value(i))
                }
            });
        }
    }
    for row in cells {
        rows.push(row_from(row)?);
    }
    Ok(())
}

fn row_from(cells: Vec<Value>) -> anyhow::Result<Row> {
    let mut cells = cells.into_iter();
    let mut next = || cells.next().context("a column is missing");
    let text = |v: Value| match v {
        Value::Text(t) => t,
        _ => None,
    };
    let count = |v: Value| match v {
        Value::Count(c) => c,
        _ => None,
    };
    let real = |v: Value| match v {
        Value::Real(r) => r,
        _ => None,
    };
    let time = |v: Value| match v {
        Value::Time(t) => t,
        _ => DateTime::default(),
    };
    let flag = |v: Value| matches!(v, Value::Flag(true));
    Ok(Row {
        run_id: text(next()?).unwrap_or_default(),
        started_at: time(next()?),
        finished_at: time(next()?),
        environment: text(next()?),
        manifest_path: text(next()?).unwrap_or_default(),
        manifest_sha256: text(next()?).unwrap_or_default(),
        manifest_entries: count(next()?).unwrap_or_default(),
        source: text(next()?).unwrap_or_default(),
        source_error: text(next()?),
        outcome: text(next()?).unwrap_or_default(),
        dry_run: flag(next()?),
        total_ms: count(next()?).unwrap_or_default(),
        warm_ms: count(next()?).unwrap_or_default(),
        observe_ms: count(next()?),
        target_url: text(next()?).unwrap_or_default(),
        target_kind: text(next()?).unwrap_or_default(),
        target_status: text(next()?).unwrap_or_default(),
        written: count(next()?).unwrap_or_default(),
        already_present: count(next()?).unwrap_or_default(),
        source_miss: count(next()?).unwrap_or_default(),
        invalid_key: count(next()?).unwrap_or_default(),
        skipped_budget: count(next()?).unwrap_or_default(),
        skipped_near_expiry: count(next()?).unwrap_or_default(),
        failed: count(next()?).unwrap_or_default(),
        not_attempted: count(next()?).unwrap_or_default(),
        bytes_written: count(next()?).unwrap_or_default(),
        budget_bytes: count(next()?),
        keys_per_s: real(next()?).unwrap_or_default(),
        coverage_before: real(next()?),
        coverage_after: real(next()?),
        hits_before: count(next()?),
        misses_before: count(next()?),
        hit_rate_before: real(next()?),
        hits_after: count(next()?),
        misses_after: count(next()?),
        hit_rate_after: real(next()?),
        baseline_hit_rate: real(next()?),
        predicted_cold: real(next()?),
        predicted_warmed: real(next()?),
    })
}

/// Every row of the history at `path`, oldest first.
pub fn read(path: &Path) -> anyhow::Result<Vec<Row>> {
    let context = || format!("failed to read the run history `{}`", path.display());
    let file = File::open(path).with_context(context)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .with_context(context)?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.with_context(context)?;
        from_batch(&batch, &mut rows).with_context(context)?;
    }
    Ok(rows)
}

/// Appends the rows of `report` to the history at `path`, creating it when missing. A file
/// that is not a history this version can read is moved aside (`runs.parquet.unreadable-…`),
/// never overwritten.
pub fn append(path: &Path, report: &Report) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let context = || format!("failed to append to the run history `{}`", path.display());
    let lock_path = sibling(path, ".lock");
    let lock = File::options()
        .mode(cachewarm_fs::OWNER_ONLY)
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(context)?;
    lock.lock().with_context(context)?;
    let mut rows = if path.exists() {
        match read(path) {
            Ok(rows) => rows,
            Err(error) => {
                let aside = sibling(
                    path,
                    &format!(".unreadable-{}", Utc::now().format("%Y%m%dT%H%M%SZ")),
                );
                tracing::warn!(
                    error = format!("{error:#}"),
                    moved_to = %aside.display(),
                    "run history unreadable; starting a new one"
                );
                std::fs::rename(path, &aside).with_context(context)?;
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    rows.extend(Row::from_report(report));
    write(path, &rows).with_context(context)
}

/// Writes `rows` as the whole history: temp file, fsync, rename.
pub fn write(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let batch = to_batch(rows)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    cachewarm_fs::write_atomic_with(path, |file| {
        let mut writer = ArrowWriter::try_new(file.try_clone()?, schema(), Some(properties))
            .map_err(std::io::Error::other)?;
        writer.write(&batch).map_err(std::io::Error::other)?;
        writer.close().map_err(std::io::Error::other)?;
        Ok(())
    })?;
    Ok(())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The count columns are the outcome names in `EntryOutcome::ALL` order, as `values` and
    /// `read` walk them: the history's columns cannot drift from the report's counts.
    #[test]
    fn count_columns_follow_the_outcomes() {
        let start = COLUMNS
            .iter()
            .position(|c| c.0 == EntryOutcome::ALL[0].as_str())
            .unwrap();
        let names: Vec<&str> = COLUMNS[start..start + EntryOutcome::ALL.len()]
            .iter()
            .map(|c| c.0)
            .collect();
        let expected: Vec<&str> = EntryOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(names, expected);
    }
}
