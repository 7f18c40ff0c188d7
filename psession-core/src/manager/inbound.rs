//! Inbound messages: routing them to sessions (or back to the caller),
//! opening incoming sessions, and `recv`.

use std::collections::VecDeque;
use std::time::Instant;

use super::Manager;
use crate::config::SidPartition;
use crate::error::SessionError;
use crate::event::{DropReason, Event, Routed};
use crate::id::{PortId, SessionId};
use crate::message::Message;
use crate::port::NIL;

impl<M: Message> Manager<M> {
    /// Whether `message` is a session message (seed: `isSession`).
    pub fn is_session(&self, message: &M) -> bool {
        self.sid_of(message).is_some()
    }

    /// The live session on `port` that `message` belongs to, if any
    /// (seed: `getSession`).
    pub fn session_for(&self, port: PortId, message: &M) -> Option<SessionId> {
        self.session(port, self.sid_of(message)?)
    }

    /// Routes a message that arrived on `port`.
    ///
    /// A session message for a live session completes its waiting send or
    /// is queued for [`recv`](Self::recv); one for an unknown sid opens an
    /// incoming session (up to the port's `max_incoming_sessions`). Anything
    /// else is handed back untouched as [`Routed::NotSession`].
    ///
    /// The returned [`Routed`] summarises what happened; the same facts
    /// also arrive as events ([`Event::Reply`], [`Event::Readable`],
    /// [`Event::Incoming`], [`Event::Dropped`]), so a driver that handles
    /// events only needs `Routed::NotSession` from it.
    pub fn handle_inbound(&mut self, port: PortId, message: M, now: Instant) -> Routed<M> {
        match self.sid_of(&message) {
            Some(sid) => self.handle_session_message(port, sid, message, now),
            None => Routed::NotSession(message),
        }
    }

    /// [`handle_inbound`](Self::handle_inbound) for a message whose sid the
    /// caller has already read ([`Message::sid`] of the manager's sid
    /// field), so that it is not read twice: a driver that hands
    /// non-session messages back before taking its lock does so.
    ///
    /// `sid` must be the message's own. Another one routes the message as
    /// if it carried that sid; `0` hands it back as
    /// [`Routed::NotSession`].
    pub fn handle_session_message(
        &mut self,
        port: PortId,
        sid: u32,
        message: M,
        now: Instant,
    ) -> Routed<M> {
        if sid == 0 {
            return Routed::NotSession(message);
        }
        let now = self.advance(now);
        let Ok(p) = self.port_ref(port) else {
            return self.drop_inbound(port, sid, DropReason::NoSuchPort);
        };
        if let Some(&key) = p.sids.get(&sid) {
            let session = SessionId {
                port,
                sid,
                key,
                generation: self.sessions[key as usize].generation(),
            };
            return self.deliver_to(session, message, now);
        }
        if p.settings.partition != SidPartition::All && p.allocates(sid) {
            return self.drop_inbound(port, sid, DropReason::UnknownSid);
        }
        if p.incoming >= p.settings.max_incoming_sessions {
            return self.drop_inbound(port, sid, DropReason::IncomingLimit);
        }
        let session = self.insert(port, sid, true, now);
        self.inbox(session.key).push_back(message);
        self.queued_messages += 1;
        self.events.push_back(Event::Incoming { session });
        Routed::Opened(session)
    }

    /// Delivers a message to a given session, whatever sid it carries
    /// (seed: `session.next(message)`): it completes the waiting send, or is
    /// queued for [`recv`](Self::recv).
    pub fn deliver(
        &mut self,
        session: SessionId,
        message: M,
        now: Instant,
    ) -> Result<Routed<M>, SessionError> {
        let now = self.advance(now);
        self.slot_mut(session)?;
        Ok(self.deliver_to(session, message, now))
    }

    fn deliver_to(&mut self, session: SessionId, message: M, now: u64) -> Routed<M> {
        let key = session.key;
        match self.take_waiting(key) {
            Some(send) => {
                self.idle_touch(key, now);
                self.events.push_back(Event::Reply {
                    session,
                    send,
                    message,
                });
                self.compact_timers();
                Routed::Reply(session)
            }
            None => {
                self.idle_touch(key, now);
                self.compact_timers();
                self.queue_message(session, message)
            }
        }
    }

    /// The `recv` queue of session `key`, made on first use.
    fn inbox(&mut self, key: u32) -> &mut VecDeque<M> {
        let slot = &mut self.sessions[key as usize];
        if slot.inbox == NIL {
            slot.inbox = self.inboxes.insert(VecDeque::new()) as u32;
        }
        &mut self.inboxes[slot.inbox as usize]
    }

    /// Queues a message on a session with no send waiting, dropping the
    /// oldest one if the queue is full.
    fn queue_message(&mut self, session: SessionId, message: M) -> Routed<M> {
        let slot = &mut self.sessions[session.key as usize];
        let p = &mut self.ports[slot.port as usize];
        if slot.late_pending() {
            slot.set_late_pending(false);
            p.counters.late_replies += 1;
            self.counters.late_replies += 1;
        }
        let capacity = p.settings.inbox_capacity as usize;
        let inbox = self.inbox(session.key);
        let was_empty = inbox.is_empty();
        let full = inbox.len() >= capacity;
        if full {
            inbox.pop_front();
        }
        inbox.push_back(message);
        if full {
            self.drop_inbound(session.port, session.sid, DropReason::InboxFull);
        } else {
            self.queued_messages += 1;
        }
        if was_empty {
            self.events.push_back(Event::Readable { session });
        }
        Routed::Queued(session)
    }

    /// Counts and reports a dropped inbound message.
    fn drop_inbound(&mut self, port: PortId, sid: u32, reason: DropReason) -> Routed<M> {
        let refused = u64::from(reason == DropReason::IncomingLimit);
        let port_counters = self
            .ports
            .get_mut(port.index as usize)
            .filter(|p| p.generation == port.generation)
            .map(|p| &mut p.counters);
        for counters in port_counters.into_iter().chain([&mut self.counters]) {
            counters.dropped_messages += 1;
            counters.incoming_refused += refused;
        }
        self.events.push_back(Event::Dropped { port, sid, reason });
        Routed::Dropped(reason)
    }

    /// Takes the next message queued on a session (one that arrived with no
    /// send waiting: a request from the peer, or a late reply).
    pub fn recv(&mut self, session: SessionId) -> Result<Option<M>, SessionError> {
        let inbox = self.slot_mut(session)?.inbox;
        let message = match inbox {
            NIL => None,
            inbox => self.inboxes[inbox as usize].pop_front(),
        };
        self.queued_messages -= usize::from(message.is_some());
        Ok(message)
    }
}
