//! The `postgres://` store on a real PostgreSQL: Django's DatabaseCache table as target and
//! source, add semantics on both `expires` column types, the entry limit (`MAX_ENTRIES`) on
//! PostgreSQL and SQLite alike, undo, the password kept out of argv and reports, and `sslmode`
//! against a server that takes TCP over TLS only.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;

use cachewarm_tests::{
    POSTGRES_USER, PostgresServer, TestCerts, assert_refused, check_exit, feed, ingest_and_rank,
    report_of, warmer_command,
};
use schemas::Report;
use schemas::report::TargetReport;

/// Django's `createcachetable` DDL for PostgreSQL; `USE_TZ = False` makes `expires` a
/// `timestamp` instead.
fn create_cache_table(client: &mut postgres::Client, table: &str, with_time_zone: bool) {
    let expires = if with_time_zone {
        "timestamp with time zone"
    } else {
        "timestamp"
    };
    client
        .batch_execute(&format!(
            "CREATE TABLE \"{table}\" (\"cache_key\" varchar(255) NOT NULL PRIMARY KEY, \
             \"value\" text NOT NULL, \"expires\" {expires} NOT NULL); \
             CREATE INDEX \"{table}_expires\" ON \"{table}\" (\"expires\");"
        ))
        .unwrap();
}

/// What Django's DatabaseCache stores: base64 of a pickle.
fn value_for(key: &str) -> String {
    format!("gASV{}", "QUJD".repeat(8 + key.len() % 20))
}

/// `n` keys, their values in a source table `source` (an hour or so to live), and a manifest
/// that takes them all, in `dir`.
fn source_and_manifest(server: &PostgresServer, dir: &Path, n: usize) -> (Vec<String>, String) {
    let keys: Vec<String> = (0..n).map(|i| format!(":1:views.page.{i}")).collect();
    let mut client = server.client();
    create_cache_table(&mut client, "source", true);
    for (i, key) in keys.iter().enumerate() {
        client
            .execute(
                "INSERT INTO source VALUES ($1, $2, now() + make_interval(secs => $3))",
                &[key, &value_for(key), &(3600.0 + i as f64)],
            )
            .unwrap();
    }
    let log = dir.join("access.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
    for (i, key) in keys.iter().enumerate() {
        for read in 0..2 + (n - i) % 5 {
            writeln!(
                out,
                r#"{{"ts": {}, "key": "{key}", "op": "get", "hit": true, "value_size": {}}}"#,
                1_763_700_000 + i * 10 + read,
                value_for(key).len()
            )
            .unwrap();
        }
    }
    out.flush().unwrap();
    drop(out);
    let (_, manifest) = ingest_and_rank(dir, &log, "4MiB", "manifest.json", &[]);
    (keys, manifest.to_str().unwrap().to_owned())
}

fn warm(dir: &Path, args: &[String]) -> (Report, std::path::PathBuf, String) {
    let output = check_exit(warmer_command(dir, args).output().unwrap(), 0, "warmer run");
    let (report, run_dir) = report_of(&output.stdout);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (report, run_dir, text)
}

fn run_args(manifest: &str, source: &str, targets: &[String], runs: &Path) -> Vec<String> {
    let mut args = vec![
        "run".to_owned(),
        "--manifest".to_owned(),
        manifest.to_owned(),
        "--source".to_owned(),
        source.to_owned(),
        "--runs-dir".to_owned(),
        runs.to_str().unwrap().to_owned(),
        "--batch-size".to_owned(),
        "16".to_owned(),
    ];
    for target in targets {
        args.push("--target".to_owned());
        args.push(target.clone());
    }
    args
}

fn target<'a>(report: &'a Report, table: &str) -> &'a TargetReport {
    report
        .targets
        .iter()
        .find(|t| t.url.contains(&format!("table={table}&")))
        .unwrap_or_else(|| panic!("no target for table {table}"))
}

fn rows(client: &mut postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM \"{table}\""), &[])
        .unwrap()
        .get(0)
}

