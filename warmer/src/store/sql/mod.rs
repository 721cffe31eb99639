//! SQL database caches laid out as Django's DatabaseCache table:
//! `cache_key varchar(255) PRIMARY KEY, value text, expires datetime`. One file per database;
//! what their URLs share (the table, given as `?table=NAME`) is parsed here.

mod sqlite;

pub use sqlite::SqliteUrl;

use super::UrlError;
use super::url::query_pairs;

/// The table of the embedded default store, and of any SQL URL that names none.
pub const DEFAULT_TABLE: &str = "cachewarm_cache";

/// What the query string of a SQL store's URL says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableOptions {
    table: String,
}

impl TableOptions {
    /// Parses `query` (after `?`) of the URL `text`, for messages.
    fn parse(text: &str, query: &str) -> Result<TableOptions, UrlError> {
        let error = |reason: &str| UrlError::new(text, reason);
        let mut options = TableOptions {
            table: DEFAULT_TABLE.to_owned(),
        };
        for pair in query_pairs(query) {
            match pair {
                ("table", name) if is_identifier(name) => options.table = name.to_owned(),
                // The table name goes into SQL text.
                ("table", _) => {
                    return Err(error("table must be letters, digits and underscores"));
                }
                _ => return Err(error("the only query parameter is `table`")),
            }
        }
        Ok(options)
    }
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
