//! The driver keeps one timer per manager, re-armed to the core's next
//! deadline: no timer per send and no polling loop. It leaves no task or
//! timer behind when the manager is dropped, and a clock that jumps (ahead
//! by days, or back) fires each deadline once and none early. Checked on
//! Tokio's virtual clock with a runtime wrapper that counts timers and
//! tasks and can set its clock ahead.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
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
    /// Timers and tasks of [`Counting`] not yet dropped.
    static LIVE_TIMERS: Cell<isize> = const { Cell::new(0) };
    static LIVE_TASKS: Cell<isize> = const { Cell::new(0) };
    /// How far [`Counting`]'s clock is ahead of Tokio's.
    static AHEAD: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

fn timers() -> usize {
    TIMERS.with(Cell::get)
}

fn live_timers() -> isize {
    LIVE_TIMERS.with(Cell::get)
}

fn live_tasks() -> isize {
    LIVE_TASKS.with(Cell::get)
}

/// Moves [`Counting`]'s clock to `ahead` of Tokio's (less than before: it
/// goes back).
fn set_clock_ahead(ahead: Duration) {
    AHEAD.with(|a| a.set(ahead));
}

/// A future counted in `live` while it exists.
struct Tracked<F> {
    future: Pin<Box<F>>,
    live: &'static std::thread::LocalKey<Cell<isize>>,
}

impl<F> Tracked<F> {
    fn new(future: F, live: &'static std::thread::LocalKey<Cell<isize>>) -> Self {
        live.with(|n| n.set(n.get() + 1));
        Tracked {
            future: Box::pin(future),
            live,
        }
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.future.as_mut().poll(cx)
    }
}

impl<F> Drop for Tracked<F> {
    fn drop(&mut self) {
        // A task may be dropped on another thread at runtime shutdown; the
        // tests only read the counts on their own thread.
        let _ = self.live.try_with(|n| n.set(n.get() - 1));
    }
}

/// Tokio, counting every timer and task the driver asks for, with a clock
/// a test can move.
struct Counting;

impl Runtime for Counting {
    type Sleep = Tracked<<Tokio as Runtime>::Sleep>;

    fn now() -> Instant {
        Tokio::now() + AHEAD.with(Cell::get)
    }

    fn sleep_until(deadline: Instant) -> Self::Sleep {
        TIMERS.with(|n| n.set(n.get() + 1));
        let on_tokio = deadline
            .checked_sub(AHEAD.with(Cell::get))
            .unwrap_or_else(Tokio::now);
        Tracked::new(Tokio::sleep_until(on_tokio), &LIVE_TIMERS)
    }

    fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) -> Result<(), &'static str> {
        Tokio::spawn(Tracked::new(task, &LIVE_TASKS))
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

type Outcomes = Arc<Mutex<Vec<(u64, Result<serde_json::Value, SessionError>)>>>;

/// Starts `count` sends, each in its own task, with timeouts 1..=count s
/// and, for every third, two retries: the outcomes land in the vector.
fn start_sends(manager: &SessionManager<Counting>, count: u64) -> Outcomes {
    let outcomes: Outcomes = Arc::default();
    for n in 1..=count {
        let mut session = manager.create_session("default").unwrap();
        let outcomes = outcomes.clone();
        let mut options = SendOptions::default().timeout(Duration::from_secs(n));
        if n % 3 == 0 {
            options = options.retries(2, Duration::from_millis(500));
        }
        tokio::spawn(async move {
            let outcome = session.send_with(json!({ "n": n }), options).await;
            outcomes.lock().unwrap().push((n, outcome));
            // The session stays open, idle, until its max life.
            std::future::pending::<()>().await;
        });
    }
    outcomes
}

/// Dropping the manager while sends wait fails every one with `Aborted`
/// and leaves neither its driver task nor its timer behind.
#[tokio::test(start_paused = true)]
async fn dropping_the_manager_leaves_no_task_or_timer() {
    let silent = Recorder::default();
    let manager =
        SessionManager::<Counting>::new(ManagerConfig::default(), silent.sender()).unwrap();
    let outcomes = start_sends(&manager, 100);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(manager.stats().waiting_sends, 100);
    assert_eq!(live_tasks(), 1, "the driver task");
    assert_eq!(live_timers(), 1, "one timer for 100 sends");

    drop(manager);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes.len(), 100);
    for (n, outcome) in outcomes.iter() {
        assert!(
            matches!(outcome, Err(SessionError::Aborted(_))),
            "send {n}: {outcome:?}"
        );
    }
    assert_eq!(live_tasks(), 0, "the driver task outlived its manager");
    assert_eq!(live_timers(), 0, "a timer outlived its manager");
}

