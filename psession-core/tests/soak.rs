//! Soak: a million sessions through one manager, on a virtual clock, with
//! the allocator's live bytes counted. Once warmed up, the manager's memory
//! does not grow from the first hundred thousand sessions to the last, and
//! when every session is gone it is back to where it started.
//!
//! Two runs: sessions opened, used and ended; and sessions opened, used and
//! left to expire (`session_max_life`). "Used" is a send and its reply;
//! every 7th send has a retry policy (its retry state must go too), and
//! every 10th session also gets an unsolicited message that stays unread
//! in its `recv` queue when it goes.
//!
//! `PSESSION_SOAK_SESSIONS=N` changes the count (default 1,000,000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use psession_core::{Event, Manager, ManagerConfig, PortId, Routed, SendOptions, SessionId};
use serde_json::{json, Value};

/// Counts the bytes live on the heap that this thread allocated and has
/// not freed: the whole soak runs on the test's thread, and the test
/// runner's own threads (which may allocate at any moment, to report on a
/// long test say) are not counted.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // During thread teardown the counter may be gone: nothing to count.
    let _ = LIVE.try_with(|live| live.set(live.get() + delta));
}

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged; the counter is only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

fn sessions() -> usize {
    std::env::var("PSESSION_SOAK_SESSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000)
}

/// Sessions live at once: the soak opens them in waves of this many.
const WAVE: usize = 1_000;
/// Where the memory is compared: after this many sessions (warmed up) and
/// before the last this many.
const WINDOW: usize = 100_000;

/// How the sessions of a wave go away.
#[derive(Clone, Copy, Debug)]
enum Ending {
    Ended,
    Expired,
}

/// Opens, uses and ends (or lets expire) `total` sessions in waves, and
/// returns the live bytes after the first `WINDOW` sessions, before the
/// last `WINDOW`, and at the end.
fn soak(ending: Ending, total: usize) -> (isize, isize, isize) {
    let max_life = Duration::from_secs(60);
    let config = ManagerConfig::default()
        .session_timeout(Duration::from_secs(5))
        .session_max_life(max_life);
    let mut manager = Manager::new(config).expect("valid config");
    let port = manager.default_port();
    let start = Instant::now();
    let mut now = start;
    let request = json!({ "query": "getDeviceList" });
    let (mut warm, mut late) = (None, None);
    let mut wave: Vec<SessionId> = Vec::with_capacity(WAVE);
    // Warm-up: twice a wave at once, so that every table has grown to hold
    // a wave with room to spare. (A hash map that churns keys may otherwise
    // grow once more at a random moment, when its deleted entries fill it:
    // only a map at least twice its largest item count never does.)
    let warm_up: Vec<SessionId> = (0..2 * WAVE)
        .map(|_| manager.open_session(port, now).expect("a free sid"))
        .collect();
    for &session in &warm_up {
        manager
            .send(session, request.clone(), SendOptions::default(), now)
            .expect("live session");
    }
    answer_every_transmission(&mut manager, port, now);
    for session in warm_up {
        manager.end(session).expect("live session");
    }
    while manager.poll_event().is_some() {}
    let mut done = 0;
    while done < total {
        let size = WAVE.min(total - done);
        for n in done..done + size {
            let session = manager.open_session(port, now).expect("a free sid");
            let options = if n % 7 == 0 {
                SendOptions::default().retries(2, Duration::from_millis(100))
            } else {
                SendOptions::default()
            };
            manager
                .send(session, request.clone(), options, now)
                .expect("live session");
            wave.push(session);
        }
        answer_every_transmission(&mut manager, port, now);
        let mut replies = 0;
        while let Some(event) = manager.poll_event() {
            match event {
                Event::Reply { .. } => replies += 1,
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert_eq!(replies, size, "every send of the wave is answered");
        for (n, session) in (done..).zip(&wave) {
            if n % 10 == 0 {
                let unsolicited = json!({ "sid": session.sid(), "note": "unread" });
                let routed = manager.handle_inbound(port, unsolicited, now);
                assert!(matches!(routed, Routed::Queued(_)), "{routed:?}");
            }
        }
        let readable = std::iter::from_fn(|| manager.poll_event()).count();
        let unread = (done..done + size).filter(|n| n % 10 == 0).count();
        assert_eq!(
            readable, unread,
            "one Readable event per unsolicited message"
        );
        match ending {
            Ending::Ended => {
                for session in wave.drain(..) {
                    manager.end(session).expect("live session");
                }
            }
            Ending::Expired => {
                wave.clear();
                now += max_life;
                manager.handle_timeout(now);
            }
        }
        let mut closed = 0;
        while let Some(event) = manager.poll_event() {
            match event {
                Event::Closed { .. } => closed += 1,
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert_eq!(closed, size, "every session of the wave is closed");
        done += size;
        now += Duration::from_millis(1);
        if done == WINDOW.min(total) {
            warm = Some(live());
        }
        if done + WINDOW == total.max(WINDOW) {
            late = Some(live());
        }
    }
    let stats = manager.stats();
    assert_eq!(stats.live_sessions, 0, "{stats:?}");
    assert_eq!(stats.waiting_sends, 0, "{stats:?}");
    assert_eq!(stats.queued_events, 0, "{stats:?}");
    assert_eq!(stats.queued_transmits, 0, "{stats:?}");
    let expected_expired = match ending {
        Ending::Ended => 0,
        Ending::Expired => total as u64,
    };
    assert_eq!(stats.counters.expired_sessions, expected_expired);
    let end = live();
    drop(manager);
    (warm.expect("measured"), late.unwrap_or(end), end)
}

/// The peer: answers every transmitted request with its sid.
fn answer_every_transmission(manager: &mut Manager, port: PortId, now: Instant) {
    let mut replies: Vec<Value> = Vec::with_capacity(WAVE);
    while let Some(transmit) = manager.poll_transmit() {
        let sid = transmit.message["sid"].clone();
        replies.push(json!({ "sid": sid, "devices": [] }));
    }
    for reply in replies {
        let routed = manager.handle_inbound(port, reply, now);
        assert!(matches!(routed, Routed::Reply(_)), "{routed:?}");
    }
}

#[test]
fn a_million_sessions_leave_memory_where_it_was() {
    let total = sessions();
    // Both runs in one test, one after the other, on this thread (the one
    // the allocator counts for).
    for ending in [Ending::Ended, Ending::Expired] {
        let before = live();
        let (warm, late, end) = soak(ending, total);
        let after = live();
        eprintln!(
            "{ending:?}: {total} sessions; live bytes: before {before}, after the first \
             {WINDOW} {warm}, before the last {WINDOW} {late}, at the end {end}, \
             after dropping the manager {after}"
        );
        assert_eq!(
            late, warm,
            "{ending:?}: the manager grew between the first and the last {WINDOW} sessions"
        );
        assert_eq!(
            end, warm,
            "{ending:?}: with every session gone, the manager holds what it held warmed up"
        );
        assert_eq!(
            after, before,
            "{ending:?}: dropping the manager frees everything"
        );
    }
}
