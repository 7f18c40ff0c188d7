//! Inbound messages: what is a session message, where it goes, and what is
//! dropped.

mod common;

use common::{failure, ms, reply, Rig};
use psession_core::{DropReason, Event, ManagerConfig, PortOptions, Routed, SidPartition};
use serde_json::{json, Value};

fn rig() -> Rig {
    Rig::new(ManagerConfig::default().session_timeout(ms(100)))
}

#[test]
fn non_session_messages_come_back_untouched() {
    let mut r = rig();
    let port = r.m.default_port();
    let garbage = [
        json!({"type": "command"}),
        json!({"sid": 0}),
        json!({"sid": -1}),
        json!({"sid": 1.5}),
        json!({"sid": 4294967296u64}),
        json!({"sid": u64::MAX}),
        json!({"sid": 1e300}),
        json!({"sid": -0.0}),
        json!({"sid": "1"}),
        json!({"sid": null}),
        json!({"sid": true}),
        json!({"sid": [1]}),
        json!({"sid": {"sid": 1}}),
        json!([{"sid": 1}]),
        json!("sid"),
        json!(1),
        json!(null),
    ];
    for message in garbage {
        assert!(!r.m.is_session(&message), "{message}");
        match r.m.handle_inbound(port, message.clone(), r.at(0)) {
            Routed::NotSession(back) => assert_eq!(back, message),
            other => panic!("{message} was routed: {other:?}"),
        }
    }
    assert!(r.events().is_empty());
    assert_eq!(r.m.stats().live_sessions, 0);
}

#[test]
fn integral_float_sid_counts_like_a_javascript_peer_sends_it() {
    let mut r = rig();
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    let send = r.send(s, json!({}), 0);
    let message: Value = serde_json::from_str(r#"{"sid": 1.0}"#).unwrap();
    r.m.handle_inbound(port, message, r.at(1));
    assert!(reply(&r.events(), send).is_some());
}

#[test]
fn unknown_sid_opens_an_incoming_session_read_with_recv() {
    let mut r = rig();
    let port = r.m.default_port();
    let routed =
        r.m.handle_inbound(port, json!({"sid": 42, "command": "getTime"}), r.at(0));
    let Routed::Opened(session) = routed else {
        panic!("{routed:?}")
    };
    assert_eq!(session.sid(), 42);
    assert_eq!(session.port(), port);
    assert!(matches!(r.events()[..], [Event::Incoming { session: s }] if s == session));
    assert_eq!(r.m.recv(session).unwrap().unwrap()["command"], "getTime");
    assert_eq!(r.m.recv(session).unwrap(), None);
    // The answer goes out on the peer's sid; the next message reaches the same session.
    r.m.post(session, json!({"time": "now"}), r.at(1)).unwrap();
    assert_eq!(r.transmits()[0].message["sid"], 42);
    assert!(
        matches!(r.m.handle_inbound(port, json!({"sid": 42}), r.at(2)), Routed::Queued(s) if s == session)
    );
    assert_eq!(r.m.port_stats(port).unwrap().incoming_sessions, 1);
}

#[test]
fn incoming_sessions_are_capped_per_port_and_the_flood_is_counted() {
    let mut r = Rig::new(ManagerConfig::default().max_incoming_sessions(3));
    let port = r.m.default_port();
    let other = r.m.create_port("other", PortOptions::default()).unwrap();
    for sid in 1..=1000u32 {
        r.m.handle_inbound(port, json!({"sid": sid}), r.at(0));
    }
    let stats = r.m.port_stats(port).unwrap();
    assert_eq!(stats.live_sessions, 3);
    assert_eq!(stats.counters.incoming_refused, 997);
    assert_eq!(stats.counters.dropped_messages, 997);
    let dropped = r
        .events()
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Dropped {
                    reason: DropReason::IncomingLimit,
                    ..
                }
            )
        })
        .count();
    assert_eq!(dropped, 997);
    // This side can still open its own sessions, and other ports are untouched.
    let mine = r.m.open_session(port, r.at(0)).unwrap();
    assert_eq!(mine.sid(), 4);
    assert!(matches!(
        r.m.handle_inbound(other, json!({"sid": 1}), r.at(0)),
        Routed::Opened(_)
    ));
    // Ending an incoming session makes room for another.
    let first = r.m.session(port, 1).unwrap();
    r.m.end(first).unwrap();
    assert!(matches!(
        r.m.handle_inbound(port, json!({"sid": 500}), r.at(0)),
        Routed::Opened(_)
    ));
}

#[test]
fn message_for_a_session_with_no_send_waiting_is_queued_and_signalled_once() {
    let mut r = rig();
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    for n in 0..3 {
        assert!(matches!(
            r.m.handle_inbound(port, json!({"sid": 1, "n": n}), r.at(0)),
            Routed::Queued(_)
        ));
    }
    let readable = r
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Readable { .. }))
        .count();
    assert_eq!(readable, 1, "signalled when the queue became non-empty");
    let got: Vec<Value> = std::iter::from_fn(|| r.m.recv(s).unwrap())
        .map(|m| m["n"].clone())
        .collect();
    assert_eq!(got, vec![json!(0), json!(1), json!(2)]);
    r.m.handle_inbound(port, json!({"sid": 1, "n": 3}), r.at(0));
    assert!(matches!(r.events()[..], [Event::Readable { .. }]));
}

