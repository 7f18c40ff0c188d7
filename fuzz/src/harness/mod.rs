//! Runs a [`Script`] against a real [`Manager`], one call at a time, and
//! checks every result and event with the [`Tracker`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use psession_core::{
    Cause, CloseReason, DropReason, Event, Manager, ManagerConfig, OverflowCandidate,
    OverflowPolicy, PortId, PortOptions, Routed, SendId, SendOptions, SessionError, SessionId,
    SidPartition,
};
use serde_json::{json, Value};

use crate::checks::{ensure, violated, START};
use crate::script::{Finish, Kind, Op, Overflow, Pick, PortCfg, Script, SendOpts, Tick};
use crate::step::{Fail, Scope, Step};
use crate::track::{nanos, ref_sid, tagged, valid, SendState};
use crate::tracker::{Map, Tracker};

mod clock;
mod peer;
mod sessions;

/// One session offered to a custom overflow policy.
pub(crate) type Offer = (SessionId, u32, Instant, bool, bool);
/// What the custom overflow policies were offered, call by call.
pub(crate) type Offers = Arc<Mutex<Vec<Vec<Offer>>>>;

const NAMES: [&str; 4] = ["default", "a", "b", "c"];
const DAY_NS: u64 = 86_400 * 1_000_000_000;
/// The wall clock never goes past this (ns after the base instant).
const MAX_WALL: u64 = START + 10_000 * DAY_NS;
/// Most operations run from one input (longer inputs are cut).
const MAX_OPS: usize = 1500;

pub(crate) fn options(cfg: &PortCfg, offers: &Offers) -> PortOptions {
    let record = {
        let offers = offers.clone();
        move |candidates: &[OverflowCandidate]| {
            let offer = candidates
                .iter()
                .map(|c| (c.session, c.sid, c.last_activity, c.waiting, c.incoming))
                .collect();
            offers.lock().unwrap_or_else(|e| e.into_inner()).push(offer);
        }
    };
    let overflow = match cfg.overflow {
        Overflow::Recycle => OverflowPolicy::RecycleOldest,
        Overflow::Reject => OverflowPolicy::Reject,
        Overflow::Newest => OverflowPolicy::custom(move |_, c| {
            record(c);
            c.last().map(|c| c.sid)
        }),
        Overflow::Bogus => OverflowPolicy::custom(move |_, c| {
            record(c);
            Some(0)
        }),
        Overflow::Refuse => OverflowPolicy::custom(move |_, c| {
            record(c);
            None
        }),
        Overflow::Index(n) => OverflowPolicy::custom(move |_, c| {
            record(c);
            (!c.is_empty()).then(|| c[usize::from(n) % c.len()].sid)
        }),
    };
    PortOptions::default()
        .session_timeout(cfg.timeout)
        .session_max_life(cfg.max_life)
        .max_session_count(cfg.max_count)
        .overflow(overflow)
        .retry_count(cfg.retry_count)
        .retry_interval(cfg.retry_interval)
        .partition(cfg.partition)
        .max_incoming_sessions(cfg.max_incoming)
        .inbox_capacity(cfg.inbox)
}

fn kind_fail(kind: Kind) -> Fail {
    match kind {
        Kind::Cancel => Fail::Cancelled,
        Kind::Abort(false) => Fail::Aborted(None),
        Kind::Abort(true) => Fail::Aborted(Some("boom".to_owned())),
        Kind::Timeout => Fail::Timeout,
    }
}

fn cause(kind: Kind) -> Option<Cause> {
    (kind == Kind::Abort(true)).then(|| Cause::msg("boom"))
}

/// `result` is the error `expected` (compared by kind).
fn expect_err<T: std::fmt::Debug>(what: &str, result: &Result<T, SessionError>, expected: &str) {
    let kind = match result {
        Err(SessionError::Invalid) => "Invalid",
        Err(SessionError::NoSuchPort) => "NoSuchPort",
        Err(SessionError::Busy) => "Busy",
        Err(SessionError::Untaggable) => "Untaggable",
        Err(SessionError::Exhausted) => "Exhausted",
        Err(SessionError::PortExists(_)) => "PortExists",
        Err(SessionError::Config(_)) => "Config",
        other => violated!("{what}: expected {expected}, got {other:?}"),
    };
    ensure!(
        kind == expected,
        "{what}: expected {expected}, got {result:?}"
    );
}

/// A manager, what the harness knows about it, and the offers its custom
/// overflow policies received.
pub struct Harness {
    m: Manager,
    t: Tracker,
    offers: Offers,
    replies: u64,
}

