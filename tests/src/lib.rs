//! The harness of psession's cross-runtime behaviour suite.
//!
//! Every scenario is an `async fn name<H: Harness>()` written once; the
//! [`on_both_runtimes!`] macro turns each into a `#[test]` on Tokio (with
//! paused, virtual time: deadlines are exact and tests never wait on the
//! real clock) and one on smol (real time, with margins that a loaded
//! machine cannot break).
//!
//! Scenarios wire managers back to back in memory: a manager's port sends
//! into a [`Sender::channel`] and a forwarding task dispatches every message
//! into the peer manager's port, as a socket would.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// The README's examples are compiled and run as this crate's doc tests
// (this crate depends on every other one).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use psession_core::{ManagerConfig, Routed};
use psession_driver::{Outbound, Port, Runtime, Sender, Session};
use serde_json::{json, Value};

/// A JSON manager on the harness's runtime.
pub type Manager<H> = psession_driver::SessionManager<H, Value>;

/// What a scenario needs from a runtime beyond what the driver needs.
pub trait Harness: Runtime + Sized {
    /// The runtime's name, for messages.
    const NAME: &'static str;
    /// Whether time is virtual, so that elapsed times are exact.
    const VIRTUAL_TIME: bool;

    /// Runs a scenario to completion; fails it if it hangs.
    fn run<F: Future<Output = ()>>(scenario: F);

    /// Spawns a background task.
    fn spawn_task<F: Future<Output = ()> + Send + 'static>(task: F);

    /// Sleeps for `duration` on the runtime's clock.
    fn sleep(duration: Duration) -> Self::Sleep {
        Self::sleep_until(Self::now() + duration)
    }
}

/// How long a scenario may take before it counts as hung (virtual time on
/// Tokio, so this costs nothing there).
const HANG: Duration = Duration::from_secs(120);

impl Harness for psession_tokio::Tokio {
    const NAME: &'static str = "tokio";
    const VIRTUAL_TIME: bool = true;

    fn run<F: Future<Output = ()>>(scenario: F) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a Tokio runtime");
        runtime.block_on(async {
            let start = tokio::time::Instant::now();
            tokio::time::timeout(HANG, scenario)
                .await
                .expect("the scenario hung on tokio");
            // The timeout's wake-up polls the scenario once more: one that
            // only finished then was stuck until the hang limit.
            assert!(start.elapsed() < HANG, "the scenario hung on tokio");
        });
    }

    fn spawn_task<F: Future<Output = ()> + Send + 'static>(task: F) {
        drop(tokio::spawn(task));
    }
}

impl Harness for psession_smol::Smol {
    const NAME: &'static str = "smol";
    const VIRTUAL_TIME: bool = false;

    fn run<F: Future<Output = ()>>(scenario: F) {
        let start = Instant::now();
        smol::block_on(smol::future::or(scenario, async {
            smol::Timer::after(HANG).await;
            panic!("the scenario hung on smol");
        }));
        // The timer's wake-up polls the scenario once more: one that only
        // finished then was stuck until the hang limit.
        assert!(start.elapsed() < HANG, "the scenario hung on smol");
    }

    fn spawn_task<F: Future<Output = ()> + Send + 'static>(task: F) {
        smol::spawn(task).detach();
    }
}

/// Runs a Tokio-only scenario the way [`on_both_runtimes!`] does (paused
/// time, hang limit).
pub fn run_on_tokio<F: Future<Output = ()>>(scenario: F) {
    <psession_tokio::Tokio as Harness>::run(scenario);
}

/// Declares one `#[test]` per runtime for each scenario named.
///
/// ```text
/// async fn round_trip<H: Harness>() { /* ... */ }
/// on_both_runtimes!(round_trip);
/// ```
#[macro_export]
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod on_tokio {
            $(
                #[test]
                fn $name() {
                    <psession_tokio::Tokio as $crate::Harness>::run(
                        super::$name::<psession_tokio::Tokio>(),
                    );
                }
            )*
        }
        mod on_smol {
            $(
                #[test]
                fn $name() {
                    <psession_smol::Smol as $crate::Harness>::run(
                        super::$name::<psession_smol::Smol>(),
                    );
                }
            )*
        }
    };
}

/// A manager whose default port sends into a queue, and that queue.
pub fn queued<H: Harness>(config: ManagerConfig) -> (Manager<H>, Outbound<Value>) {
    let (sender, outbound) = Sender::channel(1024);
    let manager = Manager::<H>::new(config, sender).expect("a manager");
    (manager, outbound)
}

