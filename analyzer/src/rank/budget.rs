//! The budget: bytes given outright, or a share of a store's capacity, read from the live
//! store when asked (`--capacity-from redis://…` reads `maxmemory`, `memcached://…` sums the
//! servers' `limit_maxbytes`).
//!
//! Whatever way it is given, a budget never takes more than `max_budget_share` (default 50%)
//! of a known capacity: warming must leave room for the live working set.

use std::time::Duration;

use cachewarm_secret::redact;
use schemas::keys::StoreKind;

/// How long to wait for a store when reading its capacity.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The budget's share of capacity unless the config raises it.
pub const DEFAULT_MAX_BUDGET_SHARE: f64 = 0.5;

/// The budget as given on the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum BudgetSpec {
    Bytes(u64),
    /// A share of capacity, from 0 to 1.
    Share(f64),
}

/// Parses `512MiB`, `200000` or `50%`.
pub fn parse_budget(text: &str) -> Result<BudgetSpec, String> {
    let text = text.trim();
    if let Some(percent) = text.strip_suffix('%') {
        return match percent.trim().parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(BudgetSpec::Share(p / 100.0)),
            _ => Err(format!(
                "`{text}` is not a share of capacity; use a percentage above 0 and at most 100"
            )),
        };
    }
    text.parse::<bytesize::ByteSize>()
        .map(|size| BudgetSpec::Bytes(size.as_u64()))
        .map_err(|e| {
            format!("`{text}` is not a size ({e}); use bytes, units like 512KiB, 64MiB, 1GB, or a share like 50%")
        })
}

/// A store's capacity, and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    pub bytes: u64,
    /// `--capacity 1GiB` or `maxmemory of redis://…`.
    pub source: String,
    /// The kind of store it was read from, when it was.
    pub store: Option<StoreKind>,
}

/// The budget the entries are packed into.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedBudget {
    pub bytes: u64,
    /// How it was arrived at, for the manifest header.
    pub source: String,
    /// The capacity it is a share of, when known.
    pub capacity: Option<u64>,
}

impl ResolvedBudget {
    /// A budget of plain bytes, with no capacity known.
    pub fn bytes(bytes: u64) -> ResolvedBudget {
        ResolvedBudget {
            bytes,
            source: format!("--budget {bytes}"),
            capacity: None,
        }
    }
}

/// Errors resolving the budget.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error(
        "--budget {0} is a share of capacity, but no capacity is known: give --capacity SIZE or --capacity-from URL"
    )]
    NoCapacity(String),
    #[error("cannot read the capacity of `{url}`: {message}")]
    Probe { url: String, message: String },
    #[error("max_budget_share = {0} is not a share; use a number above 0 and at most 1")]
    BadMaxShare(f64),
}

/// Resolves the budget: a share of `capacity`, or bytes; capped at `max_share` of a known
/// capacity.
pub fn resolve(
    spec: &BudgetSpec,
    spec_text: &str,
    capacity: Option<&Capacity>,
    max_share: f64,
) -> Result<ResolvedBudget, BudgetError> {
    if !(max_share > 0.0 && max_share <= 1.0) {
        return Err(BudgetError::BadMaxShare(max_share));
    }
    let (bytes, mut source) = match (spec, capacity) {
        (BudgetSpec::Bytes(bytes), _) => (*bytes, format!("--budget {spec_text}")),
        (BudgetSpec::Share(share), Some(capacity)) => (
            (share * capacity.bytes as f64).floor() as u64,
            format!("--budget {spec_text} of {}", capacity.source),
        ),
        (BudgetSpec::Share(_), None) => return Err(BudgetError::NoCapacity(spec_text.into())),
    };
    let mut bytes = bytes;
    if let Some(capacity) = capacity {
        let cap = (max_share * capacity.bytes as f64).floor() as u64;
        if bytes > cap {
            bytes = cap;
            source.push_str(&format!(
                ", capped at {}% of {} ({} bytes)",
                max_share * 100.0,
                capacity.source,
                capacity.bytes
            ));
        }
    }
    Ok(ResolvedBudget {
        bytes,
        source,
        capacity: capacity.map(|c| c.bytes),
    })
}

