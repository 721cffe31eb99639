//! Fuzzes the memcached `watch fetchers mutations` reader.
#![no_main]

use analyzer::ingest::{Format, parse_only};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    // Reading a byte slice cannot fail, so the only error `parse_only` has (I/O) must not occur.
    parse_only(Format::MemcachedWatch, &mut input)
        .expect("parse_only failed on an in-memory input");
});
