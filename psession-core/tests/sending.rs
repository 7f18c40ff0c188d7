//! Sends, replies, retries and the ways a waiting send ends.

mod common;

use common::{failure, ms, reply, Rig};
use psession_core::{Cause, CloseReason, Event, ManagerConfig, Routed, SendOptions, SessionError};
use serde_json::json;

fn rig() -> Rig {
    Rig::new(ManagerConfig::default().session_timeout(ms(1000)))
}

#[test]
fn send_tags_message_with_sid_overwriting_the_callers_value() {
    let mut r = rig();
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    let send = r.send(s, json!({"cmd": "on", "sid": 999}), 0);
    let out = r.transmits();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].message, json!({"cmd": "on", "sid": 1}));
    assert_eq!(out[0].port, port);
    assert_eq!(out[0].session, s);
    assert_eq!(out[0].send, Some(send));
}

#[test]
fn custom_session_id_name_is_used_to_tag_and_route() {
    let mut r = Rig::new(ManagerConfig::default().session_id_name("sessionId"));
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    let send = r.send(s, json!({"q": 1}), 0);
    assert_eq!(r.transmits()[0].message, json!({"q": 1, "sessionId": 1}));
    assert!(!r.m.is_session(&json!({"sid": 1})));
    assert!(r.m.is_session(&json!({"sessionId": 1})));
    r.m.handle_inbound(port, json!({"sessionId": 1, "a": 2}), r.at(1));
    assert_eq!(
        reply(&r.events(), send),
        Some(json!({"sessionId": 1, "a": 2}))
    );
}

#[test]
fn reply_completes_the_waiting_send_exactly_once() {
    let mut r = rig();
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    let send = r.send(s, json!({}), 0);
    assert!(r.m.is_waiting(s));
    let routed =
        r.m.handle_inbound(port, json!({"sid": 1, "ok": true}), r.at(5));
    assert!(matches!(routed, Routed::Reply(id) if id == s));
    let events = r.events();
    assert_eq!(events.len(), 1);
    assert_eq!(reply(&events, send), Some(json!({"sid": 1, "ok": true})));
    assert!(!r.m.is_waiting(s));
    // A duplicate reply is not a second completion: it is queued for recv.
    let routed =
        r.m.handle_inbound(port, json!({"sid": 1, "ok": true}), r.at(6));
    assert!(matches!(routed, Routed::Queued(_)));
    assert!(r.events().iter().all(|e| !matches!(e, Event::Reply { .. })));
    // The deadline of the finished send fires nothing.
    r.tick(5000);
    assert!(r.events().is_empty());
}

#[test]
fn multi_turn_conversation_on_one_session() {
    let mut r = rig();
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    let first = r.send(s, json!({"command": "open light"}), 0);
    assert_eq!(r.transmits().len(), 1);
    r.m.handle_inbound(port, json!({"sid": 1, "status": "needPassword"}), r.at(10));
    assert_eq!(reply(&r.events(), first).unwrap()["status"], "needPassword");
    let second = r.send(s, json!({"password": "123456"}), 20);
    assert_eq!(
        r.transmits()[0].message,
        json!({"password": "123456", "sid": 1})
    );
    r.m.handle_inbound(port, json!({"sid": 1, "status": "ok"}), r.at(30));
    assert_eq!(reply(&r.events(), second).unwrap()["status"], "ok");
    r.m.end(s).unwrap();
}

#[test]
fn second_send_while_one_waits_is_busy() {
    let mut r = rig();
    let s = r.open(0);
    r.send(s, json!({}), 0);
    let err =
        r.m.send(s, json!({}), SendOptions::default(), r.at(0))
            .unwrap_err();
    assert!(matches!(err, SessionError::Busy));
    assert_eq!(r.transmits().len(), 1);
}

#[test]
fn message_that_cannot_carry_a_sid_is_untaggable() {
    let mut r = rig();
    let s = r.open(0);
    for msg in [json!("text"), json!([1, 2]), json!(null), json!(3)] {
        let err =
            r.m.send(s, msg.clone(), SendOptions::default(), r.at(0))
                .unwrap_err();
        assert!(matches!(err, SessionError::Untaggable));
        assert!(matches!(
            r.m.post(s, msg, r.at(0)),
            Err(SessionError::Untaggable)
        ));
    }
    assert!(!r.m.is_waiting(s));
    assert!(r.transmits().is_empty());
}

