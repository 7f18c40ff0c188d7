//! What the example tests share.
#![allow(dead_code)] // each test file uses its own part

use std::time::{Duration, Instant};

/// How long a test waits for something that should happen at once: long
/// enough that no machine is too slow, and only a bug ever waits this long.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Waits until `condition` holds, checking every 5 ms; panics with `what`
/// after [`PATIENCE`]. Works on any runtime.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < PATIENCE, "never happened: {what}");
        smol::Timer::after(Duration::from_millis(5)).await;
    }
}
