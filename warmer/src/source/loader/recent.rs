//! The sensitive keys of the latest loader requests, and how logs show them: a loader writes
//! what it likes to stderr (a Rails loader names the key that raised), and the warmer logs
//! those lines and keeps their tail for the report, so a line naming one of these keys shows
//! it masked (`CATEGORY#HASH`, see `rundir::mask`).
//!
//! A loader may write a line about a key after it answered, so the keys of the last
//! [`KEPT_FETCHES`] fetches are kept, more than the run has in flight: memory stays bounded by
//! that many batches' sensitive keys.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Fetches whose sensitive keys are kept (the run has 3 in flight).
const KEPT_FETCHES: usize = 8;

/// (key, as logs show it) of the sensitive keys of the latest fetches.
#[derive(Debug, Default)]
pub(crate) struct RecentSensitive {
    fetches: Mutex<VecDeque<Vec<(String, String)>>>,
}

impl RecentSensitive {
    /// A fetch's sensitive keys, and how each is shown.
    pub fn push(&self, keys: Vec<(String, String)>) {
        let mut fetches = self.fetches.lock().unwrap_or_else(|e| e.into_inner());
        if keys.is_empty() && fetches.is_empty() {
            return;
        }
        if fetches.len() == KEPT_FETCHES {
            fetches.pop_front();
        }
        fetches.push_back(keys);
    }

    /// `line` with every recent sensitive key in it shown masked, longest keys first (so a key
    /// that contains another is masked whole).
    pub fn mask<'a>(&self, line: &'a str) -> Cow<'a, str> {
        let fetches = self.fetches.lock().unwrap_or_else(|e| e.into_inner());
        let mut found: Vec<&(String, String)> = fetches
            .iter()
            .flatten()
            .filter(|(key, _)| !key.is_empty() && line.contains(key.as_str()))
            .collect();
        if found.is_empty() {
            return Cow::Borrowed(line);
        }
        found.sort_by_key(|(key, _)| std::cmp::Reverse(key.len()));
        let mut masked = line.to_owned();
        for (key, shown) in found {
            masked = masked.replace(key.as_str(), shown);
        }
        Cow::Owned(masked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of recent fetches are masked wherever a line names them, a longer key before a
    /// key it contains; keys of fetches long past are forgotten.
    #[test]
    fn recent_sensitive_keys_are_masked_in_lines() {
        let recent = RecentSensitive::default();
        recent.push(vec![("sess:ab".into(), "sessions#1111".into())]);
        recent.push(vec![("sess:abc".into(), "sessions#2222".into())]);
        assert_eq!(
            recent.mask("KeyError: sess:abc, then sess:ab"),
            "KeyError: sessions#2222, then sessions#1111"
        );
        assert!(matches!(recent.mask("page:1 failed"), Cow::Borrowed(_)));
        for _ in 0..KEPT_FETCHES {
            recent.push(vec![("other".into(), "sessions#3333".into())]);
        }
        assert_eq!(recent.mask("sess:ab"), "sess:ab");
    }
}
