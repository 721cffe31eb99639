//! Coverage: how much of the manifest's request weight a store holds right now.
//!
//! An entry is asked for under its manifest key, unless the run wrote it under store keys of
//! its own (a loader's, after a key-version bump say): then it is present when all of those
//! are, since the application reads those keys and not the manifest's.

use std::collections::HashMap;
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

/// Probes every manifest entry that is valid for `store`, streaming the manifest, before
/// `deadline`: under the keys `store_keys` gives for its manifest index, else its manifest key.
pub(crate) async fn probe(
    store: &Arc<Store>,
    shared: &Arc<Shared>,
    store_keys: &Arc<HashMap<u64, Vec<String>>>,
    deadline: Instant,
) -> Result<Probe, String> {
    let mut overall: Sums = (0, 0, 0);
    let mut categories: Vec<Sums> = vec![(0, 0, 0); shared.manifest.categories.len()];
    let mut entries = stream_entries(shared, PROBE_BATCH);
    let mut probes = InFlight::new(PROBES_IN_FLIGHT);
    let mut reading = true;
    let mut next_index = 0u64;
    let result = loop {
        let mut unreadable = None;
        while reading && !probes.is_full() {
            match entries.recv().await {
                Some(Ok(batch)) => {
                    let store = Arc::clone(store);
                    let shared = Arc::clone(shared);
                    let store_keys = Arc::clone(store_keys);
                    let start = next_index;
                    next_index += batch.len() as u64;
                    probes.push(async move {
                        let present =
                            present(&store, &shared, &batch, start, &store_keys, deadline).await;
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

/// Whether each entry of `batch` (the first at manifest index `start`) is in `store`, under
/// its store keys when `store_keys` has them, else under its manifest key; a key invalid for
/// the store counts as absent.
async fn present(
    store: &Store,
    shared: &Shared,
    batch: &[Entry],
    start: u64,
    store_keys: &HashMap<u64, Vec<String>>,
    deadline: Instant,
) -> Result<Vec<bool>, String> {
    let limits = &shared.settings.key_limits;
    let keys_of: Vec<Vec<&str>> = batch
        .iter()
        .zip(start..)
        .map(|(entry, index)| match store_keys.get(&index) {
            Some(keys) => keys.iter().map(String::as_str).collect(),
            None => vec![entry.key.as_str()],
        })
        .collect();
    let valid: Vec<bool> = keys_of
        .iter()
        .map(|keys| keys.iter().all(|key| store.check_key(key, limits).is_ok()))
        .collect();
    let keys: Vec<&str> = keys_of
        .iter()
        .zip(&valid)
        .filter(|(_, valid)| **valid)
        .flat_map(|(keys, _)| keys.iter().copied())
        .collect();
    let found = match tokio::time::timeout_at(deadline, store.contains(&keys)).await {
        Ok(Ok(found)) => found,
        Ok(Err(error)) => return Err(error.to_string()),
        Err(_) => return Err("timed out probing the store".into()),
    };
    let keys_per_entry: Vec<usize> = keys_of.iter().map(Vec::len).collect();
    Ok(all_present(&keys_per_entry, &valid, &found))
}

/// Whether each entry is present: all its keys (`keys_per_entry`) were `found`, which holds
/// one answer per key of each `valid` entry, in order (the others were not asked for).
fn all_present(keys_per_entry: &[usize], valid: &[bool], found: &[bool]) -> Vec<bool> {
    let mut found = found.iter();
    keys_per_entry
        .iter()
        .zip(valid)
        .map(|(&keys, &valid)| {
            // Each key of a valid entry takes its answer from `found`, present or not (so no
            // short-circuiting `all`).
            valid && (0..keys).filter(|_| found.next() == Some(&true)).count() == keys
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry written under several store keys is present only when all of them are; an
    /// entry invalid for the store takes no answer and is absent.
    #[test]
    fn an_entry_is_present_when_all_its_keys_are() {
        let keys_per_entry = [1, 2, 2, 1, 1];
        let valid = [true, true, true, false, true];
        let found = [true, true, false, true, true, true];
        assert_eq!(
            all_present(&keys_per_entry, &valid, &found),
            [true, false, true, false, true]
        );
        assert_eq!(
            all_present(&[2], &[true], &[true]),
            [false],
            "an answer missing"
        );
    }
}
