//! The session manager: every input, every output.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;
use slab::Slab;

use crate::config::{ManagerConfig, OverflowCandidate, OverflowPolicy, PortOptions, SendOptions};
use crate::error::{Cause, SessionError};
use crate::event::{CloseReason, DropReason, Event, Routed, Transmit};
use crate::id::{PortId, SendId, SessionId};
use crate::message::Message;
use crate::port::{Port, NIL};
use crate::session::{Phase, Slot, Waiting};
use crate::stats::{Counters, PortStats, Stats};
use crate::timer::{nanos, TimerQueue, NEVER};

/// The name of the port every manager starts with.
pub const DEFAULT_PORT: &str = "default";

/// The sans-IO session manager: feed it inputs, poll its outputs.
///
/// Inputs are method calls: ports and sessions are opened and closed, sends
/// and posts are made, inbound messages are handed to
/// [`handle_inbound`](Self::handle_inbound), and time is reported with
/// [`handle_timeout`](Self::handle_timeout). Every call that depends on
/// time takes `now`; the manager never reads a clock, so the same inputs
/// always give the same outputs. A `now` earlier than one already seen is
/// treated as the latest one (a clock that goes back does not move).
///
/// Outputs are polled after each input: [`poll_transmit`](Self::poll_transmit)
/// (messages for the ports' transports), [`poll_event`](Self::poll_event)
/// (replies, failures, incoming sessions, ...), and
/// [`poll_timeout`](Self::poll_timeout) (when to call `handle_timeout`
/// next). Both queues only grow with the inputs that fill them, so drain
/// them after each input.
///
/// ```
/// use psession_core::{Event, Manager, ManagerConfig, Routed, SendOptions};
/// use serde_json::json;
/// use std::time::Instant;
///
/// let now = Instant::now();
/// let mut client: Manager = Manager::new(ManagerConfig::default())?;
/// let mut server: Manager = Manager::new(ManagerConfig::default())?;
/// let (c_port, s_port) = (client.default_port(), server.default_port());
///
/// // The client asks.
/// let session = client.open_session(c_port, now)?;
/// client.send(session, json!({"query": "getDeviceList"}), SendOptions::default(), now)?;
/// let request = client.poll_transmit().unwrap().message;
/// assert_eq!(request["sid"], 1);
///
/// // The server sees a new incoming session and answers on it.
/// let Routed::Opened(incoming) = server.handle_inbound(s_port, request, now) else { panic!() };
/// let asked = server.recv(incoming)?.unwrap();
/// assert_eq!(asked["query"], "getDeviceList");
/// server.post(incoming, json!({"devices": [{"id": 1}]}), now)?;
/// let answer = server.poll_transmit().unwrap().message;
///
/// // The client's send completes with the answer.
/// client.handle_inbound(c_port, answer, now);
/// match client.poll_event() {
///     Some(Event::Reply { message, .. }) => assert_eq!(message["devices"][0]["id"], 1),
///     other => panic!("{other:?}"),
/// }
/// client.end(session)?;
/// # Ok::<(), psession_core::SessionError>(())
/// ```
pub struct Manager<M: Message = Value> {
    id_field: Box<str>,
    defaults: crate::config::PortSettings,
    ports: Slab<Port>,
    port_names: HashMap<Box<str>, u32>,
    port_generation: u32,
    default_port: PortId,
    sessions: Slab<Slot<M>>,
    session_generation: u64,
    send_number: u64,
    timers: TimerQueue,
    epoch: Option<Instant>,
    now: u64,
    transmits: VecDeque<Transmit<M>>,
    events: VecDeque<Event<M>>,
    counters: Counters,
    waiting: usize,
    queued_messages: usize,
}

impl<M: Message> Manager<M> {
    /// A manager with the `"default"` port.
    ///
    /// Fails with [`SessionError::Config`] if the defaults are unusable
    /// (for example `max_session_count` 0).
    pub fn new(config: ManagerConfig) -> Result<Self, SessionError> {
        config.defaults.validate()?;
        let mut manager = Manager {
            id_field: config.session_id_name.into_boxed_str(),
            defaults: config.defaults,
            ports: Slab::new(),
            port_names: HashMap::new(),
            port_generation: 0,
            default_port: PortId {
                index: 0,
                generation: 0,
            },
            sessions: Slab::new(),
            session_generation: 0,
            send_number: 0,
            timers: TimerQueue::default(),
            epoch: None,
            now: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            waiting: 0,
            queued_messages: 0,
        };
        manager.default_port = manager.create_port(DEFAULT_PORT, PortOptions::default())?;
        Ok(manager)
    }

