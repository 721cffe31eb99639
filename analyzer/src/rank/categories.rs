//! Category rules: a key's category from the first rule that matches it.
//!
//! Rules come from `[[category]]` in the config file, in file order, then from the built-in
//! presets the config names. Each rule matches by prefix, shell glob or regular expression;
//! a regex rule's name may use the match's groups (`rails.${1}`).

use regex::Regex;
use schemas::config::CategoryRule;

use super::DEFAULT_CATEGORY;

/// The built-in presets and their rules, as config rules (so they read like a user's own).
///
/// Django builds keys as `KEY_PREFIX:VERSION:key` (`:1:…` with the default empty prefix):
/// sessions of the cache and cached_db backends, template fragments (`{% cache %}`), whole
/// pages (`cache_page`), then every other key by its first segment (`:1:perm:user:7` →
/// `django.perm`). Rails' cache stores prefix keys with the store's `namespace:` when one is
/// set: fragment caches are `views/…`, ActionDispatch's cache-store sessions `_session_id:…`,
/// and other namespaced keys go by their namespace (`app:v3:user:17` → `rails.app`).
pub fn preset(name: &str) -> Option<Vec<CategoryRule>> {
    let rule = |name: &str, regex: &str| CategoryRule {
        name: name.to_owned(),
        regex: vec![regex.to_owned()],
        ..CategoryRule::default()
    };
    // A session id in a key is a login token.
    let secret = |name: &str, regex: &str| CategoryRule {
        sensitive: Some(true),
        ..rule(name, regex)
    };
    match name {
        "django" => Some(vec![
            secret(
                "django.sessions",
                r"^[^:]*:\d+:django\.contrib\.sessions\.cache",
            ),
            rule("django.template_fragments", r"^[^:]*:\d+:template\.cache\."),
            rule(
                "django.pages",
                r"^[^:]*:\d+:views\.decorators\.cache\.cache_(?:page|header)\.",
            ),
            rule("django.${1}", r"^[^:]*:\d+:([^:.]+)"),
        ]),
        "rails" => Some(vec![
            rule("rails.views", r"^(?:[^:/]+:)?views/"),
            secret("rails.sessions", r"^(?:[^:/]+:)?_session_id:"),
            rule("rails.${1}", r"^([A-Za-z0-9_.-]+):"),
        ]),
        _ => None,
    }
}

/// The names of the presets, for error messages.
pub const PRESETS: &[&str] = &["django", "rails"];

/// A rule that failed to compile, with where it came from.
#[derive(Debug, thiserror::Error)]
#[error("category `{category}`: {message}")]
pub struct RuleError {
    pub category: String,
    pub message: String,
}

#[derive(Debug)]
enum Matcher {
    Prefix(String),
    Glob(glob::Pattern),
    Regex(Regex),
}

/// Compiled rules, ready to classify keys.
#[derive(Debug)]
pub struct Classifier {
    rules: Vec<(usize, Matcher)>,
    /// The rules themselves, indexed by the first field of `rules`.
    pub categories: Vec<CategoryRule>,
}