impl Harness {
    /// A manager with the script's settings, or `None` if they are
    /// (rightly) refused.
    pub fn new(script: &Script) -> Option<Self> {
        let setup = &script.setup;
        let offers = Offers::default();
        let config = ManagerConfig::default()
            .session_id_name(setup.id_field)
            .with(options(&setup.defaults, &offers));
        let m: Manager = match Manager::new(config) {
            Ok(m) => m,
            Err(e) => {
                ensure!(
                    !valid(&setup.defaults) && matches!(e, SessionError::Config(_)),
                    "Manager::new refused {:?}: {e}",
                    setup.defaults
                );
                return None;
            }
        };
        ensure!(
            valid(&setup.defaults),
            "Manager::new took unusable settings"
        );
        let base = Instant::now();
        let default = m.default_port();
        let t = Tracker::new(setup.id_field, setup.defaults.clone(), default, base);
        let mut h = Harness {
            m,
            t,
            offers,
            replies: 0,
        };
        // Pin the manager's clock origin at `START`.
        h.handle_timeout();
        Some(h)
    }

    /// Runs every operation, then ends everything and checks for leaks.
    pub fn run(mut self, script: &Script) {
        for op in script.ops.iter().take(MAX_OPS) {
            self.op(op);
        }
        self.finish(script.setup.finish);
    }

    // ----- the call protocol ------------------------------------------------

    fn begin(&mut self, mut step: Step) -> Step {
        step.pending_before = self
            .t
            .live
            .iter()
            .filter_map(|id| self.t.pending(*id))
            .collect();
        if step.now_taking {
            self.t.advance();
        }
        step
    }

    /// Makes one call into the manager and takes its events.
    fn call<R>(&mut self, step: Step, f: impl FnOnce(&mut Manager, Instant) -> R) -> (R, Step) {
        let mut step = self.begin(step);
        let now = self.t.wall_instant();
        let r = f(&mut self.m, now);
        self.t.settle(&mut self.m, &mut step);
        (r, step)
    }

    fn end(&mut self, step: Step) {
        self.t.after(&mut self.m, &step);
    }

    // ----- choosing handles -------------------------------------------------

    fn pick_session(&self, p: Pick, prefer_dead: bool) -> Option<SessionId> {
        let order = &self.t.order;
        if order.is_empty() {
            return None;
        }
        let n = usize::from(p.0 & 63);
        let mode = p.0 >> 6;
        if prefer_dead && mode < 2 {
            let dead: Vec<_> = order.iter().filter(|id| !self.t.is_live(**id)).collect();
            if !dead.is_empty() {
                return Some(*dead[n % dead.len()]);
            }
        }
        Some(match mode {
            0 | 1 if !self.t.live.is_empty() => self.t.live[n % self.t.live.len()],
            2 => order[order.len() - 1 - n % order.len().min(4)],
            _ => order[n % order.len()],
        })
    }

    fn pick_port(&self, p: Pick, prefer_dead: bool) -> PortId {
        let ports = &self.t.ports;
        let n = usize::from(p.0 & 127);
        let alive: Vec<_> = ports.iter().filter(|x| x.alive != prefer_dead).collect();
        if p.0 >> 7 == 0 && !alive.is_empty() {
            return alive[n % alive.len()].id;
        }
        ports[n % ports.len()].id
    }

    fn pick_send(&self, p: Pick, prefer_dead: bool) -> Option<SendId> {
        let order = &self.t.send_order;
        let n = usize::from(p.0 & 63);
        if p.0 >> 6 < 2 {
            let chosen: Vec<_> = order
                .iter()
                .filter(|s| (self.t.sends[s].state == SendState::Pending) != prefer_dead)
                .collect();
            if !chosen.is_empty() {
                return Some(*chosen[n % chosen.len()]);
            }
        }
        (!order.is_empty()).then(|| order[n % order.len()])
    }

    // ----- operations -------------------------------------------------------

