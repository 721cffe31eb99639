//! Reading and verifying a manifest before anything is written.

use std::path::{Path, PathBuf};

use schemas::manifest::entries_sha256;
use schemas::{MANIFEST_SCHEMA_ID, Manifest};
use serde::Deserialize;

/// Why a manifest was refused. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("failed to read manifest `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("manifest `{path}` is not a valid manifest: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "manifest `{path}`: field `header.schema` is `{found}`, expected `{MANIFEST_SCHEMA_ID}`\n\
         hint: this warmer reads manifest v1; regenerate it with a matching analyzer"
    )]
    UnknownSchema { path: PathBuf, found: String },
    #[error(
        "manifest `{path}`: field `header.entries_sha256` is {expected} but the entries hash to \
         {actual}: the file was changed or truncated after it was written"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("manifest `{path}`: field `entries[{index}].rank` is {found}, expected {expected}")]
    Rank {
        path: PathBuf,
        index: usize,
        found: u64,
        expected: u64,
    },
}

/// Reads the manifest at `path` (plain or zstd JSON) and verifies its schema id, checksum and
/// rank order.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let mut bytes = std::fs::read(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        bytes = zstd::decode_all(bytes.as_slice()).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let manifest: Manifest = match serde_json::from_slice(&bytes) {
        Ok(manifest) => manifest,
        Err(error) => {
            // Say "unknown schema" rather than a field error when the file is another version.
            #[derive(Deserialize)]
            struct Header {
                schema: String,
            }
            #[derive(Deserialize)]
            struct Probe {
                header: Header,
            }
            if let Ok(probe) = serde_json::from_slice::<Probe>(&bytes)
                && probe.header.schema != MANIFEST_SCHEMA_ID
            {
                return Err(ManifestError::UnknownSchema {
                    path: path.to_path_buf(),
                    found: probe.header.schema,
                });
            }
            return Err(ManifestError::Parse {
                path: path.to_path_buf(),
                message: error.to_string(),
            });
        }
    };
    if manifest.header.schema != MANIFEST_SCHEMA_ID {
        return Err(ManifestError::UnknownSchema {
            path: path.to_path_buf(),
            found: manifest.header.schema,
        });
    }
    let actual = entries_sha256(&manifest.entries);
    if actual != manifest.header.entries_sha256 {
        return Err(ManifestError::Checksum {
            path: path.to_path_buf(),
            expected: manifest.header.entries_sha256,
            actual,
        });
    }
    for (index, entry) in manifest.entries.iter().enumerate() {
        let expected = index as u64 + 1;
        if entry.rank != expected {
            return Err(ManifestError::Rank {
                path: path.to_path_buf(),
                index,
                found: entry.rank,
                expected,
            });
        }
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use schemas::ManifestHeader;
    use schemas::manifest::{Budget, ManifestEntry, ObservationWindow, Totals};

    fn manifest() -> Manifest {
        let entries: Vec<ManifestEntry> = (1..=3)
            .map(|rank| ManifestEntry {
                rank,
                key: format!("key:{rank}"),
                category: "default".into(),
                score: 10.0 / rank as f64,
                requests: 10 / rank,
                hits: 0,
                misses: 0,
                size_bytes: 100,
                ttl_s: None,
                last_seen: Utc::now(),
            })
            .collect();
        Manifest {
            header: ManifestHeader {
                schema: MANIFEST_SCHEMA_ID.into(),
                generator: "test".into(),
                generated_at: Utc::now(),
                window: ObservationWindow {
                    start: Utc::now(),
                    end: Utc::now(),
                },
                budget: Budget {
                    bytes: 300,
                    source: "test".into(),
                    capacity_bytes: None,
                },
                totals: Totals {
                    keys_seen: 3,
                    requests_seen: 18,
                    keys_selected: 3,
                    requests_selected: 18,
                    bytes_selected: 300,
                    keys_over_budget: 0,
                },
                categories: Default::default(),
                scoring: None,
                exclusions: Default::default(),
                prediction: None,
                entries_sha256: entries_sha256(&entries),
            },
            entries,
        }
    }

    fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A good manifest loads, plain or zstd-compressed.
    #[test]
    fn loads_plain_and_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let original = manifest();
        let text = serde_json::to_vec(&original).unwrap();
        let plain = write(dir.path(), "m.json", &text);
        let packed = write(
            dir.path(),
            "m.json.zst",
            &zstd::encode_all(text.as_slice(), 3).unwrap(),
        );
        assert_eq!(load(&plain).unwrap(), original);
        assert_eq!(load(&packed).unwrap(), original);
    }

    /// Each refusal names the file and the field at fault.
    #[test]
    fn refuses_bad_manifests_naming_file_and_field() {
        let dir = tempfile::tempdir().unwrap();

        let mut other_version = manifest();
        other_version.header.schema = "cachewarm.manifest/v9".into();
        let path = write(
            dir.path(),
            "v9.json",
            &serde_json::to_vec(&other_version).unwrap(),
        );
        let message = load(&path).unwrap_err().to_string();
        assert!(
            message.contains("v9.json") && message.contains("header.schema"),
            "{message}"
        );

        let mut tampered = manifest();
        tampered.entries[0].key = "other".into();
        let path = write(
            dir.path(),
            "tampered.json",
            &serde_json::to_vec(&tampered).unwrap(),
        );
        let message = load(&path).unwrap_err().to_string();
        assert!(
            message.contains("tampered.json") && message.contains("entries_sha256"),
            "{message}"
        );

        let mut reordered = manifest();
        reordered.entries.swap(0, 1);
        reordered.header.entries_sha256 = entries_sha256(&reordered.entries);
        let path = write(
            dir.path(),
            "order.json",
            &serde_json::to_vec(&reordered).unwrap(),
        );
        let message = load(&path).unwrap_err().to_string();
        assert!(message.contains("entries[0].rank"), "{message}");

        let path = write(dir.path(), "junk.json", b"{\"header\": 1}");
        let message = load(&path).unwrap_err().to_string();
        assert!(message.contains("junk.json"), "{message}");
    }
}
