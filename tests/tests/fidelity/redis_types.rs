//! Redis values of every type copied with their TTLs into a server, a cluster and through a
//! snapshot (`DUMP` + `RESTORE`), never replacing a key already present, and undone.

use super::*;

/// One key of each type, with a TTL each (and a hash and a set large enough to be kept as
/// hash tables, whose dumps come out in each server's own order).
fn fill_every_type(connection: &mut impl ConnectionLike) -> Vec<String> {
    let mut run = |args: &[&str]| {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        let _: redis::Value = command.query(connection).unwrap();
    };
    run(&["SET", "t:string", "plain bytes"]);
    run(&["HSET", "t:hash", "name", "Ada", "born", "1815"]);
    run(&["SADD", "t:set", "a", "b", "c"]);
    run(&["ZADD", "t:zset", "1", "one", "2.5", "two", "-3", "minus"]);
    run(&["RPUSH", "t:list", "x", "y", "x", "z"]);
    run(&["XADD", "t:stream", "1-1", "event", "signup", "user", "7"]);
    run(&["XADD", "t:stream", "2-1", "event", "login"]);
    for i in 0..300 {
        let (field, value) = (format!("f{i}"), format!("v{i}"));
        run(&["HSET", "t:bighash", &field, &value]);
        run(&["SADD", "t:bigset", &field]);
    }
    let keys: Vec<String> = [
        "t:string",
        "t:hash",
        "t:set",
        "t:zset",
        "t:list",
        "t:stream",
        "t:bighash",
        "t:bigset",
    ]
    .iter()
    .map(|k| (*k).to_owned())
    .collect();
    for (i, key) in keys.iter().enumerate() {
        let seconds = (3000 + 100 * i).to_string();
        run(&["EXPIRE", key, &seconds]);
    }
    keys
}

/// A key's type, its contents in a form that compares across servers (members sorted where
/// the type has no order), and its remaining TTL in ms.
fn describe(connection: &mut impl ConnectionLike, key: &str) -> (String, Vec<String>, i64) {
    let query = |connection: &mut dyn ConnectionLike, args: &[&str]| -> redis::Value {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query(connection).unwrap()
    };
    let kind: String = redis::from_redis_value(query(connection, &["TYPE", key])).unwrap();
    let flat = |value: redis::Value| -> Vec<String> {
        format!("{value:?}")
            .split(", ")
            .map(str::to_owned)
            .collect()
    };
    let mut contents = match kind.as_str() {
        "string" => vec![redis::from_redis_value(query(connection, &["GET", key])).unwrap()],
        "hash" => {
            let map: std::collections::BTreeMap<String, String> =
                redis::from_redis_value(query(connection, &["HGETALL", key])).unwrap();
            map.into_iter().map(|(f, v)| format!("{f}={v}")).collect()
        }
        "set" => redis::from_redis_value(query(connection, &["SMEMBERS", key])).unwrap(),
        "zset" => {
            redis::from_redis_value(query(connection, &["ZRANGE", key, "0", "-1", "WITHSCORES"]))
                .unwrap()
        }
        "list" => redis::from_redis_value(query(connection, &["LRANGE", key, "0", "-1"])).unwrap(),
        "stream" => flat(query(connection, &["XRANGE", key, "-", "+"])),
        other => panic!("{key} has type {other}"),
    };
    if matches!(kind.as_str(), "set") {
        contents.sort();
    }
    let pttl: i64 = redis::from_redis_value(query(connection, &["PTTL", key])).unwrap();
    (kind, contents, pttl)
}

/// Every key of `keys` in `target` has the type and contents it has in `source`, and the same
/// TTL within a second (and within the time since the copy).
fn assert_same_values(
    source: &mut impl ConnectionLike,
    target: &mut impl ConnectionLike,
    keys: &[String],
) {
    for key in keys {
        let (kind, contents, pttl) = describe(source, key);
        let (copied_kind, copied, copied_pttl) = describe(target, key);
        assert_eq!((&copied_kind, &copied), (&kind, &contents), "{key}");
        assert!(
            pttl > 0 && copied_pttl > 0,
            "{key}: TTLs {pttl} and {copied_pttl}"
        );
        assert!(
            (pttl - copied_pttl).abs() <= 1000,
            "{key}: TTL {pttl} copied as {copied_pttl}"
        );
    }
}

