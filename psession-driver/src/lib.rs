//! The async driver of [`psession_core`], written once for every runtime.
//!
//! Applications use it through `psession-tokio` or `psession-smol`, which
//! only say how to read the clock, sleep and spawn on their runtime (the
//! [`Runtime`] trait) and re-export everything here. This crate owns:
//!
//! - one core per manager behind a lock ([`SessionManager`]); the
//!   application's code (senders, the wakers of its futures) never runs
//!   while the lock is held, so a sender may call back into the manager;
//! - one driver task per manager whose single timer is re-armed to the
//!   core's next deadline;
//! - the futures and streams users await: [`Session::send`],
//!   [`Session::recv`], [`Events`], [`Outbound`].
//!
//! The layout: `manager.rs` ([`SessionManager`]), `port.rs` ([`Port`]),
//! `session.rs` ([`Session`], [`SessionHandle`]), `sender.rs` ([`Sender`],
//! [`Outbound`]), `events.rs` ([`Events`], [`ManagerEvent`]), `typed.rs`
//! (serde helpers), `shared.rs` (the locked core and how its outputs reach
//! the application), `outcome.rs` (the cell a send's outcome lands in,
//! read without the manager's lock), `wakers.rs` (wake-ups gathered under
//! a lock) and `timer.rs` (the driver task).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod events;
mod manager;
mod outcome;
mod port;
mod runtime;
mod sender;
mod session;
mod shared;
mod timer;
mod typed;
mod wakers;

pub use events::{Events, ManagerEvent};
pub use manager::SessionManager;
pub use port::{AsPort, Port};
pub use runtime::Runtime;
pub use sender::{Outbound, Sender};
pub use session::{Session, SessionHandle};

/// The core's types that appear in this API, so that users of an adapter
/// need no other import.
pub use psession_core::{
    Cause, CloseReason, DropReason, ManagerConfig, Message, OverflowCandidate, OverflowPolicy,
    PortId, PortOptions, PortStats, Routed, SendOptions, SessionError, SessionId, SidPartition,
    Stats,
};
