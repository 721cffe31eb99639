//! The `exec:` source: the application's own loader processes compute the values (loader
//! protocol v1, DESIGN.md; the message types are in `schemas::loader`).
//!
//! `--source "exec:python manage.py cachewarm_loader"` runs the words after `exec:`, split by
//! shell rules and run without a shell, as `--loader-workers` processes. The first one is
//! started before anything else so that its hello can refuse a target of another store kind
//! (a usage error: exit 2); the others start when first needed. A batch of manifest keys is
//! split into requests of at most [`MAX_REQUEST_KEYS`] over the workers, and the answers are
//! put back in rank order.
//!
//! Failures never fail the run:
//! - an answer `{"error": …, "retryable": true}` is asked again after a pause (exponential
//!   backoff with jitter, `backon`, as the run retries store calls), up to `--retries` times;
//! - a loader that crashes, writes no line for `--loader-timeout` while it owes answers, or
//!   writes a line that is not protocol is killed, recorded with the end of its stderr, and
//!   started again when next needed, after a pause that grows while it keeps failing. The keys
//!   it had answered are kept; the rest are asked again (of any worker). The first key left
//!   unanswered is taken to be what broke it and is charged a try: a key that breaks its
//!   loader `--retries + 1` times is counted failed, and the keys after it still get their
//!   values.
//!
//! Memory: answer lines longer than the base64 of `--max-value-size` (plus room for keys) are
//! read through and dropped, and a key whose values come to more than `--max-value-size` is
//! counted failed with that reason, so no one answer holds more than that.

mod lines;
mod process;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use base64::Engine;
use chrono::Utc;
use schemas::loader::{self as protocol, Hello, LoaderStoreKind};
use schemas::report::{LOADER_FAILURES_LISTED, LoaderFailure, LoaderReport};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Answer;
use crate::store::{Fetched, StoreKind, StoreUrl, ValueEncoding};
use process::{LoaderProcess, StartError};

/// How loader processes are run.
#[derive(Debug, Clone)]
pub struct LoaderSettings {
    /// Processes side by side.
    pub workers: usize,
    /// The longest a loader may go without a line while it owes one (its hello included).
    pub timeout: Duration,
    /// The most value bytes one manifest key's answer may bring.
    pub max_value_size: u64,
}

/// The prefix of a loader source.
pub const EXEC_PREFIX: &str = "exec:";
/// The most keys in one request. A loader that buffers its output (Python does, on a pipe)
/// writes nothing until it flushes, and `--loader-timeout` bounds the silence: small requests
/// keep a slow but working loader within it (100 keys at 50 ms each is 5 s), while the cost of
/// a request (one line each way and a `done`) stays small next to 100 answers.
const MAX_REQUEST_KEYS: usize = 100;
/// Room for keys, flags and JSON around the values of one answer line.
const LINE_SLACK: usize = 64 << 10;
/// The pauses before a retry, and before restarting a loader that keeps failing: as the run
/// retries store calls (`run::faults`).
const MIN_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Why a loader source could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("source `{source_text}`: {message}")]
    Command {
        source_text: String,
        message: String,
    },
    #[error("cannot run loader `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "loader `{command}` speaks protocol {protocol}; this warmer speaks protocol {}",
        protocol::LOADER_PROTOCOL
    )]
    Protocol { command: String, protocol: u32 },
    #[error(
        "loader `{command}` makes values for {loader_kind} stores (its hello says \
         store_kind \"{loader_kind}\"), but target `{target}` is a {target_kind} store: its \
         values would not read back there\nhint: warm a {loader_kind} target with this loader, \
         or configure the loader for the target's cache"
    )]
    KindMismatch {
        command: String,
        loader_kind: &'static str,
        target: String,
        target_kind: &'static str,
    },
    #[error(
        "loader `{command}` did not start: {message}{}",
        tail_text(stderr_tail)
    )]
    Hello {
        command: String,
        message: String,
        stderr_tail: Vec<String>,
    },
}

