//! One access event: a row of the dataset, in the `AccessEvent` schema. The readers under
//! `ingest` produce them; the dataset writer stores them.

use schemas::Op;

/// One cache operation, as a row of the `AccessEvent` schema.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessEvent {
    /// Microseconds since the Unix epoch, UTC.
    pub ts_us: i64,
    pub key: String,
    pub op: Op,
    pub hit: Option<bool>,
    pub count: u32,
    pub value_size: Option<u32>,
    pub ttl_s: Option<u32>,
    pub latency_us: Option<u32>,
    pub client: Option<String>,
    pub namespace: Option<String>,
}

impl AccessEvent {
    /// A single read of `key` at `ts_us` with every optional field unknown.
    pub fn new(ts_us: i64, key: String) -> AccessEvent {
        AccessEvent {
            ts_us,
            key,
            op: Op::Get,
            hit: None,
            count: 1,
            value_size: None,
            ttl_s: None,
            latency_us: None,
            client: None,
            namespace: None,
        }
    }
}
