//! The manager's events, as a `futures_core::Stream`.

use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use psession_core::{DropReason, Message, PortId, SessionError};

use serde_json::Value;

use crate::session::Session;
use crate::shared::Shared;

/// Something the manager tells the application (the seed's
/// `manager.on(...)` events); see [`Events`] for a loop that handles them.
#[non_exhaustive]
pub enum ManagerEvent<M: Message + Send + 'static = Value> {
    /// The peer opened a session (seed: `session:create`). The [`Session`]
    /// already holds the peer's first message: `recv` it and answer with
    /// `send` or `post`. Dropping it ends the session.
    Incoming(Session<M>),
    /// A session was idle for its port's `session_max_life` and was ended.
    Expired {
        /// Its port.
        port: PortId,
        /// Its sid.
        sid: u32,
    },
    /// An inbound message was dropped (a flood beyond the incoming-session
    /// cap, a full inbox, a sid of the wrong partition, a destroyed port).
    Dropped {
        /// The port it arrived on.
        port: PortId,
        /// Its sid.
        sid: u32,
        /// Why it was dropped.
        reason: DropReason,
    },
    /// The transport failed to carry a `post` (a failed `send` reports the
    /// error to its caller instead).
    TransmitFailed {
        /// The port.
        port: PortId,
        /// The sid of the posting session.
        sid: u32,
        /// The transport's error.
        error: SessionError,
    },
}

impl<M: Message + Send + 'static> fmt::Debug for ManagerEvent<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManagerEvent::Incoming(session) => f.debug_tuple("Incoming").field(session).finish(),
            ManagerEvent::Expired { port, sid } => f
                .debug_struct("Expired")
                .field("port", port)
                .field("sid", sid)
                .finish(),
            ManagerEvent::Dropped { port, sid, reason } => f
                .debug_struct("Dropped")
                .field("port", port)
                .field("sid", sid)
                .field("reason", reason)
                .finish(),
            ManagerEvent::TransmitFailed { port, sid, error } => f
                .debug_struct("TransmitFailed")
                .field("port", port)
                .field("sid", sid)
                .field("error", error)
                .finish(),
        }
    }
}

/// The stream of [`ManagerEvent`]s, from
/// [`SessionManager::events`](crate::SessionManager::events).
///
/// One stream at a time: calling `events()` again ends the previous stream.
/// Events that happen before anyone listens are kept (incoming sessions
/// always; informational events up to 1024, then counted in
/// [`SessionManager::discarded_events`](crate::SessionManager::discarded_events)).
/// The stream ends when the manager is dropped.
///
/// ```no_run
/// # async fn demo(manager: psession_driver::SessionManager<impl psession_driver::Runtime>) {
/// use psession_driver::ManagerEvent;
/// use serde_json::json;
///
/// // The seed's `manager.on("session:create", ...)` with `session.on("next")`.
/// let mut events = manager.events();
/// while let Some(event) = events.next().await {
///     match event {
///         ManagerEvent::Incoming(mut session) => {
///             let request = session.recv().await;
///             if let Ok(request) = request {
///                 if request["command"] == "getTime" {
///                     let _ = session.post(json!({ "status": "success", "time": 0 })).await;
///                 }
///             }
///         }
///         ManagerEvent::Expired { port, sid } => println!("session {sid} on {port:?} expired"),
///         ManagerEvent::Dropped { sid, reason, .. } => println!("dropped sid {sid}: {reason:?}"),
///         other => println!("{other:?}"),
///     }
/// }
/// # }
/// ```
pub struct Events<M: Message + Send + 'static = Value> {
    pub(crate) shared: Arc<Shared<M>>,
    pub(crate) epoch: u64,
}

impl<M: Message + Send + 'static> fmt::Debug for Events<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Events(..)")
    }
}

impl<M: Message + Send + 'static> Events<M> {
    /// The next event, or `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<ManagerEvent<M>> {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    /// The next event if one is queued, without waiting.
    pub fn try_next(&mut self) -> Option<ManagerEvent<M>> {
        let mut state = self.shared.lock();
        if state.events.epoch != self.epoch {
            return None;
        }
        state.events.pop()
    }

    /// The next incoming session, skipping other events; `None` once the
    /// stream has ended.
    pub async fn next_session(&mut self) -> Option<Session<M>> {
        loop {
            if let ManagerEvent::Incoming(session) = self.next().await? {
                return Some(session);
            }
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<ManagerEvent<M>>> {
        let mut state = self.shared.lock();
        if state.events.epoch != self.epoch {
            return Poll::Ready(None);
        }
        if let Some(event) = state.events.pop() {
            return Poll::Ready(Some(event));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        state.events.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<M: Message + Send + 'static> Stream for Events<M> {
    type Item = ManagerEvent<M>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_event(cx)
    }
}