#[test]
fn full_session_queue_drops_the_oldest_message_and_counts_it() {
    let mut r = Rig::new(ManagerConfig::default().inbox_capacity(2));
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    for n in 0..5 {
        r.m.handle_inbound(port, json!({"sid": 1, "n": n}), r.at(0));
    }
    let dropped = r
        .events()
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Dropped {
                    reason: DropReason::InboxFull,
                    sid: 1,
                    ..
                }
            )
        })
        .count();
    assert_eq!(dropped, 3);
    assert_eq!(r.m.port_stats(port).unwrap().counters.dropped_messages, 3);
    assert_eq!(r.m.stats().queued_messages, 2);
    assert_eq!(r.m.recv(s).unwrap().unwrap()["n"], 3);
    assert_eq!(r.m.recv(s).unwrap().unwrap()["n"], 4);
    assert_eq!(r.m.stats().queued_messages, 0);
}

#[test]
fn late_reply_after_a_timeout_is_queued_and_counted() {
    let mut r = rig();
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    let send = r.send(s, json!({}), 0);
    r.tick(100);
    assert!(failure(&r.events(), send).is_some());
    assert!(matches!(
        r.m.handle_inbound(port, json!({"sid": 1, "late": true}), r.at(150)),
        Routed::Queued(_)
    ));
    assert_eq!(r.m.recv(s).unwrap().unwrap()["late"], true);
    // Only the first message after the timeout counts as the late reply.
    r.m.handle_inbound(port, json!({"sid": 1}), r.at(160));
    assert_eq!(r.m.port_stats(port).unwrap().counters.late_replies, 1);
    assert_eq!(r.m.stats().counters.late_replies, 1);
}

#[test]
fn reply_for_an_ended_session_in_this_sides_partition_is_dropped() {
    let mut r = Rig::new(ManagerConfig::default().partition(SidPartition::Odd));
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    r.m.end(s).unwrap();
    r.events();
    assert!(matches!(
        r.m.handle_inbound(port, json!({"sid": 1}), r.at(0)),
        Routed::Dropped(DropReason::UnknownSid)
    ));
    assert!(matches!(
        r.events()[..],
        [Event::Dropped {
            reason: DropReason::UnknownSid,
            sid: 1,
            ..
        }]
    ));
    assert_eq!(r.m.stats().live_sessions, 0);
}

#[test]
fn message_routed_to_a_destroyed_port_is_dropped() {
    let mut r = rig();
    let port = r.m.create_port("gone", PortOptions::default()).unwrap();
    r.m.destroy_port(port).unwrap();
    assert!(matches!(
        r.m.handle_inbound(port, json!({"sid": 1}), r.at(0)),
        Routed::Dropped(DropReason::NoSuchPort)
    ));
    assert_eq!(r.m.stats().counters.dropped_messages, 1);
    assert!(matches!(
        r.m.handle_inbound(port, json!({"x": 1}), r.at(0)),
        Routed::NotSession(_)
    ));
}

#[test]
fn deliver_hands_a_message_to_a_given_session_like_next() {
    let mut r = rig();
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    let send = r.send(s, json!({}), 0);
    // Seed: manager.getSession(message, port) then session.next(message).
    let message = json!({"sid": 1, "ok": 1});
    assert!(r.m.is_session(&message));
    let found = r.m.session_for(port, &message).unwrap();
    assert_eq!(found, s);
    assert!(matches!(
        r.m.deliver(found, message, r.at(1)).unwrap(),
        Routed::Reply(_)
    ));
    assert!(reply(&r.events(), send).is_some());
    assert_eq!(r.m.session_for(port, &json!({"sid": 9})), None);
    assert_eq!(r.m.session_for(port, &json!({"nosid": 1})), None);
}

#[test]
fn same_sid_on_two_ports_reaches_two_different_sessions() {
    let mut r = rig();
    let a = r.m.create_port("a", PortOptions::default()).unwrap();
    let b = r.m.create_port("b", PortOptions::default()).unwrap();
    let sa = r.m.open_session(a, r.at(0)).unwrap();
    let sb = r.m.open_session(b, r.at(0)).unwrap();
    assert_eq!((sa.sid(), sb.sid()), (1, 1));
    let send_a = r.send(sa, json!({"to": "a"}), 0);
    let send_b = r.send(sb, json!({"to": "b"}), 0);
    let out = r.transmits();
    assert_eq!((out[0].port, out[1].port), (a, b));
    r.m.handle_inbound(b, json!({"sid": 1, "from": "b"}), r.at(1));
    let events = r.events();
    assert_eq!(reply(&events, send_b).unwrap()["from"], "b");
    assert!(reply(&events, send_a).is_none());
    assert!(r.m.is_waiting(sa));
}

#[test]
fn a_sid_read_by_the_caller_routes_like_handle_inbound() {
    let mut r = rig();
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    let send = r.send(s, json!({}), 0);
    let routed =
        r.m.handle_session_message(port, 1, json!({"sid": 1, "ok": true}), r.at(1));
    assert!(matches!(routed, Routed::Reply(id) if id == s), "{routed:?}");
    assert_eq!(reply(&r.events(), send).unwrap()["ok"], true);
    // An unknown sid opens an incoming session, as through handle_inbound.
    let routed =
        r.m.handle_session_message(port, 7, json!({"sid": 7}), r.at(2));
    assert!(
        matches!(routed, Routed::Opened(id) if id.sid() == 7),
        "{routed:?}"
    );
    // Sid 0 is no session's.
    let message = json!({"sid": 0, "x": 1});
    match r
        .m
        .handle_session_message(port, 0, message.clone(), r.at(3))
    {
        Routed::NotSession(back) => assert_eq!(back, message),
        other => panic!("{other:?}"),
    }
}
