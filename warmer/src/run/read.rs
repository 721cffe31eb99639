//! The source reader: the manifest streamed in rank-ordered batches, each batch's values read
//! from the source with a few reads in flight, and handed in order to every live target's
//! task.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use schemas::report::Outcome;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::manifest::{self, Entry, ManifestError};
use crate::source::{Answer, Source};

use super::Shared;
use super::error::error_chain;
use super::target::TargetRun;

/// Batches queued between the source reader and each target.
const QUEUED_BATCHES: usize = 2;
/// Manifest batches parsed ahead of the source reader.
const PARSED_AHEAD: usize = 4;
/// Source reads in flight at once. A replica answers one pipelined batch while the next is
/// on the wire and the one before is being handed to the targets, so neither the warmer nor
/// the replica waits for a round trip.
const FETCHES_IN_FLIGHT: usize = 3;

/// Entries `start..start + entries.len()` of the manifest and what the source has for each.
#[derive(Debug)]
pub(crate) struct Batch {
    pub start: usize,
    pub entries: Vec<Entry>,
    pub fetched: Vec<Answer>,
}

/// The manifest's entries in batches of `batch_size`, parsed ahead on a thread of their own.
pub(crate) fn stream_entries(
    shared: &Shared,
    batch_size: usize,
) -> mpsc::Receiver<Result<Vec<Entry>, ManifestError>> {
    manifest::batches(&shared.manifest, batch_size, PARSED_AHEAD)
}

