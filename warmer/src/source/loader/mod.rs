//! The `exec:` source: the application's own loader processes compute the values (loader
//! protocol v1, DESIGN.md; the message types are in `schemas::loader`).
//!
//! `--source "exec:python manage.py cachewarm_loader"` runs the words after `exec:`, split by
//! shell rules and run without a shell, as `--loader-workers` processes. The first one is
//! started before anything else so that its hello can refuse a target of another store kind
//! (a usage error: exit 2); the others start when first needed. A batch of manifest keys is
//! split into requests of at most `MAX_REQUEST_KEYS` over the workers, and the answers are
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

//!
//! This file holds the source's face to the run ([`LoaderSource`]); `pool.rs` the worker
//! places and their restarts, `load.rs` one request's keys until each is settled, `settle.rs`
//! what an answer line means, and `process.rs` one loader process.

mod error;
mod lines;
mod load;
mod pool;
mod process;
mod recent;
mod settle;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use schemas::loader::{self as protocol, Hello, LoaderStoreKind};
use schemas::report::{LoaderFailure, LoaderReport};
use tokio::sync::mpsc;

use super::Answer;
use crate::env_vars;
use crate::store::{StoreKind, StoreUrl};
use cachewarm_secret as secret;

pub use error::LoaderError;
use pool::Slot;
use process::{LoaderProcess, StartError};
use recent::RecentSensitive;

/// How loader processes are run.
#[derive(Debug, Clone)]
pub struct LoaderSettings {
    /// Processes side by side.
    pub workers: usize,
    /// The longest a loader may go without a line while it owes one (its hello included).
    pub timeout: Duration,
    /// The most value bytes one manifest key's answer may bring.
    pub max_value_size: u64,
    /// The warmer's own secrets in its environment, kept from the loaders (see
    /// [`secret_variables`]).
    pub hidden_env: Vec<String>,
}

/// The variables that hold the warmer's secrets, for `urls` (the source and the targets): the
/// URLs themselves (`CACHEWARM_SOURCE`, `CACHEWARM_TARGETS`: `--detach` passes them so, and a
/// URL may hold a password), the default password variables, the key-hash secret, and every
/// variable a URL names for a password (`password_env=`, `sentinel_password_env=`). A loader
/// is the application: it has its own credentials, and needs none of the stores' the warmer
/// writes to. Its other variables (`PGPASSWORD` for its own database, say) are left to it.
pub fn secret_variables<'a>(urls: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = [
        env_vars::SOURCE,
        env_vars::TARGETS,
        env_vars::SOURCE_PASSWORD,
        env_vars::TARGET_PASSWORD,
        env_vars::KEY_HASH_SECRET,
    ]
    .map(str::to_owned)
    .into();
    for url in urls {
        let query = url.split_once('?').map_or("", |(_, query)| query);
        names.extend(
            secret::query_pairs(query)
                .filter(|(name, _)| name.ends_with(secret::PASSWORD_ENV))
                .map(|(_, variable)| variable.to_owned()),
        );
    }
    names.sort_unstable();
    names.dedup();
    names
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

/// The longest answer line read: the base64 of `max_value_size` and room around it. Longer
/// lines are read through and dropped.
pub fn line_limit(max_value_size: u64) -> usize {
    usize::try_from(max_value_size.div_ceil(3) * 4)
        .unwrap_or(usize::MAX)
        .saturating_add(LINE_SLACK)
}

/// What the warmer makes of a loader's whole stdout, without a process: the hello, then each
/// answer line (`done` lines left out) as a run settles it, read and parsed by the functions
/// that read a live loader's, lines over `line_limit` dropped as a value over
/// `max_value_size`. Stops at the first line that breaks the protocol, as a run stops that
/// loader, with why. For the `loader_protocol` fuzz target and its regression test, which feed
/// it any bytes; a run always reads a live loader.
pub async fn read_output(
    output: &[u8],
    max_value_size: u64,
    line_limit: usize,
) -> Result<(Hello, Vec<Answer>), String> {
    // A small buffer, so that lines span several reads as a live loader's long lines do.
    let mut reader = tokio::io::BufReader::with_capacity(16, output);
    let mut line = Vec::new();
    let read = |e: std::io::Error| format!("cannot read: {e}");
    let hello = match lines::read_line(&mut reader, &mut line, line_limit)
        .await
        .map_err(read)?
    {
        lines::Read::Eof => return Err("it ended before its hello".to_owned()),
        lines::Read::TooLong => return Err("its first line is too long to be a hello".to_owned()),
        lines::Read::Line => process::hello_line(&line)?,
    };
    if hello.protocol != protocol::LOADER_PROTOCOL {
        return Err(format!("it speaks protocol {}", hello.protocol));
    }
    let mut answers = Vec::new();
    loop {
        match lines::read_line(&mut reader, &mut line, line_limit)
            .await
            .map_err(read)?
        {
            lines::Read::Eof => return Ok((hello, answers)),
            lines::Read::TooLong => answers.push(Answer::Failed(format!(
                "value over --max-value-size ({})",
                bytesize::ByteSize::b(max_value_size)
            ))),
            lines::Read::Line => {
                let Some((_, answer)) = process::answer_line(&line)? else {
                    continue;
                };
                answers.push(match answer {
                    protocol::Answer::Done => continue,
                    protocol::Answer::Miss { reason, .. } => Answer::Miss(Some(reason)),
                    protocol::Answer::Error { reason, .. } => {
                        Answer::Failed(format!("loader error: {reason}"))
                    }
                    protocol::Answer::Entries { entries, .. } => {
                        settle::decode(entries, max_value_size)
                    }
                });
            }
        }
    }
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
    /// The sensitive keys of the latest fetches, masked in the loaders' stderr lines.
    recent: Arc<RecentSensitive>,
    /// Idle workers; a request takes one and gives it back through `back`.
    idle: tokio::sync::Mutex<mpsc::UnboundedReceiver<Slot>>,
    back: mpsc::UnboundedSender<Slot>,
    stats: Mutex<Stats>,
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

impl LoaderSource {
    /// Starts the first loader of `argv` and checks its hello against the targets.
    pub async fn start(
        argv: Vec<String>,
        settings: &LoaderSettings,
        targets: &[(String, &StoreUrl)],
    ) -> Result<LoaderSource, LoaderError> {
        let command =
            shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "));
        let line_limit = line_limit(settings.max_value_size);
        let recent = Arc::new(RecentSensitive::default());
        let (process, hello) =
            match LoaderProcess::start(&argv, 0, settings, line_limit, Arc::clone(&recent)).await {
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
            recent,
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
    /// `sensitive`: the keys of sensitive categories among them, and how logs show them.
    pub async fn answers(
        &self,
        keys: &[&str],
        retries: u32,
        sensitive: Vec<(String, String)>,
    ) -> Vec<Answer> {
        self.inner.recent.push(sensitive);
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
