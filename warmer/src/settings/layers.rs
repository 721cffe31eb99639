//! The layering every setting goes through: the flag, else its `CACHEWARM_*` variable, else the
//! file's `[env.NAME]` section, else `[warmer]`. A setting is declared once, as a [`Setting`]
//! (or a [`List`]) in `fields.rs`; [`Layers`] resolves it and names where a bad value came from.

use std::fmt;
use std::path::{Path, PathBuf};

use schemas::config::WarmerConfig;

use super::{DEFAULT_CONFIG_FILE, LoadedConfig, SettingsError};

/// One scalar setting: where the layers below the flag keep it, and how its text is read.
pub(super) struct Setting<T> {
    /// The `CACHEWARM_*` variable, for settings that have one.
    pub var: Option<&'static str>,
    /// The field's name in `[warmer]` and `[env.NAME]`.
    pub field: &'static str,
    /// The field's value in one section, as text: numbers and booleans are read again by
    /// `parse`, so a file's value is checked exactly like a variable's.
    pub file: fn(&WarmerConfig) -> Option<String>,
    /// Reads a variable's or the file's text; the message says what was expected.
    pub parse: fn(&str) -> Result<T, String>,
}

/// A setting that is a list: a repeated flag, a variable holding the items in one line, a TOML
/// array in the file.
pub(super) struct List {
    pub var: &'static str,
    pub field: &'static str,
    pub file: fn(&WarmerConfig) -> Option<Vec<String>>,
    /// Splits the variable's text into items.
    pub split: fn(&str) -> Vec<String>,
}

/// Which layer a value came from, in the words a message uses.
#[derive(Debug)]
pub(super) enum Origin {
    /// `--` and the field's name, dashed: every flag with a layer below it is named so.
    Flag {
        field: &'static str,
    },
    Variable {
        name: &'static str,
        text: String,
    },
    File {
        path: PathBuf,
        /// The dotted name: `env.production.timeout`.
        key: String,
        text: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag { field } => write!(f, "--{}", field.replace('_', "-")),
            Origin::Variable { name, text } => write!(f, "{name}={text}"),
            Origin::File { path, key, text } => {
                write!(f, "`{key} = {text}` in `{}`", path.display())
            }
        }
    }
}

/// The environment and the file's sections that apply, most specific first.
pub(super) struct Layers<'a> {
    var: &'a dyn Fn(&str) -> Option<String>,
    path: Option<&'a Path>,
    env: Option<(&'a str, &'a WarmerConfig)>,
    warmer: &'a WarmerConfig,
}

impl<'a> Layers<'a> {
    pub fn new(
        var: &'a dyn Fn(&str) -> Option<String>,
        loaded: &'a LoadedConfig,
        environment: Option<&'a str>,
    ) -> Layers<'a> {
        let env = environment.and_then(|name| {
            loaded
                .config
                .env
                .get_key_value(name)
                .map(|(name, section)| (name.as_str(), section))
        });
        Layers {
            var,
            path: loaded.path.as_deref(),
            env,
            warmer: &loaded.config.warmer,
        }
    }

    /// The setting's value from the highest layer that has one, `None` when none has.
    pub fn get<T>(
        &self,
        flag: Option<T>,
        setting: &Setting<T>,
    ) -> Result<Option<T>, SettingsError> {
        Ok(self.get_with_origin(flag, setting)?.map(|(value, _)| value))
    }

    /// [`Layers::get`], and where the value came from.
    pub fn get_with_origin<T>(
        &self,
        flag: Option<T>,
        setting: &Setting<T>,
    ) -> Result<Option<(T, Origin)>, SettingsError> {
        if let Some(value) = flag {
            let field = setting.field;
            return Ok(Some((value, Origin::Flag { field })));
        }
        if let Some(name) = setting.var
            && let Some(text) = (self.var)(name)
        {
            return match (setting.parse)(&text) {
                Ok(value) => Ok(Some((value, Origin::Variable { name, text }))),
                Err(message) => Err(SettingsError::Variable {
                    name,
                    value: text,
                    message,
                }),
            };
        }
        let Some((text, section)) = self.file(setting.file) else {
            return Ok(None);
        };
        let key = format!("{section}.{}", setting.field);
        match (setting.parse)(&text) {
            Ok(value) => Ok(Some((
                value,
                Origin::File {
                    path: self.file_path(),
                    key,
                    text,
                },
            ))),
            Err(message) => Err(self.error(&key, &text, message)),
        }
    }

    /// The list from the highest layer that has one: a flag given at least once, else the
    /// variable, else the file; `None` when none has.
    pub fn list(&self, flag: Vec<String>, list: &List) -> Option<Vec<String>> {
        if !flag.is_empty() {
            return Some(flag);
        }
        if let Some(text) = (self.var)(list.var) {
            return Some((list.split)(&text));
        }
        self.file(list.file).map(|(items, _)| items)
    }

    /// The most specific value of a field in the file, with its section's dotted name
    /// (`env.production`, `warmer`).
    fn file<T>(&self, field: impl Fn(&WarmerConfig) -> Option<T>) -> Option<(T, String)> {
        if let Some((name, section)) = self.env
            && let Some(value) = field(section)
        {
            return Some((value, format!("env.{name}")));
        }
        field(self.warmer).map(|value| (value, "warmer".to_owned()))
    }

    /// The file named in messages: the one read, else the one that would have been.
    fn file_path(&self) -> PathBuf {
        self.path
            .map_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE), Path::to_path_buf)
    }

    /// A value in the file that cannot be used.
    pub fn error(&self, key: &str, value: &str, message: impl fmt::Display) -> SettingsError {
        SettingsError::Config {
            path: self.file_path(),
            message: format!("field `{key}` is `{value}`: {message}"),
        }
    }
}
