//! Store URL passwords, shared by the analyzer (`--capacity-from`) and the warmer (sources,
//! targets): one redaction for every URL shown, and passwords kept out of the command line.
//!
//! A store URL may name where its password is: `?password_file=PATH` (the file's text, its
//! trailing newlines dropped) or `?password_env=CACHEWARM_…` (a variable). [`resolve`] puts that
//! password into the URL's user info, percent-encoded, and drops the parameter, just before the
//! URL goes to its client; everything that is shown or recorded keeps the URL as given, which
//! names the file or the variable but holds no password. A program may also fill in a
//! variable for URLs that say nothing of a password ([`with_default_variable`]).
//!
//! # Layout
//!
//! - [`redact`]: a URL with its password replaced by `***`, for messages and records.
//! - [`resolve`]: the password named by the URL, put into it.
//! - [`read_password`]: a password a file or a variable holds, for a store's other passwords
//!   (a Sentinel's).
//! - [`with_default_variable`], [`has_inline_password`]: what settings check and fill in.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The schemes whose servers take a password; other stores have no authentication in the
/// warmer, so these parameters are theirs to refuse.
const SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "redis+cluster",
    "rediss+cluster",
    "redis+sentinel",
    "rediss+sentinel",
    "postgres",
    "postgresql",
];

/// The address with any password replaced by `***`, for logs and reports.
pub fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password fails only for URLs that cannot have one, and this one has.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => text.to_owned(),
        // A list of hosts (`redis+cluster://u:p@a:1,b:2`) is no URL to the url crate, so the
        // password is found by hand: between the first `:` of the user info and its `@`.
        Err(_) => redact_userinfo(text).unwrap_or_else(|| text.to_owned()),
    }
}

fn redact_userinfo(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (user, _) = userinfo.split_once(':')?;
    Some(format!("{scheme}://{user}:***{}", &rest[userinfo.len()..]))
}

/// The `name=value` pairs of a query string, in order, still percent-encoded; a pair without
/// `=` has an empty value.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// The query parameter naming a file that holds the password.
pub const PASSWORD_FILE: &str = "password_file";
/// The query parameter naming a `CACHEWARM_*` variable that holds the password.
pub const PASSWORD_ENV: &str = "password_env";

/// User info characters left as they are: RFC 3986's unreserved ones.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` naming the variable `var` (`?password_env=VAR`) when `env` has it set and the URL
/// says nothing of a password itself; applied where settings are resolved, so that what is
/// recorded names the variable.
pub fn with_default_variable(
    text: &str,
    var: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> String {
    let Some(parts) = Parts::split(text) else {
        return text.to_owned();
    };
    let named = parts
        .params()
        .any(|(name, _)| name == PASSWORD_FILE || name == PASSWORD_ENV);
    if parts.password().is_some() || named || env(var).is_none() {
        return text.to_owned();
    }
    let separator = if parts.query.is_some() { '&' } else { '?' };
    format!(
        "{}{separator}{PASSWORD_ENV}={var}{}",
        &text[..parts.fragment_start],
        &text[parts.fragment_start..]
    )
}

/// Whether `text` carries a password in clear (what the command line must not).
pub fn has_inline_password(text: &str) -> bool {
    Parts::split(text).is_some_and(|parts| parts.password().is_some())
}

/// `text` with the password its `password_file` or `password_env` names put into its user
/// info (percent-encoded) and those parameters removed, ready for the store's own parser.
/// The error is the reason, for the caller's own error about the URL.
pub fn resolve(text: &str) -> Result<Cow<'_, str>, String> {
    let Some(parts) = Parts::split(text) else {
        return Ok(Cow::Borrowed(text));
    };
    let mut password = None;
    let mut kept = Vec::new();
    for (name, raw) in parts.params() {
        let value = percent_decode_str(raw).decode_utf8_lossy();
        let found = match name {
            PASSWORD_FILE => read_password(name, &value, Holder::File)?,
            PASSWORD_ENV => read_password(name, &value, Holder::Variable)?,
            _ => {
                kept.push((name, raw));
                continue;
            }
        };
        if password.is_some() || parts.password().is_some() {
            return Err(format!(
                "the password is given twice; give it once: in the URL, by {PASSWORD_FILE} \
                 or by {PASSWORD_ENV}"
            ));
        }
        password = Some(found);
    }
    let Some(password) = password else {
        return Ok(Cow::Borrowed(text));
    };
    let query: Vec<String> = kept
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    Ok(Cow::Owned(format!(
        "{}://{}:{}@{}{}{query}{}",
        parts.scheme,
        parts.user(),
        utf8_percent_encode(&password, USERINFO),
        parts.hosts,
        parts.path,
        &text[parts.fragment_start..]
    )))
}

/// Where a password named by a URL parameter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A file: its text, trailing newlines dropped.
    File,
    /// A `CACHEWARM_*` environment variable.
    Variable,
}

/// The password the parameter `param` (for messages) names by `value`, a path or a variable.
/// Only `CACHEWARM_*` variables are read: a URL may not send other secrets of the environment
/// to its server.
pub fn read_password(param: &str, value: &str, holder: Holder) -> Result<String, String> {
    match holder {
        Holder::File => std::fs::read_to_string(value)
            .map(|text| text.trim_end_matches(['\r', '\n']).to_owned())
            .map_err(|e| format!("cannot read {param} `{value}`: {e}")),
        Holder::Variable if !value.starts_with("CACHEWARM_") => Err(format!(
            "{param} must name a CACHEWARM_* variable, not `{value}`: a URL may not send \
             other secrets of the environment to its server"
        )),
        Holder::Variable => {
            std::env::var(value).map_err(|_| format!("{param}: the variable `{value}` is not set"))
        }
    }
}

