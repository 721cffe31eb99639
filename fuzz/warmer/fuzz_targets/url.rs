//! Fuzzes the warmer's address parsers: see `cachewarm_fuzz_warmer::url`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cachewarm_fuzz_warmer::url(data);
});
