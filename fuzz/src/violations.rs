//! The checks can fail: each test feeds the tracker a crafted violation
//! (an event the manager never sent, or a manager configured otherwise
//! than the harness believes) and expects the invariant's panic.

use std::time::{Duration, Instant};

use psession_core::{
    CloseReason, Event, Manager, ManagerConfig, PortId, Routed, SendId, SendOptions, SessionError,
    SessionId, SidPartition,
};
use serde_json::json;

use crate::harness::{options, Offers};
use crate::script::{Overflow, PortCfg};
use crate::step::{Fail, Scope, Step};
use crate::track::nanos;
use crate::tracker::Tracker;

const TIMEOUT: Duration = Duration::from_millis(10);

fn cfg(max_incoming: u32) -> PortCfg {
    PortCfg {
        timeout: TIMEOUT,
        max_life: Duration::from_millis(100),
        max_count: 8,
        overflow: Overflow::Recycle,
        retry_count: 0,
        retry_interval: Duration::ZERO,
        partition: SidPartition::All,
        max_incoming,
        inbox: 2,
    }
}

/// A manager with `manager_cfg`, a tracker that believes `tracker_cfg`,
/// and the clock pinned at `START`.
fn pair(manager_cfg: &PortCfg, tracker_cfg: &PortCfg) -> (Manager, Tracker, PortId) {
    let config = ManagerConfig::default().with(options(manager_cfg, &Offers::default()));
    let mut m: Manager = Manager::new(config).unwrap();
    let port = m.default_port();
    let t = Tracker::new("sid", tracker_cfg.clone(), port, Instant::now());
    m.handle_timeout(t.wall_instant());
    (m, t, port)
}

/// One session with one send waiting, both known to the tracker.
fn with_send() -> (Manager, Tracker, SessionId, SendId) {
    let (mut m, mut t, port) = pair(&cfg(4), &cfg(4));
    let id = m.open_session(port, t.wall_instant()).unwrap();
    t.add_session(id, false, None);
    let send = m
        .send(id, json!({}), SendOptions::default(), t.wall_instant())
        .unwrap();
    t.add_send(id, send, (nanos(TIMEOUT), 0, 0), json!({"sid": id.sid()}));
    (m, t, id, send)
}

#[test]
#[should_panic(expected = "ended twice")]
fn a_send_completed_twice_is_caught() {
    let (_m, mut t, id, send) = with_send();
    let mut step = Step::timed();
    step.deliver = Some((id, json!({"ok": 1})));
    let reply = Event::Reply {
        session: id,
        send,
        message: json!({"ok": 1}),
    };
    t.process(&reply, &mut step);
    t.process(&reply, &mut step);
}

#[test]
#[should_panic(expected = "not due, and not this call's doing")]
fn an_early_timeout_is_caught() {
    let (_m, mut t, id, send) = with_send();
    t.wall += nanos(TIMEOUT) - 1;
    t.advance();
    let early = Event::SendFailed {
        session: id,
        send,
        error: SessionError::Timeout,
    };
    t.process(&early, &mut Step::timed());
}

#[test]
#[should_panic(expected = "that send is lost")]
fn a_session_closed_under_a_waiting_send_is_caught() {
    let (_m, mut t, id, _send) = with_send();
    let mut step = Step::plain().close(Scope::Session(id), CloseReason::Ended);
    let closed = Event::Closed {
        session: id,
        reason: CloseReason::Ended,
    };
    t.process(&closed, &mut step);
}

#[test]
#[should_panic(expected = "past its final deadline")]
fn a_missed_deadline_is_caught() {
    // The tracker's clock passes the deadline, the manager never hears of
    // it: the send still waits there.
    let (mut m, mut t, _id, send) = with_send();
    let mut step = Step::timed();
    step.pending_before = vec![send];
    t.wall += nanos(TIMEOUT);
    t.advance();
    t.after(&mut m, &step);
}

#[test]
#[should_panic(expected = "live sessions, expected")]
fn a_leaked_session_is_caught() {
    // The tracker is told the session ended; the manager still has it.
    let (mut m, mut t, id, send) = with_send();
    let mut step = Step::plain()
        .fail(Scope::Session(id), Fail::Cancelled)
        .close(Scope::Session(id), CloseReason::Ended);
    let failed = Event::SendFailed {
        session: id,
        send,
        error: SessionError::Cancelled,
    };
    t.process(&failed, &mut step);
    let closed = Event::Closed {
        session: id,
        reason: CloseReason::Ended,
    };
    t.process(&closed, &mut step);
    t.after(&mut m, &step);
}

#[test]
#[should_panic(expected = "is_live(")]
fn a_stale_handle_that_looks_live_is_caught() {
    // The manager reuses the sid of an ended session; the tracker is made
    // to believe the new handle is the old one's (a stale handle that
    // reaches the newer session would look exactly like this).
    let mut one = cfg(4);
    one.max_count = 1;
    let (mut m, mut t, port) = pair(&one, &one);
    let old = m.open_session(port, t.wall_instant()).unwrap();
    t.add_session(old, false, None);
    m.end(old).unwrap();
    let mut step = Step::plain().close(Scope::Session(old), CloseReason::Ended);
    t.settle(&mut m, &mut step);
    let new = m.open_session(port, t.wall_instant()).unwrap();
    assert_eq!(new.sid(), old.sid());
    t.add_session(new, false, None);
    t.check_state(&mut m, None);
    // Swap the two: the tracker now says `old` is live and `new` dead.
    let new_track = t.sessions.remove(&new).unwrap();
    let old_track = t.sessions.remove(&old).unwrap();
    t.sessions.insert(old, new_track);
    t.sessions.insert(new, old_track);
    t.live = vec![old];
    t.check_state(&mut m, None);
}

#[test]
#[should_panic(expected = "incoming sessions on")]
fn an_incoming_flood_past_the_cap_is_caught() {
    // The manager takes 8 sessions from the peer; the harness expects a
    // cap of 4.
    let (mut m, mut t, port) = pair(&cfg(8), &cfg(4));
    for sid in 100..105 {
        let message = json!({"sid": sid});
        let mut step = Step::timed();
        step.inbound = Some((port, sid, message.clone()));
        let routed = m.handle_inbound(port, message, t.wall_instant());
        assert!(matches!(routed, Routed::Opened(_)));
        t.settle(&mut m, &mut step);
    }
}
