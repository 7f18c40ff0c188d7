//! The lifecycle of sessions, ports and managers, on both runtimes: idle
//! expiry, sid overflow, per-port sid spaces, port-wide and manager-wide
//! operations, one-shot requests, dropped futures, sessions, ports and
//! managers, transport failures, backpressure, floods, and the seed's
//! inbound path (`is_session`, `get_session`, `next`).
//!
//! Most scenarios keep a send's future in hand (boxed and polled once, so
//! that it waits) instead of spawning it, so that what they check happens
//! synchronously and does not depend on scheduling.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use psession_core::{
    Cause, DropReason, ManagerConfig, OverflowPolicy, PortOptions, Routed, SendOptions,
    SessionError,
};
use psession_driver::{ManagerEvent, Port, Sender};
use psession_tests::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Polls `future` once, with the calling task's waker.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}

/// Polls `future` until it completes or `limit` passes on the runtime's
/// clock; `None` if the time ran out first.
async fn within<H: Harness, F: Future + Unpin>(
    future: &mut F,
    limit: Duration,
) -> Option<F::Output> {
    let mut timer = pin!(H::sleep(limit));
    poll_fn(|cx| {
        if let Poll::Ready(output) = Pin::new(&mut *future).poll(cx) {
            return Poll::Ready(Some(output));
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// A waker that records whether it was woken.
struct WakeFlag(AtomicBool);

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl WakeFlag {
    fn woken(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Polls `future` once with a waker of its own, asserts that it waits, and
/// returns the flag that tells whether that waker was woken since: a
/// stream's reader parked before something that must wake it.
fn park<F: Future + Unpin>(future: &mut F) -> Arc<WakeFlag> {
    let flag = Arc::new(WakeFlag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(
        Pin::new(future).poll(&mut cx).is_pending(),
        "the reader should wait"
    );
    flag
}

/// Asserts that a send's first poll left it waiting.
async fn assert_waits<F: Future + Unpin>(send: &mut F)
where
    F::Output: std::fmt::Debug,
{
    match poll_once(send).await {
        Poll::Pending => {}
        Poll::Ready(outcome) => panic!("the send should wait, but ended with {outcome:?}"),
    }
}

/// Asserts that a waiting send has already ended with an error `expected`
/// accepts (it must not need to wait any more).
async fn assert_ended_with<F>(send: &mut F, expected: Expected, what: &str)
where
    F: Future<Output = Result<Value, SessionError>> + Unpin,
{
    match poll_once(send).await {
        Poll::Ready(Err(error)) if expected(&error) => {}
        other => panic!("{what}: the send should have failed, got {other:?}"),
    }
}

fn cancelled(error: &SessionError) -> bool {
    matches!(error, SessionError::Cancelled)
}

fn timed_out(error: &SessionError) -> bool {
    matches!(error, SessionError::Timeout)
}

fn aborted(error: &SessionError) -> bool {
    matches!(error, SessionError::Aborted(_))
}

fn link_lost(error: &SessionError) -> bool {
    matches!(error, SessionError::Aborted(Some(_))) && error.to_string().contains("link lost")
}

/// A manager whose ports "a" and "b" (and "default") record what they send.
fn two_ports<H: Harness>() -> (Manager<H>, Port<Value>, Port<Value>) {
    let manager =
        Manager::<H>::new(ManagerConfig::default(), Recorder::default().sender()).expect("manager");
    let a = manager
        .create_port("a", Recorder::default().sender(), PortOptions::default())
        .expect("port a");
    let b = manager
        .create_port("b", Recorder::default().sender(), PortOptions::default())
        .expect("port b");
    (manager, a, b)
}

// 1. Max-life expiry.

/// A session idle for `session_max_life` is ended at that moment, reported
/// as `Expired`, and refuses sends from then on.
async fn idle_session_expires_after_max_life<H: Harness>() {
    let max_life = ms(50);
    let (manager, _outbound) = queued::<H>(ManagerConfig::default().session_max_life(max_life));
    let mut events = manager.events();
    let start = H::now();
    let mut session = manager.create_session("default").expect("a session");
    let handle = session.handle();
    let (port, sid) = (session.port(), session.id());
    assert_eq!(port, manager.default_port().id());

    match events.next().await {
        Some(ManagerEvent::Expired {
            port: expired_port,
            sid: expired_sid,
        }) => assert_eq!((expired_port, expired_sid), (port, sid)),
        other => panic!("{}: expected Expired, got {other:?}", H::NAME),
    }
    assert_about::<H>(since::<H>(start), max_life);
    assert!(!handle.is_live());
    assert!(!session.is_live());
    let outcome = session.send(json!({ "too": "late" })).await;
    assert!(matches!(outcome, Err(SessionError::Invalid)), "{outcome:?}");
    let posted = session.post(json!({ "too": "late" })).await;
    assert!(matches!(posted, Err(SessionError::Invalid)), "{posted:?}");
    let stats = manager.stats();
    assert_eq!(stats.live_sessions, 0);
    assert_eq!(stats.counters.expired_sessions, 1);
}

/// A send that waits (through timeouts and retries) longer than
/// `session_max_life` is not expired while it waits: it ends with
/// `Timeout` after its last attempt (an expiry would fail it with
/// `Cancelled`), and the idle clock only starts then.
async fn waiting_send_is_not_expired_by_max_life<H: Harness>() {
    let max_life = ms(100);
    let (manager, outbound) = queued::<H>(ManagerConfig::default().session_max_life(max_life));
    let mut events = manager.events();
    let mut session = manager.create_session("default").expect("a session");
    let sid = session.id();
    // 30 ms per attempt, 20 ms between attempts, 4 attempts: 180 ms.
    let options = SendOptions::default().timeout(ms(30)).retries(3, ms(20));
    let start = H::now();
    let outcome = session.send_with(json!({ "ping": 1 }), options).await;
    assert!(matches!(outcome, Err(SessionError::Timeout)), "{outcome:?}");
    assert_about::<H>(since::<H>(start), ms(180));
    // Every attempt went out. (On real time, a driver woken very late may
    // rightly skip an attempt whose whole wait has already passed.)
    if H::VIRTUAL_TIME {
        assert_eq!(outbound.len(), 4, "every attempt went out");
    } else {
        assert!((1..=4).contains(&outbound.len()), "{}", outbound.len());
    }

    match events.next().await {
        Some(ManagerEvent::Expired { sid: expired, .. }) => assert_eq!(expired, sid),
        other => panic!("{}: expected Expired, got {other:?}", H::NAME),
    }
    // Idle from the failed send's last deadline on.
    assert_about::<H>(since::<H>(start), ms(180) + max_life);
    assert!(!session.is_live());
    assert_eq!(manager.stats().counters.expired_sessions, 1);
}

// 2. Sid overflow.

/// With the default policy, a port out of sids recycles its oldest
/// session: its waiting send fails with `Cancelled`, its handles get
/// `Invalid` (and never reach the new session), and the new session
/// reuses its sid.
async fn overflow_recycles_the_oldest_session_by_default<H: Harness>() {
    let (manager, _outbound) = queued::<H>(ManagerConfig::default().max_session_count(3));
    let mut oldest = manager.create_session("default").expect("session 1");
    let second = manager.create_session("default").expect("session 2");
    let third = manager.create_session("default").expect("session 3");
    assert_eq!([oldest.id(), second.id(), third.id()], [1, 2, 3]);
    let stale = oldest.handle();

    let mut waiting = Box::pin(oldest.send(json!({ "q": 1 })));
    assert_waits(&mut waiting).await;
    let mut newest = manager.create_session("default").expect("a recycled sid");
    assert_eq!(newest.id(), 1);
    assert_ended_with(&mut waiting, cancelled, "the recycled session's send").await;
    drop(waiting);

    assert!(!stale.is_live());
    assert!(second.is_live() && third.is_live());
    let outcome = oldest.send(json!({ "q": 2 })).await;
    assert!(matches!(outcome, Err(SessionError::Invalid)), "{outcome:?}");
    assert_eq!(manager.stats().counters.recycled_sessions, 1);
    assert_eq!(manager.stats().live_sessions, 3);

    // The stale handle does not reach the session that now holds sid 1.
    let fresh = newest.handle();
    let mut next = Box::pin(newest.send(json!({ "q": 3 })));
    assert_waits(&mut next).await;
    assert!(matches!(stale.cancel(), Err(SessionError::Invalid)));
    assert!(matches!(
        stale.abort(None::<Cause>),
        Err(SessionError::Invalid)
    ));
    assert!(matches!(stale.end(), Err(SessionError::Invalid)));
    assert!(fresh.is_waiting());
    let routed = manager.dispatch("default", json!({ "sid": 1, "answer": 3 }));
    assert!(matches!(routed, Routed::Reply(id) if id == fresh.session_id()));
    let reply = next.await.expect("the new session's reply");
    assert_eq!(reply["answer"], 3);
}

/// A custom overflow policy gets the port's name and its sessions, oldest
/// first, and the one it chooses (here the newest) is recycled.
async fn overflow_custom_policy_chooses_the_session_to_recycle<H: Harness>() {
    let offered = Arc::new(Mutex::new(Vec::new()));
    let record = offered.clone();
    let policy = OverflowPolicy::custom(move |port, candidates| {
        let sids: Vec<(u32, bool)> = candidates.iter().map(|c| (c.sid, c.waiting)).collect();
        record.lock().unwrap().push((port.to_owned(), sids));
        candidates.last().map(|c| c.sid)
    });
    let config = ManagerConfig::default()
        .max_session_count(3)
        .overflow(policy);
    let (manager, _outbound) = queued::<H>(config);
    let first = manager.create_session("default").expect("session 1");
    let second = manager.create_session("default").expect("session 2");
    let mut newest = manager.create_session("default").expect("session 3");
    let newest_handle = newest.handle();

    let mut waiting = Box::pin(newest.send(json!({ "q": 1 })));
    assert_waits(&mut waiting).await;
    let replacement = manager.create_session("default").expect("a recycled sid");
    assert_eq!(replacement.id(), 3);
    assert_ended_with(&mut waiting, cancelled, "the chosen session's send").await;
    assert!(!newest_handle.is_live());
    assert!(first.is_live() && second.is_live() && replacement.is_live());
    assert_eq!(
        *offered.lock().unwrap(),
        vec![(
            "default".to_owned(),
            vec![(1, false), (2, false), (3, true)]
        )]
    );
}

/// With `OverflowPolicy::Reject`, a port out of sids refuses new sessions
/// with `Exhausted` and leaves its sessions alone; a freed sid is reused.
async fn overflow_reject_refuses_new_sessions<H: Harness>() {
    let config = ManagerConfig::default()
        .max_session_count(3)
        .overflow(OverflowPolicy::Reject);
    let (manager, _outbound) = queued::<H>(config);
    let mut first = manager.create_session("default").expect("session 1");
    let second = manager.create_session("default").expect("session 2");
    let third = manager.create_session("default").expect("session 3");
    let first_handle = first.handle();
    let mut waiting = Box::pin(first.send(json!({ "q": 1 })));
    assert_waits(&mut waiting).await;

    let refused = manager.create_session("default");
    assert!(
        matches!(refused, Err(SessionError::Exhausted)),
        "{refused:?}"
    );
    let refused = manager.default_port().create_session();
    assert!(
        matches!(refused, Err(SessionError::Exhausted)),
        "{refused:?}"
    );
    assert!(first_handle.is_waiting());
    assert_waits(&mut waiting).await;
    assert!(second.is_live() && third.is_live());
    assert_eq!(manager.stats().counters.recycled_sessions, 0);

    second.end();
    let reused = manager.create_session("default").expect("a freed sid");
    assert_eq!(reused.id(), 2);
    drop(third);
}

// 3. Ports with independent sid spaces.

/// Two ports allocate sids independently (both start at 1), a reply on one
/// port reaches only that port's session, and a taken port name is refused.
async fn ports_have_independent_sid_spaces<H: Harness>() {
    let (manager, _outbound) = queued::<H>(ManagerConfig::default());
    let (to_a, mut out_a) = Sender::channel(16);
    let (to_b, mut out_b) = Sender::channel(16);
    let a = manager
        .create_port("a", to_a, PortOptions::default())
        .expect("port a");
    let b = manager
        .create_port("b", to_b, PortOptions::default())
        .expect("port b");
    assert_ne!(a.id(), b.id());
    let mut on_a = a.create_session().expect("a session on a");
    let mut on_b = manager.create_session("b").expect("a session on b");
    assert_eq!((on_a.id(), on_b.id()), (1, 1));
    assert_eq!((on_a.port(), on_b.port()), (a.id(), b.id()));
    assert_ne!(on_a.session_id(), on_b.session_id());
    let (id_a, handle_b) = (on_a.session_id(), on_b.handle());

    let mut send_a = Box::pin(on_a.send(json!({ "to": "a" })));
    let mut send_b = Box::pin(on_b.send(json!({ "to": "b" })));
    assert_waits(&mut send_a).await;
    assert_waits(&mut send_b).await;
    // Each port's messages went through its own sender.
    assert_eq!(out_a.try_recv(), Some(json!({ "to": "a", "sid": 1 })));
    assert_eq!(out_b.try_recv(), Some(json!({ "to": "b", "sid": 1 })));
    assert!(out_a.is_empty() && out_b.is_empty());

    let routed = a.dispatch(json!({ "sid": 1, "from": "a" }));
    assert!(
        matches!(routed, Routed::Reply(id) if id == id_a),
        "{routed:?}"
    );
    let reply = send_a.await.expect("a's reply");
    assert_eq!(reply["from"], "a");
    assert!(handle_b.is_waiting());
    assert_waits(&mut send_b).await;

    let routed = manager.dispatch("b", json!({ "sid": 1, "from": "b" }));
    assert!(matches!(routed, Routed::Reply(id) if id == handle_b.session_id()));
    let reply = send_b.await.expect("b's reply");
    assert_eq!(reply["from"], "b");

    for taken in ["a", "b", "default"] {
        match manager.create_port(taken, Sender::none(), PortOptions::default()) {
            Err(SessionError::PortExists(name)) => assert_eq!(name, taken),
            other => panic!("creating port {taken:?} again: {other:?}"),
        }
    }
    // The refused duplicate replaced nothing.
    assert!(a.is_live() && b.is_live());
    assert_eq!(manager.port("a").map(|p| p.id()), Some(a.id()));
}

// 4. Port-wide and manager-wide operations.

/// What a failed send's error must be.
type Expected = fn(&SessionError) -> bool;

/// An operation on a port, named, and the error it gives waiting sends.
type PortCase = (
    &'static str,
    fn(&Port<Value>) -> Result<(), SessionError>,
    Expected,
);

/// `cancel`, `abort` (with its cause) and `timeout` on a port fail the sends
/// waiting on it, keep its sessions, and leave other ports' sends waiting.
async fn port_cancel_abort_timeout_fail_only_that_ports_sends<H: Harness>() {
    let cases: [PortCase; 3] = [
        ("cancel", |port| port.cancel(), cancelled),
        (
            "abort",
            |port| port.abort(Cause::msg("link lost")),
            link_lost,
        ),
        ("timeout", |port| port.timeout(), timed_out),
    ];
    for (what, op, expected) in cases {
        let (_manager, a, b) = two_ports::<H>();
        let mut on_a = a.create_session().expect("a session on a");
        let mut on_b = b.create_session().expect("a session on b");
        let (handle_a, handle_b) = (on_a.handle(), on_b.handle());
        let mut send_a = Box::pin(on_a.send(json!({ "n": 1 })));
        let mut send_b = Box::pin(on_b.send(json!({ "n": 2 })));
        assert_waits(&mut send_a).await;
        assert_waits(&mut send_b).await;

        op(&a).expect(what);
        assert_ended_with(&mut send_a, expected, what).await;
        assert!(handle_a.is_live(), "{what} keeps the session");
        assert_eq!(a.stats().expect("a's stats").waiting_sends, 0);

        assert!(handle_b.is_waiting(), "{what} on a touched b");
        assert_waits(&mut send_b).await;
        assert_eq!(b.stats().expect("b's stats").waiting_sends, 1);
        let routed = b.dispatch(json!({ "sid": handle_b.id(), "ok": true }));
        assert!(matches!(routed, Routed::Reply(_)), "{what}: {routed:?}");
        let reply = send_b.await.expect("b's reply");
        assert_eq!(reply["ok"], true);
    }
}

/// `clear` on a port ends its sessions (waiting sends fail with
/// `Cancelled`) and keeps the port; other ports are untouched.
async fn port_clear_ends_only_that_ports_sessions<H: Harness>() {
    let (manager, a, b) = two_ports::<H>();
    let mut on_a = a.create_session().expect("a session on a");
    let idle_a = a.create_session().expect("another session on a");
    let mut on_b = b.create_session().expect("a session on b");
    let (handle_a, handle_b) = (on_a.handle(), on_b.handle());
    let mut send_a = Box::pin(on_a.send(json!({ "n": 1 })));
    let mut send_b = Box::pin(on_b.send(json!({ "n": 2 })));
    assert_waits(&mut send_a).await;
    assert_waits(&mut send_b).await;

    a.clear().expect("clear a");
    assert_ended_with(&mut send_a, cancelled, "clear").await;
    assert!(!handle_a.is_live() && !idle_a.is_live());
    assert!(a.is_live(), "clear keeps the port");
    let a_stats = a.stats().expect("a's stats");
    assert_eq!((a_stats.live_sessions, a_stats.waiting_sends), (0, 0));
    assert_eq!(manager.stats().live_sessions, 1);

    assert!(handle_b.is_waiting());
    assert_waits(&mut send_b).await;
    let routed = b.dispatch(json!({ "sid": handle_b.id(), "ok": true }));
    assert!(matches!(routed, Routed::Reply(_)), "{routed:?}");
    assert_eq!(send_b.await.expect("b's reply")["ok"], true);
    // The cleared port still opens sessions.
    assert!(a.create_session().is_ok());
}

/// An operation on a manager, named, and the error it gives waiting sends.
type ManagerCase<H> = (
    &'static str,
    fn(&Manager<H>) -> Result<(), SessionError>,
    Expected,
);

/// `cancel`, `abort` (with its cause) and `timeout` on the manager fail the
/// sends waiting on every port, and keep the sessions.
async fn manager_cancel_abort_timeout_fail_every_waiting_send<H: Harness>() {
    let cases: [ManagerCase<H>; 3] = [
        ("cancel", |manager| manager.cancel(), cancelled),
        (
            "abort",
            |manager| manager.abort(Cause::msg("link lost")),
            link_lost,
        ),
        ("timeout", |manager| manager.timeout(), timed_out),
    ];
    for (what, op, expected) in cases {
        let (manager, a, b) = two_ports::<H>();
        let mut on_a = a.create_session().expect("a session on a");
        let mut on_b = b.create_session().expect("a session on b");
        let (handle_a, handle_b) = (on_a.handle(), on_b.handle());
        let mut send_a = Box::pin(on_a.send(json!({ "n": 1 })));
        let mut send_b = Box::pin(on_b.send(json!({ "n": 2 })));
        assert_waits(&mut send_a).await;
        assert_waits(&mut send_b).await;
        assert_eq!(manager.stats().waiting_sends, 2);

        op(&manager).expect(what);
        assert_ended_with(&mut send_a, expected, what).await;
        assert_ended_with(&mut send_b, expected, what).await;
        assert!(
            handle_a.is_live() && handle_b.is_live(),
            "{what} keeps sessions"
        );
        assert_eq!(manager.stats().waiting_sends, 0);
        assert_eq!(manager.stats().live_sessions, 2);
    }
}

/// `clear` on the manager ends every session of every port (waiting sends
/// fail with `Cancelled`) and keeps the ports.
async fn manager_clear_ends_every_session<H: Harness>() {
    let (manager, a, b) = two_ports::<H>();
    let mut on_a = a.create_session().expect("a session on a");
    let mut on_b = b.create_session().expect("a session on b");
    let on_default = manager
        .create_session("default")
        .expect("a default session");
    let (handle_a, handle_b) = (on_a.handle(), on_b.handle());
    let mut send_a = Box::pin(on_a.send(json!({ "n": 1 })));
    let mut send_b = Box::pin(on_b.send(json!({ "n": 2 })));
    assert_waits(&mut send_a).await;
    assert_waits(&mut send_b).await;

    manager.clear().expect("clear");
    assert_ended_with(&mut send_a, cancelled, "clear").await;
    assert_ended_with(&mut send_b, cancelled, "clear").await;
    assert!(!handle_a.is_live() && !handle_b.is_live() && !on_default.is_live());
    let stats = manager.stats();
    assert_eq!((stats.live_sessions, stats.waiting_sends), (0, 0));
    assert_eq!(stats.ports, 3, "clear keeps the ports");
    assert!(a.is_live() && b.is_live());
}

// 5. One-shot requests.

#[derive(Debug, Serialize)]
struct Ask {
    command: String,
    level: u8,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Asked {
    command: String,
    level: u8,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Echoed {
    echo: Asked,
    n: u32,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Unrelated {
    temperature: f64,
}

/// `manager.request` and `port.request` return the reply and leave no live
/// session behind.
async fn one_shot_request_returns_the_reply_and_leaves_no_session<H: Harness>() {
    let (client, server) = pair::<H>(ManagerConfig::default(), ManagerConfig::default());
    serve_echo::<H>(&server);

    let reply = client
        .request("default", json!({ "ask": "by name" }))
        .await
        .expect("manager.request");
    assert_eq!(reply["echo"]["ask"], "by name");
    assert_eq!(reply["n"], 1);
    assert_eq!(client.stats().live_sessions, 0);

    let port = client.default_port();
    let reply = port
        .request(json!({ "ask": "on the port" }))
        .await
        .expect("port.request");
    assert_eq!(reply["echo"]["ask"], "on the port");
    assert_eq!(client.stats().live_sessions, 0);

    let reply = client
        .request(&port, json!({ "ask": "by handle" }))
        .await
        .expect("manager.request with a Port");
    assert_eq!(reply["echo"]["ask"], "by handle");
    let stats = client.stats();
    assert_eq!((stats.live_sessions, stats.waiting_sends), (0, 0));
}

/// `request_json` serializes the request and deserializes the reply; a
/// reply that does not deserialize is a `Codec` error. No session is left.
async fn request_json_round_trips_typed_messages<H: Harness>() {
    let (client, server) = pair::<H>(ManagerConfig::default(), ManagerConfig::default());
    serve_echo::<H>(&server);
    let ask = Ask {
        command: "status".into(),
        level: 2,
    };
    let expected = Echoed {
        echo: Asked {
            command: "status".into(),
            level: 2,
        },
        n: 1,
    };

    let reply: Echoed = client
        .request_json("default", &ask)
        .await
        .expect("manager.request_json");
    assert_eq!(reply, expected);
    assert_eq!(client.stats().live_sessions, 0);

    let reply: Echoed = client
        .default_port()
        .request_json(&ask)
        .await
        .expect("port.request_json");
    assert_eq!(reply, expected);
    assert_eq!(client.stats().live_sessions, 0);

    let wrong = client.request_json::<_, Unrelated>("default", &ask).await;
    assert!(matches!(wrong, Err(SessionError::Codec(_))), "{wrong:?}");
    let wrong = client
        .default_port()
        .request_json::<_, Unrelated>(&ask)
        .await;
    assert!(matches!(wrong, Err(SessionError::Codec(_))), "{wrong:?}");
    let stats = client.stats();
    assert_eq!((stats.live_sessions, stats.waiting_sends), (0, 0));
}

// 6. Dropped futures and dropped sessions.

/// Dropping a waiting send's future withdraws the send: the session stays
/// open and idle, a late reply completes nothing (it waits for `recv`),
/// and a new send on the session gets its own reply.
async fn dropped_send_future_withdraws_the_send<H: Harness>() {
    let (manager, mut outbound) = queued::<H>(ManagerConfig::default());
    let mut session = manager.create_session("default").expect("a session");
    let handle = session.handle();
    let sid = session.id();
    {
        let mut send = Box::pin(session.send(json!({ "n": 1 })));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(send.as_mut().poll(&mut cx).is_pending());
        assert!(handle.is_waiting());
        assert_eq!(manager.stats().waiting_sends, 1);
    }
    assert!(handle.is_live(), "the session stays open");
    assert!(!handle.is_waiting());
    assert_eq!(manager.stats().waiting_sends, 0);
    let port_stats = manager.default_port().stats().expect("stats");
    assert_eq!(port_stats.waiting_sends, 0);
    assert_eq!(outbound.try_recv().map(|m| m["n"].clone()), Some(json!(1)));

    // The late reply to the withdrawn send is queued, not a reply.
    let routed = manager.dispatch("default", json!({ "sid": sid, "late": true }));
    assert!(matches!(routed, Routed::Queued(_)), "{routed:?}");
    assert_eq!(manager.stats().counters.late_replies, 1);

    // A new send waits for the next message, not the late one.
    let mut again = Box::pin(session.send(json!({ "n": 2 })));
    assert_waits(&mut again).await;
    assert_eq!(outbound.try_recv().map(|m| m["n"].clone()), Some(json!(2)));
    let routed = manager.dispatch("default", json!({ "sid": sid, "answer": 2 }));
    assert!(matches!(routed, Routed::Reply(_)), "{routed:?}");
    let reply = again.await.expect("the new send's reply");
    assert_eq!(reply, json!({ "sid": sid, "answer": 2 }));
    let late = session.recv().await.expect("the late reply, for recv");
    assert_eq!(late["late"], true);
    assert_eq!(manager.stats().waiting_sends, 0);
}

/// A reply that completed a send whose future was then dropped unread
/// never reaches the session's next send: that one waits for its own.
async fn unread_reply_of_a_dropped_send_is_not_the_next_sends<H: Harness>() {
    let (manager, mut outbound) = queued::<H>(ManagerConfig::default());
    let mut session = manager.create_session("default").expect("a session");
    let sid = session.id();
    {
        let mut first = Box::pin(session.send(json!({ "n": 1 })));
        assert_waits(&mut first).await;
        let routed = manager.dispatch("default", json!({ "sid": sid, "answer": 1 }));
        assert!(matches!(routed, Routed::Reply(_)), "{routed:?}");
        // Dropped with its reply delivered but never read.
    }
    assert_eq!(manager.stats().waiting_sends, 0);
    let mut second = Box::pin(session.send(json!({ "n": 2 })));
    assert_waits(&mut second).await;
    assert_waits(&mut second).await;
    assert_eq!(outbound.try_recv().map(|m| m["n"].clone()), Some(json!(1)));
    assert_eq!(outbound.try_recv().map(|m| m["n"].clone()), Some(json!(2)));
    let routed = manager.dispatch("default", json!({ "sid": sid, "answer": 2 }));
    assert!(matches!(routed, Routed::Reply(_)), "{routed:?}");
    let reply = second.await.expect("the second send's reply");
    assert_eq!(reply["answer"], 2);
}

/// Dropping a `Session` ends it, withdrawing its waiting send: nothing is
/// left live or waiting.
async fn dropped_session_ends_it<H: Harness>() {
    let (manager, _outbound) = queued::<H>(ManagerConfig::default());

    let idle = manager.create_session("default").expect("a session");
    let idle_handle = idle.handle();
    assert_eq!(manager.stats().live_sessions, 1);
    drop(idle);
    assert!(!idle_handle.is_live());
    assert_eq!(manager.stats().live_sessions, 0);

    let session = manager.create_session("default").expect("a session");
    let handle = session.handle();
    // A future that owns the session and waits on a send in it.
    let mut owner = Box::pin(async move {
        let mut session = session;
        session.send(json!({ "n": 1 })).await
    });
    assert_waits(&mut owner).await;
    assert!(handle.is_waiting());
    assert_eq!(manager.stats().waiting_sends, 1);
    drop(owner);
    assert!(!handle.is_live());
    let stats = manager.stats();
    assert_eq!((stats.live_sessions, stats.waiting_sends), (0, 0));
    assert!(matches!(handle.cancel(), Err(SessionError::Invalid)));
}

// 7. Destroying a port.

/// Destroying a port fails every send waiting on it with `Aborted`, ends
/// its sessions, frees its name, and ends its outbound stream after what
/// was queued; other ports are untouched.
async fn destroying_a_port_aborts_its_sends_and_ends_its_outbound<H: Harness>() {
    let (manager, _default_out) = queued::<H>(ManagerConfig::default());
    let (sender, mut outbound) = Sender::channel(16);
    let port = manager
        .create_port("device", sender, PortOptions::default())
        .expect("a port");
    let mut first = port.create_session().expect("session 1");
    let mut second = port.create_session().expect("session 2");
    let mut elsewhere = manager
        .create_session("default")
        .expect("a default session");
    let (first_handle, second_handle) = (first.handle(), second.handle());
    let elsewhere_handle = elsewhere.handle();
    // A port whose forwarder waits on an empty outbound.
    let (to_idle, mut idle_out) = Sender::channel(4);
    let idle = manager
        .create_port("idle", to_idle, PortOptions::default())
        .expect("a port");
    let mut parked = Box::pin(idle_out.recv());
    let reader = park(&mut parked);
    {
        let mut send_1 = Box::pin(first.send(json!({ "n": 1 })));
        let mut send_2 = Box::pin(second.send(json!({ "n": 2 })));
        let mut send_3 = Box::pin(elsewhere.send(json!({ "n": 3 })));
        assert_waits(&mut send_1).await;
        assert_waits(&mut send_2).await;
        assert_waits(&mut send_3).await;

        port.destroy().expect("destroy");
        assert_ended_with(&mut send_1, aborted, "destroy").await;
        assert_ended_with(&mut send_2, aborted, "destroy").await;
        assert!(elsewhere_handle.is_waiting(), "another port's send");
        assert_waits(&mut send_3).await;
    }
    assert!(!first_handle.is_live() && !second_handle.is_live());
    assert!(!port.is_live());
    let outcome = first.send(json!({ "n": 4 })).await;
    assert!(matches!(outcome, Err(SessionError::Invalid)), "{outcome:?}");

    // The outbound stream yields what was queued, then ends.
    assert_eq!(
        outbound.recv().await.map(|m| m["n"].clone()),
        Some(json!(1))
    );
    assert_eq!(
        outbound.recv().await.map(|m| m["n"].clone()),
        Some(json!(2))
    );
    assert_eq!(outbound.recv().await, None);
    assert_eq!(outbound.recv().await, None);
    // A reader already waiting is woken by the destroy, and sees the end.
    assert!(!reader.woken());
    idle.destroy().expect("destroy idle");
    assert!(reader.woken(), "the parked outbound reader was not woken");
    assert_eq!(poll_once(&mut parked).await, Poll::Ready(None));

    let refused = port.create_session();
    assert!(
        matches!(refused, Err(SessionError::NoSuchPort)),
        "{refused:?}"
    );
    let refused = manager.create_session("device");
    assert!(
        matches!(refused, Err(SessionError::NoSuchPort)),
        "{refused:?}"
    );
    assert!(matches!(port.destroy(), Err(SessionError::NoSuchPort)));
    assert_eq!(manager.stats().live_sessions, 1);
    // The name is free again.
    let again = manager.create_port("device", Sender::none(), PortOptions::default());
    assert!(again.is_ok(), "{again:?}");
}

// 8. Dropping the manager.

/// Dropping one of two manager clones changes nothing; dropping the last
/// one fails every waiting send (in tasks that hold their sessions) with
/// `Aborted`, and ends the events and outbound streams.
async fn dropping_the_last_manager_aborts_sends_and_ends_streams<H: Harness>() {
    type Outcomes = Arc<Mutex<Vec<(u32, Result<Value, SessionError>)>>>;
    let (manager, mut outbound) = queued::<H>(ManagerConfig::default());
    let (to_device, mut device_out) = Sender::channel(16);
    let device = manager
        .create_port("device", to_device, PortOptions::default())
        .expect("a port");
    let mut events = manager.events();
    let outcomes: Outcomes = Arc::default();
    let mut sids = Vec::new();
    for on_device in [false, false, true] {
        let mut session = if on_device {
            device.create_session()
        } else {
            manager.create_session("default")
        }
        .expect("a session");
        let sid = session.id();
        sids.push(sid);
        let outcomes = outcomes.clone();
        H::spawn_task(async move {
            let outcome = session.send(json!({ "n": sid })).await;
            outcomes.lock().unwrap().push((sid, outcome));
        });
    }
    assert_eq!(sids, [1, 2, 1]);
    eventually::<H>(|| manager.stats().waiting_sends == 3).await;

    // Dropping one clone of two: everything still works.
    let clone = manager.clone();
    drop(manager);
    assert_eq!(clone.stats().waiting_sends, 3);
    assert!(outcomes.lock().unwrap().is_empty());
    let routed = clone.dispatch("default", json!({ "sid": 1, "ok": true }));
    assert!(matches!(routed, Routed::Reply(_)), "{routed:?}");
    eventually::<H>(|| outcomes.lock().unwrap().len() == 1).await;
    match &outcomes.lock().unwrap()[0] {
        (1, Ok(reply)) => assert_eq!(reply["ok"], true),
        other => panic!("expected the reply of sid 1, got {other:?}"),
    }
    let mut spare = clone
        .create_session("default")
        .expect("a session via the clone");
    let spare_handle = spare.handle();
    // Readers waiting on the events and on an empty outbound.
    let (to_idle, mut idle_out) = Sender::channel(4);
    clone
        .create_port("idle", to_idle, PortOptions::default())
        .expect("a port");
    let mut parked_outbound = Box::pin(idle_out.recv());
    let outbound_reader = park(&mut parked_outbound);
    let mut parked_events = Box::pin(events.next());
    let events_reader = park(&mut parked_events);

    // Dropping the last one.
    drop(clone);
    assert!(
        events_reader.woken(),
        "the parked events reader was not woken"
    );
    assert!(matches!(
        poll_once(&mut parked_events).await,
        Poll::Ready(None)
    ));
    drop(parked_events);
    assert!(
        outbound_reader.woken(),
        "the parked outbound reader was not woken"
    );
    assert_eq!(poll_once(&mut parked_outbound).await, Poll::Ready(None));
    eventually::<H>(|| outcomes.lock().unwrap().len() == 3).await;
    for (sid, outcome) in outcomes.lock().unwrap().iter().skip(1) {
        assert!(
            matches!(outcome, Err(SessionError::Aborted(_))),
            "sid {sid}: {outcome:?}"
        );
    }
    assert!(events.next().await.is_none(), "the events stream ends");
    let mut sent = Vec::new();
    while let Some(message) = outbound.recv().await {
        sent.push(message["n"].clone());
    }
    assert_eq!(sent, [json!(1), json!(2)]);
    assert_eq!(
        device_out.recv().await.map(|m| m["n"].clone()),
        Some(json!(1))
    );
    assert_eq!(device_out.recv().await, None);

    // What is left refuses everything.
    assert!(!spare_handle.is_live());
    let outcome = spare.send(json!({ "n": 9 })).await;
    assert!(
        matches!(outcome, Err(SessionError::Aborted(_))),
        "{outcome:?}"
    );
    let refused = device.create_session();
    assert!(
        matches!(refused, Err(SessionError::Aborted(_))),
        "{refused:?}"
    );
}

// 9. Transport failures.

/// A sender that fails makes the send fail at once with `Transport`,
/// without any retry even when retries are asked for.
async fn failing_sender_fails_the_send_at_once_without_retry<H: Harness>() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let sender = Sender::from_fn(move |_message: Value| {
        counter.fetch_add(1, Ordering::SeqCst);
        Err::<(), _>(Cause::msg("socket closed"))
    });
    let manager = Manager::<H>::new(ManagerConfig::default(), sender).expect("a manager");
    let mut session = manager.create_session("default").expect("a session");
    // Were it retried, its attempts would go out by 20 + 3 * (10 + 20) ms.
    let options = SendOptions::default().timeout(ms(20)).retries(3, ms(10));
    let start = H::now();
    match session.send_with(json!({ "n": 1 }), options).await {
        Err(SessionError::Transport(cause)) => {
            assert!(cause.to_string().contains("socket closed"), "{cause}");
        }
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert_about::<H>(since::<H>(start), Duration::ZERO);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(manager.stats().waiting_sends, 0);

    H::sleep(ms(300)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the send was retried");
    assert_eq!(manager.stats().waiting_sends, 0);
}

/// A channel port whose `Outbound` was dropped, and a port without sender,
/// fail sends with `Transport`.
async fn ports_without_a_working_transport_fail_sends<H: Harness>() {
    let (manager, _outbound) = queued::<H>(ManagerConfig::default());
    let (sender, outbound) = Sender::channel(4);
    let gone = manager
        .create_port("gone", sender, PortOptions::default())
        .expect("a port");
    drop(outbound);
    let outcome = gone.request(json!({ "n": 1 })).await;
    assert!(
        matches!(outcome, Err(SessionError::Transport(_))),
        "{outcome:?}"
    );
    let mut session = gone.create_session().expect("a session");
    let outcome = session
        .send_with(json!({ "n": 2 }), SendOptions::default().retries(3, ms(10)))
        .await;
    assert!(
        matches!(outcome, Err(SessionError::Transport(_))),
        "{outcome:?}"
    );

    let none = manager
        .create_port("none", Sender::none(), PortOptions::default())
        .expect("a port");
    let outcome = none.request(json!({ "n": 3 })).await;
    assert!(
        matches!(outcome, Err(SessionError::Transport(_))),
        "{outcome:?}"
    );
    let outcome = manager.request("none", json!({ "n": 4 })).await;
    assert!(
        matches!(outcome, Err(SessionError::Transport(_))),
        "{outcome:?}"
    );
    assert_eq!(manager.stats().waiting_sends, 0);
}

/// A post the transport fails to carry is reported on the events stream as
/// `TransmitFailed`, with its port, sid and the transport's error.
async fn failed_post_is_reported_as_transmit_failed<H: Harness>() {
    let sender = Sender::from_fn(|_message: Value| Err::<(), _>(Cause::msg("socket closed")));
    let manager = Manager::<H>::new(ManagerConfig::default(), sender).expect("a manager");
    let mut events = manager.events();
    let session = manager.create_session("default").expect("a session");
    let posted = session.post(json!({ "note": 1 })).await;
    assert!(
        posted.is_ok(),
        "a post does not wait for the transport: {posted:?}"
    );
    match events.next().await {
        Some(ManagerEvent::TransmitFailed {
            port,
            sid,
            error: SessionError::Transport(cause),
        }) => {
            assert_eq!((port, sid), (session.port(), session.id()));
            assert!(cause.to_string().contains("socket closed"), "{cause}");
        }
        other => panic!("expected TransmitFailed, got {other:?}"),
    }
}

// 10. Backpressure.

/// A full `Sender::channel` makes `post` wait until the `Outbound` is read;
/// nothing is lost and the order is kept.
async fn full_outbound_queue_makes_post_wait<H: Harness>() {
    let (sender, mut outbound) = Sender::channel(2);
    let manager = Manager::<H>::new(ManagerConfig::default(), sender).expect("a manager");
    let session = manager.create_session("default").expect("a session");
    session.post(json!({ "n": 1 })).await.expect("room for 1");
    session.post(json!({ "n": 2 })).await.expect("room for 2");
    assert_eq!(outbound.len(), 2);

    let mut third = Box::pin(session.post(json!({ "n": 3 })));
    assert!(poll_once(&mut third).await.is_pending());
    // It keeps waiting while nobody reads.
    let raced = within::<H, _>(&mut third, ms(50)).await;
    assert!(
        raced.is_none(),
        "the third post went through a full queue: {raced:?}"
    );
    assert_eq!(outbound.len(), 2);

    assert_eq!(
        outbound.recv().await.map(|m| m["n"].clone()),
        Some(json!(1))
    );
    third.await.expect("room after one read");
    assert_eq!(outbound.len(), 2);
    assert_eq!(outbound.try_recv().map(|m| m["n"].clone()), Some(json!(2)));
    assert_eq!(outbound.try_recv().map(|m| m["n"].clone()), Some(json!(3)));
    assert!(outbound.is_empty());
}

// 11. Floods.

/// A peer opening 10 000 sessions on a port capped at 8 incoming sessions
/// gets 8; the rest are refused and counted, the unread events queue stays
/// bounded, and the port's own sessions still work.
async fn flood_of_new_sids_is_capped_and_counted<H: Harness>() {
    const FLOOD: u32 = 10_000;
    let (manager, mut outbound) = queued::<H>(ManagerConfig::default().max_incoming_sessions(8));
    let port = manager.default_port();
    let mut mine = manager.create_session("default").expect("a session");
    let (sid, id) = (mine.id(), mine.session_id());

    let (mut opened, mut refused) = (0, 0);
    for flood_sid in 100..100 + FLOOD {
        match port.dispatch(json!({ "sid": flood_sid, "junk": true })) {
            Routed::Opened(_) => opened += 1,
            Routed::Dropped(DropReason::IncomingLimit) => refused += 1,
            other => panic!("sid {flood_sid}: {other:?}"),
        }
    }
    assert_eq!((opened, refused), (8, FLOOD - 8));
    let stats = port.stats().expect("stats");
    assert_eq!(stats.incoming_sessions, 8);
    assert_eq!(stats.live_sessions, 9);
    assert_eq!(stats.counters.incoming_refused, u64::from(FLOOD - 8));
    assert_eq!(stats.counters.dropped_messages, u64::from(FLOOD - 8));

    // Nobody read the events: some were discarded, and what was kept
    // (every incoming session, a bounded number of others) plus what was
    // discarded is every event.
    let discarded = manager.discarded_events();
    assert!(discarded > 0);
    let mut events = manager.events();
    let (mut incoming, mut kept) = (Vec::new(), 0u64);
    loop {
        let mut next = Box::pin(events.next());
        match poll_once(&mut next).await {
            Poll::Ready(Some(ManagerEvent::Incoming(session))) => incoming.push(session),
            Poll::Ready(Some(ManagerEvent::Dropped {
                reason: DropReason::IncomingLimit,
                ..
            })) => kept += 1,
            Poll::Ready(other) => panic!("unexpected event {other:?}"),
            Poll::Pending => break,
        }
    }
    assert_eq!(incoming.len(), 8);
    assert_eq!(kept + discarded, u64::from(FLOOD - 8));
    assert!(kept <= 1024, "{kept} events kept");

    // The legitimate session still completes a round trip.
    let mut send = Box::pin(mine.send(json!({ "legit": true })));
    assert_waits(&mut send).await;
    let request = outbound.try_recv().expect("the request went out");
    assert_eq!(request, json!({ "legit": true, "sid": sid }));
    let routed = port.dispatch(json!({ "sid": sid, "ok": true }));
    assert!(matches!(routed, Routed::Reply(r) if r == id), "{routed:?}");
    assert_eq!(send.await.expect("the reply")["ok"], true);
}

// 12. The seed's inbound path.

/// `is_session`, `get_session` and `SessionHandle::next` route a reply to
/// its waiting send, as the seed's `onMessage` does.
async fn seed_inbound_path_completes_the_waiting_send<H: Harness>() {
    let (manager, mut outbound) = queued::<H>(ManagerConfig::default());
    let mut session = manager.create_session("default").expect("a session");
    let (sid, id) = (session.id(), session.session_id());
    {
        let mut send = Box::pin(session.send(json!({ "command": "status" })));
        assert_waits(&mut send).await;
        let request = outbound.try_recv().expect("the request");
        assert!(manager.is_session(&request));
        assert_eq!(request["sid"], sid);

        let reply = json!({ "sid": sid, "status": "on" });
        assert!(manager.is_session(&reply));
        let unknown = json!({ "sid": sid + 1, "status": "on" });
        assert!(manager.is_session(&unknown));
        assert!(manager.get_session(&unknown, "default").is_none());
        assert!(manager.get_session(&reply, "elsewhere").is_none());
        let handle = manager
            .get_session(&reply, "default")
            .expect("the reply's session");
        assert_eq!((handle.id(), handle.session_id()), (sid, id));
        assert!(handle.is_waiting());
        let routed = handle.next(reply);
        assert!(
            matches!(routed, Ok(Routed::Reply(r)) if r == id),
            "{routed:?}"
        );
        let response = send.await.expect("the reply");
        assert_eq!(response, json!({ "sid": sid, "status": "on" }));
    }

    // With no send waiting, `next` queues the message for `recv`.
    let handle = manager
        .get_session(&json!({ "sid": sid }), manager.default_port())
        .expect("the session");
    let routed = handle.next(json!({ "sid": sid, "push": 1 }));
    assert!(
        matches!(routed, Ok(Routed::Queued(r)) if r == id),
        "{routed:?}"
    );
    assert_eq!(session.recv().await.expect("the pushed message")["push"], 1);
}

/// Messages that are not session messages come back from `dispatch`
/// untouched, and open nothing.
async fn non_session_messages_come_back_untouched<H: Harness>() {
    let (manager, _outbound) = queued::<H>(ManagerConfig::default());
    let port = manager.default_port();
    let _session = manager.create_session("default").expect("a session");
    let before = manager.stats();
    let others = [
        json!({ "sid": 0, "m": "zero" }),
        json!({ "sid": -1, "m": "negative" }),
        json!({ "sid": 1.5, "m": "fraction" }),
        json!({ "sid": "7", "m": "string" }),
        json!({ "m": "absent" }),
        json!({ "sid": u64::from(u32::MAX) + 1, "m": "too big" }),
        json!({ "sid": null }),
        json!("text"),
        json!([1]),
        json!(7),
    ];
    for message in others {
        assert!(!manager.is_session(&message), "{message}");
        assert!(manager.get_session(&message, "default").is_none());
        match manager.dispatch("default", message.clone()) {
            Routed::NotSession(back) => assert_eq!(back, message),
            other => panic!("{message}: {other:?}"),
        }
        match port.dispatch(message.clone()) {
            Routed::NotSession(back) => assert_eq!(back, message),
            other => panic!("{message}: {other:?}"),
        }
        // Even for a port that does not exist.
        match manager.dispatch("nowhere", message.clone()) {
            Routed::NotSession(back) => assert_eq!(back, message),
            other => panic!("{message}: {other:?}"),
        }
    }
    assert_eq!(manager.stats(), before, "nothing opened, dropped or queued");
    // The boundary: u32::MAX is a sid.
    assert!(manager.is_session(&json!({ "sid": u32::MAX })));
}

// A send on a port whose channel queue is full is a waiting send like any
// other (its transmission joins the queue at once; only posts wait for
// room): destroying the port, or dropping the manager, fails it with
// Aborted even though nobody reads the outbound queue.

/// Destroying a port fails a send queued behind a full, unread channel.
async fn destroying_a_port_fails_a_send_behind_a_full_queue<H: Harness>() {
    let (manager, _default_out) = queued::<H>(ManagerConfig::default());
    let (sender, _unread) = Sender::channel(1);
    let port = manager
        .create_port("slow", sender, PortOptions::default())
        .expect("a port");
    let filler = port.create_session().expect("a session");
    filler.post(json!({ "n": 0 })).await.expect("room for one");
    let mut blocked = port.create_session().expect("a session");
    let mut send = Box::pin(blocked.send(json!({ "n": 1 })));
    assert_waits(&mut send).await;

    port.destroy().expect("destroy");
    match within::<H, _>(&mut send, Duration::from_secs(5)).await {
        Some(Err(SessionError::Aborted(_))) => {}
        other => panic!(
            "{}: the queued send should fail with Aborted, got {other:?}",
            H::NAME
        ),
    }
}

/// Dropping the manager fails a send queued behind a full, unread channel.
async fn dropping_the_manager_fails_a_send_behind_a_full_queue<H: Harness>() {
    let (sender, _unread) = Sender::channel(1);
    let manager = Manager::<H>::new(ManagerConfig::default(), sender).expect("a manager");
    let filler = manager.create_session("default").expect("a session");
    filler.post(json!({ "n": 0 })).await.expect("room for one");
    let mut blocked = manager.create_session("default").expect("a session");
    let mut send = Box::pin(blocked.send(json!({ "n": 1 })));
    assert_waits(&mut send).await;

    drop(manager);
    match within::<H, _>(&mut send, Duration::from_secs(5)).await {
        Some(Err(SessionError::Aborted(_))) => {}
        other => panic!(
            "{}: the queued send should fail with Aborted, got {other:?}",
            H::NAME
        ),
    }
}

on_both_runtimes!(
    idle_session_expires_after_max_life,
    waiting_send_is_not_expired_by_max_life,
    overflow_recycles_the_oldest_session_by_default,
    overflow_custom_policy_chooses_the_session_to_recycle,
    overflow_reject_refuses_new_sessions,
    ports_have_independent_sid_spaces,
    port_cancel_abort_timeout_fail_only_that_ports_sends,
    port_clear_ends_only_that_ports_sessions,
    manager_cancel_abort_timeout_fail_every_waiting_send,
    manager_clear_ends_every_session,
    one_shot_request_returns_the_reply_and_leaves_no_session,
    request_json_round_trips_typed_messages,
    dropped_send_future_withdraws_the_send,
    unread_reply_of_a_dropped_send_is_not_the_next_sends,
    dropped_session_ends_it,
    destroying_a_port_aborts_its_sends_and_ends_its_outbound,
    dropping_the_last_manager_aborts_sends_and_ends_streams,
    failing_sender_fails_the_send_at_once_without_retry,
    ports_without_a_working_transport_fail_sends,
    failed_post_is_reported_as_transmit_failed,
    full_outbound_queue_makes_post_wait,
    flood_of_new_sids_is_capped_and_counted,
    seed_inbound_path_completes_the_waiting_send,
    non_session_messages_come_back_untouched,
    destroying_a_port_fails_a_send_behind_a_full_queue,
    dropping_the_manager_fails_a_send_behind_a_full_queue,
);
