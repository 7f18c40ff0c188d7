//! Faults around the driver: a transport that fails at random, and futures
//! dropped at random points. Every send ends exactly once with its own
//! outcome, nothing completes a future it does not belong to, and nothing
//! is left behind.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use psession_core::{Cause, ManagerConfig, Routed, SendOptions, SessionError, SidPartition};
use psession_driver::{Outbound, Port, Sender, Session, SessionHandle};
use psession_tests::*;
use serde_json::{json, Value};

/// Counts, per thread, the bytes allocated and not yet freed by that
/// thread: a run that stays on one thread can check it leaves nothing.
struct ThreadCounting;

thread_local! {
    static HERE: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

fn count_here(delta: isize) {
    // During thread teardown the counter may be gone: nothing to count.
    let _ = HERE.try_with(|n| n.set(n.get() + delta));
}

fn allocated_here() -> isize {
    HERE.with(std::cell::Cell::get)
}

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged; the counter is only arithmetic on the sizes.
unsafe impl std::alloc::GlobalAlloc for ThreadCounting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        count_here(layout.size() as isize);
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        count_here(-(layout.size() as isize));
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        count_here(new_size as isize - layout.size() as isize);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: ThreadCounting = ThreadCounting;

/// A client whose transport drops about a third of its messages with an
/// error, talking to an echo server: every send ends exactly once, with
/// its own reply or with `Transport`, and there are exactly as many
/// `Transport` failures as messages the transport refused.
async fn a_sender_that_fails_at_random_fails_exactly_the_sends_it_refused<H: Harness>() {
    const SENDS: u64 = 300;
    let (server, to_client) = queued::<H>(ManagerConfig::default().partition(SidPartition::Even));
    serve_echo::<H>(&server);
    let server_port = server.default_port();
    let refused = Arc::new(AtomicU64::new(0));
    let dice = Arc::new(Mutex::new(Dice::new(7)));
    let sender = {
        let refused = refused.clone();
        Sender::from_fn(move |message: Value| {
            if dice.lock().unwrap().roll(3) == 0 {
                refused.fetch_add(1, Ordering::SeqCst);
                return Err(Cause::msg("link down"));
            }
            server_port.dispatch(message);
            Ok(())
        })
    };
    let client = Manager::<H>::new(
        ManagerConfig::default().partition(SidPartition::Odd),
        sender,
    )
    .expect("a client");
    forward::<H>(to_client, client.default_port(), None);

    let outcomes: Arc<Mutex<Vec<(u64, Outcome)>>> = Arc::default();
    for n in 0..SENDS {
        let mut session = client.create_session("default").expect("a session");
        let outcomes = outcomes.clone();
        H::spawn_task(async move {
            let options = SendOptions::default()
                .timeout(Duration::from_secs(10))
                .retries(2, Duration::from_millis(10));
            // Two turns: a failure on either ends the conversation.
            let mut outcome = session.send_with(json!({ "n": n }), options).await;
            if outcome.is_ok() {
                outcome = session.send_with(json!({ "n": n }), options).await;
            }
            outcomes.lock().unwrap().push((n, outcome));
        });
    }
    eventually::<H>(|| outcomes.lock().unwrap().len() == SENDS as usize).await;

    let outcomes = outcomes.lock().unwrap();
    let mut failed = 0;
    for (n, outcome) in outcomes.iter() {
        match outcome {
            Ok(reply) => {
                assert_eq!(reply["echo"]["n"], *n, "a reply to someone else");
                assert_eq!(reply["n"], 2, "the second turn's reply");
            }
            Err(SessionError::Transport(cause)) => {
                assert!(cause.to_string().contains("link down"), "{cause}");
                failed += 1;
            }
            Err(other) => panic!("send {n}: {other:?}"),
        }
    }
    let refused = refused.load(Ordering::SeqCst);
    assert_eq!(failed, refused, "one failed send per refused message");
    assert!(refused > SENDS / 4 && refused < SENDS, "{refused} refused");
    println!(
        "{}: {SENDS} conversations, {refused} refused by the transport",
        H::NAME
    );
    let stats = client.stats();
    assert_eq!(
        (stats.live_sessions, stats.waiting_sends),
        (0, 0),
        "{stats:?}"
    );
}

on_both_runtimes!(a_sender_that_fails_at_random_fails_exactly_the_sends_it_refused);

// Futures dropped at random points.

type Outcome = Result<Value, SessionError>;

/// What a future in flight is doing.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// `Session::send_with` on a session the future owns.
    Send,
    /// `Port::request_with`, a one-shot session.
    Request,
    /// `Session::post` on a session the future owns, into a small channel.
    Post,
    /// `Session::recv` on a session the future owns.
    Recv,
    /// `Session::send_with` on a session the test keeps: dropping the
    /// future withdraws the send at once, and the session goes on.
    SendKept,
}

