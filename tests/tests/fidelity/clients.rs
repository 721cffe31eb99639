//! memcached values written by the applications' own clients (Django's pymemcache with
//! `pickle_serde`, pylibmc, Dalli), copied directly and through a snapshot with their client
//! flags, read back by the same clients as equal values of the same types, and undone.

use super::*;

/// Django's memcached backend: `PyMemcacheCache` builds a pymemcache `HashClient` with
/// `allow_unicode_keys`, `default_noreply=False` and `serde=pickle_serde`. `write` stores the
/// values and prints their keys; `check` reads them and prints each one that is not equal, or
/// not of the same type.
const DJANGO_CLIENT: &str = r#"
import sys
from pymemcache import HashClient, serde
from django.utils.safestring import SafeString
mode, server = sys.argv[1], sys.argv[2]
client = HashClient([server], allow_unicode_keys=True, default_noreply=False, serde=serde.pickle_serde)
values = {
    ":1:dict": {"name": "Ada"},
    ":1:int": 42,
    ":1:str": "hello",
    ":1:bytes": b"\x00\xffraw",
    ":1:safe": SafeString("<b>safe</b>"),
    ":1:large": {"rows": ["r%06d" % i for i in range(40000)]},
    ":1:list": [1, 2.5, None, "x"],
}
if mode == "write":
    for key, value in values.items():
        assert client.set(key, value, expire=3600)
    print("\n".join(values))
else:
    for key, value in values.items():
        got = client.get(key)
        if got != value or type(got) is not type(value):
            print(f"{key}: {type(got).__name__} {got!r:.60}")
"#;

/// pylibmc (Django's `PyLibMCCache`) with its own flags (pickled 1, int 4, zlib 8, text 16);
/// the large value is compressed (`min_compress_len`). (A bool reads back as an int from
/// pylibmc itself, so none is stored.)
const PYLIBMC_CLIENT: &str = r#"
import sys
import pylibmc
mode, server = sys.argv[1], sys.argv[2]
client = pylibmc.Client([server])
values = {
    "plm:dict": {"name": "Ada"},
    "plm:int": 42,
    "plm:str": "hello",
    "plm:bytes": b"\x00\xffraw",
    "plm:large": "z" * 300000,
}
if mode == "write":
    for key, value in values.items():
        assert client.set(key, value, time=3600, min_compress_len=1024)
    print("\n".join(values))
else:
    for key, value in values.items():
        got = client.get(key)
        if got != value or type(got) is not type(value):
            print(f"{key}: {type(got).__name__} {got!r:.60}")
"#;

/// Rails' `:mem_cache_store` client, Dalli: a Hash and an Integer Marshal'd (flag 1), a raw
/// String (flag 0), a large String compressed (flag 2).
const DALLI_CLIENT: &str = r##"
require "dalli"
mode, server = ARGV[0], ARGV[1]
client = Dalli::Client.new(server, compress: true)
values = {
  "rails:hash" => { "name" => "Ada", "tags" => [1, 2] },
  "rails:int" => 42,
  "rails:raw" => "hello",
  "rails:large" => "w" * 200_000,
}
if mode == "write"
  values.each do |key, value|
    raw = key == "rails:raw"
    client.set(key, value, 3600, raw: raw) or raise "set #{key}"
  end
  puts values.keys
else
  values.each do |key, value|
    got = client.get(key)
    puts "#{key}: #{got.class} #{got.inspect[0, 60]}" unless got == value && got.class == value.class
  end
end
"##;

/// The application's memcached client, with the script that drives it.
#[derive(Debug, Clone, Copy)]
enum App {
    Django,
    Pylibmc,
    Dalli,
}

impl App {
    /// Runs the client's script in `mode` against `server` (`host:port`).
    fn run(self, mode: &str, server: &str) -> String {
        match self {
            App::Django => python(DJANGO_CLIENT, &[mode, server], ""),
            App::Pylibmc => python(PYLIBMC_CLIENT, &[mode, server], ""),
            App::Dalli => ruby(DALLI_CLIENT, &[mode, server], ""),
        }
    }
}

/// The application's client writes into memcached A. `warmer run` A → B, then `warmer
/// snapshot` of A and a run from the snapshot into C: the same client reads on B and on C
/// values equal to the originals, of the same types; every write is verified; `warmer undo`
/// of the copy deletes every key (its compare includes the flags).
fn app_values_survive_a_copy(app: App) {
    let dir = tempfile::tempdir().unwrap();
    let a = MemcachedServer::start(64);
    let keys: Vec<String> = app
        .run("write", &a.address())
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(keys.len() >= 4, "{keys:?}");
    let wrong = app.run("check", &a.address());
    assert!(
        wrong.is_empty(),
        "{app:?} reads other values where it wrote them:\n{wrong}"
    );
    let manifest = manifest_for(dir.path(), &keys);

    let b = MemcachedServer::start(64);
    let (report, run_dir) = warm(dir.path(), &manifest, &a.url(), &b.url(), &[]);
    assert_all_written_and_verified(&report, keys.len());
    let wrong = app.run("check", &b.address());
    assert!(
        wrong.is_empty(),
        "{app:?} on the copy read other values:\n{wrong}"
    );

    let (path, out) = snapshot(dir.path(), &manifest, &a.url(), "snap.parquet");
    assert!(
        out.contains("client flags"),
        "the snapshot shows the flags:\n{out}"
    );
    let c = MemcachedServer::start(64);
    let (report, _) = warm(dir.path(), &manifest, &path, &c.url(), &[]);
    assert_all_written_and_verified(&report, keys.len());
    let wrong = app.run("check", &c.address());
    assert!(
        wrong.is_empty(),
        "{app:?} after the snapshot read other values:\n{wrong}"
    );

    let undo = warmer(dir.path(), &["undo", run_dir.to_str().unwrap()], 0);
    let text = String::from_utf8_lossy(&undo.stdout);
    assert!(text.contains(&format!("deleted {}", keys.len())), "{text}");
    assert_eq!(b.stat("curr_items"), 0);
}

#[test]
fn django_pymemcache_values_survive_a_copy() {
    app_values_survive_a_copy(App::Django);
}

#[test]
fn pylibmc_values_survive_a_copy() {
    app_values_survive_a_copy(App::Pylibmc);
}

#[test]
fn dalli_values_survive_a_copy() {
    app_values_survive_a_copy(App::Dalli);
}
