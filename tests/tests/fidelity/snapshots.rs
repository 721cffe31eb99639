//! Snapshots written by another tool (pyarrow, with its defaults and other codecs) warm
//! completely, and one that cannot be read says why everywhere.

use super::*;

/// Writes `n` rows (`key`, `value`, `expires_at`) in a shuffled order with pyarrow into
/// `DIR/snap-CODEC.parquet` for each codec given (`default`: pyarrow's own defaults, snappy in
/// one row group), and prints the keys. Times are microseconds with UTC, or nanoseconds without
/// a zone for `gzip` (what pandas gives), to read both.
const PYARROW_WRITER: &str = r#"
import random, sys, datetime
import pyarrow as pa, pyarrow.parquet as pq
directory, n, codecs = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
keys = [f"pa:{i}" for i in range(n)]
rows = list(range(n))
random.Random(7).shuffle(rows)
now = datetime.datetime.now(datetime.timezone.utc)
expires = [now + datetime.timedelta(hours=1, seconds=i) for i in rows]
for codec in codecs:
    unit = pa.timestamp("ns") if codec == "gzip" else pa.timestamp("us", tz="UTC")
    times = [t.replace(tzinfo=None) for t in expires] if codec == "gzip" else expires
    table = pa.table({
        "key": pa.array([keys[i] for i in rows]),
        "value": pa.array([f"value {i}".encode() for i in rows], pa.binary()),
        "expires_at": pa.array(times, unit),
    })
    path = f"{directory}/snap-{codec}.parquet"
    if codec == "default":
        pq.write_table(table, path)
    else:
        pq.write_table(table, path, compression=codec)
print("\n".join(keys))
"#;

/// Snapshots pyarrow writes with its defaults (snappy, one large row group) and with gzip, lz4
/// and zstd, rows in any order, warm every key, with its value and a TTL of about an hour.
#[test]
fn pyarrow_snapshots_warm_completely() {
    let dir = tempfile::tempdir().unwrap();
    let directory = dir.path().to_str().unwrap();
    let out = python(
        PYARROW_WRITER,
        &[directory, "3000", "default,gzip,lz4,zstd"],
        "",
    );
    let keys: Vec<String> = out.lines().map(str::to_owned).collect();
    let manifest = manifest_for(dir.path(), &keys);
    for codec in ["default", "gzip", "lz4", "zstd"] {
        let target = MemcachedServer::start(64);
        let path = dir.path().join(format!("snap-{codec}.parquet"));
        let (report, _) = warm(
            dir.path(),
            &manifest,
            path.to_str().unwrap(),
            &target.url(),
            &[],
        );
        assert_eq!(report.source_error, None, "{codec}");
        assert_all_written_and_verified(&report, keys.len());
        let client = target.client();
        for key in [&keys[0], &keys[1234], &keys[2999]] {
            let n = key.strip_prefix("pa:").unwrap();
            let result = client
                .run(memcache::exp::Get::new(key).meta(memcache::exp::Meta::NONE.ttl()))
                .unwrap();
            assert_eq!(
                result.value.as_deref(),
                Some(format!("value {n}").as_bytes()),
                "{codec} {key}"
            );
            let ttl = result.item.ttl.unwrap();
            assert!(
                (3500..=3700 + 3000).contains(&ttl),
                "{codec} {key}: TTL {ttl}"
            );
        }
    }
}

/// A snapshot the warmer cannot read (brotli, which no Parquet writer uses by default): the
/// run still exits 0, and the report (`source_error` and the target's `error`) and the summary
/// carry the cause, not only "failed to read snapshot".
#[test]
fn an_unreadable_snapshot_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let directory = dir.path().to_str().unwrap();
    let out = python(PYARROW_WRITER, &[directory, "50", "brotli"], "");
    let keys: Vec<String> = out.lines().map(str::to_owned).collect();
    let manifest = manifest_for(dir.path(), &keys);
    let target = MemcachedServer::start(64);
    let path = dir.path().join("snap-brotli.parquet");
    let runs = dir.path().join("runs");
    let args = [
        "run",
        "--manifest",
        manifest.to_str().unwrap(),
        "--source",
        path.to_str().unwrap(),
        "--target",
        &target.url(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ];
    let output = warmer(dir.path(), &args, 0);
    let (report, _) = report_of(&output.stdout);
    let error = report.source_error.as_deref().unwrap();
    assert!(
        error.contains("failed to read snapshot") && error.contains("brotli"),
        "{error}"
    );
    let target_error = report.targets[0].error.as_deref().unwrap();
    assert!(target_error.contains("brotli"), "{target_error}");
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("brotli"), "{summary}");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("brotli"), "{log}");
}
