//! Loader protocol v1: what the warmer and an application's loader process say to each other
//! over the loader's stdin and stdout, one UTF-8 JSON object per line (DESIGN.md, "Loader
//! protocol"). The Django and Rails integrations speak it; so can any program.
//!
//! 1. The loader's first line is a [`HelloLine`].
//! 2. The warmer sends a [`Request`]: manifest keys, in rank order.
//! 3. The loader answers each key with one [`AnswerLine`] (entries, a miss, or an error), then
//!    `{"id": N, "done": true}`.
//! 4. The warmer closes the loader's stdin when it is done; the loader exits 0.
//!
//! The loader's lines are read leniently: fields this version does not know are ignored, so
//! a newer loader can add some without breaking an older warmer.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The protocol version this crate describes; a hello with another is refused.
pub const LOADER_PROTOCOL: u32 = 1;

/// The loader's first line: `{"hello": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HelloLine {
    pub hello: Hello,
}

/// Who the loader is and what it computes values for. The warmer refuses a target whose kind
/// differs from `store_kind`, and records the hello in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Hello {
    /// The protocol version the loader speaks: 1.
    pub protocol: u32,
    /// The application framework and its version, e.g. `django 6.1.3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
    /// The kind of store the loader makes values for: `redis`, `memcached` or `sql` (a SQL
    /// database cache table). Values are made by the application's cache client for that
    /// store (its serializer, flags, key prefix): written anywhere else they would not read back.
    pub store_kind: LoaderStoreKind,
    /// The application's name for the cache, e.g. Django's `CACHES` alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The prefix the application's cache puts before every key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// The application's cache key version (Django's `VERSION`); a number or a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<serde_json::Value>,
    /// How values are serialized, e.g. `pickle-5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serializer: Option<String>,
    /// A digest of the cache settings the values depend on, to tell two configurations apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// The store kinds a loader can make values for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoaderStoreKind {
    Redis,
    Memcached,
    /// A SQL database cache table (Django's DatabaseCache layout), SQLite or PostgreSQL.
    Sql,
}

impl LoaderStoreKind {
    /// The name the protocol uses.
    pub fn name(self) -> &'static str {
        match self {
            LoaderStoreKind::Redis => "redis",
            LoaderStoreKind::Memcached => "memcached",
            LoaderStoreKind::Sql => "sql",
        }
    }
}

/// The warmer asks for the values of some manifest keys: `{"id": 7, "keys": ["…"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Unique per loader process; every answer to this request carries it.
    pub id: u64,
    /// Manifest keys, in rank order.
    pub keys: Vec<String>,
}

/// One line of a loader's answer to a request. Exactly one of these shapes:
///
/// - `{"id": 7, "key": K, "entries": [Entry…]}`: what to write for manifest key `K`;
/// - `{"id": 7, "key": K, "miss": "why"}`: nothing to warm for `K` (counted `source_miss`);
/// - `{"id": 7, "key": K, "error": "why", "retryable": true}`: computing `K` failed
///   (retried with backoff when `retryable`, else counted `failed`);
/// - `{"id": 7, "done": true}`: every key of request 7 is answered.
///
/// One flat shape rather than a tagged union: it reads one line in one pass, and a line
/// that fits no shape gets an error that says which field is wrong.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct AnswerLine {
    /// The request's id.
    pub id: u64,
    /// The manifest key answered (absent on `done`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What to write for the key, together: one or more entries (an empty list is a miss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<Entry>>,
    /// Why there is nothing to warm for the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miss: Option<String>,
    /// Why computing the key failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With `error`: whether asking again may succeed (a database timeout). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// `true` on the request's last line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<bool>,
}

/// One entry to write for a manifest key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Entry {
    /// The key as the store holds it. It may differ from the manifest key (the application's
    /// current key prefix and version: warming after a key-version bump).
    pub key: String,
    /// The value's bytes, as the application's cache client stores them, in standard base64.
    pub value_b64: String,
    /// memcached client flags (how the client decodes the value). Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u32>,
    /// Time to live in milliseconds; absent or null: the store's "no expiry" (the warmer still
    /// applies its own TTL rules).
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