/// Sessions that outlive the futures sending on them. A future borrows its
/// session for as long as it lives (so at most one per session).
struct Kept {
    sessions: Vec<Rc<RefCell<Session<Value>>>>,
    /// The numbers sent on each.
    sent: Vec<Vec<u64>>,
    busy: Vec<bool>,
}

struct InFlight {
    n: u64,
    kind: Kind,
    /// The session's sid, when the test knows it (not for requests).
    sid: Option<u32>,
    handle: Option<SessionHandle<Value>>,
    /// Which kept session it sends on.
    kept: Option<usize>,
    future: Pin<Box<dyn Future<Output = Outcome>>>,
}

/// The test's side of the wire: the requests it has seen.
struct Peer {
    outbound: Outbound<Value>,
    seen: Vec<Value>,
}

impl Peer {
    /// Takes one message off the wire, if any.
    fn take(&mut self) -> Option<Value> {
        let message = self.outbound.try_recv()?;
        self.seen.push(message.clone());
        Some(message)
    }

    /// The reply to `request`: its sid, and the number it carried.
    fn reply_to(request: &Value) -> Value {
        json!({ "sid": request["sid"], "re": request["n"] })
    }
}

// The future holds its kept session's `RefMut` across the send on purpose:
// it is that session's only user while it lives.
#[allow(clippy::await_holding_refcell_ref)]
fn start(port: &Port<Value>, kept: &mut Kept, dice: &mut Dice, n: u64) -> InFlight {
    let options = SendOptions::default()
        .timeout(Duration::from_millis(50 + dice.roll(400)))
        .retries(dice.roll(3) as u32, Duration::from_millis(dice.roll(50)));
    let kinds = [
        Kind::Send,
        Kind::Request,
        Kind::Post,
        Kind::Recv,
        Kind::SendKept,
    ];
    let kind = kinds[dice.roll(5) as usize];
    if kind == Kind::Request {
        let port = port.clone();
        let future = async move { port.request_with(json!({ "n": n }), options).await };
        return InFlight {
            n,
            kind,
            sid: None,
            handle: None,
            kept: None,
            future: Box::pin(future),
        };
    }
    if kind == Kind::SendKept {
        if let Some(k) = kept.busy.iter().position(|busy| !busy) {
            kept.busy[k] = true;
            kept.sent[k].push(n);
            let cell = kept.sessions[k].clone();
            let (sid, handle) = {
                let session = cell.borrow();
                (session.id(), session.handle())
            };
            let future = async move {
                let mut session = cell.borrow_mut();
                session.send_with(json!({ "n": n }), options).await
            };
            return InFlight {
                n,
                kind,
                sid: Some(sid),
                handle: Some(handle),
                kept: Some(k),
                future: Box::pin(future),
            };
        }
    }
    let kind = if kind == Kind::SendKept {
        Kind::Send
    } else {
        kind
    };
    let mut session = port.create_session().expect("a session");
    let (sid, handle) = (session.id(), session.handle());
    let future: Pin<Box<dyn Future<Output = Outcome>>> = match kind {
        Kind::Send => Box::pin(async move { session.send_with(json!({ "n": n }), options).await }),
        Kind::Post => Box::pin(async move {
            session.post(json!({ "n": n, "post": true })).await?;
            Ok(Value::Null)
        }),
        _ => Box::pin(async move { session.recv().await }),
    };
    InFlight {
        n,
        kind,
        sid: Some(sid),
        handle: Some(handle),
        kept: None,
        future,
    }
}

