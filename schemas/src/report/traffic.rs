//! Live traffic observed around a warm: the targets' read counters, the windows between two
//! readings of them, and how the observation was asked for.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How live traffic was observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    /// The length of each observation window asked for (`--observe`), milliseconds; 0 when
    /// only a baseline was given.
    pub observe_ms: u64,
    /// The hit rate given on the command line (`--baseline-hit-rate`) to compare the window
    /// after warming with, instead of measuring a window before warming.
    pub baseline_hit_rate: Option<f64>,
}

/// A store's cumulative read counters (Redis `keyspace_hits`/`keyspace_misses`, memcached
/// `get_hits`/`get_misses`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HitCounters {
    pub hits: u64,
    pub misses: u64,
}

/// A store's read counters over a window of live traffic: the difference of its cumulative
/// counters between the window's start and end. The warmer itself does not read the store
/// during a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HitWindow {
    /// When the counters were read at the start (after the reply).
    pub started_at: DateTime<Utc>,
    /// When they were read at the end (before the request).
    pub finished_at: DateTime<Utc>,
    /// Reads that hit during the window.
    pub hits: u64,
    /// Reads that missed during the window.
    pub misses: u64,
    /// `hits / (hits + misses)`; absent when there were no reads.
    pub hit_rate: Option<f64>,
}

impl HitWindow {
    /// The window between two readings of a store's counters. A counter that went down (the
    /// store restarted, or `CONFIG RESETSTAT`) gives no window.
    pub fn between(
        start: &HitCounters,
        end: &HitCounters,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
    ) -> Option<HitWindow> {
        let hits = end.hits.checked_sub(start.hits)?;
        let misses = end.misses.checked_sub(start.misses)?;
        let reads = hits + misses;
        Some(HitWindow {
            started_at,
            finished_at,
            hits,
            misses,
            hit_rate: (reads > 0).then(|| hits as f64 / reads as f64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(hits: u64, misses: u64) -> HitCounters {
        HitCounters { hits, misses }
    }

    /// A window is the difference of the counters; no reads is no rate, not 0; a counter
    /// that went down (a restart) gives no window rather than a wrapped one.
    #[test]
    fn hit_window_between_counters() {
        let t = Utc::now();
        let window = HitWindow::between(&counters(10, 5), &counters(40, 15), t, t).unwrap();
        assert_eq!((window.hits, window.misses), (30, 10));
        assert_eq!(window.hit_rate, Some(0.75));
        let idle = HitWindow::between(&counters(10, 5), &counters(10, 5), t, t).unwrap();
        assert_eq!(idle.hit_rate, None);
        assert!(HitWindow::between(&counters(10, 5), &counters(3, 9), t, t).is_none());
    }
}
