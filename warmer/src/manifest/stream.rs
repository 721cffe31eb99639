//! Reading a verified manifest's entries again, in rank order, in batches; a view restricted
//! to one shard ([`ManifestFile::restrict`]) hands out only that shard's entries.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use schemas::Shard;

use super::{CategoryTotal, Entry, Layout, ManifestError, ManifestFile, Scan};

/// The message that unwinds a scan whose consumer stopped taking entries; `stream` knows the
/// stop from its own flag, not from this text.
const STOPPED: &str = "the reader of the entries stopped";

impl ManifestFile {
    /// Restricts the view to `shard`: [`ManifestFile::stream`] then hands out only its
    /// entries, and `entries` and the category totals count only those (one more pass over
    /// the file). Every category of the manifest stays listed, so the shards' reports name
    /// the same categories.
    pub fn restrict(mut self, shard: Shard) -> Result<ManifestFile, ManifestError> {
        let mut totals: Vec<(u64, u64)> = vec![(0, 0); self.categories.len()];
        let mut entries = 0u64;
        self.stream_view(Some(shard), 8192, |batch| {
            for entry in batch {
                entries += 1;
                if let Some(total) = totals.get_mut(entry.category as usize) {
                    total.0 += 1;
                    // As the verifying pass sums them: saturating.
                    total.1 = total.1.saturating_add(entry.requests);
                }
            }
            true
        })?;
        self.categories = self
            .categories
            .iter()
            .zip(totals)
            .map(|(category, (keys, requests))| CategoryTotal {
                name: category.name.clone(),
                keys,
                requests,
                sensitive: category.sensitive,
            })
            .collect();
        self.entries = entries;
        self.shard = Some(shard);
        Ok(self)
    }

    /// Reads the view's entries (the shard's, when restricted) in rank order from the start,
    /// in batches of `batch_size`, and hands each batch to `sink`; stops early when `sink`
    /// returns false. Blocking: run it on a thread of its own.
    pub fn stream(
        &self,
        batch_size: usize,
        sink: impl FnMut(Vec<Entry>) -> bool,
    ) -> Result<(), ManifestError> {
        self.stream_view(self.shard, batch_size, sink)
    }

    fn stream_view(
        &self,
        shard: Option<Shard>,
        batch_size: usize,
        mut sink: impl FnMut(Vec<Entry>) -> bool,
    ) -> Result<(), ManifestError> {
        let index: BTreeMap<&str, u32> = self
            .categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i as u32))
            .collect();
        let category_of = |name: &str| index.get(name).copied().unwrap_or(0);
        let batch_size = batch_size.max(1);
        let mut batch = Vec::with_capacity(batch_size);
        let mut open = true;
        let mut push = |entry: Entry| -> Result<(), String> {
            if !open {
                return Err(STOPPED.to_owned());
            }
            if shard.is_some_and(|shard| !shard.owns(&entry.key)) {
                return Ok(());
            }
            batch.push(entry);
            if batch.len() == batch_size {
                open = sink(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(batch_size),
                ));
            }
            Ok(())
        };
        let result = match self.layout {
            Layout::Lines => self
                .bytes
                .scan(&mut |_| {}, &mut |_, fields| {
                    push(Entry {
                        rank: fields.rank,
                        category: category_of(&fields.category),
                        key: fields.key.into_owned(),
                        requests: fields.requests,
                        ttl_s: fields.ttl_s,
                    })
                })
                .map(drop)
                .map_err(|scan| match scan {
                    Scan::Error(error) => error,
                    Scan::NotLines => self.bytes.parse_error("the layout changed between passes"),
                }),
            Layout::Any => self
                .bytes
                .scan_any(&mut |_, entry| {
                    push(Entry {
                        rank: entry.rank,
                        category: category_of(&entry.category),
                        key: entry.key,
                        requests: entry.requests,
                        ttl_s: entry.ttl_s,
                    })
                })
                .map(drop),
        };
        if !open {
            // The sink stopped taking batches: the scan was cut short on purpose (the error
            // that unwound it says so), and nothing after that matters to anyone.
            return Ok(());
        }
        result?;
        if !batch.is_empty() {
            sink(batch);
        }
        Ok(())
    }
}

/// Streams the entries of `manifest` (its view: a shard's, when restricted) in rank order, in batches of `batch_size`, from a thread
/// of its own, `ahead` batches at most ahead of the receiver: parsing overlaps the stores'
/// work. The receiver ends early with the error when the file cannot be read (which the
/// verifying pass makes unlikely); dropping it stops the thread.
pub fn batches(
    manifest: &Arc<ManifestFile>,
    batch_size: usize,
    ahead: usize,
) -> mpsc::Receiver<Result<Vec<Entry>, ManifestError>> {
    batches_of(manifest, manifest.shard, batch_size, ahead)
}

/// [`batches`] over every entry of the manifest, whatever the view (the rank curve is the
/// whole manifest's, so that the shards' reports share it).
pub fn whole_batches(
    manifest: &Arc<ManifestFile>,
    batch_size: usize,
    ahead: usize,
) -> mpsc::Receiver<Result<Vec<Entry>, ManifestError>> {
    batches_of(manifest, None, batch_size, ahead)
}

fn batches_of(
    manifest: &Arc<ManifestFile>,
    shard: Option<Shard>,
    batch_size: usize,
    ahead: usize,
) -> mpsc::Receiver<Result<Vec<Entry>, ManifestError>> {
    let (sender, receiver) = mpsc::channel(ahead.max(1));
    let manifest = Arc::clone(manifest);
    std::thread::spawn(move || {
        let result = manifest.stream_view(shard, batch_size, |batch| {
            crate::priority::follow();
            sender.blocking_send(Ok(batch)).is_ok()
        });
        if let Err(error) = result {
            let _ = sender.blocking_send(Err(error));
        }
    });
    receiver
}
