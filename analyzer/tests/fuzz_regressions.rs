//! Inputs the fuzzers found crashing a reader (`fuzz/regressions/<target>/`), replayed through
//! the same entry point on every test run, with overflow checks on. Each one once panicked.

use std::path::Path;

use analyzer::ingest::{Format, parse_only};

fn format_of(target: &str) -> Option<Format> {
    Some(match target {
        "auto" => Format::Auto,
        "csv" => Format::Csv,
        "jsonl" => Format::Jsonl,
        "memcached_watch" => Format::MemcachedWatch,
        "redis_monitor" => Format::RedisMonitor,
        "twitter" => Format::Twitter,
        "cachelib" => Format::Cachelib,
        "rails" => Format::Rails,
        _ => return None,
    })
}

#[test]
fn fuzz_regressions_parse_without_panicking() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    let Ok(targets) = std::fs::read_dir(&root) else {
        return;
    };
    let mut replayed = 0;
    for target in targets.flatten() {
        let name = target.file_name().to_string_lossy().into_owned();
        let format = format_of(&name)
            .unwrap_or_else(|| panic!("fuzz/regressions/{name}: not a fuzz target"));
        for input in std::fs::read_dir(target.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let bytes = std::fs::read(input.path()).expect("read a regression input");
            // A panic here fails the test and names nothing; print the input first.
            eprintln!("replaying {}", input.path().display());
            parse_only(format, &mut bytes.as_slice()).expect("in-memory input cannot fail");
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} inputs");
}
