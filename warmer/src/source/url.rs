//! Where values come from, as given on the command line: a store (any store URL, read as a
//! replica) or a snapshot file (`file://…`, or a path ending in `.parquet`).

use std::path::PathBuf;

use crate::store::{StoreUrl, UrlError};

/// A parsed source address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceUrl {
    /// A live store, read in pipelined batches.
    Store(StoreUrl),
    /// A Parquet snapshot file (key, value, expires_at).
    Snapshot(PathBuf),
}

impl SourceUrl {
    /// Parses a source address: a snapshot file, else a store URL.
    pub fn parse(text: &str) -> Result<SourceUrl, UrlError> {
        if let Some(path) = text.strip_prefix("file://") {
            return Ok(SourceUrl::Snapshot(PathBuf::from(path)));
        }
        if text.ends_with(".parquet") {
            return Ok(SourceUrl::Snapshot(PathBuf::from(text)));
        }
        if !StoreUrl::has_scheme(text) {
            return Err(UrlError::new(
                text,
                format!(
                    "expected {} or a snapshot file (.parquet)",
                    StoreUrl::expected()
                ),
            ));
        }
        StoreUrl::parse(text).map(SourceUrl::Store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_snapshots_and_stores() {
        assert_eq!(
            SourceUrl::parse("snap/2026-11-20.parquet").unwrap(),
            SourceUrl::Snapshot("snap/2026-11-20.parquet".into())
        );
        assert_eq!(
            SourceUrl::parse("file:///var/snap").unwrap(),
            SourceUrl::Snapshot("/var/snap".into())
        );
        assert!(matches!(
            SourceUrl::parse("redis://localhost:6379").unwrap(),
            SourceUrl::Store(StoreUrl::Redis(_))
        ));
        let error = SourceUrl::parse("snap/2026-11-20.csv").unwrap_err();
        assert!(error.reason.contains(".parquet"), "{error}");
    }
}
