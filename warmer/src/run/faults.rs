//! Store faults during a run: retries with backoff ([`crate::retry`]), and a circuit breaker
//! per target.
//!
//! A store call that fails as a whole (a dropped connection, a timeout, a server still
//! loading) is made again after an exponentially growing pause with jitter, so a Redis that
//! restarts or fails over mid-run is warmed to the end, and many warmers hitting one store do
//! not retry in step. Add semantics make a re-sent write harmless: a key the failed attempt
//! did store comes back as already present. (It is then counted `already_present`, not
//! `written`; its value is the run's, and `warmer undo` still finds it in the sent log.)
//!
//! A batch whose retries run out counts as failed. When [`BREAKER_THRESHOLD`] batches in a row
//! fail, or a failure is not worth retrying (a refused password), the target's breaker opens:
//! the run stops calling that store and leaves the rest of its entries `not_attempted`, so a
//! store that is down costs the deploy a few seconds, not its whole timeout, and `--resume`
//! takes the target up again later.

use crate::store::StoreError;

/// Failed batches in a row that open a target's breaker.
pub(crate) const BREAKER_THRESHOLD: u32 = 3;

/// Counts failed batches in a row for one target.
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    failed_in_a_row: u32,
}

impl Breaker {
    /// A batch came back from the store.
    pub fn succeeded(&mut self) {
        self.failed_in_a_row = 0;
    }

    /// A batch failed after its retries; the reason to stop calling the store, when the
    /// breaker opens.
    pub fn failed(&mut self, error: &StoreError) -> Option<String> {
        self.failed_in_a_row += 1;
        if !error.transient {
            return Some(error.to_string());
        }
        (self.failed_in_a_row >= BREAKER_THRESHOLD).then(|| {
            format!(
                "{error} (circuit breaker open after {} failed batches in a row; the rest \
                 of the run left this store alone)",
                self.failed_in_a_row
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::tests::error;

    #[test]
    fn the_breaker_opens_on_the_third_failure_in_a_row() {
        let mut breaker = Breaker::default();
        assert!(breaker.failed(&error(true)).is_none());
        assert!(breaker.failed(&error(true)).is_none());
        breaker.succeeded();
        assert!(breaker.failed(&error(true)).is_none());
        assert!(breaker.failed(&error(true)).is_none());
        let reason = breaker.failed(&error(true)).unwrap();
        assert!(reason.contains("circuit breaker open after 3"), "{reason}");
        assert!(Breaker::default().failed(&error(false)).is_some());
    }
}
