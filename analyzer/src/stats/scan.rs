//! The polars queries behind the stats: the dataset scanned lazily and aggregated per object
//! (`namespace`, `key`), and per object, operation and TTL. Each query's result is handed
//! over row by row, so the caller merges objects into groups without copying them.

use std::path::PathBuf;

use polars::prelude::*;
use schemas::event::columns;

use super::{Mix, Object};
use crate::rank::is_read;

/// The events of the dataset, as ranking scans them.
fn scan(files: &[PathBuf]) -> PolarsResult<LazyFrame> {
    crate::rank::scan(files, None)
}

fn requests() -> Expr {
    col(columns::COUNT).cast(DataType::UInt64)
}

/// The requests of the rows where `condition` holds.
fn requests_where(condition: Expr) -> Expr {
    when(condition).then(requests()).otherwise(lit(0u64)).sum()
}

/// Calls `each` with every object of the dataset.
pub(super) fn objects(files: &[PathBuf], mut each: impl FnMut(Object<'_>)) -> PolarsResult<()> {
    let frame = scan(files)?
        .group_by([col(columns::NAMESPACE), col(columns::KEY)])
        .agg([
            requests().sum().alias("requests"),
            col(columns::TS).min().cast(DataType::Int64).alias("first"),
            col(columns::TS).max().cast(DataType::Int64).alias("last"),
            requests_where(is_read().and(col(columns::HIT).is_not_null()))
                .alias("reads_with_outcome"),
            requests_where(is_read().and(col(columns::HIT).eq(lit(false)))).alias("read_misses"),
            (col(columns::VALUE_SIZE).cast(DataType::UInt64) * requests())
                .sum()
                .alias("value_bytes"),
            requests_where(col(columns::VALUE_SIZE).is_not_null())
                .alias("requests_with_value_size"),
        ])
        .collect()?;
    let namespace = frame.column(columns::NAMESPACE)?.str()?;
    let key = frame.column(columns::KEY)?.str()?;
    let count = frame.column("requests")?.u64()?;
    let first = frame.column("first")?.i64()?;
    let last = frame.column("last")?.i64()?;
    let reads_with_outcome = frame.column("reads_with_outcome")?.u64()?;
    let read_misses = frame.column("read_misses")?.u64()?;
    let value_bytes = frame.column("value_bytes")?.u64()?;
    let requests_with_value_size = frame.column("requests_with_value_size")?.u64()?;
    for i in 0..frame.height() {
        each(Object {
            namespace: namespace.get(i),
            key: key.get(i).unwrap_or_default(),
            requests: count.get(i).unwrap_or(0),
            first_us: first.get(i).unwrap_or(0),
            last_us: last.get(i).unwrap_or(0),
            reads_with_outcome: reads_with_outcome.get(i).unwrap_or(0),
            read_misses: read_misses.get(i).unwrap_or(0),
            value_bytes: value_bytes.get(i).unwrap_or(0),
            requests_with_value_size: requests_with_value_size.get(i).unwrap_or(0),
        });
    }
    Ok(())
}

/// Calls `each` with the requests of every object, operation and TTL of the dataset.
pub(super) fn mix(files: &[PathBuf], mut each: impl FnMut(Mix<'_>)) -> PolarsResult<()> {
    let frame = scan(files)?
        .group_by([
            col(columns::NAMESPACE),
            col(columns::KEY),
            col(columns::OP),
            col(columns::TTL_S),
        ])
        .agg([requests().sum().alias("requests")])
        .collect()?;
    let namespace = frame.column(columns::NAMESPACE)?.str()?;
    let key = frame.column(columns::KEY)?.str()?;
    let op = frame.column(columns::OP)?.str()?;
    let ttl_s = frame.column(columns::TTL_S)?.u32()?;
    let count = frame.column("requests")?.u64()?;
    for i in 0..frame.height() {
        each(Mix {
            namespace: namespace.get(i),
            key: key.get(i).unwrap_or_default(),
            op: op.get(i).unwrap_or_default(),
            ttl_s: ttl_s.get(i),
            requests: count.get(i).unwrap_or(0),
        });
    }
    Ok(())
}
