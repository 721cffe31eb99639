//! Live traffic around a warm: each target's read counters over a window of `--observe` just
//! before warming and one just after, on connections of their own. The warmer sends nothing
//! to a store during a window but the two counter reads that bound it (Redis `INFO stats`,
//! memcached `stats`, which count neither as hit nor as miss), so a window's hits and misses
//! are the live traffic's own.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use schemas::Report;
use schemas::report::{HitCounters, HitWindow, Observation};
use tokio::sync::watch;

use super::Shared;
use crate::store::{Role, Store, StoreUrl};

/// How long one counter read may take.
const COUNTER_TIMEOUT: Duration = Duration::from_secs(10);

/// What observing live traffic needs for the whole run: one connection per target.
#[derive(Debug)]
pub(crate) struct Observer {
    observe: Option<Duration>,
    baseline_hit_rate: Option<f64>,
    /// Indexed like the targets; `None` where the store could not be reached.
    stores: Vec<Option<Store>>,
    stop: watch::Receiver<bool>,
}

impl Observer {
    /// Connects to every target when a window is to be observed.
    pub async fn connect(
        observe: Option<Duration>,
        baseline_hit_rate: Option<f64>,
        targets: &[StoreUrl],
        stop: watch::Receiver<bool>,
    ) -> Observer {
        let mut stores = Vec::with_capacity(targets.len());
        if observe.is_some() {
            for url in targets {
                let store =
                    tokio::time::timeout(COUNTER_TIMEOUT, Store::connect(url, Role::Target)).await;
                stores.push(match store {
                    Ok(Ok(store)) => Some(store),
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "cannot observe this target's traffic");
                        None
                    }
                    Err(_) => None,
                });
            }
        }
        Observer {
            observe,
            baseline_hit_rate,
            stores,
            stop,
        }
    }

    /// The window before warming: measured unless a baseline hit rate was given.
    pub async fn before(&self) -> Vec<Option<HitWindow>> {
        if self.baseline_hit_rate.is_some() {
            return Vec::new();
        }
        self.window("before warming").await
    }

    /// The window after warming, then the report's observation fields.
    pub async fn after(
        &self,
        report: &mut Report,
        before: Vec<Option<HitWindow>>,
        shared: &Arc<Shared>,
    ) {
        report.prediction = shared.manifest.header.prediction.clone();
        if self.observe.is_none() && self.baseline_hit_rate.is_none() {
            return;
        }
        report.observation = Some(Observation {
            observe_ms: self.observe.map_or(0, |d| d.as_millis() as u64),
            baseline_hit_rate: self.baseline_hit_rate,
        });
        // After an interrupted run there is no "after warming" to observe.
        let after = if report.outcome == schemas::report::Outcome::Interrupted {
            Vec::new()
        } else {
            self.window("after warming").await
        };
        for (i, target) in report.targets.iter_mut().enumerate() {
            target.window_before = before.get(i).cloned().flatten();
            target.window_after = after.get(i).cloned().flatten();
        }
    }

    /// Reads every target's counters, waits `--observe` (or until a stop signal), reads them
    /// again.
    async fn window(&self, phase: &str) -> Vec<Option<HitWindow>> {
        let Some(observe) = self.observe else {
            return Vec::new();
        };
        if *self.stop.borrow() {
            return Vec::new();
        }
        let mut starts = Vec::with_capacity(self.stores.len());
        for store in &self.stores {
            let counters = match store {
                Some(store) => counters(store).await,
                None => None,
            };
            starts.push(counters.map(|c| (c, Utc::now())));
        }
        tracing::info!(
            phase,
            seconds = observe.as_secs_f64(),
            "observation window started"
        );
        let mut stop = self.stop.clone();
        let stopped = async move {
            if stop.wait_for(|stopped| *stopped).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(observe) => {}
            _ = stopped => tracing::warn!(phase, "observation window cut short by a stop signal"),
        }
        let mut windows = Vec::with_capacity(self.stores.len());
        for (store, start) in self.stores.iter().zip(starts) {
            let window = match (store, start) {
                (Some(store), Some((start, started_at))) => {
                    let finished_at = Utc::now();
                    counters(store)
                        .await
                        .and_then(|end| HitWindow::between(&start, &end, started_at, finished_at))
                }
                _ => None,
            };
            windows.push(window);
        }
        tracing::info!(phase, "observation window ended");
        windows
    }
}

async fn counters(store: &Store) -> Option<HitCounters> {
    match tokio::time::timeout(COUNTER_TIMEOUT, store.hit_counters()).await {
        Ok(Ok(counters)) => counters,
        Ok(Err(error)) => {
            tracing::warn!(%error, "could not read the store's hit counters");
            None
        }
        Err(_) => None,
    }
}
