//! Datasets on object storage: `s3://BUCKET/PREFIX` wherever a dataset or key-stats path goes
//! (`ingest --out`, `rank --data`, `rank --key-stats`, `simulate`, `stats`).
//!
//! A location stays a `Path` throughout the analyzer (polars scans a local path and an `s3://`
//! URL alike), and only listing, uploading and the ledger come here. The connection comes from
//! the standard AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL` for an S3-compatible server, `AWS_ALLOW_HTTP`), which polars reads too, so
//! no credential is ever on the command line.
//!
//! Ingest writes each input's files locally first and uploads them once complete: an object
//! appears whole or not at all, so readers never see a half-written file, as the local
//! dataset's rename into place promises.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

/// The URL scheme of object-storage locations.
const SCHEME: &str = "s3://";
/// Upload part size: S3's minimum for every part but the last is 5 MiB.
const PART_BYTES: usize = 8 * 1024 * 1024;
const MAX_PARTS_IN_FLIGHT: usize = 4;

/// Whether `location` names object storage rather than a local path.
pub fn is_remote(location: &Path) -> bool {
    location
        .to_str()
        .is_some_and(|text| text.starts_with(SCHEME))
}

/// Errors reaching a dataset on object storage; they name the location.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("`{url}` is not an object-storage location (expected s3://BUCKET/PREFIX)")]
    Url {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("failed to start the object-storage client")]
    Runtime(#[source] std::io::Error),
    #[error("failed to list `{url}`")]
    List {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("failed to read `{url}`")]
    Get {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("failed to upload `{from}` to `{url}`")]
    Upload {
        from: PathBuf,
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A dataset (or key-stats table) under one `s3://` prefix.
#[derive(Debug)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: ObjectPath,
    // object_store is async and the analyzer is not: a small runtime of its own drives the calls.
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    /// Connects to the location `location` (`s3://BUCKET/PREFIX`).
    pub fn open(location: &Path) -> Result<Remote, RemoteError> {
        let url = location.to_string_lossy().trim_end_matches('/').to_owned();
        let url_error = |source| RemoteError::Url {
            url: url.clone(),
            source,
        };
        let rest = url.strip_prefix(SCHEME).unwrap_or(&url);
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let store = AmazonS3Builder::from_env()
            .with_url(url.clone())
            .build()
            .map_err(url_error)?;
        let prefix = ObjectPath::parse(prefix).map_err(|e| url_error(e.into()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RemoteError::Runtime)?;
        Ok(Remote {
            store: Arc::new(store),
            bucket: bucket.to_owned(),
            prefix,
            runtime,
        })
    }

    /// The `s3://` URL of the object at `relative` under the prefix.
    fn url_of(&self, relative: &str) -> String {
        let path = self.object_path(relative);
        format!("{SCHEME}{}/{path}", self.bucket)
    }

    fn object_path(&self, relative: &str) -> ObjectPath {
        relative
            .split('/')
            .filter(|part| !part.is_empty())
            .fold(self.prefix.clone(), |path, part| path.clone().join(part))
    }

    /// Every object under the prefix (and `below` inside it) as paths relative to the prefix.
    pub fn list(&self, below: &str) -> Result<Vec<String>, RemoteError> {
        let from = self.object_path(below);
        let objects: Vec<_> = self
            .runtime
            .block_on(self.store.list(Some(&from)).try_collect())
            .map_err(|source| RemoteError::List {
                url: self.url_of(below),
                source,
            })?;
        let mut relative: Vec<String> = objects
            .into_iter()
            .filter_map(|object| {
                object
                    .location
                    .prefix_match(&self.prefix)
                    .map(|parts| {
                        parts
                            .map(|part| part.as_ref().to_owned())
                            .collect::<Vec<_>>()
                    })
                    .map(|parts| parts.join("/"))
            })
            .collect();
        relative.sort();
        Ok(relative)
    }

    /// The location (`s3://…`) of `relative`, as the analyzer's readers take it.
    pub fn location(&self, relative: &str) -> PathBuf {
        PathBuf::from(self.url_of(relative))
    }

    /// The bytes of the object at `relative`.
    pub fn get(&self, relative: &str) -> Result<Vec<u8>, RemoteError> {
        let path = self.object_path(relative);
        let error = |source| RemoteError::Get {
            url: self.url_of(relative),
            source,
        };
        self.runtime.block_on(async {
            let result = self.store.get(&path).await.map_err(error)?;
            Ok(result.bytes().await.map_err(error)?.to_vec())
        })
    }

    /// Stores `bytes` as the object at `relative` (whole, in one request).
    pub fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<(), RemoteError> {
        let path = self.object_path(relative);
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(drop)
            .map_err(|source| RemoteError::Upload {
                from: PathBuf::from("(memory)"),
                url: self.url_of(relative),
                source: source.into(),
            })
    }

    /// Uploads the local file `from` as the object at `relative`, in parts, so a file of any
    /// size goes up in bounded memory; the object appears only when the upload completes.
    pub fn upload(&self, from: &Path, relative: &str) -> Result<(), RemoteError> {
        let path = self.object_path(relative);
        let error = |source: Box<dyn std::error::Error + Send + Sync>| RemoteError::Upload {
            from: from.to_path_buf(),
            url: self.url_of(relative),
            source,
        };
        self.runtime.block_on(async {
            let mut file = tokio::fs::File::open(from)
                .await
                .map_err(|e| error(e.into()))?;
            let upload = self
                .store
                .put_multipart(&path)
                .await
                .map_err(|e| error(e.into()))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            let mut buffer = vec![0; PART_BYTES];
            loop {
                let read = file.read(&mut buffer).await.map_err(|e| error(e.into()))?;
                if read == 0 {
                    break;
                }
                // At most a few parts in flight: memory stays bounded whatever the file's size.
                writer
                    .wait_for_capacity(MAX_PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| error(e.into()))?;
                writer.write(&buffer[..read]);
            }
            writer.finish().await.map(drop).map_err(|e| error(e.into()))
        })
    }
}
