//! The session manager: every input, every output.
//!
//! The type and its clock live here; its methods are grouped by concern in
//! the submodules: ports, sessions (opening, allocation, closing), sending
//! (send, post and the ways a waiting send ends), inbound (routing and
//! `recv`), timers (deadlines) and idle (each port's sessions by last
//! activity, for expiry).

mod idle;
mod inbound;
mod ports;
mod sending;
mod sessions;
mod timers;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;
use slab::Slab;

use crate::config::{ManagerConfig, PortOptions, PortSettings};
use crate::error::SessionError;
use crate::event::{Event, Transmit};
use crate::id::{PortId, SessionId};
use crate::message::Message;
use crate::port::Port;
use crate::session::{Retry, Slot, Waiting};
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
/// treated as the latest one (a clock that goes back does not move). Every
/// input that takes `now` first processes the deadlines that have passed,
/// so an outcome never depends on whether `handle_timeout` ran first: a
/// reply arriving after its send's deadline is a late reply, not a reply.
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
    defaults: PortSettings,
    ports: Slab<Port>,
    port_names: HashMap<Box<str>, u32>,
    port_generation: u32,
    default_port: PortId,
    sessions: Slab<Slot>,
    /// The sends waiting for their reply (a [`SendId`](crate::SendId)'s
    /// key is its key here).
    waitings: Slab<Waiting>,
    /// Retry state of the sends that have retries left.
    retries: Slab<Retry<M>>,
    /// The `recv` queues of the sessions that have had one.
    inboxes: Slab<VecDeque<M>>,
    session_generation: u64,
    send_number: u64,
    timers: TimerQueue,
    epoch: Option<Instant>,
    /// The instant the last input came with: an input with the same one
    /// skips converting it (`now` holds it already).
    last_input: Option<Instant>,
    now: u64,
    transmits: VecDeque<Transmit<M>>,
    events: VecDeque<Event<M>>,
    counters: Counters,
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
            waitings: Slab::new(),
            retries: Slab::new(),
            inboxes: Slab::new(),
            session_generation: 0,
            send_number: 0,
            timers: TimerQueue::default(),
            epoch: None,
            last_input: None,
            now: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            queued_messages: 0,
        };
        manager.default_port = manager.create_port(DEFAULT_PORT, PortOptions::default())?;
        Ok(manager)
    }

    /// Takes `now` as the current time (never going backwards) and
    /// processes every deadline that has passed.
    fn advance(&mut self, now: Instant) -> u64 {
        if self.last_input != Some(now) {
            let epoch = *self.epoch.get_or_insert(now);
            let t = now
                .checked_duration_since(epoch)
                .map_or(0, nanos)
                .min(NEVER - 1);
            self.now = self.now.max(t);
            self.last_input = Some(now);
        }
        self.fire_due();
        self.now
    }

    fn instant(&self, t: u64) -> Option<Instant> {
        self.epoch?.checked_add(Duration::from_nanos(t))
    }

    /// The handle of live session `key`.
    fn id_of(&self, key: u32) -> SessionId {
        let slot = &self.sessions[key as usize];
        SessionId {
            port: PortId {
                index: slot.port,
                generation: self.ports[slot.port as usize].generation,
            },
            sid: slot.sid,
            key,
            generation: slot.generation(),
        }
    }

    /// The sid `message` carries, if it is a session message.
    fn sid_of(&self, message: &M) -> Option<u32> {
        message.sid(&self.id_field).filter(|&sid| sid != 0)
    }

    /// The next message to hand to a port's transport.
    ///
    /// A transmission of a send that has ended meanwhile (cancelled,
    /// withdrawn, failed, its session ended or recycled) is discarded here,
    /// so a stale request never reaches the peer; posts always go out.
    pub fn poll_transmit(&mut self) -> Option<Transmit<M>> {
        while let Some(transmit) = self.transmits.pop_front() {
            match transmit.send {
                Some(send) if !self.is_send_waiting(send) => continue,
                _ => return Some(transmit),
            }
        }
        None
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
            waiting_sends: self.waitings.len(),
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