impl LoaderError {
    /// Whether the error is in what was asked (exit 2) rather than in the loader at run time
    /// (reported; the deploy goes on unless `--strict`).
    pub fn is_usage(&self) -> bool {
        !matches!(self, LoaderError::Hello { .. })
    }
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("\nits stderr ended with:\n  {}", tail.join("\n  "))
    }
}

/// The words of an `exec:` source, when `source` is one.
pub fn command(source: &str) -> Option<Result<Vec<String>, LoaderError>> {
    let rest = source.strip_prefix(EXEC_PREFIX)?;
    let error = |message: &str| LoaderError::Command {
        source_text: source.to_owned(),
        message: message.to_owned(),
    };
    Some(match shlex::split(rest) {
        None => Err(error(
            "unbalanced quotes or a trailing backslash in the command",
        )),
        Some(words) if words.is_empty() => Err(error("`exec:` needs a command after it")),
        Some(words) => Ok(words),
    })
}

/// The loader store kind whose values a target of this kind reads back.
pub fn store_kind(url: &StoreUrl) -> LoaderStoreKind {
    match url.kind() {
        StoreKind::Redis => LoaderStoreKind::Redis,
        StoreKind::Memcached => LoaderStoreKind::Memcached,
        StoreKind::Sql => LoaderStoreKind::Sql,
    }
}

/// Loader processes, shared by the run's source reads.
#[derive(Debug, Clone)]
pub struct LoaderSource {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    argv: Vec<String>,
    command: String,
    settings: LoaderSettings,
    hello: Hello,
    line_limit: usize,
    /// Idle workers; a request takes one and gives it back through `back`.
    idle: tokio::sync::Mutex<mpsc::UnboundedReceiver<Slot>>,
    back: mpsc::UnboundedSender<Slot>,
    stats: Mutex<Stats>,
}

/// One worker place: its process when running, and how soon it may be started again.
#[derive(Debug)]
struct Slot {
    worker: u32,
    process: Option<LoaderProcess>,
    /// Pauses before restarts, growing while the loader keeps failing.
    backoff: ExponentialBackoff,
    restart_at: Option<Instant>,
    /// Whether a process ran here before (a start is then a restart).
    started: bool,
}

#[derive(Debug, Default)]
struct Stats {
    started: u64,
    restarts: u64,
    requests: u64,
    retries: u64,
    misses: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    failures: Vec<LoaderFailure>,
}

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_factor(2.0)
        .without_max_times()
        .with_jitter()
}

/// A worker taken from the pool; given back when dropped. A lease dropped halfway through a
/// request (the run's deadline, a stop) gives its slot back without the process, which the
/// drop kills: its answers would belong to a request nobody waits for.
struct Lease<'a> {
    slot: Option<Slot>,
    inner: &'a Inner,
    clean: bool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(mut slot) = self.slot.take() {
            if !self.clean {
                slot.process = None;
            }
            // The receiver lives as long as `inner`, which outlives every lease.
            let _ = self.inner.back.send(slot);
        }
    }
}