/// Dispatches everything `outbound` yields into `port`, as a socket
/// between two peers would. Non-session messages go to `others`, if given.
pub fn forward<H: Harness>(
    mut outbound: Outbound<Value>,
    port: Port<Value>,
    others: Option<Recorder>,
) {
    H::spawn_task(async move {
        while let Some(message) = outbound.recv().await {
            if let Routed::NotSession(message) = port.dispatch(message) {
                if let Some(others) = &others {
                    others.push(message);
                }
            }
        }
    });
}

/// Two managers wired back to back over their default ports: a client and
/// a server.
pub fn pair<H: Harness>(client: ManagerConfig, server: ManagerConfig) -> (Manager<H>, Manager<H>) {
    let (client, to_server) = queued::<H>(client);
    let (server, to_client) = queued::<H>(server);
    forward::<H>(to_server, server.default_port(), None);
    forward::<H>(to_client, client.default_port(), None);
    (client, server)
}

/// Answers every incoming session of `server`: each message `m` it
/// receives is answered with `{"echo": m, "n": k}` (k counts the session's
/// messages from 1), posted on the same session.
pub fn serve_echo<H: Harness>(server: &Manager<H>) {
    let mut events = server.events();
    H::spawn_task(async move {
        while let Some(session) = events.next_session().await {
            H::spawn_task(echo(session));
        }
    });
}

/// Answers each message of one session with `{"echo": m, "n": k}` until the
/// session ends.
pub async fn echo(mut session: Session<Value>) {
    let mut n = 0;
    while let Ok(message) = session.recv().await {
        n += 1;
        if session
            .post(json!({ "echo": message, "n": n }))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A closure sender that keeps every message it is given.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Value>>>);

impl Recorder {
    /// A sender that records into this recorder and succeeds.
    pub fn sender(&self) -> Sender<Value> {
        let me = self.clone();
        Sender::from_fn(move |message| {
            me.push(message);
            Ok(())
        })
    }

    /// Records one message.
    pub fn push(&self, message: Value) {
        self.0.lock().unwrap().push(message);
    }

    /// Everything recorded so far.
    pub fn messages(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }

    /// How many messages were recorded.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Elapsed time on the harness's clock since `start`.
pub fn since<H: Harness>(start: Instant) -> Duration {
    H::now().saturating_duration_since(start)
}

/// Asserts that `elapsed` is at least `expected`, and close to it: within
/// 2 ms on virtual time, within a wide margin on real time.
pub fn assert_about<H: Harness>(elapsed: Duration, expected: Duration) {
    assert!(
        elapsed >= expected,
        "{}: {elapsed:?} is earlier than {expected:?}",
        H::NAME
    );
    let slack = if H::VIRTUAL_TIME {
        Duration::from_millis(2)
    } else {
        Duration::from_secs(5)
    };
    assert!(
        elapsed <= expected + slack,
        "{}: {elapsed:?} is much later than {expected:?}",
        H::NAME
    );
}

/// Waits (on the runtime's clock, up to the hang limit) until `done` holds.
pub async fn eventually<H: Harness>(mut done: impl FnMut() -> bool) {
    while !done() {
        H::sleep(Duration::from_millis(1)).await;
    }
}

/// Counts the wakes of the waker it makes: a test polls futures by hand with
/// it to see exactly which ones are woken.
pub struct WakeCount(AtomicUsize);

impl WakeCount {
    /// A counter and its waker.
    pub fn new() -> (Arc<WakeCount>, Waker) {
        let count = Arc::new(WakeCount(AtomicUsize::new(0)));
        (count.clone(), count.into())
    }

    /// Wakes so far.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `future` once with `waker`.
pub fn poll_with<F: Future + ?Sized>(future: &mut Pin<Box<F>>, waker: &Waker) -> Poll<F::Output> {
    future.as_mut().poll(&mut Context::from_waker(waker))
}

/// A deterministic stream of numbers (xorshift64*), so that a randomised
/// scenario that fails can be replayed from its seed.
pub struct Dice(u64);

impl Dice {
    /// The stream of `seed` (any seed, 0 included, gives a usable stream).
    pub fn new(seed: u64) -> Self {
        Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number below `sides`.
    pub fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % sides
    }
}
