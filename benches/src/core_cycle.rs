//! The cycles `benches/core.rs` times and `examples/core_counts.rs` counts
//! instructions of, written once: psession's core and the hand-written
//! baseline doing the same round trip, the same arm-and-disarm, the same
//! firing of expired sends, on a virtual clock.

use std::time::{Duration, Instant};

use psession_core::{
    Event, Manager, ManagerConfig, PortId, PortOptions, Routed, SendOptions, SessionError,
    SessionId, Transmit,
};
use serde_json::{json, Value};

use crate::baseline::Correlator;

/// Waiting sessions per port when building a load: many peers, each well
/// within its default sid space (65,535).
pub const PER_PORT: usize = 50_000;

/// A wait no benchmark reaches on the virtual clock, so the load never
/// times out while a cycle is measured.
pub const DAY: Duration = Duration::from_secs(86_400);

/// The virtual clock: one microsecond per step.
pub struct Clock(Instant);

impl Clock {
    /// A clock at an arbitrary origin.
    pub fn new() -> Self {
        Clock(Instant::now())
    }

    /// One step on, and the time then.
    #[inline]
    pub fn tick(&mut self) -> Instant {
        self.0 += Duration::from_micros(1);
        self.0
    }

    /// The time now (no step).
    pub fn now(&self) -> Instant {
        self.0
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// The request every cycle sends (the seed's first query).
pub fn request() -> Value {
    json!({"query": "getDeviceList"})
}

/// The body of the peer's answer.
pub fn answer_body() -> Value {
    json!({"status": "ok"})
}

/// The peer: answers `request` with `body`, carrying the request's sid.
#[inline]
pub fn answer(body: &Value, request: &Value) -> Value {
    let mut reply = body.clone();
    reply["sid"] = request["sid"].clone();
    reply
}

/// The manager's settings: replies wait `timeout`, sessions live twice it.
pub fn config(timeout: Duration) -> ManagerConfig {
    ManagerConfig::default()
        .session_timeout(timeout)
        .session_max_life(2 * timeout)
}

/// A manager with `load` sessions on ports of their own, each with a send
/// waiting whose transmission the transport has taken.
pub fn psession_with_load(timeout: Duration, load: usize, clock: &mut Clock) -> Manager {
    let mut manager = Manager::new(config(timeout)).expect("config");
    let message = request();
    let mut port = manager.default_port();
    for i in 0..load {
        if i % PER_PORT == 0 {
            let name = format!("load-{}", i / PER_PORT);
            port = manager
                .create_port(&name, PortOptions::default())
                .expect("port");
        }
        let now = clock.tick();
        let session = manager.open_session(port, now).expect("open");
        manager
            .send(session, message.clone(), SendOptions::default(), now)
            .expect("send");
        manager.poll_transmit().expect("transmit");
    }
    manager
}

/// The baseline with `load` sends waiting, their transmissions taken.
pub fn baseline_with_load(timeout: Duration, load: usize, clock: &mut Clock) -> Correlator {
    let mut correlator = Correlator::new(timeout);
    let message = request();
    for _ in 0..load {
        correlator
            .send(message.clone(), clock.tick())
            .expect("send");
        correlator.poll_transmit().expect("transmit");
    }
    correlator
}

/// psession with its measured sessions on the default port, `load` other
/// sends waiting on other ports.
pub struct Psession {
    /// The manager.
    pub manager: Manager,
    /// Its default port, where the measured sessions are.
    pub port: PortId,
    /// Its virtual clock.
    pub clock: Clock,
    request: Value,
    body: Value,
}

impl Psession {
    /// A manager with `load` other sends waiting.
    pub fn new(load: usize) -> Self {
        let mut clock = Clock::new();
        let manager = psession_with_load(DAY, load, &mut clock);
        Psession {
            port: manager.default_port(),
            manager,
            clock,
            request: request(),
            body: answer_body(),
        }
    }

    /// Opens a session on the default port.
    pub fn open(&mut self) -> SessionId {
        let now = self.clock.tick();
        self.manager.open_session(self.port, now).expect("open")
    }

    /// One round trip on `session`: send, transmit, the peer's reply, the
    /// reply event.
    #[inline]
    pub fn round_trip(&mut self, session: SessionId) -> Value {
        let now = self.clock.tick();
        self.round_trip_at(session, now)
    }

    fn round_trip_at(&mut self, session: SessionId, now: Instant) -> Value {
        let manager = &mut self.manager;
        manager
            .send(session, self.request.clone(), SendOptions::default(), now)
            .expect("send");
        let request = manager.poll_transmit().expect("transmit").message;
        let reply = answer(&self.body, &request);
        let Routed::Reply(_) = manager.handle_inbound(self.port, reply, now) else {
            panic!("the reply was not taken as one");
        };
        match manager.poll_event() {
            Some(Event::Reply { message, .. }) => message,
            other => panic!("expected the reply, got {other:?}"),
        }
    }

    /// A round trip on a session opened for it and ended after it.
    #[inline]
    pub fn open_round_trip_end(&mut self) -> Value {
        let now = self.clock.tick();
        let session = self.manager.open_session(self.port, now).expect("open");
        let reply = self.round_trip_at(session, now);
        self.manager.end(session).expect("end");
        let Some(Event::Closed { .. }) = self.manager.poll_event() else {
            panic!("expected Closed");
        };
        reply
    }

    /// A send on `session` (arms its deadline), its transmission taken,
    /// then cancelled (disarms it) and the failure polled.
    #[inline]
    pub fn arm_disarm(&mut self, session: SessionId) -> Transmit<Value> {
        let manager = &mut self.manager;
        let now = self.clock.tick();
        manager
            .send(session, self.request.clone(), SendOptions::default(), now)
            .expect("send");
        let request = manager.poll_transmit().expect("transmit");
        manager.cancel(session, now).expect("cancel");
        let Some(Event::SendFailed {
            error: SessionError::Cancelled,
            ..
        }) = manager.poll_event()
        else {
            panic!("expected the cancellation");
        };
        request
    }
}

/// The baseline doing the same cycles.
pub struct Baseline {
    /// The hand-written correlator.
    pub correlator: Correlator,
    /// Its virtual clock.
    pub clock: Clock,
    request: Value,
    body: Value,
}

impl Baseline {
    /// A correlator with `load` other sends waiting.
    pub fn new(load: usize) -> Self {
        let mut clock = Clock::new();
        Baseline {
            correlator: baseline_with_load(DAY, load, &mut clock),
            clock,
            request: request(),
            body: answer_body(),
        }
    }

    /// One round trip: send, transmit, the peer's reply, the reply.
    #[inline]
    pub fn round_trip(&mut self) -> Value {
        let now = self.clock.tick();
        let correlator = &mut self.correlator;
        correlator.send(self.request.clone(), now).expect("send");
        let request = correlator.poll_transmit().expect("transmit");
        let reply = answer(&self.body, &request);
        let (_, message) = correlator.handle_inbound(reply, now).expect("reply");
        message
    }

    /// A send (pushes its deadline), its transmission taken, then
    /// cancelled.
    #[inline]
    pub fn arm_disarm(&mut self) -> Value {
        let correlator = &mut self.correlator;
        let now = self.clock.tick();
        let sid = correlator.send(self.request.clone(), now).expect("send");
        let request = correlator.poll_transmit().expect("transmit");
        assert!(correlator.cancel(sid));
        request
    }
}

/// A manager with `n` sends all past their deadline at the returned time.
pub fn psession_expired(n: usize, timeout: Duration) -> (Manager, Instant) {
    let mut clock = Clock::new();
    let manager = psession_with_load(timeout, n, &mut clock);
    (manager, clock.now() + timeout)
}

/// The baseline with `n` sends all past their deadline at the returned
/// time.
pub fn baseline_expired(n: usize, timeout: Duration) -> (Correlator, Instant) {
    let mut clock = Clock::new();
    let correlator = baseline_with_load(timeout, n, &mut clock);
    (correlator, clock.now() + timeout)
}

/// Fires every deadline due at `at` and drains the failures: how many.
#[inline]
pub fn psession_fire(manager: &mut Manager, at: Instant) -> usize {
    manager.handle_timeout(at);
    let mut failed = 0;
    while let Some(event) = manager.poll_event() {
        failed += usize::from(matches!(event, Event::SendFailed { .. }));
    }
    failed
}

/// The same on the baseline.
#[inline]
pub fn baseline_fire(correlator: &mut Correlator, at: Instant) -> usize {
    correlator.handle_timeout(at);
    let mut failed = 0;
    while correlator.poll_timed_out().is_some() {
        failed += 1;
    }
    failed
}