/// Replica → Redis: every type copied with its TTL; a key already present in the target keeps
/// its value (counted `already_present`); every write verified; `warmer undo` deletes what the
/// run wrote, dumps included, and keeps the key that was there.
#[test]
fn redis_values_of_every_type_are_copied() {
    let dir = tempfile::tempdir().unwrap();
    let replica = RedisServer::start(&[]);
    let keys = fill_every_type(&mut replica.connection());
    let manifest = manifest_for(dir.path(), &keys);
    let target = RedisServer::start(&[]);
    let mut target_connection = target.connection();
    let _: () = redis::cmd("HSET")
        .arg("t:hash")
        .arg("name")
        .arg("kept")
        .query(&mut target_connection)
        .unwrap();

    let (report, run_dir) = warm(dir.path(), &manifest, &replica.url(), &target.url(), &[]);
    let target_report = &report.targets[0];
    assert_eq!(target_report.counts.written as usize, keys.len() - 1);
    assert_eq!(target_report.counts.already_present, 1);
    assert_eq!(target_report.counts.source_miss, 0);
    let verification = target_report.verification.as_ref().unwrap();
    assert_eq!(
        (verification.verified as usize, verification.mismatched),
        (keys.len() - 1, 0)
    );
    let copied: Vec<String> = keys.iter().filter(|k| *k != "t:hash").cloned().collect();
    assert_same_values(&mut replica.connection(), &mut target_connection, &copied);
    let kept: String = redis::cmd("HGET")
        .arg("t:hash")
        .arg("name")
        .query(&mut target_connection)
        .unwrap();
    assert_eq!(kept, "kept");

    for e in std::fs::read_dir(&run_dir).unwrap() {
        let p = e.unwrap().path();
        eprintln!(
            "DBG {} {}",
            p.display(),
            std::fs::read_to_string(&p).unwrap_or_default()
        );
    }
    let undo = warmer(dir.path(), &["undo", run_dir.to_str().unwrap()], 0);
    let text = String::from_utf8_lossy(&undo.stdout);
    assert!(
        text.contains(&format!("deleted {}", keys.len() - 1)),
        "{text}"
    );
    let left: u64 = redis::cmd("DBSIZE").query(&mut target_connection).unwrap();
    assert_eq!(left, 1, "only the key that was there is left");
}

/// Replica → Redis Cluster: the same, each key on the primary of its slot.
#[test]
fn redis_values_of_every_type_are_copied_into_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let replica = RedisServer::start(&[]);
    let keys = fill_every_type(&mut replica.connection());
    let manifest = manifest_for(dir.path(), &keys);
    let cluster = RedisCluster::start(&[]);
    let (report, _) = warm(dir.path(), &manifest, &replica.url(), &cluster.url(), &[]);
    assert_all_written_and_verified(&report, keys.len());
    assert_same_values(&mut replica.connection(), &mut cluster.connection(), &keys);
}

/// Replica → snapshot → Redis: the snapshot keeps the dumps (its encoding column) and says
/// so; restored into an empty Redis, every type is there with its TTL.
#[test]
fn redis_values_of_every_type_go_through_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let replica = RedisServer::start(&[]);
    let keys = fill_every_type(&mut replica.connection());
    let manifest = manifest_for(dir.path(), &keys);
    let (path, out) = snapshot(dir.path(), &manifest, &replica.url(), "snap.parquet");
    assert!(
        out.contains(&format!("DUMP payloads): {}", keys.len() - 1)),
        "{out}"
    );
    let target = RedisServer::start(&[]);
    let (report, _) = warm(dir.path(), &manifest, &path, &target.url(), &[]);
    assert_all_written_and_verified(&report, keys.len());
    assert_same_values(&mut replica.connection(), &mut target.connection(), &keys);
}

// --- copies between kinds -----------------------------------------------------------------
