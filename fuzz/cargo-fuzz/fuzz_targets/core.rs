//! libFuzzer target: every input goes through `psession_fuzz::run`, which
//! panics (a crash for libFuzzer) when an invariant of psession-core breaks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    psession_fuzz::run(data);
});
