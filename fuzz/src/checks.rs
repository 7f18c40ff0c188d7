//! What the harness knows about the manager, learned only from its inputs
//! and its outputs, and the invariants checked against it.
//!
//! The [`Tracker`] is not a second implementation of the manager: it
//! follows the facts the manager reports (events, return values) and checks
//! each against the rules that must hold whatever the manager chose to do:
//! every send ends once, no deadline fires early or is missed, live sids
//! are unique, caps hold, stale handles stay dead. The deadlines it
//! expects come from the documented arithmetic (`sent + timeout`, then
//! `+ retry_interval`, `+ timeout`, ...; idle `last activity + max_life`).
use std::collections::HashSet;
use std::time::Instant;

use foldhash::fast::FixedState;

use psession_core::{
    CloseReason, DropReason, Event, Manager, PortId, SendId, SessionError, SessionId,
};
use serde_json::Value;

use crate::step::Step;
use crate::track::{nanos, SendState, SendTrack};
use crate::tracker::Tracker;

/// Where the manager's clock starts, in nanoseconds after the harness's
/// base instant: the wall clock may go up to ten days before it.
pub const START: u64 = 10 * 86_400 * 1_000_000_000;

/// Stops the run with a message naming the broken invariant.
macro_rules! violated {
    ($($arg:tt)*) => {
        panic!("psession-fuzz: invariant violated: {}", format_args!($($arg)*))
    };
}
pub(crate) use violated;

/// Checks a condition that must hold.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::checks::violated!($($arg)*);
        }
    };
}
pub(crate) use ensure;
impl Tracker {
    /// Takes every event and checks each against the step's allowance.
    pub fn settle(&mut self, m: &mut Manager, step: &mut Step) {
        while let Some(event) = m.poll_event() {
            self.process(&event, step);
            step.events.push(event);
        }
    }

    pub(crate) fn process(&mut self, event: &Event<Value>, step: &mut Step) {
        match event {
            Event::Reply {
                session,
                send,
                message,
            } => {
                let track = self.waiting_send(*session, *send, event);
                let _ = track;
                let expected = match (&step.inbound, &step.deliver) {
                    (Some((port, sid, m)), _)
                        if *port == session.port() && *sid == session.sid() =>
                    {
                        m
                    }
                    (_, Some((id, m))) if id == session => m,
                    _ => violated!("reply {event:?} without a message for that session"),
                };
                ensure!(
                    message == expected,
                    "reply {message} is not the message routed {expected}"
                );
                self.sends.get_mut(send).expect("known").state = SendState::Ended;
                let now = self.now;
                let s = self.session_mut(*session);
                s.pending = None;
                s.last = now;
                step.touched.insert(*session);
            }
            Event::SendFailed {
                session,
                send,
                error,
            } => {
                let track = self.waiting_send(*session, *send, event);
                let deadline = track.final_deadline();
                let clock = matches!(error, SessionError::Timeout)
                    && step.now_taking
                    && deadline <= self.now;
                if clock {
                    self.end_send(*send, SendState::Ended, deadline);
                } else {
                    ensure!(
                        step.allows_fail(*session, *send, error),
                        "{send:?} on {session:?} failed with {error:?} at {} (final deadline {deadline}): \
                         not due, and not this call's doing",
                        self.now
                    );
                    step.touched.insert(*session);
                    self.end_send(*send, SendState::Ended, self.now);
                }
            }
            Event::Readable { session } => {
                ensure!(
                    self.is_live(*session),
                    "Readable for a dead session {session:?}"
                );
            }
            Event::Incoming { session } => {
                let Some((port, sid, message)) = step.inbound.clone() else {
                    violated!("Incoming {session:?} without an inbound message");
                };
                ensure!(
                    session.port() == port && session.sid() == sid,
                    "Incoming {session:?} for a message with sid {sid} on {port:?}"
                );
                let p = self.port(port).expect("live port");
                ensure!(
                    p.cfg.partition == psession_core::SidPartition::All || !p.allocates(sid),
                    "the peer opened {session:?} with a sid of this side's partition"
                );
                self.add_session(*session, true, Some(message));
                step.touched.insert(*session);
            }
            Event::Closed { session, reason } => self.closed(*session, *reason, step),
            Event::Dropped { port, sid, reason } => {
                let routed = matches!(&step.inbound, Some((p, s, _)) if p == port && s == sid);
                let delivered = *reason == DropReason::InboxFull
                    && matches!(&step.deliver, Some((id, _)) if id.port() == *port && id.sid() == *sid);
                ensure!(
                    routed || delivered,
                    "{event:?} without a matching inbound message"
                );
                self.counters.dropped_messages += 1;
                let refused = u64::from(*reason == DropReason::IncomingLimit);
                self.counters.incoming_refused += refused;
                if let Some(p) = self.ports.iter_mut().find(|p| p.id == *port && p.alive) {
                    p.counters.dropped_messages += 1;
                    p.counters.incoming_refused += refused;
                }
            }
            other => violated!("unexpected event {other:?}"),
        }
    }

