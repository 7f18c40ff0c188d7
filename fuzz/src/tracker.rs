//! The [`Tracker`]: what the harness knows about the manager, learned only
//! from its inputs and outputs (ports, sessions, sends, the clock), and the
//! bookkeeping of each call's effects.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;

use psession_core::{Counters, DropReason, Event, PortId, SendId, SessionId};
use serde_json::Value;

use crate::checks::{ensure, violated, START};
use crate::script::PortCfg;
use crate::step::Step;
use crate::track::{first_sid, PortTrack, SendState, SendTrack, SessTrack};

/// A hash map with a fast, fixed (so deterministic) hasher.
pub type Map<K, V> = HashMap<K, V, FixedState>;

/// Everything the harness knows.
#[derive(Debug)]
pub struct Tracker {
    /// The sid field.
    pub field: &'static str,
    /// The manager's defaults (a recreated default port gets them).
    pub defaults: PortCfg,
    /// Every port ever created, in order.
    pub ports: Vec<PortTrack>,
    /// Every session ever seen.
    pub sessions: Map<SessionId, SessTrack>,
    /// Every session ever seen, in creation order.
    pub order: Vec<SessionId>,
    /// The live sessions, in creation order.
    pub live: Vec<SessionId>,
    pub(crate) by_sid: Map<(PortId, u32), SessionId>,
    /// Every send ever made.
    pub sends: Map<SendId, SendTrack>,
    /// Every send ever made, in order.
    pub send_order: Vec<SendId>,
    /// Posts queued and not yet taken: port, session, tagged message.
    pub posts: VecDeque<(PortId, SessionId, Value)>,
    /// The manager's clock (nanoseconds since its first input).
    pub now: u64,
    /// The wall clock handed to the manager (nanoseconds since `base`).
    pub wall: u64,
    /// The harness's zero instant.
    pub base: Instant,
    pub(crate) counters: Counters,
    pub(crate) peak_live: usize,
    /// Where the next window of sessions to check starts.
    pub(crate) rotation: usize,
}

impl Tracker {
    /// A tracker for a manager whose default port has handle `default`.
    pub fn new(field: &'static str, defaults: PortCfg, default: PortId, base: Instant) -> Self {
        Tracker {
            field,
            ports: vec![PortTrack::new(default, "default", defaults.clone())],
            defaults,
            sessions: Map::default(),
            order: Vec::new(),
            live: Vec::new(),
            by_sid: Map::default(),
            sends: Map::default(),
            send_order: Vec::new(),
            posts: VecDeque::new(),
            now: 0,
            wall: START,
            base,
            counters: Counters::default(),
            peak_live: 0,
            rotation: 0,
        }
    }

    /// The instant the wall clock shows.
    pub fn wall_instant(&self) -> Instant {
        self.base + Duration::from_nanos(self.wall)
    }

    /// The instant of manager time `t`.
    pub fn instant(&self, t: u64) -> Option<Instant> {
        (self.base + Duration::from_nanos(START)).checked_add(Duration::from_nanos(t))
    }

    /// Takes the wall clock as the manager does on an input with `now`:
    /// never backwards, and never before its first input.
    pub fn advance(&mut self) {
        self.now = self.now.max(self.wall.saturating_sub(START));
    }

    /// The live port with this handle.
    pub fn port(&self, id: PortId) -> Option<&PortTrack> {
        self.ports.iter().find(|p| p.id == id && p.alive)
    }

    pub(crate) fn port_mut(&mut self, id: PortId) -> &mut PortTrack {
        match self.ports.iter_mut().find(|p| p.id == id) {
            Some(p) => p,
            None => violated!("unknown port {id:?}"),
        }
    }

    /// Registers a port; its handle must be new.
    pub fn add_port(&mut self, id: PortId, name: &'static str, cfg: PortCfg) {
        ensure!(
            self.ports.iter().all(|p| p.id != id),
            "port handle {id:?} reused"
        );
        self.ports.push(PortTrack::new(id, name, cfg));
    }

    /// The live session with `sid` on `port`.
    pub fn by_sid(&self, port: PortId, sid: u32) -> Option<SessionId> {
        self.by_sid.get(&(port, sid)).copied()
    }

    /// Whether `id` is live.
    pub fn is_live(&self, id: SessionId) -> bool {
        self.sessions.get(&id).is_some_and(|s| s.live)
    }

    /// The send waiting on `id`.
    pub fn pending(&self, id: SessionId) -> Option<SendId> {
        self.sessions.get(&id).and_then(|s| s.pending)
    }

    /// How many live sessions of `port` have a sid this side allocates.
    pub fn allocated(&self, port: PortId) -> u32 {
        let Some(p) = self.port(port) else { return 0 };
        self.live
            .iter()
            .filter(|id| id.port() == port && p.allocates(id.sid()))
            .count() as u32
    }

