//! Outputs of the core: messages to transmit, events, and the outcome of
//! routing an inbound message.

use crate::error::SessionError;
use crate::id::{PortId, SendId, SessionId};

/// A message the core wants sent through a port's transport.
#[derive(Debug, Clone)]
pub struct Transmit<M> {
    /// The port whose sender must carry it.
    pub port: PortId,
    /// The session it belongs to.
    pub session: SessionId,
    /// The send it belongs to (`None` for a post). If the transport fails,
    /// report it with [`Manager::handle_transmit_error`](crate::Manager::handle_transmit_error).
    pub send: Option<SendId>,
    /// The message, already tagged with the session's sid.
    pub message: M,
}

/// Something the application should know about.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event<M> {
    /// A waiting send got its reply.
    Reply {
        /// The session.
        session: SessionId,
        /// The send that completed.
        send: SendId,
        /// The reply.
        message: M,
    },
    /// A waiting send ended without a reply.
    SendFailed {
        /// The session.
        session: SessionId,
        /// The send that failed.
        send: SendId,
        /// Why it failed.
        error: SessionError,
    },
    /// A message arrived for a session with no send waiting; take it with
    /// [`Manager::recv`](crate::Manager::recv). Emitted when the session's
    /// queue goes from empty to non-empty.
    Readable {
        /// The session.
        session: SessionId,
    },
    /// The peer opened a session (seed: `session:create`); its first message
    /// waits in [`Manager::recv`](crate::Manager::recv).
    Incoming {
        /// The new session.
        session: SessionId,
    },
    /// A session ended; its handle is now refused.
    Closed {
        /// The session that ended.
        session: SessionId,
        /// Why it ended.
        reason: CloseReason,
    },
    /// An inbound message was dropped.
    Dropped {
        /// The port it arrived on.
        port: PortId,
        /// The sid it carried.
        sid: u32,
        /// Why it was dropped.
        reason: DropReason,
    },
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// [`Manager::end`](crate::Manager::end) was called.
    Ended,
    /// It stayed idle for `session_max_life`.
    Expired,
    /// Its sid was recycled for a new session by the overflow policy.
    Recycled,
    /// Its port was destroyed.
    PortDestroyed,
    /// Its port or manager was cleared.
    Cleared,
}

/// Why an inbound message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// It would open a session from the peer, but the port already has
    /// `max_incoming_sessions` of them.
    IncomingLimit,
    /// Its session's `recv` queue was full; the oldest queued message was
    /// dropped to make room for it.
    InboxFull,
    /// Its sid belongs to this side's partition but no live session has it
    /// (a reply to a session that has ended).
    UnknownSid,
    /// The port it was routed to does not exist.
    NoSuchPort,
}

/// What [`Manager::handle_inbound`](crate::Manager::handle_inbound) did with a message.
#[derive(Debug)]
pub enum Routed<M> {
    /// It was the reply of a waiting send ([`Event::Reply`] carries it).
    Reply(SessionId),
    /// It was queued on a live session with no send waiting.
    Queued(SessionId),
    /// It opened a new incoming session ([`Event::Incoming`]).
    Opened(SessionId),
    /// It is not a session message: here it is back, untouched.
    NotSession(M),
    /// It was dropped ([`Event::Dropped`] says so too).
    Dropped(DropReason),
}
