//! What an answer line comes to for its key: a miss, a failure, values within
//! `--max-value-size`, or an error worth asking again; counted for the report.

use std::time::Duration;

use base64::Engine;
use schemas::loader as protocol;

use super::super::Answer;
use super::Inner;
use crate::store::{Fetched, ValueEncoding};

/// What an answer line means for its key.
#[derive(Debug)]
pub(super) enum Settled {
    Final(Answer),
    /// A retryable error: ask again later, with this reason if it is the last.
    Retry(String),
}

impl Inner {
    pub(super) fn count_errors(&self, reason: &str, keys: usize) {
        if keys > 0 {
            *self
                .stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .errors
                .entry(reason.to_owned())
                .or_default() += keys as u64;
        }
    }

    pub(super) fn max_value_text(&self) -> String {
        max_value_text(self.settings.max_value_size)
    }

    /// What an answer line comes to for its key: final, or worth asking again.
    pub(super) fn settle(&self, answer: protocol::Answer) -> Option<(String, Settled)> {
        Some(match answer {
            protocol::Answer::Done => return None,
            protocol::Answer::Miss { key, reason } => {
                *self
                    .stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .misses
                    .entry(reason.clone())
                    .or_default() += 1;
                (key, Settled::Final(Answer::Miss(Some(reason))))
            }
            protocol::Answer::Error {
                key,
                reason,
                retryable,
            } => {
                let reason = format!("loader error: {reason}");
                if retryable {
                    (key, Settled::Retry(reason))
                } else {
                    self.count_errors(&reason, 1);
                    (key, Settled::Final(Answer::Failed(reason)))
                }
            }
            protocol::Answer::Entries { key, entries } => {
                let answer = decode(entries, self.settings.max_value_size);
                if let Answer::Failed(reason) = &answer {
                    self.count_errors(reason, 1);
                }
                if let Answer::Miss(Some(reason)) = &answer {
                    *self
                        .stats
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .misses
                        .entry(reason.clone())
                        .or_default() += 1;
                }
                (key, Settled::Final(answer))
            }
        })
    }
}

/// The entries of one answer, decoded, within the value-size cap (`--max-value-size`).
pub(super) fn decode(entries: Vec<protocol::Entry>, cap: u64) -> Answer {
    if entries.is_empty() {
        return Answer::Miss(Some("no entries".to_owned()));
    }
    // Base64 is 4 characters per 3 bytes: over the cap before decoding, over after.
    let encoded: u64 = entries
        .iter()
        .map(|e| e.value_b64.len() as u64 / 4 * 3)
        .sum();
    if encoded > cap.saturating_add(3 * entries.len() as u64) {
        return Answer::Failed(format!(
            "value over --max-value-size ({})",
            max_value_text(cap)
        ));
    }
    let mut decoded = Vec::with_capacity(entries.len());
    let mut total = 0u64;
    for entry in entries {
        let value = match base64::engine::general_purpose::STANDARD.decode(&entry.value_b64) {
            Ok(value) => value,
            Err(e) => {
                return Answer::Failed(format!("loader sent a value that is not base64 ({e})"));
            }
        };
        total += value.len() as u64;
        if total > cap {
            return Answer::Failed(format!(
                "value over --max-value-size ({})",
                max_value_text(cap)
            ));
        }
        decoded.push((
            entry.key,
            Fetched {
                value,
                ttl: entry.ttl_ms.map(Duration::from_millis),
                flags: entry.flags.unwrap_or(0),
                encoding: ValueEncoding::Raw,
            },
        ));
    }
    Answer::Entries(decoded)
}

fn max_value_text(cap: u64) -> String {
    bytesize::ByteSize::b(cap).to_string()
}
