//! Senders, outbound queues and the events queue at their edges, on both
//! runtimes; and a non-JSON message type through the async API.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use psession_core::{ManagerConfig, Message, PortOptions, Routed, SendOptions, SessionError};
use psession_driver::{ManagerEvent, Outbound, Port, Sender, SessionHandle, SessionManager};
use psession_tests::*;
use serde_json::{json, Value};

const MS: Duration = Duration::from_millis(1);

/// An outbound stream whose sender never reached a port (here: the port
/// name was taken) ends once the sender is gone, instead of waiting forever.
async fn outbound_of_an_unused_sender_ends<H: Harness>() {
    let (manager, _out) = queued::<H>(ManagerConfig::default());
    let (first, _first_out) = Sender::channel(4);
    manager
        .create_port("dev", first, PortOptions::default())
        .unwrap();
    let (second, mut second_out) = Sender::<Value>::channel(4);
    let taken = manager.create_port("dev", second, PortOptions::default());
    assert!(
        matches!(taken, Err(SessionError::PortExists(_))),
        "{taken:?}"
    );
    assert_eq!(second_out.recv().await, None);
}

/// Once an outbound stream has ended, its sender cannot be given to a new
/// port: the port is refused instead of queueing into a dead stream.
async fn an_ended_outbound_cannot_be_reused<H: Harness>() {
    let (manager, _out) = queued::<H>(ManagerConfig::default());
    let (sender, mut outbound) = Sender::<Value>::channel(4);
    let port = manager
        .create_port("dev", sender.clone(), PortOptions::default())
        .unwrap();
    port.create_session()
        .unwrap()
        .post(json!({ "n": 1 }))
        .await
        .unwrap();
    port.destroy().unwrap();
    assert_eq!(outbound.recv().await.unwrap()["n"], 1);
    assert_eq!(outbound.recv().await, None);
    let again = manager.create_port("dev", sender, PortOptions::default());
    assert!(matches!(again, Err(SessionError::Config(_))), "{again:?}");
    assert!(
        manager.port("dev").is_none(),
        "the refused port was not left behind"
    );
}

/// One channel shared by two ports ends only when both are gone.
async fn a_shared_outbound_ends_with_its_last_port<H: Harness>() {
    let (manager, _out) = queued::<H>(ManagerConfig::default());
    let (sender, mut outbound) = Sender::<Value>::channel(4);
    let a = manager
        .create_port("a", sender.clone(), PortOptions::default())
        .unwrap();
    let b = manager
        .create_port("b", sender, PortOptions::default())
        .unwrap();
    a.destroy().unwrap();
    b.create_session()
        .unwrap()
        .post(json!({ "from": "b" }))
        .await
        .unwrap();
    assert_eq!(outbound.recv().await.unwrap()["from"], "b");
    b.destroy().unwrap();
    assert_eq!(outbound.recv().await, None);
}

/// Posts that give up waiting for room (their futures dropped) are never
/// sent and do not hold up later posts.
async fn abandoned_posts_are_not_sent_and_do_not_block_later_ones<H: Harness>() {
    let (sender, mut outbound) = Sender::<Value>::channel(1);
    let manager = Manager::<H>::new(ManagerConfig::default(), sender).unwrap();
    let session = manager.create_session("default").unwrap();
    session.post(json!({ "n": 0 })).await.unwrap();
    for _ in 0..1000 {
        let mut post = Box::pin(session.post(json!({ "n": -1 })));
        let waker = std::task::Waker::noop();
        let polled = post
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker));
        assert!(polled.is_pending(), "the queue is full");
    }
    assert_eq!(outbound.recv().await.unwrap()["n"], 0);
    session.post(json!({ "n": 1 })).await.unwrap();
    assert_eq!(outbound.recv().await.unwrap()["n"], 1);
    assert!(outbound.is_empty(), "no abandoned post was sent");
}

