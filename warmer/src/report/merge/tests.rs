//! Unit tests of the merge: the sums, the figures taken from one shard, and every refusal.

use chrono::{Duration, Utc};
use schemas::CHECKPOINT_SCHEMA_ID;

use super::*;

/// Shard `index` of `count`: the sample report with its own figures, written into a run
/// directory with a checkpoint no newer than the report.
fn shard_dir(root: &Path, index: u32, count: u32, edit: impl Fn(&mut Report)) -> PathBuf {
    let dir = root.join(format!("shard{index}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut report = crate::report::tests::sample();
    report.shard = Some(Shard::new(index, count).unwrap());
    report.run_id = format!("run-{index}");
    let offset = Duration::seconds(i64::from(index));
    report.timings.started_at += offset;
    report.timings.finished_at += offset;
    let target = &mut report.targets[0];
    target.counts.written = u64::from(index) + 10;
    target.bytes_written = 1000 * (u64::from(index) + 1);
    target.coverage_before = Some(Coverage::new(u64::from(index), 10, 1));
    target.hit_counters_before = Some(schemas::report::HitCounters {
        hits: u64::from(index),
        misses: 0,
    });
    target.hit_counters_after = Some(schemas::report::HitCounters {
        hits: 100 + u64::from(index),
        misses: 0,
    });
    edit(&mut report);
    let checkpoint = Checkpoint {
        schema: CHECKPOINT_SCHEMA_ID.to_owned(),
        run_id: report.run_id.clone(),
        manifest_sha256: report.manifest.sha256.clone(),
        targets: vec![report.targets[0].url.clone()],
        next_entry: 0,
        counts: Vec::new(),
        finished: true,
        updated_at: report.timings.finished_at,
        manifest_path: String::new(),
        manifest_entries: 0,
        environment: None,
        progress: Vec::new(),
        resumed: 0,
        pid: None,
        dry_run: false,
        shard: report.shard,
    };
    crate::rundir::write_json_atomically(&dir.join(REPORT_FILE), &report).unwrap();
    crate::rundir::write_json_atomically(&dir.join("checkpoint.json"), &checkpoint).unwrap();
    dir
}

/// Counts and coverage parts are sums; shares are recomputed; the store's read counters
/// come from the first shard to start (before) and the last to finish (after), since each
/// shard read the same store's counters.
#[test]
fn sums_what_adds_up_and_takes_the_rest_from_the_right_shard() {
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = [2, 0, 1]
        .into_iter()
        .map(|i| shard_dir(root.path(), i, 3, |_| {}))
        .collect();
    let merged = merge_run_dirs(&dirs).unwrap();
    let target = &merged.targets[0];
    assert_eq!(target.counts.written, 10 + 11 + 12);
    assert_eq!(target.bytes_written, 1000 + 2000 + 3000);
    assert_eq!(target.budget_bytes, Some(3 * 150));
    assert_eq!(merged.manifest.entries, 3 * 3);
    let before = target.coverage_before.as_ref().unwrap();
    assert_eq!((before.requests_present, before.requests_total), (3, 30));
    assert!((before.share - 0.1).abs() < 1e-9);
    assert_eq!(target.hit_counters_before.as_ref().unwrap().hits, 0);
    assert_eq!(target.hit_counters_after.as_ref().unwrap().hits, 102);
    assert_eq!(target.failure_reasons["OOM"], 3);
    assert_eq!(merged.categories_written(), 3);
    let shards: Vec<u32> = merged.merged_from.iter().map(|r| r.shard.index).collect();
    assert_eq!(shards, [0, 1, 2]);
    assert_eq!(merged.shard, None);
    assert_eq!(merged.timings.total_ms, 9000 + 2000);
}

trait Written {
    fn categories_written(&self) -> u64;
}
impl Written for Report {
    fn categories_written(&self) -> u64 {
        self.targets[0].categories["default"].counts.written
    }
}

/// Run directories that are not one deploy's shards are refused, naming the directory
/// and the field.
#[test]
fn refuses_what_is_not_one_deploys_shards() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let message = |dirs: &[PathBuf]| merge_run_dirs(dirs).unwrap_err().to_string();
    let zero = shard_dir(r, 0, 2, |_| {});
    let one = shard_dir(r, 1, 2, |_| {});
    assert!(merge_run_dirs(&[zero.clone(), one.clone()]).is_ok());

    let text = message(std::slice::from_ref(&zero));
    assert!(text.contains("shard 1/2 of 2 is missing"), "{text}");

    let text = message(&[zero.clone(), one.clone(), zero.clone()]);
    assert!(
        text.contains("field `shard` is 0/2") && text.contains("twice"),
        "{text}"
    );

    let other = shard_dir(&r.join("other"), 1, 2, |r| {
        r.manifest.sha256 = "cd".repeat(32)
    });
    let text = message(&[zero.clone(), other.clone()]);
    assert!(
        text.contains("other/shard1") && text.contains("manifest.sha256"),
        "{text}"
    );

    let three = shard_dir(&r.join("three"), 1, 3, |_| {});
    let text = message(&[zero.clone(), three]);
    assert!(
        text.contains("three/shard1") && text.contains("shard.count"),
        "{text}"
    );

    let whole = shard_dir(&r.join("whole"), 1, 2, |r| r.shard = None);
    let text = message(&[zero.clone(), whole]);
    assert!(
        text.contains("whole/shard1") && text.contains("`shard` is absent"),
        "{text}"
    );

    let urls = shard_dir(&r.join("urls"), 1, 2, |r| {
        r.targets[0].url = "redis://x".into()
    });
    let text = message(&[zero.clone(), urls]);
    assert!(text.contains("field `targets`"), "{text}");

    // Killed after its report: the checkpoint moved on, the report is stale.
    let stale = shard_dir(&r.join("stale"), 1, 2, |_| {});
    let mut checkpoint = read_checkpoint(&stale).unwrap();
    checkpoint.updated_at = Utc::now();
    crate::rundir::write_json_atomically(&stale.join("checkpoint.json"), &checkpoint).unwrap();
    let text = message(&[zero, stale]);
    assert!(
        text.contains("timings.finished_at") && text.contains("resume"),
        "{text}"
    );
}
