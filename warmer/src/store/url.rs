//! What every store address shares: the error for one that is refused, the query parameters
//! after `?`, and the redaction of passwords for logs and reports (`cachewarm_secret`'s). Each
//! store parses its own URL in its folder; the list of stores makes [`StoreUrl`](super::StoreUrl).

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid store URL `{url}`: {reason}")]
pub struct UrlError {
    pub url: String,
    pub reason: String,
}

impl UrlError {
    /// The error for `text` (redacted), for `reason`.
    pub fn new(text: &str, reason: impl Into<String>) -> UrlError {
        UrlError {
            url: redact(text),
            reason: reason.into(),
        }
    }
}

/// The `name=value` pairs of a query string, in order; a pair without `=` has an empty value.
pub(super) use cachewarm_secret::query_pairs;

/// The address with any password replaced by `***`, for logs and reports.
pub use cachewarm_secret::redact;

#[cfg(test)]
mod tests {
    use crate::store::StoreUrl;

    /// A URL the store refuses is shown redacted (redaction itself is `cachewarm_secret`'s,
    /// tested there).
    #[test]
    fn refused_urls_hide_their_passwords() {
        let error = StoreUrl::parse("rediss://app:s3cret@cache:6380?cert=c.pem").unwrap_err();
        assert!(!error.to_string().contains("s3cret"));
        let error = StoreUrl::parse("redis+cluster://app:s3cret@a:7000,b").unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    /// Each store's URL is recognised by its scheme; anything else is refused, naming the
    /// schemes there are.
    #[test]
    fn refuses_unknown_schemes() {
        for bad in ["http://example.com", "snap/2026-11-20.parquet"] {
            let error = StoreUrl::parse(bad).unwrap_err();
            assert!(error.reason.contains("redis://"), "{error}");
        }
    }
}
