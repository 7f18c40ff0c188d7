//! Round trips and multi-turn conversations, on both runtimes: the seed's
//! examples and the TypeScript library's own behaviour.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use psession_core::{ManagerConfig, PortOptions, SendOptions, SessionError, SidPartition};
use psession_driver::{Sender, Session};
use psession_tests::*;
use serde_json::{json, Value};

const MS: Duration = Duration::from_millis(1);

/// The seed's "needPassword" conversation: two turns on one session, the
/// server answering the first with a send of its own.
async fn multi_turn_round_trip<H: Harness>() {
    let (client, server) = pair::<H>(ManagerConfig::default(), ManagerConfig::default());
    let mut events = server.events();
    H::spawn_task(async move {
        let mut session = events.next_session().await.expect("an incoming session");
        let first = session.recv().await.unwrap();
        assert_eq!(first["command"], "turn on the light");
        let second = session
            .send(json!({ "status": "needPassword" }))
            .await
            .unwrap();
        assert_eq!(second["password"], "123456");
        session.post(json!({ "status": "on" })).await.unwrap();
    });

    let mut session = client.create_session("default").unwrap();
    let response = session
        .send(json!({ "command": "turn on the light" }))
        .await
        .unwrap();
    assert_eq!(response["status"], "needPassword");
    assert_eq!(response["sid"], session.id());
    let result = session.send(json!({ "password": "123456" })).await.unwrap();
    assert_eq!(result["status"], "on");
    session.end();
    assert_eq!(client.stats().live_sessions, 0);
}

/// A single request and its reply, with the sid written into the request.
async fn single_round_trip<H: Harness>() {
    let (client, server) = pair::<H>(ManagerConfig::default(), ManagerConfig::default());
    serve_echo::<H>(&server);
    let mut session = client.create_session("default").unwrap();
    let reply = session
        .send(json!({ "command": "ping", "sid": 999 }))
        .await
        .unwrap();
    assert_eq!(reply["echo"]["command"], "ping");
    assert_eq!(reply["echo"]["sid"], session.id(), "the sid is overwritten");
    assert_eq!(reply["sid"], session.id());
}

/// Ten sequential turns on one session all reach the same server session.
async fn ten_sequential_turns_on_one_session<H: Harness>() {
    let (client, server) = pair::<H>(ManagerConfig::default(), ManagerConfig::default());
    serve_echo::<H>(&server);
    let mut session = client.create_session("default").unwrap();
    for turn in 1..=10 {
        let reply = session.send(json!({ "turn": turn })).await.unwrap();
        assert_eq!(reply["echo"]["turn"], turn);
        assert_eq!(reply["n"], turn, "one server session saw every turn");
    }
    let incoming = server.default_port().stats().unwrap().incoming_sessions;
    assert_eq!(incoming, 1, "one server session for the whole dialogue");
}

/// No reply: the send fails with Timeout after exactly the port's timeout.
async fn timeout_without_reply<H: Harness>() {
    let silent = Recorder::default();
    let config = ManagerConfig::default().session_timeout(50 * MS);
    let manager = Manager::<H>::new(config, silent.sender()).unwrap();
    let mut session = manager.create_session("default").unwrap();
    let start = H::now();
    let outcome = session.send(json!({ "command": "query" })).await;
    assert!(matches!(outcome, Err(SessionError::Timeout)), "{outcome:?}");
    assert_about::<H>(since::<H>(start), 50 * MS);
    assert_eq!(silent.len(), 1);
    assert!(session.is_live(), "a timeout does not end the session");
}

/// A per-send timeout overrides the port's (seed: `{ timeout: 3000 }`).
async fn per_send_timeout_overrides_the_ports<H: Harness>() {
    let silent = Recorder::default();
    let manager = Manager::<H>::new(ManagerConfig::default(), silent.sender()).unwrap();
    let port = manager
        .create_port(
            "device1",
            silent.sender(),
            PortOptions::default().session_timeout(Duration::from_secs(30)),
        )
        .unwrap();
    let mut session = port.create_session().unwrap();
    let start = H::now();
    let outcome = session
        .send_with(
            json!({ "command": "query" }),
            SendOptions::default().timeout(40 * MS),
        )
        .await;
    assert!(matches!(outcome, Err(SessionError::Timeout)), "{outcome:?}");
    assert_about::<H>(since::<H>(start), 40 * MS);
}