    /// The sid the allocator gives next on `port` (which is not full).
    pub fn next_free_sid(&mut self, port: PortId) -> u32 {
        let by_sid = &self.by_sid;
        let Some(p) = self.ports.iter_mut().find(|p| p.id == port && p.alive) else {
            violated!("no live port {port:?}")
        };
        let step = if p.cfg.partition == psession_core::SidPartition::All {
            1
        } else {
            2
        };
        loop {
            let sid = p.cursor;
            p.cursor = match sid.checked_add(step) {
                Some(next) if next <= p.cfg.max_count => next,
                _ => first_sid(&p.cfg),
            };
            if !by_sid.contains_key(&(port, sid)) {
                return sid;
            }
        }
    }

    /// Registers a new session (opened here or by the peer).
    pub fn add_session(&mut self, id: SessionId, incoming: bool, first: Option<Value>) {
        ensure!(
            !self.sessions.contains_key(&id),
            "session handle {id:?} reused"
        );
        let Some(p) = self.port(id.port()) else {
            violated!("session {id:?} opened on a dead port")
        };
        let (allocates, max_incoming) = (p.allocates(id.sid()), p.cfg.max_incoming);
        ensure!(id.sid() != 0, "sid 0 given to {id:?}");
        if let Some(other) = self.by_sid(id.port(), id.sid()) {
            violated!(
                "sid {} given to two live sessions: {other:?} and {id:?}",
                id.sid()
            );
        }
        ensure!(
            incoming || allocates,
            "{id:?} opened here with a sid this side does not allocate"
        );
        self.sessions.insert(
            id,
            SessTrack {
                port: id.port(),
                sid: id.sid(),
                incoming,
                live: true,
                last: self.now,
                pending: None,
                inbox: first.into_iter().collect(),
                late_pending: false,
            },
        );
        self.order.push(id);
        self.live.push(id);
        self.by_sid.insert((id.port(), id.sid()), id);
        let incoming_now = self
            .live
            .iter()
            .filter(|s| s.port() == id.port() && self.sessions[s].incoming)
            .count() as u32;
        ensure!(
            incoming_now <= max_incoming,
            "{incoming_now} incoming sessions on {:?}, cap {max_incoming}",
            id.port()
        );
        self.peak_live = self.peak_live.max(self.live.len());
    }

    /// Registers a new send on `id` made at the current time.
    pub fn add_send(
        &mut self,
        id: SessionId,
        send: SendId,
        track: (u64, u64, u32),
        message: Value,
    ) {
        ensure!(!self.sends.contains_key(&send), "send id {send:?} reused");
        let (timeout, interval, retries) = track;
        self.sends.insert(
            send,
            SendTrack {
                session: id,
                sent_at: self.now,
                timeout,
                interval,
                retries,
                state: SendState::Pending,
                fired_through: None,
                message,
                transmissions: 0,
                queued: 1,
            },
        );
        self.send_order.push(send);
        let now = self.now;
        let s = self.session_mut(id);
        s.pending = Some(send);
        s.last = now;
        s.late_pending = false;
    }

    /// The tracked session `id` (it must be known).
    pub fn session_mut(&mut self, id: SessionId) -> &mut SessTrack {
        match self.sessions.get_mut(&id) {
            Some(s) => s,
            None => violated!("unknown session {id:?}"),
        }
    }

    /// A send ended without its reply (failed or withdrawn) at `at`.
    pub(crate) fn end_send(&mut self, send: SendId, state: SendState, at: u64) {
        let track = self.sends.get_mut(&send).expect("known send");
        track.state = state;
        let id = track.session;
        let s = self.session_mut(id);
        s.pending = None;
        s.late_pending = true;
        s.last = s.last.max(at);
    }

    /// Marks a send withdrawn (it was pending).
    pub fn withdrawn(&mut self, send: SendId, step: &mut Step) {
        let track = &self.sends[&send];
        ensure!(
            track.state == SendState::Pending,
            "withdraw returned true for a send that is not waiting ({:?})",
            track.state
        );
        step.touched.insert(track.session);
        self.end_send(send, SendState::Withdrawn, self.now);
    }

    /// A message was queued on `id` for `recv` (checks the drop of the
    /// oldest when full, `Readable`, and counts a late reply).
    pub fn queued(&mut self, id: SessionId, message: Value, step: &Step) {
        let now = self.now;
        let cap = self.port(id.port()).map_or(0, |p| p.cfg.inbox as usize);
        let s = self.session_mut(id);
        let was_empty = s.inbox.is_empty();
        let full = s.inbox.len() >= cap;
        s.last = now;
        let late = std::mem::take(&mut s.late_pending);
        if full {
            s.inbox.pop_front();
        }
        s.inbox.push_back(message);
        let sid = s.sid;
        ensure!(
            !full || step.dropped(sid, DropReason::InboxFull),
            "a full inbox on {id:?} took a message without reporting a drop"
        );
        let readable = step
            .events
            .iter()
            .any(|e| matches!(e, Event::Readable { session } if *session == id));
        ensure!(
            readable == was_empty,
            "Readable on {id:?}: emitted {readable}, inbox was empty {was_empty}"
        );
        if late {
            self.counters.late_replies += 1;
            self.port_mut(id.port()).counters.late_replies += 1;
        }
    }
}