/// Add semantics on Django's table with either `expires` type (USE_TZ on and off): a live row
/// is kept with its expiry, an expired one is taken over, every other key is copied with the
/// source's remaining TTL; a second run writes nothing, and undo takes back exactly what the
/// run wrote, keeping a row the application rewrote since.
#[test]
fn add_ttl_and_undo_on_both_expires_types() {
    let dir = tempfile::tempdir().unwrap();
    let server = PostgresServer::start();
    let (keys, manifest) = source_and_manifest(&server, dir.path(), 40);
    let mut client = server.client();
    for (table, with_time_zone) in [("cache_tz", true), ("cache_naive", false)] {
        create_cache_table(&mut client, table, with_time_zone);
        client
            .execute(
                &format!(
                    "INSERT INTO {table} VALUES ($1, 'kept', now() + interval '1 day'), \
                     ($2, 'stale', now() - interval '1 hour')"
                ),
                &[&keys[0], &keys[1]],
            )
            .unwrap();
    }
    // A timestamp column holds wall time in Django's TIME_ZONE: one that is not the server's.
    let targets = [
        server.url("cache_tz"),
        format!("{}&time_zone=Europe/Paris", server.url("cache_naive")),
    ];
    let runs = dir.path().join("runs");
    let args = run_args(&manifest, &server.url("source"), &targets, &runs);
    let (report, run_dir, _) = warm(dir.path(), &args);

    for table in ["cache_tz", "cache_naive"] {
        let counts = &target(&report, table).counts;
        assert_eq!(counts.written, keys.len() as u64 - 1, "{table}");
        assert_eq!(counts.already_present, 1, "{table}");
        assert_eq!(counts.failed + counts.not_attempted, 0, "{table}");
        assert_eq!(target(&report, table).kind, "postgres");
        assert_eq!(rows(&mut client, table), keys.len() as i64);
        // The live row: untouched, value and expiry.
        let kept = client
            .query_one(
                &format!(
                    "SELECT value, expires::timestamptz > now() + interval '23 hours' \
                     FROM {table} WHERE cache_key = $1"
                ),
                &[&keys[0]],
            )
            .unwrap();
        assert_eq!(kept.get::<_, String>(0), "kept", "{table}");
        assert!(
            kept.get::<_, bool>(1),
            "{table}: the live row's expiry changed"
        );
        // Every other row holds the source's value and expiry: an instant in a timestamptz
        // column, Paris wall time (Django's TIME_ZONE here) in a timestamp column.
        let expires = if table == "cache_tz" {
            "t.expires"
        } else {
            "t.expires AT TIME ZONE 'Europe/Paris'"
        };
        let mismatched: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {table} t JOIN source s USING (cache_key) \
                     WHERE t.cache_key <> $1 AND (t.value <> s.value \
                     OR abs(extract(epoch FROM {expires} - s.expires)) > 2)"
                ),
                &[&keys[0]],
            )
            .unwrap()
            .get(0);
        assert_eq!(mismatched, 0, "{table}: rows differ from the source");
    }

    let again = warm(dir.path(), &args).0;
    for t in &again.targets {
        assert_eq!(t.counts.written, 0, "{}", t.url);
    }

    // The application rewrites one warmed key; undo keeps it, and the row that was live.
    client
        .execute(
            "UPDATE cache_tz SET value = 'rewritten' WHERE cache_key = $1",
            &[&keys[2]],
        )
        .unwrap();
    let undo = ["undo".to_owned(), run_dir.to_str().unwrap().to_owned()];
    check_exit(
        warmer_command(dir.path(), &undo).output().unwrap(),
        0,
        "warmer undo",
    );
    let left = |client: &mut postgres::Client, table: &str| -> Vec<String> {
        client
            .query(&format!("SELECT value FROM {table} ORDER BY value"), &[])
            .unwrap()
            .into_iter()
            .map(|row| row.get(0))
            .collect()
    };
    assert_eq!(left(&mut client, "cache_tz"), ["kept", "rewritten"]);
    assert_eq!(left(&mut client, "cache_naive"), ["kept"]);
}

