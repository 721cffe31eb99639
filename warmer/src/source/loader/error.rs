//! Why a loader source could not start: a usage error (exit 2) or a loader that failed its
//! hello (reported like a source that is down).

use schemas::loader as protocol;

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