#[test]
fn send_times_out_at_its_exact_deadline() {
    let mut r = rig();
    let s = r.open(0);
    let send = r.send(s, json!({}), 100);
    assert_eq!(r.next_deadline_ms(), Some(1100));
    r.m.handle_timeout(r.at(1100) - std::time::Duration::from_nanos(1));
    assert!(r.events().is_empty(), "fired before the deadline");
    r.tick(1100);
    assert!(matches!(
        failure(&r.events(), send),
        Some(SessionError::Timeout)
    ));
    assert!(r.m.is_live(s), "a timeout ends the send, not the session");
}

#[test]
fn per_send_timeout_overrides_the_port_setting() {
    let mut r = rig();
    let s = r.open(0);
    let send =
        r.m.send(
            s,
            json!({}),
            SendOptions::default().timeout(ms(300)),
            r.at(0),
        )
        .unwrap();
    assert_eq!(r.next_deadline_ms(), Some(300));
    r.tick(300);
    assert!(matches!(
        failure(&r.events(), send),
        Some(SessionError::Timeout)
    ));
}

#[test]
fn retries_transmit_the_same_message_again_after_the_interval() {
    let mut r = rig();
    let s = r.open(0);
    let options = SendOptions::default().timeout(ms(100)).retries(3, ms(50));
    let send =
        r.m.send(s, json!({"q": "status"}), options, r.at(0))
            .unwrap();
    let mut sent_at = vec![];
    for t in 0..=1000 {
        r.tick(t);
        for tx in r.transmits() {
            assert_eq!(tx.message, json!({"q": "status", "sid": 1}));
            assert_eq!(tx.send, Some(send));
            sent_at.push(t);
        }
        if let Some(err) = failure(&r.events(), send) {
            assert!(matches!(err, SessionError::Timeout));
            // 4 attempts of 100 ms with 3 pauses of 50 ms.
            assert_eq!(t, 4 * 100 + 3 * 50);
            assert_eq!(sent_at, vec![0, 150, 300, 450]);
            return;
        }
    }
    panic!("the send never failed");
}

#[test]
fn reply_during_a_retry_pause_completes_the_send() {
    let mut r = rig();
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    let options = SendOptions::default().timeout(ms(100)).retries(2, ms(500));
    let send = r.m.send(s, json!({}), options, r.at(0)).unwrap();
    r.tick(100); // first attempt timed out, pausing until 600
    assert!(r.events().is_empty());
    r.m.handle_inbound(port, json!({"sid": 1, "late": true}), r.at(200));
    assert!(reply(&r.events(), send).is_some());
    r.transmits();
    r.tick(10_000);
    assert!(
        r.transmits().is_empty(),
        "no retransmission after the reply"
    );
}

#[test]
fn cancel_abort_and_timeout_stop_retries_at_once() {
    type Stop = fn(&mut Rig, psession_core::SessionId);
    let cases: [(Stop, common::Expect); 3] = [
        (
            |r, s| r.m.cancel(s, r.at(150)).unwrap(),
            |e| matches!(e, SessionError::Cancelled),
        ),
        (
            |r, s| {
                r.m.abort(s, Some(Cause::msg("unplugged")), r.at(150))
                    .unwrap()
            },
            |e| matches!(e, SessionError::Aborted(Some(c)) if c.to_string() == "unplugged"),
        ),
        (
            |r, s| r.m.timeout(s, r.at(150)).unwrap(),
            |e| matches!(e, SessionError::Timeout),
        ),
    ];
    for (stop, expected) in cases {
        let mut r = rig();
        let s = r.open(0);
        let options = SendOptions::default().timeout(ms(100)).retries(5, ms(10));
        let send = r.m.send(s, json!({}), options, r.at(0)).unwrap();
        r.tick(100);
        r.tick(110); // second transmission
        assert_eq!(r.transmits().len(), 2);
        stop(&mut r, s);
        let err = failure(&r.events(), send).expect("the send failed");
        assert!(expected(&err), "{err:?}");
        r.tick(100_000);
        assert!(r.transmits().is_empty());
        assert!(r.events().is_empty());
        assert!(r.m.is_live(s));
    }
}