/// Checks a finished future's outcome: its own reply, or an error its
/// story allows.
fn check(done: &InFlight, outcome: &Outcome, kept: &mut Kept, seed: u64) {
    let what = format!("seed {seed}, {:?} {}", done.kind, done.n);
    if let Some(k) = done.kept {
        kept.busy[k] = false;
    }
    match (done.kind, outcome) {
        // The protocol has only the sid: on a session that goes on, the
        // answer to an earlier send whose future was dropped may be the
        // reply of the next. It is always one of this session's own.
        (Kind::SendKept, Ok(reply)) => {
            let k = done.kept.expect("a kept session");
            let re = reply["re"].as_u64().expect("an answer");
            assert!(
                kept.sent[k].contains(&re) && re <= done.n,
                "{what}: the answer to {re}, not sent on this session before"
            );
        }
        (Kind::Send | Kind::Request, Ok(reply)) => {
            assert_eq!(reply["re"], done.n, "{what}: someone else's reply")
        }
        (Kind::Post, Ok(value)) => assert_eq!(*value, Value::Null, "{what}"),
        (Kind::Recv, Ok(message)) => {
            assert_eq!(message["to"], done.n, "{what}: a message for someone else")
        }
        (
            Kind::Send | Kind::Request | Kind::SendKept,
            Err(SessionError::Timeout | SessionError::Cancelled),
        ) => {}
        (_, Err(error)) => panic!("{what}: {error:?}"),
    }
}

