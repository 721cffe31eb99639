//! Coverage: how much of the manifest's request weight a store holds right now.

use std::collections::BTreeMap;

use schemas::report::Coverage;
use tokio::time::Instant;

use super::Shared;
use crate::store::Store;

/// Coverage overall and per category.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub overall: Coverage,
    pub categories: BTreeMap<String, Coverage>,
}

/// Probes every manifest key that is valid for `store`, in batches, before `deadline`.
pub(crate) async fn probe(
    store: &Store,
    shared: &Shared,
    deadline: Instant,
) -> Result<Probe, String> {
    let entries = &shared.manifest.entries;
    let limits = &shared.settings.key_limits;
    // (requests present, requests total, keys present) overall and per category.
    let mut overall = (0u64, 0u64, 0u64);
    let mut categories: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for chunk in entries.chunks(shared.settings.batch_size.max(1)) {
        let valid: Vec<&str> = chunk
            .iter()
            .map(|e| e.key.as_str())
            .filter(|key| store.check_key(key, limits).is_ok())
            .collect();
        let present = match tokio::time::timeout_at(deadline, store.contains(&valid)).await {
            Ok(Ok(present)) => present,
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => return Err("timed out probing the store".into()),
        };
        let mut present = present.into_iter();
        for entry in chunk {
            let is_present =
                store.check_key(&entry.key, limits).is_ok() && present.next().unwrap_or(false);
            let category = categories.entry(entry.category.as_str()).or_default();
            for total in [&mut overall, category] {
                total.1 += entry.requests;
                if is_present {
                    total.0 += entry.requests;
                    total.2 += 1;
                }
            }
        }
    }
    let coverage = |(present, total, keys): (u64, u64, u64)| Coverage::new(present, total, keys);
    Ok(Probe {
        overall: coverage(overall),
        categories: categories
            .into_iter()
            .map(|(name, totals)| (name.to_owned(), coverage(totals)))
            .collect(),
    })
}
