//! Passwords kept out of the command line (see [`cachewarm_secret`]): a store URL may name its
//! password's file or variable, and a URL that says nothing of a password takes the role's
//! variable (`CACHEWARM_SOURCE_PASSWORD`, `CACHEWARM_TARGET_PASSWORD`) when it is set.
//!
//! The password is put into the URL only when it is parsed
//! ([`StoreUrl::parse`](super::StoreUrl::parse)), so what settings, reports, the run's checkpoint and `--detach` carry names a file or a
//! variable, never the password; `warmer undo` parses the recorded URL again and so finds the
//! password where the run found it.

use std::borrow::Cow;

pub use cachewarm_secret::{PASSWORD_ENV, PASSWORD_FILE, has_inline_password};

use super::{Role, UrlError};
use crate::env_vars;

/// `text` naming the role's password variable when that is set and the URL gives none.
pub fn with_role_default(text: &str, role: Role, env: &dyn Fn(&str) -> Option<String>) -> String {
    let var = match role {
        Role::Source => env_vars::SOURCE_PASSWORD,
        Role::Target => env_vars::TARGET_PASSWORD,
    };
    cachewarm_secret::with_default_variable(text, var, env)
}

/// `text` with the password it names put in, for the store's own parser.
pub(super) fn resolve(text: &str) -> Result<Cow<'_, str>, UrlError> {
    cachewarm_secret::resolve(text).map_err(|reason| UrlError::new(text, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each role has its variable: a source never takes the targets' password.
    #[test]
    fn each_role_takes_its_variable() {
        let set = |name: &str| (name == env_vars::TARGET_PASSWORD).then(|| "pw".to_owned());
        assert_eq!(
            with_role_default("redis://cache", Role::Target, &set),
            "redis://cache?password_env=CACHEWARM_TARGET_PASSWORD"
        );
        assert_eq!(
            with_role_default("redis://cache", Role::Source, &set),
            "redis://cache"
        );
    }
}
