//! Ingest: log files in, `AccessEvent` rows out into the Parquet dataset.
//!
//! One reader per format, each in its own folder; every reader turns lines into
//! [`AccessEvent`]s and hands them to a [`Sink`], which also collects rejected lines with their
//! line numbers. Nothing is dropped silently: every line is an event, a rejection, or
//! (for blank lines and headers) accounted for in the line count.

mod csv;
mod event;
mod jsonl;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::dataset::{DatasetError, DatasetWriter};
use crate::input::{self, Compression};

pub use event::{AccessEvent, key_from_bytes, parse_hit, parse_op, parse_ts, parse_u32};

/// How many rejected lines per file are reported by number and reason (all are counted).
pub const REPORTED_REJECTIONS: usize = 10;

/// A log format the analyzer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Chosen per file from its name (`.csv`, `.jsonl`, `.ndjson`, `.json`, before any `.gz` or
    /// `.zst`), else from its first byte (`{` is JSON lines).
    Auto,
    /// Canonical CSV: a header row naming `AccessEvent` columns in any order; `ts` and `key`
    /// are required.
    Csv,
    /// Canonical JSON lines: one object per line with `AccessEvent` field names.
    Jsonl,
}

impl Format {
    /// The format's name as given to `--format`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// Where a reader puts what it parsed.
pub trait Sink {
    /// Takes one event.
    fn event(&mut self, event: AccessEvent) -> Result<(), DatasetError>;
    /// Records that line `line` (1-based) was not an event, and why.
    fn reject(&mut self, line: u64, reason: String);
}

/// Errors that stop an ingest.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("failed to read `{path}`")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

/// A line that did not become an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub line: u64,
    pub reason: String,
}

/// What happened to one input.
#[derive(Debug, Clone, Serialize)]
pub struct FileSummary {
    pub path: String,
    pub format: Format,
    pub compression: &'static str,
    /// Lines read, including headers and blank lines.
    pub lines: u64,
    pub events: u64,
    pub rejected: u64,
    /// The first [`REPORTED_REJECTIONS`] rejected lines.
    pub first_rejections: Vec<Rejection>,
    /// Why the whole file was refused, when it was (its events are not in the dataset).
    pub refused: Option<String>,
    /// Things worth knowing that did not reject a line (ignored columns, say).
    pub warnings: Vec<String>,
}

/// What an ingest did, per file and in all.
#[derive(Debug, Clone, Serialize)]
pub struct IngestSummary {
    pub dataset: PathBuf,
    pub files: Vec<FileSummary>,
    pub lines: u64,
    pub events: u64,
    pub rejected: u64,
    /// Parquet files added to the dataset.
    pub written: Vec<PathBuf>,
}

impl IngestSummary {
    /// Whether any input was refused outright.
    pub fn any_refused(&self) -> bool {
        self.files.iter().any(|f| f.refused.is_some())
    }
}

/// A file's outcome as a reader sees it: lines read, or the reason the file is refused.
pub type ReadOutcome = Result<ReadStats, String>;

/// What a reader reports when it reaches the end of its input.
#[derive(Debug, Default)]
pub struct ReadStats {
    pub lines: u64,
    pub warnings: Vec<String>,
}

/// Ingests `inputs` (paths, or `-` for stdin) into the dataset at `dataset`.
///
/// A file whose events cannot be read at all (a CSV without the required columns, say) is
/// refused and listed in the summary; the other files are still ingested.
pub fn ingest(
    inputs: &[String],
    format: Format,
    dataset: &Path,
) -> Result<IngestSummary, IngestError> {
    let file_stem = unique_file_stem();
    let mut writer = DatasetWriter::new(dataset, &file_stem);
    let mut files = Vec::with_capacity(inputs.len());
    for path in inputs {
        files.push(ingest_one(path, format, &mut writer)?);
    }
    let written = writer.finish()?;
    Ok(IngestSummary {
        dataset: dataset.to_path_buf(),
        lines: files.iter().map(|f| f.lines).sum(),
        events: files.iter().map(|f| f.events).sum(),
        rejected: files.iter().map(|f| f.rejected).sum(),
        files,
        written,
    })
}