    // ----- clock -------------------------------------------------------

    /// Takes `now` as the current time; never goes backwards.
    fn advance(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        let t = now
            .checked_duration_since(epoch)
            .map_or(0, nanos)
            .min(NEVER - 1);
        self.now = self.now.max(t);
        self.now
    }

    fn instant(&self, t: u64) -> Option<Instant> {
        self.epoch?.checked_add(Duration::from_nanos(t))
    }

    // ----- ports -------------------------------------------------------

    /// The `"default"` port, created with the manager.
    pub fn default_port(&self) -> PortId {
        self.default_port
    }

    /// Creates a port: one peer, with its own sid space and settings.
    ///
    /// Fails with [`SessionError::PortExists`] if the name is taken, or
    /// [`SessionError::Config`] if the options are unusable.
    pub fn create_port(
        &mut self,
        name: &str,
        options: PortOptions,
    ) -> Result<PortId, SessionError> {
        if self.port_names.contains_key(name) {
            return Err(SessionError::PortExists(name.to_owned()));
        }
        let settings = options.apply(&self.defaults);
        settings.validate()?;
        self.port_generation = self.port_generation.wrapping_add(1);
        let generation = self.port_generation;
        let index = self
            .ports
            .insert(Port::new(name.into(), generation, settings)) as u32;
        self.port_names.insert(name.into(), index);
        Ok(PortId { index, generation })
    }

    /// The port with this name.
    pub fn port(&self, name: &str) -> Option<PortId> {
        let &index = self.port_names.get(name)?;
        Some(PortId {
            index,
            generation: self.ports[index as usize].generation,
        })
    }

    /// The name of a port, if it still exists.
    pub fn port_name(&self, port: PortId) -> Option<&str> {
        self.port_ref(port).ok().map(|p| &*p.name)
    }

    fn port_ref(&self, port: PortId) -> Result<&Port, SessionError> {
        self.ports
            .get(port.index as usize)
            .filter(|p| p.generation == port.generation)
            .ok_or(SessionError::NoSuchPort)
    }

    /// Destroys a port: every send waiting on it fails with
    /// [`SessionError::Aborted`], every session on it closes
    /// ([`CloseReason::PortDestroyed`]), and its queued transmissions are
    /// discarded. Its name is free again.
    pub fn destroy_port(&mut self, port: PortId) -> Result<(), SessionError> {
        self.close_port_sessions(
            port,
            CloseReason::PortDestroyed,
            SessionError::Aborted(None),
        )?;
        let removed = self.ports.remove(port.index as usize);
        self.port_names.remove(&removed.name);
        self.transmits.retain(|t| t.port != port);
        Ok(())
    }

    /// Ends every session on a port; waiting sends fail with
    /// [`SessionError::Cancelled`] ([`CloseReason::Cleared`]).
    pub fn clear_port(&mut self, port: PortId) -> Result<(), SessionError> {
        self.close_port_sessions(port, CloseReason::Cleared, SessionError::Cancelled)
    }

    fn close_port_sessions(
        &mut self,
        port: PortId,
        reason: CloseReason,
        error: SessionError,
    ) -> Result<(), SessionError> {
        let mut key = self.port_ref(port)?.oldest;
        while key != NIL {
            let next = self.sessions[key as usize].next;
            self.close(key, reason, &error);
            key = next;
        }
        Ok(())
    }

    /// Fails every send waiting on a port with [`SessionError::Cancelled`];
    /// the sessions stay open.
    pub fn cancel_port(&mut self, port: PortId, now: Instant) -> Result<(), SessionError> {
        self.fail_port(port, SessionError::Cancelled, now)
    }

    /// Fails every send waiting on a port with [`SessionError::Aborted`]
    /// carrying `cause`; the sessions stay open.
    pub fn abort_port(
        &mut self,
        port: PortId,
        cause: Option<Cause>,
        now: Instant,
    ) -> Result<(), SessionError> {
        self.fail_port(port, SessionError::Aborted(cause), now)
    }

    /// Fails every send waiting on a port with [`SessionError::Timeout`]
    /// at once, without retries; the sessions stay open.
    pub fn timeout_port(&mut self, port: PortId, now: Instant) -> Result<(), SessionError> {
        self.fail_port(port, SessionError::Timeout, now)
    }

