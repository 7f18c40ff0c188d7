//! Bytes of psession state per idle session and per waiting send, counted
//! by a global allocator (live heap bytes, not RSS), at 1k, 100k and 1M
//! sessions spread over 10k ports.
//!
//! Not a criterion group: it prints a table (and exits non-zero only if
//! something fails, never for a missed target). `PSESSION_BENCH_QUICK=1`
//! skips the 1M row; `PSESSION_MEMORY_SIZES=1025,1100` counts other sizes
//! instead. A filter argument that `memory` does not contain
//! (`cargo bench -- async_round_trip`) skips the whole target.
//!
//! What is counted, for `n` sessions over `P` = 10,000 ports:
//!
//! - **core** (`psession_core::Manager`, JSON messages): the manager and
//!   its `P` ports are created first, then `n` sessions are opened round
//!   robin over the ports (so at 1k sessions, 1,000 ports hold one session
//!   and 9,000 none: the "spread over 10k ports" taken literally).
//!   *Per idle session* = live bytes after the opens minus before, over
//!   `n`: the session's slab slot, its entry in its port's sid map, and
//!   its port's one expiry entry in the deadline heap (a port with idle
//!   sessions has one, however many), with the slack these growable
//!   tables carry at that size. The `SessionId`s the caller keeps are in a
//!   vector allocated before the first count (the caller's, not
//!   psession's). *Per waiting send* = then one `send` (no retries) on
//!   every session, each followed by draining `poll_transmit`, so the
//!   request, which psession hands to the transport, is freed before the
//!   count: live bytes after minus before, over `n` (the send's entry in
//!   the core's slab of waiting sends and its deadline entry). With retries the core
//!   would also keep a copy of the message; none is counted here.
//! - **tokio driver** (`psession_tokio::SessionManager`, a closure sender
//!   per port that drops each message): the same, through the async API:
//!   `n` `Session`s from `port.create_session()`, then a `send` on each,
//!   boxed and polled once (with a no-op waker: no runtime runs during the
//!   count; the closure sender frees each request). The main columns are
//!   psession's heap state, core and driver bookkeeping (the driver's map
//!   of waiting sends); the `+app` columns add what the application holds
//!   besides: the `Session` handle per session (in a vector allocated
//!   inside the count, exactly `n` long) and, per waiting send, the boxed
//!   `send` future and its pointer (as a task would hold it).
//!
//! Bytes are the sizes requested from the allocator (what `Layout` asks
//! for), not the allocator's rounding or headers.
#![allow(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Waker};
use std::time::Instant;

use psession_benches::oneshot_correlator::request;
use psession_core::{Manager, ManagerConfig, PortOptions, SendOptions};

