//! `AccessEvent`: one row per cache operation, the unit every log format is ingested into.
//!
//! The dataset is Parquet with exactly these columns (see [`access_event_schema`]).

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};

/// Column names of the `AccessEvent` schema, in schema order.
pub mod columns {
    /// When the cache saw the operation: timestamp, microseconds, UTC.
    pub const TS: &str = "ts";
    /// The cache key as the store sees it; bytes that are not UTF-8 are escaped as `\xNN`.
    pub const KEY: &str = "key";
    /// The operation, one of [`super::Op`]; a plain string column that Parquet stores
    /// dictionary-encoded, so every reader (polars, DuckDB, Spark) sees a string.
    pub const OP: &str = "op";
    /// Read outcome; null where the log does not say.
    pub const HIT: &str = "hit";
    /// How many identical operations the row stands for (1 unless the log aggregates).
    pub const COUNT: &str = "count";
    /// Bytes of the value, where known.
    pub const VALUE_SIZE: &str = "value_size";
    /// TTL in seconds given on a write.
    pub const TTL_S: &str = "ttl_s";
    /// Service time in microseconds, where logged.
    pub const LATENCY_US: &str = "latency_us";
    /// Client or service id.
    pub const CLIENT: &str = "client";
    /// Store, cluster or logical cache name.
    pub const NAMESPACE: &str = "namespace";

    /// Every column, in schema order.
    pub const ALL: [&str; 10] = [
        TS, KEY, OP, HIT, COUNT, VALUE_SIZE, TTL_S, LATENCY_US, CLIENT, NAMESPACE,
    ];
}

/// The Arrow schema of `AccessEvent`, which is also the dataset's Parquet schema.
pub fn access_event_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(
            columns::TS,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new(columns::KEY, DataType::Utf8, false),
        Field::new(columns::OP, DataType::Utf8, false),
        Field::new(columns::HIT, DataType::Boolean, true),
        Field::new(columns::COUNT, DataType::UInt32, false),
        Field::new(columns::VALUE_SIZE, DataType::UInt32, true),
        Field::new(columns::TTL_S, DataType::UInt32, true),
        Field::new(columns::LATENCY_US, DataType::UInt32, true),
        Field::new(columns::CLIENT, DataType::Utf8, true),
        Field::new(columns::NAMESPACE, DataType::Utf8, true),
    ]))
}

/// A cache operation, as recorded in the `op` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Get,
    Set,
    Add,
    Replace,
    Cas,
    Delete,
    Incr,
    Decr,
    Touch,
    Other,
}

impl Op {
    /// Every operation, in the order of their dictionary codes.
    pub const ALL: [Op; 10] = [
        Op::Get,
        Op::Set,
        Op::Add,
        Op::Replace,
        Op::Cas,
        Op::Delete,
        Op::Incr,
        Op::Decr,
        Op::Touch,
        Op::Other,
    ];

    /// The name stored in the `op` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Add => "add",
            Op::Replace => "replace",
            Op::Cas => "cas",
            Op::Delete => "delete",
            Op::Incr => "incr",
            Op::Decr => "decr",
            Op::Touch => "touch",
            Op::Other => "other",
        }
    }

    /// Parses an operation name, ignoring ASCII case; `None` for a name outside the vocabulary.
    pub fn parse(name: &str) -> Option<Op> {
        Op::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(name))
    }

    /// Whether the operation reads the value (and so is a request the cache can hit or miss).
    pub fn is_read(self) -> bool {
        matches!(self, Op::Get)
    }

    /// Whether the operation stores a value.
    pub fn is_write(self) -> bool {
        matches!(self, Op::Set | Op::Add | Op::Replace | Op::Cas)
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `op` column must round-trip through its names, whatever the case in the log.
    #[test]
    fn op_names_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::parse(op.as_str()), Some(op));
            assert_eq!(Op::parse(&op.as_str().to_uppercase()), Some(op));
        }
        assert_eq!(Op::parse("frobnicate"), None);
    }

    /// The column list and the Arrow schema are two spellings of the same contract.
    #[test]
    fn column_list_matches_schema() {
        let schema = access_event_schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, columns::ALL);
    }
}