/// One random run: futures started, polled, dropped and cancelled at
/// random points while the peer answers, repeats answers, pushes messages
/// and time jumps ahead.
async fn random_drops(seed: u64) -> (u64, u64) {
    let (sender, outbound) = Sender::channel(4);
    let manager = Manager::<psession_tokio::Tokio>::new(
        ManagerConfig::default().partition(SidPartition::Odd),
        sender,
    )
    .expect("a manager");
    let port = manager.default_port();
    let mut peer = Peer {
        outbound,
        seen: Vec::new(),
    };
    let mut dice = Dice::new(seed);
    let mut kept = Kept {
        sessions: (0..4)
            .map(|_| Rc::new(RefCell::new(port.create_session().expect("a session"))))
            .collect(),
        sent: vec![Vec::new(); 4],
        busy: vec![false; 4],
    };
    let (_count, waker) = WakeCount::new();
    let mut flying: Vec<InFlight> = Vec::new();
    let (mut finished, mut dropped) = (0, 0);
    let mut most_flying = 0;
    for n in 0..300 {
        match dice.roll(10) {
            0 | 1 => {
                let mut started = start(&port, &mut kept, &mut dice, n);
                match poll_with(&mut started.future, &waker) {
                    std::task::Poll::Pending => flying.push(started),
                    // A post with room in the channel is done at once.
                    std::task::Poll::Ready(outcome) => {
                        assert_eq!(started.kind, Kind::Post, "seed {seed}: {outcome:?}");
                        check(&started, &outcome, &mut kept, seed);
                        finished += 1;
                    }
                }
            }
            2 | 3 if !flying.is_empty() => {
                let at = dice.roll(flying.len() as u64) as usize;
                if let std::task::Poll::Ready(outcome) = poll_with(&mut flying[at].future, &waker) {
                    let done = flying.swap_remove(at);
                    check(&done, &outcome, &mut kept, seed);
                    finished += 1;
                }
            }
            4 if !flying.is_empty() => {
                let at = dice.roll(flying.len() as u64) as usize;
                let gone = flying.swap_remove(at);
                drop(gone.future);
                dropped += 1;
                match (gone.kept, gone.handle) {
                    // A kept session goes on, its send withdrawn at once.
                    (Some(k), Some(handle)) => {
                        kept.busy[k] = false;
                        assert!(handle.is_live(), "seed {seed}: a kept session ended");
                        assert!(
                            !handle.is_waiting(),
                            "seed {seed}: a dropped send still waits"
                        );
                    }
                    // A dropped future owned its session: it has ended.
                    (None, Some(handle)) => {
                        assert!(!handle.is_live(), "seed {seed}: a dropped future's session");
                    }
                    _ => {}
                }
            }
            5 | 6 => {
                // The peer answers what it reads, sometimes twice.
                if let Some(request) = peer.take() {
                    if request.get("post").is_none() {
                        for _ in 0..=dice.roll(2) {
                            port.dispatch(Peer::reply_to(&request));
                        }
                    }
                }
            }
            7 if !peer.seen.is_empty() => {
                // A stale repeat of an old answer.
                let at = dice.roll(peer.seen.len() as u64) as usize;
                let routed = port.dispatch(Peer::reply_to(&peer.seen[at]));
                assert!(
                    !matches!(routed, Routed::Opened(_) | Routed::NotSession(_)),
                    "seed {seed}: {routed:?}"
                );
            }
            8 => {
                // A message pushed to a session that reads.
                if let Some(reader) = flying.iter().find(|f| f.kind == Kind::Recv) {
                    let sid = reader.sid.expect("a reader's sid");
                    port.dispatch(json!({ "sid": sid, "to": reader.n }));
                }
            }
            9 if !flying.is_empty() => {
                let at = dice.roll(flying.len() as u64) as usize;
                if let Some(handle) = &flying[at].handle {
                    let _ = handle.cancel();
                }
            }
            _ => {
                tokio::time::advance(Duration::from_millis(dice.roll(300))).await;
            }
        }
        tokio::task::yield_now().await;
        most_flying = most_flying.max(flying.len());
    }
    // The rest are dropped where they are, then the kept sessions.
    dropped += flying.len() as u64;
    drop(flying);
    drop(kept);
    // The queue holds posts up to its capacity, the transmissions of sends
    // still waiting, and those of ended sends until it is purged at twice
    // its length after the last purge: bounded by the sends in flight.
    assert!(
        peer.outbound.len() <= 2 * (4 + most_flying),
        "seed {seed}: {} queued, at most {most_flying} in flight",
        peer.outbound.len()
    );
    let stats = manager.stats();
    assert_eq!(
        (
            stats.live_sessions,
            stats.waiting_sends,
            stats.queued_messages
        ),
        (0, 0, 0),
        "seed {seed}: {stats:?}"
    );
    (finished, dropped)
}

/// Many random runs on virtual time (`PSESSION_DROP_SEEDS=N` for more).
/// Each run, with its runtime, manager and futures, gives back every byte
/// it allocated on this thread (where all of it runs).
#[test]
fn futures_dropped_at_random_points_leave_nothing_behind() {
    let seeds: u64 = std::env::var("PSESSION_DROP_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    let (mut finished, mut dropped) = (0, 0);
    // The first run sets up what a thread keeps for good (the runtime's
    // thread-locals); from then on each run must end where it started.
    run_on_tokio(async {
        random_drops(seeds).await;
    });
    for seed in 0..seeds {
        let before = allocated_here();
        run_on_tokio(async {
            let (f, d) = random_drops(seed).await;
            finished += f;
            dropped += d;
        });
        assert_eq!(allocated_here(), before, "seed {seed}: bytes left behind");
    }
    println!("{seeds} runs: {finished} futures finished, {dropped} dropped mid-flight");
    assert!(finished > seeds * 10 && dropped > seeds * 10);
}
