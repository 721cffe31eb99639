//! `warmer undo` deletes only what the run wrote and nobody changed since, and asks for the
//! password again rather than keeping it.

use super::*;

/// `warmer undo` deletes what the run wrote, except a key rewritten since (compare-and-delete
/// on Redis, CAS on memcached), and never a key that was live before the run.
#[test]
fn undo_deletes_only_what_the_run_wrote_and_nobody_changed() {
    let setup = Setup::new(120);
    let redis = RedisServer::start(&[]);
    let memcached = MemcachedServer::start(64);
    seed_live_keys(&redis, &memcached, &setup.manifest);
    let sqlite_path = setup.path("cache.sqlite3");
    let sqlite = format!("sqlite://{sqlite_path}?table=django_cache");
    let args = setup.run_args(&[redis.url(), memcached.url(), sqlite], "runs", &[]);
    let output = run_to_end(setup.dir.path(), &args, "warm");
    let (report, run_dir) = report_of(&output.stdout);
    let redis_written = report.targets[0].counts.written;
    let memcached_written = report.targets[1].counts.written;
    assert!(redis_written > 100 && memcached_written > 100);
    assert_eq!(report.targets[2].counts.written, 120);

    // The application rewrites one warmed key in each store.
    let live = live_keys(&setup.manifest);
    let changed = &setup
        .manifest
        .entries
        .iter()
        .find(|e| !e.key.contains(' ') && !live.contains(&e.key))
        .unwrap()
        .key;
    let _: () = redis.connection().set_ex(changed, "new", 600).unwrap();
    memcached
        .client()
        .set(changed, "new")
        .ttl(memcache::exp::Ttl::secs(600))
        .send()
        .unwrap();
    let db = rusqlite::Connection::open(&sqlite_path).unwrap();
    db.execute(
        "UPDATE django_cache SET value = 'new' WHERE cache_key = ?1",
        [changed],
    )
    .unwrap();

    let output = run_to_end(
        setup.dir.path(),
        &["undo".to_owned(), run_dir.to_str().unwrap().to_owned()],
        "undo",
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!("deleted {}", redis_written - 1)),
        "{text}"
    );
    assert!(
        text.contains(&format!("deleted {}", memcached_written - 1)),
        "{text}"
    );
    assert!(text.contains("deleted 119"), "{text}");

    // Left: the rewritten key and the keys live before the run.
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    expected.insert(changed.clone(), "new".to_owned());
    for key in live {
        expected.insert(key, "kept".to_owned());
    }
    assert_eq!(redis_contents(&redis), expected);
    let left = memcached_contents(&memcached, &setup.manifest);
    assert_eq!(left.len(), 3);
    assert_eq!(left[changed.as_str()], b"new");
    assert_live_keys_untouched(&redis, &memcached, &setup.manifest);
    let rows: Vec<(String, String)> = db
        .prepare("SELECT cache_key, value FROM django_cache")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, vec![(changed.clone(), "new".to_owned())]);

    // Undo again: nothing more to delete.
    let output = run_to_end(
        setup.dir.path(),
        &["undo".to_owned(), run_dir.to_str().unwrap().to_owned()],
        "second undo",
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("deleted 0"));
}

/// Reports and checkpoints hold target URLs with the password redacted, so undo takes the
/// real URL again (here from `CACHEWARM_TARGETS`, as a deploy passes it from a secret) and
/// refuses, with a hint, to guess.
#[test]
fn undo_takes_the_password_again() {
    let setup = Setup::new(30);
    let redis = RedisServer::start(&["--requirepass", "s3cret"]);
    let url = format!("redis://:s3cret@127.0.0.1:{}", redis.port);
    let args = setup.run_args(std::slice::from_ref(&url), "runs", &[]);
    let output = run_to_end(setup.dir.path(), &args, "warm");
    let (report, run_dir) = report_of(&output.stdout);
    assert!(!report.targets[0].url.contains("s3cret"));
    let checkpoint = std::fs::read_to_string(run_dir.join("checkpoint.json")).unwrap();
    assert!(!checkpoint.contains("s3cret"));

    let undo = ["undo".to_owned(), run_dir.to_str().unwrap().to_owned()];
    let output = check_exit(
        warmer_command(setup.dir.path(), &undo).output().unwrap(),
        1,
        "undo without the password",
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("hint"));
    let output = check_exit(
        warmer_command(setup.dir.path(), &undo)
            .env("CACHEWARM_TARGETS", &url)
            .output()
            .unwrap(),
        0,
        "undo with the password",
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("deleted 30"));
    let mut connection = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut connection).unwrap();
    assert_eq!(dbsize, 0);
}
