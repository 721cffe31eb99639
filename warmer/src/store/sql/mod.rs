//! SQL database caches laid out as Django's DatabaseCache table:
//! `cache_key varchar(255) PRIMARY KEY, value text, expires datetime`. One file per database;
//! what they share is here: the options of their URLs (`?table=NAME&max_entries=N`), the entry
//! limit, and the reading of `expires`.
//!
//! The entry limit is the cache's `MAX_ENTRIES`: when a write finds more rows than that,
//! Django culls a third of the table (its expired rows first, then the first third by key). So
//! a warm never takes a table past it: a batch adds new rows only while there is room, and the
//! rest come back as [`WriteOutcome::NoRoom`](crate::store::WriteOutcome::NoRoom). Rows already
//! there (live, or expired and taken over) take no room.

mod postgres;
mod sqlite;

pub use postgres::PostgresUrl;
pub use sqlite::SqliteUrl;

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::UrlError;
use super::url::query_pairs;

/// The table of the embedded default store, and of any SQL URL that names none.
pub const DEFAULT_TABLE: &str = "cachewarm_cache";

/// What the query string of a SQL store's URL says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SqlOptions {
    table: String,
    /// The cache's `MAX_ENTRIES`, when given.
    max_entries: Option<u64>,
}

impl SqlOptions {
    /// Parses `query` (after `?`) of the URL `text` (for messages); parameters other than
    /// `table` and `max_entries` go to `other`, which says why it refuses one.
    fn parse(
        text: &str,
        query: &str,
        mut other: impl FnMut(&str, &str) -> Result<(), String>,
    ) -> Result<SqlOptions, UrlError> {
        let error = |reason: &str| UrlError::new(text, reason);
        let mut options = SqlOptions {
            table: DEFAULT_TABLE.to_owned(),
            max_entries: None,
        };
        for pair in query_pairs(query) {
            match pair {
                ("table", name) if is_identifier(name) => options.table = name.to_owned(),
                // The table name goes into SQL text.
                ("table", _) => {
                    return Err(error("table must be letters, digits and underscores"));
                }
                ("max_entries", number) => match number.parse::<u64>() {
                    Ok(n) if n > 0 => options.max_entries = Some(n),
                    _ => {
                        return Err(error(
                            "max_entries must be a positive number: the cache's MAX_ENTRIES",
                        ));
                    }
                },
                (name, value) => other(name, value).map_err(|reason| error(&reason))?,
            }
        }
        Ok(options)
    }
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Which items of a batch may be sent under the entry limit, in order: those whose key the
/// table holds already (`present`) take no room, nor does a key repeated in the batch after it
/// was given a row; a new key takes one row, while `rows` plus the new rows so far stay within
/// `max_entries`. Items not `sendable` (refused already) take none.
fn new_rows_allowed(
    keys: &[&str],
    present: &[bool],
    sendable: &[bool],
    rows: u64,
    max_entries: u64,
) -> Vec<bool> {
    let mut room = max_entries.saturating_sub(rows);
    let mut given = std::collections::HashSet::new();
    keys.iter()
        .zip(present.iter().zip(sendable))
        .map(|(key, (&present, &sendable))| {
            if !sendable || present || given.contains(key) {
                return true;
            }
            if room == 0 {
                return false;
            }
            room -= 1;
            given.insert(key);
            true
        })
        .collect()
}

/// `indexes` in order, cut into runs in which no key repeats: one SQL statement may not
/// touch a row twice, and a later write of the same key must come after the earlier one.
fn unique_runs<'a>(indexes: &[usize], key: impl Fn(&usize) -> &'a str) -> Vec<Vec<usize>> {
    let mut runs: Vec<Vec<usize>> = Vec::new();
    let mut keys = std::collections::HashSet::new();
    for index in indexes {
        if runs.is_empty() || !keys.insert(key(index)) {
            keys.clear();
            keys.insert(key(index));
            runs.push(Vec::new());
        }
        if let Some(run) = runs.last_mut() {
            run.push(*index);
        }
    }
    runs
}

/// The remaining TTL of a row that expires at `expires`, or `None` when it has expired:
/// `Some(None)` for Django's "never" (`never`: a year-9999 `expires`).
fn live_until(expires: DateTime<Utc>, now: DateTime<Utc>, never: bool) -> Option<Option<Duration>> {
    if expires <= now {
        return None;
    }
    Some(if never {
        None
    } else {
        (expires - now).to_std().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// New keys take room until the limit; keys already there, and refused items, take none.
    #[test]
    fn new_rows_stop_at_the_entry_limit() {
        let keys = ["a", "b", "c", "d", "e", "f"];
        let present = [false, true, false, false, false, true];
        let sendable = [true, true, false, true, true, true];
        assert_eq!(
            new_rows_allowed(&keys, &present, &sendable, 8, 10),
            [true, true, true, true, false, true]
        );
        assert_eq!(
            new_rows_allowed(&keys, &present, &sendable, 12, 10),
            [false, true, true, false, false, true]
        );
    }

    /// A key repeated in a batch is one row: written again, it takes no more room. One that
    /// found no room the first time finds none the second.
    #[test]
    fn a_repeated_key_takes_one_row() {
        let keys = ["a", "b", "a", "c", "c"];
        let present = [false; 5];
        let sendable = [true; 5];
        assert_eq!(
            new_rows_allowed(&keys, &present, &sendable, 8, 10),
            [true, true, true, false, false]
        );
    }

    #[test]
    fn repeated_keys_start_a_new_run() {
        let keys = ["a", "b", "a", "c", "a"];
        assert_eq!(
            unique_runs(&[0, 1, 2, 3, 4], |&i| keys[i]),
            [vec![0, 1], vec![2, 3], vec![4]]
        );
        assert!(unique_runs(&[], |&i| keys[i]).is_empty());
    }

    #[test]
    fn options_of_a_sql_url() {
        let options = SqlOptions::parse("x", "table=django_cache&max_entries=300", |_, _| {
            Err("no".into())
        })
        .unwrap();
        assert_eq!(options.table, "django_cache");
        assert_eq!(options.max_entries, Some(300));
        for bad in ["max_entries=0", "max_entries=-1", "table=a-b", "other=1"] {
            assert!(
                SqlOptions::parse("x", bad, |_, _| Err("no".into())).is_err(),
                "{bad}"
            );
        }
    }
}
