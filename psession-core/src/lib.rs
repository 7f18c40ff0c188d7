//! # psession-core
//!
//! The deterministic, sans-IO heart of psession: request/response
//! *conversations* (sessions) over any message channel.
//!
//! Each message of a conversation carries a session id (`sid`) in a field of
//! its own; the [`Manager`] allocates sids per [`port`](PortId) (one port
//! per peer), tags outgoing messages, matches replies to the send waiting
//! for them, times sends out and retries them, opens sessions the peer
//! starts, and expires idle ones. It does no I/O, spawns nothing and never
//! reads a clock: the caller feeds it inputs with the current time and
//! polls its outputs, in the style of `quinn-proto`:
//!
//! ```text
//!   API calls ─┐                          ┌─► poll_transmit()  → the port's transport
//!   handle_inbound(port, msg, now) ──► Manager ─► poll_event()  → replies, failures, incoming, ...
//!   handle_timeout(now) ─┘                └─► poll_timeout()   → when to call handle_timeout
//! ```
//!
//! The async drivers `psession-tokio` and `psession-smol` run this loop for
//! you; use the core directly to embed psession in your own event loop, or
//! to test protocol logic on a virtual clock.
//!
//! ```
//! use psession_core::{Event, Manager, SendOptions, SessionError};
//! use serde_json::json;
//! use std::time::{Duration, Instant};
//!
//! let start = Instant::now(); // any Instant: the core only compares them
//! let mut manager = Manager::default();
//! let port = manager.default_port();
//! let session = manager.open_session(port, start)?;
//! manager.send(session, json!({"cmd": "ping"}), SendOptions::default().timeout(Duration::from_secs(5)), start)?;
//! assert!(manager.poll_transmit().is_some());
//! assert_eq!(manager.poll_timeout(), Some(start + Duration::from_secs(5)));
//!
//! // No reply: at the deadline the send fails with Timeout.
//! manager.handle_timeout(start + Duration::from_secs(5));
//! assert!(matches!(manager.poll_event(), Some(Event::SendFailed { error: SessionError::Timeout, .. })));
//! # Ok::<(), SessionError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod error;
mod event;
mod id;
mod manager;
mod message;
mod port;
mod session;
mod stats;
mod timer;

pub use config::{
    ManagerConfig, OverflowCandidate, OverflowHandler, OverflowPolicy, PortOptions, PortSettings,
    SendOptions, SidPartition,
};
pub use error::{Cause, SessionError};
pub use event::{CloseReason, DropReason, Event, Routed, Transmit};
pub use id::{PortId, SendId, SessionId};
pub use manager::{Manager, DEFAULT_PORT};
pub use message::Message;
pub use stats::{Counters, PortStats, Stats};
