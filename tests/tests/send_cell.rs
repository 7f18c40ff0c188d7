//! Where a send's outcome lands: each session's cell, registered in the
//! driver at the send's [`SendId::index`](psession_core::SendId::index),
//! an index the core hands to a later send as soon as the earlier one has
//! ended. These scenarios reuse an index in the awkward places and check
//! that every send still ends, with its own outcome.
//!
//! Most run on a runtime whose clock the test moves by hand and whose
//! driver task never runs, as if it were late: deadlines then only fire
//! inside the calls the test makes, exactly where it makes them.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use psession_core::{ManagerConfig, SendOptions, SessionError};
use psession_driver::{Outbound, Runtime, Sender, SessionManager};
use serde_json::{json, Value};

/// How far the hand-moved clock is ahead of its start, in milliseconds.
static AHEAD_MS: AtomicU64 = AtomicU64::new(0);
static START: OnceLock<Instant> = OnceLock::new();

/// A clock moved by hand, timers that never fire and a driver task that
/// never runs.
struct HandClock;

impl Runtime for HandClock {
    type Sleep = std::future::Pending<()>;

    fn now() -> Instant {
        *START.get_or_init(Instant::now) + Duration::from_millis(AHEAD_MS.load(Ordering::SeqCst))
    }

    fn sleep_until(_: Instant) -> Self::Sleep {
        std::future::pending()
    }

    fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) -> Result<(), &'static str> {
        drop(task);
        Ok(())
    }
}

fn poll<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

/// A manager on the hand-moved clock, and its outbound stream (kept, never
/// read).
fn manager() -> (SessionManager<HandClock, Value>, Outbound<Value>) {
    let (sender, outbound) = Sender::channel(16);
    let manager = SessionManager::new(ManagerConfig::default(), sender).expect("a manager");
    (manager, outbound)
}

/// Send A's deadline passes; the next call into the manager is send B's,
/// on another session. The core fires A's timeout inside that call and
/// gives B the index A just freed. A must still end with `Timeout` (and B
/// keep waiting): A's registration may not be lost to B's.
#[test]
fn a_send_timed_out_inside_another_sends_start_still_ends() {
    let (manager, _outbound) = manager();
    let mut a = manager.create_session("default").expect("session a");
    let mut b = manager.create_session("default").expect("session b");
    let short = SendOptions::default().timeout(Duration::from_millis(10));
    let mut first = Box::pin(a.send_with(json!({ "n": 1 }), short));
    assert!(poll(&mut first).is_pending());
    AHEAD_MS.fetch_add(20, Ordering::SeqCst);
    let mut second = Box::pin(b.send(json!({ "n": 2 })));
    assert!(poll(&mut second).is_pending());
    assert_eq!(manager.stats().waiting_sends, 1, "A timed out in the core");
    match poll(&mut first) {
        Poll::Ready(Err(SessionError::Timeout)) => {}
        other => panic!("A should have timed out, got {other:?}"),
    }
    assert!(poll(&mut second).is_pending(), "B still waits");
    drop(manager);
    match poll(&mut second) {
        Poll::Ready(Err(SessionError::Aborted(_))) => {}
        other => panic!("B should be aborted with the manager, got {other:?}"),
    }
}

/// A send that ended, then was dropped unread, leaves alone the newer send
/// of another session that took its index: the newer one gets its reply.
#[test]
fn dropping_an_ended_send_leaves_the_newer_send_at_its_index() {
    let (manager, _outbound) = manager();
    let mut a = manager.create_session("default").expect("session a");
    let mut b = manager.create_session("default").expect("session b");
    let (sid_a, sid_b) = (a.id(), b.id());
    let mut first = Box::pin(a.send(json!({ "n": 1 })));
    assert!(poll(&mut first).is_pending());
    manager.dispatch("default", json!({ "sid": sid_a, "answer": 1 }));
    let mut second = Box::pin(b.send(json!({ "n": 2 })));
    assert!(poll(&mut second).is_pending());
    drop(first);
    manager.dispatch("default", json!({ "sid": sid_b, "answer": 2 }));
    match poll(&mut second) {
        Poll::Ready(Ok(reply)) => assert_eq!(reply["answer"], 2),
        other => panic!("B should have its reply, got {other:?}"),
    }
}

/// On a real multi-threaded Tokio runtime, with nobody answering, many
/// sends with timeouts under a millisecond start while others time out:
/// the timer task, late under load, leaves deadlines to fire inside other
/// sends' calls. Every send must end with `Timeout` (the margin, 10 s for
/// sub-millisecond timeouts, only turns a hang into a failure).
#[test]
fn short_timeouts_under_load_all_end() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let (sender, _outbound) = Sender::channel(1 << 16);
        let manager =
            psession_tokio::SessionManager::<Value>::new(ManagerConfig::default(), sender)
                .expect("a manager");
        let hung = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (manager, hung) = (manager.clone(), hung.clone());
                tokio::spawn(async move {
                    let mut session = manager.create_session("default").expect("a session");
                    for i in 0..200u64 {
                        let timeout = Duration::from_micros(200 + (i % 7) * 100);
                        let options = SendOptions::default().timeout(timeout);
                        let send = session.send_with(json!({ "i": i }), options);
                        match tokio::time::timeout(Duration::from_secs(10), send).await {
                            Ok(Err(SessionError::Timeout)) => {}
                            Ok(other) => panic!("send {i} should time out, got {other:?}"),
                            Err(_) => {
                                hung.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("a task");
        }
        assert_eq!(hung.load(Ordering::SeqCst), 0, "sends that never ended");
    });
}
