//! Ports and the whole manager: creation, destruction, and the port- and
//! manager-wide cancel, abort, timeout and clear.

mod common;

use common::{failure, ms, Rig};
use psession_core::{
    Cause, CloseReason, Event, ManagerConfig, PortOptions, SendOptions, SessionError, DEFAULT_PORT,
};
use serde_json::json;

fn rig() -> Rig {
    Rig::new(ManagerConfig::default().session_timeout(ms(1000)))
}

#[test]
fn manager_starts_with_a_port_named_default() {
    let r = rig();
    assert_eq!(r.m.port(DEFAULT_PORT), Some(r.m.default_port()));
    assert_eq!(r.m.port_name(r.m.default_port()), Some("default"));
    assert_eq!(r.m.stats().ports, 1);
}

#[test]
fn creating_a_port_whose_name_is_taken_is_an_error() {
    let mut r = rig();
    r.m.create_port("device1", PortOptions::default()).unwrap();
    let err =
        r.m.create_port("device1", PortOptions::default())
            .unwrap_err();
    assert!(matches!(err, SessionError::PortExists(name) if name == "device1"));
    assert!(matches!(
        r.m.create_port("default", PortOptions::default()),
        Err(SessionError::PortExists(_))
    ));
}

#[test]
fn port_options_override_the_managers_settings() {
    let mut r = rig();
    let fast =
        r.m.create_port("fast", PortOptions::default().session_timeout(ms(10)))
            .unwrap();
    let a = r.m.open_session(fast, r.at(0)).unwrap();
    let b = r.open(0);
    let sa = r.send(a, json!({}), 0);
    let sb = r.send(b, json!({}), 0);
    r.tick(10);
    let events = r.events();
    assert!(failure(&events, sa).is_some());
    assert!(failure(&events, sb).is_none());
}

#[test]
fn destroying_a_port_aborts_its_sends_and_closes_its_sessions_only() {
    let mut r = rig();
    let port = r.m.create_port("client", PortOptions::default()).unwrap();
    let keep = r.open(0);
    let kept_send = r.send(keep, json!({}), 0);
    let s1 = r.m.open_session(port, r.at(0)).unwrap();
    let s2 = r.m.open_session(port, r.at(0)).unwrap();
    let send = r.send(s1, json!({}), 0);
    r.m.post(s2, json!({}), r.at(0)).unwrap();
    r.m.destroy_port(port).unwrap();
    let events = r.events();
    assert!(matches!(
        failure(&events, send),
        Some(SessionError::Aborted(None))
    ));
    assert!(failure(&events, kept_send).is_none());
    let closed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Closed {
                session,
                reason: CloseReason::PortDestroyed,
            } => Some(*session),
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![s1, s2]);
    // Its queued transmissions are gone; the other port's remain.
    let out = r.transmits();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].session, keep);
    // Its handles are refused; its name is free again, with a fresh sid space.
    assert!(matches!(
        r.m.open_session(port, r.at(0)),
        Err(SessionError::NoSuchPort)
    ));
    assert!(matches!(
        r.m.post(s1, json!({}), r.at(0)),
        Err(SessionError::Invalid)
    ));
    assert!(matches!(
        r.m.destroy_port(port),
        Err(SessionError::NoSuchPort)
    ));
    assert_eq!(r.m.port("client"), None);
    let again = r.m.create_port("client", PortOptions::default()).unwrap();
    assert_ne!(again, port);
    assert_eq!(r.m.open_session(again, r.at(0)).unwrap().sid(), 1);
    assert!(r.m.is_waiting(keep));
}

#[test]
fn port_wide_cancel_abort_and_timeout_fail_only_that_ports_sends() {
    type PortOp = fn(&mut Rig, psession_core::PortId);
    let ops: [(PortOp, common::Expect); 3] = [
        (
            |r, p| r.m.cancel_port(p, r.at(5)).unwrap(),
            |e| matches!(e, SessionError::Cancelled),
        ),
        (
            |r, p| {
                r.m.abort_port(p, Some(Cause::msg("reset")), r.at(5))
                    .unwrap()
            },
            |e| matches!(e, SessionError::Aborted(Some(c)) if c.to_string() == "reset"),
        ),
        (
            |r, p| r.m.timeout_port(p, r.at(5)).unwrap(),
            |e| matches!(e, SessionError::Timeout),
        ),
    ];
    for (op, expected) in ops {
        let mut r = rig();
        let port = r.m.create_port("p", PortOptions::default()).unwrap();
        let sessions: Vec<_> = (0..3)
            .map(|_| r.m.open_session(port, r.at(0)).unwrap())
            .collect();
        let sends: Vec<_> = sessions[..2]
            .iter()
            .map(|s| {
                r.m.send(*s, json!({}), SendOptions::default(), r.at(0))
                    .unwrap()
            })
            .collect();
        let other = r.open(0);
        let other_send = r.send(other, json!({}), 0);
        op(&mut r, port);
        let events = r.events();
        for send in sends {
            assert!(expected(&failure(&events, send).unwrap()));
        }
        assert!(failure(&events, other_send).is_none());
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(
            sessions.iter().all(|s| r.m.is_live(*s)),
            "sessions stay open"
        );
        assert_eq!(r.m.port_stats(port).unwrap().waiting_sends, 0);
        assert_eq!(r.m.stats().waiting_sends, 1);
    }
}

