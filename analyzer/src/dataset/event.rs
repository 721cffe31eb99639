//! One access event: a row of the dataset, in the `AccessEvent` schema. The readers under
//! `ingest` produce them; the dataset writer stores them. [`EventRef`] is the same row with
//! borrowed text, for readers that hand fields on straight from their input.

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

/// An [`AccessEvent`] whose text borrows from elsewhere (the line being parsed, say).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventRef<'a> {
    pub ts_us: i64,
    pub key: &'a str,
    pub op: Op,
    pub hit: Option<bool>,
    pub count: u32,
    pub value_size: Option<u32>,
    pub ttl_s: Option<u32>,
    pub latency_us: Option<u32>,
    pub client: Option<&'a str>,
    pub namespace: Option<&'a str>,
}

impl AccessEvent {
    /// This event with borrowed text.
    pub fn view(&self) -> EventRef<'_> {
        EventRef {
            ts_us: self.ts_us,
            key: &self.key,
            op: self.op,
            hit: self.hit,
            count: self.count,
            value_size: self.value_size,
            ttl_s: self.ttl_s,
            latency_us: self.latency_us,
            client: self.client.as_deref(),
            namespace: self.namespace.as_deref(),
        }
    }
}

impl EventRef<'_> {
    /// The event with its own copies of the text.
    pub fn to_event(&self) -> AccessEvent {
        AccessEvent {
            ts_us: self.ts_us,
            key: self.key.to_owned(),
            op: self.op,
            hit: self.hit,
            count: self.count,
            value_size: self.value_size,
            ttl_s: self.ttl_s,
            latency_us: self.latency_us,
            client: self.client.map(str::to_owned),
            namespace: self.namespace.map(str::to_owned),
        }
    }
}