/// Retries: `retry_count` 3 means four transmissions of the same message
/// with the same sid, then Timeout after (3+1) timeouts and 3 intervals.
async fn retries_transmit_exactly_count_plus_one<H: Harness>() {
    let silent = Recorder::default();
    let manager = Manager::<H>::new(ManagerConfig::default(), silent.sender()).unwrap();
    let mut session = manager.create_session("default").unwrap();
    let options = SendOptions::default().timeout(20 * MS).retries(3, 10 * MS);
    let start = H::now();
    let outcome = session
        .send_with(json!({ "command": "status" }), options)
        .await;
    assert!(matches!(outcome, Err(SessionError::Timeout)), "{outcome:?}");
    assert_about::<H>(since::<H>(start), 4 * 20 * MS + 3 * 10 * MS);
    let sent = silent.messages();
    assert_eq!(sent.len(), 4, "{sent:?}");
    for message in &sent {
        assert_eq!(
            message,
            &json!({ "command": "status", "sid": session.id() })
        );
    }
}

/// A reply to a retransmission completes the send; nothing more is sent.
async fn a_reply_to_a_retry_completes_the_send<H: Harness>() {
    let sent = Recorder::default();
    let (sender, mut outbound) = Sender::<Value>::channel(16);
    let manager = Manager::<H>::new(ManagerConfig::default(), sender).unwrap();
    let peer = manager.default_port();
    let log = sent.clone();
    // A lossy peer: ignores the first two transmissions, answers the third.
    H::spawn_task(async move {
        while let Some(message) = outbound.recv().await {
            log.push(message.clone());
            if log.len() == 3 {
                peer.dispatch(json!({ "sid": message["sid"], "ok": true }));
            }
        }
    });
    let mut session = manager.create_session("default").unwrap();
    let options = SendOptions::default().timeout(20 * MS).retries(5, 10 * MS);
    let reply = session
        .send_with(json!({ "command": "status" }), options)
        .await
        .unwrap();
    assert_eq!(reply["ok"], true);
    H::sleep(200 * MS).await;
    assert_eq!(sent.len(), 3, "no retransmission after the reply");
}

/// Cancel and abort, from another task through a handle, stop retries at
/// once.
async fn cancel_and_abort_stop_retries<H: Harness>() {
    for abort in [false, true] {
        let silent = Recorder::default();
        let manager = Manager::<H>::new(ManagerConfig::default(), silent.sender()).unwrap();
        let mut session = manager.create_session("default").unwrap();
        let handle = session.handle();
        H::spawn_task(async move {
            H::sleep(30 * MS).await;
            if abort {
                handle.abort(psession_core::Cause::msg("operator")).unwrap();
            } else {
                handle.cancel().unwrap();
            }
        });
        let options = SendOptions::default().timeout(20 * MS).retries(100, 5 * MS);
        let outcome = session.send_with(json!({ "command": "x" }), options).await;
        match (abort, &outcome) {
            (false, Err(SessionError::Cancelled)) => {}
            (true, Err(SessionError::Aborted(Some(cause)))) => {
                assert_eq!(cause.to_string(), "operator")
            }
            _ => panic!("unexpected outcome {outcome:?} (abort: {abort})"),
        }
        let sent = silent.len();
        assert!((1..100).contains(&sent), "{sent} transmissions");
        H::sleep(200 * MS).await;
        assert_eq!(silent.len(), sent, "no retry after the send ended");
        assert!(session.is_live());
    }
}

