//! `--verify` reports exactly the keys changed behind the run's back, and verifies every key of
//! a run that nothing disturbs.

use super::*;

/// A run writes 40 keys and pauses 3 s before reading them back (`--verify-delay`). Meanwhile
/// the test rewrites three of them in the target with other bytes, and a fourth in the source
/// and the target alike (what the live application does). The report lists exactly the three
/// as mismatched, counts the fourth `changed`, verifies the rest, and `--strict` exits 1. A run
/// that nothing disturbs verifies every key it wrote.
#[test]
fn verify_reports_exactly_the_keys_changed_behind_its_back() {
    let dir = tempfile::tempdir().unwrap();
    let replica = RedisServer::start(&[]);
    let keys: Vec<String> = (0..40).map(|i| format!("v:{i}")).collect();
    let mut source = replica.connection();
    set_strings(&mut source, &keys);
    let manifest = manifest_for(dir.path(), &keys);
    let target = RedisServer::start(&[]);
    let runs = dir.path().join("runs");
    let args = [
        "run",
        "--manifest",
        manifest.to_str().unwrap(),
        "--source",
        &replica.url(),
        "--target",
        &target.url(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--verify",
        "--verify-delay",
        "3s",
        "--strict",
    ];
    let child = warmer_command(dir.path(), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut target_connection = target.connection();
    let start = Instant::now();
    loop {
        let size: usize = redis::cmd("DBSIZE").query(&mut target_connection).unwrap();
        if size == keys.len() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the run wrote {size} keys"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let tampered = ["v:3", "v:17", "v:38"];
    for key in tampered {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("other bytes")
            .arg("KEEPTTL")
            .query(&mut target_connection)
            .unwrap();
    }
    for connection in [&mut source, &mut target_connection] {
        let _: () = redis::cmd("SET")
            .arg("v:20")
            .arg("the app's new value")
            .arg("EX")
            .arg(3600)
            .query(connection)
            .unwrap();
    }
    let output = check_exit(child.wait_with_output().unwrap(), 1, "warmer run --strict");
    let (report, _) = report_of(&output.stdout);
    let verification = report.targets[0].verification.as_ref().unwrap();
    let mut mismatched: Vec<&str> = verification
        .mismatches
        .iter()
        .map(|m| m.key.as_str())
        .collect();
    mismatched.sort_unstable();
    let mut expected = tampered.to_vec();
    expected.sort_unstable();
    assert_eq!(mismatched, expected, "{verification:?}");
    assert_eq!(
        (
            verification.verified,
            verification.mismatched,
            verification.changed
        ),
        (36, 3, 1),
        "{verification:?}"
    );
    assert!(
        verification
            .mismatches
            .iter()
            .all(|m| m.reason.starts_with("value differs")),
        "{verification:?}"
    );
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("mismatched 3"), "{summary}");

    let quiet = RedisServer::start(&[]);
    let (report, _) = warm(
        dir.path(),
        &manifest,
        &replica.url(),
        &quiet.url(),
        &["--strict"],
    );
    assert_all_written_and_verified(&report, keys.len());
}
