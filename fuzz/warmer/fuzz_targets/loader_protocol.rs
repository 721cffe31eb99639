//! Fuzzes the warmer's loader-protocol reader (a loader's output): see `cachewarm_fuzz_warmer::loader_protocol`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cachewarm_fuzz_warmer::loader_protocol(data);
});
