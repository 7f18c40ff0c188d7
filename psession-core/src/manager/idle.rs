//! Each port's idle list: the sessions that may expire, by last activity,
//! oldest first, linked through their slots. Its first idle session is the
//! port's next to expire, and the only one the deadline queue knows of
//! (see `timer.rs`).
//!
//! Every session with no send waiting is in the list, at the place of its
//! last activity. A send leaves its session where it is, which costs
//! nothing (a round trip on the newest session of its port touches the
//! list not at all): a session with a send waiting never expires, so when
//! it comes to the head of the list it is taken out, and when its send
//! ends it goes back in at the place of its new activity, normally the
//! tail.
//!
//! So the list is ordered by each session's last activity *when it was
//! placed*. For a session with no send waiting that is its last activity
//! (any later activity moves it to the tail); a session with a send
//! waiting may have been active since, which only matters once its send
//! ends, and then it is placed again.

use std::cmp::Reverse;

use super::Manager;
use crate::message::Message;
use crate::port::{NIL, OUT};
use crate::timer::{Entry, Target};

impl<M: Message> Manager<M> {
    /// Records activity at `now` on session `key`, which has no send
    /// waiting (any it had has just ended), and places it in its port's
    /// idle list accordingly: at the tail, or left there if it is the tail
    /// already.
    #[inline(always)]
    pub(super) fn idle_touch(&mut self, key: u32, now: u64) {
        let slot = &mut self.sessions[key as usize];
        slot.last_activity = now;
        if slot.idle_next != NIL || slot.idle_prev == OUT {
            self.idle_move(key);
        }
        // Otherwise it is the tail (or alone in the list): in place already.
    }

    /// Moves session `key` to its place in its port's idle list.
    fn idle_move(&mut self, key: u32) {
        self.idle_unlink(key);
        self.idle_link(key);
    }

    /// Puts session `key`, not in its port's idle list, in it after every
    /// session placed no later than it: at the tail, since activity only
    /// ever happens at the latest time the manager has seen. If it becomes
    /// the head, the port's expiry is armed for it.
    pub(super) fn idle_link(&mut self, key: u32) {
        let sessions = &mut self.sessions;
        let slot = &sessions[key as usize];
        let (last, index) = (slot.last_activity, slot.port);
        let p = &mut self.ports[index as usize];
        let mut prev = p.idle_tail;
        // Never taken in practice (see above); it keeps the order whatever
        // happens.
        while prev != NIL && sessions[prev as usize].last_activity > last {
            prev = sessions[prev as usize].idle_prev;
        }
        let next = match prev {
            NIL => std::mem::replace(&mut p.idle_head, key),
            prev => std::mem::replace(&mut sessions[prev as usize].idle_next, key),
        };
        match next {
            NIL => p.idle_tail = key,
            next => sessions[next as usize].idle_prev = key,
        }
        let slot = &mut sessions[key as usize];
        slot.idle_prev = prev;
        slot.idle_next = next;
        if prev == NIL {
            let expiry = last.saturating_add(p.max_life_ns);
            self.timers.arm(&mut p.timer, index, expiry);
        }
    }

    /// Takes session `key` out of its port's idle list, if it is in it.
    /// The port's armed expiry stays: the new head expires no earlier.
    pub(super) fn idle_unlink(&mut self, key: u32) {
        let sessions = &mut self.sessions;
        let slot = &mut sessions[key as usize];
        let (prev, next) = (slot.idle_prev, slot.idle_next);
        if prev == OUT {
            return;
        }
        slot.idle_prev = OUT;
        slot.idle_next = NIL;
        let p = &mut self.ports[slot.port as usize];
        match prev {
            NIL => p.idle_head = next,
            prev => sessions[prev as usize].idle_next = next,
        }
        match next {
            NIL => p.idle_tail = prev,
            next => sessions[next as usize].idle_prev = prev,
        }
    }

    /// The session of port `index` that expires next, with its expiry:
    /// the head of its idle list, once the sessions with a send waiting are
    /// taken off the head.
    pub(super) fn idle_first(&mut self, index: u32) -> Option<(u32, u64)> {
        loop {
            let p = &self.ports[index as usize];
            let head = p.idle_head;
            if head == NIL {
                return None;
            }
            let slot = &self.sessions[head as usize];
            if !slot.is_waiting() {
                return Some((head, slot.last_activity.saturating_add(p.max_life_ns)));
            }
            self.idle_unlink(head);
        }
    }

    /// Takes the sessions with a send waiting off the head of the idle
    /// lists of the ports that have `entries` (for a rebuild of the
    /// deadline queue).
    pub(super) fn idle_drop_waiting_heads(&mut self, entries: &[Reverse<Entry>]) {
        for Reverse(entry) in entries {
            if let Target::Port(index) = entry.target() {
                if self.ports.contains(index as usize) {
                    self.idle_first(index);
                }
            }
        }
    }

    /// Arms port `index`'s expiry for its next session to expire, if any.
    pub(super) fn arm_idle(&mut self, index: u32) {
        if let Some((_, expiry)) = self.idle_first(index) {
            let p = &mut self.ports[index as usize];
            self.timers.arm(&mut p.timer, index, expiry);
        }
    }
}
