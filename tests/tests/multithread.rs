//! Many tasks on a multi-threaded Tokio runtime sharing two managers wired
//! back to back: sending, posting, cancelling, dropping futures and
//! sessions at once. No deadlock, no lost or doubled completion, nothing
//! left behind. (Real time; every wait is far below the 60 s timeouts.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use psession_core::{ManagerConfig, SessionError, SidPartition};
use psession_driver::{Sender, Session};
use psession_tokio::SessionManager;
use serde_json::{json, Value};

/// A multi-threaded Tokio runtime with `workers` threads (real time).
fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_time()
        .build()
        .unwrap()
}

/// A client and a server: the client sends through a closure that
/// dispatches straight into the server (re-entrant), the server answers
/// through a channel forwarded by a task.
fn wire() -> (SessionManager, SessionManager) {
    let (to_client, mut server_out) = Sender::<Value>::channel(256);
    let server = SessionManager::new(ManagerConfig::default(), to_client).unwrap();
    // The client opens odd sids, so a late reply to a session it has ended
    // is dropped as an unknown sid of its own half instead of opening an
    // incoming session.
    let server_port = server.default_port();
    let client = SessionManager::new(
        ManagerConfig::default().partition(SidPartition::Odd),
        Sender::from_fn(move |message: Value| {
            server_port.dispatch(message);
            Ok(())
        }),
    )
    .unwrap();
    let client_port = client.default_port();
    tokio::spawn(async move {
        while let Some(message) = server_out.recv().await {
            client_port.dispatch(message);
        }
    });
    let mut events = server.events();
    tokio::spawn(async move {
        while let Some(session) = events.next_session().await {
            tokio::spawn(answer(session));
        }
    });
    (client, server)
}

/// Answers the session's request, then ends it (as the seed's `getTime`
/// handler does): the server's sessions do not outlive their work.
async fn answer(mut session: Session) {
    if let Ok(request) = session.recv().await {
        let _ = session.post(json!({ "echo": request["n"] })).await;
    }
}

#[test]
fn shared_managers_under_concurrent_load() {
    let runtime = runtime(4);
    runtime.block_on(async {
        let (client, server) = wire();
        let replies = Arc::new(AtomicUsize::new(0));
        let cancelled = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for t in 0..32u64 {
            let client = client.clone();
            let replies = replies.clone();
            let cancelled = cancelled.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..100u64 {
                    let mut session = client.create_session("default").unwrap();
                    let n = t * 1000 + i;
                    match i % 4 {
                        // A round trip; the reply must be this request's.
                        0 | 1 => {
                            let reply = session.send(json!({ "n": n })).await.unwrap();
                            assert_eq!(reply["echo"], n);
                            replies.fetch_add(1, Ordering::SeqCst);
                        }
                        // Cancelled from another task while it may wait.
                        2 => {
                            let handle = session.handle();
                            let canceller = tokio::spawn(async move {
                                let _ = handle.cancel();
                            });
                            match session.send(json!({ "n": n })).await {
                                Ok(reply) => {
                                    assert_eq!(reply["echo"], n);
                                    replies.fetch_add(1, Ordering::SeqCst);
                                }
                                Err(SessionError::Cancelled) => {
                                    cancelled.fetch_add(1, Ordering::SeqCst);
                                }
                                Err(other) => panic!("{other:?}"),
                            }
                            canceller.await.unwrap();
                        }
                        // The future dropped before the reply may arrive.
                        _ => {
                            let send = session.send(json!({ "n": n }));
                            let _ = tokio::time::timeout(Duration::from_micros(50), send).await;
                        }
                    }
                    drop(session);
                }
            }));
        }
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("no deadlock")
                .unwrap();
        }
        let (replies, cancelled) = (
            replies.load(Ordering::SeqCst),
            cancelled.load(Ordering::SeqCst),
        );
        assert_eq!(
            replies + cancelled,
            32 * 75,
            "every send of kinds 0-2 ended once"
        );
        let stats = client.stats();
        assert_eq!(stats.live_sessions, 0, "{stats:?}");
        assert_eq!(stats.waiting_sends, 0, "{stats:?}");
        // The server's sessions end once answered.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while server.stats().live_sessions > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                server.stats()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(server.stats().counters.dropped_messages, 0);
        drop(server);
    });
}

