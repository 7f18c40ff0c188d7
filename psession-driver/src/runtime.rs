//! What the driver needs from an async runtime: a clock, a timer, a spawner.

use std::future::Future;
use std::time::Instant;

/// An async runtime the driver can run on.
///
/// `psession-tokio` and `psession-smol` each implement it in a few lines;
/// everything else (waiting, waking, delivering, the timer task) lives in
/// this crate once.
pub trait Runtime: 'static {
    /// The runtime's timer future.
    type Sleep: Future<Output = ()> + Send + 'static;

    /// The current time on the runtime's clock. Under Tokio this is Tokio's
    /// clock, so tests with paused time see virtual time.
    fn now() -> Instant;

    /// A future that completes at `deadline` (never before).
    fn sleep_until(deadline: Instant) -> Self::Sleep;

    /// Spawns the manager's driver task, detached. Fails with a message when
    /// no runtime is available (for Tokio: called outside a runtime).
    fn spawn<F>(task: F) -> Result<(), &'static str>
    where
        F: Future<Output = ()> + Send + 'static;
}
