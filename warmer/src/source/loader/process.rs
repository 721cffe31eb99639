//! One loader process: started without a shell, its hello read, requests written to its stdin
//! and answers read from its stdout, its stderr passed to the run's log with a tail kept for
//! error messages.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schemas::loader::{Answer, AnswerLine, Hello, HelloLine, LOADER_PROTOCOL};

use super::LoaderSettings;
use super::recent::RecentSensitive;
use serde::Serialize;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::lines::{self, Read};

/// stderr lines kept per loader for error messages.
const TAIL_LINES: usize = 20;
/// The longest stderr line kept (longer ones are cut); a traceback's lines are short.
const TAIL_LINE_CHARS: usize = 500;
/// The longest stderr line read at all; the rest of a longer one is dropped.
const STDERR_LINE_LIMIT: usize = 64 << 10;
/// How long a stopped loader's stderr is read on for its last words (a crash's traceback
/// arrives just before the pipe closes).
const TAIL_WAIT: Duration = Duration::from_secs(1);
/// How long a loader that broke the protocol may take to exit on its own once its stdin is
/// closed, before it is killed: a loader that wrote garbage is often on its way down, and its
/// traceback is what the report needs.
const LAST_WORDS: Duration = Duration::from_millis(200);
/// How long a loader may take to exit once its stdin is closed.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// How much of a line that is not protocol the error message quotes.
const QUOTED_CHARS: usize = 200;

/// Why a loader could not be started.
#[derive(Debug)]
pub enum StartError {
    /// The program could not be run at all (not found, not executable).
    Spawn(std::io::Error),
    /// It ran but did not say hello as protocol v1 asks.
    Hello(String),
    /// Its hello names another protocol version.
    Protocol(u32),
}

/// Why a request failed: the loader is not to be used again.
#[derive(Debug, Clone)]
pub struct Failure {
    /// A short reason, the same for every key it costs (it is counted by reason).
    pub reason: String,
    /// The details for the log and the report.
    pub message: String,
}

/// A running loader.
#[derive(Debug)]
pub struct LoaderProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Stderr,
    line: Vec<u8>,
}

/// The loader's stderr: read by a task of its own into the log, with the last lines kept.
#[derive(Debug)]
struct Stderr {
    tail: Arc<Mutex<VecDeque<String>>>,
    reader: Option<JoinHandle<()>>,
}

/// A request line, written without copying the keys.
#[derive(Serialize)]
struct RequestLine<'a> {
    id: u64,
    keys: &'a [&'a str],
}