impl LoaderSource {
    /// Starts the first loader of `argv` and checks its hello against the targets.
    pub async fn start(
        argv: Vec<String>,
        settings: &LoaderSettings,
        targets: &[(String, &StoreUrl)],
    ) -> Result<LoaderSource, LoaderError> {
        let command =
            shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "));
        let line_limit = usize::try_from(settings.max_value_size.div_ceil(3) * 4)
            .unwrap_or(usize::MAX)
            .saturating_add(LINE_SLACK);
        let (process, hello) =
            match LoaderProcess::start(&argv, 0, settings.timeout, line_limit).await {
                Ok(started) => started,
                Err((StartError::Spawn(source), _)) => {
                    return Err(LoaderError::Spawn {
                        program: argv[0].clone(),
                        source,
                    });
                }
                Err((StartError::Protocol(protocol), _)) => {
                    return Err(LoaderError::Protocol { command, protocol });
                }
                Err((StartError::Hello(message), stderr_tail)) => {
                    return Err(LoaderError::Hello {
                        command,
                        message,
                        stderr_tail,
                    });
                }
            };
        for (text, url) in targets {
            let kind = store_kind(url);
            if kind != hello.store_kind {
                process.close().await;
                return Err(LoaderError::KindMismatch {
                    command,
                    loader_kind: hello.store_kind.name(),
                    target: text.clone(),
                    target_kind: kind.name(),
                });
            }
        }
        tracing::info!(
            command,
            framework = hello.framework.as_deref().unwrap_or(""),
            store_kind = hello.store_kind.name(),
            alias = hello.alias.as_deref().unwrap_or(""),
            workers = settings.workers,
            "loader started"
        );
        let (back, idle) = mpsc::unbounded_channel();
        for worker in 0..settings.workers.max(1) {
            let _ = back.send(Slot {
                worker: worker as u32,
                process: None,
                backoff: backoff().build(),
                restart_at: None,
                started: false,
            });
        }
        let inner = Inner {
            argv,
            command,
            settings: settings.clone(),
            hello,
            line_limit,
            idle: tokio::sync::Mutex::new(idle),
            back,
            stats: Mutex::new(Stats {
                started: 1,
                ..Stats::default()
            }),
        };
        // The first worker keeps the process that said hello.
        let mut lease = inner.checkout().await;
        if let Some(slot) = &mut lease.slot {
            slot.process = Some(process);
            slot.started = true;
        }
        lease.clean = true;
        drop(lease);
        Ok(LoaderSource {
            inner: Arc::new(inner),
        })
    }

    /// What the loaders have for each of `keys`, in order. Never fails as a whole: what could
    /// not be loaded is an [`Answer::Failed`] with the reason.
    pub async fn answers(&self, keys: &[&str], retries: u32) -> Vec<Answer> {
        let workers = self.inner.settings.workers.max(1);
        let per_request = keys.len().div_ceil(workers).clamp(1, MAX_REQUEST_KEYS);
        let mut requests = tokio::task::JoinSet::new();
        for (n, chunk) in keys.chunks(per_request).enumerate() {
            let inner = Arc::clone(&self.inner);
            let chunk: Vec<String> = chunk.iter().map(|k| (*k).to_owned()).collect();
            requests.spawn(async move { (n, inner.load(chunk, retries).await) });
        }
        // Dropping the set (the run's deadline) aborts the requests, and their leases kill
        // the loaders they were talking to.
        let mut parts: Vec<Option<Vec<Answer>>> = vec![None; keys.len().div_ceil(per_request)];
        while let Some(done) = requests.join_next().await {
            match done {
                Ok((n, answers)) => parts[n] = Some(answers),
                Err(error) => tracing::error!(%error, "a loader request task failed"),
            }
        }
        let mut answers = Vec::with_capacity(keys.len());
        for (n, part) in parts.into_iter().enumerate() {
            let len = keys[n * per_request..].len().min(per_request);
            answers.extend(part.unwrap_or_else(|| {
                vec![Answer::Failed("loader request task failed".to_owned()); len]
            }));
        }
        answers
    }

    /// The loader's section of the report.
    pub fn report(&self) -> LoaderReport {
        let inner = &self.inner;
        let stats = inner.stats.lock().unwrap_or_else(|e| e.into_inner());
        LoaderReport {
            command: inner.command.clone(),
            hello: Some(inner.hello.clone()),
            workers: inner.settings.workers as u32,
            started: stats.started,
            restarts: stats.restarts,
            requests: stats.requests,
            retries: stats.retries,
            misses: stats.misses.clone(),
            errors: stats.errors.clone(),
            failures: stats.failures.clone(),
        }
    }

