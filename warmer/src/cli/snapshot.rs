//! `warmer snapshot`: the manifest's keys read from a warm store into a snapshot file, streamed
//! in rank order.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use warmer::source::{SnapshotWriter, Source, SourceUrl};

use super::Failure;

/// Write a snapshot file (Parquet: key, value, expires_at) of the manifest's keys from a warm
/// store, to restore later with `warmer run --source FILE.parquet`.
#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// The manifest whose keys to save.
    #[arg(long)]
    manifest: PathBuf,
    /// The warm store to read (redis://, memcached://, sqlite://); its password from
    /// `?password_file=`, `?password_env=` or CACHEWARM_SOURCE_PASSWORD.
    #[arg(long)]
    source: String,
    /// The snapshot file to write.
    #[arg(long)]
    out: PathBuf,
}

pub async fn snapshot(args: SnapshotArgs) -> Result<ExitCode, Failure> {
    let usage = |error: anyhow::Error| (error, ExitCode::from(2));
    let failure = |error: anyhow::Error| (error, ExitCode::FAILURE);
    let manifest = warmer::manifest::open(&args.manifest).map_err(|e| usage(e.into()))?;
    let manifest = Arc::new(manifest);
    let source_text = warmer::store::secret::with_role_default(
        &args.source,
        warmer::store::Role::Source,
        &warmer::settings::process_env,
    );
    let url = SourceUrl::parse(&source_text).map_err(|e| usage(e.into()))?;
    let source = Source::open(&url, &manifest, 0, None)
        .await
        .map_err(|e| failure(e.into()))?;
    let context = || format!("failed to write snapshot `{}`", args.out.display());
    let mut writer = SnapshotWriter::create(&args.out, source.kind(), chrono::Utc::now())
        .with_context(context)
        .map_err(failure)?;
    // Streamed: one batch of values in memory at a time, rows in the manifest's rank order
    // (the order a run reads them back in).
    let mut batches = warmer::manifest::batches(&manifest, 500, 4);
    // How many rows carry each client flags value, and how many are Redis dumps: what the
    // application's clients will need to read them back, shown with the summary.
    let mut flags = std::collections::BTreeMap::<u32, u64>::new();
    let mut dumps = 0u64;
    while let Some(batch) = batches.recv().await {
        let batch = batch.map_err(|e| failure(e.into()))?;
        let keys: Vec<&str> = batch.iter().map(|e| e.key.as_str()).collect();
        let fetched = source.fetch(&keys).await.map_err(|e| failure(e.into()))?;
        for (key, value) in keys.iter().zip(&fetched) {
            if let Some(value) = value {
                *flags.entry(value.flags).or_default() += 1;
                if value.encoding == warmer::store::ValueEncoding::RedisDump {
                    dumps += 1;
                }
                writer
                    .push(key, value)
                    .with_context(context)
                    .map_err(failure)?;
            }
        }
    }
    let written = writer.finish().with_context(context).map_err(failure)?;
    println!(
        "snapshot: {} ({written} of {} manifest keys found in {})",
        args.out.display(),
        manifest.entries,
        warmer::store::redact(&args.source)
    );
    if flags.keys().any(|&f| f != 0) {
        let counts: Vec<String> = flags
            .iter()
            .map(|(flags, rows)| format!("{flags}: {rows}"))
            .collect();
        println!("  client flags (value: rows): {}", counts.join(", "));
    }
    if dumps > 0 {
        println!("  Redis values of other types than strings (kept as DUMP payloads): {dumps}");
    }
    Ok(ExitCode::SUCCESS)
}