/// Django culls a third of the table on its next write past `MAX_ENTRIES`: a warm never takes
/// the table past it, in PostgreSQL or SQLite, and counts what did not fit as
/// `skipped_budget`, the most valuable keys first.
///
/// Regression: the entries left out at the limit were counted `already_present` (the store's
/// "no room" answer was merged as if the row were there), so the report showed no
/// `skipped_budget` while the table had stopped at the limit. And with several batches in
/// flight, a later batch could take the room first: SQLite held a key ranked below the top.
#[test]
fn max_entries_is_never_passed() {
    // 40 keys to warm into a table of 30 that already holds 10 rows of the application's:
    // room for 20 new rows.
    const KEYS: usize = 40;
    const MAX_ENTRIES: i64 = 30;
    const OTHER_ROWS: i64 = 10;
    const ROOM: u64 = (MAX_ENTRIES - OTHER_ROWS) as u64;
    let dir = tempfile::tempdir().unwrap();
    let server = PostgresServer::start();
    let (_, manifest) = source_and_manifest(&server, dir.path(), KEYS);
    let mut client = server.client();
    create_cache_table(&mut client, "small", true);
    client
        .execute(
            "INSERT INTO small SELECT 'other:' || n, 'x', now() + interval '1 hour' \
             FROM generate_series(1, $1) AS n",
            &[&(OTHER_ROWS as i32)],
        )
        .unwrap();
    let sqlite_path = dir.path().join("cache.sqlite3");
    {
        let connection = rusqlite::Connection::open(&sqlite_path).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE small (cache_key varchar(255) NOT NULL PRIMARY KEY, \
                 value text NOT NULL, expires datetime NOT NULL);",
            )
            .unwrap();
        connection
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
                 INSERT INTO small SELECT 'other:' || i, 'x', '9999-12-31 00:00:00' FROM n",
                [OTHER_ROWS],
            )
            .unwrap();
    }
    let targets = [
        format!("{}&max_entries={MAX_ENTRIES}", server.url("small")),
        format!(
            "sqlite://{}?table=small&max_entries={MAX_ENTRIES}",
            sqlite_path.display()
        ),
    ];
    let runs = dir.path().join("runs");
    let (report, _, text) = warm(
        dir.path(),
        &run_args(&manifest, &server.url("source"), &targets, &runs),
    );
    assert_eq!(rows(&mut client, "small"), MAX_ENTRIES);
    let sqlite_rows: i64 = rusqlite::Connection::open(&sqlite_path)
        .unwrap()
        .query_row("SELECT count(*) FROM small", [], |row| row.get(0))
        .unwrap();
    assert_eq!(sqlite_rows, MAX_ENTRIES);
    let ranked = cachewarm_tests::read_manifest(Path::new(&manifest));
    assert_eq!(report.targets.len(), 2);
    for t in &report.targets {
        let c = &t.counts;
        assert_eq!(
            (c.written, c.skipped_budget, c.already_present, c.failed),
            (ROOM, KEYS as u64 - ROOM, 0, 0),
            "{}: (written, skipped_budget, already_present, failed)",
            t.url
        );
        assert_eq!(c.total(), KEYS as u64, "{}", t.url);
        assert_eq!(t.stopped_by.as_deref(), Some("max_entries"), "{}", t.url);
    }
    // The keys written are the top of the ranking.
    let written: Vec<String> = client
        .query(
            "SELECT cache_key FROM small WHERE cache_key NOT LIKE 'other:%'",
            &[],
        )
        .unwrap()
        .into_iter()
        .map(|row| row.get(0))
        .collect();
    let top: Vec<&String> = ranked
        .entries
        .iter()
        .take(ROOM as usize)
        .map(|e| &e.key)
        .collect();
    let sqlite_written: Vec<String> = rusqlite::Connection::open(&sqlite_path)
        .unwrap()
        .prepare("SELECT cache_key FROM small WHERE cache_key NOT LIKE 'other:%'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (store, written) in [("postgres", &written), ("sqlite", &sqlite_written)] {
        assert_eq!(written.len(), ROOM as usize, "{store}");
        for key in written {
            assert!(
                top.contains(&key),
                "{store}: {key} is not in the top {ROOM}"
            );
        }
    }
    assert!(text.contains("max_entries"), "{text}");
}

/// The password comes from `PGPASSWORD` or a `password_file=`, never the command line, and
/// shows in no output and no file of the run; a wrong one fails the target, not the deploy.
#[test]
fn the_password_stays_out_of_argv_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let server = PostgresServer::start();
    let (keys, manifest) = source_and_manifest(&server, dir.path(), 20);
    let mut client = server.client();
    create_cache_table(&mut client, "cache", true);
    let runs = dir.path().join("runs");
    // The URL names no password: it comes from the environment.
    let bare = |table: &str| {
        format!(
            "postgres://{}@127.0.0.1:{}/postgres?table={table}",
            cachewarm_tests::POSTGRES_USER,
            server.port
        )
    };
    let args = run_args(&manifest, &server.url("source"), &[bare("cache")], &runs);
    let output = check_exit(
        warmer_command(dir.path(), &args)
            .env("PGPASSWORD", &server.password)
            .output()
            .unwrap(),
        0,
        "warmer run with PGPASSWORD",
    );
    let (report, run_dir) = report_of(&output.stdout);
    assert_eq!(report.targets[0].counts.written, keys.len() as u64);
    let mut seen = String::from_utf8_lossy(&output.stdout).into_owned();
    seen.push_str(&String::from_utf8_lossy(&output.stderr));
    for file in std::fs::read_dir(&run_dir).unwrap().flatten() {
        seen.push_str(&String::from_utf8_lossy(
            &std::fs::read(file.path()).unwrap(),
        ));
    }
    assert!(!seen.contains(&server.password), "the password leaked");

    // A wrong password: the target fails with PostgreSQL's reason, the run still exits 0.
    let output = check_exit(
        warmer_command(dir.path(), &args)
            .env("PGPASSWORD", "not-the-password")
            .output()
            .unwrap(),
        0,
        "warmer run with a wrong password",
    );
    let (report, _) = report_of(&output.stdout);
    let error = report.targets[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("password"), "{error}");
    assert!(!error.contains("not-the-password"), "{error}");
}

