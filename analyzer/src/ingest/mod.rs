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
mod target;
mod twitter;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Serialize;

use indicatif::{ProgressBar, ProgressStyle};

use crate::dataset::remote::RemoteError;
use crate::dataset::{DatasetError, DatasetWriter, EventRef, LedgerEntry, LedgerError};
use crate::input::{self, Compression, Input};

pub use event::{
    AccessEvent, key_from_bytes, parse_hit, parse_op, parse_ts, parse_u32, ts_from_parts,
};

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
    /// Takes one event whose text borrows from the input: what the fast readers call, so
    /// the dataset writer copies each field once, straight from the line.
    fn event_ref(&mut self, event: EventRef<'_>) -> Result<(), DatasetError> {
        self.event(event.to_event())
    }
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
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("failed to create a local staging directory for the upload")]
    Staging {
        #[source]
        source: std::io::Error,
    },
    #[error("input pattern `{pattern}`: {message}")]
    Pattern { pattern: String, message: String },
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
    /// blake3 of the input's stored bytes, as recorded in the ingest ledger.
    pub fingerprint: Option<String>,
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
    /// Why the file's events were not added though they were read (the dataset holds them
    /// already).
    pub skipped: Option<String>,
    /// Things worth knowing that did not reject a line (ignored columns, say).
    pub warnings: Vec<String>,
}

impl FileSummary {
    fn refused(path: &str, compression: Compression, reason: String) -> FileSummary {
        FileSummary {
            path: path.to_owned(),
            format: None,
            compression: compression.as_str(),
            fingerprint: None,
            lines: 0,
            events: 0,
            rejected: 0,
            lost: 0,
            first_rejections: Vec::new(),
            refused: Some(reason),
            skipped: None,
            warnings: Vec::new(),
        }
    }
}

/// Totals of the files of one format that an ingest added.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FormatTotals {
    pub files: u64,
    pub lines: u64,
    pub events: u64,
    pub rejected: u64,
    pub lost: u64,
}

/// What an ingest did, per file, and in all over the files it added.
#[derive(Debug, Clone, Serialize)]
pub struct IngestSummary {
    pub dataset: PathBuf,
    pub files: Vec<FileSummary>,
    pub lines: u64,
    pub events: u64,
    pub rejected: u64,
    pub lost: u64,
    /// The same totals per format.
    pub formats: BTreeMap<&'static str, FormatTotals>,
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

/// How to ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub format: Format,
    /// Ingest inputs the ledger says the dataset already holds.
    pub force: bool,
    /// Show a progress bar per input on stderr (the caller decides: a terminal only).
    pub progress: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            format: Format::Auto,
            force: false,
            progress: false,
        }
    }
}

/// Ingests `inputs` (paths, glob patterns, or `-` for stdin) into the dataset at `dataset`.
///
/// Each input is committed on its own: its Parquet files are moved into place and recorded in
/// the ledger once it has been read to the end, so an error in one input keeps the inputs
/// before it and a re-run skips them. An input the ledger already holds (same bytes) adds
/// nothing unless `force`. A file no format matches is refused and listed in the summary.
pub fn ingest(
    inputs: &[String],
    options: &IngestOptions,
    dataset: &Path,
) -> Result<IngestSummary, IngestError> {
    let inputs = expand_globs(inputs)?;
    let target = target::Target::open(dataset)?;
    let mut ledger = target.ledger(dataset)?;
    let root = target.write_root(dataset);
    let run_stem = unique_file_stem();
    let mut files = Vec::with_capacity(inputs.len());
    let mut written = Vec::new();
    for (index, path) in inputs.iter().enumerate() {
        let mut writer = DatasetWriter::new(root, &format!("{run_stem}-{index}"));
        let progress = progress_bar(options.progress, path);
        let (mut summary, input) = ingest_one(path, options.format, &mut writer, progress.clone())?;
        progress.finish_and_clear();
        if summary.refused.is_some() {
            files.push(summary);
            continue;
        }
        let fingerprint = input.fingerprint();
        if let Some(earlier) = ledger.find(&fingerprint).filter(|_| !options.force) {
            // Dropping the writer removes what it wrote: the dataset has these events already.
            drop(writer);
            summary.skipped = Some(format!(
                "already ingested at {} from `{}` (same content); --force ingests it again",
                earlier
                    .ingested_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                earlier.input
            ));
        } else {
            let paths = target.publish(root, writer.finish()?)?;
            ledger.append(LedgerEntry {
                fingerprint: fingerprint.clone(),
                input: path.clone(),
                bytes: input.bytes_read(),
                events: summary.events,
                ingested_at: chrono::Utc::now(),
                files: paths
                    .iter()
                    .filter_map(|p| target.relative(dataset, p))
                    .collect(),
            })?;
            written.extend(paths);
        }
        summary.fingerprint = Some(fingerprint);
        files.push(summary);
    }
    // Totals count what this ingest added: refused and skipped files add nothing.
    let added = || {
        files
            .iter()
            .filter(|f| f.refused.is_none() && f.skipped.is_none())
    };
    Ok(IngestSummary {
        dataset: dataset.to_path_buf(),
        lines: added().map(|f| f.lines).sum(),
        events: added().map(|f| f.events).sum(),
        rejected: added().map(|f| f.rejected).sum(),
        lost: added().fold(0, |lost: u64, f| lost.saturating_add(f.lost)),
        formats: added().fold(BTreeMap::new(), |mut formats, file| {
            let format = file.format.map_or("unknown", Format::as_str);
            let totals: &mut FormatTotals = formats.entry(format).or_default();
            totals.files += 1;
            totals.lines += file.lines;
            totals.events += file.events;
            totals.rejected += file.rejected;
            totals.lost = totals.lost.saturating_add(file.lost);
            formats
        }),
        files,
        written,
    })
}