/// The clock jumps three days ahead at once (a machine that slept): every
/// send times out exactly once, the retries whose time has passed are not
/// sent in a burst, every session expires once, and a handful of timers
/// do it all.
#[tokio::test(start_paused = true)]
async fn a_clock_jumping_ahead_by_days_fires_each_deadline_once() {
    let recorder = Recorder::default();
    let config = ManagerConfig::default().session_max_life(Duration::from_secs(600));
    let manager = SessionManager::<Counting>::new(config, recorder.sender()).unwrap();
    let idle: Vec<_> = (0..50)
        .map(|_| manager.create_session("default").unwrap())
        .collect();
    let outcomes = start_sends(&manager, 100);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(recorder.len(), 100, "one transmission each");
    let before = timers();

    tokio::time::advance(Duration::from_secs(3 * 86_400)).await;
    tokio::time::sleep(Duration::from_millis(10)).await;

    for (n, outcome) in outcomes.lock().unwrap().iter() {
        assert!(
            matches!(outcome, Err(SessionError::Timeout)),
            "send {n}: {outcome:?}"
        );
    }
    assert_eq!(outcomes.lock().unwrap().len(), 100, "every send ended");
    assert_eq!(recorder.len(), 100, "no burst of stale retries");
    assert!(idle.iter().all(|session| !session.is_live()));
    // Every session's max life (600 s) passed during the jump too: the idle
    // ones from their creation, the others from their send's timeout. Each
    // expired once.
    let stats = manager.stats();
    assert_eq!(stats.counters.expired_sessions, 150, "{stats:?}");
    assert_eq!(
        (stats.live_sessions, stats.waiting_sends),
        (0, 0),
        "{stats:?}"
    );
    let armed = timers() - before;
    assert!(armed <= 3, "{armed} timers for one jump");

    // Nothing fires again.
    tokio::time::advance(Duration::from_secs(3 * 86_400)).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(manager.stats().counters.expired_sessions, 150);
    assert_eq!(outcomes.lock().unwrap().len(), 100, "nothing ended twice");
    assert_eq!(recorder.len(), 100);
}

/// The clock goes back by a day while sends wait: nothing fires early (a
/// deadline is a point on the clock, which stands still for the core until
/// it catches up), each deadline then fires once, the driver does not spin
/// on the timer meanwhile, and replies still complete their sends.
#[tokio::test(start_paused = true)]
async fn a_clock_going_back_fires_nothing_early_and_nothing_twice() {
    const DAY: Duration = Duration::from_secs(86_400);
    set_clock_ahead(DAY);
    let (sender, mut outbound) = psession_driver::Sender::channel(64);
    let manager = SessionManager::<Counting>::new(ManagerConfig::default(), sender).unwrap();
    let port = manager.default_port();
    let outcomes = start_sends(&manager, 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Counting::now();

    set_clock_ahead(Duration::ZERO);
    let before = timers();
    // An hour on the clock that went back: nothing is due yet.
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    assert!(
        outcomes.lock().unwrap().is_empty(),
        "a deadline fired early"
    );
    // A reply still completes its send meanwhile.
    let mut answered = None;
    while let Some(request) = outbound.try_recv() {
        if request["n"] == 2 {
            answered = Some(request["sid"].clone());
        }
    }
    let sid = answered.expect("send 2 went out");
    port.dispatch(json!({ "sid": sid, "ok": true }));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(outcomes.lock().unwrap().len(), 1);
    assert!(timers() - before <= 3, "the driver spun on its timer");

    // Once the clock is back where it was, each deadline fires once.
    tokio::time::sleep(DAY).await;
    let now = Counting::now();
    assert!(
        now >= started + Duration::from_secs(3),
        "{:?}",
        now - started
    );
    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    for (n, outcome) in outcomes.iter() {
        match n {
            2 => assert_eq!(outcome.as_ref().unwrap()["ok"], true),
            _ => assert!(
                matches!(outcome, Err(SessionError::Timeout)),
                "send {n}: {outcome:?}"
            ),
        }
    }
}
