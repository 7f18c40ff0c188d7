//! The cycles of `benches/core.rs`, one workload per run, for instruction
//! counts under callgrind (which repeat exactly, where wall-clock figures
//! on a shared machine do not). Only the `measure_*` functions are
//! counted:
//!
//! ```sh
//! cargo build --release -p psession-benches --example core_counts
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measure_*' \
//!     target/release/examples/core_counts reuse 0 100000
//! ```
//!
//! Arguments: the workload, the load, the cycles.
//!
//! - `reuse`, `open_end`, `baseline` with `N` other sends waiting (0,
//!   10000, 1000000), as `core_round_trip`;
//! - `arm_disarm`, `arm_disarm_base` (load 0), as `timers/arm_disarm`;
//! - `timeout`, `timeout_base` with `N` expired sends (the cycles are not
//!   used: one `handle_timeout` of `N`), as `timers/handle_timeout`.
//!
//! Divide callgrind's total by the cycles (by `N` for `timeout`).
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use psession_benches::baseline::Correlator;
use psession_core::{
    Event, Manager, ManagerConfig, PortOptions, Routed, SendOptions, SessionError, SessionId,
};
use serde_json::{json, Value};

const PER_PORT: usize = 50_000;
const DAY: Duration = Duration::from_secs(86_400);

struct Clock(Instant);

impl Clock {
    fn tick(&mut self) -> Instant {
        self.0 += Duration::from_micros(1);
        self.0
    }
}

fn request() -> Value {
    json!({"query": "getDeviceList"})
}

fn answer_body() -> Value {
    json!({"status": "ok"})
}

fn answer(body: &Value, request: &Value) -> Value {
    let mut reply = body.clone();
    reply["sid"] = request["sid"].clone();
    reply
}

fn config(timeout: Duration) -> ManagerConfig {
    ManagerConfig::default()
        .session_timeout(timeout)
        .session_max_life(2 * timeout)
}

fn with_load(timeout: Duration, load: usize, clock: &mut Clock) -> Manager {
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

fn baseline_with_load(timeout: Duration, load: usize, clock: &mut Clock) -> Correlator {
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

/// The messages of a cycle, built once and cloned, as in `core.rs`.
struct Messages {
    request: Value,
    body: Value,
}

impl Messages {
    fn new() -> Self {
        Messages {
            request: request(),
            body: answer_body(),
        }
    }
}

fn round_trip(manager: &mut Manager, session: SessionId, now: Instant, m: &Messages) -> Value {
    let port = manager.default_port();
    manager
        .send(session, m.request.clone(), SendOptions::default(), now)
        .expect("send");
    let request = manager.poll_transmit().expect("transmit").message;
    let Routed::Reply(_) = manager.handle_inbound(port, answer(&m.body, &request), now) else {
        panic!("the reply was not taken as one");
    };
    match manager.poll_event() {
        Some(Event::Reply { message, .. }) => message,
        other => panic!("expected the reply, got {other:?}"),
    }
}

#[inline(never)]
fn measure_reuse(manager: &mut Manager, clock: &mut Clock, session: SessionId, cycles: usize) {
    let m = Messages::new();
    for _ in 0..cycles {
        let now = clock.tick();
        black_box(round_trip(manager, session, now, &m));
    }
}

#[inline(never)]
fn measure_open_end(manager: &mut Manager, clock: &mut Clock, cycles: usize) {
    let m = Messages::new();
    let port = manager.default_port();
    for _ in 0..cycles {
        let now = clock.tick();
        let session = manager.open_session(port, now).expect("open");
        black_box(round_trip(manager, session, now, &m));
        manager.end(session).expect("end");
        let Some(Event::Closed { .. }) = manager.poll_event() else {
            panic!("expected Closed");
        };
    }
}

#[inline(never)]
fn measure_baseline(correlator: &mut Correlator, clock: &mut Clock, cycles: usize) {
    let m = Messages::new();
    for _ in 0..cycles {
        let now = clock.tick();
        correlator.send(m.request.clone(), now).expect("send");
        let request = correlator.poll_transmit().expect("transmit");
        black_box(correlator.handle_inbound(answer(&m.body, &request), now));
    }
}

#[inline(never)]
fn measure_arm_disarm(manager: &mut Manager, clock: &mut Clock, session: SessionId, cycles: usize) {
    let m = Messages::new();
    for _ in 0..cycles {
        let now = clock.tick();
        manager
            .send(session, m.request.clone(), SendOptions::default(), now)
            .expect("send");
        black_box(manager.poll_transmit().expect("transmit"));
        manager.cancel(session, now).expect("cancel");
        let Some(Event::SendFailed {
            error: SessionError::Cancelled,
            ..
        }) = manager.poll_event()
        else {
            panic!("expected the cancellation");
        };
    }
}

#[inline(never)]
fn measure_arm_disarm_base(correlator: &mut Correlator, clock: &mut Clock, cycles: usize) {
    let m = Messages::new();
    for _ in 0..cycles {
        let now = clock.tick();
        let sid = correlator.send(m.request.clone(), now).expect("send");
        black_box(correlator.poll_transmit().expect("transmit"));
        assert!(correlator.cancel(sid));
    }
}

#[inline(never)]
fn measure_timeout(manager: &mut Manager, at: Instant, n: usize) {
    manager.handle_timeout(at);
    let mut failed = 0;
    while let Some(event) = manager.poll_event() {
        failed += usize::from(matches!(event, Event::SendFailed { .. }));
    }
    assert_eq!(failed, n);
}

#[inline(never)]
fn measure_timeout_base(correlator: &mut Correlator, at: Instant, n: usize) {
    correlator.handle_timeout(at);
    let mut failed = 0;
    while correlator.poll_timed_out().is_some() {
        failed += 1;
    }
    assert_eq!(failed, n);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (workload, load) = match &args[..] {
        [workload, load, ..] => (workload.as_str(), load.parse().expect("a load")),
        _ => panic!("usage: core_counts WORKLOAD LOAD [CYCLES]"),
    };
    let cycles: usize = args.get(2).map_or(100_000, |c| c.parse().expect("cycles"));
    let mut clock = Clock(Instant::now());
    match workload {
        "reuse" | "arm_disarm" => {
            let mut manager = with_load(DAY, load, &mut clock);
            let port = manager.default_port();
            let session = manager.open_session(port, clock.tick()).expect("open");
            if workload == "reuse" {
                measure_reuse(&mut manager, &mut clock, session, cycles);
            } else {
                measure_arm_disarm(&mut manager, &mut clock, session, cycles);
            }
        }
        "open_end" => {
            let mut manager = with_load(DAY, load, &mut clock);
            measure_open_end(&mut manager, &mut clock, cycles);
        }
        "baseline" | "arm_disarm_base" => {
            let mut correlator = baseline_with_load(DAY, load, &mut clock);
            if workload == "baseline" {
                measure_baseline(&mut correlator, &mut clock, cycles);
            } else {
                measure_arm_disarm_base(&mut correlator, &mut clock, cycles);
            }
        }
        "timeout" => {
            let timeout = Duration::from_secs(60);
            let mut manager = with_load(timeout, load, &mut clock);
            measure_timeout(&mut manager, clock.0 + timeout, load);
        }
        "timeout_base" => {
            let timeout = Duration::from_secs(60);
            let mut correlator = baseline_with_load(timeout, load, &mut clock);
            measure_timeout_base(&mut correlator, clock.0 + timeout, load);
        }
        other => panic!("unknown workload {other}"),
    }
}
