//! Coverage: how much of the manifest's request weight a store holds right now.

use std::sync::Arc;

use schemas::report::Coverage;
use tokio::time::Instant;

use super::{InFlight, Shared, stream_entries};
use crate::manifest::Entry;
use crate::store::Store;

/// Keys per probe call. Probes are small commands (`EXISTS`, `mg` without value), so a batch
/// can be larger than a write batch.
const PROBE_BATCH: usize = 2000;
/// Probe calls in flight at once (see the warm phase: no pause for each round trip).
const PROBES_IN_FLIGHT: usize = 3;

/// Coverage overall and per category (indexed like the manifest's categories).
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub overall: Coverage,
    pub categories: Vec<Coverage>,
}

/// (requests present, requests total, keys present).
type Sums = (u64, u64, u64);

/// Probes every manifest key that is valid for `store`, streaming the manifest, before
/// `deadline`.
pub(crate) async fn probe(
    store: &Arc<Store>,
    shared: &Arc<Shared>,
    deadline: Instant,
) -> Result<Probe, String> {
    let mut overall: Sums = (0, 0, 0);
    let mut categories: Vec<Sums> = vec![(0, 0, 0); shared.manifest.categories.len()];
    let mut entries = stream_entries(shared, PROBE_BATCH);
    let mut probes = InFlight::new(PROBES_IN_FLIGHT);
    let mut reading = true;
    let result = loop {
        let mut unreadable = None;
        while reading && !probes.is_full() {
            match entries.recv().await {
                Some(Ok(batch)) => {
                    let store = Arc::clone(store);
                    let shared = Arc::clone(shared);
                    probes.push(async move {
                        let present = present(&store, &shared, &batch, deadline).await;
                        (batch, present)
                    });
                }
                Some(Err(error)) => {
                    unreadable = Some(error.to_string());
                    reading = false;
                }
                None => reading = false,
            }
        }
        if let Some(error) = unreadable {
            break Err(error);
        }
        let Some(done) = probes.next().await else {
            break Ok(());
        };
        let (batch, present) = match done {
            Ok(done) => done,
            Err(error) => break Err(format!("probe task failed: {error}")),
        };
        let present = match present {
            Ok(present) => present,
            Err(error) => break Err(error),
        };
        for (entry, is_present) in batch.iter().zip(present) {
            let category = &mut categories[entry.category as usize];
            for total in [&mut overall, category] {
                total.1 += entry.requests;
                if is_present {
                    total.0 += entry.requests;
                    total.2 += 1;
                }
            }
        }
    };
    probes.abort().await;
    result?;
    let coverage = |(present, total, keys): Sums| Coverage::new(present, total, keys);
    Ok(Probe {
        overall: coverage(overall),
        categories: categories.into_iter().map(coverage).collect(),
    })
}

/// Whether each entry of `batch` is in `store`; a key invalid for the store counts as absent.
async fn present(
    store: &Store,
    shared: &Shared,
    batch: &[Entry],
    deadline: Instant,
) -> Result<Vec<bool>, String> {
    let limits = &shared.settings.key_limits;
    let valid: Vec<bool> = batch
        .iter()
        .map(|e| store.check_key(&e.key, limits).is_ok())
        .collect();
    let keys: Vec<&str> = batch
        .iter()
        .zip(&valid)
        .filter(|(_, valid)| **valid)
        .map(|(e, _)| e.key.as_str())
        .collect();
    let found = match tokio::time::timeout_at(deadline, store.contains(&keys)).await {
        Ok(Ok(found)) => found,
        Ok(Err(error)) => return Err(error.to_string()),
        Err(_) => return Err("timed out probing the store".into()),
    };
    let mut found = found.into_iter();
    Ok(valid
        .into_iter()
        .map(|valid| valid && found.next().unwrap_or(false))
        .collect())
}