/// Ten clients, each in a ten-turn dialogue with one server, in both
/// directions at once: clients open sessions on the server (odd sids), and
/// the server opens sessions on each client's port (even sids).
async fn ten_clients_ten_turns_both_directions<H: Harness>() {
    let server_config = ManagerConfig::default();
    let (server, _unused) = queued::<H>(server_config);
    let mut clients = Vec::new();
    for i in 0..10 {
        let (client, to_server) =
            queued::<H>(ManagerConfig::default().partition(SidPartition::Odd));
        let (sender, to_client) = Sender::channel(64);
        let port = server
            .create_port(
                format!("client-{i}"),
                sender,
                PortOptions::default().partition(SidPartition::Even),
            )
            .unwrap();
        forward::<H>(to_server, port, None);
        forward::<H>(to_client, client.default_port(), None);
        clients.push(client);
    }

    // Both sides answer whatever the other opens: a dialogue in which the
    // answering side replies to turn k with `send` until turn 10, which it
    // answers with `post`.
    fn answer_all<H: Harness>(manager: &Manager<H>, who: String) {
        let mut events = manager.events();
        H::spawn_task(async move {
            while let Some(session) = events.next_session().await {
                H::spawn_task(answer_dialogue(session, who.clone()));
            }
        });
    }
    async fn answer_dialogue(mut session: Session<Value>, who: String) {
        let mut message = session.recv().await.unwrap();
        loop {
            let turn = message["turn"].as_u64().unwrap();
            let reply = json!({ "from": who, "turn": turn });
            if turn == 10 {
                session.post(reply).await.unwrap();
                return;
            }
            message = session.send(reply).await.unwrap();
            assert_eq!(message["turn"].as_u64().unwrap(), turn + 1);
        }
    }
    async fn dialogue(mut session: Session<Value>, expect_from: String) -> usize {
        let mut turns = 0;
        for turn in 1..=10 {
            let reply = session.send(json!({ "turn": turn })).await.unwrap();
            assert_eq!(reply["turn"], turn);
            assert_eq!(reply["from"], expect_from.as_str());
            turns += 1;
        }
        turns
    }

    answer_all::<H>(&server, "server".into());
    for (i, client) in clients.iter().enumerate() {
        answer_all::<H>(client, format!("client-{i}"));
    }

    let done = Arc::new(AtomicUsize::new(0));
    for (i, client) in clients.iter().enumerate() {
        let outgoing = client.create_session("default").unwrap();
        assert_eq!(outgoing.id() % 2, 1, "clients open odd sids");
        let incoming = server.create_session(format!("client-{i}")).unwrap();
        assert_eq!(incoming.id() % 2, 0, "the server opens even sids");
        let done_out = done.clone();
        H::spawn_task(async move {
            done_out.fetch_add(dialogue(outgoing, "server".into()).await, Ordering::SeqCst);
        });
        let done_in = done.clone();
        let from = format!("client-{i}");
        H::spawn_task(async move {
            done_in.fetch_add(dialogue(incoming, from).await, Ordering::SeqCst);
        });
    }
    eventually::<H>(|| done.load(Ordering::SeqCst) == 2 * 10 * 10).await;
    let dropped: u64 = clients
        .iter()
        .map(|c| c.stats().counters.dropped_messages)
        .sum::<u64>()
        + server.stats().counters.dropped_messages;
    assert_eq!(dropped, 0, "no message was lost or misrouted");
}

/// A closure sender may call straight back into a manager: here two
/// managers are wired with closures that dispatch into each other.
async fn closure_senders_may_call_back_into_managers<H: Harness>() {
    let server_slot: Arc<std::sync::Mutex<Option<psession_driver::Port<Value>>>> = Arc::default();
    let slot = server_slot.clone();
    let client = Manager::<H>::new(
        ManagerConfig::default(),
        Sender::from_fn(move |message: Value| {
            let port = slot.lock().unwrap().clone().ok_or("no server yet")?;
            port.dispatch(message);
            Ok(())
        }),
    )
    .unwrap();
    let client_port = client.default_port();
    let server = Manager::<H>::new(
        ManagerConfig::default(),
        Sender::from_fn(move |message: Value| {
            client_port.dispatch(message);
            Ok(())
        }),
    )
    .unwrap();
    *server_slot.lock().unwrap() = Some(server.default_port());
    serve_echo::<H>(&server);
    let mut session = client.create_session("default").unwrap();
    for turn in 1..=3 {
        let reply = session.send(json!({ "turn": turn })).await.unwrap();
        assert_eq!(reply["n"], turn);
    }
}

