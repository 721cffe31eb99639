//! Retries of a failed store call, with exponential backoff and jitter.
//!
//! A low module: the run's writes and the value source's reads both retry this way (see
//! `run::faults` for why and when), and neither should import the other for it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::store::StoreError;

/// The first pause before a retry; each later pause doubles, up to [`MAX_DELAY`].
const MIN_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Makes `call` until it succeeds, fails for good, or `retries` retries have failed; counts
/// each retry in `retried`.
pub(crate) async fn retrying<T, F, Fut>(
    retries: u32,
    retried: &Arc<AtomicU64>,
    call: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    // Full backoff with jitter: each pause is its exponential step plus a random part of it.
    let backoff = ExponentialBuilder::default()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_factor(2.0)
        .with_max_times(retries as usize)
        .with_jitter();
    call.retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|error: &StoreError| error.transient)
        .notify(|error: &StoreError, pause: Duration| {
            retried.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, ?pause, "store call failed; retrying");
        })
        .await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A store error for tests of retries and of the breaker (`run::faults`).
    pub(crate) fn error(transient: bool) -> StoreError {
        StoreError {
            kind: "redis",
            url: "redis://127.0.0.1:1".into(),
            message: "connection refused".into(),
            transient,
        }
    }

    /// Transient failures are retried until the call succeeds; others are not retried. The
    /// pauses between tries grow from [`MIN_DELAY`], each one its step plus up to as much
    /// again of jitter (on tokio's paused clock, which moves only as the test sleeps).
    #[tokio::test(start_paused = true)]
    async fn retries_transient_failures_only() {
        let retried = Arc::new(AtomicU64::new(0));
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        let result = retrying(4, &retried, || {
            calls += 1;
            let attempt = calls;
            async move {
                if attempt < 3 {
                    Err(error(true))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(retried.load(Ordering::Relaxed), 2);
        // Two pauses: 100 ms and 200 ms, each with up to as much again of jitter.
        let paused = started.elapsed();
        assert!(
            (Duration::from_millis(300)..=Duration::from_millis(600)).contains(&paused),
            "{paused:?}"
        );

        let mut calls = 0;
        let started = tokio::time::Instant::now();
        let result: Result<(), _> = retrying(4, &retried, || {
            calls += 1;
            async { Err(error(false)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no pause before giving up"
        );

        let mut calls = 0;
        let result: Result<(), _> = retrying(2, &retried, || {
            calls += 1;
            async { Err(error(true)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 3, "one call and two retries");
    }
}
