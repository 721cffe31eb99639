//! Fuzzes the warmer's snapshot (Parquet) reader: see `cachewarm_fuzz_warmer::snapshot`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: let_dependency_panics_unwind(),
    |data: &[u8]| {
        let _ = cachewarm_fuzz_warmer::snapshot(data);
    }
);

/// Lets a panic raised inside a dependency unwind instead of aborting at once: the parquet
/// crate panics on some corrupt files, and the snapshot reader catches those and refuses the
/// file (`unpanicked` in `warmer/src/source/snapshot/read.rs`); that refusal is what is fuzzed.
/// A panic raised in the warmer's own code still goes to libFuzzer's hook, which aborts, and so
/// does one from a dependency that the warmer does not catch (libFuzzer aborts when it reaches
/// the target's edge): both are crashes.
fn let_dependency_panics_unwind() {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_dependency = info
            .location()
            .is_some_and(|at| at.file().contains("/registry/src/"));
        if !in_dependency {
            abort(info);
        }
    }));
}