/// A URL taken apart by hand: a list of hosts (`redis+cluster://a:1,b:2`) is no URL to the
/// url crate.
struct Parts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    hosts: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    /// Where `#…` starts (the text's length when there is none).
    fragment_start: usize,
}

impl<'a> Parts<'a> {
    /// The parts of `text`, when its scheme is one whose server takes a password.
    fn split(text: &'a str) -> Option<Parts<'a>> {
        let (scheme, rest) = text.split_once("://")?;
        if !SCHEMES.contains(&scheme) {
            return None;
        }
        let fragment_start = text.find('#').unwrap_or(text.len());
        let rest = &rest[..fragment_start - scheme.len() - 3];
        let (before_query, query) = match rest.split_once('?') {
            Some((before, query)) => (before, Some(query)),
            None => (rest, None),
        };
        let (authority, path) =
            before_query.split_at(before_query.find('/').unwrap_or(before_query.len()));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        Some(Parts {
            scheme,
            userinfo,
            hosts,
            path,
            query,
            fragment_start,
        })
    }

    fn user(&self) -> &'a str {
        self.userinfo
            .map(|info| info.split_once(':').map_or(info, |(user, _)| user))
            .unwrap_or("")
    }

    fn password(&self) -> Option<&'a str> {
        self.userinfo
            .and_then(|info| info.split_once(':'))
            .map(|(_, password)| password)
    }

    fn params(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        query_pairs(self.query.unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A password is replaced wherever the URL has one, a list of hosts included.
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("redis://app:s3cret@cache:6379/0"),
            "redis://app:***@cache:6379/0"
        );
        assert_eq!(
            redact("redis+cluster://app:s3cret@a:7000,b:7001"),
            "redis+cluster://app:***@a:7000,b:7001"
        );
        assert_eq!(
            redact("redis+cluster://:s3cret@a:7000"),
            "redis+cluster://:***@a:7000"
        );
        assert_eq!(
            redact("https://ci:tok3n@push.example/metrics"),
            "https://ci:***@push.example/metrics"
        );
    }

    /// The password a file holds goes into the user info, encoded; the parameter is gone and
    /// the others stay.
    #[test]
    fn reads_the_password_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "p@ss:w/rd\n").unwrap();
        let file = file.display();
        assert_eq!(
            resolve(&format!("redis://cache:6379/2?password_file={file}")).unwrap(),
            "redis://:p%40ss%3Aw%2Frd@cache:6379/2"
        );
        assert_eq!(
            resolve(&format!(
                "postgres://app@db/site?table=cache&password_file={file}&max_entries=5"
            ))
            .unwrap(),
            "postgres://app:p%40ss%3Aw%2Frd@db/site?table=cache&max_entries=5"
        );
        assert_eq!(
            resolve(&format!(
                "postgres://app@db/s?table=my%20cache&password_file={file}"
            ))
            .unwrap(),
            "postgres://app:p%40ss%3Aw%2Frd@db/s?table=my%20cache"
        );
        assert_eq!(
            resolve(&format!(
                "redis+cluster://app@a:7000,b:7001?password_file={file}"
            ))
            .unwrap(),
            "redis+cluster://app:p%40ss%3Aw%2Frd@a:7000,b:7001"
        );
        let error = resolve(&format!("redis://:x@cache?password_file={file}")).unwrap_err();
        assert!(error.contains("given twice"), "{error}");
        assert!(!error.contains(":x@"), "{error}");
        let error = resolve("redis://cache?password_file=/nonexistent/pw").unwrap_err();
        assert!(error.contains("/nonexistent/pw"), "{error}");
    }

    /// Only `CACHEWARM_*` variables may be named: a URL that could name any variable could
    /// send another secret of the environment to the server it names.
    #[test]
    fn password_env_names_only_cachewarm_variables() {
        let error = resolve("redis://cache?password_env=AWS_SECRET_ACCESS_KEY").unwrap_err();
        assert!(error.contains("CACHEWARM_"), "{error}");
        let error = resolve("redis://cache?password_env=CACHEWARM_UNSET_IN_TESTS").unwrap_err();
        assert!(error.contains("not set"), "{error}");
    }

    /// The default variable is named only when it is set and the URL says nothing of a
    /// password; stores without authentication are left alone.
    #[test]
    fn names_the_default_variable() {
        let var = "CACHEWARM_TARGET_PASSWORD";
        let set = |name: &str| (name == var).then(|| "pw".to_owned());
        let named = |text: &str| with_default_variable(text, var, &set);
        assert_eq!(
            named("redis://cache/1"),
            "redis://cache/1?password_env=CACHEWARM_TARGET_PASSWORD"
        );
        assert_eq!(
            named("postgres://app@db/s?table=t"),
            "postgres://app@db/s?table=t&password_env=CACHEWARM_TARGET_PASSWORD"
        );
        for unchanged in [
            "redis://:inline@cache",
            "redis://cache?password_file=/run/pw",
            "memcached://cache:11211",
        ] {
            assert_eq!(named(unchanged), unchanged);
        }
        let unset = |_: &str| None;
        assert_eq!(
            with_default_variable("redis://cache", var, &unset),
            "redis://cache"
        );
        assert!(has_inline_password("redis+cluster://u:pw@a:1,b:2"));
        assert!(!has_inline_password("redis://u@a:1"));
    }
}
