//! The JSON Schema files in `schemas/json/` are what tools outside Rust validate against; this
//! test fails when they no longer match the Rust types. Regenerate them with
//! `UPDATE_SCHEMAS=1 cargo test -p schemas --test json_schema_files`.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn json_schema_files_are_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("json");
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (name, text) in schemas::json_schemas() {
        let path = dir.join(name);
        if update {
            std::fs::write(&path, &text).expect("write schema file");
            continue;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        if on_disk != text {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "stale JSON Schema files in schemas/json: {stale:?}\n\
         hint: run `UPDATE_SCHEMAS=1 cargo test -p schemas --test json_schema_files` and commit them"
    );
}