/// Dropping the manager while another thread is inside the closure sender
/// neither calls the sender concurrently nor reorders or loses the posts
/// already accepted.
#[test]
fn dropping_the_manager_mid_flush_keeps_the_senders_contract() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    let runtime = runtime(2);
    runtime.block_on(async {
        let in_call = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
        let (busy, log) = (in_call.clone(), seen.clone());
        let manager = SessionManager::new(
            ManagerConfig::default(),
            Sender::from_fn(move |message: Value| {
                assert!(!busy.swap(true, Ordering::SeqCst), "called concurrently");
                if message["n"] == 1 {
                    // A slow transport: the manager is dropped meanwhile.
                    std::thread::sleep(Duration::from_millis(100));
                }
                log.lock().unwrap().push(message["n"].as_u64().unwrap());
                busy.store(false, Ordering::SeqCst);
                Ok(())
            }),
        )
        .unwrap();
        let first = manager.create_session("default").unwrap();
        let second = manager.create_session("default").unwrap();
        let flusher = tokio::spawn(async move { first.post(json!({ "n": 1 })).await });
        while !in_call.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        second.post(json!({ "n": 2 })).await.unwrap();
        drop(manager);
        flusher.await.unwrap().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().len() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "a post was lost");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
    });
}

/// Posts that returned `Ok` are all transmitted even when the manager is
/// dropped while several threads post and flush (run many times to give
/// the race between a flusher handing its work to the driver task and the
/// shutdown a chance to happen).
#[test]
fn posts_accepted_before_the_manager_is_dropped_all_go_out() {
    let runtime = runtime(2);
    for _ in 0..200 {
        runtime.block_on(async {
            let (sender, mut outbound) = Sender::<Value>::channel(1 << 20);
            let manager = SessionManager::new(ManagerConfig::default(), sender).unwrap();
            let reader = tokio::spawn(async move {
                let mut received = 0usize;
                while outbound.recv().await.is_some() {
                    received += 1;
                }
                received
            });
            let accepted = Arc::new(AtomicUsize::new(0));
            let mut posters = Vec::new();
            for _ in 0..3 {
                let session = manager.create_session("default").unwrap();
                let accepted = accepted.clone();
                posters.push(tokio::spawn(async move {
                    while session.post(json!({ "n": 1 })).await.is_ok() {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                    }
                }));
            }
            tokio::time::sleep(Duration::from_micros(300)).await;
            drop(manager);
            for poster in posters {
                poster.await.unwrap();
            }
            let received = tokio::time::timeout(Duration::from_secs(10), reader)
                .await
                .expect("the outbound stream ended")
                .unwrap();
            assert_eq!(received, accepted.load(Ordering::SeqCst));
        });
    }
}