    fn fail_port(
        &mut self,
        port: PortId,
        error: SessionError,
        now: Instant,
    ) -> Result<(), SessionError> {
        let now = self.advance(now);
        let mut key = self.port_ref(port)?.oldest;
        while key != NIL {
            self.fail_waiting(key, Some(&error), now);
            key = self.sessions[key as usize].next;
        }
        Ok(())
    }

    // ----- the whole manager -----------------------------------------

    /// Fails every waiting send of every port with [`SessionError::Cancelled`].
    pub fn cancel_all(&mut self, now: Instant) {
        self.fail_all(SessionError::Cancelled, now);
    }

    /// Fails every waiting send of every port with [`SessionError::Aborted`].
    pub fn abort_all(&mut self, cause: Option<Cause>, now: Instant) {
        self.fail_all(SessionError::Aborted(cause), now);
    }

    /// Fails every waiting send of every port with [`SessionError::Timeout`].
    pub fn timeout_all(&mut self, now: Instant) {
        self.fail_all(SessionError::Timeout, now);
    }

    fn fail_all(&mut self, error: SessionError, now: Instant) {
        let now = self.advance(now);
        let keys: Vec<u32> = self
            .sessions
            .iter()
            .filter(|(_, slot)| slot.waiting.is_some())
            .map(|(key, _)| key as u32)
            .collect();
        for key in keys {
            self.fail_waiting(key, Some(&error), now);
        }
    }

    /// Ends every session of every port (ports stay); waiting sends fail
    /// with [`SessionError::Cancelled`].
    pub fn clear(&mut self) {
        let keys: Vec<u32> = self.sessions.iter().map(|(key, _)| key as u32).collect();
        for key in keys {
            self.close(key, CloseReason::Cleared, &SessionError::Cancelled);
        }
    }

    // ----- sessions ----------------------------------------------------

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
                        session: self.id_of(this, slot),
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

