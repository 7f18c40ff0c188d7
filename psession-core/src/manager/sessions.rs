//! Opening sessions (sid allocation and overflow), looking them up, and
//! closing them.

use std::time::Instant;

use super::Manager;
use crate::config::{OverflowCandidate, OverflowPolicy};
use crate::error::SessionError;
use crate::event::{CloseReason, Event};
use crate::id::{PortId, SessionId};
use crate::message::Message;
use crate::port::{Port, NIL};
use crate::session::{live_slot, Slot, MAX_GENERATION};
use crate::timer::TimerQueue;

impl<M: Message> Manager<M> {
    /// Opens a session on `port` with the next free sid.
    ///
    /// When the port has no free sid its overflow policy decides: recycle a
    /// session (closed with [`CloseReason::Recycled`], its waiting send
    /// failed with [`SessionError::Cancelled`]) or refuse with
    /// [`SessionError::Exhausted`].
    pub fn open_session(&mut self, port: PortId, now: Instant) -> Result<SessionId, SessionError> {
        let now = self.advance(now);
        self.port_ref(port)?;
        let sid = self.allocate_sid(port)?;
        Ok(self.insert(port, sid, false, now))
    }

    fn allocate_sid(&mut self, port: PortId) -> Result<u32, SessionError> {
        let p = &mut self.ports[port.index as usize];
        if !p.is_full() {
            return Ok(p.next_free_sid());
        }
        let p = &self.ports[port.index as usize];
        let victim = match &p.settings.overflow {
            OverflowPolicy::Reject => None,
            OverflowPolicy::RecycleOldest => self.candidates(p).next().map(|c| c.sid),
            OverflowPolicy::Custom(choose) => {
                let candidates: Vec<_> = self.candidates(p).collect();
                choose(&p.name, &candidates).filter(|sid| p.allocates(*sid))
            }
        };
        let key = victim
            .and_then(|sid| p.sids.get(&sid).copied())
            .ok_or(SessionError::Exhausted)?;
        let sid = self.sessions[key as usize].sid;
        self.ports[port.index as usize].counters.recycled_sessions += 1;
        self.counters.recycled_sessions += 1;
        self.close(key, CloseReason::Recycled, &SessionError::Cancelled);
        Ok(sid)
    }

    /// The port's sessions whose sid this side allocates, oldest first.
    fn candidates<'a>(&'a self, port: &'a Port) -> impl Iterator<Item = OverflowCandidate> + 'a {
        let mut key = port.oldest;
        std::iter::from_fn(move || {
            while key != NIL {
                let slot = &self.sessions[key as usize];
                let this = key;
                key = slot.next;
                if port.allocates(slot.sid) {
                    return Some(OverflowCandidate {
                        session: self.id_of(this),
                        sid: slot.sid,
                        last_activity: self.instant(slot.last_activity)?,
                        waiting: slot.is_waiting(),
                        incoming: slot.incoming(),
                    });
                }
            }
            None
        })
    }

    /// Adds a live session with `sid` to `port` (newest in its list).
    pub(super) fn insert(&mut self, port: PortId, sid: u32, incoming: bool, now: u64) -> SessionId {
        self.session_generation = self.session_generation % MAX_GENERATION + 1;
        let generation = self.session_generation;
        let p = &mut self.ports[port.index as usize];
        let key = self.sessions.insert(Slot::new(
            generation, incoming, port.index, sid, p.newest, now,
        )) as u32;
        match p.newest {
            NIL => p.oldest = key,
            newest => self.sessions[newest as usize].next = key,
        }
        p.newest = key;
        p.add(sid, key, incoming);
        self.idle_link(key);
        self.compact_timers();
        SessionId {
            port,
            sid,
            key,
            generation,
        }
    }

    /// The live session `session` points to.
    pub(super) fn slot_mut(&mut self, session: SessionId) -> Result<&mut Slot, SessionError> {
        live_slot(&mut self.sessions, session)
    }

    /// Whether the session is still open.
    pub fn is_live(&self, session: SessionId) -> bool {
        self.sessions
            .get(session.key as usize)
            .is_some_and(|slot| slot.generation() == session.generation)
    }

    /// Whether a send is waiting on the session.
    pub fn is_waiting(&self, session: SessionId) -> bool {
        self.sessions
            .get(session.key as usize)
            .is_some_and(|slot| slot.generation() == session.generation && slot.is_waiting())
    }

    /// The live session with this sid on `port`.
    pub fn session(&self, port: PortId, sid: u32) -> Option<SessionId> {
        let &key = self.port_ref(port).ok()?.sids.get(&sid)?;
        Some(self.id_of(key))
    }

    /// Ends a session; its waiting send fails with [`SessionError::Cancelled`].
    /// Emits [`Event::Closed`] with [`CloseReason::Ended`].
    pub fn end(&mut self, session: SessionId) -> Result<(), SessionError> {
        self.slot_mut(session)?;
        self.close(session.key, CloseReason::Ended, &SessionError::Cancelled);
        Ok(())
    }

    /// Removes a session, failing its waiting send with `error`.
    pub(super) fn close(&mut self, key: u32, reason: CloseReason, error: &SessionError) {
        let id = self.id_of(key);
        let waiting = self.take_waiting(key);
        self.idle_unlink(key);
        let slot = self.sessions.remove(key as usize);
        let p = &mut self.ports[slot.port as usize];
        match slot.prev {
            NIL => p.oldest = slot.next,
            prev => self.sessions[prev as usize].next = slot.next,
        }
        match slot.next {
            NIL => p.newest = slot.prev,
            next => self.sessions[next as usize].prev = slot.prev,
        }
        p.remove(slot.sid, slot.incoming());
        if slot.inbox != NIL {
            self.queued_messages -= self.inboxes.remove(slot.inbox as usize).len();
        }
        if let Some(send) = waiting {
            self.events.push_back(Event::SendFailed {
                session: id,
                send,
                error: error.clone(),
            });
        }
        if reason == CloseReason::Expired {
            p.counters.expired_sessions += 1;
            self.counters.expired_sessions += 1;
        }
        self.events.push_back(Event::Closed {
            session: id,
            reason,
        });
        if self.sessions.is_empty() {
            // Nothing is live: every entry goes.
            let ports = &mut self.ports;
            self.timers.clear(|entry, index| {
                if let Some(p) = ports.get_mut(index as usize) {
                    if entry.is_current(&p.timer) {
                        TimerQueue::disarm(&mut p.timer);
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_go_back_to_one_after_the_largest() {
        let mut m: Manager = Manager::default();
        let port = m.default_port();
        // An arbitrary origin for this test, not a clock read by the core.
        let now = Instant::now(); // clock-check: test origin
        m.session_generation = MAX_GENERATION - 1;
        let last = m.open_session(port, now).unwrap();
        assert_eq!(last.generation, MAX_GENERATION);
        m.end(last).unwrap();
        let first = m.open_session(port, now).unwrap();
        assert_eq!((first.key, first.generation), (last.key, 1));
        assert!(!m.is_live(last) && m.is_live(first));
        assert!(matches!(m.end(last), Err(SessionError::Invalid)));
    }
}
