//! The run history across runs: the trend page, a baseline given on the command line, and a
//! failed run that keeps the last success in the history, the metrics file and the push.

use super::*;

/// A second run appends to the history, the trend page renders over both runs and loads in
/// Chromium, and a baseline given on the command line stands in for the window before.
#[test]
fn history_trend_and_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let replica = RedisServer::start(&[]);
    let redis = RedisServer::start(&["--maxmemory", "16mb"]);
    let manifest = manifest_from_workload(dir.path(), &replica, &app_keys(100), 800, "1MiB", &[]);
    let manifest = manifest.to_str().unwrap().to_owned();
    let mut reports = Vec::new();
    for _ in 0..2 {
        let run = WarmerRun::start(&[
            "run",
            "--manifest",
            &manifest,
            "--source",
            &replica.url(),
            "--target",
            &redis.url(),
            "--runs-dir",
            &path("runs"),
            "--observe",
            "1s",
            "--baseline-hit-rate",
            "40%",
        ]);
        // Only the window after warming: the baseline replaces the one before.
        assert!(run.next_window().contains("after warming"));
        reports.push(run.finish().0);
    }
    for report in &reports {
        assert_eq!(
            report.observation.as_ref().unwrap().baseline_hit_rate,
            Some(0.4)
        );
        assert!(report.targets[0].window_before.is_none());
        // Nobody read during the window.
        assert_eq!(
            report.targets[0].window_after.as_ref().unwrap().hit_rate,
            None
        );
    }
    assert_eq!(reports[1].targets[0].counts.written, 0);

    let history = dir.path().join("runs/runs.parquet");
    let frame = read_history(&history);
    assert_eq!(frame.height(), 2);
    let runs = frame.column("run_id").unwrap().str().unwrap();
    let written = frame.column("written").unwrap().u64().unwrap();
    let baseline = frame.column("baseline_hit_rate").unwrap().f64().unwrap();
    for (i, report) in reports.iter().enumerate() {
        assert_eq!(runs.get(i), Some(report.run_id.as_str()));
        assert_eq!(written.get(i), Some(report.targets[0].counts.written));
        assert_eq!(baseline.get(i), Some(0.4));
    }

    let out = Command::new(bin("warmer"))
        .args(["report", "--history", history.to_str().unwrap(), "--out"])
        .arg(dir.path().join("trend"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut page = Chromium::load(&dir.path().join("trend/trend.html"));
    page.assert_no_errors();
    for id in [
        "chart-trend-hit-rate",
        "chart-trend-coverage",
        "chart-trend-budget",
    ] {
        page.assert_chart(id);
    }
    let rows = page.evaluate("document.querySelectorAll('table tr').length");
    assert_eq!(rows.as_u64(), Some(3));
}

/// Monitoring must see a warmer that stopped working: after a run whose target is down, the
/// textfile and the Pushgateway say the run failed and still hold the last success.
#[test]
fn a_failed_run_keeps_the_last_success() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let replica = RedisServer::start(&[]);
    let redis = RedisServer::start(&["--maxmemory", "16mb"]);
    let pushgateway = Pushgateway::start();
    let manifest = manifest_from_workload(dir.path(), &replica, &app_keys(50), 400, "1MiB", &[]);
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!(
            "redis://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        )
    };
    let metrics = path("cachewarm.prom");
    let sample = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.rsplit(' ').next()?.parse().ok())
    };
    let mut last_success = Vec::new();
    for target in [redis.url(), dead.clone()] {
        cachewarm_tests::run_bin(
            "warmer",
            &[
                "run",
                "--manifest",
                manifest.to_str().unwrap(),
                "--source",
                &replica.url(),
                "--target",
                &target,
                "--runs-dir",
                &path("runs"),
                "--env",
                "prod",
                "--metrics-file",
                &metrics,
                "--pushgateway",
                &pushgateway.url(),
            ],
            0,
        );
        let text = std::fs::read_to_string(&metrics).unwrap();
        last_success.push(sample(
            &text,
            "cachewarm_run_last_success_timestamp_seconds ",
        ));
        let success = sample(&text, "cachewarm_run_success ");
        assert_eq!(
            success,
            Some(if target == dead { 0.0 } else { 1.0 }),
            "{text}"
        );
    }
    assert!(last_success[0].is_some());
    assert_eq!(last_success[1], last_success[0]);

    let scraped = pushgateway.scrape();
    let pushed = |name: &str| -> Option<f64> {
        scraped.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            rest.contains("job=\"cachewarm\"")
                .then(|| rest.rsplit(' ').next()?.parse().ok())
                .flatten()
        })
    };
    assert_eq!(pushed("cachewarm_run_success"), Some(0.0), "{scraped}");
    let pushed_success = pushed("cachewarm_run_last_success_timestamp_seconds").unwrap();
    assert!(
        (pushed_success - last_success[0].unwrap()).abs() < 1e-3,
        "{scraped}"
    );
}
