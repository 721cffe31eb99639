//! Inputs the fuzzers found crashing a warmer reader (`fuzz/warmer/regressions/<target>/`),
//! replayed on every test run through the very function the fuzz target calls (this file
//! includes `fuzz/warmer/src/lib.rs`), with overflow checks on. Each one once panicked. The
//! seeds (`fuzz/warmer/seeds/`) are replayed too: inputs that work must not panic either.

use std::path::{Path, PathBuf};

#[path = "../../fuzz/warmer/src/lib.rs"]
mod targets;

/// What fuzz target `name` does with an input: `Ok` when the reader took it.
type Target = fn(&[u8]) -> Result<(), String>;

/// The function of fuzz target `name`.
fn target(name: &str) -> Option<Target> {
    Some(match name {
        "manifest" => targets::manifest,
        "snapshot" => targets::snapshot,
        "url" => targets::url,
        "loader_protocol" => targets::loader_protocol,
        _ => return None,
    })
}

/// Feeds every input under `fuzz/warmer/<dir>/<target>/` to its target; each input's path and
/// what the reader made of it.
fn replay(dir: &str) -> Vec<(PathBuf, Result<(), String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/warmer")
        .join(dir);
    let mut replayed = Vec::new();
    for entry in std::fs::read_dir(&root).expect("the fuzz inputs directory") {
        let entry = entry.expect("a fuzz target's directory");
        let name = entry.file_name().to_string_lossy().into_owned();
        let run =
            target(&name).unwrap_or_else(|| panic!("fuzz/warmer/{dir}/{name}: not a fuzz target"));
        let mut inputs: Vec<_> = std::fs::read_dir(entry.path())
            .expect("read the target's inputs")
            .map(|input| input.expect("an input").path())
            .collect();
        inputs.sort();
        for input in inputs {
            let bytes = std::fs::read(&input).expect("read a fuzz input");
            // A panic here fails the test and names nothing; print the input first.
            eprintln!("replaying {}", input.display());
            let read = run(&bytes);
            replayed.push((input, read));
        }
    }
    replayed
}

/// Every crasher the fuzzers found reads as an error (or as data), without a panic.
#[test]
fn fuzz_regressions_read_without_panicking() {
    for (input, read) in replay("regressions") {
        eprintln!("{}: {read:?}", input.display());
    }
}

/// Every seed is taken by its reader whole (no panic, no error), so the fuzzers start from
/// inputs that reach past the first check; a change of format that refuses one shows here.
#[test]
fn fuzz_seeds_are_read() {
    let replayed = replay("seeds");
    for target in ["manifest", "snapshot", "url", "loader_protocol"] {
        let seeds = replayed
            .iter()
            .filter(|(input, _)| input.parent().is_some_and(|dir| dir.ends_with(target)))
            .count();
        assert!(seeds >= 3, "{target}: {seeds} seeds");
    }
    for (input, read) in replayed {
        assert_eq!(read, Ok(()), "{}", input.display());
    }
}