/// `sslmode` against a server that takes TCP only over TLS with a client certificate
/// (`hostssl … clientcert=verify-ca`; its certificate is made out to 127.0.0.1 and localhost):
/// a warm from a TLS source into tables reached with `verify-full`, `verify-ca` (through
/// 127.0.0.2, a name the certificate lacks), `require` (warned: nothing is checked) and the
/// default `prefer` (which must have taken TLS to be let in) writes every row, as `psql` reads
/// back over `verify-full`. A wrong CA (under `verify-full` and `verify-ca`), a host name the
/// certificate lacks under `verify-full`, no client certificate and `sslmode=disable` (the
/// server's `hostssl`-only rule) each fail the target with an error that names it and says
/// why, and write nothing.
#[test]
fn sslmode_against_a_tls_only_server() {
    let certs = TestCerts::new();
    let dir = tempfile::tempdir().unwrap();
    let server = PostgresServer::start_tls(&certs);
    let (keys, manifest) = source_and_manifest(&server, dir.path(), 30);
    let mut client = server.client();
    let url = |host: &str, table: &str, tls: &str| {
        format!(
            "postgres://{POSTGRES_USER}@{host}:{}/postgres?table={table}&password_file={}&{tls}",
            server.port,
            server.password_file.display()
        )
    };
    let client_cert = format!(
        "sslcert={}&sslkey={}",
        certs.file("client.pem"),
        certs.file("client.key")
    );
    let checked = |mode: &str, ca: &str| {
        format!(
            "sslmode={mode}&sslrootcert={}&{client_cert}",
            certs.file(ca)
        )
    };
    let source = url("127.0.0.1", "source", &checked("verify-full", "ca.pem"));
    let tables = ["cache_full", "cache_ca", "cache_require", "cache_prefer"];
    for table in tables.iter().chain(&["cache_refused"]) {
        create_cache_table(&mut client, table, true);
    }
    // The other stores' names for the files work too.
    let project_names = format!(
        "sslmode=verify-ca&ca={}&cert={}&key={}",
        certs.file("ca.pem"),
        certs.file("client.pem"),
        certs.file("client.key")
    );
    let targets = [
        url("127.0.0.1", "cache_full", &checked("verify-full", "ca.pem")),
        url("127.0.0.2", "cache_ca", &project_names),
        url(
            "127.0.0.1",
            "cache_require",
            &format!("sslmode=require&{client_cert}"),
        ),
        url("127.0.0.1", "cache_prefer", &client_cert),
    ];
    let runs = dir.path().join("runs");
    let (report, _, text) = warm(dir.path(), &run_args(&manifest, &source, &targets, &runs));
    for table in tables {
        let t = target(&report, table);
        assert_eq!(
            t.counts.written,
            keys.len() as u64,
            "{table}: {:?}",
            t.error
        );
    }
    let warnings: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("without certificate verification"))
        .collect();
    // Each connect says so, and only for the target that asked for `require`.
    assert!(
        !warnings.is_empty()
            && warnings
                .iter()
                .all(|line| line.contains("sslmode=require") && line.contains("cache_require")),
        "{warnings:?}"
    );
    let mut sorted = keys.clone();
    sorted.sort();
    let expected: Vec<String> = sorted
        .iter()
        .map(|key| format!("{key}|{}", value_for(key)))
        .collect();
    for table in tables {
        let read = feed(
            server.psql_tls(&certs),
            &format!("SELECT cache_key, value FROM {table} ORDER BY cache_key COLLATE \"C\";\n"),
            "psql over TLS (read back)",
        );
        assert_eq!(read.lines().collect::<Vec<_>>(), expected, "{table}");
    }

    let cases = [
        (
            "127.0.0.1",
            checked("verify-full", "wrong-ca.pem"),
            "UnknownIssuer",
        ),
        (
            "127.0.0.2",
            checked("verify-full", "ca.pem"),
            "certificate not valid for name",
        ),
        // verify-ca lets the name go, not the signature.
        (
            "127.0.0.2",
            checked("verify-ca", "wrong-ca.pem"),
            "UnknownIssuer",
        ),
        (
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={}", certs.file("ca.pem")),
            "requires a valid client certificate",
        ),
        ("127.0.0.1", "sslmode=disable".to_owned(), "no encryption"),
    ];
    for (i, (host, tls, why)) in cases.iter().enumerate() {
        let refused = url(host, "cache_refused", tls);
        let mut args = run_args(
            &manifest,
            &source,
            &[refused],
            &dir.path().join(format!("runs-{i}")),
        );
        args.push("--strict".to_owned());
        let named = format!("postgres://{POSTGRES_USER}@{host}:{}", server.port);
        assert_refused(dir.path(), &args, &named, why);
    }
    assert_eq!(rows(&mut client, "cache_refused"), 0);
}
