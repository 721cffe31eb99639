//! Fuzzes the warmer's manifest reader: see `cachewarm_fuzz_warmer::manifest`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cachewarm_fuzz_warmer::manifest(data);
});
