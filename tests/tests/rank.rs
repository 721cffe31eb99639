//! `analyzer rank` and `analyzer simulate` through the binary: budgets read from live stores,
//! category rules and presets on real keys, exclusions, determinism, and the backtest stored in
//! the manifest header.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use cachewarm_tests::{MemcachedServer, RedisServer, read_manifest, run_bin};
use schemas::Manifest;

fn text(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

fn real(name: &str) -> String {
    format!("{}/../sample_data/real/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Ingests `logs` into `DIR/dataset`.
fn ingest(dir: &Path, logs: &[String]) -> PathBuf {
    let dataset = dir.join("dataset");
    let mut args = vec!["ingest".to_owned(), "--out".to_owned(), text(&dataset)];
    args.extend(logs.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_bin("analyzer", &args, 0);
    dataset
}

/// Runs `analyzer rank --data DATASET --out DIR/NAME ARGS…` and reads the manifest.
fn rank(dir: &Path, dataset: &Path, name: &str, args: &[&str]) -> Manifest {
    let out = dir.join(name);
    let mut all = vec!["rank", "--data"];
    let (dataset, out_text) = (text(dataset), text(&out));
    all.extend([dataset.as_str(), "--out", out_text.as_str()]);
    all.extend(args);
    run_bin("analyzer", &all, 0);
    read_manifest(&out)
}

/// The real Django- and Rails-shaped logs ingested, and ranked whole with both presets.
fn django_and_rails_ranked(dir: &Path) -> (PathBuf, Manifest) {
    let logs = [
        real("real-servers/memcached-watch.log"),
        real("rails/cache.log"),
    ];
    let dataset = ingest(dir, &logs);
    let args = [
        "--budget",
        "1GiB",
        "--min-requests",
        "1",
        "--preset",
        "django,rails",
    ];
    let manifest = rank(dir, &dataset, "all.json", &args);
    (dataset, manifest)
}

/// The Django- and Rails-shaped keys the real servers' logs hold, classified by the presets:
/// every entry lands in the category its shape says.
#[test]
fn presets_classify_real_django_and_rails_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (_, manifest) = django_and_rails_ranked(dir.path());
    let expected = |key: &str| -> String {
        if key.starts_with(":1:django.contrib.sessions.cache") {
            "django.sessions".into()
        } else if key.starts_with(":1:template.cache.") {
            "django.template_fragments".into()
        } else if let Some(rest) = key.strip_prefix(":1:") {
            format!("django.{}", rest.split(':').next().unwrap())
        } else if key.starts_with("views/") {
            "rails.views".into()
        } else if let Some((namespace, _)) = key.split_once(':') {
            format!("rails.{namespace}")
        } else {
            "default".into()
        }
    };
    let mut seen = std::collections::BTreeSet::new();
    for entry in &manifest.entries {
        assert_eq!(entry.category, expected(&entry.key), "{}", entry.key);
        seen.insert(entry.category.clone());
    }
    let categories: Vec<&str> = seen.iter().map(String::as_str).collect();
    assert_eq!(
        categories,
        [
            "django.perm",
            "django.q",
            "django.sessions",
            "django.stats",
            "django.template_fragments",
            "rails.app",
            "rails.views"
        ]
    );
    for (name, totals) in &manifest.header.categories {
        let keys = manifest
            .entries
            .iter()
            .filter(|e| &e.category == name)
            .count();
        assert_eq!(totals.keys, keys as u64, "{name}");
    }
}

/// Rules from a config file: a category's budget share caps its bytes, its TTL goes into its
/// entries, a disabled category is left out and counted, and `--category` / `--key` select.
#[test]
fn config_rules_shape_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = ingest(dir.path(), &[real("real-servers/memcached-watch.log")]);
    let everything = rank(
        dir.path(),
        &dataset,
        "everything.json",
        &["--budget", "1GiB", "--min-requests", "1"],
    );
    let stats_keys = everything
        .entries
        .iter()
        .filter(|e| e.key.starts_with(":1:stats:"))
        .count() as u64;
    assert!(stats_keys > 0);
    let all_bytes = everything.header.totals.bytes_selected;

    let config = dir.path().join("cachewarm.toml");
    std::fs::write(
        &config,
        r#"
[rank]
min_requests = 1
presets = ["django"]

[[category]]
name = "sessions"
prefix = [":1:django.contrib.sessions.cache"]
budget_share = 0.1
ttl = "30m"

[[category]]
name = "stats"
glob = [":1:stats:*"]
enabled = false
"#,
    )
    .unwrap();
    let budget = (all_bytes / 2).to_string();
    let config_text = text(&config);
    let manifest = rank(
        dir.path(),
        &dataset,
        "configured.json",
        &["--budget", &budget, "--config", &config_text],
    );
    let sessions = &manifest.header.categories["sessions"];
    let allowed = (0.1 * (all_bytes / 2) as f64).floor() as u64;
    assert_eq!(sessions.budget_bytes, Some(allowed));
    assert!(sessions.bytes <= allowed && sessions.keys > 0);
    assert_eq!(sessions.ttl_s, Some(1800));
    for entry in &manifest.entries {
        assert!(!entry.key.starts_with(":1:stats:"), "{}", entry.key);
        if entry.category == "sessions" {
            assert_eq!(entry.ttl_s, Some(1800));
        }
    }
    assert_eq!(manifest.header.exclusions["category_disabled"], stats_keys);
    assert!(manifest.header.totals.keys_over_budget > 0);

    // --category and --key select; what they leave is counted as not selected.
    let only = rank(
        dir.path(),
        &dataset,
        "only.json",
        &[
            "--budget",
            "1GiB",
            "--config",
            &config_text,
            "--category",
            "django.perm",
        ],
    );
    assert!(!only.entries.is_empty());
    assert!(only.entries.iter().all(|e| e.category == "django.perm"));
    let by_key = rank(
        dir.path(),
        &dataset,
        "by-key.json",
        &["--budget", "1GiB", "--min-requests", "1", "--key", ":1:q:*"],
    );
    assert!(!by_key.entries.is_empty());
    assert!(by_key.entries.iter().all(|e| e.key.starts_with(":1:q:")));
    assert_eq!(
        by_key.header.exclusions["not_selected"] + by_key.entries.len() as u64,
        everything.entries.len() as u64
    );

    // A bad config is refused with the file and the field named, exit 2.
    std::fs::write(&config, "[rank]\nhalf_life = \"soon\"\n").unwrap();
    let out = dir.path().join("bad.json");
    let refused = || {
        let args = ["rank", "--data", &text(&dataset), "--out", &text(&out)];
        let more = ["--budget", "1MiB", "--config", &config_text];
        let output = run_bin("analyzer", &[&args[..], &more[..]].concat(), 2);
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = refused();
    assert!(
        stderr.contains("cachewarm.toml") && stderr.contains("rank.half_life"),
        "{stderr}"
    );
    std::fs::write(&config, "[rank]\nhalf_lfe = \"6h\"\n").unwrap();
    let stderr = refused();
    assert!(stderr.contains("half_lfe"), "{stderr}");
    assert!(!out.exists());
}

/// `--budget N% --capacity-from URL` reads the live store's capacity: Redis `maxmemory`,
/// memcached `limit_maxbytes` (`-m`). A budget above 50% of it is capped; the store kind's key
/// rules apply.
#[test]
fn budget_from_live_stores() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = ingest(dir.path(), &[real("real-servers/redis-monitor.log")]);

    let redis = RedisServer::start(&["--maxmemory", "3mb"]);
    let maxmemory: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query(&mut redis.connection())
        .unwrap();
    let maxmemory: u64 = maxmemory[1].parse().unwrap();
    let manifest = rank(
        dir.path(),
        &dataset,
        "redis.json",
        &["--budget", "2%", "--capacity-from", &redis.url()],
    );
    let budget = &manifest.header.budget;
    assert_eq!(budget.capacity_bytes, Some(maxmemory));
    assert_eq!(budget.bytes, (0.02 * maxmemory as f64).floor() as u64);
    assert!(manifest.header.totals.bytes_selected <= budget.bytes);
    assert_eq!(
        manifest.header.scoring.as_ref().unwrap().store.as_deref(),
        Some("redis")
    );
    let capped = rank(
        dir.path(),
        &dataset,
        "capped.json",
        &["--budget", "90%", "--capacity-from", &redis.url()],
    );
    assert_eq!(capped.header.budget.bytes, maxmemory / 2);
    assert!(capped.header.budget.source.contains("capped at 50%"));

    let memcached = MemcachedServer::start(8);
    let limit = memcached.stat("limit_maxbytes");
    let manifest = rank(
        dir.path(),
        &dataset,
        "memcached.json",
        &["--budget", "1%", "--capacity-from", &memcached.url()],
    );
    assert_eq!(manifest.header.budget.capacity_bytes, Some(limit));
    assert_eq!(
        manifest.header.budget.bytes,
        (0.01 * limit as f64).floor() as u64
    );

    // No maxmemory: no capacity to take a share of.
    let unlimited = RedisServer::start(&[]);
    let out = dir.path().join("none.json");
    let output = run_bin(
        "analyzer",
        &[
            "rank",
            "--data",
            &text(&dataset),
            "--out",
            &text(&out),
            "--budget",
            "10%",
            "--capacity-from",
            &unlimited.url(),
        ],
        2,
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("maxmemory is 0"));
}

/// The same dataset and config give a byte-identical manifest (with `SOURCE_DATE_EPOCH`
/// fixing `generated_at`), and the backtest that `rank --simulate` stores in the header is the
/// one `analyzer simulate` prints.
#[test]
fn deterministic_manifest_with_its_backtest() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = ingest(
        dir.path(),
        &[
            real("real-servers/memcached-watch.log"),
            real("real-servers/redis-monitor.log"),
        ],
    );
    let args = |out: &Path| -> Vec<String> {
        [
            "rank",
            "--data",
            &text(&dataset),
            "--out",
            &text(out),
            "--budget",
            "20%",
            "--capacity",
            "400KiB",
            "--preset",
            "django,rails",
            "--simulate",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |out: &Path| {
        let args = args(out);
        let output = std::process::Command::new(cachewarm_tests::bin("analyzer"))
            .args(&args)
            .env("SOURCE_DATE_EPOCH", "1763596800")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        std::fs::read(out).unwrap()
    };
    let a = run(&dir.path().join("a.json"));
    let b = run(&dir.path().join("b.json"));
    assert!(a == b, "two runs gave different manifests");
    let manifest: Manifest = serde_json::from_slice(&a).unwrap();
    assert_eq!(
        manifest.header.generated_at.timestamp(),
        1_763_596_800,
        "SOURCE_DATE_EPOCH"
    );
    let stored = manifest.header.prediction.unwrap();

    let output = run_bin(
        "analyzer",
        &[
            "simulate",
            "--data",
            &text(&dataset),
            "--budget",
            "20%",
            "--capacity",
            "400KiB",
            "--preset",
            "django,rails",
            "--json",
        ],
        0,
    );
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let printed: schemas::manifest::Prediction =
        serde_json::from_value(printed["prediction"].clone()).unwrap();
    assert_eq!(printed, stored);
    assert_eq!(stored.capacity_bytes, 400 * 1024);
    assert!(stored.test_requests > 0 && stored.first_requests > 0);
    // Warmed never does worse than cold over the early window, and the oracle is the bound.
    assert!(stored.early.warmed >= stored.early.cold);
    assert!(stored.early.oracle >= stored.early.warmed);
}

/// The default half-life is backtested (issue 18): the manifest header records the folds and
/// every candidate with its score, the chosen one has the most hits, and ranking again with
/// that half-life given explicitly skips the backtest and gives the same entries. `simulate`
/// shows the train manifest's candidates, and `aggregate-sql`, one query, refuses `auto`.
#[test]
fn the_default_half_life_is_chosen_by_a_recorded_backtest() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = ingest(
        dir.path(),
        &[
            real("real-servers/memcached-watch.log"),
            real("real-servers/redis-monitor.log"),
        ],
    );
    let auto = rank(dir.path(), &dataset, "auto", &["--budget", "64KiB"]);
    let scoring = auto.header.scoring.clone().unwrap();
    let backtest = scoring.half_life_backtest.clone().expect("auto's backtest");
    assert_eq!(
        backtest.folds.len() as i64,
        analyzer::rank::auto::FOLDS,
        "{backtest:?}"
    );
    for pair in backtest.folds.windows(2) {
        assert_eq!(pair[0].judged_until, pair[1].split_at);
    }
    let last = backtest.folds.last().unwrap();
    assert!(auto.header.window.start < last.split_at && last.split_at < last.judged_until);
    assert_eq!(last.judged_until, auto.header.window.end);
    assert_eq!(
        backtest.candidates.last().unwrap().half_life_s,
        None,
        "`off` is always a candidate"
    );
    let chosen = backtest
        .candidates
        .iter()
        .find(|c| c.half_life_s == scoring.half_life_s)
        .expect("the chosen half-life is a candidate");
    for candidate in &backtest.candidates {
        assert!(candidate.hits <= chosen.hits, "{backtest:?}");
        assert!(candidate.hits <= backtest.oracle_hits, "{backtest:?}");
    }

    let given = match scoring.half_life_s {
        Some(seconds) => format!("{}us", (seconds * 1e6).round() as u64),
        None => "off".to_owned(),
    };
    let explicit = rank(
        dir.path(),
        &dataset,
        "explicit",
        &["--budget", "64KiB", "--half-life", &given],
    );
    let explicit_scoring = explicit.header.scoring.clone().unwrap();
    assert_eq!(explicit_scoring.half_life_backtest, None);
    assert_eq!(explicit_scoring.half_life_s, scoring.half_life_s);
    assert_eq!(explicit.entries, auto.entries);

    let data = text(&dataset);
    let output = run_bin(
        "analyzer",
        &[
            "simulate",
            "--data",
            &data,
            "--budget",
            "64KiB",
            "--capacity",
            "256KiB",
        ],
        0,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("half-life: auto chose") && stdout.contains("<- chosen"),
        "{stdout}"
    );
    let output = run_bin(
        "analyzer",
        &[
            "aggregate-sql",
            "--dialect",
            "duckdb",
            "--half-life",
            "auto",
        ],
        2,
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--half-life auto"),
        "{output:?}"
    );
}

/// `analyzer stats --by category` groups by the same rules `rank` classifies with: one row per
/// category of the real Django and Rails keys, whose requests add up to the overall row.
#[test]
fn stats_by_category_uses_the_rank_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, manifest) = django_and_rails_ranked(dir.path());
    let output = run_bin(
        "analyzer",
        &[
            "stats",
            "--data",
            &text(&dataset),
            "--by",
            "category",
            "--preset",
            "django,rails",
            "--json",
        ],
        0,
    );
    let stats: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(stats["by"], "category");
    let groups: Vec<&str> = stats["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    for category in manifest.header.categories.keys() {
        assert!(
            groups.contains(&category.as_str()),
            "{category} not in {groups:?}"
        );
    }
    let sum: u64 = stats["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, stats["overall"]["requests"].as_u64().unwrap());
}
