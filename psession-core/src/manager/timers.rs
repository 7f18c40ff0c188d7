//! Deadlines: firing them (timeouts, retries, expiry) and reporting the
//! next one.

use std::time::Instant;

use super::Manager;
use crate::error::SessionError;
use crate::event::{CloseReason, Transmit};
use crate::id::SendId;
use crate::message::Message;
use crate::port::NIL;
use crate::timer::TimerQueue;

impl<M: Message> Manager<M> {
    /// Processes every deadline at or before `now`: sends time out or are
    /// transmitted again, idle sessions expire.
    ///
    /// Every other input that takes `now` does this too; call this one when
    /// nothing else happens, at [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.compact_timers();
    }

    /// Fires every deadline at or before the current time.
    pub(super) fn fire_due(&mut self) {
        let now = self.now;
        while let Some(entry) = self.timers.peek() {
            if entry.at > now {
                break;
            }
            self.timers.pop();
            let key = entry.key;
            let Some(slot) = self.sessions.get_mut(key as usize) else {
                continue;
            };
            if !entry.is_current(&slot.timer) {
                continue;
            }
            TimerQueue::disarm(&mut slot.timer);
            let due = slot.deadline(self.ports[slot.port.index as usize].max_life_ns);
            if due > now {
                self.timers.arm(&mut slot.timer, key, due);
                continue;
            }
            self.fire(key, due, now);
        }
    }

    /// Acts on the deadline `due` of session `key`, which has passed.
    fn fire(&mut self, key: u32, due: u64, now: u64) {
        let slot = &mut self.sessions[key as usize];
        let Some(waiting) = slot.waiting.as_mut() else {
            self.close(key, CloseReason::Expired, &SessionError::Cancelled);
            return;
        };
        if waiting.retry == NIL {
            self.fail_waiting(key, Some(&SessionError::Timeout), due);
            return;
        }
        let retry = &mut self.retries[waiting.retry as usize];
        if !waiting.backing_off {
            waiting.backing_off = true;
            waiting.deadline = due.saturating_add(retry.interval_ns);
            self.timers.arm(&mut slot.timer, key, waiting.deadline);
            return;
        }
        // The pause is over: the next attempt.
        waiting.backing_off = false;
        waiting.deadline = due.saturating_add(retry.timeout_ns);
        retry.left -= 1;
        // An attempt whose whole wait is already past (the clock jumped) is
        // not worth sending.
        let transmit = waiting.deadline > now;
        let message = if retry.left == 0 {
            let last = self.retries.remove(waiting.retry as usize);
            waiting.retry = NIL;
            transmit.then_some(last.message)
        } else {
            transmit.then(|| retry.message.clone())
        };
        let send = SendId {
            key,
            number: waiting.number,
        };
        self.timers.arm(&mut slot.timer, key, waiting.deadline);
        if let Some(message) = message {
            self.transmits.push_back(Transmit {
                port: slot.port,
                session: slot.id(key),
                send: Some(send),
                message,
            });
        }
    }

    /// Arms the expiry of idle session `key` (a no-op if a send waits: its
    /// own deadline is armed and is earlier).
    pub(super) fn arm_expiry(&mut self, key: u32) {
        let slot = &mut self.sessions[key as usize];
        let due = slot.deadline(self.ports[slot.port.index as usize].max_life_ns);
        self.timers.arm(&mut slot.timer, key, due);
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called:
    /// the earliest deadline of any session, exactly, or `None` if nothing
    /// is scheduled.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        loop {
            let entry = self.timers.peek()?;
            let current = self
                .sessions
                .get_mut(entry.key as usize)
                .filter(|slot| entry.is_current(&slot.timer));
            let Some(slot) = current else {
                self.timers.pop();
                continue;
            };
            let due = slot.deadline(self.ports[slot.port.index as usize].max_life_ns);
            if due == entry.at {
                return self.instant(due);
            }
            debug_assert!(due > entry.at, "a deadline was armed too late");
            self.timers.pop();
            TimerQueue::disarm(&mut slot.timer);
            self.timers.arm(&mut slot.timer, entry.key, due);
        }
    }

    /// Rebuilds the deadline queue when stale entries outnumber live ones.
    pub(super) fn compact_timers(&mut self) {
        if self.timers.needs_compaction(self.sessions.len()) {
            self.timers.rebuild(
                self.sessions
                    .iter()
                    .map(|(key, slot)| (key as u32, slot.timer)),
            );
        }
    }
}
