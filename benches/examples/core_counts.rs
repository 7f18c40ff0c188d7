//! The cycles of `benches/core.rs`, one workload per run, for instruction
//! counts under callgrind (which repeat exactly, where wall-clock figures
//! on a shared machine do not). Only the `measure_*` functions are
//! counted:
//!
//! ```sh
//! cargo build --release -p psession-benches --example core_counts
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measure_*' \
//!     target/release/examples/core_counts reuse 0 100000
//! ```
//!
//! Arguments: the workload, the load, the cycles.
//!
//! - `reuse`, `open_end`, `baseline` with `N` other sends waiting (0,
//!   10000, 1000000), as `core_round_trip`;
//! - `arm_disarm`, `arm_disarm_base` (load 0), as `timers/arm_disarm`;
//! - `timeout`, `timeout_base` with `N` expired sends (the cycles are not
//!   used: one `handle_timeout` of `N`), as `timers/handle_timeout`.
//!
//! Divide callgrind's total by the cycles (by `N` for `timeout`).
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use psession_benches::core_cycle::{
    baseline_expired, baseline_fire, psession_expired, psession_fire, Baseline, Psession,
};
use psession_core::{Manager, SessionId};

#[inline(never)]
fn measure_reuse(psession: &mut Psession, session: SessionId, cycles: usize) {
    for _ in 0..cycles {
        black_box(psession.round_trip(session));
    }
}

#[inline(never)]
fn measure_open_end(psession: &mut Psession, cycles: usize) {
    for _ in 0..cycles {
        black_box(psession.open_round_trip_end());
    }
}

#[inline(never)]
fn measure_baseline(baseline: &mut Baseline, cycles: usize) {
    for _ in 0..cycles {
        black_box(baseline.round_trip());
    }
}

#[inline(never)]
fn measure_arm_disarm(psession: &mut Psession, session: SessionId, cycles: usize) {
    for _ in 0..cycles {
        black_box(psession.arm_disarm(session));
    }
}

#[inline(never)]
fn measure_arm_disarm_base(baseline: &mut Baseline, cycles: usize) {
    for _ in 0..cycles {
        black_box(baseline.arm_disarm());
    }
}

#[inline(never)]
fn measure_timeout(manager: &mut Manager, at: std::time::Instant, n: usize) {
    assert_eq!(psession_fire(manager, at), n);
}

#[inline(never)]
fn measure_timeout_base(
    correlator: &mut psession_benches::baseline::Correlator,
    at: std::time::Instant,
    n: usize,
) {
    assert_eq!(baseline_fire(correlator, at), n);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (workload, load) = match &args[..] {
        [workload, load, ..] => (workload.as_str(), load.parse().expect("a load")),
        _ => panic!("usage: core_counts WORKLOAD LOAD [CYCLES]"),
    };
    let cycles: usize = args.get(2).map_or(100_000, |c| c.parse().expect("cycles"));
    let timeout = Duration::from_secs(60);
    match workload {
        "reuse" | "arm_disarm" => {
            let mut psession = Psession::new(load);
            let session = psession.open();
            if workload == "reuse" {
                measure_reuse(&mut psession, session, cycles);
            } else {
                measure_arm_disarm(&mut psession, session, cycles);
            }
        }
        "open_end" => measure_open_end(&mut Psession::new(load), cycles),
        "baseline" => measure_baseline(&mut Baseline::new(load), cycles),
        "arm_disarm_base" => measure_arm_disarm_base(&mut Baseline::new(load), cycles),
        "timeout" => {
            let (mut manager, at) = psession_expired(load, timeout);
            measure_timeout(&mut manager, at, load);
        }
        "timeout_base" => {
            let (mut correlator, at) = baseline_expired(load, timeout);
            measure_timeout_base(&mut correlator, at, load);
        }
        other => panic!("unknown workload {other}"),
    }
}