#[test]
fn transport_error_fails_the_send_at_once_without_retry() {
    let mut r = rig();
    let s = r.open(0);
    let send =
        r.m.send(
            s,
            json!({}),
            SendOptions::default().retries(3, ms(1)),
            r.at(0),
        )
        .unwrap();
    let tx = r.transmits().remove(0);
    let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "socket closed");
    assert!(r
        .m
        .handle_transmit_error(tx.send.unwrap(), io.into(), r.at(0)));
    match failure(&r.events(), send) {
        Some(SessionError::Transport(cause)) => {
            assert_eq!(
                cause.downcast_ref::<std::io::Error>().unwrap().kind(),
                std::io::ErrorKind::BrokenPipe
            )
        }
        other => panic!("{other:?}"),
    }
    r.tick(100_000);
    assert!(r.transmits().is_empty(), "nothing is retried");
    assert_eq!(r.m.stats().waiting_sends, 0);
}

#[test]
fn transport_error_for_a_finished_send_does_not_touch_the_next_one() {
    let mut r = rig();
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    let first = r.send(s, json!({}), 0);
    r.m.handle_inbound(port, json!({"sid": 1}), r.at(1));
    let second = r.send(s, json!({}), 2);
    r.events();
    assert!(!r.m.handle_transmit_error(first, Cause::msg("old"), r.at(3)));
    assert!(r.events().is_empty());
    assert!(r.m.is_waiting(s));
    assert!(!r.m.withdraw(first, r.at(3)));
    assert!(r.m.withdraw(second, r.at(3)));
}

#[test]
fn withdraw_removes_the_send_without_any_event() {
    let mut r = rig();
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    let send = r.send(s, json!({}), 0);
    assert!(r.m.withdraw(send, r.at(1)));
    assert!(!r.m.withdraw(send, r.at(1)));
    r.tick(10_000);
    assert!(r.events().is_empty());
    // A reply arriving afterwards is just a message for the session.
    r.m.handle_inbound(port, json!({"sid": 1}), r.at(10_001));
    assert!(matches!(r.events()[..], [Event::Readable { .. }]));
}

#[test]
fn post_tags_and_transmits_without_waiting() {
    let mut r = rig();
    let s = r.open(0);
    r.m.post(s, json!({"note": 1}), r.at(0)).unwrap();
    let out = r.transmits();
    assert_eq!(out[0].message, json!({"note": 1, "sid": 1}));
    assert_eq!(out[0].send, None);
    assert!(!r.m.is_waiting(s));
    assert_eq!(r.m.stats().waiting_sends, 0);
}

#[test]
fn end_cancels_the_waiting_send_and_invalidates_the_handle() {
    let mut r = rig();
    let s = r.open(0);
    let send = r.send(s, json!({}), 0);
    r.m.end(s).unwrap();
    let events = r.events();
    assert!(matches!(
        failure(&events, send),
        Some(SessionError::Cancelled)
    ));
    assert!(
        matches!(events.last(), Some(Event::Closed { session, reason: CloseReason::Ended }) if *session == s)
    );
    assert!(!r.m.is_live(s));
    assert!(matches!(r.m.end(s), Err(SessionError::Invalid)));
    assert!(matches!(
        r.m.send(s, json!({}), SendOptions::default(), r.at(1)),
        Err(SessionError::Invalid)
    ));
    assert!(matches!(
        r.m.post(s, json!({}), r.at(1)),
        Err(SessionError::Invalid)
    ));
    assert!(matches!(r.m.recv(s), Err(SessionError::Invalid)));
    assert!(matches!(r.m.cancel(s, r.at(1)), Err(SessionError::Invalid)));
}

#[test]
fn cancel_without_a_waiting_send_is_a_no_op() {
    let mut r = rig();
    let s = r.open(0);
    r.m.cancel(s, r.at(1)).unwrap();
    r.m.abort(s, None, r.at(1)).unwrap();
    r.m.timeout(s, r.at(1)).unwrap();
    assert!(r.events().is_empty());
    assert!(r.m.is_live(s));
}