    /// The pending send an event ends; it must be `session`'s.
    fn waiting_send(&self, session: SessionId, send: SendId, event: &Event<Value>) -> &SendTrack {
        let Some(track) = self.sends.get(&send) else {
            violated!("{event:?} for a send never made");
        };
        ensure!(
            track.state == SendState::Pending,
            "{send:?} ended twice (or after it was withdrawn): {event:?}"
        );
        ensure!(
            track.session == session && self.pending(session) == Some(send),
            "{event:?} names the wrong session (the send is on {:?})",
            track.session
        );
        track
    }

    fn closed(&mut self, id: SessionId, reason: CloseReason, step: &Step) {
        let Some(s) = self.sessions.get(&id) else {
            violated!("Closed for a session never seen: {id:?}");
        };
        ensure!(s.live, "{id:?} closed twice ({reason:?})");
        ensure!(
            s.pending.is_none(),
            "{id:?} closed ({reason:?}) while {:?} still waits: that send is lost",
            s.pending
        );
        let p = self.port(id.port()).expect("live port");
        let max_life = nanos(p.cfg.max_life);
        match reason {
            CloseReason::Expired => {
                let expiry = s.last.saturating_add(max_life);
                ensure!(
                    step.now_taking && expiry <= self.now,
                    "{id:?} expired at {} but is idle until {expiry}",
                    self.now
                );
                self.counters.expired_sessions += 1;
                self.port_mut(id.port()).counters.expired_sessions += 1;
            }
            reason => {
                ensure!(
                    step.allows_close(id, reason),
                    "{id:?} closed ({reason:?}) by a call that may not close it"
                );
                if reason == CloseReason::Recycled {
                    let p = self.port(id.port()).expect("live port");
                    if p.cfg.overflow == crate::script::Overflow::Recycle {
                        let oldest = self
                            .live
                            .iter()
                            .find(|s| s.port() == id.port() && p.allocates(s.sid()));
                        ensure!(
                            oldest == Some(&id),
                            "recycled {id:?}, but the oldest is {oldest:?}"
                        );
                    }
                    self.counters.recycled_sessions += 1;
                    self.port_mut(id.port()).counters.recycled_sessions += 1;
                }
            }
        }
        let s = self.sessions.get_mut(&id).expect("known");
        s.live = false;
        s.inbox.clear();
        self.live.retain(|x| *x != id);
        self.by_sid.remove(&(id.port(), id.sid()));
    }

    /// The deadline of a live session: its send's next one, or its expiry.
    fn deadline(&self, id: SessionId) -> Option<u64> {
        let s = &self.sessions[&id];
        match s.pending {
            Some(send) => self.sends[&send].current_deadline(),
            None => {
                let p = self.port(s.port)?;
                Some(s.last.saturating_add(nanos(p.cfg.max_life)))
            }
        }
    }

    /// What `poll_timeout` must say: the earliest deadline of any session
    /// (`u64::MAX` nanoseconds stands for "never").
    pub fn expected_timeout(&self) -> Option<Instant> {
        let t = self
            .live
            .iter()
            .filter_map(|&id| self.deadline(id))
            .filter(|&t| t != u64::MAX)
            .min()?;
        self.instant(t)
    }

    /// After a call: deadlines it fired are recorded, none that was due is
    /// left, and the manager's state agrees with what the harness knows.
    pub fn after(&mut self, m: &mut Manager, step: &Step) {
        if step.now_taking {
            let now = self.now;
            for send in &step.pending_before {
                let track = self.sends.get_mut(send).expect("known");
                if track.state == SendState::Pending {
                    track.queued += track.retries_queued(track.fired_through, now);
                    track.fired_through = Some(now);
                    ensure!(
                        track.final_deadline() > now,
                        "{send:?} still waits at {now}, past its final deadline {}",
                        track.final_deadline()
                    );
                }
            }
            for &id in &self.live {
                let Some(due) = self.deadline(id) else {
                    violated!("{id:?} waits with no deadline left")
                };
                let touched = step.touched.contains(&id) && !step.handle_timeout;
                ensure!(
                    due > now || (touched && due == now),
                    "{id:?} was due at {due} and is still there at {now} (missed deadline)"
                );
            }
        }
        self.check_state(m, Some(&step.touched));
    }

