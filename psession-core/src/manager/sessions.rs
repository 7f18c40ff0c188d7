//! Opening sessions (sid allocation and overflow), looking them up, and
//! closing them.

use std::time::Instant;

use super::Manager;
use crate::config::{OverflowCandidate, OverflowPolicy};
use crate::error::SessionError;
use crate::event::{CloseReason, Event};
use crate::id::{PortId, SendId, SessionId};
use crate::message::Message;
use crate::port::{Port, NIL};
use crate::session::{live_slot, Slot};

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
                        session: slot.id(this),
                        sid: slot.sid,
                        last_activity: self.instant(slot.last_activity)?,
                        waiting: slot.waiting.is_some(),
                        incoming: slot.incoming,
                    });
                }
            }
            None
        })
    }

    /// Adds a live session with `sid` to `port` (newest in its list).
    pub(super) fn insert(&mut self, port: PortId, sid: u32, incoming: bool, now: u64) -> SessionId {
        self.session_generation += 1;
        let generation = self.session_generation;
        let p = &mut self.ports[port.index as usize];
        let entry = self.sessions.vacant_entry();
        let key = entry.key() as u32;
        let slot = entry.insert(Slot {
            generation,
            port,
            sid,
            incoming,
            late_pending: false,
            prev: p.newest,
            next: NIL,
            last_activity: now,
            timer: Default::default(),
            waiting: None,
            inbox: Default::default(),
        });
        self.timers
            .arm(&mut slot.timer, key, now.saturating_add(p.max_life_ns));
        match p.newest {
            NIL => p.oldest = key,
            newest => self.sessions[newest as usize].next = key,
        }
        p.newest = key;
        p.add(sid, key, incoming);
        self.compact_timers();
        SessionId {
            port,
            sid,
            key,
            generation,
        }
    }

    /// The live session `session` points to.
    pub(super) fn slot_mut(&mut self, session: SessionId) -> Result<&mut Slot<M>, SessionError> {
        live_slot(&mut self.sessions, session)
    }

    /// Whether the session is still open.
    pub fn is_live(&self, session: SessionId) -> bool {
        self.sessions
            .get(session.key as usize)
            .is_some_and(|slot| slot.generation == session.generation)
    }

    /// Whether a send is waiting on the session.
    pub fn is_waiting(&self, session: SessionId) -> bool {
        self.sessions
            .get(session.key as usize)
            .is_some_and(|slot| slot.generation == session.generation && slot.waiting.is_some())
    }

    /// The live session with this sid on `port`.
    pub fn session(&self, port: PortId, sid: u32) -> Option<SessionId> {
        let &key = self.port_ref(port).ok()?.sids.get(&sid)?;
        Some(self.sessions[key as usize].id(key))
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
        let slot = self.sessions.remove(key as usize);
        let id = slot.id(key);
        let p = &mut self.ports[slot.port.index as usize];
        match slot.prev {
            NIL => p.oldest = slot.next,
            prev => self.sessions[prev as usize].next = slot.next,
        }
        match slot.next {
            NIL => p.newest = slot.prev,
            next => self.sessions[next as usize].prev = slot.prev,
        }
        p.remove(slot.sid, slot.incoming);
        self.queued_messages -= slot.inbox.len();
        if let Some(waiting) = slot.waiting {
            p.waiting -= 1;
            self.waiting -= 1;
            if waiting.retry != NIL {
                self.retries.remove(waiting.retry as usize);
            }
            self.events.push_back(Event::SendFailed {
                session: id,
                send: SendId {
                    key,
                    number: waiting.number,
                },
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
            self.timers.clear();
        }
    }
}