/// A pass-through to the system allocator that keeps two counters: live
/// bytes (as requested by each `Layout`) and live blocks.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, and only updates counters besides (wrapping arithmetic, so a
// free counted on one thread before its allocation's count lands from
// another cannot panic; the totals are exact once both have landed).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Relaxed);
            LIVE_BLOCKS.fetch_add(1, Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Relaxed);
            LIVE_BLOCKS.fetch_add(1, Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE_BYTES.fetch_sub(layout.size(), Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            LIVE_BYTES.fetch_add(new_size, Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Relaxed);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Live heap bytes and blocks now.
#[derive(Clone, Copy)]
struct Heap {
    bytes: usize,
    blocks: usize,
}

impl Heap {
    fn now() -> Heap {
        Heap {
            bytes: LIVE_BYTES.load(Relaxed),
            blocks: LIVE_BLOCKS.load(Relaxed),
        }
    }

    /// What was added since `self`, per item.
    fn per(self, items: usize) -> PerItem {
        let now = Heap::now();
        PerItem {
            bytes: now.bytes.wrapping_sub(self.bytes) as isize as f64 / items as f64,
            blocks: now.blocks.wrapping_sub(self.blocks) as isize as f64 / items as f64,
        }
    }
}

#[derive(Clone, Copy)]
struct PerItem {
    bytes: f64,
    blocks: f64,
}

const PORTS: usize = 10_000;
const IDLE_TARGET: f64 = 128.0;
const SEND_TARGET: f64 = 256.0;

struct Row {
    layer: &'static str,
    sessions: usize,
    /// psession's own heap state per idle session / per waiting send.
    idle: PerItem,
    send: PerItem,
    /// What the application holds besides (driver only): the `Session`
    /// handle per session, and per waiting send the boxed `send` future
    /// and its pointer in the application's vector.
    handle: usize,
    future: usize,
    seconds: f64,
}

fn core(n: usize) -> Row {
    let start = Instant::now();
    let now = Instant::now();
    let mut manager: Manager = Manager::new(ManagerConfig::default()).unwrap();
    let ports: Vec<_> = (0..PORTS)
        .map(|i| {
            manager
                .create_port(&format!("port-{i}"), PortOptions::default())
                .unwrap()
        })
        .collect();
    let mut sessions = Vec::with_capacity(n);

    let before = Heap::now();
    for i in 0..n {
        sessions.push(manager.open_session(ports[i % PORTS], now).unwrap());
    }
    assert!(manager.poll_event().is_none());
    let idle = before.per(n);

    let before = Heap::now();
    for &session in &sessions {
        manager
            .send(session, request(0, false), SendOptions::default(), now)
            .unwrap();
        while let Some(transmit) = manager.poll_transmit() {
            drop(transmit);
        }
    }
    assert!(manager.poll_event().is_none());
    let send = before.per(n);
    assert_eq!(manager.stats().waiting_sends, n);
    drop(manager);
    Row {
        layer: "core",
        sessions: n,
        idle,
        send,
        handle: 0,
        future: 0,
        seconds: start.elapsed().as_secs_f64(),
    }
}

fn tokio_driver(n: usize) -> Row {
    use psession_tokio::{Sender, SessionManager};
    let start = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _inside = runtime.enter();
    let discard = Sender::from_fn(|message: serde_json::Value| {
        drop(message);
        Ok(())
    });
    let manager = SessionManager::new(ManagerConfig::default(), discard.clone()).unwrap();
    let ports: Vec<_> = (0..PORTS)
        .map(|i| {
            manager
                .create_port(format!("port-{i}"), discard.clone(), PortOptions::default())
                .unwrap()
        })
        .collect();

    let before = Heap::now();
    let mut sessions: Vec<_> = (0..n)
        .map(|i| ports[i % PORTS].create_session().unwrap())
        .collect();
    let idle = before.per(n);

    let before = Heap::now();
    let mut sends: Vec<_> = sessions
        .iter_mut()
        .map(|session| Box::pin(session.send(request(0, false))))
        .collect();
    let mut cx = Context::from_waker(Waker::noop());
    for send in &mut sends {
        assert!(send.as_mut().poll(&mut cx).is_pending());
    }
    let send = before.per(n);
    let future = sends
        .first()
        .map_or(0, |f| std::mem::size_of_val::<_>(&**f));
    let handle = std::mem::size_of::<psession_tokio::Session>();
    // The application's part: the boxed future and its pointer; the handle.
    let send = PerItem {
        bytes: send.bytes - (future + std::mem::size_of::<usize>()) as f64,
        blocks: send.blocks - 1.0,
    };
    let idle = PerItem {
        bytes: idle.bytes - handle as f64,
        ..idle
    };
    assert_eq!(manager.stats().waiting_sends, n);
    drop(sends);
    drop(sessions);
    Row {
        layer: "tokio driver",
        sessions: n,
        idle,
        send,
        handle,
        future,
        seconds: start.elapsed().as_secs_f64(),
    }
}

fn verdict(value: f64, target: f64) -> &'static str {
    if value <= target {
        "ok"
    } else {
        "OVER"
    }
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| "memory".contains(f.as_str())) {
        return;
    }
    let quick = psession_benches::quick();
    let chosen: Option<Vec<usize>> = std::env::var("PSESSION_MEMORY_SIZES").ok().map(|list| {
        list.split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("PSESSION_MEMORY_SIZES: numbers, comma-separated")
            })
            .collect()
    });
    let sizes: &[usize] = match &chosen {
        Some(sizes) => sizes,
        None if quick => &[1_000, 100_000],
        None => &[1_000, 100_000, 1_000_000],
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    for &n in sizes {
        rows.push(core(n));
    }
    for &n in sizes {
        rows.push(tokio_driver(n));
    }

    println!();
    println!(
        "memory: live heap bytes of psession state, {PORTS} ports (targets: <= {IDLE_TARGET} B per idle session, <= {SEND_TARGET} B per waiting send)"
    );
    println!(
        "{:<12} {:>9} | {:>10} {:>6} {:>6} | {:>10} {:>6} {:>6} | {:>15} {:>15} | {:>6}",
        "layer",
        "sessions",
        "B/session",
        "allocs",
        "target",
        "B/send",
        "allocs",
        "target",
        "+app: B/session",
        "+app: B/send",
        "time"
    );
    for row in &rows {
        // The core's rows have no application-held part.
        let all_in = |value: f64, extra: usize| match row.handle {
            0 => "-".to_string(),
            _ => format!("{:.1}", value + extra as f64),
        };
        println!(
            "{:<12} {:>9} | {:>10.1} {:>6.2} {:>6} | {:>10.1} {:>6.2} {:>6} | {:>15} {:>15} | {:>5.1}s",
            row.layer,
            row.sessions,
            row.idle.bytes,
            row.idle.blocks,
            verdict(row.idle.bytes, IDLE_TARGET),
            row.send.bytes,
            row.send.blocks,
            verdict(row.send.bytes, SEND_TARGET),
            all_in(row.idle.bytes, row.handle),
            all_in(row.send.bytes, row.future + std::mem::size_of::<usize>()),
            row.seconds,
        );
    }
    if let Some(driver) = rows.iter().find(|row| row.handle > 0) {
        println!(
            "driver rows: psession's heap state (core + driver bookkeeping); \"+app\" adds what the application holds: \
             the Session handle ({} B) per session, the boxed send future ({} B) and its pointer per waiting send",
            driver.handle, driver.future
        );
    }
    if quick {
        println!("(quick mode: the 1,000,000-session rows are skipped)");
    }
    println!("memory: done in {:.1}s", started.elapsed().as_secs_f64());
}
