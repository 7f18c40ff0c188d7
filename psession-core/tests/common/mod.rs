//! Shared helpers of the behaviour tests: a manager on a virtual clock.
#![allow(dead_code)]

use psession_core::{
    Event, Manager, ManagerConfig, SendId, SendOptions, SessionError, SessionId, Transmit,
};
use serde_json::Value;
use std::time::{Duration, Instant};

/// A manager and a virtual clock counted in milliseconds from `t0`.
pub struct Rig {
    pub m: Manager,
    pub t0: Instant,
}

impl Rig {
    pub fn new(config: ManagerConfig) -> Self {
        Rig {
            m: Manager::new(config).expect("valid config"),
            t0: Instant::now(),
        }
    }

    pub fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Opens a session on the default port at `ms`.
    pub fn open(&mut self, ms: u64) -> SessionId {
        let port = self.m.default_port();
        self.m.open_session(port, self.at(ms)).expect("open")
    }

    /// Sends `message` on `session` at `ms` with the port's settings.
    pub fn send(&mut self, session: SessionId, message: Value, ms: u64) -> SendId {
        let now = self.at(ms);
        self.m
            .send(session, message, SendOptions::default(), now)
            .expect("send")
    }

    /// Calls `handle_timeout` at `ms`.
    pub fn tick(&mut self, ms: u64) {
        let now = self.at(ms);
        self.m.handle_timeout(now);
    }

    pub fn transmits(&mut self) -> Vec<Transmit<Value>> {
        std::iter::from_fn(|| self.m.poll_transmit()).collect()
    }

    pub fn events(&mut self) -> Vec<Event<Value>> {
        std::iter::from_fn(|| self.m.poll_event()).collect()
    }

    /// The poll_timeout, in ms since t0.
    pub fn next_deadline_ms(&mut self) -> Option<u128> {
        self.m
            .poll_timeout()
            .map(|at| at.duration_since(self.t0).as_millis())
    }
}

/// The failure reported for `send` among `events`, if any.
pub fn failure(events: &[Event<Value>], send: SendId) -> Option<SessionError> {
    events.iter().find_map(|e| match e {
        Event::SendFailed { send: s, error, .. } if *s == send => Some(error.clone()),
        _ => None,
    })
}

/// The reply delivered to `send` among `events`, if any.
pub fn reply(events: &[Event<Value>], send: SendId) -> Option<Value> {
    events.iter().find_map(|e| match e {
        Event::Reply {
            send: s, message, ..
        } if *s == send => Some(message.clone()),
        _ => None,
    })
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A check of the error a send failed with.
pub type Expect = fn(&SessionError) -> bool;