    /// The manager's counts and answers agree with the harness's.
    pub fn check_state(
        &mut self,
        m: &mut Manager,
        touched: Option<&HashSet<SessionId, FixedState>>,
    ) {
        let stats = m.stats();
        let alive_ports = self.ports.iter().filter(|p| p.alive).count();
        ensure!(
            stats.ports == alive_ports,
            "{} ports, expected {alive_ports}",
            stats.ports
        );
        ensure!(
            stats.live_sessions == self.live.len(),
            "{} live sessions, expected {}",
            stats.live_sessions,
            self.live.len()
        );
        // One pass over the live sessions: totals, and per port (live,
        // incoming, waiting, allocated).
        let mut per_port: Vec<(PortId, [u32; 4])> = Vec::new();
        let (mut waiting, mut queued) = (0, 0);
        for id in &self.live {
            let s = &self.sessions[id];
            waiting += usize::from(s.pending.is_some());
            queued += s.inbox.len();
            let i = match per_port.iter().position(|(p, _)| *p == s.port) {
                Some(i) => i,
                None => {
                    per_port.push((s.port, [0; 4]));
                    per_port.len() - 1
                }
            };
            let allocates = self.port(s.port).is_some_and(|p| p.allocates(s.sid));
            let counts = &mut per_port[i].1;
            counts[0] += 1;
            counts[1] += u32::from(s.incoming);
            counts[2] += u32::from(s.pending.is_some());
            counts[3] += u32::from(allocates);
        }
        ensure!(
            stats.waiting_sends == waiting,
            "{} waiting sends, expected {waiting}",
            stats.waiting_sends
        );
        ensure!(
            stats.queued_messages == queued,
            "{} queued messages, expected {queued}",
            stats.queued_messages
        );
        ensure!(stats.queued_events == 0, "events left after draining");
        ensure!(
            stats.counters == self.counters,
            "counters {:?}, expected {:?}",
            stats.counters,
            self.counters
        );
        ensure!(
            stats.timer_entries <= 3 * self.peak_live + 66,
            "deadline queue grows: {} entries, at most {} live sessions ever",
            stats.timer_entries,
            self.peak_live
        );
        for p in &self.ports {
            if !p.alive {
                ensure!(
                    m.port_stats(p.id).is_err(),
                    "destroyed port {:?} has stats",
                    p.id
                );
                ensure!(
                    m.port_name(p.id).is_none(),
                    "destroyed port {:?} has a name",
                    p.id
                );
                continue;
            }
            let ps = match m.port_stats(p.id) {
                Ok(ps) => ps,
                Err(e) => violated!("port {:?} ({}) refused: {e}", p.id, p.name),
            };
            let [live, incoming, waiting, allocated] = per_port
                .iter()
                .find(|(id, _)| *id == p.id)
                .map_or([0; 4], |(_, counts)| *counts);
            ensure!(
                (ps.live_sessions, ps.incoming_sessions, ps.waiting_sends)
                    == (live, incoming, waiting),
                "port {} stats {ps:?}, expected {live} live, {incoming} incoming, {waiting} waiting",
                p.name
            );
            ensure!(
                ps.counters == p.counters,
                "port {} counters {:?}, expected {:?}",
                p.name,
                ps.counters,
                p.counters
            );
            ensure!(
                incoming <= p.cfg.max_incoming,
                "port {}: {incoming} incoming sessions, cap {}",
                p.name,
                p.cfg.max_incoming
            );
            ensure!(
                allocated <= p.capacity(),
                "port {}: more sessions than sids",
                p.name
            );
            ensure!(
                m.port_name(p.id) == Some(p.name) && m.port(p.name) == Some(p.id),
                "port {} lookup",
                p.name
            );
        }
        // The live sessions answer as expected: all of them while they are
        // few, else those this call touched and a rotating window (the end
        // of the run checks them all); so do the latest dead ones.
        let live = &self.live;
        let sample: Vec<SessionId> = match touched {
            Some(touched) if live.len() > 128 => {
                let start = self.rotation % live.len();
                let window = live.iter().cycle().skip(start).take(64);
                touched.iter().chain(window).copied().collect()
            }
            _ => live.clone(),
        };
        self.rotation = self.rotation.wrapping_add(64);
        let recent_dead = self
            .order
            .iter()
            .rev()
            .take(64)
            .filter(|id| !self.is_live(**id));
        for &id in sample.iter().chain(recent_dead) {
            let s = &self.sessions[&id];
            ensure!(
                m.is_live(id) == s.live,
                "is_live({id:?}) should be {}",
                s.live
            );
            ensure!(
                m.is_waiting(id) == s.pending.is_some(),
                "is_waiting({id:?}) should be {}",
                s.pending.is_some()
            );
            let owner = m.session(id.port(), id.sid());
            if s.live {
                ensure!(
                    owner == Some(id),
                    "session({:?}, {}) is {owner:?}, not {id:?}",
                    id.port(),
                    id.sid()
                );
            } else {
                ensure!(owner != Some(id), "dead {id:?} still found by its sid");
            }
        }
        for send in self.send_order.iter().rev().take(32) {
            let pending = self.sends[send].state == SendState::Pending;
            ensure!(
                m.is_send_waiting(*send) == pending,
                "is_send_waiting({send:?}) should be {pending}"
            );
        }
    }
}