/// Reads the source in rank order and feeds every live target; returns the source's failure,
/// if any, and how the run ended.
pub(super) async fn warm(
    source: &Arc<Source>,
    targets: &mut [TargetRun],
    shared: &Arc<Shared>,
    resume_from: u64,
    stop: watch::Receiver<bool>,
) -> (Option<String>, Outcome) {
    let mut senders = Vec::new();
    let mut handles = Vec::new();
    for target in targets.iter_mut() {
        let Some(worker) = target.take_worker(shared, source) else {
            continue;
        };
        let (sender, receiver) = mpsc::channel::<Arc<Batch>>(QUEUED_BATCHES);
        senders.push(sender);
        handles.push(tokio::spawn(worker.run(receiver, Arc::clone(shared))));
    }

    let mut source_error = None;
    let mut outcome = Outcome::Completed;
    if !senders.is_empty() {
        let mut entries = stream_entries(shared, shared.settings.batch_size);
        let mut fetches = InFlight::new(FETCHES_IN_FLIGHT);
        let mut next_start = 0usize;
        let mut reading = true;
        loop {
            // Keep FETCHES_IN_FLIGHT source reads going; hand the oldest on when it is back.
            while reading && !fetches.is_full() {
                if *stop.borrow() {
                    outcome = Outcome::Interrupted;
                    reading = false;
                    break;
                }
                let batch = match entries.recv().await {
                    Some(Ok(batch)) => batch,
                    Some(Err(error)) => {
                        let error = error_chain(&error);
                        tracing::error!(error, "manifest unreadable; stopping");
                        source_error = Some(error);
                        reading = false;
                        break;
                    }
                    None => {
                        reading = false;
                        break;
                    }
                };
                let mut batch = batch;
                let mut start = next_start;
                next_start += batch.len();
                // A resumed run reads from the first entry some target has not handled.
                if next_start as u64 <= resume_from {
                    continue;
                }
                if (start as u64) < resume_from {
                    let skip = resume_from as usize - start;
                    batch.drain(..skip);
                    start += skip;
                }
                let source = Arc::clone(source);
                let shared = Arc::clone(shared);
                fetches.push(async move {
                    // Entries of categories the run leaves out are not asked for (a loader
                    // would compute them for nothing); they are skipped when counted.
                    let wanted: Vec<bool> = batch
                        .iter()
                        .map(|e| {
                            shared
                                .category_enabled
                                .get(e.category as usize)
                                .copied()
                                .unwrap_or(true)
                        })
                        .collect();
                    let fetched = {
                        let keys: Vec<&str> = batch
                            .iter()
                            .zip(&wanted)
                            .filter(|(_, wanted)| **wanted)
                            .map(|(e, _)| e.key.as_str())
                            .collect();
                        let sensitive = || {
                            batch
                                .iter()
                                .filter_map(|e| {
                                    let category =
                                        shared.manifest.categories.get(e.category as usize);
                                    match shared.mask.show(&e.key, category) {
                                        Cow::Owned(shown) => Some((e.key.clone(), shown)),
                                        Cow::Borrowed(_) => None,
                                    }
                                })
                                .collect()
                        };
                        let fetch = source.answers(&keys, shared.settings.retries, sensitive);
                        tokio::time::timeout_at(shared.deadline, fetch).await
                    };
                    let fetched = fetched.map(|fetched| {
                        fetched.map(|answers| {
                            let mut answers = answers.into_iter();
                            wanted
                                .iter()
                                .map(|&wanted| match wanted {
                                    true => answers.next().unwrap_or(Answer::Miss(None)),
                                    false => Answer::Miss(None),
                                })
                                .collect::<Vec<_>>()
                        })
                    });
                    (start, batch, fetched)
                });
            }
            let Some(done) = fetches.next().await else {
                break;
            };
            let (start, batch_entries, fetched) = match done {
                Ok(done) => done,
                Err(error) => {
                    source_error = Some(format!("source task failed: {error}"));
                    break;
                }
            };
            let fetched = match fetched {
                Ok(Ok(fetched)) => fetched,
                Ok(Err(error)) => {
                    let error = error_chain(&error);
                    tracing::error!(error, "source failed; stopping");
                    source_error = Some(error);
                    break;
                }
                Err(_) => {
                    outcome = Outcome::TimedOut;
                    break;
                }
            };
            let batch = Arc::new(Batch {
                start,
                entries: batch_entries,
                fetched,
            });
            for sender in &senders {
                // A target that failed has dropped its receiver; the others go on.
                let _ = sender.send(Arc::clone(&batch)).await;
            }
            senders.retain(|sender| !sender.is_closed());
            if senders.is_empty() {
                // Every target has stopped: reading on would be wasted work.
                break;
            }
        }
        // Reads still in flight after a stop are dropped: their entries are not attempted.
        fetches.abort().await;
    }
    drop(senders);
    if outcome == Outcome::Completed && *stop.borrow() {
        // The targets stopped taking batches on the signal before the reader noticed it.
        outcome = Outcome::Interrupted;
    }
    for (handle, target) in handles
        .into_iter()
        .zip(targets.iter_mut().filter(|t| t.is_waiting()))
    {
        match handle.await {
            Ok(worker) => {
                if worker.timed_out && outcome == Outcome::Completed {
                    outcome = Outcome::TimedOut;
                }
                target.put_worker(worker);
            }
            Err(error) => target.fail(format!("target task failed: {error}")),
        }
    }
    (source_error, outcome)
}

/// Up to `depth` tasks at once, their results taken in the order they were started: store
/// calls overlap on the wire while every count is still made in rank order.
#[derive(Debug)]
pub(crate) struct InFlight<T> {
    depth: usize,
    tasks: VecDeque<JoinHandle<T>>,
}

impl<T: Send + 'static> InFlight<T> {
    pub fn new(depth: usize) -> InFlight<T> {
        InFlight {
            depth: depth.max(1),
            tasks: VecDeque::with_capacity(depth),
        }
    }

    pub fn is_full(&self) -> bool {
        self.tasks.len() >= self.depth
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    pub fn push(&mut self, task: impl Future<Output = T> + Send + 'static) {
        self.tasks.push_back(tokio::spawn(task));
    }

    /// The oldest task's result; `None` when none is running. Cancel-safe (for `select!`):
    /// the task leaves the queue only once its result is taken.
    pub async fn next(&mut self) -> Option<Result<T, tokio::task::JoinError>> {
        let result = self.tasks.front_mut()?.await;
        self.tasks.pop_front();
        Some(result)
    }

    /// Stops the tasks still running, and waits until they are gone (they may hold a store).
    pub async fn abort(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}
