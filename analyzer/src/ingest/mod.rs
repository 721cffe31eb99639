//! Ingest: log files in, `AccessEvent` rows out into the Parquet dataset.
//!
//! One reader per format, each in its own folder; every reader turns lines into
//! [`AccessEvent`]s and hands them to a [`Sink`], which also collects rejected lines with their
//! line numbers. Nothing is dropped silently: every line is an event, a rejection, or
//! (for blank lines and headers) accounted for in the line count.

mod cachelib;
mod csv;
mod event;
mod jsonl;
mod memcached_watch;
mod rails;
mod redis_monitor;
mod twitter;

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::dataset::{DatasetError, DatasetWriter};
use crate::input::{self, Compression};

pub use event::{AccessEvent, key_from_bytes, parse_hit, parse_op, parse_ts, parse_u32};

/// How many rejected lines per file are reported by number and reason (all are counted).
pub const REPORTED_REJECTIONS: usize = 10;

/// A log format the analyzer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Recognised per file from its first lines.
    Auto,
    /// Canonical CSV: a header row naming `AccessEvent` columns in any order; `ts` and `key`
    /// are required.
    Csv,
    /// Canonical JSON lines: one object per line with `AccessEvent` field names.
    Jsonl,
    /// memcached's `watch fetchers mutations` output.
    MemcachedWatch,
    /// Redis `MONITOR` output, as `redis-cli monitor` prints it or raw (`+` first).
    RedisMonitor,
    /// Twitter's published cache traces (OSDI'20): `ts,key,key_size,value_size,client,op,ttl`.
    Twitter,
    /// Meta CacheLib kvcache traces: header-mapped CSV with `op_time`, `op_count`, `cache_hits`.
    Cachelib,
    /// Rails cache instrumentation: debug log lines (`Cache read: KEY`) or JSON lines of
    /// `cache_*.active_support` events.
    Rails,
}

impl Format {
    /// The formats `auto` tries, in order: the most specific first.
    pub const DETECTABLE: [Format; 7] = [
        Format::MemcachedWatch,
        Format::RedisMonitor,
        Format::Rails,
        Format::Cachelib,
        Format::Csv,
        Format::Jsonl,
        Format::Twitter,
    ];

