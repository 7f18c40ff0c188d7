//! Deadlines: firing them (timeouts, retries, expiry) and reporting the
//! next one.

use std::time::Instant;

use super::Manager;
use crate::error::SessionError;
use crate::event::{CloseReason, Transmit};
use crate::id::SendId;
use crate::message::Message;
use crate::port::NIL;
use crate::timer::{Entry, Target, TimerQueue};

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

    /// Fires every deadline at or before the current time, in order.
    pub(super) fn fire_due(&mut self) {
        let now = self.now;
        while let Some(entry) = self.timers.peek() {
            if entry.at > now {
                break;
            }
            self.timers.pop();
            match entry.target() {
                Target::Send(key) => self.fire_send_entry(&entry, key, now),
                Target::Port(index) => self.fire_port(&entry, index),
            }
        }
    }

    /// Acts on an entry of key `key` of the `Waiting` slab: fires the
    /// deadline of the send that holds the key if it is the entry's time,
    /// or arms the key for it.
    fn fire_send_entry(&mut self, entry: &Entry, key: u32, now: u64) {
        if !self.timers.is_current_send(entry) {
            return;
        }
        self.timers.disarm_send(key);
        let Some(waiting) = self.waitings.get(key as usize) else {
            return;
        };
        if waiting.deadline == entry.at {
            self.fire_send(key, now);
        } else {
            self.timers.arm_send(key, waiting.deadline);
        }
    }

    /// Acts on the deadline of the send under `key`, which has passed.
    fn fire_send(&mut self, key: u32, now: u64) {
        let waiting = &mut self.waitings[key as usize];
        let (session, due) = (waiting.session, waiting.deadline);
        let Some(retry_key) = waiting.retry() else {
            self.fail_waiting(session, Some(&SessionError::Timeout), due);
            return;
        };
        let retry = &mut self.retries[retry_key as usize];
        if !waiting.backing_off() {
            waiting.set_backing_off(true);
            waiting.deadline = due.saturating_add(retry.interval_ns);
            self.timers.arm_send(key, waiting.deadline);
            return;
        }
        // The pause is over: the next attempt.
        waiting.set_backing_off(false);
        waiting.deadline = due.saturating_add(retry.timeout_ns);
        retry.left -= 1;
        if waiting.deadline <= now && retry.left > 0 {
            // The clock jumped past this attempt's whole wait, and maybe
            // past more: skip every further attempt whose wait (pause,
            // then timeout) also lies in the past at once, rather than one
            // by one (a million retries would be a million turns here).
            let cycle = retry.interval_ns.saturating_add(retry.timeout_ns);
            let lapsed = match cycle {
                0 => retry.left,
                cycle => ((now - waiting.deadline) / cycle).min(u64::from(retry.left)) as u32,
            };
            retry.left -= lapsed;
            waiting.deadline += u64::from(lapsed) * cycle;
        }
        // An attempt whose whole wait is already past (the clock jumped) is
        // not worth sending.
        let transmit = waiting.deadline > now;
        let message = if retry.left == 0 {
            let last = self.retries.remove(retry_key as usize);
            waiting.clear_retry();
            transmit.then_some(last.message)
        } else {
            transmit.then(|| retry.message.clone())
        };
        let send = SendId {
            key,
            number: waiting.number(),
        };
        self.timers.arm_send(key, waiting.deadline);
        if let Some(message) = message {
            let session = self.id_of(session);
            self.transmits.push_back(Transmit {
                port: session.port,
                session,
                send: Some(send),
                message,
            });
        }
    }

    /// Acts on an entry of port `index`: expires its next session to
    /// expire if that is the entry's time, and arms the port for the next.
    fn fire_port(&mut self, entry: &Entry, index: u32) {
        let Some(p) = self.ports.get_mut(index as usize) else {
            return;
        };
        if !entry.is_current(&p.timer) {
            return;
        }
        TimerQueue::disarm(&mut p.timer);
        if let Some((key, expiry)) = self.idle_first(index) {
            if expiry == entry.at {
                self.close(key, CloseReason::Expired, &SessionError::Cancelled);
            }
            self.arm_idle(index);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called:
    /// the earliest deadline of any session, exactly, or `None` if nothing
    /// is scheduled.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        loop {
            let entry = self.timers.peek()?;
            let due = match entry.target() {
                Target::Send(key) => {
                    if !self.timers.is_current_send(&entry) {
                        self.timers.pop();
                        continue;
                    }
                    let due = self.waitings.get(key as usize).map(|w| w.deadline);
                    if due == Some(entry.at) {
                        return self.instant(entry.at);
                    }
                    // Early (or the send is gone): arm again.
                    self.timers.pop();
                    self.timers.disarm_send(key);
                    if let Some(due) = due {
                        self.timers.arm_send(key, due);
                    }
                    due
                }
                Target::Port(index) => {
                    let current = self
                        .ports
                        .get(index as usize)
                        .is_some_and(|p| entry.is_current(&p.timer));
                    if !current {
                        self.timers.pop();
                        continue;
                    }
                    let due = self.idle_first(index).map(|(_, expiry)| expiry);
                    if due == Some(entry.at) {
                        return self.instant(entry.at);
                    }
                    // Early (or nothing left to expire): arm again.
                    self.timers.pop();
                    TimerQueue::disarm(&mut self.ports[index as usize].timer);
                    self.arm_idle(index);
                    due
                }
            };
            debug_assert!(
                due.is_none_or(|due| due > entry.at),
                "a deadline was armed too late"
            );
        }
    }

    /// A cheap lower bound of [`poll_timeout`](Self::poll_timeout): no
    /// deadline falls before the instant it returns, and when it returns
    /// `None`, so does `poll_timeout`.
    ///
    /// `poll_timeout` is exact, and to be exact it may have to repair the
    /// deadline queue (an entry left early by a session whose deadline
    /// moved later is pushed again at the real time). This one only looks
    /// at the queue's head: O(1), and `&self`. A driver that sleeps until
    /// some instant `armed` asks it after every input, and calls
    /// `poll_timeout` only when the bound comes before `armed`: that is the
    /// only way the next deadline can have moved earlier than the wake-up
    /// it has. Once `poll_timeout` has answered, the bound equals its
    /// answer until the next input.
    ///
    /// ```
    /// use psession_core::{Manager, ManagerConfig, SendOptions};
    /// use serde_json::json;
    /// use std::time::{Duration, Instant};
    ///
    /// let mut m = Manager::new(ManagerConfig::default()).unwrap();
    /// let now = Instant::now();
    /// let session = m.open_session(m.default_port(), now).unwrap();
    /// let options = SendOptions::default().timeout(Duration::from_secs(1));
    /// m.send(session, json!({ "q": 1 }), options, now).unwrap();
    /// let exact = m.poll_timeout().unwrap();
    /// assert!(m.timeout_lower_bound().unwrap() <= exact);
    /// ```
    pub fn timeout_lower_bound(&self) -> Option<Instant> {
        self.instant(self.timers.peek()?.at)
    }

    /// Drops the orphaned entries of the deadline queue when they may
    /// outnumber the live ones.
    pub(super) fn compact_timers(&mut self) {
        if self.timers.needs_compaction(self.sessions.len()) {
            self.reclaim_timers();
        }
    }

    /// Rebuilds the deadline queue from what is live: one entry per waiting
    /// send (at most), and the entries of ports with a session that may
    /// expire (the sessions with a send waiting are taken off the head of
    /// each list first; a port with none left is disarmed). Every orphan
    /// goes, and what remains is at most one entry per session: a port's
    /// entry stands for one of its sessions with no send waiting.
    #[cold]
    #[inline(never)]
    pub(super) fn reclaim_timers(&mut self) {
        let entries = self.timers.take();
        self.idle_drop_waiting_heads(&entries);
        let (ports, waitings) = (&mut self.ports, &self.waitings);
        self.timers.rebuild(
            entries,
            waitings.iter().map(|(key, _)| key as u32),
            |key| waitings.contains(key as usize),
            |entry, index| {
                ports.get_mut(index as usize).is_some_and(|p| {
                    if !entry.is_current(&p.timer) {
                        return false;
                    }
                    if p.idle_head == NIL {
                        TimerQueue::disarm(&mut p.timer);
                        return false;
                    }
                    true
                })
            },
        );
    }
}