#[test]
fn sessions_with_a_non_json_message_type_work_end_to_end() {
    use psession_core::{Manager, Message};

    #[derive(Clone, Debug, PartialEq)]
    struct Frame {
        sid: u32,
        body: &'static str,
    }
    impl Message for Frame {
        fn sid(&self, _: &str) -> Option<u32> {
            (self.sid != 0).then_some(self.sid)
        }
        fn set_sid(&mut self, _: &str, sid: u32) -> bool {
            self.sid = sid;
            true
        }
    }

    let now = std::time::Instant::now();
    let mut m: Manager<Frame> = Manager::new(ManagerConfig::default()).unwrap();
    let port = m.default_port();
    let s = m.open_session(port, now).unwrap();
    let send = m
        .send(
            s,
            Frame {
                sid: 0,
                body: "ping",
            },
            SendOptions::default(),
            now,
        )
        .unwrap();
    assert_eq!(
        m.poll_transmit().unwrap().message,
        Frame {
            sid: 1,
            body: "ping"
        }
    );
    let routed = m.handle_inbound(
        port,
        Frame {
            sid: 0,
            body: "noise",
        },
        now,
    );
    assert!(matches!(
        routed,
        Routed::NotSession(Frame { body: "noise", .. })
    ));
    m.handle_inbound(
        port,
        Frame {
            sid: 1,
            body: "pong",
        },
        now,
    );
    match m.poll_event() {
        Some(Event::Reply {
            send: s2, message, ..
        }) => {
            assert_eq!(s2, send);
            assert_eq!(message.body, "pong");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_send_that_ended_before_its_transmission_was_taken_is_never_transmitted() {
    // Recycling with max_session_count 1: A's request must not go out with
    // the sid that now belongs to B, or B would take the answer to A's.
    let mut r = Rig::new(ManagerConfig::default().max_session_count(1));
    let port = r.m.default_port();
    let a = r.m.open_session(port, r.at(0)).unwrap();
    r.send(a, json!({"cmd": "delete_all"}), 0);
    r.m.post(a, json!({"note": "posted"}), r.at(0)).unwrap();
    let b = r.m.open_session(port, r.at(0)).unwrap();
    r.send(b, json!({"cmd": "get_status"}), 0);
    let out: Vec<_> = r.transmits().into_iter().map(|t| t.message).collect();
    assert_eq!(
        out,
        vec![
            json!({"note": "posted", "sid": 1}),
            json!({"cmd": "get_status", "sid": 1})
        ]
    );
    // Withdrawn and cancelled sends are not transmitted either.
    let c = r.m.open_session(port, r.at(0)).unwrap();
    let send = r.send(c, json!({}), 0);
    r.m.withdraw(send, r.at(0));
    assert!(r.transmits().is_empty());
    assert_eq!(r.m.stats().queued_transmits, 0);
}

#[test]
fn a_handle_from_another_manager_is_refused_without_panic() {
    let mut a = rig();
    let mut b = rig();
    let pa =
        a.m.create_port("only-in-a", psession_core::PortOptions::default())
            .unwrap();
    let foreign = a.m.open_session(pa, a.at(0)).unwrap();
    let result =
        b.m.send(foreign, json!({}), SendOptions::default(), b.at(0));
    assert!(matches!(result, Err(SessionError::Invalid)));
    assert!(b.m.post(foreign, json!({}), b.at(0)).is_err());
    assert!(b.m.end(foreign).is_err());
}

#[test]
fn a_message_type_reporting_sid_zero_is_not_a_session_message() {
    use psession_core::{Manager, Message};
    #[derive(Clone, Debug)]
    struct Zero;
    impl Message for Zero {
        fn sid(&self, _: &str) -> Option<u32> {
            Some(0)
        }
        fn set_sid(&mut self, _: &str, _: u32) -> bool {
            true
        }
    }
    let mut m: Manager<Zero> = Manager::new(ManagerConfig::default()).unwrap();
    assert!(!m.is_session(&Zero));
    let port = m.default_port();
    assert!(matches!(
        m.handle_inbound(port, Zero, std::time::Instant::now()),
        Routed::NotSession(_)
    ));
    assert_eq!(m.stats().live_sessions, 0);
}