    /// The format's name as given to `--format`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::MemcachedWatch => "memcached-watch",
            Format::RedisMonitor => "redis-monitor",
            Format::Twitter => "twitter",
            Format::Cachelib => "cachelib",
            Format::Rails => "rails",
        }
    }

    /// Whether the first lines of an input look like this format.
    fn sniff(self, head: &[&str]) -> bool {
        match self {
            Format::Auto => false,
            Format::Csv => csv::sniff(head),
            Format::Jsonl => jsonl::sniff(head),
            Format::MemcachedWatch => memcached_watch::sniff(head),
            Format::RedisMonitor => redis_monitor::sniff(head),
            Format::Twitter => twitter::sniff(head),
            Format::Cachelib => cachelib::sniff(head),
            Format::Rails => rails::sniff(head),
        }
    }

    /// Reads a whole input of this format into `sink`.
    fn read(
        self,
        input: &mut dyn BufRead,
        sink: &mut dyn Sink,
    ) -> Result<ReadOutcome, ReaderError> {
        match self {
            Format::Csv => csv::read(input, sink),
            Format::Jsonl => jsonl::read(input, sink),
            Format::MemcachedWatch => memcached_watch::read(input, sink),
            Format::RedisMonitor => redis_monitor::read(input, sink),
            Format::Twitter => twitter::read(input, sink),
            Format::Cachelib => cachelib::read(input, sink),
            Format::Rails => rails::read(input, sink),
            Format::Auto => unreachable!("`auto` is resolved to a format before reading"),
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
    /// The format the file was read as; none when no format matched.
    pub format: Option<Format>,
    pub compression: &'static str,
    /// Lines read, including headers and blank lines.
    pub lines: u64,
    pub events: u64,
    pub rejected: u64,
    /// Lines the log itself says were dropped before they were written (memcached watch's
    /// `skipped=`): data loss upstream of cachewarm.
    pub lost: u64,
    /// The first [`REPORTED_REJECTIONS`] rejected lines.
    pub first_rejections: Vec<Rejection>,
    /// Why the whole file was refused, when it was (its events are not in the dataset).
    pub refused: Option<String>,
    /// Things worth knowing that did not reject a line (ignored columns, say).
    pub warnings: Vec<String>,
}

impl FileSummary {
    fn refused(path: &str, compression: Compression, reason: String) -> FileSummary {
        FileSummary {
            path: path.to_owned(),
            format: None,
            compression: compression.as_str(),
            lines: 0,
            events: 0,
            rejected: 0,
            lost: 0,
            first_rejections: Vec::new(),
            refused: Some(reason),
            warnings: Vec::new(),
        }
    }
}

/// What an ingest did, per file and in all.
#[derive(Debug, Clone, Serialize)]
pub struct IngestSummary {
    pub dataset: PathBuf,
    pub files: Vec<FileSummary>,
    pub lines: u64,
    pub events: u64,
    pub rejected: u64,
    pub lost: u64,
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
    /// Lines the log says were dropped upstream (see [`FileSummary::lost`]).
    pub lost: u64,
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
        lost: files.iter().map(|f| f.lost).sum(),
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
        Format::Auto => match detect(&mut *reader).map_err(read_error)? {
            Ok(format) => format,
            Err(reason) => return Ok(FileSummary::refused(path, compression, reason)),
        },
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
    let (stats, refused) = match format.read(&mut *reader, &mut sink) {
        Ok(Ok(stats)) => (stats, None),
        Ok(Err(reason)) => (ReadStats::default(), Some(reason)),
        Err(ReaderError::Io(source)) => return Err(read_error(source)),
        Err(ReaderError::Dataset(error)) => return Err(error.into()),
    };
    Ok(FileSummary {
        path: path.to_owned(),
        format: Some(format),
        compression: compression.as_str(),
        lines: stats.lines,
        events: sink.events,
        rejected: sink.rejected,
        lost: stats.lost,
        first_rejections: sink.first_rejections,
        refused,
        warnings: stats.warnings,
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

/// How many of an input's first lines the format detection looks at.
const SNIFF_LINES: usize = 16;

/// Recognises the format of an input from its first lines; `Err` lists what was tried.
fn detect(reader: &mut dyn BufRead) -> std::io::Result<Result<Format, String>> {
    let head = reader.fill_buf()?;
    let text = String::from_utf8_lossy(head);
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .take(SNIFF_LINES + 1)
        .collect();
    // The last line of the buffer may be cut short: leave it out when there are others.
    if lines.len() > SNIFF_LINES || (lines.len() > 1 && !text.ends_with('\n')) {
        lines.pop();
    }
    if let Some(format) = Format::DETECTABLE.into_iter().find(|f| f.sniff(&lines)) {
        return Ok(Ok(format));
    }
    let tried: Vec<&str> = Format::DETECTABLE.iter().map(|f| f.as_str()).collect();
    Ok(Err(format!(
        "its first lines match no known format (tried: {}); hint: name one with --format",
        tried.join(", ")
    )))
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

/// What [`parse_only`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseCounts {
    pub lines: u64,
    pub events: u64,
    pub rejected: u64,
}

/// Runs the reader of `format` over `input` and counts what it produced, writing nothing:
/// the entry point of the fuzz targets and the parsing benchmark. `Auto` detects the format
/// first; an input that no format matches counts as nothing read.
pub fn parse_only(format: Format, input: &mut dyn BufRead) -> std::io::Result<ParseCounts> {
    struct Counter(ParseCounts);
    impl Sink for Counter {
        fn event(&mut self, _: AccessEvent) -> Result<(), DatasetError> {
            self.0.events += 1;
            Ok(())
        }
        fn reject(&mut self, _: u64, _: String) {
            self.0.rejected += 1;
        }
    }
    let format = match format {
        Format::Auto => match detect(input)? {
            Ok(format) => format,
            Err(_) => return Ok(ParseCounts::default()),
        },
        chosen => chosen,
    };
    let mut counter = Counter(ParseCounts::default());
    match format.read(input, &mut counter) {
        Ok(Ok(stats)) => counter.0.lines = stats.lines,
        Ok(Err(_refused)) => {}
        Err(ReaderError::Io(error)) => return Err(error),
        Err(ReaderError::Dataset(_)) => unreachable!("the counter never fails"),
    }
    Ok(counter.0)
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