/// Reads the capacity of the live store at `url`: Redis `maxmemory` (INFO memory) or the sum
/// of memcached servers' `limit_maxbytes`.
/// A password named by `?password_file=` or `?password_env=` is read (see
/// [`cachewarm_secret`]); messages show the URL as given, redacted.
pub fn capacity_from(given: &str) -> Result<Capacity, BudgetError> {
    let probe_error = |message: String| BudgetError::Probe {
        url: redact(given),
        message,
    };
    let url = &*cachewarm_secret::resolve(given).map_err(probe_error)?;
    if url.starts_with("redis://") || url.starts_with("redis+unix://") {
        let client = redis::Client::open(url).map_err(|e| probe_error(e.to_string()))?;
        let mut connection = client
            .get_connection_with_timeout(PROBE_TIMEOUT)
            .map_err(|e| probe_error(e.to_string()))?;
        connection
            .set_read_timeout(Some(PROBE_TIMEOUT))
            .map_err(|e| probe_error(e.to_string()))?;
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query(&mut connection)
            .map_err(|e| probe_error(e.to_string()))?;
        let maxmemory = info
            .lines()
            .find_map(|line| line.strip_prefix("maxmemory:"))
            .and_then(|value| value.trim().parse::<u64>().ok())
            .ok_or_else(|| probe_error("INFO memory has no maxmemory field".into()))?;
        if maxmemory == 0 {
            return Err(probe_error(
                "maxmemory is 0 (no limit), so there is no capacity to take a share of; \
                 give --budget in bytes or --capacity SIZE"
                    .into(),
            ));
        }
        return Ok(Capacity {
            bytes: maxmemory,
            source: format!("maxmemory of {}", redact(given)),
            store: Some(StoreKind::Redis),
        });
    }
    if let Some(servers) = url.strip_prefix("memcached://") {
        // The warmer's `?hashing=` (how keys are spread) does not matter to a capacity sum.
        let servers = servers.split_once('?').map_or(servers, |(list, _)| list);
        let urls: Vec<String> = servers
            .trim_end_matches('/')
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|server| format!("memcache://{server}?timeout={}", PROBE_TIMEOUT.as_secs()))
            .collect();
        if urls.is_empty() {
            return Err(probe_error("no servers in the URL".into()));
        }
        let client = memcache::Client::connect(urls).map_err(|e| probe_error(e.to_string()))?;
        let stats = client.stats().map_err(|e| probe_error(e.to_string()))?;
        let mut total = 0u64;
        for (server, stats) in stats {
            let limit = stats
                .get("limit_maxbytes")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| probe_error(format!("server {server} reports no limit_maxbytes")))?;
            total += limit;
        }
        return Ok(Capacity {
            bytes: total,
            source: format!("limit_maxbytes of {}", redact(given)),
            store: Some(StoreKind::Memcached),
        });
    }
    Err(probe_error(
        "only redis:// and memcached:// stores report a capacity; give --capacity SIZE for \
         others (for a Redis Cluster, its primaries' maxmemory together)"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(bytes: u64) -> Capacity {
        Capacity {
            bytes,
            source: "--capacity".into(),
            store: None,
        }
    }

    #[test]
    fn redacts_a_cluster_url() {
        let error = capacity_from("redis+cluster://app:s3cret@a:7000,b:7001").unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    #[test]
    fn budgets_parse_as_sizes_or_shares() {
        assert_eq!(parse_budget("64MiB"), Ok(BudgetSpec::Bytes(64 << 20)));
        assert_eq!(parse_budget("200000"), Ok(BudgetSpec::Bytes(200_000)));
        assert_eq!(parse_budget("25%"), Ok(BudgetSpec::Share(0.25)));
        assert!(parse_budget("0%").is_err());
        assert!(parse_budget("150%").is_err());
        assert!(parse_budget("lots").is_err());
    }

    #[test]
    fn a_share_needs_a_capacity_and_is_capped() {
        let share = BudgetSpec::Share(0.2);
        assert!(matches!(
            resolve(&share, "20%", None, 0.5),
            Err(BudgetError::NoCapacity(_))
        ));
        let b = resolve(&share, "20%", Some(&capacity(1000)), 0.5).unwrap();
        assert_eq!((b.bytes, b.capacity), (200, Some(1000)));
        let big = resolve(&BudgetSpec::Share(0.8), "80%", Some(&capacity(1000)), 0.5).unwrap();
        assert_eq!(big.bytes, 500);
        assert!(big.source.contains("capped at 50%"), "{}", big.source);
        let raised = resolve(&BudgetSpec::Share(0.8), "80%", Some(&capacity(1000)), 0.9).unwrap();
        assert_eq!(raised.bytes, 800);
        let bytes = resolve(&BudgetSpec::Bytes(900), "900", Some(&capacity(1000)), 0.5).unwrap();
        assert_eq!(bytes.bytes, 500);
        let uncapped = resolve(&BudgetSpec::Bytes(900), "900", None, 0.5).unwrap();
        assert_eq!(uncapped.bytes, 900);
        assert!(resolve(&share, "20%", None, 1.5).is_err());
    }
}