    fn insert(&mut self, port: PortId, sid: u32, incoming: bool, now: u64) -> SessionId {
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
            inbox: VecDeque::new(),
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

    fn id_of(&self, key: u32, slot: &Slot<M>) -> SessionId {
        SessionId {
            port: slot.port,
            sid: slot.sid,
            key,
            generation: slot.generation,
        }
    }

    fn slot_mut(&mut self, session: SessionId) -> Result<&mut Slot<M>, SessionError> {
        self.sessions
            .get_mut(session.key as usize)
            .filter(|slot| slot.generation == session.generation)
            .ok_or(SessionError::Invalid)
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

    /// Ends a session; its waiting send fails with [`SessionError::Cancelled`].
    /// Emits [`Event::Closed`] with [`CloseReason::Ended`].
    pub fn end(&mut self, session: SessionId) -> Result<(), SessionError> {
        self.slot_mut(session)?;
        self.close(session.key, CloseReason::Ended, &SessionError::Cancelled);
        Ok(())
    }

    /// Removes a session, failing its waiting send with `error`.
    fn close(&mut self, key: u32, reason: CloseReason, error: &SessionError) {
        let slot = self.sessions.remove(key as usize);
        let id = self.id_of(key, &slot);
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

    // ----- sending -----------------------------------------------------

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
        let Manager {
            sessions,
            ports,
            timers,
            transmits,
            id_field,
            ..
        } = self;
        let slot = sessions
            .get_mut(session.key as usize)
            .filter(|slot| slot.generation == session.generation)
            .ok_or(SessionError::Invalid)?;
        if slot.waiting.is_some() {
            return Err(SessionError::Busy);
        }
        if !message.set_sid(id_field, slot.sid) {
            return Err(SessionError::Untaggable);
        }
        let p = &mut ports[session.port.index as usize];
        let timeout_ns = options.timeout.map_or(p.timeout_ns, nanos);
        let retries = options.retry_count.unwrap_or(p.settings.retry_count);
        let retry_interval_ns = options.retry_interval.map_or(p.retry_interval_ns, nanos);
        self.send_number += 1;
        let send = SendId {
            key: session.key,
            number: self.send_number,
        };
        let deadline = now.saturating_add(timeout_ns);
        slot.waiting = Some(Box::new(Waiting {
            number: send.number,
            phase: Phase::Awaiting { deadline },
            retries_left: retries,
            timeout_ns,
            retry_interval_ns,
            retained: (retries > 0).then(|| message.clone()),
        }));
        slot.last_activity = now;
        slot.late_pending = false;
        timers.arm(&mut slot.timer, session.key, deadline);
        p.waiting += 1;
        self.waiting += 1;
        transmits.push_back(Transmit {
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
        let field = &self.id_field;
        let slot = self
            .sessions
            .get_mut(session.key as usize)
            .filter(|slot| slot.generation == session.generation)
            .ok_or(SessionError::Invalid)?;
        if !message.set_sid(field, slot.sid) {
            return Err(SessionError::Untaggable);
        }
        slot.last_activity = now;
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
    /// waiting. The session stays open.
    pub fn withdraw(&mut self, send: SendId, now: Instant) -> bool {
        let now = self.advance(now);
        self.is_current(send) && self.fail_waiting(send.key, None, now)
    }

    /// Reports that the transport could not carry a transmission of `send`:
    /// the send fails at once with [`SessionError::Transport`] and is not
    /// retried. Returns whether it was still waiting.
    pub fn handle_transmit_error(&mut self, send: SendId, cause: Cause, now: Instant) -> bool {
        let now = self.advance(now);
        self.is_current(send)
            && self.fail_waiting(send.key, Some(&SessionError::Transport(cause)), now)
    }

    fn is_current(&self, send: SendId) -> bool {
        self.sessions
            .get(send.key as usize)
            .and_then(|slot| slot.waiting.as_ref())
            .is_some_and(|waiting| waiting.number == send.number)
    }

    /// Ends the waiting send of `key`, reporting `error` (or nothing).
    /// The session's idle clock restarts at `now`.
    fn fail_waiting(&mut self, key: u32, error: Option<&SessionError>, now: u64) -> bool {
        let slot = &mut self.sessions[key as usize];
        let Some(waiting) = slot.waiting.take() else {
            return false;
        };
        slot.last_activity = now;
        if matches!(error, Some(SessionError::Timeout)) {
            slot.late_pending = true;
        }
        let p = &mut self.ports[slot.port.index as usize];
        self.timers
            .arm(&mut slot.timer, key, now.saturating_add(p.max_life_ns));
        p.waiting -= 1;
        self.waiting -= 1;
        if let Some(error) = error {
            let session = self.id_of(key, &self.sessions[key as usize]);
            self.events.push_back(Event::SendFailed {
                session,
                send: SendId {
                    key,
                    number: waiting.number,
                },
                error: error.clone(),
            });
        }
        self.compact_timers();
        true
    }

    // ----- receiving ---------------------------------------------------

    /// Whether `message` is a session message (seed: `isSession`).
    pub fn is_session(&self, message: &M) -> bool {
        message.sid(&self.id_field).is_some()
    }

    /// The live session on `port` that `message` belongs to, if any
    /// (seed: `getSession`).
    pub fn session_for(&self, port: PortId, message: &M) -> Option<SessionId> {
        let sid = message.sid(&self.id_field)?;
        self.session(port, sid)
    }

    /// The live session with this sid on `port`.
    pub fn session(&self, port: PortId, sid: u32) -> Option<SessionId> {
        let &key = self.port_ref(port).ok()?.sids.get(&sid)?;
        Some(self.id_of(key, &self.sessions[key as usize]))
    }

    /// Routes a message that arrived on `port`.
    ///
    /// A session message for a live session completes its waiting send or
    /// is queued for [`recv`](Self::recv); one for an unknown sid opens an
    /// incoming session (up to the port's `max_incoming_sessions`). Anything
    /// else is handed back untouched as [`Routed::NotSession`].
    pub fn handle_inbound(&mut self, port: PortId, message: M, now: Instant) -> Routed<M> {
        let Some(sid) = message.sid(&self.id_field) else {
            return Routed::NotSession(message);
        };
        let now = self.advance(now);
        let Ok(p) = self.port_ref(port) else {
            return self.drop_inbound(port, sid, DropReason::NoSuchPort);
        };
        if let Some(&key) = p.sids.get(&sid) {
            return self.deliver_to(key, message, now);
        }
        if p.settings.partition != crate::SidPartition::All && p.allocates(sid) {
            return self.drop_inbound(port, sid, DropReason::UnknownSid);
        }
        if p.incoming >= p.settings.max_incoming_sessions {
            return self.drop_inbound(port, sid, DropReason::IncomingLimit);
        }
        let session = self.insert(port, sid, true, now);
        self.sessions[session.key as usize].inbox.push_back(message);
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
        Ok(self.deliver_to(session.key, message, now))
    }

    fn deliver_to(&mut self, key: u32, message: M, now: u64) -> Routed<M> {
        let slot = &mut self.sessions[key as usize];
        let session = SessionId {
            port: slot.port,
            sid: slot.sid,
            key,
            generation: slot.generation,
        };
        slot.last_activity = now;
        let p = &mut self.ports[slot.port.index as usize];
        self.timers
            .arm(&mut slot.timer, key, now.saturating_add(p.max_life_ns));
        if let Some(waiting) = slot.waiting.take() {
            p.waiting -= 1;
            self.waiting -= 1;
            self.events.push_back(Event::Reply {
                session,
                send: SendId {
                    key,
                    number: waiting.number,
                },
                message,
            });
            return Routed::Reply(session);
        }
        if std::mem::take(&mut slot.late_pending) {
            p.counters.late_replies += 1;
            self.counters.late_replies += 1;
        }
        let was_empty = slot.inbox.is_empty();
        let full = slot.inbox.len() >= p.settings.inbox_capacity as usize;
        if full {
            slot.inbox.pop_front();
        }
        slot.inbox.push_back(message);
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
        let message = self.slot_mut(session)?.inbox.pop_front();
        self.queued_messages -= usize::from(message.is_some());
        Ok(message)
    }

    // ----- time ----------------------------------------------------------

    /// Processes every deadline at or before `now`: sends time out or are
    /// transmitted again, idle sessions expire.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
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
            let p = &self.ports[slot.port.index as usize];
            let due = slot.deadline(p.max_life_ns);
            if due > now {
                self.timers.arm(&mut slot.timer, key, due);
                continue;
            }
            self.fire(key, due);
        }
        self.compact_timers();
    }

    /// Acts on the deadline `due` of session `key`, which has passed.
    fn fire(&mut self, key: u32, due: u64) {
        let slot = &mut self.sessions[key as usize];
        let Some(waiting) = slot.waiting.as_mut() else {
            self.close(key, CloseReason::Expired, &SessionError::Cancelled);
            return;
        };
        match waiting.phase {
            Phase::Awaiting { .. } if waiting.retries_left == 0 => {
                self.fail_waiting(key, Some(&SessionError::Timeout), due);
            }
            Phase::Awaiting { deadline } => {
                waiting.retries_left -= 1;
                let until = deadline.saturating_add(waiting.retry_interval_ns);
                waiting.phase = Phase::Backoff { until };
                self.timers.arm(&mut slot.timer, key, until);
            }
            Phase::Backoff { until } => {
                let deadline = until.saturating_add(waiting.timeout_ns);
                waiting.phase = Phase::Awaiting { deadline };
                let message = if waiting.retries_left == 0 {
                    waiting.retained.take()
                } else {
                    waiting.retained.clone()
                };
                let send = SendId {
                    key,
                    number: waiting.number,
                };
                self.timers.arm(&mut slot.timer, key, deadline);
                let session = self.id_of(key, &self.sessions[key as usize]);
                if let Some(message) = message {
                    self.transmits.push_back(Transmit {
                        port: session.port,
                        session,
                        send: Some(send),
                        message,
                    });
                }
            }
        }
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

    fn compact_timers(&mut self) {
        if self.timers.needs_compaction(self.sessions.len()) {
            self.timers.rebuild(
                self.sessions
                    .iter()
                    .map(|(key, slot)| (key as u32, slot.timer)),
            );
        }
    }

    // ----- outputs and counters -----------------------------------------

    /// The next message to hand to a port's transport.
    pub fn poll_transmit(&mut self) -> Option<Transmit<M>> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event<M>> {
        self.events.pop_front()
    }

    /// The name of the field that carries the sid.
    pub fn session_id_name(&self) -> &str {
        &self.id_field
    }

    /// What one port holds now, and its counters.
    pub fn port_stats(&self, port: PortId) -> Result<PortStats, SessionError> {
        Ok(self.port_ref(port)?.stats())
    }

    /// What the whole manager holds now, and its counters.
    pub fn stats(&self) -> Stats {
        Stats {
            ports: self.ports.len(),
            live_sessions: self.sessions.len(),
            waiting_sends: self.waiting,
            queued_messages: self.queued_messages,
            queued_transmits: self.transmits.len(),
            queued_events: self.events.len(),
            timer_entries: self.timers.len(),
            counters: self.counters,
        }
    }
}

impl Default for Manager<Value> {
    fn default() -> Self {
        match Manager::new(ManagerConfig::default()) {
            Ok(manager) => manager,
            Err(error) => unreachable!("the default configuration is valid: {error}"),
        }
    }
}