/// Everything at once on four workers: conversations, a flood of new and
/// unknown sids into both managers, ports created and destroyed while
/// their sends wait, and sessions ended from other tasks while they send.
/// Every conversation gets its own replies, every send on a destroyed port
/// or an ended session ends once with the matching error, the managers
/// keep no more than their caps, and nothing deadlocks.
#[test]
fn conversations_survive_floods_port_churn_and_ends_from_other_tasks() {
    use psession_core::{PortOptions, Routed};

    let runtime = runtime(4);
    runtime.block_on(async {
        let (client, server) = wire();
        let replies = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        // Conversations: ten turns each, each reply the turn's own.
        for t in 0..16u64 {
            let client = client.clone();
            let replies = replies.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..20u64 {
                    let mut session = client.create_session("default").unwrap();
                    let n = t * 1000 + i;
                    let reply = session.send(json!({ "n": n })).await.unwrap();
                    assert_eq!(reply["echo"], n);
                    replies.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        // Three floods into the client's port, which its conversations
        // use: new sids from the peer's half (even), replies for sids never
        // used (odd, the client's half), garbage.
        for f in 0..3u64 {
            let port = client.default_port();
            tasks.push(tokio::spawn(async move {
                for k in 0..20_000u64 {
                    let sid = 1_000_000 + 2 * (k + f * 100_000);
                    let message = match k % 3 {
                        0 => json!({ "sid": sid, "flood": true }),
                        // Odd, below max_session_count, and far above
                        // any sid this test allocates.
                        1 => json!({ "sid": 40_001 + 2 * (k % 12_000), "forged": true }),
                        _ => json!({ "sid": "x" }),
                    };
                    if let Routed::NotSession(_) = port.dispatch(message) {
                        assert_eq!(k % 3, 2);
                    }
                    if k % 256 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        // Ports created, sent on (nobody answers), destroyed while the
        // sends wait: each send fails once with Aborted.
        let aborted = Arc::new(AtomicUsize::new(0));
        for p in 0..4u64 {
            let client = client.clone();
            let aborted = aborted.clone();
            tasks.push(tokio::spawn(async move {
                for round in 0..25u64 {
                    let name = format!("churn-{p}-{round}");
                    let (sender, _outbound) = Sender::<Value>::channel(8);
                    let port = client
                        .create_port(&name, sender, PortOptions::default())
                        .unwrap();
                    let mut waiting = Vec::new();
                    for _ in 0..4 {
                        let mut session = port.create_session().unwrap();
                        waiting.push(tokio::spawn(async move {
                            session.send(json!({ "q": 1 })).await
                        }));
                    }
                    while port.stats().unwrap().waiting_sends < 4 {
                        tokio::task::yield_now().await;
                    }
                    port.destroy().unwrap();
                    for send in waiting {
                        match send.await.unwrap() {
                            Err(SessionError::Aborted(_)) => {
                                aborted.fetch_add(1, Ordering::SeqCst);
                            }
                            other => panic!("{name}: {other:?}"),
                        }
                    }
                }
            }));
        }
        // Sessions ended from another task while a send waits on them: the
        // send ends once, with its reply or Cancelled.
        let ended = Arc::new(AtomicUsize::new(0));
        for e in 0..4u64 {
            let client = client.clone();
            let (replies, ended) = (replies.clone(), ended.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..50u64 {
                    let mut session = client.create_session("default").unwrap();
                    let handle = session.handle();
                    let ender = tokio::spawn(async move {
                        tokio::task::yield_now().await;
                        let _ = handle.end();
                    });
                    let n = 100_000 + e * 1000 + i;
                    match session.send(json!({ "n": n })).await {
                        Ok(reply) => {
                            assert_eq!(reply["echo"], n);
                            replies.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(SessionError::Cancelled | SessionError::Invalid) => {
                            ended.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(other) => panic!("{other:?}"),
                    }
                    ender.await.unwrap();
                }
            }));
        }
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("no deadlock")
                .unwrap();
        }
        let (replies, ended, aborted) = (
            replies.load(Ordering::SeqCst),
            ended.load(Ordering::SeqCst),
            aborted.load(Ordering::SeqCst),
        );
        println!("{replies} replies, {ended} ended by another task, {aborted} aborted by destroy");
        assert_eq!(replies + ended, 16 * 20 + 4 * 50, "every send ended once");
        assert_eq!(aborted, 4 * 25 * 4);
        let stats = client.stats();
        assert_eq!(stats.ports, 1, "{stats:?}");
        assert_eq!(stats.waiting_sends, 0, "{stats:?}");
        // What the floods left: the peer's sessions up to the port's cap
        // (1024 by default), each with its one message.
        assert_eq!(stats.live_sessions, 1024, "{stats:?}");
        assert_eq!(stats.queued_messages, 1024, "{stats:?}");
        assert_eq!(
            stats.counters.incoming_refused,
            3 * 6_667 - 1024,
            "{stats:?}"
        );
        // Dropped: the refused sessions, the forged replies, and the
        // server's answers to sessions ended before they arrived.
        let late = stats.counters.dropped_messages - stats.counters.incoming_refused - 3 * 6_667;
        assert!(
            late <= ended as u64,
            "{late} late answers, {ended} ended: {stats:?}"
        );
        drop(server);
    });
}
