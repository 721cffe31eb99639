//! Opening the run directory for a run (new or resumed), and the checkpoint kept up to date
//! while the run goes.
//!
//! Each target's worker posts its progress to the [`Board`] after every batch it settles (after
//! that batch's written-keys line is in the log). A task rewrites the checkpoint from the
//! board whenever something was posted, at most every `CHECKPOINT_EVERY`; posts that arrive
//! in between are coalesced into the next write. So the checkpoint trails the stores by that
//! long at most (a resumed run sends those writes again, and add semantics find them present),
//! never leads them, and costs at most ten small atomic file writes a second: one per batch,
//! fsync'd, was 5% of a fast run's CPU.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use schemas::checkpoint::TargetProgress;
use schemas::report::Counts;
use schemas::{CHECKPOINT_SCHEMA_ID, Checkpoint};
use tokio::sync::Notify;

use super::{ResumeFrom, RunError, RunSettings, Shared, new_run_id};
use crate::rundir::{
    RunLock, latest_unfinished, lock_for_run, read_checkpoint, write_json_atomically,
};

/// What every checkpoint of a run says besides the progress.
#[derive(Debug, Clone)]
pub struct CheckpointBase {
    pub run_id: String,
    pub manifest_sha256: String,
    pub manifest_path: String,
    pub manifest_entries: u64,
    pub environment: Option<String>,
    pub targets: Vec<String>,
    pub resumed: u32,
    pub dry_run: bool,
    /// The manifest's category names, sorted.
    pub categories: Vec<String>,
    pub shard: Option<schemas::Shard>,
}

/// The latest progress of every target, and the checkpoint file it goes to.
#[derive(Debug)]
pub struct Board {
    base: CheckpointBase,
    path: PathBuf,
    state: Mutex<BoardState>,
    posted: Notify,
    /// Wakes the writing task from its pause between writes when the run closes the board.
    closing: Notify,
}

/// The least time between two checkpoint writes while the run goes.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Debug)]
struct BoardState {
    progress: Vec<TargetProgress>,
    closed: bool,
}

