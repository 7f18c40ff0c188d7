//! The driver keeps one timer per manager, re-armed to the core's next
//! deadline: no timer per send and no polling loop. Checked on Tokio's
//! virtual clock with a runtime wrapper that counts timers.

use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};

use psession_core::{ManagerConfig, SendOptions, SessionError};
use psession_driver::{Runtime, SessionManager};
use psession_tests::Recorder;
use psession_tokio::Tokio;
use serde_json::json;

thread_local! {
    /// Timers created by [`Counting`] on this thread (each test runs its
    /// current-thread runtime, and so its driver task, on its own thread).
    static TIMERS: Cell<usize> = const { Cell::new(0) };
}

fn timers() -> usize {
    TIMERS.with(Cell::get)
}

/// Tokio, counting every timer the driver asks for.
struct Counting;

impl Runtime for Counting {
    type Sleep = <Tokio as Runtime>::Sleep;

    fn now() -> Instant {
        Tokio::now()
    }

    fn sleep_until(deadline: Instant) -> Self::Sleep {
        TIMERS.with(|n| n.set(n.get() + 1));
        Tokio::sleep_until(deadline)
    }

    fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) -> Result<(), &'static str> {
        Tokio::spawn(task)
    }
}

#[tokio::test(start_paused = true)]
async fn a_thousand_waiting_sends_share_one_timer() {
    let silent = Recorder::default();
    let config = ManagerConfig::default().session_timeout(Duration::from_secs(10));
    let manager = SessionManager::<Counting>::new(config, silent.sender()).unwrap();
    let before = timers();
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let mut session = manager.create_session("default").unwrap();
        tasks.push(tokio::spawn(async move {
            session.send(json!({ "q": 1 })).await
        }));
    }
    for task in tasks {
        let outcome = task.await.unwrap();
        assert!(matches!(outcome, Err(SessionError::Timeout)), "{outcome:?}");
    }
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    let armed = timers() - before;
    // One per distinct deadline the core reports (the replies' deadline, then
    // the sessions' max life), never one per send.
    assert!(
        armed <= 4,
        "{armed} timers for 1000 sends with one deadline"
    );

    // Idle with sessions open: the only deadline left is max life (600 s).
    // Sleeping an hour of virtual time arms one more timer, not one per tick.
    let before = timers();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let armed = timers() - before;
    assert!(armed <= 2, "{armed} timers while idle for an hour");
}

#[tokio::test(start_paused = true)]
async fn an_earlier_deadline_re_arms_the_timer() {
    let silent = Recorder::default();
    let manager =
        SessionManager::<Counting>::new(ManagerConfig::default(), silent.sender()).unwrap();
    let mut slow = manager.create_session("default").unwrap();
    let mut fast = manager.create_session("default").unwrap();
    let start = tokio::time::Instant::now();
    let slow_send = tokio::spawn(async move {
        slow.send_with(
            json!({}),
            SendOptions::default().timeout(Duration::from_secs(100)),
        )
        .await
    });
    tokio::task::yield_now().await;
    let outcome = fast
        .send_with(
            json!({}),
            SendOptions::default().timeout(Duration::from_millis(50)),
        )
        .await;
    assert!(matches!(outcome, Err(SessionError::Timeout)));
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    assert!(matches!(
        slow_send.await.unwrap(),
        Err(SessionError::Timeout)
    ));
    assert_eq!(start.elapsed(), Duration::from_secs(100));
}