impl Classifier {
    /// Compiles `rules` in order.
    pub fn new(rules: Vec<CategoryRule>) -> Result<Classifier, RuleError> {
        let mut compiled = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let error = |message: String| RuleError {
                category: rule.name.clone(),
                message,
            };
            if rule.name.is_empty() {
                return Err(error("the name is empty".into()));
            }
            if rule.prefix.is_empty() && rule.glob.is_empty() && rule.regex.is_empty() {
                return Err(error(
                    "the rule matches nothing: give `prefix`, `glob` or `regex`".into(),
                ));
            }
            if let Some(share) = rule.budget_share
                && !(share > 0.0 && share <= 1.0)
            {
                return Err(error(format!(
                    "budget_share = {share} is not a share; use a number above 0 and at most 1"
                )));
            }
            for prefix in &rule.prefix {
                compiled.push((index, Matcher::Prefix(prefix.clone())));
            }
            for pattern in &rule.glob {
                let glob = glob::Pattern::new(pattern)
                    .map_err(|e| error(format!("glob `{pattern}`: {e}")))?;
                compiled.push((index, Matcher::Glob(glob)));
            }
            for pattern in &rule.regex {
                let regex =
                    Regex::new(pattern).map_err(|e| error(format!("regex `{pattern}`: {e}")))?;
                compiled.push((index, Matcher::Regex(regex)));
            }
        }
        Ok(Classifier {
            rules: compiled,
            categories: rules,
        })
    }

    /// The category of `key` and the index of its rule; `default` and `None` when no rule
    /// matches.
    pub fn classify(&self, key: &str) -> (String, Option<usize>) {
        for (index, matcher) in &self.rules {
            let name = &self.categories[*index].name;
            match matcher {
                Matcher::Prefix(prefix) if key.starts_with(prefix.as_str()) => {
                    return (name.clone(), Some(*index));
                }
                Matcher::Glob(glob) if glob.matches(key) => return (name.clone(), Some(*index)),
                Matcher::Regex(regex) => {
                    if let Some(captures) = regex.captures(key) {
                        let mut expanded = String::new();
                        captures.expand(name, &mut expanded);
                        return (expanded, Some(*index));
                    }
                }
                _ => {}
            }
        }
        (DEFAULT_CATEGORY.to_owned(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier(presets: &[&str]) -> Classifier {
        Classifier::new(presets.iter().flat_map(|p| preset(p).unwrap()).collect()).unwrap()
    }

    #[test]
    fn user_rules_by_prefix_glob_and_regex_first_match_wins() {
        let rules = vec![
            CategoryRule {
                name: "hot".into(),
                prefix: vec!["hot:".into()],
                ..CategoryRule::default()
            },
            CategoryRule {
                name: "users".into(),
                glob: vec!["user:*:profile".into()],
                ..CategoryRule::default()
            },
            CategoryRule {
                name: "shard.${s}".into(),
                regex: vec![r"^s(?P<s>\d+)/".into(), "hot:".into()],
                ..CategoryRule::default()
            },
        ];
        let classifier = Classifier::new(rules).unwrap();
        assert_eq!(classifier.classify("hot:user:1:profile").0, "hot");
        assert_eq!(classifier.classify("user:1:profile").0, "users");
        assert_eq!(classifier.classify("s12/x").0, "shard.12");
        assert_eq!(classifier.classify("cold"), ("default".to_owned(), None));
    }

    #[test]
    fn bad_rules_are_refused_with_their_category() {
        let bad_regex = CategoryRule {
            name: "x".into(),
            regex: vec!["(".into()],
            ..CategoryRule::default()
        };
        let error = Classifier::new(vec![bad_regex]).unwrap_err();
        assert_eq!(error.category, "x");
        assert!(error.message.contains("regex `(`"), "{error}");
        let empty = CategoryRule {
            name: "y".into(),
            ..CategoryRule::default()
        };
        assert!(Classifier::new(vec![empty]).is_err());
    }

    #[test]
    fn django_preset_on_django_shaped_keys() {
        let c = classifier(&["django"]);
        let cases = [
            (
                ":1:django.contrib.sessions.cache006f52e9102a8d3be2fe5614f42ba989",
                "django.sessions",
            ),
            (
                "site:3:django.contrib.sessions.cached_dbabc",
                "django.sessions",
            ),
            (
                ":1:template.cache.sidebar.0e882cb38e68a0517b6aa217bfe5501c",
                "django.template_fragments",
            ),
            (
                ":1:views.decorators.cache.cache_page..GET.abc.def.en-us.UTC",
                "django.pages",
            ),
            (":1:perm:user:133", "django.perm"),
            ("shop:2:q:profile:101", "django.q"),
            ("views/products/1", "default"),
        ];
        for (key, category) in cases {
            assert_eq!(c.classify(key).0, category, "{key}");
        }
    }

    #[test]
    fn rails_preset_on_rails_shaped_keys() {
        let c = classifier(&["rails"]);
        let cases = [
            ("views/products/6-20261120", "rails.views"),
            ("app:views/products/6-20261120/summary", "rails.views"),
            ("_session_id:2::8f3c", "rails.sessions"),
            ("app:v3:user:17:profile", "rails.app"),
            ("plainkey", "default"),
        ];
        for (key, category) in cases {
            assert_eq!(c.classify(key).0, category, "{key}");
        }
    }
}
