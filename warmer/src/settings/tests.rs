//! Unit tests of [`resolve`](super::resolve): the layers' order, environment profiles, and
//! errors that name where a bad value came from.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// The environment a test gives [`resolve`].
fn fake_env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: std::collections::BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.get(name).cloned()
}

fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cachewarm.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn flags(config: &Path) -> RunFlags {
    RunFlags {
        config: Some(config.to_path_buf()),
        manifest: Some("m.json".into()),
        source: Some("redis://src:6379".into()),
        ..RunFlags::default()
    }
}

fn settings(resolved: Resolved) -> RunSettings {
    match resolved {
        Resolved::Run { settings, .. } => settings,
        Resolved::Disabled { reason } => panic!("disabled: {reason}"),
    }
}

/// Development and test are off by default, the message says which variable named the
/// profile, and `[env.development] enabled = true` turns warming on.
#[test]
fn development_is_off_unless_turned_on() {
    let (_dir, path) = config_file("");
    let env = fake_env(&[("RAILS_ENV", "development")]);
    match resolve(flags(&path), &env).unwrap() {
        Resolved::Disabled { reason } => {
            assert!(
                reason.contains("development") && reason.contains("RAILS_ENV"),
                "{reason}"
            );
        }
        Resolved::Run { .. } => panic!("warming in development"),
    }
    let (_dir, path) = config_file("[env.development]\nenabled = true\n");
    assert!(matches!(
        resolve(flags(&path), &env).unwrap(),
        Resolved::Run { .. }
    ));
    // CACHEWARM_ENV comes before RAILS_ENV.
    let env = fake_env(&[("CACHEWARM_ENV", "production"), ("RAILS_ENV", "test")]);
    let run = settings(resolve(flags(&path), &env).unwrap());
    assert_eq!(run.environment.as_deref(), Some("production"));
}

/// Defaults < [warmer] < [env.NAME] < variables < flags.
#[test]
fn layers_in_order() {
    let (_dir, path) = config_file(
        "[warmer]\ntimeout = \"1m\"\nrate = 10\nmax_fill = \"30%\"\n\
         [env.production]\ntimeout = \"2m\"\ntargets = [\"redis://a:1\", \"memcached://b:2,c:3\"]\n",
    );
    let env = fake_env(&[("APP_ENV", "production")]);
    let run = settings(resolve(flags(&path), &env).unwrap());
    assert_eq!(run.timeout, Duration::from_secs(120));
    assert_eq!(run.rate, Some(10));
    assert!((run.max_fill - 0.3).abs() < 1e-9);
    assert_eq!(run.targets, ["redis://a:1", "memcached://b:2,c:3"]);
    assert_eq!(run.batch_size, DEFAULT_BATCH_SIZE as usize);

    let env = fake_env(&[("APP_ENV", "production"), ("CACHEWARM_TIMEOUT", "3m")]);
    let run = settings(resolve(flags(&path), &env).unwrap());
    assert_eq!(run.timeout, Duration::from_secs(180));
    let mut with_flag = flags(&path);
    with_flag.timeout = Some(Duration::from_secs(4));
    assert_eq!(
        settings(resolve(with_flag, &env).unwrap()).timeout,
        Duration::from_secs(4)
    );
}

/// A bad value names the file, the field and the value; a bad variable names the
/// variable; an unknown key is refused.
#[test]
fn errors_name_where_the_value_came_from() {
    let (_dir, path) = config_file("[env.production]\ntimeout = \"5 parsecs\"\n");
    let env = fake_env(&[("CACHEWARM_ENV", "production")]);
    let error = resolve(flags(&path), &env).unwrap_err().to_string();
    assert!(error.contains("cachewarm.toml"), "{error}");
    assert!(
        error.contains("env.production.timeout") && error.contains("5 parsecs"),
        "{error}"
    );

    let (_dir, path) = config_file("");
    let env = fake_env(&[("CACHEWARM_RATE", "fast")]);
    let error = resolve(flags(&path), &env).unwrap_err().to_string();
    assert!(
        error.contains("CACHEWARM_RATE") && error.contains("fast"),
        "{error}"
    );

    let (_dir, path) = config_file("[warmer]\nspeed = 3\n");
    let error = resolve(flags(&path), &fake_env(&[]))
        .unwrap_err()
        .to_string();
    assert!(error.contains("speed"), "{error}");
}