    fn op(&mut self, op: &Op) {
        match op {
            Op::Open(p) => {
                let port = self.pick_port(*p, false);
                self.open(port);
            }
            Op::Send(p, message, opts) => {
                if let Some(id) = self.pick_session(*p, false) {
                    self.send(id, message, *opts);
                }
            }
            Op::Post(p, message) => {
                if let Some(id) = self.pick_session(*p, false) {
                    self.post(id, message);
                }
            }
            Op::End(p) => {
                if let Some(id) = self.pick_session(*p, false) {
                    self.end_session(id);
                }
            }
            Op::Fail(p, kind) => {
                if let Some(id) = self.pick_session(*p, false) {
                    self.fail(id, *kind);
                }
            }
            Op::FailPort(p, kind) => {
                let port = self.pick_port(*p, false);
                self.fail_port(port, *kind);
            }
            Op::FailAll(kind) => self.fail_all(*kind),
            Op::Clear => self.clear(),
            Op::ClearPort(p) => {
                let port = self.pick_port(*p, false);
                self.clear_port(port);
            }
            Op::DestroyPort(p) => {
                let port = self.pick_port(*p, false);
                self.destroy_port(port);
            }
            Op::CreatePort(n, cfg) => self.create_port(NAMES[usize::from(*n) % NAMES.len()], cfg),
            Op::Withdraw(p) => {
                if let Some(send) = self.pick_send(*p, false) {
                    self.withdraw(send);
                }
            }
            Op::TransmitError(p) => {
                if let Some(send) = self.pick_send(*p, false) {
                    self.transmit_error(send);
                }
            }
            Op::Reply(p, copies, float) => {
                if let Some(id) = self.pick_session(*p, false) {
                    for _ in 0..*copies {
                        self.reply(id, *float);
                    }
                }
            }
            Op::ReplyWaiting(n) => {
                let waiting: Vec<SessionId> = self
                    .t
                    .live
                    .iter()
                    .copied()
                    .filter(|id| self.t.pending(*id).is_some())
                    .collect();
                if !waiting.is_empty() {
                    self.reply(waiting[usize::from(*n) % waiting.len()], false);
                }
            }
            Op::Bytes(p, bytes) => {
                // Arbitrary bytes: only those that parse as JSON reach the core.
                if let Ok(message) = serde_json::from_slice::<Value>(bytes) {
                    let port = self.pick_port(*p, false);
                    self.inbound(port, message);
                }
            }
            Op::Json(p, message) => {
                let port = self.pick_port(*p, false);
                self.inbound(port, message.clone());
            }
            Op::Flood(p, count, start, stride) => {
                let port = self.pick_port(*p, false);
                for i in 0..u32::from(*count % 65) {
                    let sid = start.wrapping_add(i.wrapping_mul(u32::from(*stride) + 1));
                    self.inbound(port, json!({ self.t.field: sid, "flood": i }));
                }
            }
            Op::Deliver(p, message) => {
                if let Some(id) = self.pick_session(*p, false) {
                    self.deliver(id, message);
                }
            }
            Op::Recv(p) => {
                if let Some(id) = self.pick_session(*p, false) {
                    self.recv(id);
                }
            }
            Op::Tick(tick, handle, check) => self.tick(*tick, *handle, *check),
            Op::CheckTimeout => self.check_timeout(),
            Op::Drain(bits) => self.drain(*bits),
            Op::Probe(s, send, port) => self.probe(*s, *send, *port),
        }
    }

    // ----- the end ------------------------------------------------------------

    fn finish(mut self, finish: Finish) {
        // Every live session answers as expected (steps may sample them).
        self.t.check_state(&mut self.m, None);
        match finish {
            Finish::Clear => self.clear(),
            Finish::EndEach => {
                for id in self.t.live.clone() {
                    self.end_session(id);
                }
            }
            Finish::DestroyPorts => {
                let mut ports: Vec<_> = self
                    .t
                    .ports
                    .iter()
                    .filter(|p| p.alive)
                    .map(|p| (p.name == "default", p.id))
                    .collect();
                ports.sort_by_key(|(default, _)| *default);
                for (_, port) in ports {
                    self.destroy_port(port);
                }
            }
            Finish::Clock => {
                self.t.wall = self.t.wall.saturating_add(3 * DAY_NS).min(MAX_WALL);
                let step = self.handle_timeout();
                self.end(step);
            }
        }
        self.clear();
        let others: Vec<_> = self
            .t
            .ports
            .iter()
            .filter(|p| p.alive && p.name != "default")
            .map(|p| p.id)
            .collect();
        for port in others {
            self.destroy_port(port);
        }
        self.t.wall = self.t.wall.saturating_add(30 * DAY_NS).min(MAX_WALL);
        let step = self.handle_timeout();
        self.end(step);
        self.drain(0);

        // Every send ended; nothing at all remains.
        for (send, track) in &self.t.sends {
            ensure!(track.state != SendState::Pending, "{send:?} never ended");
        }
        ensure!(self.t.live.is_empty(), "sessions outlived clear");
        for _ in 0..2 {
            let s = self.m.stats();
            let left = (
                s.live_sessions,
                s.waiting_sends,
                s.queued_messages,
                s.queued_transmits,
                s.queued_events,
                s.timer_entries,
            );
            ensure!(
                left == (0, 0, 0, 0, 0, 0),
                "leak after ending everything: {s:?}"
            );
            let next = self.m.poll_timeout();
            ensure!(next.is_none(), "a deadline outlived its sessions: {next:?}");
        }
        self.t.wall = MAX_WALL;
        self.m
            .handle_timeout(self.t.wall_instant() + Duration::from_secs(1));
        ensure!(
            self.m.poll_event().is_none(),
            "an event after everything ended"
        );
        ensure!(
            self.m.poll_transmit().is_none(),
            "a transmission after everything ended"
        );
        // Every handle is now stale.
        let now = self.t.wall_instant();
        for id in self.t.order.iter().rev().take(64) {
            let r = self.m.send(*id, json!({}), SendOptions::default(), now);
            expect_err("send after the end", &r, "Invalid");
            expect_err("recv after the end", &self.m.recv(*id), "Invalid");
        }
        for send in self.t.send_order.iter().rev().take(64) {
            ensure!(
                !self.m.withdraw(*send, now),
                "withdrew {send:?} after the end"
            );
        }
        ensure!(self.m.poll_event().is_none(), "stale handles made events");
    }
}