/// Expands arguments holding glob characters (for callers without a shell, such as cron or a
/// Kubernetes Job); other arguments, and `-`, are taken as they are.
fn expand_globs(inputs: &[String]) -> Result<Vec<String>, IngestError> {
    let mut expanded = Vec::with_capacity(inputs.len());
    for input in inputs {
        if input == "-" || !input.contains(['*', '?', '[']) {
            expanded.push(input.clone());
            continue;
        }
        let bad_pattern = |message: String| IngestError::Pattern {
            pattern: input.clone(),
            message,
        };
        let mut matched: Vec<String> = glob::glob(input)
            .map_err(|e| bad_pattern(e.to_string()))?
            .map(|entry| entry.map(|path| path.to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(|e| bad_pattern(e.to_string()))?;
        if matched.is_empty() {
            return Err(bad_pattern("no file matches".into()));
        }
        matched.sort();
        expanded.extend(matched);
    }
    Ok(expanded)
}

fn progress_bar(enabled: bool, path: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(path.to_owned());
    bar
}

fn ingest_one(
    path: &str,
    format: Format,
    writer: &mut DatasetWriter,
    progress: ProgressBar,
) -> Result<(FileSummary, Input), IngestError> {
    let read_error = |source| IngestError::Read {
        path: path.to_owned(),
        source,
    };
    let mut input = input::open(path, progress).map_err(read_error)?;
    let format = match format {
        Format::Auto => match detect(&mut *input.reader).map_err(read_error)? {
            Ok(format) => format,
            Err(reason) => {
                return Ok((FileSummary::refused(path, input.compression, reason), input));
            }
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
    let (stats, refused) = match format.read(&mut *input.reader, &mut sink) {
        Ok(Ok(stats)) => (stats, None),
        Ok(Err(reason)) => (ReadStats::default(), Some(reason)),
        Err(ReaderError::Io(source)) => return Err(read_error(source)),
        Err(ReaderError::Dataset(error)) => return Err(error.into()),
    };
    let summary = FileSummary {
        path: path.to_owned(),
        format: Some(format),
        compression: input.compression.as_str(),
        fingerprint: None,
        lines: stats.lines,
        events: sink.events,
        rejected: sink.rejected,
        lost: stats.lost,
        first_rejections: sink.first_rejections,
        refused,
        skipped: None,
        warnings: stats.warnings,
    };
    Ok((summary, input))
}

/// Feeds `each` every non-blank line of `input`, trimmed, with its 1-based number; returns how
/// many lines were read. The line-oriented readers share this loop.
///
/// Lines are handed on where they lie in the reader's buffer; only a line that straddles two
/// fills of the buffer is copied. Newlines are found with `memchr`, which is vectorised where
/// `read_until`'s search is not.
fn for_each_line(
    input: &mut dyn BufRead,
    mut each: impl FnMut(u64, &[u8]) -> Result<(), ReaderError>,
) -> Result<u64, ReaderError> {
    let mut partial = Vec::with_capacity(512);
    let mut line_number = 0;
    loop {
        let buffer = match input.fill_buf() {
            Ok(buffer) => buffer,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error.into()),
        };
        if buffer.is_empty() {
            if !partial.is_empty() {
                line_number += 1;
                let line = partial.trim_ascii();
                if !line.is_empty() {
                    each(line_number, line)?;
                }
            }
            return Ok(line_number);
        }
        let mut start = 0;
        while let Some(at) = memchr::memchr(b'\n', &buffer[start..]) {
            let end = start + at;
            line_number += 1;
            let line = if partial.is_empty() {
                buffer[start..end].trim_ascii()
            } else {
                partial.extend_from_slice(&buffer[start..end]);
                partial.trim_ascii()
            };
            if !line.is_empty() {
                each(line_number, line)?;
            }
            partial.clear();
            start = end + 1;
        }
        partial.extend_from_slice(&buffer[start..]);
        let consumed = buffer.len();
        input.consume(consumed);
    }
}

/// A whole reader for formats where each line stands alone: `parse` turns a line into an
/// event or the reason it is rejected.
fn read_independent_lines(
    input: &mut dyn BufRead,
    sink: &mut dyn Sink,
    parse: fn(&[u8]) -> Result<AccessEvent, String>,
) -> Result<ReadOutcome, ReaderError> {
    let lines = for_each_line(input, |line_number, line| {
        match parse(line) {
            Ok(event) => sink.event(event)?,
            Err(reason) => sink.reject(line_number, reason),
        }
        Ok(())
    })?;
    Ok(Ok(ReadStats {
        lines,
        ..ReadStats::default()
    }))
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

    fn event_ref(&mut self, event: EventRef<'_>) -> Result<(), DatasetError> {
        self.events += 1;
        self.writer.push_ref(event)
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
        fn event_ref(&mut self, _: EventRef<'_>) -> Result<(), DatasetError> {
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