    /// Closes every loader's stdin and waits for them to exit (killing those that do not).
    pub async fn close(&self) {
        let mut idle = self.inner.idle.lock().await;
        let mut closing = Vec::new();
        for _ in 0..self.inner.settings.workers.max(1) {
            // A slot still out belongs to a request being aborted: its lease kills it.
            match tokio::time::timeout(Duration::from_secs(1), idle.recv()).await {
                Ok(Some(mut slot)) => closing.extend(slot.process.take().map(LoaderProcess::close)),
                _ => break,
            }
        }
        for close in closing {
            close.await;
        }
    }
}

/// What became of one key of a request.
#[derive(Debug)]
enum KeyState {
    /// Still to ask, with the tries it was charged so far and the last reason.
    Pending {
        tries: u32,
        reason: Option<String>,
    },
    Done(Answer),
}

impl Inner {
    async fn checkout(&self) -> Lease<'_> {
        let slot = self.idle.lock().await.recv().await;
        Lease {
            slot,
            inner: self,
            clean: false,
        }
    }

    /// Asks the loaders for `keys` until each is answered, or charged `retries + 1` tries.
    async fn load(&self, keys: Vec<String>, retries: u32) -> Vec<Answer> {
        let mut states: Vec<KeyState> = keys
            .iter()
            .map(|_| KeyState::Pending {
                tries: 0,
                reason: None,
            })
            .collect();
        let mut pauses = backoff().build();
        let mut start_failures = 0u32;
        loop {
            let pending: Vec<usize> = (0..keys.len())
                .filter(|&i| matches!(states[i], KeyState::Pending { .. }))
                .collect();
            if pending.is_empty() {
                break;
            }
            let mut lease = self.checkout().await;
            let Some(slot) = lease.slot.as_mut() else {
                // The pool is gone (the run is ending).
                fail_all(&mut states, "loader closed");
                break;
            };
            if slot.process.is_none() {
                if let Some(at) = slot.restart_at {
                    tokio::time::sleep_until(at).await;
                }
                match self.start_in(slot).await {
                    Ok(()) => {}
                    Err(reason) => {
                        start_failures += 1;
                        if start_failures > retries {
                            self.count_errors(&reason, pending.len());
                            fail_all(&mut states, &reason);
                            break;
                        }
                        continue;
                    }
                }
            }
            let id = {
                let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                stats.requests += 1;
                stats.requests
            };
            let asked: Vec<&str> = pending.iter().map(|&i| keys[i].as_str()).collect();
            let position: HashMap<&str, usize> =
                pending.iter().map(|&i| (keys[i].as_str(), i)).collect();
            let mut too_long = 0usize;
            let mut retry_later = false;
            let Some(process) = slot.process.as_mut() else {
                continue;
            };
            let result = process
                .request(
                    id,
                    &asked,
                    self.settings.timeout,
                    self.line_limit,
                    |answer| {
                        let Some((key, state)) = self.settle(answer) else {
                            return;
                        };
                        let Some(&i) = position.get(key.as_str()) else {
                            return;
                        };
                        let KeyState::Pending { tries, .. } = &states[i] else {
                            return;
                        };
                        states[i] = match state {
                            Settled::Final(answer) => KeyState::Done(answer),
                            Settled::Retry(reason) => {
                                retry_later = true;
                                KeyState::Pending {
                                    tries: tries + 1,
                                    reason: Some(reason),
                                }
                            }
                        };
                    },
                    || too_long += 1,
                )
                .await;
            let unanswered: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|&i| {
                    matches!(
                        states[i],
                        KeyState::Pending {
                            tries: _,
                            reason: None
                        }
                    )
                })
                .collect();
            match result {
                Ok(()) => {
                    slot.backoff = backoff().build();
                    lease.clean = true;
                    // Keys the loader passed over: when lines were dropped for their size,
                    // those were theirs.
                    let reason = if too_long > 0 {
                        format!("value over --max-value-size ({})", self.max_value_text())
                    } else {
                        "the loader gave no answer".to_owned()
                    };
                    self.count_errors(&reason, unanswered.len());
                    for i in unanswered {
                        states[i] = KeyState::Done(Answer::Failed(reason.clone()));
                    }
                }
                Err(failure) => {
                    self.failed(slot, &failure).await;
                    // The first key left unanswered is the likeliest to have broken it.
                    if let Some(&suspect) = unanswered.first()
                        && let KeyState::Pending { tries, .. } = &states[suspect]
                    {
                        states[suspect] = KeyState::Pending {
                            tries: tries + 1,
                            reason: Some(failure.reason.clone()),
                        };
                    }
                    // The others are asked again with their tries as they were.
                    for &i in unanswered.iter().skip(1) {
                        if let KeyState::Pending { tries, .. } = states[i] {
                            states[i] = KeyState::Pending {
                                tries,
                                reason: Some(failure.reason.clone()),
                            };
                        }
                    }
                }
            }
            drop(lease);
            // Keys charged more tries than allowed are failed; the rest go round again.
            let mut again = 0u64;
            for state in &mut states {
                if let KeyState::Pending { tries, reason } = state {
                    if *tries > retries {
                        let reason = reason.take().unwrap_or_default();
                        self.count_errors(&reason, 1);
                        *state = KeyState::Done(Answer::Failed(reason));
                    } else {
                        *reason = None;
                        again += 1;
                    }
                }
            }
            if again > 0 {
                self.stats.lock().unwrap_or_else(|e| e.into_inner()).retries += again;
                if retry_later && let Some(pause) = pauses.next() {
                    tokio::time::sleep(pause).await;
                }
            }
        }
        states
            .into_iter()
            .map(|state| match state {
                KeyState::Done(answer) => answer,
                KeyState::Pending { .. } => Answer::Failed("loader closed".to_owned()),
            })
            .collect()
    }

    /// Starts a process in `slot`; on failure, records it and sets the slot's restart pause.
    async fn start_in(&self, slot: &mut Slot) -> Result<(), String> {
        let restart = slot.started;
        slot.started = true;
        {
            let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            stats.started += 1;
            if restart {
                stats.restarts += 1;
            }
        }
        match LoaderProcess::start(
            &self.argv,
            slot.worker,
            self.settings.timeout,
            self.line_limit,
        )
        .await
        {
            Ok((process, hello)) => {
                if hello.store_kind != self.hello.store_kind {
                    tracing::warn!(
                        worker = slot.worker,
                        "a loader's hello names store kind `{}`, the first said `{}`",
                        hello.store_kind.name(),
                        self.hello.store_kind.name()
                    );
                }
                slot.process = Some(process);
                Ok(())
            }
            Err((error, tail)) => {
                let (reason, message) = match error {
                    StartError::Spawn(e) => ("loader did not start".to_owned(), e.to_string()),
                    StartError::Hello(message) => ("loader did not start".to_owned(), message),
                    StartError::Protocol(p) => (
                        "loader did not start".to_owned(),
                        format!("its hello says protocol {p}"),
                    ),
                };
                self.record(slot, message, tail);
                Err(reason)
            }
        }
    }

    /// A loader failed mid-request: kill it, record why with its stderr tail, and pause its
    /// restart.
    async fn failed(&self, slot: &mut Slot, failure: &process::Failure) {
        let tail = match slot.process.take() {
            Some(mut process) => process.stop().await,
            None => Vec::new(),
        };
        self.record(slot, failure.message.clone(), tail);
    }

    fn record(&self, slot: &mut Slot, message: String, stderr_tail: Vec<String>) {
        let pause = slot.backoff.next().unwrap_or(MAX_DELAY);
        slot.restart_at = Some(Instant::now() + pause);
        tracing::warn!(
            worker = slot.worker,
            message,
            stderr = stderr_tail.join("\n"),
            ?pause,
            "loader failed; restarting it after a pause"
        );
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        if stats.failures.len() < LOADER_FAILURES_LISTED {
            stats.failures.push(LoaderFailure {
                at: Utc::now(),
                worker: slot.worker,
                message,
                stderr_tail,
            });
        }
    }

    fn count_errors(&self, reason: &str, keys: usize) {
        if keys > 0 {
            *self
                .stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .errors
                .entry(reason.to_owned())
                .or_default() += keys as u64;
        }
    }

    fn max_value_text(&self) -> String {
        bytesize::ByteSize::b(self.settings.max_value_size).to_string()
    }

    /// What an answer line comes to for its key: final, or worth asking again.
    fn settle(&self, answer: protocol::Answer) -> Option<(String, Settled)> {
        Some(match answer {
            protocol::Answer::Done => return None,
            protocol::Answer::Miss { key, reason } => {
                *self
                    .stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .misses
                    .entry(reason.clone())
                    .or_default() += 1;
                (key, Settled::Final(Answer::Miss(Some(reason))))
            }
            protocol::Answer::Error {
                key,
                reason,
                retryable,
            } => {
                let reason = format!("loader error: {reason}");
                if retryable {
                    (key, Settled::Retry(reason))
                } else {
                    self.count_errors(&reason, 1);
                    (key, Settled::Final(Answer::Failed(reason)))
                }
            }
            protocol::Answer::Entries { key, entries } => {
                let answer = self.decode(entries);
                if let Answer::Failed(reason) = &answer {
                    self.count_errors(reason, 1);
                }
                if let Answer::Miss(Some(reason)) = &answer {
                    *self
                        .stats
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .misses
                        .entry(reason.clone())
                        .or_default() += 1;
                }
                (key, Settled::Final(answer))
            }
        })
    }

    /// The entries of one answer, decoded, within the value-size cap.
    fn decode(&self, entries: Vec<protocol::Entry>) -> Answer {
        if entries.is_empty() {
            return Answer::Miss(Some("no entries".to_owned()));
        }
        let cap = self.settings.max_value_size;
        // Base64 is 4 characters per 3 bytes: over the cap before decoding, over after.
        let encoded: u64 = entries
            .iter()
            .map(|e| e.value_b64.len() as u64 / 4 * 3)
            .sum();
        if encoded > cap.saturating_add(3 * entries.len() as u64) {
            return Answer::Failed(format!(
                "value over --max-value-size ({})",
                self.max_value_text()
            ));
        }
        let mut decoded = Vec::with_capacity(entries.len());
        let mut total = 0u64;
        for entry in entries {
            let value = match base64::engine::general_purpose::STANDARD.decode(&entry.value_b64) {
                Ok(value) => value,
                Err(e) => {
                    return Answer::Failed(format!("loader sent a value that is not base64 ({e})"));
                }
            };
            total += value.len() as u64;
            if total > cap {
                return Answer::Failed(format!(
                    "value over --max-value-size ({})",
                    self.max_value_text()
                ));
            }
            decoded.push((
                entry.key,
                Fetched {
                    value,
                    ttl: entry.ttl_ms.map(Duration::from_millis),
                    flags: entry.flags.unwrap_or(0),
                    encoding: ValueEncoding::Raw,
                },
            ));
        }
        Answer::Entries(decoded)
    }
}

/// What an answer line means for its key.
#[derive(Debug)]
enum Settled {
    Final(Answer),
    /// A retryable error: ask again later, with this reason if it is the last.
    Retry(String),
}

fn fail_all(states: &mut [KeyState], reason: &str) {
    for state in states {
        if matches!(state, KeyState::Pending { .. }) {
            *state = KeyState::Done(Answer::Failed(reason.to_owned()));
        }
    }
}