/// What one answer line says, once checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Entries {
        key: String,
        entries: Vec<Entry>,
    },
    Miss {
        key: String,
        reason: String,
    },
    Error {
        key: String,
        reason: String,
        retryable: bool,
    },
    Done,
}

impl AnswerLine {
    /// Which of the four shapes the line is; the reason when it is none of them.
    pub fn into_answer(self) -> Result<(u64, Answer), String> {
        let AnswerLine {
            id,
            key,
            entries,
            miss,
            error,
            retryable,
            done,
        } = self;
        let given = [entries.is_some(), miss.is_some(), error.is_some()]
            .iter()
            .filter(|&&g| g)
            .count();
        if done == Some(true) {
            if key.is_some() || given > 0 {
                return Err("a `done` line carries no `key`, `entries`, `miss` or `error`".into());
            }
            return Ok((id, Answer::Done));
        }
        let Some(key) = key else {
            return Err("an answer needs `key` (or `\"done\": true`)".into());
        };
        if given != 1 {
            return Err(format!(
                "the answer for `{key}` needs exactly one of `entries`, `miss` or `error`"
            ));
        }
        let answer = if let Some(entries) = entries {
            Answer::Entries { key, entries }
        } else if let Some(reason) = miss {
            Answer::Miss { key, reason }
        } else {
            Answer::Error {
                key,
                reason: error.unwrap_or_default(),
                retryable: retryable.unwrap_or(false),
            }
        };
        Ok((id, answer))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<(u64, Answer), String> {
        serde_json::from_str::<AnswerLine>(line)
            .map_err(|e| e.to_string())?
            .into_answer()
    }

    /// The examples of DESIGN.md's protocol section read as the shapes they stand for.
    #[test]
    fn reads_the_design_examples() {
        let hello: HelloLine = serde_json::from_str(
            r#"{"hello": {"protocol": 1, "framework": "django 6.1.3", "store_kind": "redis",
                "alias": "default", "key_prefix": "", "version": 1, "serializer": "pickle-5",
                "fingerprint": "abc", "something_newer": true}}"#,
        )
        .unwrap();
        assert_eq!(hello.hello.store_kind, LoaderStoreKind::Redis);
        assert_eq!(hello.hello.version, Some(serde_json::json!(1)));
        assert_eq!(
            parse(r#"{"id": 7, "key": "k", "entries": [{"key": ":1:k", "value_b64": "eA==", "flags": 1, "ttl_ms": 86400000}]}"#).unwrap(),
            (7, Answer::Entries {
                key: "k".into(),
                entries: vec![Entry { key: ":1:k".into(), value_b64: "eA==".into(), flags: Some(1), ttl_ms: Some(86_400_000) }],
            })
        );
        assert_eq!(
            parse(r#"{"id": 7, "key": "k", "miss": "gone"}"#).unwrap().1,
            Answer::Miss {
                key: "k".into(),
                reason: "gone".into()
            }
        );
        assert_eq!(
            parse(r#"{"id": 7, "key": "k", "error": "db", "retryable": true}"#)
                .unwrap()
                .1,
            Answer::Error {
                key: "k".into(),
                reason: "db".into(),
                retryable: true
            }
        );
        assert_eq!(
            parse(r#"{"id": 7, "done": true}"#).unwrap(),
            (7, Answer::Done)
        );
    }

    /// Lines that fit no shape are refused with what is wrong.
    #[test]
    fn refuses_ambiguous_lines() {
        assert!(parse(r#"{"id": 7}"#).unwrap_err().contains("needs `key`"));
        assert!(
            parse(r#"{"id": 7, "key": "k"}"#)
                .unwrap_err()
                .contains("exactly one")
        );
        assert!(parse(r#"{"id": 7, "key": "k", "miss": "", "error": ""}"#).is_err());
        assert!(parse(r#"{"id": 7, "key": "k", "done": true}"#).is_err());
        assert!(
            parse(r#"{"key": "k", "miss": ""}"#)
                .unwrap_err()
                .contains("id")
        );
    }
}
