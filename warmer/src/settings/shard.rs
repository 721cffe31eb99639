//! Which shard of the manifest a warmer takes: `--shard i/n` (or `CACHEWARM_SHARD`, or `shard`
//! in the file), else a number of shards (`--shards n`, `CACHEWARM_SHARDS`, `shards`) with the
//! index from `JOB_COMPLETION_INDEX`, which Kubernetes sets in each pod of an indexed Job.
//!
//! Both given and disagreeing on the count is refused: it means a deploy whose warmers split
//! the manifest differently, so some keys would be warmed twice and others never.

use schemas::Shard;

use super::layers::Layers;
use super::{LoadedConfig, SettingsError, fields};
use crate::env_vars;

/// The shard from the layers; `None` for the whole manifest.
pub(super) fn resolve(
    layers: &Layers<'_>,
    var: &dyn Fn(&str) -> Option<String>,
    flag_shard: Option<Shard>,
    flag_shards: Option<u32>,
) -> Result<Option<Shard>, SettingsError> {
    let shard = layers.get_with_origin(flag_shard, &fields::SHARD)?;
    let count = layers.get_with_origin(flag_shards, &fields::SHARDS)?;
    match (shard, count) {
        (Some((shard, from)), Some((count, count_from))) if shard.count != count => {
            Err(SettingsError::Missing(format!(
                "the shard {shard} (from {from}) is not one of {count} shards (from {count_from})\n\
                 hint: give the same number of shards to every warmer of the deploy"
            )))
        }
        (Some((shard, _)), _) => Ok(Some(shard)),
        (None, Some((count, count_from))) => {
            let name = env_vars::JOB_COMPLETION_INDEX;
            let Some(text) = var(name) else {
                return Err(SettingsError::Missing(format!(
                    "{count} shards are asked for (by {count_from}) but not which one this is\n\
                     hint: give --shard INDEX/{count}, or run it in a Kubernetes indexed Job \
                     (completionMode: Indexed), which sets {name}"
                )));
            };
            let index = text
                .trim()
                .parse::<u32>()
                .map_err(|_| SettingsError::Variable {
                    name,
                    value: text.clone(),
                    message: "not a shard index (a whole number from 0)".to_owned(),
                })?;
            Shard::new(index, count)
                .map(Some)
                .map_err(|message| SettingsError::Variable {
                    name,
                    value: text,
                    message: format!("{message} (given by {count_from})"),
                })
        }
        (None, None) => Ok(None),
    }
}

/// The shard from flags and the environment alone, for the commands that read no config file
/// (`warmer undo`, `warmer status`).
pub fn from_flags_and_env(
    flag_shard: Option<Shard>,
    flag_shards: Option<u32>,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Shard>, SettingsError> {
    let none = LoadedConfig::default();
    resolve(&Layers::new(var, &none, None), var, flag_shard, flag_shards)
}