/// `memcached_hashing` reaches the multi-server memcached URLs that make no choice of
/// their own, source and targets; a variable wins over the file; a bad name is refused.
#[test]
fn memcached_hashing_fills_in_the_urls() {
    let (_dir, path) = config_file(
        "[warmer]
memcached_hashing = \"dalli\"
         targets = [\"memcached://a:1,b:2\", \"memcached://c:3,d:4?hashing=ketama\",              \"memcached://e:5\"]
",
    );
    let mut from_memcached = flags(&path);
    from_memcached.source = Some("memcached://s:1,t:2".into());
    let run = settings(resolve(from_memcached.clone(), &fake_env(&[])).unwrap());
    assert_eq!(run.source, "memcached://s:1,t:2?hashing=dalli");
    assert_eq!(
        run.targets,
        [
            "memcached://a:1,b:2?hashing=dalli",
            "memcached://c:3,d:4?hashing=ketama",
            "memcached://e:5"
        ]
    );
    let env = fake_env(&[("CACHEWARM_MEMCACHED_HASHING", "rendezvous")]);
    let run = settings(resolve(from_memcached, &env).unwrap());
    assert_eq!(run.targets[0], "memcached://a:1,b:2?hashing=rendezvous");

    let (_dir, path) = config_file(
        "[warmer]
memcached_hashing = \"crc\"
",
    );
    let error = resolve(flags(&path), &fake_env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("warmer.memcached_hashing") && error.contains("crc"),
        "{error}"
    );
}

/// `enabled = false` from any layer turns warming off, and the reason names that layer the way
/// the user wrote it: the flag, `VARIABLE=text`, or the file's key and value.
#[test]
fn turned_off_names_the_layer() {
    let reason = |resolved: Resolved| match resolved {
        Resolved::Disabled { reason } => reason,
        Resolved::Run { .. } => panic!("warming though turned off"),
    };
    let (_dir, path) = config_file("[warmer]\nenabled = false\n");
    let from_file = reason(resolve(flags(&path), &fake_env(&[])).unwrap());
    assert!(
        from_file.contains("`warmer.enabled = false`") && from_file.contains("cachewarm.toml"),
        "{from_file}"
    );
    let env = fake_env(&[("CACHEWARM_ENABLED", "no")]);
    let from_var = reason(resolve(flags(&path), &env).unwrap());
    assert!(from_var.ends_with("CACHEWARM_ENABLED=no"), "{from_var}");
    let mut off = flags(&path);
    off.enabled = Some(false);
    let from_flag = reason(resolve(off, &env).unwrap());
    assert!(from_flag.ends_with("--enabled"), "{from_flag}");
}

/// A number in the file is checked against the same range as the variable and the flag.
#[test]
fn numbers_in_the_file_are_range_checked() {
    let (_dir, path) = config_file("[warmer]\nconcurrency = 0\n");
    let error = resolve(flags(&path), &fake_env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("warmer.concurrency") && error.contains("from 1 to 64"),
        "{error}"
    );
    let (_dir, path) = config_file("[warmer]\nconcurrency = 7\nretries = 0\n");
    let run = settings(resolve(flags(&path), &fake_env(&[])).unwrap());
    assert_eq!((run.concurrency, run.retries), (7, 0));
}

/// The shard: `--shard` over `CACHEWARM_SHARD` over the file; a count alone takes the index
/// from `JOB_COMPLETION_INDEX` (a Kubernetes indexed Job); a count that disagrees with the
/// shard, a count without an index, and an index out of range are refused, naming the source.
#[test]
fn the_shard_comes_from_the_flag_the_variables_or_the_job_index() {
    let shard = |index, count| Some(schemas::Shard { index, count });
    let (_dir, path) = config_file("[warmer]\nshards = 4\n");
    let env = fake_env(&[("JOB_COMPLETION_INDEX", "3")]);
    assert_eq!(
        settings(resolve(flags(&path), &env).unwrap()).shard,
        shard(3, 4)
    );
    let env = fake_env(&[("JOB_COMPLETION_INDEX", "3"), ("CACHEWARM_SHARD", "1/4")]);
    assert_eq!(
        settings(resolve(flags(&path), &env).unwrap()).shard,
        shard(1, 4)
    );
    let mut given = flags(&path);
    given.shard = shard(2, 4);
    assert_eq!(settings(resolve(given, &env).unwrap()).shard, shard(2, 4));

    let env = fake_env(&[("CACHEWARM_SHARD", "1/8")]);
    let message = resolve(flags(&path), &env).unwrap_err().to_string();
    assert!(
        message.contains("CACHEWARM_SHARD=1/8") && message.contains("shards = 4"),
        "{message}"
    );
    let message = resolve(flags(&path), &fake_env(&[]))
        .unwrap_err()
        .to_string();
    assert!(message.contains("JOB_COMPLETION_INDEX"), "{message}");
    let env = fake_env(&[("JOB_COMPLETION_INDEX", "4")]);
    let message = resolve(flags(&path), &env).unwrap_err().to_string();
    assert!(
        message.contains("JOB_COMPLETION_INDEX") && message.contains("`4`"),
        "{message}"
    );
    let (_dir, path) = config_file("");
    assert_eq!(
        settings(resolve(flags(&path), &fake_env(&[])).unwrap()).shard,
        None
    );
}
