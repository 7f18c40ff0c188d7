//! The state the core keeps for one session and its waiting send.

use std::collections::VecDeque;

use slab::Slab;

use crate::error::SessionError;
use crate::id::{PortId, SessionId};
use crate::timer::Armed;

/// One live session.
pub(crate) struct Slot<M> {
    pub(crate) generation: u64,
    pub(crate) port: PortId,
    pub(crate) sid: u32,
    /// Opened by the peer.
    pub(crate) incoming: bool,
    /// A send on it ended without a reply and nothing has arrived since:
    /// the next unsolicited message is counted as a late reply.
    pub(crate) late_pending: bool,
    /// Neighbours in the port's creation-order list.
    pub(crate) prev: u32,
    pub(crate) next: u32,
    pub(crate) last_activity: u64,
    pub(crate) timer: Armed,
    pub(crate) waiting: Option<Waiting>,
    /// Messages that arrived with no send waiting, for `recv`.
    pub(crate) inbox: Inbox<M>,
}

/// A session's queue of messages for `recv`. Most sessions never queue
/// one, so the queue is allocated on first use: an idle session carries one
/// pointer instead of an empty `VecDeque` (8 bytes instead of 32).
#[allow(clippy::box_collection)] // the point: one pointer while unused
pub(crate) struct Inbox<M>(Option<Box<VecDeque<M>>>);

impl<M> Default for Inbox<M> {
    fn default() -> Self {
        Inbox(None)
    }
}

impl<M> Inbox<M> {
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |queue| queue.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn push_back(&mut self, message: M) {
        self.0
            .get_or_insert_with(Default::default)
            .push_back(message);
    }

    pub(crate) fn pop_front(&mut self) -> Option<M> {
        self.0.as_mut()?.pop_front()
    }
}

impl<M> Slot<M> {
    /// The handle of this session, stored under `key`.
    pub(crate) fn id(&self, key: u32) -> SessionId {
        SessionId {
            port: self.port,
            sid: self.sid,
            key,
            generation: self.generation,
        }
    }

    /// When this session next needs attention: its send's deadline, or its
    /// expiry when idle.
    pub(crate) fn deadline(&self, max_life_ns: u64) -> u64 {
        match &self.waiting {
            Some(waiting) => waiting.deadline,
            None => self.last_activity.saturating_add(max_life_ns),
        }
    }
}

/// The live session `session` points to, or [`SessionError::Invalid`].
///
/// A free function over the slab (rather than a `Manager` method) so that
/// callers can hold the slot while using the manager's other fields.
pub(crate) fn live_slot<M>(
    sessions: &mut Slab<Slot<M>>,
    session: SessionId,
) -> Result<&mut Slot<M>, SessionError> {
    sessions
        .get_mut(session.key as usize)
        .filter(|slot| slot.generation == session.generation)
        .ok_or(SessionError::Invalid)
}

/// The send waiting on a session.
pub(crate) struct Waiting {
    pub(crate) number: u64,
    /// When the current attempt times out or, while backing off, when the
    /// next attempt goes out.
    pub(crate) deadline: u64,
    /// Key of its [`Retry`] in the manager's retry slab while retries remain,
    /// else `NIL`.
    pub(crate) retry: u32,
    /// Between a timed-out attempt and the next one.
    pub(crate) backing_off: bool,
}

/// What a send with retries left needs to transmit again. Kept apart from
/// [`Waiting`] so that sends without retries carry no copy and no
/// allocation.
pub(crate) struct Retry<M> {
    /// Transmissions still to make.
    pub(crate) left: u32,
    pub(crate) timeout_ns: u64,
    pub(crate) interval_ns: u64,
    pub(crate) message: M,
}