fn ingest_one(
    path: &str,
    format: Format,
    writer: &mut DatasetWriter,
) -> Result<FileSummary, IngestError> {
    let read_error = |source| IngestError::Read {
        path: path.to_owned(),
        source,
    };
    let (mut reader, compression) = input::open(path).map_err(read_error)?;
    let format = match format {
        Format::Auto => detect(path, &mut *reader).map_err(read_error)?,
        chosen => chosen,
    };
    // Readers refuse a file only on its header, before the first event, so a refused file
    // adds nothing to the dataset.
    let mut sink = FileSink {
        writer,
        events: 0,
        rejected: 0,
        first_rejections: Vec::new(),
    };
    let outcome = match format {
        Format::Csv => csv::read(&mut *reader, &mut sink),
        Format::Jsonl | Format::Auto => jsonl::read(&mut *reader, &mut sink),
    };
    let (lines, warnings, refused) = match outcome {
        Ok(Ok(stats)) => (stats.lines, stats.warnings, None),
        Ok(Err(reason)) => (0, Vec::new(), Some(reason)),
        Err(ReaderError::Io(source)) => return Err(read_error(source)),
        Err(ReaderError::Dataset(error)) => return Err(error.into()),
    };
    Ok(FileSummary {
        path: path.to_owned(),
        format,
        compression: match compression {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        },
        lines,
        events: sink.events,
        rejected: sink.rejected,
        first_rejections: sink.first_rejections,
        refused,
        warnings,
    })
}

/// Errors a reader cannot turn into a rejected line.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

/// Picks the format of `path` from its name, else from its first non-blank byte.
fn detect(path: &str, reader: &mut dyn std::io::BufRead) -> std::io::Result<Format> {
    let name = path
        .trim_end_matches(".gz")
        .trim_end_matches(".zst")
        .to_ascii_lowercase();
    if name.ends_with(".csv") {
        return Ok(Format::Csv);
    }
    if [".jsonl", ".ndjson", ".json"]
        .iter()
        .any(|ext| name.ends_with(ext))
    {
        return Ok(Format::Jsonl);
    }
    let head = reader.fill_buf()?;
    let first = head.iter().find(|b| !b.is_ascii_whitespace());
    Ok(if first == Some(&b'{') {
        Format::Jsonl
    } else {
        Format::Csv
    })
}

/// A name for this ingest's files that no other ingest uses: time and process id.
fn unique_file_stem() -> String {
    let now = chrono::Utc::now();
    format!("{}-{}", now.format("%Y%m%dT%H%M%S%6fZ"), std::process::id())
}

struct FileSink<'a> {
    writer: &'a mut DatasetWriter,
    events: u64,
    rejected: u64,
    first_rejections: Vec<Rejection>,
}

impl Sink for FileSink<'_> {
    fn event(&mut self, event: AccessEvent) -> Result<(), DatasetError> {
        self.events += 1;
        self.writer.push(&event)
    }

    fn reject(&mut self, line: u64, reason: String) {
        self.rejected += 1;
        if self.first_rejections.len() < REPORTED_REJECTIONS {
            self.first_rejections.push(Rejection { line, reason });
        }
    }
}

/// A sink that keeps everything in memory, for the readers' tests.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct VecSink {
    pub events: Vec<AccessEvent>,
    pub rejections: Vec<Rejection>,
}

#[cfg(test)]
impl Sink for VecSink {
    fn event(&mut self, event: AccessEvent) -> Result<(), DatasetError> {
        self.events.push(event);
        Ok(())
    }

    fn reject(&mut self, line: u64, reason: String) {
        self.rejections.push(Rejection { line, reason });
    }
}
