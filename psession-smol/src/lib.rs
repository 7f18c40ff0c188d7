//! psession on smol: request/response *conversations* over any message
//! channel. Tag each message with a session id, wait for the peer's answer
//! with timeouts and retries, run many sessions with many peers over shared
//! channels, and clean up after all of them.
//!
//! This crate is a thin adapter: [`Smol`] tells the shared driver
//! (`psession-driver`) how to read the clock, sleep (`async-io`'s timer)
//! and spawn (smol's global executor); the API is re-exported from there
//! and is the same in `psession-tokio`.
//!
//! ```
//! use psession_smol::{ManagerConfig, SessionManager, Sender};
//! use serde_json::{json, Value};
//!
//! # fn main() -> Result<(), psession_smol::SessionError> {
//! smol::block_on(async {
//!     // The "default" port sends into a queue; here a task plays the peer
//!     // and answers every request on the same sid.
//!     let (sender, mut outbound) = Sender::<Value>::channel(64);
//!     let manager = SessionManager::new(ManagerConfig::default(), sender)?;
//!     let peer = manager.clone();
//!     smol::spawn(async move {
//!         while let Some(request) = outbound.recv().await {
//!             let reply = json!({ "sid": request["sid"], "status": "on" });
//!             peer.dispatch("default", reply);
//!         }
//!     })
//!     .detach();
//!
//!     let mut session = manager.create_session("default")?;
//!     let reply = session.send(json!({ "command": "turn on the light" })).await?;
//!     assert_eq!(reply["status"], "on");
//!     session.end();
//!     Ok(())
//! })
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::time::Instant;

// The whole API, written once in `psession-driver` (which re-exports the
// core's types); only `SessionManager` below is this runtime's own.
pub use psession_driver::*;

/// The session manager on smol: see [`psession_driver::SessionManager`].
pub type SessionManager<M = serde_json::Value> = psession_driver::SessionManager<Smol, M>;

/// The smol runtime, as the driver sees it.
#[derive(Debug, Clone, Copy)]
pub struct Smol;

/// smol's timer, completing at a deadline.
#[derive(Debug)]
pub struct SmolSleep(smol::Timer);

impl Future for SmolSleep {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Runtime for Smol {
    type Sleep = SmolSleep;

    fn now() -> Instant {
        Instant::now()
    }

    fn sleep_until(deadline: Instant) -> SmolSleep {
        SmolSleep(smol::Timer::at(deadline))
    }

    fn spawn<F>(task: F) -> Result<(), &'static str>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        smol::spawn(task).detach();
        Ok(())
    }
}
