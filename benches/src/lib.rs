//! Shared pieces of psession's benchmarks: the quick mode, the baselines
//! each benchmark is measured against, and psession's in-memory wiring.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod baseline;
pub mod core_cycle;
pub mod oneshot_correlator;
pub mod round_trip;
pub mod wiring;

use criterion::Criterion;
use std::time::Duration;

/// `PSESSION_BENCH_QUICK=1 cargo bench` runs every group briefly, so the
/// figures can be re-checked often (all groups in under two minutes).
pub fn quick() -> bool {
    std::env::var_os("PSESSION_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// A Criterion configured for the full or the quick mode.
pub fn criterion() -> Criterion {
    let criterion = Criterion::default();
    let criterion = if quick() {
        criterion
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(500))
            .sample_size(10)
    } else {
        criterion
    };
    // Command-line options (`cargo bench -- --sample-size 20`) win.
    criterion.configure_from_args()
}
