//! Sends and posts, and every way a waiting send ends without its reply.

use std::time::Instant;

use super::Manager;
use crate::config::SendOptions;
use crate::error::{Cause, SessionError};
use crate::event::{Event, Transmit};
use crate::id::{SendId, SessionId};
use crate::message::Message;
use crate::port::NIL;
use crate::session::{live_slot, Retry, Waiting};
use crate::timer::nanos;

impl<M: Message> Manager<M> {
    /// Tags `message` with the session's sid, queues it for transmission and
    /// waits for the reply; the outcome arrives as [`Event::Reply`] or
    /// [`Event::SendFailed`] with the returned [`SendId`].
    ///
    /// Fails at once with [`SessionError::Invalid`] (stale handle),
    /// [`SessionError::Busy`] (a send already waits) or
    /// [`SessionError::Untaggable`].
    pub fn send(
        &mut self,
        session: SessionId,
        mut message: M,
        options: SendOptions,
        now: Instant,
    ) -> Result<SendId, SessionError> {
        let now = self.advance(now);
        let slot = live_slot(&mut self.sessions, session)?;
        if slot.is_waiting() {
            return Err(SessionError::Busy);
        }
        if !message.set_sid(&self.id_field, slot.sid) {
            return Err(SessionError::Untaggable);
        }
        let p = &mut self.ports[slot.port as usize];
        let timeout_ns = options.timeout.map_or(p.timeout_ns, nanos);
        let retries = options.retry_count.unwrap_or(p.settings.retry_count);
        let retry = (retries > 0).then(|| {
            self.retries.insert(Retry {
                left: retries,
                timeout_ns,
                interval_ns: options.retry_interval.map_or(p.retry_interval_ns, nanos),
                message: message.clone(),
            }) as u32
        });
        p.waiting += 1;
        self.send_number += 1;
        let number = self.send_number;
        let deadline = now.saturating_add(timeout_ns);
        let key = self
            .waitings
            .insert(Waiting::new(session.key, number, deadline, retry)) as u32;
        slot.waiting = key;
        slot.last_activity = now;
        slot.set_late_pending(false);
        self.timers.arm_send(key, deadline);
        let send = SendId { key, number };
        self.transmits.push_back(Transmit {
            port: session.port,
            session,
            send: Some(send),
            message,
        });
        self.compact_timers();
        Ok(send)
    }

    /// Tags `message` with the session's sid and queues it for transmission,
    /// without waiting for anything (seed: `post`). Counts as activity.
    pub fn post(
        &mut self,
        session: SessionId,
        mut message: M,
        now: Instant,
    ) -> Result<(), SessionError> {
        let now = self.advance(now);
        let slot = live_slot(&mut self.sessions, session)?;
        if !message.set_sid(&self.id_field, slot.sid) {
            return Err(SessionError::Untaggable);
        }
        if slot.is_waiting() {
            slot.last_activity = now;
        } else {
            self.idle_touch(session.key, now);
            self.compact_timers();
        }
        self.transmits.push_back(Transmit {
            port: session.port,
            session,
            send: None,
            message,
        });
        Ok(())
    }

    /// Fails the session's waiting send, if any, with [`SessionError::Cancelled`].
    pub fn cancel(&mut self, session: SessionId, now: Instant) -> Result<(), SessionError> {
        self.fail_session(session, SessionError::Cancelled, now)
    }

    /// Fails the session's waiting send, if any, with
    /// [`SessionError::Aborted`] carrying `cause`.
    pub fn abort(
        &mut self,
        session: SessionId,
        cause: Option<Cause>,
        now: Instant,
    ) -> Result<(), SessionError> {
        self.fail_session(session, SessionError::Aborted(cause), now)
    }

    /// Fails the session's waiting send, if any, with
    /// [`SessionError::Timeout`] at once (no retries).
    pub fn timeout(&mut self, session: SessionId, now: Instant) -> Result<(), SessionError> {
        self.fail_session(session, SessionError::Timeout, now)
    }

    fn fail_session(
        &mut self,
        session: SessionId,
        error: SessionError,
        now: Instant,
    ) -> Result<(), SessionError> {
        let now = self.advance(now);
        self.slot_mut(session)?;
        self.fail_waiting(session.key, Some(&error), now);
        Ok(())
    }

    /// Withdraws a send without reporting it (for a caller that stopped
    /// waiting, such as a dropped future). Returns whether it was still
    /// waiting. The session stays open; its queued transmissions of this
    /// send are discarded.
    pub fn withdraw(&mut self, send: SendId, now: Instant) -> bool {
        let now = self.advance(now);
        self.send_session(send)
            .is_some_and(|key| self.fail_waiting(key, None, now))
    }

    /// Reports that the transport could not carry a transmission of `send`:
    /// the send fails at once with [`SessionError::Transport`] and is not
    /// retried. Returns whether it was still waiting.
    pub fn handle_transmit_error(&mut self, send: SendId, cause: Cause, now: Instant) -> bool {
        let now = self.advance(now);
        self.send_session(send)
            .is_some_and(|key| self.fail_waiting(key, Some(&SessionError::Transport(cause)), now))
    }

    /// Whether `send` still waits for its reply (it has not ended in any
    /// way): it is the send waiting on its session. A driver uses it to drop
    /// queued transmissions of ended sends.
    pub fn is_send_waiting(&self, send: SendId) -> bool {
        self.send_session(send).is_some()
    }

    /// The session `send` waits on, if it still waits.
    fn send_session(&self, send: SendId) -> Option<u32> {
        self.waitings
            .get(send.key as usize)
            .filter(|waiting| waiting.number() == send.number)
            .map(|waiting| waiting.session)
    }

    /// Takes the waiting send of session `key`, if any, off it, with its
    /// retry state and the counters. The caller then places the session in
    /// its port's idle list, or closes it.
    #[inline]
    pub(super) fn take_waiting(&mut self, key: u32) -> Option<SendId> {
        let slot = &mut self.sessions[key as usize];
        let send = std::mem::replace(&mut slot.waiting, NIL);
        if send == NIL {
            return None;
        }
        let waiting = self.waitings.remove(send as usize);
        if let Some(retry) = waiting.retry() {
            self.retries.remove(retry as usize);
        }
        self.ports[slot.port as usize].waiting -= 1;
        Some(SendId {
            key: send,
            number: waiting.number(),
        })
    }

    /// Ends the waiting send of session `key` without a reply, reporting
    /// `error` (or nothing, for a withdrawal). The session's idle clock
    /// restarts at `now` (unless it saw activity later), and the next
    /// message on it counts as a late reply.
    pub(super) fn fail_waiting(
        &mut self,
        key: u32,
        error: Option<&SessionError>,
        now: u64,
    ) -> bool {
        let Some(send) = self.take_waiting(key) else {
            return false;
        };
        let slot = &mut self.sessions[key as usize];
        slot.set_late_pending(true);
        let last = slot.last_activity.max(now);
        self.idle_touch(key, last);
        if let Some(error) = error {
            self.events.push_back(Event::SendFailed {
                session: self.id_of(key),
                send,
                error: error.clone(),
            });
        }
        self.compact_timers();
        true
    }
}