impl Board {
    pub fn new(base: CheckpointBase, path: PathBuf, progress: Vec<TargetProgress>) -> Board {
        Board {
            base,
            path,
            state: Mutex::new(BoardState {
                progress,
                closed: false,
            }),
            posted: Notify::new(),
            closing: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BoardState> {
        // A poisoned lock only means a worker panicked mid-post; the data is still whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records target `index`'s progress.
    pub fn post(&self, index: usize, progress: TargetProgress) {
        if let Some(slot) = self.state().progress.get_mut(index) {
            *slot = progress;
        }
        self.posted.notify_one();
    }

    /// Stops the writing task (the run writes the last checkpoint itself).
    pub fn close(&self) {
        self.state().closed = true;
        self.posted.notify_one();
        self.closing.notify_one();
    }

    /// The checkpoint as of now.
    pub fn checkpoint(&self, finished: bool, now: DateTime<Utc>) -> Checkpoint {
        let progress = self.state().progress.clone();
        let counts = progress
            .iter()
            .map(|p| {
                let mut total = Counts::default();
                for counts in p.categories.values() {
                    total.add(counts);
                }
                total
            })
            .collect();
        Checkpoint {
            schema: CHECKPOINT_SCHEMA_ID.to_owned(),
            run_id: self.base.run_id.clone(),
            manifest_sha256: self.base.manifest_sha256.clone(),
            targets: self.base.targets.clone(),
            next_entry: progress.iter().map(|p| p.next_entry).min().unwrap_or(0),
            counts,
            finished,
            updated_at: now,
            manifest_path: self.base.manifest_path.clone(),
            manifest_entries: self.base.manifest_entries,
            environment: self.base.environment.clone(),
            progress,
            resumed: self.base.resumed,
            pid: Some(std::process::id()),
            dry_run: self.base.dry_run,
            shard: self.base.shard,
        }
    }

    /// Writes the checkpoint as of now.
    pub fn write_now(&self) -> Result<(), RunError> {
        Ok(write_json_atomically(
            &self.path,
            &self.checkpoint(false, Utc::now()),
        )?)
    }

    /// The manifest's category names, indexed like its categories.
    pub fn categories(&self) -> &[String] {
        &self.base.categories
    }
}

/// Rewrites the checkpoint each time progress is posted, until the board is closed.
pub(crate) async fn keep_writing(shared: Arc<Shared>) {
    loop {
        shared.board.posted.notified().await;
        if shared.board.state().closed {
            return;
        }
        let next = tokio::time::Instant::now() + CHECKPOINT_EVERY;
        let shared_for_write = Arc::clone(&shared);
        let written = tokio::task::spawn_blocking(move || shared_for_write.board.write_now()).await;
        if let Ok(Err(error)) = written {
            tracing::warn!(%error, "could not update the checkpoint");
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shared.board.closing.notified() => return,
        }
    }
}

/// Per-category counts keyed by name, from counts indexed like the manifest's categories.
pub fn categories_by_name(names: &[String], counts: &[Counts]) -> BTreeMap<String, Counts> {
    names
        .iter()
        .zip(counts)
        .filter(|(_, c)| c.total() > 0)
        .map(|(name, c)| (name.clone(), c.clone()))
        .collect()
}

/// Picks the run directory: a new one, or the one to resume (checked against the manifest and
/// targets). Returns it locked, with the checkpoint of the run being resumed.
pub(crate) fn open_run_dir(
    settings: &RunSettings,
    manifest_sha256: &str,
    targets: &[String],
    started_at: DateTime<Utc>,
) -> Result<(PathBuf, RunLock, Option<Checkpoint>), RunError> {
    let resume_dir = match &settings.resume {
        None => None,
        Some(ResumeFrom::Dir(dir)) => {
            let checkpoint = read_checkpoint(dir).map_err(|message| RunError::Resume {
                dir: dir.clone(),
                message: format!("{message}\nhint: a run killed before it began has nothing to resume; start a new run"),
            })?;
            check_same_run(dir, &checkpoint, settings, manifest_sha256, targets)?;
            if checkpoint.finished {
                return Err(RunError::Finished { dir: dir.clone() });
            }
            Some((dir.clone(), checkpoint))
        }
        Some(ResumeFrom::Latest) => {
            let latest = latest_unfinished(
                &settings.runs_dir,
                manifest_sha256,
                targets,
                settings.dry_run,
                settings.shard,
            );
            if latest.is_none() {
                tracing::info!(
                    "no unfinished run of this manifest and targets; starting a new run"
                );
            }
            latest.and_then(|dir| Some((dir.clone(), read_checkpoint(&dir).ok()?)))
        }
    };
    let output = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RunError::Output { path, source }
    };
    if let Some((dir, checkpoint)) = resume_dir {
        let lock = lock_for_run(&dir)
            .map_err(output(&dir))?
            .ok_or(RunError::Busy {
                dir: dir.clone(),
                pid: checkpoint.pid,
            })?;
        // Read again under the lock: the process that held it may have moved it on.
        let checkpoint = read_checkpoint(&dir).map_err(|message| RunError::Resume {
            dir: dir.clone(),
            message,
        })?;
        if checkpoint.finished {
            return Err(RunError::Finished { dir });
        }
        return Ok((dir, lock, Some(checkpoint)));
    }
    let run_id = settings
        .run_id
        .clone()
        .unwrap_or_else(|| new_run_id(started_at, settings.shard));
    let dir = settings.runs_dir.join(run_id);
    crate::rundir::create(&dir).map_err(output(&dir))?;
    let lock = lock_for_run(&dir)
        .map_err(output(&dir))?
        .ok_or(RunError::Busy {
            dir: dir.clone(),
            pid: None,
        })?;
    Ok((dir, lock, None))
}

fn check_same_run(
    dir: &Path,
    checkpoint: &Checkpoint,
    settings: &RunSettings,
    manifest_sha256: &str,
    targets: &[String],
) -> Result<(), RunError> {
    if checkpoint.manifest_sha256 != manifest_sha256 {
        return Err(RunError::Resume {
            dir: dir.to_path_buf(),
            message: format!(
                "it warmed the manifest with entries_sha256 {} (`{}`), but `{}` has {manifest_sha256}\n\
                 hint: resume with the run's own manifest, or start a new run without --resume",
                checkpoint.manifest_sha256,
                checkpoint.manifest_path,
                settings.manifest.display()
            ),
        });
    }
    if checkpoint.dry_run != settings.dry_run {
        return Err(RunError::Resume {
            dir: dir.to_path_buf(),
            message: if checkpoint.dry_run {
                "it is a dry run; resume it with --dry-run, or start a real run".to_owned()
            } else {
                "it is a real run; a dry run cannot continue it".to_owned()
            },
        });
    }
    if checkpoint.shard != settings.shard {
        let name = |shard: Option<schemas::Shard>| {
            shard.map_or_else(|| "the whole manifest".to_owned(), |s| format!("shard {s}"))
        };
        return Err(RunError::Resume {
            dir: dir.to_path_buf(),
            message: format!(
                "it warmed {}, but this run is for {}\n\
                 hint: each shard resumes its own run directory; give the run's own --shard",
                name(checkpoint.shard),
                name(settings.shard)
            ),
        });
    }
    if checkpoint.targets != targets {
        return Err(RunError::Resume {
            dir: dir.to_path_buf(),
            message: format!(
                "it warmed the targets {:?}, but this run is given {targets:?}\n\
                 hint: resume with the same --target list in the same order, or start a new run",
                checkpoint.targets
            ),
        });
    }
    Ok(())
}