/// Sends that time out while their transmissions wait in a full, unread
/// queue are purged from it: the queue holds transmissions of waiting sends
/// (and posts), not of ended ones.
async fn ended_sends_are_purged_from_a_full_queue<H: Harness>() {
    let (sender, outbound) = Sender::<Value>::channel(2);
    let manager = Manager::<H>::new(ManagerConfig::default(), sender).unwrap();
    let mut ended = 0;
    for i in 0..50 {
        let mut session = manager.create_session("default").unwrap();
        let outcome = session
            .send_with(json!({ "i": i }), SendOptions::default().timeout(MS))
            .await;
        assert!(matches!(outcome, Err(SessionError::Timeout)), "{outcome:?}");
        ended += 1;
    }
    assert_eq!(ended, 50);
    assert!(
        outbound.len() <= 4,
        "{} stale transmissions kept for a queue of 2",
        outbound.len()
    );
}

/// Incoming sessions that end before anyone takes them from the events
/// queue leave it: a peer cycling through new sids cannot grow it.
async fn closed_incoming_sessions_leave_the_events_queue<H: Harness>() {
    let config = ManagerConfig::default()
        .max_incoming_sessions(4)
        .session_max_life(10 * MS);
    let (manager, _out) = queued::<H>(config);
    let events = manager.events();
    let mut sid = 0;
    for _ in 0..20 {
        for _ in 0..4 {
            sid += 1;
            manager.dispatch("default", json!({ "sid": sid, "hello": true }));
        }
        H::sleep(30 * MS).await;
    }
    let mut events = events;
    let mut incoming = 0;
    let mut expired = 0;
    while let Some(event) = events.try_next() {
        match event {
            ManagerEvent::Incoming(_) => incoming += 1,
            ManagerEvent::Expired { .. } => expired += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(incoming, 0, "every incoming session expired unread");
    assert_eq!(expired, 80);
    assert_eq!(manager.stats().live_sessions, 0);
}

/// A closure sender that holds its own manager's port does not keep the
/// manager alive once the last handle is dropped.
async fn a_sender_holding_its_own_port_is_released<H: Harness>() {
    struct Guard(Arc<AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let freed = Arc::new(AtomicBool::new(false));
    let slot: Arc<Mutex<Option<Port>>> = Arc::default();
    let guard = Guard(freed.clone());
    let inner = slot.clone();
    let manager = Manager::<H>::new(
        ManagerConfig::default(),
        Sender::from_fn(move |message: Value| {
            let _ = &guard;
            if let Some(port) = inner.lock().unwrap().as_ref() {
                port.dispatch(message);
            }
            Ok(())
        }),
    )
    .unwrap();
    *slot.lock().unwrap() = Some(manager.default_port());
    drop(manager);
    eventually::<H>(|| freed.load(Ordering::SeqCst)).await;
}

/// A binary-ish message type: the sid lives in a struct field; 0 means
/// "not a session message", as the `Message` trait says.
#[derive(Clone, Debug, PartialEq)]
struct Frame {
    sid: u32,
    body: String,
}

impl Message for Frame {
    fn sid(&self, _field: &str) -> Option<u32> {
        Some(self.sid)
    }

    fn set_sid(&mut self, _field: &str, sid: u32) -> bool {
        self.sid = sid;
        true
    }
}

/// The async API works for any `Message` type, and sid 0 is never a
/// session message.
async fn custom_message_types_work<H: Harness>() {
    let (to_server, mut client_out) = Sender::<Frame>::channel(8);
    let (to_client, mut server_out) = Sender::<Frame>::channel(8);
    let client =
        SessionManager::<H, Frame>::with_messages(ManagerConfig::default(), to_server).unwrap();
    let server =
        SessionManager::<H, Frame>::with_messages(ManagerConfig::default(), to_client).unwrap();
    let frame = |sid, body: &str| Frame {
        sid,
        body: body.into(),
    };
    assert!(!client.is_session(&frame(0, "x")));
    assert!(matches!(
        client.dispatch("nowhere", frame(0, "x")),
        Routed::NotSession(_)
    ));
    let (server_port, client_port) = (server.default_port(), client.default_port());
    H::spawn_task(async move {
        while let Some(f) = client_out.recv().await {
            server_port.dispatch(f);
        }
    });
    H::spawn_task(async move {
        while let Some(f) = server_out.recv().await {
            client_port.dispatch(f);
        }
    });
    let mut events = server.events();
    H::spawn_task(async move {
        let mut session = events.next_session().await.unwrap();
        let request = session.recv().await.unwrap();
        session
            .post(frame(0, &format!("re: {}", request.body)))
            .await
            .unwrap();
    });
    let mut session = client.create_session("default").unwrap();
    let reply = session.send(frame(99, "ping")).await.unwrap();
    assert_eq!(reply, frame(session.id(), "re: ping"));
}

/// A sender that panics fails the send it was carrying with a transport
/// error; the manager, its timers and its other sessions carry on.
async fn a_panicking_sender_fails_only_its_send<H: Harness>() {
    let (to_server, mut client_out) = Sender::<Value>::channel(16);
    let manager = Manager::<H>::new(ManagerConfig::default(), to_server).unwrap();
    let port = manager.default_port();
    // The default port forwards to a well-behaved echo; port "bad" panics.
    H::spawn_task(async move {
        while let Some(m) = client_out.recv().await {
            port.dispatch(json!({ "sid": m["sid"], "ok": true }));
        }
    });
    let bad = manager
        .create_port(
            "bad",
            Sender::from_fn(|_message: Value| panic!("this sender always panics")),
            PortOptions::default(),
        )
        .unwrap();
    let mut doomed = bad.create_session().unwrap();
    let outcome = doomed.send(json!({ "n": 1 })).await;
    match &outcome {
        Err(SessionError::Transport(cause)) => assert!(cause.to_string().contains("panicked")),
        other => panic!("{other:?}"),
    }
    // Timers still fire (the driver task survived)...
    let start = H::now();
    let silent = Recorder::default();
    let quiet = manager
        .create_port("quiet", silent.sender(), PortOptions::default())
        .unwrap();
    let waited = quiet
        .create_session()
        .unwrap()
        .send_with(json!({}), SendOptions::default().timeout(30 * MS))
        .await;
    assert!(matches!(waited, Err(SessionError::Timeout)), "{waited:?}");
    assert_about::<H>(since::<H>(start), 30 * MS);
    // ...and other sessions still get replies.
    let mut fine = manager.create_session("default").unwrap();
    assert_eq!(fine.send(json!({})).await.unwrap()["ok"], true);
}

/// A manager whose ports "a" and "b" share a channel of one place, which
/// a post on "a" has filled and nobody reads: posts on "b" wait for room.
/// Keep all three returned values alive.
async fn full_shared_channel<H: Harness>() -> (Manager<H>, Port, Outbound<Value>) {
    let (manager, _out) = queued::<H>(ManagerConfig::default());
    let (sender, unread) = Sender::<Value>::channel(1);
    let a = manager
        .create_port("a", sender.clone(), PortOptions::default())
        .unwrap();
    let b = manager
        .create_port("b", sender, PortOptions::default())
        .unwrap();
    a.create_session()
        .unwrap()
        .post(json!({ "fill": 1 }))
        .await
        .unwrap();
    (manager, b, unread)
}

/// Ends a session from another task after `delay`.
fn end_later<H: Harness>(handle: SessionHandle, delay: Duration) {
    H::spawn_task(async move {
        H::sleep(delay).await;
        handle.end().unwrap();
    });
}

/// A post waiting for room in a queue shared with another, live port stops
/// waiting when its own session ends, with `Invalid`.
async fn a_post_waiting_for_room_ends_with_its_session<H: Harness>() {
    let (_manager, b, _unread) = full_shared_channel::<H>().await;
    let session = b.create_session().unwrap();
    end_later::<H>(session.handle(), 20 * MS);
    let outcome = session.post(json!({ "late": 1 })).await;
    assert!(matches!(outcome, Err(SessionError::Invalid)), "{outcome:?}");
}

/// One channel serves the ports of one manager only (its queue is purged
/// of that manager's ended sends).
async fn a_channel_serves_one_manager<H: Harness>() {
    let (first, _out1) = queued::<H>(ManagerConfig::default());
    let (second, _out2) = queued::<H>(ManagerConfig::default());
    let (sender, _outbound) = Sender::<Value>::channel(4);
    first
        .create_port("p", sender.clone(), PortOptions::default())
        .unwrap();
    let refused = second.create_port("p", sender, PortOptions::default());
    assert!(
        matches!(refused, Err(SessionError::Config(_))),
        "{refused:?}"
    );
    assert!(second.port("p").is_none());
}

/// Two posts of one session polled by one task: when one gives up, the
/// other is still woken when the session ends.
async fn each_waiting_post_is_woken_when_its_session_ends<H: Harness>() {
    let (_manager, b, _unread) = full_shared_channel::<H>().await;
    let session = b.create_session().unwrap();
    let mut x = Box::pin(session.post(json!({ "x": 1 })));
    let mut y = Box::pin(session.post(json!({ "y": 1 })));
    std::future::poll_fn(|cx| {
        assert!(x.as_mut().poll(cx).is_pending());
        assert!(y.as_mut().poll(cx).is_pending());
        std::task::Poll::Ready(())
    })
    .await;
    drop(y);
    end_later::<H>(session.handle(), 20 * MS);
    let outcome = x.await;
    assert!(matches!(outcome, Err(SessionError::Invalid)), "{outcome:?}");
}

/// Each place freed in a full queue goes to one waiting post, the one that
/// has waited longest, and wakes only it; room handed to a post that is
/// then dropped goes on to the next.
async fn freed_room_goes_to_one_waiting_post_in_order<H: Harness>() {
    let (_manager, b, mut unread) = full_shared_channel::<H>().await;
    let sessions: Vec<_> = (0..3).map(|_| b.create_session().unwrap()).collect();
    let (counts, wakers): (Vec<_>, Vec<_>) = (0..3).map(|_| WakeCount::new()).unzip();
    let mut posts: Vec<_> = sessions
        .iter()
        .enumerate()
        .map(|(n, session)| Some(Box::pin(session.post(json!({ "n": n })))))
        .collect();
    let poll = |n: usize, posts: &mut Vec<Option<_>>| {
        poll_with(posts[n].as_mut().expect("not dropped"), &wakers[n])
    };
    let woken = || counts.iter().map(|c| c.count()).collect::<Vec<_>>();
    for n in 0..3 {
        assert!(poll(n, &mut posts).is_pending());
    }

    assert_eq!(unread.recv().await.unwrap()["fill"], 1);
    assert_eq!(woken(), [1, 0, 0], "one place wakes one post, the first");
    assert!(matches!(
        poll(0, &mut posts),
        std::task::Poll::Ready(Ok(()))
    ));
    assert!(
        poll(1, &mut posts).is_pending(),
        "no room yet for the second"
    );

    assert_eq!(unread.recv().await.unwrap()["n"], 0);
    assert_eq!(woken(), [1, 1, 0]);
    posts[1] = None; // room handed to it, unused: it goes to the third
    assert_eq!(woken(), [1, 1, 1]);
    assert!(matches!(
        poll(2, &mut posts),
        std::task::Poll::Ready(Ok(()))
    ));
    assert_eq!(unread.recv().await.unwrap()["n"], 2);
}

on_both_runtimes!(
    freed_room_goes_to_one_waiting_post_in_order,
    outbound_of_an_unused_sender_ends,
    an_ended_outbound_cannot_be_reused,
    a_shared_outbound_ends_with_its_last_port,
    abandoned_posts_are_not_sent_and_do_not_block_later_ones,
    ended_sends_are_purged_from_a_full_queue,
    closed_incoming_sessions_leave_the_events_queue,
    a_sender_holding_its_own_port_is_released,
    custom_message_types_work,
    a_panicking_sender_fails_only_its_send,
    a_post_waiting_for_room_ends_with_its_session,
    a_channel_serves_one_manager,
    each_waiting_post_is_woken_when_its_session_ends,
);