impl LoaderProcess {
    /// Starts `argv`, without the warmer's secrets in its environment, and reads its hello,
    /// within the loader timeout.
    pub async fn start(
        argv: &[String],
        worker: u32,
        settings: &LoaderSettings,
        line_limit: usize,
        recent: Arc<RecentSensitive>,
    ) -> Result<(LoaderProcess, Hello), (StartError, Vec<String>)> {
        let timeout = settings.timeout;
        let mut command = Command::new(&argv[0]);
        for variable in &settings.hidden_env {
            command.env_remove(variable);
        }
        command
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The warmer decides when a loader ends: a Ctrl-C on the terminal goes to the
            // warmer's process group, which finishes the batches in flight, with the loaders'
            // help. Dropped loaders are killed.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| (StartError::Spawn(e), Vec::new()))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            // Stdio::piped() above makes all three.
            unreachable!("the loader's stdio is piped");
        };
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let reader = tokio::spawn(read_stderr(stderr, worker, Arc::clone(&tail), recent));
        let mut process = LoaderProcess {
            child,
            stdin: Some(stdin),
            stdout: BufReader::with_capacity(64 << 10, stdout),
            stderr: Stderr {
                tail,
                reader: Some(reader),
            },
            line: Vec::new(),
        };
        match process.hello(timeout, line_limit).await {
            Ok(hello) if hello.protocol != LOADER_PROTOCOL => {
                let protocol = hello.protocol;
                let tail = process.stop().await;
                Err((StartError::Protocol(protocol), tail))
            }
            Ok(hello) => Ok((process, hello)),
            Err(message) => {
                let tail = process.stop().await;
                Err((StartError::Hello(message), tail))
            }
        }
    }

    async fn hello(&mut self, timeout: Duration, line_limit: usize) -> Result<Hello, String> {
        let read = lines::read_line(&mut self.stdout, &mut self.line, line_limit);
        match tokio::time::timeout(timeout, read).await {
            Err(_) => Err(format!(
                "no hello within {} (--loader-timeout)",
                humantime::format_duration(timeout)
            )),
            Ok(Err(e)) => Err(format!("cannot read its stdout: {e}")),
            Ok(Ok(Read::Eof)) => Err(format!("it ended before its hello ({})", self.exit().await)),
            Ok(Ok(Read::TooLong)) => Err("its first line is too long to be a hello".to_owned()),
            Ok(Ok(Read::Line)) => hello_line(&self.line),
        }
    }

    /// Sends request `id` for `keys` and hands each answer to `answer` until the loader says
    /// it is done. `stall` bounds the wait for each line; `too_long` is called for each
    /// answer line over `line_limit` (read through and dropped).
    pub async fn request(
        &mut self,
        id: u64,
        keys: &[&str],
        stall: Duration,
        line_limit: usize,
        mut answer: impl FnMut(Answer),
        mut too_long: impl FnMut(),
    ) -> Result<(), Failure> {
        let mut request = serde_json::to_vec(&RequestLine { id, keys }).map_err(|e| Failure {
            reason: "loader request failed".into(),
            message: e.to_string(),
        })?;
        request.push(b'\n');
        let Some(stdin) = &mut self.stdin else {
            return Err(Failure {
                reason: "loader closed".into(),
                message: "its stdin is closed".into(),
            });
        };
        // The loader reads the whole request line before it answers, so writing all of it
        // first cannot deadlock on a full stdout pipe.
        let written = async {
            stdin.write_all(&request).await?;
            stdin.flush().await
        };
        match tokio::time::timeout(stall, written).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(Failure {
                    reason: "loader crashed".into(),
                    message: format!("cannot send request {id}: {e} ({})", self.exit().await),
                });
            }
            Err(_) => return Err(stalled(id, stall)),
        }
        loop {
            let read = lines::read_line(&mut self.stdout, &mut self.line, line_limit);
            let got = match tokio::time::timeout(stall, read).await {
                Err(_) => return Err(stalled(id, stall)),
                Ok(Err(e)) => {
                    return Err(Failure {
                        reason: "loader crashed".into(),
                        message: format!("cannot read its stdout: {e}"),
                    });
                }
                Ok(Ok(got)) => got,
            };
            match got {
                Read::Eof => {
                    let exit = self.exit().await;
                    return Err(Failure {
                        reason: format!("loader crashed ({exit})"),
                        message: format!("it ended in the middle of request {id} ({exit})"),
                    });
                }
                Read::TooLong => too_long(),
                Read::Line => {
                    let parsed = answer_line(&self.line).map_err(|e| Failure {
                        reason: "loader broke the protocol".into(),
                        message: format!("during request {id} it wrote {e}"),
                    })?;
                    let Some((answered, line)) = parsed else {
                        continue;
                    };
                    if answered != id {
                        return Err(Failure {
                            reason: "loader broke the protocol".into(),
                            message: format!("it answered request {answered} during request {id}"),
                        });
                    }
                    if line == Answer::Done {
                        return Ok(());
                    }
                    answer(line);
                }
            }
        }
    }

    /// Ends the loader (it failed): closes its stdin, gives it [`LAST_WORDS`] to exit, kills
    /// it, and returns the end of its stderr.
    pub async fn stop(&mut self) -> Vec<String> {
        self.stdin = None;
        if tokio::time::timeout(LAST_WORDS, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
        self.tail().await
    }

    /// Closes the loader's stdin (the protocol's "done") and waits for it to exit; kills it
    /// when it does not in time.
    pub async fn close(mut self) {
        self.stdin = None;
        match tokio::time::timeout(EXIT_WAIT, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => tracing::warn!(%status, "a loader exited with a failure at the end"),
            Ok(Err(error)) => tracing::warn!(%error, "cannot wait for a loader"),
            Err(_) => {
                tracing::warn!("a loader did not exit when its stdin closed; killed");
                let _ = self.child.kill().await;
            }
        }
    }

    /// How the process ended, for messages (waits a moment for it to be reaped).
    async fn exit(&mut self) -> String {
        match tokio::time::timeout(TAIL_WAIT, self.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(e)) => format!("cannot tell how it ended: {e}"),
            Err(_) => "its stdout closed".to_owned(),
        }
    }

    /// The last lines of stderr, once the stream has ended or after a short wait.
    async fn tail(&mut self) -> Vec<String> {
        if let Some(reader) = self.stderr.reader.take() {
            let _ = tokio::time::timeout(TAIL_WAIT, reader).await;
        }
        self.stderr
            .tail
            .lock()
            .map(|tail| tail.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The hello of a loader's first line, or why the line is none.
pub(super) fn hello_line(line: &[u8]) -> Result<Hello, String> {
    serde_json::from_slice::<HelloLine>(line)
        .map(|line| line.hello)
        .map_err(|e| {
            format!(
                "its first line is not a protocol v1 hello ({e}): {}",
                quote(line)
            )
        })
}

/// The request id and answer of a line a loader wrote after its hello; `None` for a blank
/// line, which is passed over.
pub(super) fn answer_line(line: &[u8]) -> Result<Option<(u64, Answer)>, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<AnswerLine>(line)
        .map_err(|e| e.to_string())
        .and_then(AnswerLine::into_answer)
        .map(Some)
        .map_err(|e| {
            format!(
                "a line that is not a protocol v1 answer ({e}): {}",
                quote(line)
            )
        })
}

fn stalled(id: u64, stall: Duration) -> Failure {
    Failure {
        reason: "loader stalled past --loader-timeout".into(),
        message: format!(
            "no answer for {} during request {id}: it hangs",
            humantime::format_duration(stall)
        ),
    }
}

/// The start of `line`, as text, for an error message.
fn quote(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((at, _)) => format!("{:?}…", &text[..at]),
        None => format!("{text:?}"),
    }
}

/// Passes each stderr line to the log and keeps the last [`TAIL_LINES`], sensitive keys
/// masked (see [`RecentSensitive`]).
async fn read_stderr(
    stderr: tokio::process::ChildStderr,
    worker: u32,
    tail: Arc<Mutex<VecDeque<String>>>,
    recent: Arc<RecentSensitive>,
) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        let text = match lines::read_line(&mut reader, &mut line, STDERR_LINE_LIMIT).await {
            Ok(Read::Eof) => return,
            Err(error) => {
                tracing::warn!(worker, %error, "cannot read a loader's stderr");
                return;
            }
            Ok(Read::TooLong) => "[a stderr line too long to keep]".to_owned(),
            Ok(Read::Line) => {
                let text = String::from_utf8_lossy(&line);
                let text = recent.mask(text.trim_end_matches('\r'));
                match text.char_indices().nth(TAIL_LINE_CHARS) {
                    Some((at, _)) => format!("{}…", &text[..at]),
                    None => text.into_owned(),
                }
            }
        };
        tracing::info!(target: "warmer::loader", worker, "{text}");
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text);
        }
    }
}
