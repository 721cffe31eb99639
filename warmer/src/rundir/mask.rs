//! How a sensitive key is shown: `CATEGORY#HASH`, its category and the first 16 hex digits of
//! a keyed BLAKE3 hash of the key, in reports and logs instead of the key itself (a session
//! id in a key is a login token).
//!
//! The hash is keyed so that nobody who reads a report can test guessed keys against it. The
//! secret is `CACHEWARM_KEY_HASH_SECRET` when set (several hosts, or the shards of one run,
//! then show one key the same way), else the file `key-hash.secret` in the runs directory:
//! 32 random bytes, made by the first run, readable by its owner only. The same key shows
//! the same hash in every run that uses the same secret, so a key can be followed across runs
//! and, by someone holding the secret and the key, recognised.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::manifest::CategoryTotal;

/// The secret's file in the runs directory.
pub const SECRET_FILE: &str = "key-hash.secret";
/// BLAKE3's key derivation context: a hash made for another purpose never equals ours.
const CONTEXT: &str = "cachewarm 2026-11-30 sensitive cache key display";
/// Hex digits shown: 64 bits, enough that two keys of a report never share one.
const SHOWN_DIGITS: usize = 16;

/// The keyed hash that stands in for sensitive keys.
#[derive(Clone)]
pub struct KeyMask {
    key: [u8; 32],
}

impl std::fmt::Debug for KeyMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMask(***)")
    }
}

impl KeyMask {
    /// The mask keyed by `secret` (the variable's text, or the file's bytes).
    pub fn from_secret(secret: &[u8]) -> KeyMask {
        KeyMask {
            key: blake3::derive_key(CONTEXT, secret),
        }
    }

    /// The mask keyed by `variable` when given, else by the secret file of `runs_dir`, which is
    /// made (with the directory, `0700`) when missing.
    pub fn load(runs_dir: &Path, variable: Option<String>) -> std::io::Result<KeyMask> {
        if let Some(secret) = variable {
            return Ok(KeyMask::from_secret(secret.as_bytes()));
        }
        let path = runs_dir.join(SECRET_FILE);
        match std::fs::read(&path) {
            Ok(secret) if !secret.is_empty() => return Ok(KeyMask::from_secret(&secret)),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(runs_dir)?;
        // Written aside then linked into place: linking fails when another run made the file
        // meanwhile, and then everyone uses that one; nobody ever reads a half-written file.
        let temp = runs_dir.join(format!(".{SECRET_FILE}.{}.tmp", std::process::id()));
        let mut secret = [0u8; 32];
        // The kernel's random source, read directly: one read of 32 bytes does not call for a
        // random-number crate.
        std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(cachewarm_fs::OWNER_ONLY)
            .open(&temp)
            .and_then(|mut file| {
                file.write_all(&secret)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::hard_link(&temp, &path));
        let _ = std::fs::remove_file(&temp);
        match written {
            Ok(()) => Ok(KeyMask::from_secret(&secret)),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::read(&path).map(|secret| KeyMask::from_secret(&secret))
            }
            Err(error) => Err(error),
        }
    }

    /// `key` as reports and logs show it: itself, or `CATEGORY#HASH` when its category is
    /// sensitive.
    pub fn show<'a>(&self, key: &'a str, category: Option<&CategoryTotal>) -> Cow<'a, str> {
        match category {
            Some(category) if category.sensitive => Cow::Owned(format!(
                "{}#{}",
                category.name,
                &blake3::keyed_hash(&self.key, key.as_bytes()).to_hex()[..SHOWN_DIGITS]
            )),
            _ => Cow::Borrowed(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn category(sensitive: bool) -> CategoryTotal {
        CategoryTotal {
            name: "django.sessions".into(),
            keys: 1,
            requests: 1,
            sensitive,
        }
    }

    /// A sensitive key shows as its category and a hash that depends on the secret; any
    /// other key shows as itself.
    #[test]
    fn shows_sensitive_keys_hashed() {
        let key = ":1:django.contrib.sessions.cacheabc123";
        let mask = KeyMask::from_secret(b"one");
        let shown = mask.show(key, Some(&category(true)));
        assert!(shown.starts_with("django.sessions#"), "{shown}");
        assert_eq!(shown.len(), "django.sessions#".len() + SHOWN_DIGITS);
        assert!(!shown.contains("abc123"));
        assert_eq!(mask.show(key, Some(&category(true))), shown);
        assert_ne!(
            KeyMask::from_secret(b"two").show(key, Some(&category(true))),
            shown
        );
        assert_eq!(mask.show(key, Some(&category(false))), key);
        assert_eq!(mask.show(key, None), key);
    }

    /// The secret file is made once, owner-only, and the next run keys its hashes the same.
    #[test]
    fn the_secret_file_is_made_once_and_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let first = KeyMask::load(&runs, None).unwrap();
        let second = KeyMask::load(&runs, None).unwrap();
        assert_eq!(first.key, second.key);
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&runs.join(SECRET_FILE)), 0o600);
        assert_eq!(mode(&runs), 0o700);
        let by_variable = KeyMask::load(&runs, Some("shared".into())).unwrap();
        assert_eq!(by_variable.key, KeyMask::from_secret(b"shared").key);
    }
}
