//! A snapshot's columns in the layouts and types writers use: `key` and `value` as strings or
//! binary, `expires_at` in any unit, `flags` of any integer type, and the optional columns
//! missing altogether (files from other tools and from before they existed).

use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch, StringArray};
use arrow_schema::{DataType, TimeUnit};

use crate::store::ValueEncoding;

use super::SnapshotError;

/// One row's value and what goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    pub value: Vec<u8>,
    /// µs since the epoch; `None`: no expiry.
    pub expires_at: Option<i64>,
    pub flags: u32,
    pub encoding: ValueEncoding,
}

/// A batch of rows, its columns read into the types the snapshot's rows need.
pub(super) struct Columns {
    keys: StringArray,
    values: BinaryArray,
    expires_at: Option<ArrayRef>,
    flags: Option<Vec<u32>>,
    encodings: Option<Vec<ValueEncoding>>,
}

/// A column problem in the snapshot at `path`.
fn column_error(path: &Path, column: &'static str, problem: impl Into<String>) -> SnapshotError {
    SnapshotError::Column {
        path: path.to_path_buf(),
        column,
        problem: problem.into(),
    }
}

/// The `key` column of `batch`.
pub(super) fn key_column(path: &Path, batch: &RecordBatch) -> Result<StringArray, SnapshotError> {
    let column = batch
        .column_by_name("key")
        .ok_or_else(|| column_error(path, "key", "is missing"))?;
    match column.data_type() {
        DataType::Utf8 => Ok(column.as_string::<i32>().clone()),
        DataType::Binary => StringArray::try_from_binary(column.as_binary::<i32>().clone())
            .map_err(|e| column_error(path, "key", format!("is not UTF-8: {e}"))),
        other => Err(column_error(
            path,
            "key",
            format!("is {other}, not a string"),
        )),
    }
}

impl Columns {
    /// The columns of `batch`, checked: `key` and `value` are required, the others optional.
    pub(super) fn read(path: &Path, batch: &RecordBatch) -> Result<Columns, SnapshotError> {
        let keys = key_column(path, batch)?;
        let value = batch
            .column_by_name("value")
            .ok_or_else(|| column_error(path, "value", "is missing"))?;
        let values = match value.data_type() {
            DataType::Binary => value.as_binary::<i32>().clone(),
            DataType::Utf8 => BinaryArray::from(value.as_string::<i32>().clone()),
            other => {
                return Err(column_error(
                    path,
                    "value",
                    format!("is {other}, not binary or a string"),
                ));
            }
        };
        let expires_at = match batch.column_by_name("expires_at") {
            None => None,
            Some(column) => match column.data_type() {
                DataType::Timestamp(..) | DataType::Null => Some(Arc::clone(column)),
                other => {
                    return Err(column_error(
                        path,
                        "expires_at",
                        format!("is {other}, not a timestamp"),
                    ));
                }
            },
        };
        let flags = match batch.column_by_name("flags") {
            None => None,
            Some(column) => Some(flags_column(path, column)?),
        };
        let encodings = match batch.column_by_name("encoding") {
            None => None,
            Some(column) if column.data_type() == &DataType::Utf8 => Some(
                column
                    .as_string::<i32>()
                    .iter()
                    .map(|name| match name {
                        None => Ok(ValueEncoding::Raw),
                        Some(name) => ValueEncoding::from_name(name).ok_or_else(|| {
                            column_error(
                                path,
                                "encoding",
                                format!("holds `{name}`; known encodings: raw, redis-dump"),
                            )
                        }),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(column) => {
                return Err(column_error(
                    path,
                    "encoding",
                    format!("is {}, not a string", column.data_type()),
                ));
            }
        };
        Ok(Columns {
            keys,
            values,
            expires_at,
            flags,
            encodings,
        })
    }

    /// Rows in the batch.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Row `index`'s key; `None` when its key or value is null (a row to skip).
    pub(super) fn key(&self, index: usize) -> Option<&str> {
        if self.keys.is_null(index) || self.values.is_null(index) {
            return None;
        }
        Some(self.keys.value(index))
    }

    /// Row `index` (its key and value are not null).
    pub(super) fn row(&self, index: usize) -> Row {
        Row {
            value: self.values.value(index).to_vec(),
            expires_at: self
                .expires_at
                .as_ref()
                .and_then(|column| expiry_micros(column, index)),
            flags: self.flags.as_ref().map_or(0, |flags| flags[index]),
            encoding: self
                .encodings
                .as_ref()
                .map_or(ValueEncoding::Raw, |encodings| encodings[index]),
        }
    }
}

/// The `flags` column as u32 (null: 0), from any integer type whose values fit.
fn flags_column(path: &Path, column: &ArrayRef) -> Result<Vec<u32>, SnapshotError> {
    fn fit<T: TryInto<u32> + Copy + std::fmt::Display>(
        path: &Path,
        values: impl Iterator<Item = Option<T>>,
    ) -> Result<Vec<u32>, SnapshotError> {
        values
            .map(|value| match value {
                None => Ok(0),
                Some(v) => v.try_into().map_err(|_| {
                    column_error(
                        path,
                        "flags",
                        format!("holds {v}, not a 32-bit unsigned value"),
                    )
                }),
            })
            .collect()
    }
    match column.data_type() {
        DataType::UInt32 => Ok(column
            .as_primitive::<UInt32Type>()
            .iter()
            .map(Option::unwrap_or_default)
            .collect()),
        DataType::UInt64 => fit(path, column.as_primitive::<UInt64Type>().iter()),
        DataType::Int64 => fit(path, column.as_primitive::<Int64Type>().iter()),
        DataType::Int32 => fit(path, column.as_primitive::<Int32Type>().iter()),
        other => Err(column_error(
            path,
            "flags",
            format!("is {other}, not an integer"),
        )),
    }
}

/// Row `index` of an `expires_at` column in µs since the epoch, whatever its unit.
fn expiry_micros(column: &ArrayRef, index: usize) -> Option<i64> {
    if column.is_null(index) {
        return None;
    }
    Some(match column.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => column
            .as_primitive::<TimestampSecondType>()
            .value(index)
            .saturating_mul(1_000_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => column
            .as_primitive::<TimestampMillisecondType>()
            .value(index)
            .saturating_mul(1_000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => column
            .as_primitive::<TimestampMicrosecondType>()
            .value(index),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            column
                .as_primitive::<TimestampNanosecondType>()
                .value(index)
                / 1_000
        }
        _ => return None,
    })
}
