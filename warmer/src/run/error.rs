//! What stops a run before it starts or keeps its outputs from being written, and the cause
//! chain as one line for reports and logs.

use std::path::PathBuf;

use crate::manifest::ManifestError;
use crate::rundir::WriteError;
use crate::source::LoaderError;
use crate::store::UrlError;

/// Errors that stop a run before it starts, or keep its outputs from being written. Store
/// failures are not among them: they are reported, and the run goes on with the other stores.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("`{0}` cannot be a target: a snapshot file is a source only")]
    SnapshotTarget(String),
    #[error("failed to write `{path}`")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot resume `{dir}`: {message}")]
    Resume { dir: PathBuf, message: String },
    #[error("run `{dir}` has finished already; there is nothing to resume")]
    Finished { dir: PathBuf },
    #[error(
        "run `{dir}` is being worked on by another warmer process{}",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Busy { dir: PathBuf, pid: Option<u32> },
    #[error("{0}")]
    Categories(String),
    #[error(transparent)]
    Loader(LoaderError),
    #[error(
        "refusing to copy {source_kind} values into the {target_kind} target `{target}`: a value \
         is what the application's client makes of its bytes, and each kind of store is read by \
         another client with its own encoding (Django's and Rails' Redis and memcached backends \
         serialize differently; memcached's client flags and Redis's data types do not exist \
         elsewhere), so the copies would read back as other bytes\nhint: pass \
         --allow-cross-kind when the values are raw strings that mean the same in both"
    )]
    CrossKind {
        source_kind: &'static str,
        target_kind: &'static str,
        target: String,
    },
}

impl From<WriteError> for RunError {
    fn from(error: WriteError) -> RunError {
        RunError::Output {
            path: error.path,
            source: error.source,
        }
    }
}

/// `error` and its causes, each after a colon: what a report, a log line and the summary
/// show (a thiserror error displays only its own message).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        let message = error.to_string();
        // `#[error(transparent)]` wrappers repeat their source's message.
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = error.source();
    }
    text
}
