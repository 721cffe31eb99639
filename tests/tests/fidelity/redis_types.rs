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

/// Rewrites the `value` of the row of `key` in the snapshot at `path` with pyarrow, every
/// other row, column and the file's metadata kept.
const CORRUPT_ONE_PAYLOAD: &str = r#"
import sys
import pyarrow as pa, pyarrow.parquet as pq
path, key = sys.argv[1], sys.argv[2]
table = pq.read_table(path)
values = table.column("value").to_pylist()
row = table.column("key").to_pylist().index(key)
payload = bytearray(values[row])
payload[-1] ^= 0xFF
values[row] = bytes(payload)
index = table.schema.get_field_index("value")
table = table.set_column(index, table.schema.field(index), pa.array(values, table.schema.field(index).type))
pq.write_table(table, path)
"#;

/// A `DUMP` payload the target refuses (here its checksum no longer matches, as a payload from
/// a newer server's RDB version is refused the same way) is counted `failed` with Redis's
/// reason, and every other key is still restored.
#[test]
fn a_payload_the_target_refuses_is_counted_failed_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let replica = RedisServer::start(&[]);
    let keys = fill_every_type(&mut replica.connection());
    let manifest = manifest_for(dir.path(), &keys);
    let (path, _) = snapshot(dir.path(), &manifest, &replica.url(), "snap.parquet");
    python(CORRUPT_ONE_PAYLOAD, &[&path, "t:zset"], "");

    let target = RedisServer::start(&[]);
    let (report, _) = warm(dir.path(), &manifest, &path, &target.url(), &[]);
    let target_report = &report.targets[0];
    assert_eq!(target_report.counts.failed, 1);
    assert_eq!(target_report.counts.written as usize, keys.len() - 1);
    let reasons: Vec<&String> = target_report.failure_reasons.keys().collect();
    assert!(
        reasons.len() == 1 && reasons[0].contains("checksum"),
        "{reasons:?}"
    );
    let mut connection = target.connection();
    let exists: bool = redis::cmd("EXISTS")
        .arg("t:zset")
        .query(&mut connection)
        .unwrap();
    assert!(!exists, "the refused key is not written");
    let copied: Vec<String> = keys.iter().filter(|k| *k != "t:zset").cloned().collect();
    assert_same_values(&mut replica.connection(), &mut connection, &copied);
}
