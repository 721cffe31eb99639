//! The report's measured hit rates against the reads the test itself counted, on real Redis and
//! memcached with live traffic: report.json (against its JSON Schema), report.html in Chromium,
//! the history, the metrics file and the push to a real Pushgateway.

use super::*;

/// The measured hit rates in the report are exactly what the test's own reads came to, in
/// both windows and at both stores; the report's files are all there and report.json
/// matches its schema; the HTML loads in Chromium without errors, its charts rendered; the
/// history has the run and reads back with polars; the metrics parse.
#[test]
fn measured_hit_rates_equal_the_reads_the_test_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let replica = RedisServer::start(&[]);
    let redis = RedisServer::start(&["--maxmemory", "64mb"]);
    let memcached = MemcachedServer::start(64);
    let pushgateway = Pushgateway::start();

    let keys = app_keys(300);
    let manifest_path = manifest_from_workload(
        dir.path(),
        &replica,
        &keys,
        3000,
        "50%",
        &["--capacity", "64KiB", "--simulate"],
    );
    let manifest = read_manifest(&manifest_path);
    assert!(manifest.header.prediction.is_some());

    // The live traffic: the 20 hottest manifest keys (warm only after the run), 5 keys the
    // stores already hold, 10 keys nobody ever writes.
    let mut traffic: Vec<String> = manifest
        .entries
        .iter()
        .filter(|e| !e.key.contains(' '))
        .take(20)
        .map(|e| e.key.clone())
        .collect();
    let mut connection = redis.connection();
    let client = memcached.client();
    for i in 0..5 {
        let key = format!("live:already:{i}");
        let _: () = connection.set_ex(&key, "v", TTL_S).unwrap();
        client
            .set(&key, "v")
            .ttl(memcache::exp::Ttl::secs(TTL_S as u32))
            .send()
            .unwrap();
        traffic.push(key);
    }
    traffic.extend((0..10).map(|i| format!("live:never:{i}")));

    let metrics_file = path("cachewarm.prom");
    let run = WarmerRun::start(&[
        "run",
        "--manifest",
        manifest_path.to_str().unwrap(),
        "--source",
        &replica.url(),
        "--allow-cross-kind",
        "--target",
        &redis.url(),
        "--target",
        &memcached.url(),
        "--runs-dir",
        &path("runs"),
        "--observe",
        &format!("{}s", OBSERVE.as_secs()),
        "--metrics-file",
        &metrics_file,
        "--pushgateway",
        &pushgateway.url(),
        "--env",
        "staging",
    ]);
    let line = run.next_window();
    assert!(line.contains("before warming"), "{line}");
    let before = live_traffic(&redis, &memcached, &traffic);
    let line = run.next_window();
    assert!(line.contains("after warming"), "{line}");
    let after = live_traffic(&redis, &memcached, &traffic);
    let (report, run_dir) = run.finish();

    for (t, target) in report.targets.iter().enumerate() {
        let window_before = target.window_before.as_ref().unwrap();
        let window_after = target.window_after.as_ref().unwrap();
        assert_eq!(
            (window_before.hits, window_before.misses),
            (before[t].hits, before[t].misses),
            "{} before warming",
            target.url
        );
        assert_eq!(
            (window_after.hits, window_after.misses),
            (after[t].hits, after[t].misses),
            "{} after warming",
            target.url
        );
        assert_eq!(window_before.hit_rate, before[t].rate());
        assert_eq!(window_after.hit_rate, after[t].rate());
        // Warming helped: the hot keys now hit.
        assert!(after[t].rate() > before[t].rate(), "{}", target.url);
        assert!(window_after.started_at >= report.timings.started_at);
    }
    // The run took observe + warm + observe, and says so.
    assert!(report.timings.total_ms >= 2 * OBSERVE.as_millis() as u64);
    assert_eq!(
        report.observation.as_ref().unwrap().observe_ms,
        OBSERVE.as_millis() as u64
    );
    assert_eq!(report.prediction, manifest.header.prediction);
    let last = report.rank_curve.last().unwrap();
    assert_eq!(last.rank, manifest.entries.len() as u64);
    assert_eq!(
        last.requests,
        manifest.entries.iter().map(|e| e.requests).sum::<u64>()
    );

    assert_valid("report.v1.schema.json", &run_dir.join("report.json"));
    let markdown = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    for target in &report.targets {
        let rate = target.window_after.as_ref().unwrap().hit_rate.unwrap();
        assert!(
            markdown.contains(&format!("{:.1}%", rate * 100.0)),
            "{markdown}"
        );
    }
    assert!(markdown.contains("## Predicted vs measured"));

    let mut page = Chromium::load(&run_dir.join("report.html"));
    page.assert_no_errors();
    for id in [
        "chart-hit-rate",
        "chart-coverage-by-rank",
        "chart-categories",
        "chart-budget",
    ] {
        page.assert_chart(id);
    }

    // The history: one row per target, read back with polars.
    let history = dir.path().join("runs/runs.parquet");
    let frame = read_history(&history);
    assert_eq!(frame.height(), report.targets.len());
    for (t, target) in report.targets.iter().enumerate() {
        let text = |name: &str| {
            frame
                .column(name)
                .unwrap()
                .str()
                .unwrap()
                .get(t)
                .map(str::to_owned)
        };
        let count = |name: &str| frame.column(name).unwrap().u64().unwrap().get(t);
        let real = |name: &str| frame.column(name).unwrap().f64().unwrap().get(t);
        assert_eq!(text("run_id").as_deref(), Some(report.run_id.as_str()));
        assert_eq!(text("target_url").as_deref(), Some(target.url.as_str()));
        assert_eq!(text("environment").as_deref(), Some("staging"));
        assert_eq!(count("written"), Some(target.counts.written));
        assert_eq!(count("bytes_written"), Some(target.bytes_written));
        assert_eq!(count("hits_after"), Some(after[t].hits));
        assert_eq!(count("misses_before"), Some(before[t].misses));
        assert_eq!(real("hit_rate_after"), after[t].rate());
        assert_eq!(
            real("coverage_after"),
            target.coverage_after.as_ref().map(|c| c.share)
        );
        assert_eq!(
            real("predicted_warmed"),
            report.prediction.as_ref().map(|p| p.early.warmed)
        );
    }

    // The metrics file: the Pushgateway's parser (Prometheus' own) accepts it, and the run's
    // own push arrived.
    let text = std::fs::read_to_string(&metrics_file).unwrap();
    assert!(text.contains("cachewarm_run_last_success_timestamp_seconds "));
    pushgateway.push("textfile-check", &text);
    let scraped = pushgateway.scrape();
    let sample = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scraped.lines().find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let ok = series.starts_with(name)
                && series[name.len()..].starts_with('{')
                && line.contains("job=\"cachewarm\"")
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")));
            ok.then(|| value.parse().unwrap())
        })
    };
    for (t, target) in report.targets.iter().enumerate() {
        assert_eq!(
            sample(
                "cachewarm_run_keys",
                &[("target", &target.url), ("result", "written")]
            ),
            Some(target.counts.written as f64),
            "{scraped}"
        );
        assert_eq!(
            sample(
                "cachewarm_run_hit_ratio",
                &[("target", &target.url), ("window", "after")]
            ),
            after[t].rate(),
        );
    }
    assert_eq!(
        sample("cachewarm_run_success", &[("environment", "staging")]),
        Some(1.0)
    );
}