#[test]
fn manager_wide_cancel_abort_and_timeout_fail_every_waiting_send() {
    type AllOp = fn(&mut Rig);
    let ops: [(AllOp, common::Expect); 3] = [
        (
            |r| r.m.cancel_all(r.at(5)),
            |e| matches!(e, SessionError::Cancelled),
        ),
        (
            |r| r.m.abort_all(Some(Cause::msg("shutdown")), r.at(5)),
            |e| matches!(e, SessionError::Aborted(Some(c)) if c.to_string() == "shutdown"),
        ),
        (
            |r| r.m.timeout_all(r.at(5)),
            |e| matches!(e, SessionError::Timeout),
        ),
    ];
    for (op, expected) in ops {
        let mut r = rig();
        let ports = [
            r.m.default_port(),
            r.m.create_port("b", PortOptions::default()).unwrap(),
        ];
        let mut sends = vec![];
        for port in ports {
            let s = r.m.open_session(port, r.at(0)).unwrap();
            sends.push(
                r.m.send(
                    s,
                    json!({}),
                    SendOptions::default().retries(2, ms(1)),
                    r.at(0),
                )
                .unwrap(),
            );
            r.m.open_session(port, r.at(0)).unwrap(); // idle, untouched
        }
        op(&mut r);
        let events = r.events();
        assert_eq!(events.len(), 2);
        for send in sends {
            assert!(expected(&failure(&events, send).unwrap()));
        }
        assert_eq!(r.m.stats().waiting_sends, 0);
        assert_eq!(r.m.stats().live_sessions, 4);
        r.transmits();
        r.tick(5000);
        assert!(r.transmits().is_empty(), "no retries after the failure");
    }
}

#[test]
fn clear_port_ends_that_ports_sessions_and_clear_ends_all() {
    let mut r = rig();
    let a = r.m.create_port("a", PortOptions::default()).unwrap();
    let b = r.m.create_port("b", PortOptions::default()).unwrap();
    let sa = r.m.open_session(a, r.at(0)).unwrap();
    let sb = r.m.open_session(b, r.at(0)).unwrap();
    let send = r.send(sa, json!({}), 0);
    r.m.clear_port(a).unwrap();
    let events = r.events();
    assert!(matches!(
        failure(&events, send),
        Some(SessionError::Cancelled)
    ));
    assert!(events.iter().any(
        |e| matches!(e, Event::Closed { session, reason: CloseReason::Cleared } if *session == sa)
    ));
    assert!(!r.m.is_live(sa) && r.m.is_live(sb));
    assert_eq!(r.m.port("a"), Some(a), "the port stays");
    r.m.clear();
    assert!(!r.m.is_live(sb));
    assert_eq!(r.m.stats().live_sessions, 0);
    assert_eq!(r.m.stats().ports, 3, "ports stay");
}

#[test]
fn counters_report_live_sessions_and_waiting_sends() {
    let mut r = rig();
    let port = r.m.default_port();
    let s1 = r.m.open_session(port, r.at(0)).unwrap();
    r.m.open_session(port, r.at(0)).unwrap();
    r.m.handle_inbound(port, json!({"sid": 9}), r.at(0));
    r.send(s1, json!({}), 0);
    let stats = r.m.port_stats(port).unwrap();
    assert_eq!(
        (
            stats.live_sessions,
            stats.incoming_sessions,
            stats.waiting_sends
        ),
        (3, 1, 1)
    );
    let total = r.m.stats();
    assert_eq!(
        (
            total.live_sessions,
            total.waiting_sends,
            total.queued_messages
        ),
        (3, 1, 1)
    );
    assert_eq!((total.queued_transmits, total.queued_events), (1, 1));
}

#[test]
fn nothing_is_left_once_every_session_has_ended() {
    let mut r = rig();
    let port = r.m.create_port("p", PortOptions::default()).unwrap();
    for i in 0..100 {
        let s = r.m.open_session(port, r.at(i)).unwrap();
        r.m.send(
            s,
            json!({"i": i}),
            SendOptions::default().retries(1, ms(5)),
            r.at(i),
        )
        .unwrap();
        r.m.handle_inbound(port, json!({"sid": 1000 + i}), r.at(i));
    }
    r.m.clear();
    r.transmits();
    r.events();
    assert_eq!(r.next_deadline_ms(), None);
    let stats = r.m.stats();
    assert_eq!(
        (
            stats.live_sessions,
            stats.waiting_sends,
            stats.queued_messages,
            stats.queued_transmits,
            stats.queued_events,
            stats.timer_entries
        ),
        (0, 0, 0, 0, 0, 0)
    );
}

#[test]
fn destroying_the_default_port_replaces_it_with_a_fresh_one() {
    let mut r = rig();
    let old = r.m.default_port();
    let s = r.m.open_session(old, r.at(0)).unwrap();
    let send = r.send(s, json!({}), 0);
    r.m.destroy_port(old).unwrap();
    assert!(matches!(
        failure(&r.events(), send),
        Some(SessionError::Aborted(None))
    ));
    let new = r.m.default_port();
    assert_ne!(new, old);
    assert_eq!(r.m.port(DEFAULT_PORT), Some(new));
    assert!(matches!(
        r.m.open_session(old, r.at(0)),
        Err(SessionError::NoSuchPort)
    ));
    assert_eq!(r.m.open_session(new, r.at(0)).unwrap().sid(), 1);
}
