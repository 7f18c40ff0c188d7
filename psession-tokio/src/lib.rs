//! psession on Tokio: request/response *conversations* over any message
//! channel. Tag each message with a session id, wait for the peer's answer
//! with timeouts and retries, run many sessions with many peers over shared
//! channels, and clean up after all of them.
//!
//! This crate is a thin adapter: [`Tokio`] tells the shared driver
//! (`psession-driver`) how to read Tokio's clock, sleep and spawn; the API
//! is re-exported from there and is the same in `psession-smol`.
//!
//! ```
//! use psession_tokio::{ManagerConfig, SessionManager, Sender};
//! use serde_json::{json, Value};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), psession_tokio::SessionError> {
//! // The "default" port sends into a queue; here a task plays the peer and
//! // answers every request on the same sid.
//! let (sender, mut outbound) = Sender::<Value>::channel(64);
//! let manager = SessionManager::new(ManagerConfig::default(), sender)?;
//! let peer = manager.clone();
//! tokio::spawn(async move {
//!     while let Some(request) = outbound.recv().await {
//!         let reply = json!({ "sid": request["sid"], "status": "on" });
//!         peer.dispatch("default", reply);
//!     }
//! });
//!
//! let mut session = manager.create_session("default")?;
//! let reply = session.send(json!({ "command": "turn on the light" })).await?;
//! assert_eq!(reply["status"], "on");
//! session.end();
//! # Ok(()) }
//! ```
//!
//! Time comes from `tokio::time::Instant`, so tests may run with paused
//! time (`#[tokio::test(start_paused = true)]`) and deadlines follow the
//! virtual clock.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

// The whole API, written once in `psession-driver` (which re-exports the
// core's types); only `SessionManager` below is this runtime's own.
pub use psession_driver::*;

/// The session manager on Tokio: see [`psession_driver::SessionManager`].
/// Create it inside a Tokio runtime (it spawns its driver task there).
pub type SessionManager<M = serde_json::Value> = psession_driver::SessionManager<Tokio, M>;

/// The Tokio runtime, as the driver sees it.
#[derive(Debug, Clone, Copy)]
pub struct Tokio;

/// Tokio's timer, boxed so that it can be stored.
#[derive(Debug)]
pub struct TokioSleep(Pin<Box<tokio::time::Sleep>>);

impl Future for TokioSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Runtime for Tokio {
    type Sleep = TokioSleep;

    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(deadline: Instant) -> TokioSleep {
        TokioSleep(Box::pin(tokio::time::sleep_until(
            tokio::time::Instant::from_std(deadline),
        )))
    }

    fn spawn<F>(task: F) -> Result<(), &'static str>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "psession-tokio: create the SessionManager inside a Tokio runtime")?;
        drop(handle.spawn(task));
        Ok(())
    }
}
