//! What the example tests share.
#![allow(dead_code)] // each test file uses its own part

use psession_core::Stats;
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

/// With every client gone (`connected` is 0, only the default port is
/// left), the server holds no session, waiting send, queued message or
/// transmission.
pub async fn assert_nothing_left(connected: impl Fn() -> usize, stats: impl Fn() -> Stats) {
    eventually("every client's port is destroyed", || {
        connected() == 0 && stats().ports == 1
    })
    .await;
    let stats = stats();
    assert_eq!(stats.live_sessions, 0, "{stats:?}");
    assert_eq!(stats.waiting_sends, 0, "{stats:?}");
    assert_eq!(stats.queued_messages, 0, "{stats:?}");
    assert_eq!(stats.queued_transmits, 0, "{stats:?}");
}
