//! What one call into the manager may do (besides firing what is due),
//! and what it did.

use std::collections::HashSet;

use foldhash::fast::FixedState;

use psession_core::{CloseReason, DropReason, Event, PortId, SendId, SessionError, SessionId};
use serde_json::Value;

/// Which sessions an explicit failure or closing of a step may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One session.
    Session(SessionId),
    /// Every session of a port.
    Port(PortId),
    /// Every session.
    All,
    /// One send.
    Send(SendId),
}

/// How a waiting send may fail in a step (besides timing out on the clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    /// Timed out by hand.
    Timeout,
    /// Cancelled.
    Cancelled,
    /// Aborted with this cause.
    Aborted(Option<String>),
    /// The transport failed.
    Transport,
}

/// What one call into the manager is allowed to do, and what it did.
#[derive(Debug, Default)]
pub struct Step {
    /// The call took `now` (it fires what is due first).
    pub now_taking: bool,
    /// The call was `handle_timeout` (it touches no session itself).
    pub handle_timeout: bool,
    /// Failures the call may cause.
    pub fails: Vec<(Scope, Fail)>,
    /// Closings the call may cause.
    pub closes: Vec<(Scope, CloseReason)>,
    /// The session message routed by the call: port, sid, message.
    pub inbound: Option<(PortId, u32, Value)>,
    /// The message `deliver`ed to a session.
    pub deliver: Option<(SessionId, Value)>,
    /// The sends waiting before the call.
    pub pending_before: Vec<SendId>,
    /// Every event the call produced.
    pub events: Vec<Event<Value>>,
    /// Sessions whose deadline the call itself set (it may be `now`).
    pub touched: HashSet<SessionId, FixedState>,
}

impl Step {
    /// A call that does not take `now`.
    pub fn plain() -> Self {
        Step::default()
    }

    /// A call that takes `now`.
    pub fn timed() -> Self {
        Step {
            now_taking: true,
            ..Step::default()
        }
    }

    /// Allows failing the sends in `scope` with `fail`.
    pub fn fail(mut self, scope: Scope, fail: Fail) -> Self {
        self.fails.push((scope, fail));
        self
    }

    /// Allows closing the sessions in `scope` for `reason`.
    pub fn close(mut self, scope: Scope, reason: CloseReason) -> Self {
        self.closes.push((scope, reason));
        self
    }

    /// Whether a `SendFailed` for `send` with `error` is this call's doing.
    pub(crate) fn allows_fail(&self, id: SessionId, send: SendId, error: &SessionError) -> bool {
        let fail = match error {
            SessionError::Timeout => Fail::Timeout,
            SessionError::Cancelled => Fail::Cancelled,
            SessionError::Aborted(cause) => Fail::Aborted(cause.as_ref().map(|c| c.to_string())),
            SessionError::Transport(_) => Fail::Transport,
            _ => return false,
        };
        self.fails
            .iter()
            .any(|(scope, f)| *f == fail && in_scope(*scope, id, Some(send)))
    }

    pub(crate) fn allows_close(&self, id: SessionId, reason: CloseReason) -> bool {
        self.closes
            .iter()
            .any(|(scope, r)| *r == reason && in_scope(*scope, id, None))
    }

    /// Whether one of the events is `SendFailed` for `send` with a transport error.
    pub fn transport_failed(&self, send: SendId) -> bool {
        self.events.iter().any(|e| {
            matches!(e, Event::SendFailed { send: s, error: SessionError::Transport(_), .. } if *s == send)
        })
    }

    /// Whether one of the events is `Dropped` with this reason and sid.
    pub fn dropped(&self, sid: u32, reason: DropReason) -> bool {
        self.events.iter().any(
            |e| matches!(e, Event::Dropped { sid: s, reason: r, .. } if *s == sid && *r == reason),
        )
    }
}

fn in_scope(scope: Scope, id: SessionId, send: Option<SendId>) -> bool {
    match scope {
        Scope::Session(s) => s == id,
        Scope::Port(p) => p == id.port(),
        Scope::All => true,
        Scope::Send(s) => Some(s) == send,
    }
}
