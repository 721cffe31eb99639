//! The loader pool: one place per worker, taken by a request and given back when it is done,
//! with the process started in it when first needed and restarted after a pause that grows
//! while it keeps failing.

use std::sync::Arc;

use backon::ExponentialBackoff;
use chrono::Utc;
use schemas::report::{LOADER_FAILURES_LISTED, LoaderFailure};
use tokio::time::Instant;

use super::process::{self, LoaderProcess, StartError};
use super::{Inner, MAX_DELAY};

/// One worker place: its process when running, and how soon it may be started again.
#[derive(Debug)]
pub(super) struct Slot {
    pub worker: u32,
    pub process: Option<LoaderProcess>,
    /// Pauses before restarts, growing while the loader keeps failing.
    pub backoff: ExponentialBackoff,
    pub restart_at: Option<Instant>,
    /// Whether a process ran here before (a start is then a restart).
    pub started: bool,
}

/// A worker taken from the pool; given back when dropped. A lease dropped halfway through a
/// request (the run's deadline, a stop) gives its slot back without the process, which the
/// drop kills: its answers would belong to a request nobody waits for.
pub(super) struct Lease<'a> {
    pub slot: Option<Slot>,
    inner: &'a Inner,
    pub clean: bool,
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

impl Inner {
    pub(super) async fn checkout(&self) -> Lease<'_> {
        let slot = self.idle.lock().await.recv().await;
        Lease {
            slot,
            inner: self,
            clean: false,
        }
    }

    /// Starts a process in `slot`; on failure, records it and sets the slot's restart pause.
    pub(super) async fn start_in(&self, slot: &mut Slot) -> Result<(), String> {
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
            &self.settings,
            self.line_limit,
            Arc::clone(&self.recent),
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
    pub(super) async fn failed(&self, slot: &mut Slot, failure: &process::Failure) {
        let tail = match slot.process.take() {
            Some(mut process) => process.stop().await,
            None => Vec::new(),
        };
        self.record(slot, failure.message.clone(), tail);
    }

    pub(super) fn record(&self, slot: &mut Slot, message: String, stderr_tail: Vec<String>) {
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
}