/// A reply that arrives during the send's first poll (a closure sender that
/// answers at once, into the same manager) completes the send: the waker
/// registered as the send starts is woken, and the next poll has the reply.
async fn a_reply_during_the_first_poll_wakes_the_send<H: Harness>() {
    let slot: Arc<std::sync::Mutex<Option<psession_driver::Port<Value>>>> = Arc::default();
    let inner = slot.clone();
    let manager = Manager::<H>::new(
        ManagerConfig::default(),
        Sender::from_fn(move |message: Value| {
            let port = inner.lock().unwrap().clone().ok_or("no port yet")?;
            port.dispatch(json!({ "sid": message["sid"], "echo": message["n"] }));
            Ok(())
        }),
    )
    .unwrap();
    *slot.lock().unwrap() = Some(manager.default_port());
    let mut session = manager.create_session("default").unwrap();
    for n in 0..3 {
        let (wakes, waker) = WakeCount::new();
        let mut send = Box::pin(session.send(json!({ "n": n })));
        // Either the first poll has the reply, or it was woken for it.
        let reply = match poll_with(&mut send, &waker) {
            std::task::Poll::Ready(reply) => reply,
            std::task::Poll::Pending => {
                assert_eq!(wakes.count(), 1, "the reply woke the send once");
                match poll_with(&mut send, &waker) {
                    std::task::Poll::Ready(reply) => reply,
                    std::task::Poll::Pending => panic!("woken, but no reply"),
                }
            }
        };
        assert_eq!(reply.expect("the reply")["echo"], n);
    }
    assert_eq!(manager.stats().waiting_sends, 0);
}

/// A custom sid field (seed: `sessionIdName: "sessionId"`).
async fn custom_session_id_name<H: Harness>() {
    let config = || ManagerConfig::default().session_id_name("sessionId");
    let (client, server) = pair::<H>(config(), config());
    serve_echo::<H>(&server);
    assert!(client.is_session(&json!({ "sessionId": 4 })));
    assert!(!client.is_session(&json!({ "sid": 4 })));
    let mut session = client.create_session("default").unwrap();
    let reply = session.send(json!({ "q": 1 })).await.unwrap();
    assert_eq!(reply["sessionId"], session.id());
    assert!(reply.get("sid").is_none());
}

/// Typed helpers: serialize the request, deserialize the reply.
async fn typed_requests_and_replies<H: Harness>() {
    #[derive(serde::Serialize)]
    struct GetTime {
        command: &'static str,
    }
    #[derive(serde::Deserialize, serde::Serialize, PartialEq, Debug)]
    struct Time {
        status: String,
        time: u64,
    }
    let (client, server) = pair::<H>(ManagerConfig::default(), ManagerConfig::default());
    let mut events = server.events();
    H::spawn_task(async move {
        while let Some(mut session) = events.next_session().await {
            #[derive(serde::Deserialize)]
            struct Command {
                command: String,
            }
            let command: Command = session.recv_json().await.unwrap();
            assert_eq!(command.command, "getTime");
            let time = Time {
                status: "success".into(),
                time: 42,
            };
            session.post_json(&time).await.unwrap();
        }
    });
    let mut session = client.create_session("default").unwrap();
    let time: Time = session
        .send_json(&GetTime { command: "getTime" })
        .await
        .unwrap();
    assert_eq!(
        time,
        Time {
            status: "success".into(),
            time: 42
        }
    );
    let again: Time = client
        .request_json("default", &GetTime { command: "getTime" })
        .await
        .unwrap();
    assert_eq!(again.time, 42);
}

/// A hundred sessions waiting at once on one port each get their own reply.
async fn many_concurrent_sessions_on_one_port<H: Harness>() {
    let (client, server) = pair::<H>(ManagerConfig::default(), ManagerConfig::default());
    serve_echo::<H>(&server);
    let done = Arc::new(AtomicUsize::new(0));
    for i in 0..100 {
        let mut session = client.create_session("default").unwrap();
        let done = done.clone();
        H::spawn_task(async move {
            for turn in 1..=5 {
                let reply = session.send(json!({ "i": i, "turn": turn })).await.unwrap();
                assert_eq!(reply["echo"]["i"], i);
                assert_eq!(reply["n"], turn);
            }
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    eventually::<H>(|| done.load(Ordering::SeqCst) == 100).await;
    assert_eq!(client.stats().waiting_sends, 0);
}

on_both_runtimes!(
    multi_turn_round_trip,
    single_round_trip,
    ten_sequential_turns_on_one_session,
    timeout_without_reply,
    per_send_timeout_overrides_the_ports,
    retries_transmit_exactly_count_plus_one,
    a_reply_to_a_retry_completes_the_send,
    cancel_and_abort_stop_retries,
    ten_clients_ten_turns_both_directions,
    closure_senders_may_call_back_into_managers,
    a_reply_during_the_first_poll_wakes_the_send,
    custom_session_id_name,
    typed_requests_and_replies,
    many_concurrent_sessions_on_one_port,
);
