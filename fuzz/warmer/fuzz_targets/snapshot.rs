//! Fuzzes the warmer's snapshot (Parquet) reader: see `cachewarm_fuzz_warmer::snapshot`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cachewarm_fuzz_warmer::snapshot(data);
});
